# Part of the compiled core ``dynamo_sessions._core_c``, included by ``_core_c.pyx``
# (one extension module: calls between the parts stay C calls).
# Item size and capacity units: number_size, attribute_value_size, item_size, write_units,
# read_units.
# Names it uses (cimports, C declarations, C copies of ``_rules``) are in ``_core_c.pyx``.


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

