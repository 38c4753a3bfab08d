# cython: language_level=3, binding=True, boundscheck=False, wraparound=False, cdivision=True
"""Compiled session core (Cython); its pure-Python twin is ``dynamo_sessions._core_py``.

Same names, same signatures, same docstrings and the same results as the twin; the test suite
runs every test against both.  Unlike the twin this module does not use the msgpack package:

* the session payload codec writes and reads standard msgpack itself (a session-specialised
  encoder into a growable C buffer, a decoder with a bounds check on every read); the bytes are
  identical to what ``msgpack.packb(use_bin_type=True)`` makes in the twin,
* DynamoDB item-size and capacity-unit math is typed C (numbers are scanned, no regex),
* the lock-retry backoff schedule is a cdef class drawing the same splitmix64 stream.

Byte-level helpers (loads/stores, msgpack headers, the key cache, date math) are in
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


# ==============================================================================================
# Codec: encoder
# ==============================================================================================
#
# _pack returns 0 when the value was written and 1 when it (or something inside it) cannot be
# stored.  The fast path does not build key paths: on 1 the caller re-walks the session with
# _raise_encode_error, the twin's own validation order, so that both twins name the same key
# with the same message.


cdef inline int _pack_text(ds_buf* b, object text) except -1:
    cdef Py_ssize_t n
    cdef const char* raw = ds_utf8(<PyObject*>text, &n)
    if raw == NULL:
        if PyErr_ExceptionMatches(UnicodeEncodeError):  # a lone surrogate
            PyErr_Clear()
            return 1
        return -1
    if n > _MAX_LENGTH:
        return 1
    ds_pack_str(b, raw, n)
    return 0


cdef inline int _pack_bytes(ds_buf* b, object value) except -1:
    if PyBytes_GET_SIZE(value) > _MAX_LENGTH:
        return 1
    ds_pack_bin(b, PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
    return 0


cdef int _pack_int(ds_buf* b, object value) except -1:
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    cdef unsigned long long unsigned_number
    if overflow == 0:
        ds_pack_int(b, number)
        return 0
    if overflow < 0:  # below -2**63
        return 1
    unsigned_number = PyLong_AsUnsignedLongLong(value)
    if unsigned_number == <unsigned long long>-1 and PyErr_Occurred() != NULL:
        if not PyErr_ExceptionMatches(OverflowError):
            return -1
        PyErr_Clear()  # above 2**64 - 1
        return 1
    ds_pack_uint(b, unsigned_number)
    return 0


cdef int _pack_datetime(ds_buf* b, object value) except -1:
    cdef int64_t offset_micros = 0
    if datetime_tzinfo(value) is not _UTC:  # UTC, the common case, needs no utcoffset() call
        offset = value.utcoffset()
        if offset is None:
            return 1
        offset_micros = ((<int64_t>timedelta_days(offset) * 86400 + timedelta_seconds(offset))
                         * 1_000_000 + timedelta_microseconds(offset))
    cdef int64_t days = ds_days_from_civil(
        datetime_year(value), datetime_month(value), datetime_day(value))
    cdef int64_t micros = (
        (days * 86400 + datetime_hour(value) * 3600 + datetime_minute(value) * 60
         + datetime_second(value)) * 1_000_000 + datetime_microsecond(value) - offset_micros)
    cdef int64_t seconds = ds_floordiv(micros, 1_000_000)
    if seconds < _MIN_SECONDS or seconds > _MAX_SECONDS:  # the decoder could not read it back
        return 1
    ds_pack_timestamp(b, seconds, <uint32_t>(ds_floormod(micros, 1_000_000) * 1000))
    return 0


cdef inline int _pack_header(ds_buf* b, Py_ssize_t n, bint is_map) except -1:
    """A map or array header for n elements; 1 when msgpack's length field cannot hold n."""
    if n > _MAX_LENGTH:
        return 1
    if is_map:
        ds_pack_map(b, n)
    else:
        ds_pack_array(b, n)
    return 0


cdef int _pack_dict(ds_buf* b, object mapping, int depth) except -1:
    cdef Py_ssize_t pos = 0, count = 0, size
    cdef PyObject* key_ref
    cdef PyObject* value_ref
    cdef object key, value  # strong references: packing a value may run Python code
    if depth > _MAX_DEPTH:
        return 1
    if not PyDict_CheckExact(mapping):
        return _pack_dict_items(b, mapping, depth)
    size = PyDict_GET_SIZE(mapping)
    if _pack_header(b, size, True):
        return 1
    while PyDict_Next(mapping, &pos, &key_ref, &value_ref):
        key = <object>key_ref
        value = <object>value_ref
        if not PyUnicode_Check(key) or _pack_text(b, key):
            return 1
        if _pack(b, value, depth + 1):
            return 1
        count += 1
    if count != size or PyDict_GET_SIZE(mapping) != size:
        raise RuntimeError("dictionary changed size during iteration")
    return 0


cdef int _pack_dict_items(ds_buf* b, object mapping, int depth) except -1:
    """A dict subclass: its own items(), as msgpack's packer does (an OrderedDict keeps its
    order)."""
    items = list(mapping.items())
    if _pack_header(b, len(items), True):
        return 1
    for key, value in items:
        if not PyUnicode_Check(key) or _pack_text(b, key):
            return 1
        if _pack(b, value, depth + 1):
            return 1
    return 0


cdef int _pack_sequence(ds_buf* b, object seq, int depth) except -1:
    cdef Py_ssize_t i, n
    cdef object item  # a strong reference: packing an item may run Python code
    if depth > _MAX_DEPTH:
        return 1
    if PyTuple_CheckExact(seq):
        n = PyTuple_GET_SIZE(seq)
        if _pack_header(b, n, False):
            return 1
        for i in range(n):
            if _pack(b, <object>PyTuple_GET_ITEM(seq, i), depth + 1):
                return 1
        return 0
    if not PyList_CheckExact(seq):  # a list or tuple subclass: its own iteration
        seq = list(seq)
    n = PyList_GET_SIZE(seq)
    if _pack_header(b, n, False):
        return 1
    for i in range(n):
        if i >= PyList_GET_SIZE(seq):
            raise RuntimeError("list changed size during iteration")
        item = <object>PyList_GET_ITEM(seq, i)
        if _pack(b, item, depth + 1):
            return 1
    if PyList_GET_SIZE(seq) != n:
        raise RuntimeError("list changed size during iteration")
    return 0


cdef int _pack(ds_buf* b, object value, int depth) except -1:
    cdef type kind = type(value)
    if kind is str:
        return _pack_text(b, value)
    if kind is int:
        return _pack_int(b, value)
    if value is None:
        ds_pack_byte(b, 0xC0)
        return 0
    if kind is bool:
        ds_pack_byte(b, 0xC3 if value is True else 0xC2)
        return 0
    if kind is float:
        ds_pack_double(b, PyFloat_AS_DOUBLE(value))
        return 0
    if kind is dict:
        return _pack_dict(b, value, depth)
    if kind is list or kind is tuple:
        return _pack_sequence(b, value, depth)
    if kind is bytes:
        return _pack_bytes(b, value)
    # Subclasses, in the order msgpack's packer tests them (bool cannot be subclassed).
    if PyLong_Check(value):
        return _pack_int(b, value)
    if PyFloat_Check(value):
        ds_pack_double(b, PyFloat_AS_DOUBLE(value))
        return 0
    if PyBytes_Check(value):
        return _pack_bytes(b, value)
    if PyUnicode_Check(value):
        return _pack_text(b, value)
    if PyDict_Check(value):
        return _pack_dict(b, value, depth)
    if PyList_Check(value) or PyTuple_Check(value):
        return _pack_sequence(b, value, depth)
    if PyDateTime_Check(value):
        return _pack_datetime(b, value)
    return 1


cdef bytes _encode(object data, bint with_header):
    cdef unsigned char stack[_STACK_BYTES]
    cdef ds_buf b
    session = data if PyDict_Check(data) else _as_dict(data)
    ds_buf_init(&b, stack, _STACK_BYTES)
    try:
        if with_header:
            ds_pack_byte(&b, _MAGIC)
            ds_pack_byte(&b, _HEADER_NONE_BYTE)
        if _pack_dict(&b, session, 1):
            _raise_encode_error(session)
        if b.len - (2 if with_header else 0) > _MAX_PACKED:
            _raise_too_large(b.len - (2 if with_header else 0))
        return PyBytes_FromStringAndSize(<char*>b.data, b.len)
    finally:
        ds_buf_free(&b)


@_documented
def pack_session(data):
    return _encode(data, False)


@_documented
def encode_session(data, overhead_bytes=0, compress=True):
    cdef bytes payload = _encode(data, True)
    if type(overhead_bytes) is int and 0 <= overhead_bytes <= _WRITE_UNIT and (
            PyBytes_GET_SIZE(payload) + <Py_ssize_t>overhead_bytes <= _WRITE_UNIT):
        return payload  # one write unit already: nothing to gain
    total = PyBytes_GET_SIZE(payload) + overhead_bytes
    if compress and total > _WRITE_UNIT:
        deflated = zlib.compress(memoryview(payload)[HEADER_BYTES:], ZLIB_LEVEL)
        if write_units(len(deflated) + HEADER_BYTES + overhead_bytes) < write_units(total):
            return _HEADER_ZLIB + deflated
    return payload


# ==============================================================================================
# Codec: decoder
# ==============================================================================================


cdef struct _Reader:
    const unsigned char* pos
    const unsigned char* end
    Py_ssize_t promised  # values announced by the containers still open, not yet started


cdef inline int _need(_Reader* r, Py_ssize_t n) except -1:
    if r.end - r.pos < n:
        raise CorruptSession("session payload is truncated (a length runs past the end)")
    return 0


cdef object _steal(PyObject* new_reference):
    obj = <object>new_reference
    Py_DECREF(obj)
    return obj


cdef int _raise_bad_utf8() except -1:
    if PyErr_ExceptionMatches(UnicodeDecodeError):
        PyErr_Clear()
        raise CorruptSession("session payload has a str that is not valid UTF-8")
    return -1  # another error (MemoryError) is already set: let it through


cdef object _read_str(_Reader* r, Py_ssize_t n):
    _need(r, n)
    cdef PyObject* text = PyUnicode_DecodeUTF8(<const char*>r.pos, n, NULL)
    if text == NULL:
        _raise_bad_utf8()
    r.pos += n
    return _steal(text)


cdef object _read_key(_Reader* r):
    cdef Py_ssize_t n
    _need(r, 1)
    r.promised -= 1
    cdef unsigned char c = r.pos[0]
    r.pos += 1
    if 0xA0 <= c <= 0xBF:
        n = c & 0x1F
    elif c == 0xD9:
        _need(r, 1)
        n = r.pos[0]
        r.pos += 1
    elif c == 0xDA:
        _need(r, 2)
        n = ds_load16(r.pos)
        r.pos += 2
    elif c == 0xDB:
        _need(r, 4)
        n = ds_load32(r.pos)
        r.pos += 4
    else:
        raise CorruptSession(f"session payload has a non-str map key (msgpack type 0x{c:02x})")
    _need(r, n)
    cdef PyObject* key = ds_decode_key(<const char*>r.pos, n)
    if key == NULL:
        _raise_bad_utf8()
    r.pos += n
    return _steal(key)


cdef object _read_map(_Reader* r, Py_ssize_t n, int depth):
    if depth > _MAX_DEPTH:
        raise CorruptSession(f"session payload is nested deeper than {MAX_DEPTH} levels")
    r.promised += 2 * n  # every key and value takes at least one byte: refuse before allocating
    if r.promised > r.end - r.pos:
        raise CorruptSession("session payload is truncated (a map runs past the end)")
    result = ds_new_dict(n)
    cdef Py_ssize_t i
    for i in range(n):
        key = _read_key(r)
        PyDict_SetItem(result, key, _read(r, depth + 1))
    return result


cdef object _read_array(_Reader* r, Py_ssize_t n, int depth):
    if depth > _MAX_DEPTH:
        raise CorruptSession(f"session payload is nested deeper than {MAX_DEPTH} levels")
    r.promised += n
    if r.promised > r.end - r.pos:
        raise CorruptSession("session payload is truncated (an array runs past the end)")
    result = PyList_New(n)
    cdef Py_ssize_t i
    for i in range(n):
        item = _read(r, depth + 1)
        Py_INCREF(item)
        PyList_SET_ITEM(result, i, item)
    return result


cdef object _read_bin(_Reader* r, Py_ssize_t n):
    _need(r, n)
    cdef const char* start = <const char*>r.pos
    r.pos += n
    return PyBytes_FromStringAndSize(start, n)


cdef object _read_ext(_Reader* r, Py_ssize_t n):
    """Only the timestamp extension (type -1, 4/8/12 bytes) is accepted, as an aware UTC datetime."""
    cdef int64_t seconds
    cdef uint64_t data64
    cdef int64_t nanoseconds
    cdef int year, month, day
    _need(r, n + 1)
    cdef signed char code = <signed char>r.pos[0]
    cdef const unsigned char* data = r.pos + 1
    r.pos += n + 1
    if code != -1:
        raise CorruptSession(f"unsupported msgpack extension type {code}")
    if n == 4:
        seconds = ds_load32(data)
        nanoseconds = 0
    elif n == 8:
        data64 = ds_load64(data)
        seconds = <int64_t>(data64 & _LOW_34_BITS)
        nanoseconds = <int64_t>(data64 >> 34)
    elif n == 12:
        nanoseconds = ds_load32(data)
        seconds = <int64_t>ds_load64(data + 4)
    else:
        raise CorruptSession(f"timestamp extension of {n} bytes (expected 4, 8 or 12)")
    # As msgpack's timestamp=3: nanoseconds must be < 10**9; microseconds are truncated.
    if nanoseconds > 999_999_999:
        raise CorruptSession("session payload has a timestamp with nanoseconds >= 10**9")
    if seconds < _MIN_SECONDS or seconds > _MAX_SECONDS:
        raise CorruptSession("session payload has a timestamp outside the datetime range")
    cdef int micros = <int>(nanoseconds // 1000)
    cdef int64_t days = ds_floordiv(seconds, 86400)
    cdef int64_t rest = seconds - days * 86400
    ds_civil_from_days(days, &year, &month, &day)
    return datetime_new(year, month, day, <int>(rest // 3600), <int>(rest // 60 % 60),
                        <int>(rest % 60), micros, _UTC)


cdef object _read(_Reader* r, int depth):
    _need(r, 1)
    r.promised -= 1
    cdef unsigned char c = r.pos[0]
    r.pos += 1
    cdef Py_ssize_t n
    if c <= 0x7F:
        return <long>c
    if c >= 0xE0:
        return <long><signed char>c
    if c <= 0x8F:
        return _read_map(r, c & 0x0F, depth)
    if c <= 0x9F:
        return _read_array(r, c & 0x0F, depth)
    if c <= 0xBF:
        return _read_str(r, c & 0x1F)
    if c == 0xC0:
        return None
    if c == 0xC2:
        return False
    if c == 0xC3:
        return True
    if c == 0xCB:
        _need(r, 8)
        r.pos += 8
        return PyFloat_FromDouble(ds_load_double(r.pos - 8))
    if c == 0xCA:
        _need(r, 4)
        r.pos += 4
        return PyFloat_FromDouble(ds_load_float(r.pos - 4))
    if 0xCC <= c <= 0xD3:  # uint 8/16/32/64, int 8/16/32/64
        n = 1 << ((c - 0xCC) & 3)
        _need(r, n)
        r.pos += n
        if c == 0xCC:
            return <long>(r.pos - 1)[0]
        if c == 0xCD:
            return <long>ds_load16(r.pos - 2)
        if c == 0xCE:
            return PyLong_FromLongLong(ds_load32(r.pos - 4))
        if c == 0xCF:
            return PyLong_FromUnsignedLongLong(ds_load64(r.pos - 8))
        if c == 0xD0:
            return <long><signed char>(r.pos - 1)[0]
        if c == 0xD1:
            return <long><short>ds_load16(r.pos - 2)
        if c == 0xD2:
            return PyLong_FromLongLong(<int>ds_load32(r.pos - 4))
        return PyLong_FromLongLong(<int64_t>ds_load64(r.pos - 8))
    if 0xD9 <= c <= 0xDB:  # str 8/16/32
        n = _read_length(r, 1 << (c - 0xD9))
        return _read_str(r, n)
    if 0xC4 <= c <= 0xC6:  # bin 8/16/32
        n = _read_length(r, 1 << (c - 0xC4))
        return _read_bin(r, n)
    if c == 0xDC or c == 0xDD:
        return _read_array(r, _read_length(r, 2 if c == 0xDC else 4), depth)
    if c == 0xDE or c == 0xDF:
        return _read_map(r, _read_length(r, 2 if c == 0xDE else 4), depth)
    if 0xD4 <= c <= 0xD8:  # fixext 1/2/4/8/16
        return _read_ext(r, 1 << (c - 0xD4))
    if 0xC7 <= c <= 0xC9:  # ext 8/16/32
        return _read_ext(r, _read_length(r, 1 << (c - 0xC7)))
    raise CorruptSession(f"session payload has the reserved msgpack byte 0x{c:02x}")


cdef Py_ssize_t _read_length(_Reader* r, int width) except -1:
    _need(r, width)
    r.pos += width
    if width == 1:
        return (r.pos - 1)[0]
    if width == 2:
        return ds_load16(r.pos - 2)
    return ds_load32(r.pos - 4)


cdef dict _unpack_bytes(const unsigned char* data, Py_ssize_t size):
    cdef _Reader r
    if size > _MAX_PACKED:
        raise CorruptSession(f"session payload is longer than {MAX_PACKED_BYTES} bytes")
    r.pos = data
    r.end = data + size
    r.promised = 1
    _need(&r, 1)
    cdef unsigned char c = r.pos[0]
    if not (0x80 <= c <= 0x8F or c == 0xDE or c == 0xDF):
        raise CorruptSession("session payload is not a map")
    result = _read(&r, 1)
    if r.pos != r.end:
        raise CorruptSession(f"session payload has {r.end - r.pos} trailing bytes")
    return result


cdef dict _unpack_buffer(object body):
    """Any flat byte buffer, as msgpack.unpackb takes it (a strided one is copied first)."""
    cdef Py_buffer view
    if type(body) is bytes:
        return _unpack_bytes(<const unsigned char*>PyBytes_AS_STRING(body),
                             PyBytes_GET_SIZE(body))
    try:
        PyObject_GetBuffer(body, &view, PyBUF_FULL_RO)
    except Exception as exc:
        raise CorruptSession(f"session payload cannot be read as bytes: {exc}") from exc
    try:
        if view.itemsize != 1:
            raise CorruptSession("session payload must be a flat byte buffer")
        if not PyBuffer_IsContiguous(&view, b"C"[0]):
            return _unpack_buffer(memoryview(body).tobytes())
        return _unpack_bytes(<const unsigned char*>view.buf, view.len)
    finally:
        PyBuffer_Release(&view)


@_documented
def unpack_session(body):
    return _unpack_buffer(body)


cdef dict _decode_flat(const unsigned char* data, Py_ssize_t size, object owner):
    if size < 2 or data[0] != _MAGIC:
        raise CorruptSession("session payload has no dynamo-sessions header")
    cdef int version = data[1] >> 4
    cdef int codec = data[1] & 0x0F
    if version != FORMAT_VERSION:
        raise CorruptSession(f"session payload format version {version} is not supported")
    if codec == CODEC_NONE:
        return _unpack_bytes(data + 2, size - 2)
    if codec == CODEC_ZLIB:
        inflated = _inflate(memoryview(owner)[HEADER_BYTES:])
        return _unpack_bytes(<const unsigned char*>PyBytes_AS_STRING(inflated),
                             PyBytes_GET_SIZE(inflated))
    raise CorruptSession(f"session payload codec {codec} is not supported")


@_documented
def decode_session(payload):
    cdef Py_buffer buffer
    if type(payload) is bytes:
        return _decode_flat(<const unsigned char*>PyBytes_AS_STRING(payload),
                            PyBytes_GET_SIZE(payload), payload)
    view = _payload_view(payload)
    PyObject_GetBuffer(view, &buffer, PyBUF_SIMPLE)
    try:
        return _decode_flat(<const unsigned char*>buffer.buf, buffer.len, view)
    finally:
        PyBuffer_Release(&buffer)


# ==============================================================================================
# Item size and capacity units
# ==============================================================================================


cdef Py_ssize_t _utf8_len(object text) except -1:
    """UTF-8 length with surrogates counted as 3 bytes (``surrogatepass``), without encoding."""
    cdef Py_ssize_t i, n, total
    cdef unsigned int kind
    cdef void* data
    cdef Py_UCS4 ch
    if not PyUnicode_Check(text):
        raise TypeError(f"expected a str, not {type(text).__name__}")
    n = PyUnicode_GET_LENGTH(text)
    if PyUnicode_IS_ASCII(text):
        return n
    kind = PyUnicode_KIND(text)
    data = PyUnicode_DATA(text)
    total = n
    for i in range(n):
        ch = PyUnicode_READ(kind, data, i)
        if ch >= 0x80:
            total += 1 if ch < 0x800 else (2 if ch < 0x10000 else 3)
    return total


cdef Py_ssize_t _binary_len(object value) except -1:
    if PyBytes_Check(value) or PyByteArray_Check(value):
        return len(value)
    if PyMemoryView_Check(value):
        return value.nbytes
    if PyUnicode_Check(value):
        return len(value.encode("utf-8"))
    raise TypeError(f"a DynamoDB binary value is bytes, not {type(value).__name__}")


cdef inline bint _is_digit(char c):
    return b"0"[0] <= c <= b"9"[0]


cdef Py_ssize_t _number_size(object text) except -1:
    cdef const char* s
    cdef Py_ssize_t n, i = 0, integral, fraction = 0, leading = 0, trailing = 0, digits
    cdef Py_ssize_t significant, frac_start = 0
    cdef int64_t parity = 0, pairs
    cdef bint negative = False
    if not PyUnicode_Check(text):
        raise TypeError(f"a DynamoDB number is given as a str, not {type(text).__name__}")
    if not PyUnicode_IS_ASCII(text):
        raise ValueError(f"{text!r} is not a number")
    s = <const char*>PyUnicode_DATA(text)
    n = PyUnicode_GET_LENGTH(text)
    if i < n and (s[i] == b"+"[0] or s[i] == b"-"[0]):
        negative = s[i] == b"-"[0]
        i += 1
    cdef Py_ssize_t int_start = i
    while i < n and _is_digit(s[i]):
        i += 1
    integral = i - int_start
    if i < n and s[i] == b"."[0]:
        i += 1
        frac_start = i
        while i < n and _is_digit(s[i]):
            i += 1
        fraction = i - frac_start
    if i < n and (s[i] == b"e"[0] or s[i] == b"E"[0]):
        i += 1
        if i < n and (s[i] == b"+"[0] or s[i] == b"-"[0]):
            i += 1
        if i >= n or not _is_digit(s[i]):
            raise ValueError(f"{text!r} is not a number")
        while i < n and _is_digit(s[i]):
            i += 1
        parity = (s[i - 1] - b"0"[0]) & 1  # only the exponent's parity matters (see below)
    if i != n or integral + fraction == 0:
        raise ValueError(f"{text!r} is not a number")
    digits = integral + fraction
    # Leading and trailing zeros of the digit string integral + fraction.
    while leading < digits and _digit_at(s, int_start, integral, frac_start, leading) == b"0"[0]:
        leading += 1
    if leading == digits:
        return 1
    while _digit_at(s, int_start, integral, frac_start, digits - 1 - trailing) == b"0"[0]:
        trailing += 1
    significant = digits - leading - trailing
    # point = integral + exponent - leading.  Shifting point by 2 shifts both pair indexes by 1,
    # so only its parity enters the difference (this keeps huge exponents exact).
    parity = (parity + integral - leading) & 1
    pairs = ds_floordiv(parity - 1, 2) - ds_floordiv(parity - significant, 2) + 1
    return 1 + pairs + (1 if negative and pairs < _MAX_NUMBER_BYTES - 1 else 0)


cdef inline char _digit_at(const char* s, Py_ssize_t int_start, Py_ssize_t integral,
                           Py_ssize_t frac_start, Py_ssize_t index):
    if index < integral:
        return s[int_start + index]
    return s[frac_start + index - integral]


@_documented
def number_size(text):
    return _number_size(text)


cdef Py_ssize_t _sequence_size(object values, int kind) except -1:
    """Sum of element sizes: kind 0 strings (SS), 1 numbers (NS), 2 binaries (BS), 3 values (L)."""
    cdef Py_ssize_t total = 0, i
    cdef object item
    if PyList_CheckExact(values):
        for i in range(PyList_GET_SIZE(values)):
            total += _element_size(<object>PyList_GET_ITEM(values, i), kind)
        return total
    for item in values:
        total += _element_size(item, kind)
    return total


cdef inline Py_ssize_t _element_size(object item, int kind) except -1:
    if kind == 0:
        return _utf8_len(item)
    if kind == 1:
        return _number_size(item)
    if kind == 2:
        return _binary_len(item)
    return 1 + _attribute_value_size(item)


cdef Py_ssize_t _map_size(object inner) except -1:
    cdef Py_ssize_t total = 3, pos = 0
    cdef PyObject* key
    cdef PyObject* value
    if PyDict_CheckExact(inner):
        while PyDict_Next(inner, &pos, &key, &value):
            total += 1 + _utf8_len(<object>key) + _attribute_value_size(<object>value)
        return total
    if not isinstance(inner, Mapping):
        raise TypeError(f"an M value is a dict, not {type(inner).__name__}")
    for k, v in inner.items():
        total += 1 + _utf8_len(k) + _attribute_value_size(v)
    return total


cdef Py_ssize_t _attribute_value_size(object value) except -1:
    cdef Py_ssize_t pos = 0, n
    cdef PyObject* tag_ptr
    cdef PyObject* inner_ptr
    cdef const char* t
    if PyDict_CheckExact(value):
        if PyDict_GET_SIZE(value) != 1:
            raise TypeError(
                f"an attribute value is a one-key dict like {{'S': ...}}, not {value!r}")
        PyDict_Next(value, &pos, &tag_ptr, &inner_ptr)
        tag = <object>tag_ptr
        inner = <object>inner_ptr
    elif isinstance(value, Mapping) and len(value) == 1:
        for tag, inner in value.items():
            break
    else:
        raise TypeError(f"an attribute value is a one-key dict like {{'S': ...}}, not {value!r}")
    if not (PyUnicode_CheckExact(tag) and PyUnicode_IS_ASCII(tag)):
        if tag in ("S", "B", "N", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"):
            tag = str(tag)  # a str subclass equal to a known tag
        else:
            raise TypeError(f"unknown DynamoDB attribute type {tag!r}")
    t = <const char*>PyUnicode_DATA(tag)
    n = PyUnicode_GET_LENGTH(tag)
    if n == 1:
        if t[0] == b"S"[0]:
            return _utf8_len(inner)
        if t[0] == b"B"[0]:
            return _binary_len(inner)
        if t[0] == b"N"[0]:
            return _number_size(inner)
        if t[0] == b"M"[0]:
            return _map_size(inner)
        if t[0] == b"L"[0]:
            return 3 + _sequence_size(inner, 3)
    elif n == 2 and t[1] == b"S"[0]:
        if t[0] == b"S"[0]:
            return _sequence_size(inner, 0)
        if t[0] == b"N"[0]:
            return _sequence_size(inner, 1)
        if t[0] == b"B"[0]:
            return _sequence_size(inner, 2)
    elif n == 4 and (memcmp(t, b"BOOL", 4) == 0 or memcmp(t, b"NULL", 4) == 0):
        return 1
    raise TypeError(f"unknown DynamoDB attribute type {tag!r}")


@_documented
def attribute_value_size(value):
    return _attribute_value_size(value)


@_documented
def item_size(item):
    cdef Py_ssize_t total = 0, pos = 0
    cdef PyObject* name
    cdef PyObject* value
    if PyDict_CheckExact(item):
        while PyDict_Next(item, &pos, &name, &value):
            total += _utf8_len(<object>name) + _attribute_value_size(<object>value)
        return total
    if not isinstance(item, Mapping):
        raise TypeError(f"an item is a dict of attribute values, not {type(item).__name__}")
    for k, v in item.items():
        total += _utf8_len(k) + _attribute_value_size(v)
    return total


cdef inline long long _c_units(object size, long long unit) except -2:
    """Units of ``unit`` bytes (at least 1) for a size given as an int that fits a C long long;
    -1 for any other size (the caller's Python path); ValueError for a negative one."""
    cdef int overflow = 0
    cdef long long n
    if type(size) is not int:
        return -1
    n = PyLong_AsLongLongAndOverflow(size, &overflow)
    if overflow:
        return -1
    if n < 0:
        raise ValueError("size must be >= 0")
    return 1 if n <= unit else n // unit + (n % unit != 0)


@_documented
def write_units(size):
    cdef long long units = _c_units(size, _WRITE_UNIT)
    if units > 0:
        return units
    if size < 0:
        raise ValueError("size must be >= 0")
    return max(1, -(-size // WRITE_UNIT_BYTES))


@_documented
def read_units(size, consistent=True):
    cdef long long units = _c_units(size, _READ_UNIT)
    if units > 0:
        return <double>units if consistent else units / 2.0
    if size < 0:
        raise ValueError("size must be >= 0")
    big_units = max(1, -(-size // READ_UNIT_BYTES))
    return float(big_units) if consistent else big_units / 2.0


# ==============================================================================================
# Lock-retry backoff
# ==============================================================================================

# The arguments of the last backoff built (exact int / float / str objects) and what
# _rules.backoff_settings answered for them: a store builds every backoff from the same option
# objects, so the shared check runs once, not on every lock wait.
cdef object _last_min = None, _last_max = None, _last_wait = None, _last_mode = None
cdef tuple _last_settings = None


cdef class LockRetryBackoff:
    cdef public unsigned long long min_retry_microseconds
    cdef public unsigned long long max_retry_microseconds
    cdef public double max_wait_seconds
    cdef public str mode
    cdef public long long attempt
    cdef public double deadline
    cdef public double slept_seconds
    cdef bint _exponential
    cdef uint64_t _state
    cdef object _clock
    cdef object _sleep

    def __init__(
        self,
        min_retry_microseconds=10_000,
        max_retry_microseconds=50_000,
        max_wait_seconds=10.0,
        mode="exponential",
        seed=None,
        clock=time.monotonic,
        sleep=time.sleep,
    ):
        global _last_min, _last_max, _last_wait, _last_mode, _last_settings
        if (_last_settings is not None and min_retry_microseconds is _last_min
                and max_retry_microseconds is _last_max and max_wait_seconds is _last_wait
                and mode is _last_mode):
            settings = _last_settings
        else:
            settings = _backoff_settings(  # raises for bad arguments
                min_retry_microseconds, max_retry_microseconds, max_wait_seconds, mode)
            if (type(min_retry_microseconds) is int and type(max_retry_microseconds) is int
                    and type(max_wait_seconds) in (float, int) and type(mode) is str):
                _last_min, _last_max = min_retry_microseconds, max_retry_microseconds
                _last_wait, _last_mode, _last_settings = max_wait_seconds, mode, settings
        (self.min_retry_microseconds, self.max_retry_microseconds, self.max_wait_seconds,
         self.mode, self._exponential) = settings
        # _rules.backoff_state in C: 64 bits from secrets, else the seed modulo 2**64.
        self._state = (secrets.randbits(64) if seed is None
                       else PyLong_AsUnsignedLongLongMask(int(seed)))
        self._clock = clock  # attempt, deadline, slept_seconds: set by start()
        self._sleep = sleep
        self.start()

    cdef inline uint64_t _next_random(self):
        # splitmix64
        self._state += 0x9E3779B97F4A7C15ULL
        cdef uint64_t z = self._state
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
        return z ^ (z >> 31)

    def start(self):
        """Begin a new wait: reset the attempt count and set the deadline from now."""
        self.attempt = 0
        self.slept_seconds = 0.0
        self.deadline = self._clock() + self.max_wait_seconds

    cdef unsigned long long _next_delay(self):
        cdef unsigned long long low = self.min_retry_microseconds
        cdef unsigned long long high = self.max_retry_microseconds
        cdef unsigned long long span
        if self._exponential and self.attempt < 62 and low:
            if low <= (high >> self.attempt):  # min(high, low << attempt) without overflow
                high = low << self.attempt
        self.attempt += 1
        span = high - low + 1
        if span == 0:  # the whole 64-bit range
            return self._next_random()
        return low + self._next_random() % span

    def next_delay_microseconds(self):
        """Draw the next delay (microseconds) of the schedule and count the attempt."""
        return self._next_delay()

    def remaining_seconds(self):
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - self._clock())

    def wait(self):
        """Sleep before the next attempt; ``False`` (without sleeping) once the deadline passed.

        The sleep is the next delay of the schedule, cut so that it ends at the deadline.
        """
        cdef double remaining = self.deadline - self._clock()
        if remaining <= 0:
            return False
        cdef double delay = min(<double>self._next_delay() / 1_000_000, remaining)
        self._sleep(delay)
        self.slept_seconds += delay
        return True


# A cdef class's docstring is fixed when it compiles; this one is the twin's, from _rules.DOCS.
ds_set_type_doc(LockRetryBackoff, _DOCS["LockRetryBackoff"])
