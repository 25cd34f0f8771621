/* The SimHash of word pairs in C: the same value as gateway/registry/fingerprint.py's
 * simhash_of_words(words, 2), without a Python object per pair.
 *
 * Each pair "a b" (the words' UTF-8, one space between) is hashed with BLAKE2b of 8 bytes
 * (RFC 7693, unkeyed), the digest read as a big-endian number; bit i of the result is set
 * when more than half of the pairs' hashes have it set. A single word is one "pair".
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static const uint64_t IV[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

/* The message words' order in each round; rounds 10 and 11 take rows 0 and 1 again. */
static const uint8_t SIGMA[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint64_t rotr64(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

static inline uint64_t load64(const uint8_t *p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

#define G(a, b, c, d, x, y)              \
    do {                                 \
        v[a] = v[a] + v[b] + (x);        \
        v[d] = rotr64(v[d] ^ v[a], 32);  \
        v[c] = v[c] + v[d];              \
        v[b] = rotr64(v[b] ^ v[c], 24);  \
        v[a] = v[a] + v[b] + (y);        \
        v[d] = rotr64(v[d] ^ v[a], 16);  \
        v[c] = v[c] + v[d];              \
        v[b] = rotr64(v[b] ^ v[c], 63);  \
    } while (0)

/* One 128-byte block into the state h; t: the bytes hashed so far, this block included. */
static void compress(uint64_t h[8], const uint8_t block[128], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = IV[i];
    }
    v[12] ^= t;  /* the counter's high word stays 0: a pair is never 2^64 bytes long */
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = SIGMA[r % 10];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

/* BLAKE2b with an 8-byte digest of the bytes a, then (when b is not NULL) a space and b;
 * the digest read as a big-endian number, as struct.unpack(">Q") reads it. */
static uint64_t blake2b_64(const char *a, Py_ssize_t a_len, const char *b, Py_ssize_t b_len) {
    uint64_t h[8];
    uint8_t block[128];
    size_t filled = 0;
    uint64_t total = 0;
    for (int i = 0; i < 8; i++) h[i] = IV[i];
    h[0] ^= 0x01010000ULL ^ 8;  /* digest length 8, no key, fanout and depth 1 */

    const char *pieces[3] = {a, b ? " " : NULL, b};
    size_t lengths[3] = {(size_t)a_len, b ? 1 : 0, b ? (size_t)b_len : 0};
    for (int p = 0; p < 3; p++) {
        const uint8_t *data = (const uint8_t *)pieces[p];
        size_t left = lengths[p];
        while (left > 0) {
            if (filled == 128) {  /* a full block with more to come is not the last */
                total += 128;
                compress(h, block, total, 0);
                filled = 0;
            }
            size_t take = 128 - filled < left ? 128 - filled : left;
            memcpy(block + filled, data, take);
            filled += take;
            data += take;
            left -= take;
        }
    }
    memset(block + filled, 0, 128 - filled);
    total += filled;
    compress(h, block, total, 1);
    return __builtin_bswap64(h[0]);  /* the digest is h[0]'s little-endian bytes */
}

static PyObject *simhash_of_word_pairs(PyObject *module, PyObject *words) {
    if (!PyList_Check(words)) {
        PyErr_SetString(PyExc_TypeError, "words must be a list of str");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(words);
    if (count == 0) return PyLong_FromLong(0);
    Py_ssize_t pairs = count > 1 ? count - 1 : 1;
    Py_ssize_t bits[64] = {0};
    const char *previous = NULL;
    Py_ssize_t previous_len = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *word = PyList_GET_ITEM(words, i);
        if (!PyUnicode_Check(word)) {
            PyErr_SetString(PyExc_TypeError, "words must be a list of str");
            return NULL;
        }
        Py_ssize_t len;
        const char *utf8 = PyUnicode_AsUTF8AndSize(word, &len);
        if (utf8 == NULL) return NULL;
        uint64_t hash;
        if (count == 1) {
            hash = blake2b_64(utf8, len, NULL, 0);
        } else if (i == 0) {
            previous = utf8;
            previous_len = len;
            continue;
        } else {
            hash = blake2b_64(previous, previous_len, utf8, len);
            previous = utf8;
            previous_len = len;
        }
        for (int bit = 0; bit < 64; bit++) bits[bit] += (Py_ssize_t)(hash >> bit & 1);
    }
    uint64_t value = 0;
    for (int bit = 0; bit < 64; bit++) {
        if (bits[bit] * 2 > pairs) value |= 1ULL << bit;
    }
    return PyLong_FromUnsignedLongLong(value);
}

static PyMethodDef methods[] = {
    {"simhash_of_word_pairs", simhash_of_word_pairs, METH_O,
     "The SimHash of a list of words' pairs (a single word is one pair): BLAKE2b-64 per pair, majority per bit."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_simhash", NULL, 0, methods};

PyMODINIT_FUNC PyInit__simhash(void) { return PyModule_Create(&module); }
