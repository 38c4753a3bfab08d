# Part of the compiled core ``dynamo_sessions._core_c``, included by ``_core_c.pyx``
# (one extension module: calls between the parts stay C calls).
# The session codec's decoder (a bounds check on every read): unpack_session, decode_session.
# Names it uses (cimports, C declarations, C copies of ``_rules``) are in ``_core_c.pyx``.


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

