/* Open-addressing hash tables (byte strings to ids: the vocabulary; id pairs to merges) and growable buffers. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static size_t capacity_for(int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    return cap;
}

nt_status nt_str_table_build(nt_str_table *table, nt_error *err, const char *blob, const int64_t *offset,
                             const int32_t *ids, int64_t n) {
    memset(table, 0, sizeof *table);
    if (n < 0 || n > INT32_MAX / 2) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "vocabulary of %lld strings", (long long)n);
    table->blob = blob;
    table->offset = offset;
    table->capacity = capacity_for(n);
    table->slots = malloc(table->capacity * sizeof *table->slots);
    table->ids = malloc(((size_t)n + 1) * sizeof *table->ids);
    if (table->slots == NULL || table->ids == NULL) {
        nt_str_table_free(table);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the vocabulary table");
    }
    memset(table->slots, 0xFF, table->capacity * sizeof *table->slots);
    size_t mask = table->capacity - 1;
    for (int64_t i = 0; i < n; i++) {
        const char *s = blob + offset[i];
        size_t len = (size_t)(offset[i + 1] - offset[i]);
        table->ids[i] = ids[i];
        size_t h = (size_t)hash_bytes(s, len) & mask;
        for (;; h = (h + 1) & mask) {
            int32_t j = table->slots[h];
            if (j < 0) {
                table->slots[h] = (int32_t)i;
                break;
            }
            /* a duplicate string keeps its first id */
            if ((size_t)(offset[j + 1] - offset[j]) == len && memcmp(blob + offset[j], s, len) == 0) break;
        }
    }
    return NT_OK;
}

void nt_str_table_free(nt_str_table *table) {
    free(table->slots);
    free(table->ids);
    memset(table, 0, sizeof *table);
}

int32_t nt_str_table_get(const nt_str_table *table, const char *s, size_t len) {
    if (table->slots == NULL) return -1;
    size_t mask = table->capacity - 1;
    for (size_t h = (size_t)hash_bytes(s, len) & mask;; h = (h + 1) & mask) {
        int32_t j = table->slots[h];
        if (j < 0) return -1;
        const int64_t *o = table->offset;
        if ((size_t)(o[j + 1] - o[j]) == len && memcmp(table->blob + o[j], s, len) == 0) return table->ids[j];
    }
}

nt_status nt_pair_table_create(nt_pair_table *table, nt_error *err, int64_t n) {
    memset(table, 0, sizeof *table);
    if (n < 0 || n > INT32_MAX / 2) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "%lld merges", (long long)n);
    table->capacity = capacity_for(n);
    table->keys = malloc(table->capacity * sizeof *table->keys);
    table->ranks = malloc(table->capacity * sizeof *table->ranks);
    table->merged = malloc(table->capacity * sizeof *table->merged);
    if (table->keys == NULL || table->ranks == NULL || table->merged == NULL) {
        nt_pair_table_free(table);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the merges table");
    }
    memset(table->keys, 0xFF, table->capacity * sizeof *table->keys);
    return NT_OK;
}

void nt_pair_table_free(nt_pair_table *table) {
    free(table->keys);
    free(table->ranks);
    free(table->merged);
    memset(table, 0, sizeof *table);
}

void nt_pair_table_put(nt_pair_table *table, int32_t left, int32_t right, int32_t rank, int32_t merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = table->capacity - 1;
    for (size_t h = (size_t)hash_u64(key) & mask;; h = (h + 1) & mask) {
        if (table->keys[h] == key) return;
        if (table->keys[h] == UINT64_MAX) {
            table->keys[h] = key;
            table->ranks[h] = rank;
            table->merged[h] = merged;
            return;
        }
    }
}

int nt_pair_table_get(const nt_pair_table *table, int32_t left, int32_t right, int32_t *rank, int32_t *merged) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = table->capacity - 1;
    for (size_t h = (size_t)hash_u64(key) & mask;; h = (h + 1) & mask) {
        if (table->keys[h] == key) {
            *rank = table->ranks[h];
            *merged = table->merged[h];
            return 1;
        }
        if (table->keys[h] == UINT64_MAX) return 0;
    }
}

nt_status nt_id_vec_push(nt_id_vec *v, nt_error *err, int32_t id) {
    if (v->len == v->cap) {
        int64_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *data = realloc(v->data, (size_t)cap * sizeof *data);
        if (data == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for token ids");
        v->data = data;
        v->cap = cap;
    }
    v->data[v->len++] = id;
    return NT_OK;
}

int nt_buf_reserve(nt_byte_buf *b, size_t want) {
    if (want <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int nt_buf_append(nt_byte_buf *b, const char *s, size_t n) {
    if (nt_buf_reserve(b, b->len + n + 1)) return -1; /* data is never NULL after this */
    if (n > 0) memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}
