/* tuco.core._native: start-up replay's two inner loops in C (the compiled build only; see _native.pyi).
 *
 * decode_plain reads the log's common records (a PUT or DELETE, bare or attributed with the origin the records
 * before it had) straight from the buffer: the checksum over the bytes in place, the key decoded and the value
 * copied once, no slice or call per record. It takes only what the Python decoder (_decoder.py) would take the
 * same way and stops before anything else, which that decoder then judges: a failure is always found there.
 *
 * apply_plain is Store._apply_plain: one entry tuple per PUT, made untracked by the cyclic collector (it holds
 * bytes and ints only, as a collection would find), so the first collection after a replay has nothing to visit.
 *
 * untracked does the same for one tuple the live write path makes (an entry, a history change, an origin): what
 * the next young collection would conclude about it, concluded now, so that collection has nothing to visit.
 *
 * encode_plain is codec.encode_records: a batch's PUT and DELETE records, bare or attributed, framed and checksummed
 * in one pass (the Python loop packs two structs and joins three buffers a record: about 7,000 instructions a
 * write). A value of split_bytes or more stays a buffer of its own, checksummed by the crc32 it is given (ISA-L's:
 * this file's table loop is slower on large buffers).
 *
 * asgi_read_headers is the ASGI app's header list of a key's read (tuco/http/asgi.py's _head), its numbers rendered
 * without %-formatting.
 *
 * render_read and render_written are the native server's two commonest answers (a key's read, a write's), the
 * exact bytes of their %-formats in tuco/http/_wire.py, in one allocation: bytes %-formatting parses its format on
 * every call, about 290 ns of a GET. find_byte and plain_segment are bytes.find without its argument parsing
 * (Python 3.11 parses find's arguments the old way: about 50 ns a call, three calls a request).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* The log format (src/tuco/core/_format.py). */
#define FRAME_SIZE 8     /* length, CRC-32 */
#define HEAD_SIZE 21     /* frame, sequence, type, key length */
#define MIN_PAYLOAD 13   /* sequence, type, key length */
#define ORIGIN_SIZE 9    /* an attributed record's moment and reason */
#define PUT 1
#define DELETE 2
#define ATTRIBUTED 18

static uint32_t crc_table[8][256];

static void
crc_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc_table[0][c & 0xFF] ^ (c >> 8);
            crc_table[t][n] = c;
        }
    }
}

/* zlib's CRC-32 (the same polynomial and result), eight bytes a step. */
static uint32_t
crc32_of(const unsigned char *p, Py_ssize_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
#if PY_BIG_ENDIAN
        lo = __builtin_bswap32(lo);
        hi = __builtin_bswap32(hi);
#endif
        lo ^= c;
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^ crc_table[5][(lo >> 16) & 0xFF] ^
            crc_table[4][lo >> 24] ^ crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n-- > 0) {
        c = crc_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

static inline uint32_t
u32_at(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
u64_at(const unsigned char *p)
{
    return (uint64_t)u32_at(p) | (uint64_t)u32_at(p + 4) << 32;
}

/* Append ``item`` to ``list``, consuming the reference; -1 with an exception set on failure. */
static int
append_stolen(PyObject *list, PyObject *item)
{
    if (item == NULL) {
        return -1;
    }
    int failed = PyList_Append(list, item);
    Py_DECREF(item);
    return failed;
}

PyDoc_STRVAR(crc32_doc, "crc32(data, /)\n--\n\nzlib's CRC-32 of data, as decode_plain computes it.");

static PyObject *
native_crc32(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t c = crc32_of((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

PyDoc_STRVAR(decode_plain_doc,
             "decode_plain(buf, pos, sequence, max_length, keys, values, origins, origin_bytes, origin, /)\n--\n\n"
             "Append the plain writes of buf from pos (sequences from sequence on) to the three lists; return\n"
             "where the first other record starts.");

static PyObject *
native_decode_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "decode_plain takes 9 arguments");
        return NULL;
    }
    PyObject *buffer = args[0], *keys = args[4], *values = args[5], *origins = args[6];
    PyObject *origin_bytes = args[7], *origin = args[8];
    if (!PyBytes_CheckExact(buffer) || !PyList_CheckExact(keys) || !PyList_CheckExact(values) ||
        !PyList_CheckExact(origins) || !PyBytes_CheckExact(origin_bytes)) {
        PyErr_SetString(PyExc_TypeError, "decode_plain: buf and origin_bytes are bytes, the three lists lists");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long long sequence = PyLong_AsUnsignedLongLong(args[2]);
    if (sequence == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t max_length = PyLong_AsSsize_t(args[3]);
    if (max_length == -1 && PyErr_Occurred()) {
        return NULL;
    }
    const unsigned char *buf = (const unsigned char *)PyBytes_AS_STRING(buffer);
    Py_ssize_t size = PyBytes_GET_SIZE(buffer);
    const char *last_origin = PyBytes_AS_STRING(origin_bytes);
    Py_ssize_t origin_length = PyBytes_GET_SIZE(origin_bytes);
    if (pos < 0 || pos > size) {
        PyErr_SetString(PyExc_ValueError, "decode_plain: pos is outside buf");
        return NULL;
    }
    while (size - pos >= HEAD_SIZE) {
        const unsigned char *record = buf + pos;
        Py_ssize_t length = (Py_ssize_t)u32_at(record);
        if (length < MIN_PAYLOAD || length > max_length || length > size - pos - FRAME_SIZE) {
            break; /* impossible or incomplete: the Python decoder says which */
        }
        Py_ssize_t end = pos + FRAME_SIZE + length;
        if (u64_at(record + 8) != sequence) {
            break;
        }
        int kind = record[16];
        Py_ssize_t key_start, key_length;
        PyObject *record_origin = Py_None;
        if (kind == PUT || kind == DELETE) {
            key_start = pos + HEAD_SIZE;
            key_length = (Py_ssize_t)u32_at(record + 17);
        }
        else if (kind == ATTRIBUTED) {
            Py_ssize_t body = pos + HEAD_SIZE;
            Py_ssize_t inner = body + ORIGIN_SIZE + (Py_ssize_t)u32_at(record + 17); /* the principal's length */
            if (origin_length == 0 || inner - body != origin_length || inner + MIN_PAYLOAD > end ||
                memcmp(buf + body, last_origin, (size_t)origin_length) != 0) {
                break; /* another origin (decoded once there), or malformed */
            }
            kind = buf[inner + 8];
            if ((kind != PUT && kind != DELETE) || u64_at(buf + inner) != sequence) {
                break;
            }
            key_start = inner + MIN_PAYLOAD;
            key_length = (Py_ssize_t)u32_at(buf + inner + 9);
            record_origin = origin;
        }
        else {
            break;
        }
        if (key_length > end - key_start || (kind == DELETE && key_start + key_length != end)) {
            break;
        }
        if (crc32_of(record + FRAME_SIZE, length) != u32_at(record + 4)) {
            break;
        }
        Py_ssize_t key_end = key_start + key_length;
        PyObject *key = PyUnicode_DecodeUTF8((const char *)buf + key_start, key_length, NULL);
        if (key == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                return NULL;
            }
            PyErr_Clear();
            break;
        }
        if (append_stolen(keys, key) < 0) {
            return NULL;
        }
        PyObject *value;
        if (kind == PUT) {
            value = PyBytes_FromStringAndSize((const char *)buf + key_end, end - key_end);
        }
        else {
            value = Py_NewRef(Py_None);
        }
        if (append_stolen(values, value) < 0 || PyList_Append(origins, record_origin) < 0) {
            return NULL;
        }
        sequence++;
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* The bytes of ``key`` in UTF-8, without making Python keep its UTF-8 form. */
static Py_ssize_t
utf8_length(PyObject *key)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(key);
    if (PyUnicode_IS_ASCII(key)) {
        return n;
    }
    int kind = PyUnicode_KIND(key);
    const void *data = PyUnicode_DATA(key);
    Py_ssize_t bytes = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    }
    return bytes;
}

PyDoc_STRVAR(apply_plain_doc,
             "apply_plain(data, keys, values, first_sequence, entry_bytes, /)\n--\n\n"
             "Store._apply_plain's loop: each write into data as an entry; return what the store's bytes grow by.");

static PyObject *
native_apply_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "apply_plain takes 5 arguments");
        return NULL;
    }
    PyObject *data = args[0], *keys = args[1], *values = args[2];
    if (!PyDict_CheckExact(data) || !PyList_CheckExact(keys) || !PyList_CheckExact(values) ||
        PyList_GET_SIZE(keys) != PyList_GET_SIZE(values)) {
        PyErr_SetString(PyExc_TypeError, "apply_plain: a dict and two lists of one length");
        return NULL;
    }
    unsigned long long sequence = PyLong_AsUnsignedLongLong(args[3]);
    if (sequence == (unsigned long long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t entry_bytes = PyLong_AsSsize_t(args[4]);
    if (entry_bytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *one = PyLong_FromLong(1);
    long long grown = 0;
    Py_ssize_t count = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < count; i++, sequence++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        PyObject *value = PyList_GET_ITEM(values, i);
        if (!PyUnicode_CheckExact(key) || (value != Py_None && !PyBytes_CheckExact(value))) {
            PyErr_SetString(PyExc_TypeError, "apply_plain: keys are str, values bytes or None");
            goto failed;
        }
        PyObject *old = PyDict_GetItemWithError(data, key); /* borrowed */
        if (old == NULL && PyErr_Occurred()) {
            goto failed;
        }
        if (old != NULL && (!PyTuple_CheckExact(old) || PyTuple_GET_SIZE(old) != 4)) {
            PyErr_SetString(PyExc_TypeError, "apply_plain: an entry is a tuple of four");
            goto failed;
        }
        if (value == Py_None) {
            if (old != NULL) {
                grown -= utf8_length(key) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(old, 0)) + entry_bytes;
                if (PyDict_DelItem(data, key) < 0) {
                    goto failed;
                }
            }
            continue;
        }
        PyObject *revision = PyLong_FromUnsignedLongLong(sequence); /* one int for both revisions of a new key */
        if (revision == NULL) {
            goto failed;
        }
        PyObject *entry = PyTuple_New(4);
        if (entry == NULL) {
            Py_DECREF(revision);
            goto failed;
        }
        PyTuple_SET_ITEM(entry, 0, Py_NewRef(value));
        if (old == NULL) {
            PyTuple_SET_ITEM(entry, 1, Py_NewRef(revision));
            PyTuple_SET_ITEM(entry, 2, revision);
            PyTuple_SET_ITEM(entry, 3, Py_NewRef(one));
            grown += utf8_length(key) + PyBytes_GET_SIZE(value) + entry_bytes;
        }
        else {
            PyObject *version = PyNumber_Add(PyTuple_GET_ITEM(old, 3), one);
            if (version == NULL) {
                Py_DECREF(revision);
                Py_DECREF(entry);
                goto failed;
            }
            PyTuple_SET_ITEM(entry, 1, Py_NewRef(PyTuple_GET_ITEM(old, 1)));
            PyTuple_SET_ITEM(entry, 2, revision);
            PyTuple_SET_ITEM(entry, 3, version);
            grown += PyBytes_GET_SIZE(value) - PyBytes_GET_SIZE(PyTuple_GET_ITEM(old, 0));
        }
        PyObject_GC_UnTrack(entry); /* bytes and ints: what a collection would conclude, without one */
        int failed = PyDict_SetItem(data, key, entry);
        Py_DECREF(entry);
        if (failed < 0) {
            goto failed;
        }
    }
    Py_DECREF(one);
    return PyLong_FromLongLong(grown);
failed:
    Py_DECREF(one);
    return NULL;
}

PyDoc_STRVAR(untracked_doc,
             "untracked(t, /)\n--\n\n"
             "t itself, no longer tracked by the cyclic collector if nothing it holds can be in a cycle.");

/* CPython's own rule for a tuple (_PyTuple_MaybeUntrack): every item is an object the collector never tracks
 * (bytes, str, int, None), or a tuple that is untracked. Anything else (a dict, an instance) may be tracked or
 * become so, and keeps the tuple tracked. */
static PyObject *
native_untracked(PyObject *module, PyObject *t)
{
    (void)module;
    if (PyTuple_CheckExact(t) && PyObject_GC_IsTracked(t)) {
        Py_ssize_t n = PyTuple_GET_SIZE(t);
        Py_ssize_t i = 0;
        for (; i < n; i++) {
            PyObject *item = PyTuple_GET_ITEM(t, i);
            if (PyObject_IS_GC(item) && (!PyTuple_CheckExact(item) || PyObject_GC_IsTracked(item))) {
                break;
            }
        }
        if (i == n) {
            PyObject_GC_UnTrack(t);
        }
    }
    Py_INCREF(t);
    return t;
}

/* -- the log's records ---------------------------------------------------------------------------------------- */

#define PAYLOAD_HEAD 13 /* sequence, type, key length */
#define ORIGIN_HEAD 9   /* an attributed record's moment and reason */

static inline void
put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static inline void
put_u64(unsigned char *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

/* str's UTF-8: its own bytes if ASCII (no copy, *owner NULL), else a new bytes object in *owner (str's cached UTF-8
 * is not used: it would stay on a key the store keeps). NULL with an exception (lone surrogates, as "utf-8" says). */
static const char *
utf8_of(PyObject *text, Py_ssize_t *size, PyObject **owner)
{
    *owner = NULL;
    if (!PyUnicode_Check(text)) {
        PyErr_Format(PyExc_TypeError, "str expected, not %.200s", Py_TYPE(text)->tp_name);
        return NULL;
    }
    if (PyUnicode_IS_ASCII(text)) {
        *size = PyUnicode_GET_LENGTH(text);
        return (const char *)PyUnicode_1BYTE_DATA(text);
    }
    *owner = PyUnicode_AsUTF8String(text);
    if (*owner == NULL) {
        return NULL;
    }
    *size = PyBytes_GET_SIZE(*owner);
    return PyBytes_AS_STRING(*owner);
}

static int
u64_of(PyObject *o, uint64_t *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "int expected, not %.200s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(o);
    return (*out == (uint64_t)-1 && PyErr_Occurred()) ? -1 : 0;
}

static int
byte_of(PyObject *o, unsigned char *out)
{
    uint64_t v;
    if (u64_of(o, &v) < 0) {
        return -1;
    }
    if (v > 255) {
        PyErr_SetString(PyExc_OverflowError, "a record's type or reason is one byte");
        return -1;
    }
    *out = (unsigned char)v;
    return 0;
}

/* One event's record appended to parts (two buffers if its value is split off); 1 if split, 0 if not, -1 failed. */
static int
encode_one(PyObject *event, PyObject *crc, Py_ssize_t split_bytes, PyObject *parts)
{
    if (!PyTuple_Check(event) || PyTuple_GET_SIZE(event) < 8) {
        PyErr_SetString(PyExc_TypeError, "an event is a tuple of eight");
        return -1;
    }
    uint64_t sequence, at = 0;
    unsigned char type, reason = 0;
    if (u64_of(PyTuple_GET_ITEM(event, 0), &sequence) < 0 || byte_of(PyTuple_GET_ITEM(event, 1), &type) < 0) {
        return -1;
    }
    PyObject *value = PyTuple_GET_ITEM(event, 3);
    if (!PyBytes_Check(value)) {
        PyErr_Format(PyExc_TypeError, "a value is bytes, not %.200s", Py_TYPE(value)->tp_name);
        return -1;
    }
    PyObject *origin = PyTuple_GET_ITEM(event, 7);
    PyObject *key_owner = NULL, *by_owner = NULL;
    Py_ssize_t key_size = 0, by_size = 0;
    const char *by = NULL;
    if (origin != Py_None) {
        if (!PyTuple_Check(origin) || PyTuple_GET_SIZE(origin) != 3) {
            PyErr_SetString(PyExc_TypeError, "an origin is a tuple of three");
            return -1;
        }
        if (u64_of(PyTuple_GET_ITEM(origin, 1), &at) < 0 || byte_of(PyTuple_GET_ITEM(origin, 2), &reason) < 0) {
            return -1;
        }
        by = utf8_of(PyTuple_GET_ITEM(origin, 0), &by_size, &by_owner);
        if (by == NULL) {
            return -1;
        }
    }
    const char *key = utf8_of(PyTuple_GET_ITEM(event, 2), &key_size, &key_owner);
    int result = -1;
    if (key == NULL) {
        goto done;
    }
    Py_ssize_t value_size = PyBytes_GET_SIZE(value);
    Py_ssize_t head_size = PAYLOAD_HEAD + key_size + (by == NULL ? 0 : ORIGIN_HEAD + by_size + PAYLOAD_HEAD);
    int split = value_size >= split_bytes;
    if (head_size + value_size > (Py_ssize_t)UINT32_MAX || key_size > (Py_ssize_t)UINT32_MAX ||
        by_size > (Py_ssize_t)UINT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "a record's payload is at most 4 GiB");
        goto done;
    }
    PyObject *record = PyBytes_FromStringAndSize(NULL, FRAME_SIZE + head_size + (split ? 0 : value_size));
    if (record == NULL) {
        goto done;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(record);
    unsigned char *payload = p + FRAME_SIZE;
    unsigned char *at_ = payload;
    put_u64(at_, sequence);
    if (by != NULL) { /* the attributed head, then the record's own payload head */
        at_[8] = ATTRIBUTED;
        put_u32(at_ + 9, (uint32_t)by_size);
        put_u64(at_ + 13, at);
        at_[21] = reason;
        memcpy(at_ + 22, by, (size_t)by_size);
        at_ += 22 + by_size;
        put_u64(at_, sequence);
    }
    at_[8] = type;
    put_u32(at_ + 9, (uint32_t)key_size);
    memcpy(at_ + PAYLOAD_HEAD, key, (size_t)key_size);
    uint32_t checksum;
    if (!split) {
        memcpy(at_ + PAYLOAD_HEAD + key_size, PyBytes_AS_STRING(value), (size_t)value_size);
        checksum = crc32_of(payload, head_size + value_size);
    }
    else {
        PyObject *head_crc = PyLong_FromUnsignedLong(crc32_of(payload, head_size));
        if (head_crc == NULL) {
            Py_DECREF(record);
            goto done;
        }
        PyObject *args[2] = {value, head_crc};
        PyObject *whole = PyObject_Vectorcall(crc, args, 2, NULL);
        Py_DECREF(head_crc);
        unsigned long got = whole == NULL ? 0 : PyLong_AsUnsignedLong(whole);
        Py_XDECREF(whole);
        if (whole == NULL || (got == (unsigned long)-1 && PyErr_Occurred())) {
            Py_DECREF(record);
            goto done;
        }
        checksum = (uint32_t)got;
    }
    put_u32(p, (uint32_t)(head_size + value_size));
    put_u32(p + 4, checksum);
    if (append_stolen(parts, record) < 0 || (split && PyList_Append(parts, value) < 0)) {
        goto done;
    }
    result = split;
done:
    Py_XDECREF(key_owner);
    Py_XDECREF(by_owner);
    return result;
}

PyDoc_STRVAR(encode_plain_doc,
             "encode_plain(events, crc32, split_bytes, /)\n--\n\n"
             "codec.encode_records: the buffers of the events' records in order, and whether a value was split off.");

static PyObject *
native_encode_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 3 || !PyLong_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode_plain takes events, a crc32 and an int");
        return NULL;
    }
    Py_ssize_t split_bytes = PyLong_AsSsize_t(args[2]);
    if (split_bytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *events = PySequence_Fast(args[0], "events must be a sequence");
    if (events == NULL) {
        return NULL;
    }
    PyObject *parts = PyList_New(0);
    int split = 0;
    if (parts != NULL) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(events);
        for (Py_ssize_t i = 0; i < n; i++) {
            int one = encode_one(PySequence_Fast_GET_ITEM(events, i), args[1], split_bytes, parts);
            if (one < 0) {
                Py_CLEAR(parts);
                break;
            }
            split |= one;
        }
    }
    Py_DECREF(events);
    if (parts == NULL) {
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, parts, split ? Py_True : Py_False);
    Py_DECREF(parts);
    return result;
}

/* -- the wire ------------------------------------------------------------------------------------------------ */

#define DIGITS_MAX 21 /* "-9223372036854775808" and room */

/* The decimal digits of v into buf; their count. */
static Py_ssize_t
put_digits(long long v, char *buf)
{
    char reversed[DIGITS_MAX];
    int n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        reversed[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    Py_ssize_t size = 0;
    if (v < 0) {
        buf[size++] = '-';
    }
    while (n > 0) {
        buf[size++] = reversed[--n];
    }
    return size;
}

/* The decimal digits of o (an int that fits a long long) into buf; their count, or -1 with TypeError (not an int,
 * as %d says) or OverflowError (too large: the caller formats it the slow way). */
static Py_ssize_t
decimal(PyObject *o, char *buf)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%%d format: a real number is required, not %.200s", Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "an int beyond 64 bits");
        return -1;
    }
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    return put_digits(v, buf);
}

typedef struct {
    const char *data;
    Py_ssize_t size;
} piece;

/* The pieces joined into one new bytes object. */
static PyObject *
joined(const piece *pieces, int count)
{
    Py_ssize_t total = 0;
    for (int i = 0; i < count; i++) {
        total += pieces[i].size;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(out);
    for (int i = 0; i < count; i++) {
        memcpy(at, pieces[i].data, (size_t)pieces[i].size);
        at += pieces[i].size;
    }
    return out;
}

#define TEXT(s) {s, (Py_ssize_t)(sizeof(s) - 1)}

static int
all_bytes(PyObject *const *args, const int *which, int count)
{
    for (int i = 0; i < count; i++) {
        PyObject *o = args[which[i]];
        if (!PyBytes_CheckExact(o)) {
            PyErr_Format(PyExc_TypeError, "bytes expected, not %.200s", Py_TYPE(o)->tp_name);
            return 0;
        }
    }
    return 1;
}

PyDoc_STRVAR(render_read_doc,
             "render_read(head, etag, revision, created, version, date_tail, body, /)\n--\n\n"
             "A key's read answer: head, the ETag and revision fields, the length, the Date tail and the body.");

static PyObject *
native_render_read(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "render_read takes 7 arguments");
        return NULL;
    }
    static const int buffers[] = {0, 5, 6};
    if (!all_bytes(args, buffers, 3)) {
        return NULL;
    }
    char etag[DIGITS_MAX], revision[DIGITS_MAX], created[DIGITS_MAX], version[DIGITS_MAX], length[DIGITS_MAX];
    Py_ssize_t etag_size = decimal(args[1], etag);
    Py_ssize_t revision_size = etag_size < 0 ? -1 : decimal(args[2], revision);
    Py_ssize_t created_size = revision_size < 0 ? -1 : decimal(args[3], created);
    Py_ssize_t version_size = created_size < 0 ? -1 : decimal(args[4], version);
    if (version_size < 0) {
        return NULL;
    }
    PyObject *body = args[6];
    Py_ssize_t length_size = put_digits((long long)PyBytes_GET_SIZE(body), length);
    const piece pieces[] = {
        {PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0])},
        TEXT("ETag: \""),
        {etag, etag_size},
        TEXT("\"\r\nX-Tuco-Revision: "),
        {revision, revision_size},
        TEXT("\r\nX-Tuco-Create-Revision: "),
        {created, created_size},
        TEXT("\r\nX-Tuco-Version: "),
        {version, version_size},
        TEXT("\r\nContent-Length: "),
        {length, length_size},
        {PyBytes_AS_STRING(args[5]), PyBytes_GET_SIZE(args[5])},
        {PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body)},
    };
    return joined(pieces, (int)(sizeof(pieces) / sizeof(pieces[0])));
}

PyDoc_STRVAR(render_written_doc,
             "render_written(head, etag, revision, date_tail, /)\n--\n\n"
             "A write's answer: head, the ETag and revision fields, a zero length and the Date tail.");

static PyObject *
native_render_written(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "render_written takes 4 arguments");
        return NULL;
    }
    static const int buffers[] = {0, 3};
    if (!all_bytes(args, buffers, 2)) {
        return NULL;
    }
    char etag[DIGITS_MAX], revision[DIGITS_MAX];
    Py_ssize_t etag_size = decimal(args[1], etag);
    Py_ssize_t revision_size = etag_size < 0 ? -1 : decimal(args[2], revision);
    if (revision_size < 0) {
        return NULL;
    }
    const piece pieces[] = {
        {PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0])},
        TEXT("ETag: \""),
        {etag, etag_size},
        TEXT("\"\r\nX-Tuco-Revision: "),
        {revision, revision_size},
        TEXT("\r\nContent-Length: 0"),
        {PyBytes_AS_STRING(args[3]), PyBytes_GET_SIZE(args[3])},
    };
    return joined(pieces, (int)(sizeof(pieces) / sizeof(pieces[0])));
}

/* A (name, digits) pair, quoted if asked: the header's value as the ASGI app sends it. */
static PyObject *
number_pair(PyObject *name, PyObject *number, int quoted)
{
    char digits[DIGITS_MAX + 2];
    Py_ssize_t size = decimal(number, digits + quoted);
    if (size < 0) {
        return NULL;
    }
    if (quoted) {
        digits[0] = '"';
        digits[size + 1] = '"';
        size += 2;
    }
    PyObject *value = PyBytes_FromStringAndSize(digits, size);
    if (value == NULL) {
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, name, value);
    Py_DECREF(value);
    return pair;
}

static PyObject *name_length, *name_etag, *name_revision, *name_created, *name_version;

PyDoc_STRVAR(asgi_read_headers_doc,
             "asgi_read_headers(pairs, length, etag, revision, created, version, /)\n--\n\n"
             "[(b'content-length', length), *pairs, (b'etag', b'\"etag\"'), (b'x-tuco-revision', revision), "
             "(b'x-tuco-create-revision', created), (b'x-tuco-version', version)], the numbers in decimal.");

static PyObject *
native_asgi_read_headers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 6 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "asgi_read_headers takes a list and five ints");
        return NULL;
    }
    PyObject *pairs = args[0];
    Py_ssize_t static_count = PyList_GET_SIZE(pairs);
    PyObject *headers = PyList_New(static_count + 5);
    if (headers == NULL) {
        return NULL;
    }
    PyObject *first = number_pair(name_length, args[1], 0);
    if (first == NULL) {
        Py_DECREF(headers);
        return NULL;
    }
    PyList_SET_ITEM(headers, 0, first);
    for (Py_ssize_t i = 0; i < static_count; i++) {
        PyList_SET_ITEM(headers, i + 1, Py_NewRef(PyList_GET_ITEM(pairs, i)));
    }
    PyObject *const names[] = {name_etag, name_revision, name_created, name_version};
    for (int i = 0; i < 4; i++) {
        PyObject *pair = number_pair(names[i], args[i + 2], i == 0);
        if (pair == NULL) {
            Py_DECREF(headers); /* the slots not yet set are NULL: list dealloc skips them */
            return NULL;
        }
        PyList_SET_ITEM(headers, static_count + 1 + i, pair);
    }
    return headers;
}

PyDoc_STRVAR(find_byte_doc,
             "find_byte(data, byte, /)\n--\n\n"
             "data.find(bytes([byte])): the index of the first byte equal to byte, or -1.");

static PyObject *
native_find_byte(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "find_byte takes bytes and an int");
        return NULL;
    }
    long byte = PyLong_AsLong(args[1]);
    if (byte == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (byte < 0 || byte > 255) {
        PyErr_SetString(PyExc_ValueError, "byte must be in range(0, 256)");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(args[0]);
    const char *found = memchr(data, (int)byte, (size_t)PyBytes_GET_SIZE(args[0]));
    return PyLong_FromSsize_t(found == NULL ? -1 : found - data);
}

PyDoc_STRVAR(plain_segment_doc,
             "plain_segment(segment, /)\n--\n\n"
             "Whether a key's path segment is its key's UTF-8 as it is: not empty, no '%' or '/', not '.' or '..'.");

static PyObject *
native_plain_segment(PyObject *module, PyObject *segment)
{
    (void)module;
    if (!PyBytes_Check(segment)) {
        PyErr_SetString(PyExc_TypeError, "plain_segment takes bytes");
        return NULL;
    }
    const char *data = PyBytes_AS_STRING(segment);
    size_t size = (size_t)PyBytes_GET_SIZE(segment);
    int plain = size > 0 && memchr(data, '%', size) == NULL && memchr(data, '/', size) == NULL &&
                !(data[0] == '.' && (size == 1 || (size == 2 && data[1] == '.')));
    return PyBool_FromLong(plain);
}

static PyMethodDef native_methods[] = {
    {"crc32", (PyCFunction)native_crc32, METH_O, crc32_doc},
    {"decode_plain", (PyCFunction)(void (*)(void))native_decode_plain, METH_FASTCALL, decode_plain_doc},
    {"apply_plain", (PyCFunction)(void (*)(void))native_apply_plain, METH_FASTCALL, apply_plain_doc},
    {"untracked", (PyCFunction)native_untracked, METH_O, untracked_doc},
    {"encode_plain", (PyCFunction)(void (*)(void))native_encode_plain, METH_FASTCALL, encode_plain_doc},
    {"render_read", (PyCFunction)(void (*)(void))native_render_read, METH_FASTCALL, render_read_doc},
    {"render_written", (PyCFunction)(void (*)(void))native_render_written, METH_FASTCALL, render_written_doc},
    {"asgi_read_headers", (PyCFunction)(void (*)(void))native_asgi_read_headers, METH_FASTCALL, asgi_read_headers_doc},
    {"find_byte", (PyCFunction)(void (*)(void))native_find_byte, METH_FASTCALL, find_byte_doc},
    {"plain_segment", (PyCFunction)native_plain_segment, METH_O, plain_segment_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    "tuco.core._native",
    "The compiled build's C helpers: start-up replay's inner loops, untracked tuples, the commonest answers' bytes.",
    0,
    native_methods,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    crc_init();
    name_length = PyBytes_FromString("content-length");
    name_etag = PyBytes_FromString("etag");
    name_revision = PyBytes_FromString("x-tuco-revision");
    name_created = PyBytes_FromString("x-tuco-create-revision");
    name_version = PyBytes_FromString("x-tuco-version");
    if (name_length == NULL || name_etag == NULL || name_revision == NULL || name_created == NULL ||
        name_version == NULL) {
        return NULL;
    }
    return PyModule_Create(&native_module);
}
