/* Byte-level helpers of the compiled session core (ext/_core_c.pyx).
 *
 * Kept in C because they are small, branchy and called once per value: big-endian loads and
 * stores, a growable output buffer that starts on the caller's stack, msgpack headers written
 * exactly as the msgpack package's packer picks them, a cache of short map-key strings for the
 * decoder, and civil-date arithmetic for the timestamp extension.
 */
#ifndef DYNAMO_SESSIONS_CORE_C_H
#define DYNAMO_SESSIONS_CORE_C_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---- big-endian loads and stores --------------------------------------------------------- */

static inline void ds_store16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = (unsigned char)v; }
static inline void ds_store32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = (unsigned char)v;
}
static inline void ds_store64(unsigned char *p, uint64_t v) {
    ds_store32(p, (uint32_t)(v >> 32)); ds_store32(p + 4, (uint32_t)v);
}
static inline uint16_t ds_load16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t ds_load32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t ds_load64(const unsigned char *p) {
    return ((uint64_t)ds_load32(p) << 32) | ds_load32(p + 4);
}
static inline double ds_load_double(const unsigned char *p) {
    uint64_t bits = ds_load64(p); double d; memcpy(&d, &bits, 8); return d;
}
static inline double ds_load_float(const unsigned char *p) {
    uint32_t bits = ds_load32(p); float f; memcpy(&f, &bits, 4); return (double)f;
}

/* ---- growable output buffer -------------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    int heap;  /* data was allocated here (else it is the caller's stack buffer) */
} ds_buf;

static void ds_buf_init(ds_buf *b, unsigned char *stack, Py_ssize_t size) {
    b->data = stack; b->len = 0; b->cap = size; b->heap = 0;
}

static void ds_buf_free(ds_buf *b) {
    if (b->heap) PyMem_Free(b->data);
    b->heap = 0;
}

static int ds_grow(ds_buf *b, Py_ssize_t need) {
    Py_ssize_t cap = b->cap * 2;
    unsigned char *p;
    if (need > PY_SSIZE_T_MAX / 2 - b->len) { PyErr_NoMemory(); return -1; }
    if (cap < b->len + need) cap = b->len + need;
    if (b->heap) {
        p = (unsigned char *)PyMem_Realloc(b->data, cap);
    } else {
        p = (unsigned char *)PyMem_Malloc(cap);
        if (p) memcpy(p, b->data, b->len);
    }
    if (!p) { PyErr_NoMemory(); return -1; }
    b->data = p; b->cap = cap; b->heap = 1;
    return 0;
}

/* Room for n more bytes; returns where they go, or NULL with MemoryError set. */
static inline unsigned char *ds_reserve(ds_buf *b, Py_ssize_t n) {
    if (b->cap - b->len < n && ds_grow(b, n) < 0) return NULL;
    return b->data + b->len;
}

/* ---- msgpack writers (same choices as msgpack's pack_template.h) ------------------------- */

static inline int ds_pack_uint(ds_buf *b, uint64_t v) {
    unsigned char *p = ds_reserve(b, 9);
    if (!p) return -1;
    if (v < 0x80) { p[0] = (unsigned char)v; b->len += 1; }
    else if (v < 0x100) { p[0] = 0xcc; p[1] = (unsigned char)v; b->len += 2; }
    else if (v < 0x10000) { p[0] = 0xcd; ds_store16(p + 1, (uint16_t)v); b->len += 3; }
    else if (v < 0x100000000ULL) { p[0] = 0xce; ds_store32(p + 1, (uint32_t)v); b->len += 5; }
    else { p[0] = 0xcf; ds_store64(p + 1, v); b->len += 9; }
    return 0;
}

static inline int ds_pack_int(ds_buf *b, int64_t v) {
    unsigned char *p;
    if (v >= 0) return ds_pack_uint(b, (uint64_t)v);
    p = ds_reserve(b, 9);
    if (!p) return -1;
    if (v >= -32) { p[0] = (unsigned char)(int8_t)v; b->len += 1; }
    else if (v >= -128) { p[0] = 0xd0; p[1] = (unsigned char)(int8_t)v; b->len += 2; }
    else if (v >= -32768) { p[0] = 0xd1; ds_store16(p + 1, (uint16_t)(int16_t)v); b->len += 3; }
    else if (v >= -2147483648LL) { p[0] = 0xd2; ds_store32(p + 1, (uint32_t)(int32_t)v); b->len += 5; }
    else { p[0] = 0xd3; ds_store64(p + 1, (uint64_t)v); b->len += 9; }
    return 0;
}

static inline int ds_pack_byte(ds_buf *b, unsigned char c) {
    unsigned char *p = ds_reserve(b, 1);
    if (!p) return -1;
    p[0] = c; b->len += 1;
    return 0;
}

static inline int ds_pack_double(ds_buf *b, double d) {
    uint64_t bits;
    unsigned char *p = ds_reserve(b, 9);
    if (!p) return -1;
    memcpy(&bits, &d, 8);
    p[0] = 0xcb; ds_store64(p + 1, bits); b->len += 9;
    return 0;
}

/* A header (1, 3 or 5 bytes) then n raw bytes, in one reservation. */
static int ds_pack_sized(ds_buf *b, const char *raw, Py_ssize_t n,
                         unsigned char fix_base, Py_ssize_t fix_limit,
                         unsigned char tag8, unsigned char tag16, unsigned char tag32) {
    unsigned char *p = ds_reserve(b, n + 5);
    if (!p) return -1;
    if (n < fix_limit) { p[0] = fix_base | (unsigned char)n; p += 1; b->len += 1; }
    else if (tag8 && n < 0x100) { p[0] = tag8; p[1] = (unsigned char)n; p += 2; b->len += 2; }
    else if (n < 0x10000) { p[0] = tag16; ds_store16(p + 1, (uint16_t)n); p += 3; b->len += 3; }
    else { p[0] = tag32; ds_store32(p + 1, (uint32_t)n); p += 5; b->len += 5; }
    if (n) memcpy(p, raw, n);
    b->len += n;
    return 0;
}

/* str: fixstr / str8 / str16 / str32 (str8 is allowed: the packer runs with use_bin_type).
 * Short strings (nearly every key and most values) take the one-branch fixstr path. */
static inline int ds_pack_str(ds_buf *b, const char *raw, Py_ssize_t n) {
    unsigned char *p;
    if (n < 32) {
        p = ds_reserve(b, n + 1);
        if (!p) return -1;
        p[0] = 0xa0 | (unsigned char)n;
        memcpy(p + 1, raw, n);
        b->len += n + 1;
        return 0;
    }
    return ds_pack_sized(b, raw, n, 0xa0, 32, 0xd9, 0xda, 0xdb);
}

/* The UTF-8 bytes of a str: compact ASCII strings are read in place (no call), others go
 * through PyUnicode_AsUTF8AndSize (NULL with UnicodeEncodeError for a lone surrogate). */
static inline const char *ds_utf8(PyObject *text, Py_ssize_t *n) {
    if (PyUnicode_IS_COMPACT_ASCII(text)) {
        *n = PyUnicode_GET_LENGTH(text);
        return (const char *)(((PyASCIIObject *)text) + 1);
    }
    return PyUnicode_AsUTF8AndSize(text, n);
}

/* bin8 / bin16 / bin32 (no fix form). */
static int ds_pack_bin(ds_buf *b, const char *raw, Py_ssize_t n) {
    return ds_pack_sized(b, raw, n, 0, 0, 0xc4, 0xc5, 0xc6);
}

static inline int ds_pack_container_header(ds_buf *b, Py_ssize_t n, unsigned char fix_base,
                                    unsigned char tag16, unsigned char tag32) {
    unsigned char *p = ds_reserve(b, 5);
    if (!p) return -1;
    if (n < 16) { p[0] = fix_base | (unsigned char)n; b->len += 1; }
    else if (n < 0x10000) { p[0] = tag16; ds_store16(p + 1, (uint16_t)n); b->len += 3; }
    else { p[0] = tag32; ds_store32(p + 1, (uint32_t)n); b->len += 5; }
    return 0;
}

static inline int ds_pack_array(ds_buf *b, Py_ssize_t n) { return ds_pack_container_header(b, n, 0x90, 0xdc, 0xdd); }
static inline int ds_pack_map(ds_buf *b, Py_ssize_t n) { return ds_pack_container_header(b, n, 0x80, 0xde, 0xdf); }

/* Timestamp extension (type -1) in the 32-, 64- or 96-bit form msgpack's packer picks. */
static int ds_pack_timestamp(ds_buf *b, int64_t seconds, uint32_t nanoseconds) {
    unsigned char *p = ds_reserve(b, 15);
    if (!p) return -1;
    if ((seconds >> 34) == 0) {
        uint64_t data64 = ((uint64_t)nanoseconds << 34) | (uint64_t)seconds;
        if ((data64 & 0xffffffff00000000ULL) == 0) {
            p[0] = 0xd6; p[1] = 0xff; ds_store32(p + 2, (uint32_t)data64); b->len += 6;
        } else {
            p[0] = 0xd7; p[1] = 0xff; ds_store64(p + 2, data64); b->len += 10;
        }
    } else {
        p[0] = 0xc7; p[1] = 12; p[2] = 0xff;
        ds_store32(p + 3, nanoseconds); ds_store64(p + 7, (uint64_t)seconds); b->len += 15;
    }
    return 0;
}

/* ---- decoder: short map keys are cached (session dicts repeat the same few keys) -------- */

#define DS_KEY_CACHE_SLOTS 1024
#define DS_KEY_CACHE_MAX_LEN 32
static PyObject *ds_key_cache[DS_KEY_CACHE_SLOTS];

/* A new reference to the str of the n UTF-8 bytes at p, or NULL with an exception set. */
static PyObject *ds_decode_key(const char *p, Py_ssize_t n) {
    uint32_t h = 2166136261u;
    Py_ssize_t i;
    PyObject *s, **slot;
    if (n > DS_KEY_CACHE_MAX_LEN) return PyUnicode_DecodeUTF8(p, n, NULL);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c & 0x80) return PyUnicode_DecodeUTF8(p, n, NULL);
        h = (h ^ c) * 16777619u;
    }
    slot = &ds_key_cache[(h ^ (uint32_t)n) & (DS_KEY_CACHE_SLOTS - 1)];
    s = *slot;
    if (s != NULL && PyUnicode_GET_LENGTH(s) == n && memcmp(PyUnicode_DATA(s), p, n) == 0) {
        Py_INCREF(s);
        return s;
    }
    s = PyUnicode_New(n, 127);
    if (s == NULL) return NULL;
    memcpy(PyUnicode_DATA(s), p, n);
    if (PyObject_Hash(s) == -1) { Py_DECREF(s); return NULL; }  /* cached inside the str */
    Py_XSETREF(*slot, s);
    Py_INCREF(s);
    return s;
}

static PyObject *ds_new_dict(Py_ssize_t n) {
#if PY_VERSION_HEX < 0x030D0000
    return _PyDict_NewPresized(n);
#else
    (void)n;
    return PyDict_New();
#endif
}

/* ---- civil dates (Howard Hinnant's algorithms), for the timestamp extension ------------- */

static inline int64_t ds_days_from_civil(int64_t y, int64_t m, int64_t d) {
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static inline void ds_civil_from_days(int64_t z, int *year, int *month, int *day) {
    int64_t era, doe, yoe, y, doy, mp, d, m;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp + (mp < 10 ? 3 : -9);
    *year = (int)(y + (m <= 2));
    *month = (int)m;
    *day = (int)d;
}

/* Floor division and modulo for a positive divisor. */
static inline int64_t ds_floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
static inline int64_t ds_floormod(int64_t a, int64_t b) { return a - ds_floordiv(a, b) * b; }

/* Give a static extension type the docstring ``doc``: with no tp_doc, type.__doc__ reads the
   type's dict (Cython fixes a cdef class's docstring at compile time; the shared text is only
   known at import). */
static int ds_set_type_doc(PyObject *type, PyObject *doc) {
    PyTypeObject *t = (PyTypeObject *)type;
    if (!PyType_Check(type) || t->tp_doc != NULL || t->tp_dict == NULL) {
        PyErr_SetString(PyExc_TypeError, "a type without a compiled docstring was expected");
        return -1;
    }
    if (PyDict_SetItemString(t->tp_dict, "__doc__", doc) < 0)
        return -1;
    PyType_Modified(t);
    return 0;
}

#endif
