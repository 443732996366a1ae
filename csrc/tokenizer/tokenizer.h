/* Internal pieces of the tokenizer shared by the files of csrc/tokenizer/. Not part of the public API. */
#ifndef NT_TOKENIZER_INTERNAL_H
#define NT_TOKENIZER_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "nemotron.h"

/* ---- utf8.c */

/* Length in bytes of the UTF-8 sequence that starts with byte c (1 for a stray or invalid byte). */
static inline int nt_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xF0 && c < 0xF8) return 4;
    if (c >= 0xE0) return c < 0xF0 ? 3 : 1;
    if (c >= 0xC0) return 2;
    return 1;
}
/* Length of the longest valid UTF-8 prefix of s[0, n) that ends on a character boundary; text given to the
 * tokenizer must be valid throughout (nt_utf8_valid). */
int nt_utf8_valid(const char *s, size_t n);
/* Decodes the character at s (valid UTF-8 of length len). */
uint32_t nt_utf8_decode(const char *s, int len);
/* Rust's char::is_whitespace (Unicode White_Space). */
int nt_unicode_is_whitespace(uint32_t cp);
/* Regex \w: letters, marks, decimal and letter numbers, connector punctuation (unicode_tables.c). */
int nt_unicode_is_word(uint32_t cp);

/* ---- vocab.c: open-addressing hash tables */

/* Maps byte strings (held elsewhere, in `blob`) to ids. */
typedef struct {
    const char *blob;      /* the strings' bytes, owned by the tokenizer */
    const int64_t *offset; /* (n + 1) start of string i in blob */
    int32_t *slots;        /* (capacity) string index, or -1 for empty */
    int32_t *ids;          /* (n) id of string i */
    size_t capacity;       /* a power of two, at least 2 n */
} nt_str_table;

nt_status nt_str_table_build(nt_str_table *table, nt_error *err, const char *blob, const int64_t *offset,
                             const int32_t *ids, int64_t n);
void nt_str_table_free(nt_str_table *table);
/* Returns the id of s[0, len), or -1. */
int32_t nt_str_table_get(const nt_str_table *table, const char *s, size_t len);

/* Maps pairs of ids to (rank, merged id). */
typedef struct {
    uint64_t *keys;     /* (capacity) left << 32 | right, or UINT64_MAX for empty */
    int32_t *ranks;     /* (capacity) */
    int32_t *merged;    /* (capacity) */
    size_t capacity;
} nt_pair_table;

nt_status nt_pair_table_create(nt_pair_table *table, nt_error *err, int64_t n);
void nt_pair_table_free(nt_pair_table *table);
/* Adds a pair unless it is already there (the first rank wins, as in the merges list). */
void nt_pair_table_put(nt_pair_table *table, int32_t left, int32_t right, int32_t rank, int32_t merged);
/* Returns 1 and fills rank and merged when the pair is known. */
int nt_pair_table_get(const nt_pair_table *table, int32_t left, int32_t right, int32_t *rank, int32_t *merged);

/* ---- growable buffers (vocab.c); the functions return -1 when out of memory */
typedef struct {
    char *data;
    size_t len, cap;
} nt_byte_buf;

int nt_buf_reserve(nt_byte_buf *b, size_t want);
int nt_buf_append(nt_byte_buf *b, const char *s, size_t n);

/* ---- output ids */
typedef struct {
    int32_t *data;
    int64_t len, cap;
} nt_id_vec;

nt_status nt_id_vec_push(nt_id_vec *v, nt_error *err, int32_t id);

/* ---- bpe.c */

typedef struct {
    nt_str_table vocab;   /* model piece -> id */
    nt_pair_table merges; /* (left id, right id) -> (rank, merged id) */
    int32_t byte_ids[256];/* id of the piece <0xNN>, or -1 */
    int32_t unk_id;       /* -1 when there is none */
    int byte_fallback;
    int fuse_unk;
    int ignore_merges;
    /* Word boundaries that no merge can cross: before each split character (U+2581 when it is a piece), unless
     * the character before it is one of `glue` (the last characters of left pieces of merges whose right piece
     * starts with the split character). split_len is 0 when splitting is off. */
    char split[4];
    int split_len;
    uint32_t *glue;       /* (n_glue) */
    int64_t n_glue;
} nt_bpe;

/* Finds the safe word boundaries of the vocabulary and merges in bpe (see nt_bpe.split). */
nt_status nt_bpe_init_split(nt_bpe *bpe, nt_error *err, const char *pieces, const int64_t *piece_offsets,
                            const int32_t *id_to_piece, const int32_t *merges, int64_t n_merges);

/* The ids of recently encoded short words, direct-mapped by hash. */
#define NT_BPE_CACHE_SIZE 4096
#define NT_BPE_CACHE_WORD 24
#define NT_BPE_CACHE_IDS 12
typedef struct {
    uint64_t hash;
    uint8_t len, n_ids;  /* len 0: empty slot */
    char word[NT_BPE_CACHE_WORD];
    int32_t ids[NT_BPE_CACHE_IDS];
} nt_bpe_cache_entry;

/* Scratch memory for one thread's calls to nt_bpe_encode, grown as needed. */
typedef struct {
    struct nt_bpe_symbol *symbols;
    size_t symbols_cap;
    struct nt_bpe_candidate *heap;
    size_t heap_cap;
    nt_bpe_cache_entry *cache; /* (NT_BPE_CACHE_SIZE), allocated on first use */
    const volatile int *cancel; /* the current call's cancel flag, or NULL: read before each word and every
                                 * 65536 merges, so that one huge text stops within milliseconds */
} nt_bpe_scratch;

void nt_bpe_scratch_free(nt_bpe_scratch *scratch);
/* Appends to out the ids of text[0, len) (valid UTF-8) as one BPE word: merges may join any two neighbours.
 * The text is cut at boundaries no merge crosses and each part is encoded (or found in the cache) alone,
 * which gives the same ids. */
nt_status nt_bpe_encode(const nt_bpe *bpe, nt_error *err, nt_id_vec *out, nt_bpe_scratch *scratch,
                        const char *text, size_t len);

/* ---- the tokenizer: tokenizer.c builds it, encode.c and decode.c run it */

enum { NT_PASS_RAW = 0, NT_PASS_NORMALIZED = 1 }; /* where added tokens are matched */

/* A byte trie of added tokens, for leftmost-longest matching. Node 0 is the root. */
typedef struct {
    int32_t root[256];    /* the root's child for each first byte, or -1 */
    nt_pair_table edges;  /* (node, byte) -> child node (in `merged`), below the root */
    int32_t *terminal;    /* (n_nodes) index in tok->added of the token that ends at the node, or -1 */
    int64_t n_nodes;
} nt_added_trie;

/* A step of the normalizer, pre-tokenizer or decoder, with copies of its strings. */
typedef struct {
    char *a, *b;         /* "" when absent */
    size_t a_len, b_len;
    char **strings;      /* (n_strings) Split's strings */
    size_t *string_lens; /* (n_strings) */
    int64_t n_strings;
    /* the strings indexed: a position is matched by looking up its next L bytes for each length L the strings
     * have, longest first, not by comparing every string (300 KB against 10,000 literals took 21 s, now 0.5 s) */
    char *split_blob;         /* the strings back to back */
    int64_t *split_offsets;   /* (n_strings + 1) */
    nt_str_table split_table; /* string -> its index */
    size_t *split_lengths;    /* the distinct lengths, longest first */
    int64_t n_split_lengths;
    nt_tokenizer_step step;
} nt_step;

/* One thread's working memory for encoding (encode.c); kept between calls in a pool. */
typedef struct nt_encode_scratch nt_encode_scratch;
void nt_encode_scratch_free(nt_encode_scratch *s);

#define NT_SCRATCH_POOL 16
typedef struct {
    pthread_mutex_t lock;
    nt_encode_scratch *free[NT_SCRATCH_POOL];
    int n_free;
} nt_scratch_pool;

struct nt_tokenizer {
    nt_bpe bpe;
    char *pieces;            /* the model's pieces, concatenated */
    int64_t *piece_offsets;  /* (n_pieces + 1) */
    int32_t *piece_ids;      /* (n_pieces) */
    int64_t n_pieces;
    int64_t n_ids;           /* one more than the largest id of a piece or added token */
    int32_t *id_to_piece;    /* (n_ids) index of the id's model piece, or -1 */
    int32_t *id_to_added;    /* (n_ids) index of the id's added token, or -1 */

    nt_added_token *added;   /* (n_added) contents point into added_blob */
    char *added_blob;
    int64_t n_added;
    nt_added_trie trie[2];   /* the added tokens matched in each pass (NT_PASS_RAW, NT_PASS_NORMALIZED) */

    nt_step *normalizer, *pre_tokenizer, *decoder;
    int64_t n_normalizer, n_pre_tokenizer, n_decoder;
    nt_scratch_pool *pool;
};

#endif
