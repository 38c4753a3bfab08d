# Part of the compiled core ``dynamo_sessions._core_c``, included by ``_core_c.pyx``
# (one extension module: calls between the parts stay C calls).
# The session codec's encoder (msgpack into a growable C buffer): pack_session, encode_session.
# Names it uses (cimports, C declarations, C copies of ``_rules``) are in ``_core_c.pyx``.


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

