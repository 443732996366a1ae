/* The tokenizer: building its tables from an nt_tokenizer_spec, encoding (added tokens, normalizer, Metaspace,
 * BPE) and decoding (pieces, then the decoder chain). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

typedef struct encode_scratch encode_scratch;
#define SCRATCH_POOL 16

/* Encoding scratch memory (with its word cache) kept between calls; calls may come from several threads. */
typedef struct {
    pthread_mutex_t lock;
    encode_scratch *free[SCRATCH_POOL];
    int n_free;
} scratch_pool;

enum { PASS_RAW = 0, PASS_NORMALIZED = 1 };

typedef struct {
    char *a, *b; /* copies of the spec's strings, "" when absent */
    size_t a_len, b_len;
    char **strings;      /* (n_strings) copies for Split, longest first */
    size_t *string_lens; /* (n_strings) */
    int64_t n_strings;
    nt_tokenizer_step step;
} step_copy;

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
    /* For each pass, the added tokens matched in it ordered by first byte, longest first:
     * by_first[pass][c] .. by_first[pass][c + 1] index into order[pass]. */
    int32_t *order[2];
    int32_t by_first[2][257];

    step_copy *normalizer, *pre_tokenizer, *decoder;
    int64_t n_normalizer, n_pre_tokenizer, n_decoder;
    scratch_pool *pool;
};

static void encode_scratch_free(encode_scratch *s);

/* ---------------------------------------------------------------- building */

static nt_status copy_steps(step_copy **out, nt_error *err, const nt_tokenizer_step *steps, int64_t n,
                            const char *what) {
    *out = NULL;
    if (n < 0 || n > 1024 || (n > 0 && steps == NULL))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "%s: %lld steps", what, (long long)n);
    if (n == 0) return NT_OK;
    step_copy *copies = calloc((size_t)n, sizeof *copies);
    if (copies == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the %s", what);
    *out = copies;
    for (int64_t i = 0; i < n; i++) {
        const nt_tokenizer_step *s = &steps[i];
        if ((unsigned)s->type >= NT_TOKENIZER_STEP_COUNT)
            return nt_error_set(err, NT_ERROR_UNSUPPORTED, "%s: unknown step type %d", what, (int)s->type);
        const char *a = s->a ? s->a : "", *b = s->b ? s->b : "";
        copies[i].step = *s;
        copies[i].a_len = strlen(a);
        copies[i].b_len = strlen(b);
        copies[i].a = malloc(copies[i].a_len + 1);
        copies[i].b = malloc(copies[i].b_len + 1);
        if (copies[i].a == NULL || copies[i].b == NULL)
            return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the %s", what);
        memcpy(copies[i].a, a, copies[i].a_len + 1);
        memcpy(copies[i].b, b, copies[i].b_len + 1);
        if (!nt_utf8_valid(a, copies[i].a_len) || !nt_utf8_valid(b, copies[i].b_len))
            return nt_error_set(err, NT_ERROR_FORMAT, "%s: a string is not valid UTF-8", what);
        int one_char = copies[i].a_len > 0 && nt_utf8_len((unsigned char)a[0]) == (int)copies[i].a_len;
        if (s->type == NT_TOKENIZER_STEP_SPLIT) {
            if (s->n_strings < 1 || s->n_strings > 1 << 20 || s->strings == NULL)
                return nt_error_set(err, NT_ERROR_FORMAT, "%s: Split needs 1 to 2^20 strings", what);
            step_copy *c = &copies[i];
            c->strings = calloc((size_t)s->n_strings, sizeof *c->strings);
            c->string_lens = calloc((size_t)s->n_strings, sizeof *c->string_lens);
            if (c->strings == NULL || c->string_lens == NULL)
                return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the %s", what);
            c->n_strings = s->n_strings;
            for (int64_t k = 0; k < s->n_strings; k++) {
                const char *str = s->strings[k] ? s->strings[k] : "";
                size_t len = strlen(str);
                if (len == 0 || !nt_utf8_valid(str, len))
                    return nt_error_set(err, NT_ERROR_FORMAT, "%s: Split string %lld is empty or not UTF-8", what, (long long)k);
                c->strings[k] = malloc(len + 1);
                if (c->strings[k] == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the %s", what);
                memcpy(c->strings[k], str, len + 1);
                c->string_lens[k] = len;
            }
            /* longest first, so the first match at a position is the longest (insertion sort; they are few) */
            for (int64_t k = 1; k < c->n_strings; k++) {
                char *x = c->strings[k];
                size_t xl = c->string_lens[k];
                int64_t j = k - 1;
                while (j >= 0 && c->string_lens[j] < xl) {
                    c->strings[j + 1] = c->strings[j];
                    c->string_lens[j + 1] = c->string_lens[j];
                    j--;
                }
                c->strings[j + 1] = x;
                c->string_lens[j + 1] = xl;
            }
        }
        switch (s->type) {
        case NT_TOKENIZER_STEP_REPLACE:
            if (copies[i].a_len == 0) return nt_error_set(err, NT_ERROR_FORMAT, "%s: Replace with an empty pattern", what);
            break;
        case NT_TOKENIZER_STEP_METASPACE:
            if (!one_char) return nt_error_set(err, NT_ERROR_FORMAT, "%s: Metaspace replacement must be one character", what);
            if ((unsigned)s->prepend_scheme > NT_PREPEND_SCHEME_NEVER)
                return nt_error_set(err, NT_ERROR_FORMAT, "%s: unknown prepend_scheme %d", what, (int)s->prepend_scheme);
            break;
        case NT_TOKENIZER_STEP_TRIM:
        case NT_TOKENIZER_STEP_COLLAPSE:
            if (!one_char) return nt_error_set(err, NT_ERROR_FORMAT, "%s: the repeated string must be one character", what);
            break;
        case NT_TOKENIZER_STEP_REPLACE_PREFIX:
            if (copies[i].a_len == 0) return nt_error_set(err, NT_ERROR_FORMAT, "%s: empty prefix to replace", what);
            break;
        case NT_TOKENIZER_STEP_STRIP:
            if (!one_char) return nt_error_set(err, NT_ERROR_FORMAT, "%s: Strip content must be one character", what);
            if (s->start < 0 || s->stop < 0) return nt_error_set(err, NT_ERROR_FORMAT, "%s: negative Strip count", what);
            break;
        default: break;
        }
    }
    return NT_OK;
}

static void free_steps(step_copy *steps, int64_t n) {
    if (steps == NULL) return;
    for (int64_t i = 0; i < n; i++) {
        free(steps[i].a);
        free(steps[i].b);
        for (int64_t k = 0; k < steps[i].n_strings; k++) free(steps[i].strings[k]);
        free(steps[i].strings);
        free(steps[i].string_lens);
    }
    free(steps);
}

void nt_tokenizer_free(nt_tokenizer *tok) {
    if (tok == NULL) return;
    nt_str_table_free(&tok->bpe.vocab);
    nt_pair_table_free(&tok->bpe.merges);
    free(tok->bpe.glue);
    free(tok->pieces);
    free(tok->piece_offsets);
    free(tok->piece_ids);
    free(tok->id_to_piece);
    free(tok->id_to_added);
    free(tok->added);
    free(tok->added_blob);
    free(tok->order[0]);
    free(tok->order[1]);
    free_steps(tok->normalizer, tok->n_normalizer);
    free_steps(tok->pre_tokenizer, tok->n_pre_tokenizer);
    free_steps(tok->decoder, tok->n_decoder);
    if (tok->pool != NULL) {
        for (int i = 0; i < tok->pool->n_free; i++) encode_scratch_free(tok->pool->free[i]);
        pthread_mutex_destroy(&tok->pool->lock);
        free(tok->pool);
    }
    free(tok);
}

/* Added token a sorts before b: by first byte, then longest first, then by index. */
static int added_before(const nt_added_token *added, int32_t a, int32_t b) {
    unsigned char ca = (unsigned char)added[a].content[0], cb = (unsigned char)added[b].content[0];
    if (ca != cb) return ca < cb;
    if (added[a].content_len != added[b].content_len) return added[a].content_len > added[b].content_len;
    return a < b;
}

/* Orders the added tokens of each pass by first byte, longest first (insertion sort: they are few). */
static void index_added(nt_tokenizer *tok) {
    for (int pass = 0; pass < 2; pass++) {
        int32_t *order = tok->order[pass];
        int64_t n = 0;
        for (int64_t i = 0; i < tok->n_added; i++)
            if ((tok->added[i].normalized != 0) == (pass == PASS_NORMALIZED)) order[n++] = (int32_t)i;
        for (int64_t i = 1; i < n; i++) {
            int32_t x = order[i];
            int64_t j = i - 1;
            while (j >= 0 && added_before(tok->added, x, order[j])) {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = x;
        }
        int64_t k = 0;
        for (int c = 0; c < 257; c++) {
            while (k < n && (unsigned char)tok->added[order[k]].content[0] < c) k++;
            tok->by_first[pass][c] = (int32_t)k;
        }
    }
}

nt_status nt_tokenizer_create(nt_tokenizer **out, nt_error *err, const nt_tokenizer_spec *spec) {
    *out = NULL;
    if (spec->n_pieces < 0 || spec->n_pieces > INT32_MAX / 4 || spec->n_merges < 0 || spec->n_merges > INT32_MAX / 4 ||
        spec->n_added < 0 || spec->n_added > 1 << 20)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "tokenizer sizes out of range");
    if (spec->n_pre_tokenizer > 2)
        return nt_error_set(err, NT_ERROR_UNSUPPORTED, "at most a Metaspace and a Split as pre-tokenizers");
    nt_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the tokenizer");
    tok->pool = calloc(1, sizeof *tok->pool);
    if (tok->pool == NULL) {
        free(tok);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the tokenizer");
    }
    pthread_mutex_init(&tok->pool->lock, NULL);
    nt_status st = NT_OK;
#define FAIL(...)                              \
    do {                                       \
        st = nt_error_set(err, __VA_ARGS__);   \
        goto fail;                             \
    } while (0)

    /* pieces */
    int64_t np = spec->n_pieces;
    if (spec->piece_offsets[0] != 0) FAIL(NT_ERROR_FORMAT, "piece offsets must start at 0");
    for (int64_t i = 0; i < np; i++)
        if (spec->piece_offsets[i + 1] < spec->piece_offsets[i]) FAIL(NT_ERROR_FORMAT, "piece offsets decrease at %lld", (long long)i);
    size_t blob_len = (size_t)spec->piece_offsets[np];
    tok->pieces = malloc(blob_len + 1);
    tok->piece_offsets = malloc(((size_t)np + 1) * sizeof *tok->piece_offsets);
    tok->piece_ids = malloc(((size_t)np + 1) * sizeof *tok->piece_ids);
    if (tok->pieces == NULL || tok->piece_offsets == NULL || tok->piece_ids == NULL)
        FAIL(NT_ERROR_OUT_OF_MEMORY, "out of memory for %lld pieces", (long long)np);
    memcpy(tok->pieces, spec->pieces, blob_len);
    memcpy(tok->piece_offsets, spec->piece_offsets, ((size_t)np + 1) * sizeof *tok->piece_offsets);
    memcpy(tok->piece_ids, spec->piece_ids, (size_t)np * sizeof *tok->piece_ids);
    tok->n_pieces = np;
    if (!nt_utf8_valid(tok->pieces, blob_len)) FAIL(NT_ERROR_FORMAT, "the vocabulary is not valid UTF-8");

    int64_t n_ids = 0;
    for (int64_t i = 0; i < np; i++) {
        if (tok->piece_ids[i] < 0) FAIL(NT_ERROR_FORMAT, "negative id %d in the vocabulary", tok->piece_ids[i]);
        if (tok->piece_ids[i] + (int64_t)1 > n_ids) n_ids = tok->piece_ids[i] + (int64_t)1;
    }
    for (int64_t i = 0; i < spec->n_added; i++) {
        const nt_added_token *a = &spec->added[i];
        if (a->id < 0) FAIL(NT_ERROR_FORMAT, "negative id %d for an added token", a->id);
        if (a->content_len == 0 || a->content == NULL) FAIL(NT_ERROR_FORMAT, "added token %d is empty", a->id);
        if (a->id + (int64_t)1 > n_ids) n_ids = a->id + (int64_t)1;
    }
    tok->n_ids = n_ids;
    tok->id_to_piece = malloc(((size_t)n_ids + 1) * sizeof *tok->id_to_piece);
    tok->id_to_added = malloc(((size_t)n_ids + 1) * sizeof *tok->id_to_added);
    if (tok->id_to_piece == NULL || tok->id_to_added == NULL) FAIL(NT_ERROR_OUT_OF_MEMORY, "out of memory for the id tables");
    memset(tok->id_to_piece, 0xFF, (size_t)n_ids * sizeof *tok->id_to_piece);
    memset(tok->id_to_added, 0xFF, (size_t)n_ids * sizeof *tok->id_to_added);
    for (int64_t i = np - 1; i >= 0; i--) tok->id_to_piece[tok->piece_ids[i]] = (int32_t)i;

    /* the BPE model */
    nt_bpe *bpe = &tok->bpe;
    if ((st = nt_str_table_build(&bpe->vocab, err, tok->pieces, tok->piece_offsets, tok->piece_ids, np)) != NT_OK) goto fail;
    bpe->byte_fallback = spec->byte_fallback;
    bpe->fuse_unk = spec->fuse_unk;
    bpe->ignore_merges = spec->ignore_merges;
    bpe->unk_id = spec->unk_id;
    if (bpe->unk_id >= n_ids)
        FAIL(NT_ERROR_FORMAT, "unknown token id %d is not in the vocabulary", bpe->unk_id);
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
        bpe->byte_ids[b] = nt_str_table_get(&bpe->vocab, name, 6);
    }
    if ((st = nt_pair_table_create(&bpe->merges, err, spec->n_merges)) != NT_OK) goto fail;
    char *concat = NULL;
    size_t concat_cap = 0;
    for (int64_t r = 0; r < spec->n_merges; r++) {
        int32_t left = spec->merges[2 * r], right = spec->merges[2 * r + 1];
        if (left < 0 || left >= n_ids || right < 0 || right >= n_ids || tok->id_to_piece[left] < 0 ||
            tok->id_to_piece[right] < 0) {
            free(concat);
            FAIL(NT_ERROR_FORMAT, "merge %lld names an id that is not a piece", (long long)r);
        }
        int32_t li = tok->id_to_piece[left], ri = tok->id_to_piece[right];
        size_t llen = (size_t)(tok->piece_offsets[li + 1] - tok->piece_offsets[li]);
        size_t rlen = (size_t)(tok->piece_offsets[ri + 1] - tok->piece_offsets[ri]);
        if (llen + rlen > concat_cap) {
            concat_cap = 2 * (llen + rlen);
            char *p = realloc(concat, concat_cap);
            if (p == NULL) {
                free(concat);
                FAIL(NT_ERROR_OUT_OF_MEMORY, "out of memory for the merges");
            }
            concat = p;
        }
        memcpy(concat, tok->pieces + tok->piece_offsets[li], llen);
        memcpy(concat + llen, tok->pieces + tok->piece_offsets[ri], rlen);
        int32_t merged = nt_str_table_get(&bpe->vocab, concat, llen + rlen);
        if (merged < 0) {
            free(concat);
            FAIL(NT_ERROR_FORMAT, "merge %lld: the merged piece is not in the vocabulary", (long long)r);
        }
        nt_pair_table_put(&bpe->merges, left, right, (int32_t)r, merged);
    }
    free(concat);
    if ((st = nt_bpe_init_split(bpe, err, tok->pieces, tok->piece_offsets, tok->id_to_piece, spec->merges,
                                spec->n_merges)) != NT_OK)
        goto fail;

    /* added tokens */
    size_t added_bytes = 0;
    for (int64_t i = 0; i < spec->n_added; i++) added_bytes += spec->added[i].content_len;
    tok->n_added = spec->n_added;
    tok->added = calloc((size_t)spec->n_added + 1, sizeof *tok->added);
    tok->added_blob = malloc(added_bytes + 1);
    tok->order[0] = malloc(((size_t)spec->n_added + 1) * sizeof(int32_t));
    tok->order[1] = malloc(((size_t)spec->n_added + 1) * sizeof(int32_t));
    if (tok->added == NULL || tok->added_blob == NULL || tok->order[0] == NULL || tok->order[1] == NULL)
        FAIL(NT_ERROR_OUT_OF_MEMORY, "out of memory for the added tokens");
    size_t at = 0;
    for (int64_t i = 0; i < spec->n_added; i++) {
        const nt_added_token *a = &spec->added[i];
        if (!nt_utf8_valid(a->content, a->content_len)) FAIL(NT_ERROR_FORMAT, "added token %d is not valid UTF-8", a->id);
        memcpy(tok->added_blob + at, a->content, a->content_len);
        tok->added[i] = *a;
        tok->added[i].content = tok->added_blob + at;
        at += a->content_len;
        tok->id_to_added[a->id] = (int32_t)i;
    }
    index_added(tok);

    if ((st = copy_steps(&tok->normalizer, err, spec->normalizer, spec->n_normalizer, "normalizer")) != NT_OK) goto fail;
    tok->n_normalizer = spec->n_normalizer;
    if ((st = copy_steps(&tok->pre_tokenizer, err, spec->pre_tokenizer, spec->n_pre_tokenizer, "pre_tokenizer")) != NT_OK) goto fail;
    tok->n_pre_tokenizer = spec->n_pre_tokenizer;
    if ((st = copy_steps(&tok->decoder, err, spec->decoder, spec->n_decoder, "decoder")) != NT_OK) goto fail;
    tok->n_decoder = spec->n_decoder;
    for (int64_t i = 0; i < tok->n_normalizer; i++) {
        nt_tokenizer_step_type t = tok->normalizer[i].step.type;
        if (t != NT_TOKENIZER_STEP_PREPEND && t != NT_TOKENIZER_STEP_REPLACE && t != NT_TOKENIZER_STEP_TRIM &&
            t != NT_TOKENIZER_STEP_COLLAPSE && t != NT_TOKENIZER_STEP_REPLACE_PREFIX)
            FAIL(NT_ERROR_UNSUPPORTED, "normalizer step %lld is not a normalizer", (long long)i);
    }
    for (int64_t i = 0; i < tok->n_pre_tokenizer; i++) {
        nt_tokenizer_step_type t = tok->pre_tokenizer[i].step.type;
        if (!(t == NT_TOKENIZER_STEP_METASPACE && i == 0) && t != NT_TOKENIZER_STEP_SPLIT)
            FAIL(NT_ERROR_UNSUPPORTED, "the pre-tokenizers must be a Metaspace, a Split, or a Metaspace then a Split");
    }
    if (tok->n_pre_tokenizer == 2 && tok->pre_tokenizer[1].step.type != NT_TOKENIZER_STEP_SPLIT)
        FAIL(NT_ERROR_UNSUPPORTED, "the pre-tokenizers must be a Metaspace, a Split, or a Metaspace then a Split");
    for (int64_t i = 0; i < tok->n_decoder; i++) {
        nt_tokenizer_step_type t = tok->decoder[i].step.type;
        if (t == NT_TOKENIZER_STEP_PREPEND || t == NT_TOKENIZER_STEP_TRIM || t == NT_TOKENIZER_STEP_COLLAPSE ||
            t == NT_TOKENIZER_STEP_REPLACE_PREFIX || t == NT_TOKENIZER_STEP_SPLIT)
            FAIL(NT_ERROR_UNSUPPORTED, "decoder step %lld is not a decoder", (long long)i);
    }
#undef FAIL
    *out = tok;
    return NT_OK;
fail:
    nt_tokenizer_free(tok);
    return st;
}

/* ---------------------------------------------------------------- encoding */

typedef struct {
    char *data;
    size_t len, cap;
} byte_buf;

static int buf_reserve(byte_buf *b, size_t want) {
    if (want <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want) cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_append(byte_buf *b, const char *s, size_t n) {
    if (buf_reserve(b, b->len + n + 1)) return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

/* One thread's working memory for encoding. */
struct encode_scratch {
    nt_bpe_scratch bpe;
    byte_buf norm[2]; /* the normalizer's ping-pong buffers */
    byte_buf meta;    /* the Metaspace output */
};

static void encode_scratch_free(encode_scratch *s) {
    if (s == NULL) return;
    nt_bpe_scratch_free(&s->bpe);
    free(s->norm[0].data);
    free(s->norm[1].data);
    free(s->meta.data);
    free(s);
}

static encode_scratch *scratch_acquire(const nt_tokenizer *tok) {
    encode_scratch *s = NULL;
    pthread_mutex_lock(&tok->pool->lock);
    if (tok->pool->n_free > 0) s = tok->pool->free[--tok->pool->n_free];
    pthread_mutex_unlock(&tok->pool->lock);
    return s != NULL ? s : calloc(1, sizeof *s);
}

static void scratch_release(const nt_tokenizer *tok, encode_scratch *s) {
    if (s == NULL) return;
    /* large buffers from a huge text are not kept */
    if (s->meta.cap > (1 << 20) || s->norm[0].cap > (1 << 20) || s->norm[1].cap > (1 << 20) ||
        s->bpe.symbols_cap > (1 << 18)) {
        encode_scratch_free(s);
        return;
    }
    pthread_mutex_lock(&tok->pool->lock);
    if (tok->pool->n_free < SCRATCH_POOL) {
        tok->pool->free[tok->pool->n_free++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&tok->pool->lock);
    encode_scratch_free(s);
}

static uint32_t char_before(const char *text, size_t pos, size_t *start) {
    size_t i = pos;
    while (i > 0 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    *start = i;
    return nt_utf8_decode(text + i, nt_utf8_len((unsigned char)text[i]));
}

/* Finds in text[from, len) the leftmost, then longest, added token of `pass`. Returns its index in
 * tok->added, or -1; *start and *end delimit the match with the whitespace it strips. */
static int64_t find_added(const nt_tokenizer *tok, int pass, const char *text, size_t len, size_t from,
                          size_t *start, size_t *end) {
    const int32_t *first = tok->by_first[pass];
    if (first[256] == 0) return -1;
    size_t i = from;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        int32_t k = first[c], k_end = first[c + 1];
        if (k == k_end) {
            i++;
            continue;
        }
        int64_t hit = -1;
        for (; k < k_end; k++) {
            const nt_added_token *a = &tok->added[tok->order[pass][k]];
            if (a->content_len <= len - i && memcmp(text + i, a->content, a->content_len) == 0) {
                hit = tok->order[pass][k];
                break;
            }
        }
        if (hit < 0) {
            i++;
            continue;
        }
        const nt_added_token *a = &tok->added[hit];
        size_t s = i, e = i + a->content_len, cs;
        if (a->single_word) {
            int word_before = s > 0 && nt_unicode_is_word(char_before(text, s, &cs));
            int word_after = e < len && nt_unicode_is_word(nt_utf8_decode(text + e, nt_utf8_len((unsigned char)text[e])));
            if (word_before || word_after) {
                i = e; /* the matcher resumes after a rejected match, as tokenizers' does */
                continue;
            }
        }
        if (a->lstrip)
            while (s > from && nt_unicode_is_whitespace(char_before(text, s, &cs))) s = cs;
        if (a->rstrip)
            while (e < len) {
                int l = nt_utf8_len((unsigned char)text[e]);
                if (!nt_unicode_is_whitespace(nt_utf8_decode(text + e, l))) break;
                e += (size_t)l;
            }
        *start = s;
        *end = e;
        return hit;
    }
    return -1;
}

#define OOM(what) nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory %s", what)

/* BPE on one word, after isolating the Split step's strings when there is one. */
static nt_status encode_word(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, encode_scratch *s,
                             const char *text, size_t len) {
    const step_copy *split = NULL;
    if (tok->n_pre_tokenizer > 0 && tok->pre_tokenizer[tok->n_pre_tokenizer - 1].step.type == NT_TOKENIZER_STEP_SPLIT)
        split = &tok->pre_tokenizer[tok->n_pre_tokenizer - 1];
    if (split == NULL) return nt_bpe_encode(&tok->bpe, err, out, &s->bpe, text, len);
    size_t start = 0;
    nt_status st;
    for (size_t i = 0; i < len;) {
        size_t match = 0;
        for (int64_t k = 0; k < split->n_strings && match == 0; k++)
            if (split->string_lens[k] <= len - i && memcmp(text + i, split->strings[k], split->string_lens[k]) == 0)
                match = split->string_lens[k];
        if (match == 0) {
            i++;
            continue;
        }
        if (i > start && (st = nt_bpe_encode(&tok->bpe, err, out, &s->bpe, text + start, i - start)) != NT_OK) return st;
        if ((st = nt_bpe_encode(&tok->bpe, err, out, &s->bpe, text + i, match)) != NT_OK) return st;
        i += match;
        start = i;
    }
    return start < len ? nt_bpe_encode(&tok->bpe, err, out, &s->bpe, text + start, len - start) : NT_OK;
}

/* The pre-tokenizers and BPE on one chunk of normalized text; `first` when the chunk begins the input. */
static nt_status encode_pretokenized(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, encode_scratch *s,
                                     const char *text, size_t len, int first) {
    if (len == 0) return NT_OK;
    if (tok->n_pre_tokenizer == 0 || tok->pre_tokenizer[0].step.type != NT_TOKENIZER_STEP_METASPACE)
        return encode_word(tok, err, out, s, text, len);
    const step_copy *m = &tok->pre_tokenizer[0];
    byte_buf *b = &s->meta;
    b->len = 0;
    if (buf_reserve(b, len * m->a_len + m->a_len + 1)) return OOM("in the pre-tokenizer");
    nt_prepend_scheme scheme = m->step.prepend_scheme;
    int starts = (text[0] == ' ') || (len >= m->a_len && memcmp(text, m->a, m->a_len) == 0);
    if (!starts && (scheme == NT_PREPEND_SCHEME_ALWAYS || (scheme == NT_PREPEND_SCHEME_FIRST && first))) {
        memcpy(b->data, m->a, m->a_len);
        b->len = m->a_len;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(b->data + b->len, m->a, m->a_len);
            b->len += m->a_len;
        } else {
            b->data[b->len++] = text[i];
        }
    }
    if (!m->step.split) return encode_word(tok, err, out, s, b->data, b->len);
    /* split: each word begins at a replacement character */
    size_t word = 0;
    for (size_t i = m->a_len; i + m->a_len <= b->len; i++) {
        if (memcmp(b->data + i, m->a, m->a_len) == 0) {
            nt_status st = encode_word(tok, err, out, s, b->data + word, i - word);
            if (st != NT_OK) return st;
            word = i;
            i += m->a_len - 1;
        }
    }
    return encode_word(tok, err, out, s, b->data + word, b->len - word);
}

/* Applies the normalizer to text[0, len); returns the result in one of s->norm (or text itself). */
static nt_status normalize(const nt_tokenizer *tok, nt_error *err, encode_scratch *s, const char *text, size_t len,
                           const char **out, size_t *out_len) {
    const char *cur = text;
    size_t cur_len = len;
    for (int64_t k = 0; k < tok->n_normalizer; k++) {
        const step_copy *st = &tok->normalizer[k];
        byte_buf *b = &s->norm[k & 1];
        b->len = 0;
        if (st->step.type == NT_TOKENIZER_STEP_PREPEND) {
            if (cur_len == 0) continue;
            if (buf_append(b, st->a, st->a_len) || buf_append(b, cur, cur_len)) return OOM("in the normalizer");
        } else if (st->step.type == NT_TOKENIZER_STEP_TRIM) {
            size_t lo = 0, hi = cur_len;
            while (lo + st->a_len <= hi && memcmp(cur + lo, st->a, st->a_len) == 0) lo += st->a_len;
            while (hi >= lo + st->a_len && memcmp(cur + hi - st->a_len, st->a, st->a_len) == 0) hi -= st->a_len;
            if (buf_append(b, cur + lo, hi - lo)) return OOM("in the normalizer");
        } else if (st->step.type == NT_TOKENIZER_STEP_COLLAPSE) {
            size_t i = 0;
            while (i < cur_len) {
                size_t run = 0;
                while (i + (run + 1) * st->a_len <= cur_len && memcmp(cur + i + run * st->a_len, st->a, st->a_len) == 0)
                    run++;
                if (run >= 2) {
                    if (buf_append(b, st->b, st->b_len)) return OOM("in the normalizer");
                    i += run * st->a_len;
                } else {
                    size_t n = run == 1 ? st->a_len : 1;
                    if (buf_append(b, cur + i, n)) return OOM("in the normalizer");
                    i += n;
                }
            }
        } else if (st->step.type == NT_TOKENIZER_STEP_REPLACE_PREFIX) {
            int hit = cur_len >= st->a_len && memcmp(cur, st->a, st->a_len) == 0;
            if ((hit && buf_append(b, st->b, st->b_len)) || buf_append(b, cur + (hit ? st->a_len : 0), cur_len - (hit ? st->a_len : 0)))
                return OOM("in the normalizer");
        } else { /* Replace */
            size_t i = 0, last = 0;
            while (i + st->a_len <= cur_len) {
                if (memcmp(cur + i, st->a, st->a_len) == 0) {
                    if (buf_append(b, cur + last, i - last) || buf_append(b, st->b, st->b_len)) return OOM("in the normalizer");
                    i += st->a_len;
                    last = i;
                } else {
                    i++;
                }
            }
            if (buf_append(b, cur + last, cur_len - last)) return OOM("in the normalizer");
        }
        cur = b->data;
        cur_len = b->len;
    }
    *out = cur;
    *out_len = cur_len;
    return NT_OK;
}

/* A chunk of raw text between added tokens: normalize, split on normalized added tokens, encode the rest. */
static nt_status encode_chunk(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, encode_scratch *s,
                              const char *text, size_t len, int first) {
    if (len == 0) return NT_OK;
    const char *norm = NULL;
    size_t norm_len = 0;
    nt_status st = normalize(tok, err, s, text, len, &norm, &norm_len);
    if (st != NT_OK) return st;
    size_t pos = 0, ms, me;
    for (;;) {
        int64_t hit = find_added(tok, PASS_NORMALIZED, norm, norm_len, pos, &ms, &me);
        size_t stop = hit >= 0 ? ms : norm_len;
        if ((st = encode_pretokenized(tok, err, out, s, norm + pos, stop - pos, first && pos == 0)) != NT_OK) return st;
        if (hit < 0) return NT_OK;
        if ((st = nt_id_vec_push(out, err, tok->added[hit].id)) != NT_OK) return st;
        pos = me;
    }
}

static nt_status encode_one(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, encode_scratch *s,
                            const char *text, size_t len) {
    if (!nt_utf8_valid(text, len)) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "the text is not valid UTF-8");
    size_t pos = 0, ms, me;
    nt_status st;
    for (;;) {
        int64_t hit = find_added(tok, PASS_RAW, text, len, pos, &ms, &me);
        size_t stop = hit >= 0 ? ms : len;
        if ((st = encode_chunk(tok, err, out, s, text + pos, stop - pos, pos == 0)) != NT_OK) return st;
        if (hit < 0) return NT_OK;
        if ((st = nt_id_vec_push(out, err, tok->added[hit].id)) != NT_OK) return st;
        pos = me;
    }
}

nt_status nt_tokenizer_encode(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                              const char *text, size_t len) {
    *ids = NULL;
    *n_ids = 0;
    encode_scratch *s = scratch_acquire(tok);
    if (s == NULL) return OOM("for encoding");
    nt_id_vec out = {0};
    nt_status st = encode_one(tok, err, &out, s, text, len);
    scratch_release(tok, s);
    if (st != NT_OK) {
        free(out.data);
        return st;
    }
    *ids = out.data;
    *n_ids = out.len;
    return NT_OK;
}

typedef struct {
    const nt_tokenizer *tok;
    const char *const *texts;
    const size_t *lens;
    nt_id_vec *results; /* (B) */
    nt_status status;   /* the first failure, written once under `failed` */
    nt_error err;
    int failed;         /* atomic flag: set by the first failing thread */
} batch_ctx;

static void encode_range(void *arg, int64_t begin, int64_t end) {
    batch_ctx *ctx = arg;
    encode_scratch *s = scratch_acquire(ctx->tok);
    for (int64_t b = begin; b < end; b++) {
        nt_error e;
        nt_status st = s == NULL ? nt_error_set(&e, NT_ERROR_OUT_OF_MEMORY, "out of memory for encoding")
                                 : encode_one(ctx->tok, &e, &ctx->results[b], s, ctx->texts[b], ctx->lens[b]);
        if (st != NT_OK) {
            if (__atomic_exchange_n(&ctx->failed, 1, __ATOMIC_ACQ_REL) == 0) {
                ctx->err = e;
                ctx->status = st;
            }
            break;
        }
    }
    scratch_release(ctx->tok, s);
}

nt_status nt_tokenizer_encode_batch(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *offsets,
                                    const char *const *texts, const size_t *lens, int64_t B,
                                    nt_threadpool *pool) {
    *ids = NULL;
    if (B < 0) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "batch size %lld", (long long)B);
    batch_ctx ctx = {tok, texts, lens, calloc((size_t)B + 1, sizeof(nt_id_vec)), NT_OK, {0}, 0};
    if (ctx.results == NULL) return OOM("for the batch");
    size_t total_bytes = 0;
    for (int64_t b = 0; b < B; b++) total_bytes += lens[b];
    if (pool != NULL && B > 1 && total_bytes > (1 << 16)) {
        int64_t grain = B / (8 * (int64_t)nt_threadpool_size(pool));
        nt_threadpool_parallel_for(pool, encode_range, &ctx, B, grain > 0 ? grain : 1);
    } else {
        encode_range(&ctx, 0, B);
    }
    nt_status st = ctx.status;
    if (st != NT_OK) {
        if (err != NULL) *err = ctx.err;
    } else {
        int64_t total = 0;
        for (int64_t b = 0; b < B; b++) total += ctx.results[b].len;
        *ids = malloc(((size_t)total + 1) * sizeof **ids);
        if (*ids == NULL) {
            st = OOM("for the batch's ids");
        } else {
            offsets[0] = 0;
            for (int64_t b = 0; b < B; b++) {
                if (ctx.results[b].len > 0)
                    memcpy(*ids + offsets[b], ctx.results[b].data, (size_t)ctx.results[b].len * sizeof **ids);
                offsets[b + 1] = offsets[b] + ctx.results[b].len;
            }
        }
    }
    for (int64_t b = 0; b < B; b++) free(ctx.results[b].data);
    free(ctx.results);
    return st;
}

/* ---------------------------------------------------------------- decoding */

/* A list of strings: string i is data[off[i], off[i + 1]). */
typedef struct {
    byte_buf bytes;
    size_t *off;
    int64_t n, cap;
} str_list;

static int list_push(str_list *l, const char *s, size_t len) {
    if (l->n + 2 > l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 64;
        size_t *p = realloc(l->off, (size_t)cap * sizeof *p);
        if (p == NULL) return -1;
        l->off = p;
        l->cap = cap;
    }
    if (l->n == 0) l->off[0] = 0;
    if (buf_append(&l->bytes, s, len)) return -1;
    l->off[++l->n] = l->bytes.len;
    return 0;
}

static void list_free(str_list *l) {
    free(l->bytes.data);
    free(l->off);
    memset(l, 0, sizeof *l);
}

#define ITEM(l, i) ((l)->bytes.data + (l)->off[i])
#define ITEM_LEN(l, i) ((l)->off[(i) + 1] - (l)->off[i])

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Pushes a run of bytes from <0xNN> pieces: their text when it is valid UTF-8, else one U+FFFD per byte. */
static int flush_bytes(str_list *dst, byte_buf *run) {
    int rc = 0;
    if (run->len == 0) return 0;
    if (nt_utf8_valid(run->data, run->len)) {
        rc = list_push(dst, run->data, run->len);
    } else {
        for (size_t k = 0; k < run->len && rc == 0; k++) rc = list_push(dst, "\xEF\xBF\xBD", 3);
    }
    run->len = 0;
    return rc;
}

static int apply_decoder(const step_copy *d, str_list *dst, const str_list *src) {
    const char *a = d->a;
    size_t al = d->a_len;
    switch (d->step.type) {
    case NT_TOKENIZER_STEP_REPLACE:
        for (int64_t i = 0; i < src->n; i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i), j = 0, last = 0;
            byte_buf piece = {0};
            int rc = 0;
            while (j + al <= len && rc == 0) {
                if (memcmp(t + j, a, al) == 0) {
                    rc = buf_append(&piece, t + last, j - last) || buf_append(&piece, d->b, d->b_len);
                    j += al;
                    last = j;
                } else {
                    j++;
                }
            }
            if (rc == 0) rc = buf_append(&piece, t + last, len - last);
            if (rc == 0) rc = list_push(dst, piece.data ? piece.data : "", piece.len);
            free(piece.data);
            if (rc) return -1;
        }
        return 0;
    case NT_TOKENIZER_STEP_BYTE_FALLBACK: {
        byte_buf run = {0};
        for (int64_t i = 0; i < src->n; i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i);
            int hi, lo;
            if (len == 6 && memcmp(t, "<0x", 3) == 0 && t[5] == '>' && (hi = hex_value(t[3])) >= 0 &&
                (lo = hex_value(t[4])) >= 0) {
                char byte = (char)(hi << 4 | lo);
                if (buf_append(&run, &byte, 1)) goto fail_bf;
            } else {
                if (flush_bytes(dst, &run) || list_push(dst, t, len)) goto fail_bf;
            }
        }
        if (flush_bytes(dst, &run)) goto fail_bf;
        free(run.data);
        return 0;
    fail_bf:
        free(run.data);
        return -1;
    }
    case NT_TOKENIZER_STEP_FUSE:
        return list_push(dst, src->n ? src->bytes.data : "", src->n ? src->off[src->n] : 0);
    case NT_TOKENIZER_STEP_STRIP:
        for (int64_t i = 0; i < src->n; i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i);
            for (int64_t k = 0; k < d->step.start && len >= al && memcmp(t, a, al) == 0; k++) t += al, len -= al;
            for (int64_t k = 0; k < d->step.stop && len >= al && memcmp(t + len - al, a, al) == 0; k++) len -= al;
            if (list_push(dst, t, len)) return -1;
        }
        return 0;
    case NT_TOKENIZER_STEP_METASPACE:
        /* the replacement becomes a space, except in the first piece (unless prepend_scheme is never),
         * where it is dropped */
        for (int64_t i = 0; i < src->n; i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i), last = 0;
            byte_buf piece = {0};
            int drop = i == 0 && d->step.prepend_scheme != NT_PREPEND_SCHEME_NEVER;
            int rc = 0;
            for (size_t j = 0; j + al <= len && rc == 0;) {
                if (memcmp(t + j, a, al) == 0) {
                    rc = buf_append(&piece, t + last, j - last) || (!drop && buf_append(&piece, " ", 1));
                    j += al;
                    last = j;
                } else {
                    j++;
                }
            }
            if (rc == 0) rc = buf_append(&piece, t + last, len - last);
            if (rc == 0) rc = list_push(dst, piece.data ? piece.data : "", piece.len);
            free(piece.data);
            if (rc) return -1;
        }
        return 0;
    default:
        return -1;
    }
}

nt_status nt_tokenizer_decode(const nt_tokenizer *tok, nt_error *err, char **text, size_t *len,
                              const int32_t *ids, int64_t n_ids, int skip_special) {
    *text = NULL;
    *len = 0;
    str_list lists[2];
    memset(lists, 0, sizeof lists);
    str_list *cur = &lists[0];
    for (int64_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->n_ids) continue;
        int32_t added = tok->id_to_added[id];
        const char *s;
        size_t l;
        if (added >= 0) {
            if (skip_special && tok->added[added].special) continue;
            s = tok->added[added].content;
            l = tok->added[added].content_len;
        } else if (tok->id_to_piece[id] >= 0) {
            int32_t p = tok->id_to_piece[id];
            s = tok->pieces + tok->piece_offsets[p];
            l = (size_t)(tok->piece_offsets[p + 1] - tok->piece_offsets[p]);
        } else {
            continue;
        }
        if (list_push(cur, s, l)) goto oom;
    }
    for (int64_t k = 0; k < tok->n_decoder; k++) {
        str_list *next = cur == &lists[0] ? &lists[1] : &lists[0];
        next->n = 0;
        next->bytes.len = 0;
        if (apply_decoder(&tok->decoder[k], next, cur)) goto oom;
        cur = next;
    }
    size_t total = cur->n ? cur->off[cur->n] : 0;
    *text = malloc(total + 1);
    if (*text == NULL) goto oom;
    if (total) memcpy(*text, cur->bytes.data, total);
    (*text)[total] = '\0';
    *len = total;
    list_free(&lists[0]);
    list_free(&lists[1]);
    return NT_OK;
oom:
    list_free(&lists[0]);
    list_free(&lists[1]);
    return OOM("decoding");
}
