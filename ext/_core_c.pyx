# cython: language_level=3, binding=True, boundscheck=False, wraparound=False, cdivision=True
"""Compiled session core (Cython); its pure-Python twin is ``dynamo_sessions._core_py``.

Same names, same signatures, same docstrings and the same results as the twin; the test suite
runs every test against both.  Unlike the twin this module does not use the msgpack package:

* the session payload codec writes and reads standard msgpack itself (a session-specialised
  encoder into a growable C buffer, a decoder with a bounds check on every read); the bytes are
  identical to what ``msgpack.packb(use_bin_type=True)`` makes in the twin,
* DynamoDB item-size and capacity-unit math is typed C (numbers are scanned, no regex),
* the lock-retry backoff schedule is a cdef class drawing the same splitmix64 stream.

The parts are included from ``_encode.pxi``, ``_decode.pxi``, ``_units.pxi`` and
``_backoff.pxi`` (one module: calls between them stay C calls); this file holds what they
share.  Byte-level helpers (loads/stores, msgpack headers, the key cache, date math) are in
``_core_c.h``.  Limits, format constants, the encode validation, the backoff's argument
checks, the inflate guard and the public docstrings come from ``dynamo_sessions._rules``, which
the twin imports too (numbers are copied into C variables at import): errors are reported by the
same code (``raise_encode_error``, ``backoff_settings``), so messages and key paths agree, and
both encoders refuse exactly what both decoders refuse.
"""

import datetime as _dt
import secrets
import time
import zlib
from collections.abc import Mapping

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport (
    PyBUF_FULL_RO,
    PyBUF_SIMPLE,
    PyBuffer_IsContiguous,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.datetime cimport (
    PyDateTime_Check,
    datetime_day,
    datetime_hour,
    datetime_minute,
    datetime_month,
    datetime_new,
    datetime_microsecond,
    datetime_second,
    datetime_tzinfo,
    datetime_year,
    import_datetime,
    timedelta_days,
    timedelta_microseconds,
    timedelta_seconds,
)
from cpython.float cimport PyFloat_FromDouble
from cpython.list cimport PyList_New
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp

from dynamo_sessions.errors import CorruptSession

import_datetime()


cdef extern from "Python.h":
    # Declared here without Cython's automatic exception checks: NULL / -1 are handled inline.
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size)
    bint PyUnicode_Check(object o)
    bint PyUnicode_CheckExact(object o)
    bint PyUnicode_IS_ASCII(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    unsigned int PyUnicode_KIND(object o)
    void* PyUnicode_DATA(object o)
    Py_UCS4 PyUnicode_READ(unsigned int kind, void* data, Py_ssize_t index)
    PyObject* PyUnicode_DecodeUTF8(const char* s, Py_ssize_t size, const char* errors)
    bint PyLong_Check(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int* overflow) except? -1
    unsigned long long PyLong_AsUnsignedLongLong(object o)  # checked by hand: see _pack_int
    unsigned long long PyLong_AsUnsignedLongLongMask(object o) except? <unsigned long long>-1
    PyObject* PyErr_Occurred()
    bint PyFloat_Check(object o)
    double PyFloat_AS_DOUBLE(object o)
    bint PyBytes_Check(object o)
    bint PyDict_Check(object o)
    bint PyDict_CheckExact(object o)
    Py_ssize_t PyDict_GET_SIZE(object o)
    bint PyDict_Next(object p, Py_ssize_t* ppos, PyObject** pkey, PyObject** pvalue)
    int PyDict_SetItem(object p, object key, object val) except -1
    bint PyList_Check(object o)
    bint PyList_CheckExact(object o)
    Py_ssize_t PyList_GET_SIZE(object o)
    PyObject* PyList_GET_ITEM(object o, Py_ssize_t i)
    void PyList_SET_ITEM(object o, Py_ssize_t i, object v)
    bint PyTuple_Check(object o)
    bint PyTuple_CheckExact(object o)
    Py_ssize_t PyTuple_GET_SIZE(object o)
    PyObject* PyTuple_GET_ITEM(object o, Py_ssize_t i)
    bint PyByteArray_Check(object o)
    bint PyMemoryView_Check(object o)
    int PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()


cdef extern from "_core_c.h":
    ctypedef struct ds_buf:
        unsigned char* data
        Py_ssize_t len
    void ds_buf_init(ds_buf* b, unsigned char* stack, Py_ssize_t size)
    void ds_buf_free(ds_buf* b)
    int ds_pack_uint(ds_buf* b, uint64_t v) except -1
    int ds_pack_int(ds_buf* b, int64_t v) except -1
    int ds_pack_byte(ds_buf* b, unsigned char c) except -1
    int ds_pack_double(ds_buf* b, double d) except -1
    int ds_pack_str(ds_buf* b, const char* raw, Py_ssize_t n) except -1
    int ds_pack_bin(ds_buf* b, const char* raw, Py_ssize_t n) except -1
    int ds_pack_array(ds_buf* b, Py_ssize_t n) except -1
    int ds_pack_map(ds_buf* b, Py_ssize_t n) except -1
    int ds_pack_timestamp(ds_buf* b, int64_t seconds, uint32_t nanoseconds) except -1
    const char* ds_utf8(PyObject* text, Py_ssize_t* n)
    uint16_t ds_load16(const unsigned char* p)
    uint32_t ds_load32(const unsigned char* p)
    uint64_t ds_load64(const unsigned char* p)
    double ds_load_double(const unsigned char* p)
    double ds_load_float(const unsigned char* p)
    PyObject* ds_decode_key(const char* p, Py_ssize_t n)
    object ds_new_dict(Py_ssize_t n)
    int64_t ds_days_from_civil(int64_t y, int64_t m, int64_t d)
    void ds_civil_from_days(int64_t z, int* year, int* month, int* day)
    int64_t ds_floordiv(int64_t a, int64_t b)
    int64_t ds_floormod(int64_t a, int64_t b)
    int ds_set_type_doc(object type, object doc) except -1


from dynamo_sessions._rules import (  # the public constants, as the twin has them too
    BACKOFF_MODES, CODEC_NONE, CODEC_ZLIB, FORMAT_VERSION, HEADER_BYTES, MAX_DEPTH,
    MAX_INFLATED_BYTES, MAX_ITEM_BYTES, MAX_NUMBER_BYTES, MAX_PACKED_BYTES, PAYLOAD_MAGIC,
    READ_UNIT_BYTES, WRITE_UNIT_BYTES, ZLIB_LEVEL,
)
from dynamo_sessions._rules import (
    DOCS as _DOCS,
    MAX_TIMESTAMP_SECONDS as _MAX_TIMESTAMP_SECONDS,
    MIN_TIMESTAMP_SECONDS as _MIN_TIMESTAMP_SECONDS,
    as_dict as _as_dict,
    backoff_settings as _backoff_settings,
    documented as _documented,
    inflate as _inflate,
    payload_view as _payload_view,
    raise_encode_error as _raise_encode_error,
    raise_too_large as _raise_too_large,
)

# C copies of the shared rules (dynamo_sessions._rules), read once at import.
cdef int _MAX_DEPTH = MAX_DEPTH
cdef int _MAX_NUMBER_BYTES = MAX_NUMBER_BYTES
cdef Py_ssize_t _MAX_PACKED = MAX_PACKED_BYTES
cdef int64_t _MIN_SECONDS = _MIN_TIMESTAMP_SECONDS
cdef int64_t _MAX_SECONDS = _MAX_TIMESTAMP_SECONDS
cdef unsigned char _MAGIC = PAYLOAD_MAGIC
cdef unsigned char _HEADER_NONE_BYTE = FORMAT_VERSION << 4 | CODEC_NONE
cdef Py_ssize_t _WRITE_UNIT = WRITE_UNIT_BYTES
cdef Py_ssize_t _READ_UNIT = READ_UNIT_BYTES

cdef enum:
    _STACK_BYTES = 4096  # encoder output that fits here needs no heap allocation

cdef Py_ssize_t _MAX_LENGTH = 0xFFFFFFFF  # msgpack's largest str/bin/array/map length

_HEADER_ZLIB = bytes((PAYLOAD_MAGIC, FORMAT_VERSION << 4 | CODEC_ZLIB))
cdef object _UTC = _dt.timezone.utc
cdef uint64_t _LOW_34_BITS = (<uint64_t>1 << 34) - 1


# The parts, in this order: textual includes, compiled as if written here (one module, so calls
# between the parts stay C calls; cross-module calls would cost speed).
include "_encode.pxi"
include "_decode.pxi"
include "_units.pxi"
include "_backoff.pxi"
