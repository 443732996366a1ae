/* The tokenizer's tables, built from an nt_tokenizer_spec: vocabulary, merges, added tokens and the steps of the
 * normalizer, pre-tokenizer and decoder (encode.c and decode.c run them). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static int descending_size(const void *pa, const void *pb) {
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return a > b ? -1 : a < b;
}

/* A Split step's strings in a hash table, and their distinct lengths longest first (see nt_step). */
static nt_status index_split_strings(nt_step *c, nt_error *err) {
    int64_t n = c->n_strings, total = 0;
    for (int64_t k = 0; k < n; k++) total += (int64_t)c->string_lens[k];
    c->split_blob = malloc((size_t)total + 1);
    c->split_offsets = malloc(((size_t)n + 1) * sizeof *c->split_offsets);
    c->split_lengths = malloc((size_t)n * sizeof *c->split_lengths);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (c->split_blob == NULL || c->split_offsets == NULL || c->split_lengths == NULL || ids == NULL) {
        free(ids);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the Split strings");
    }
    c->split_offsets[0] = 0;
    for (int64_t k = 0; k < n; k++) {
        memcpy(c->split_blob + c->split_offsets[k], c->strings[k], c->string_lens[k]);
        c->split_offsets[k + 1] = c->split_offsets[k] + (int64_t)c->string_lens[k];
        c->split_lengths[k] = c->string_lens[k];
        ids[k] = (int32_t)k;
    }
    nt_status st = nt_str_table_build(&c->split_table, err, c->split_blob, c->split_offsets, ids, n);
    free(ids);
    if (st != NT_OK) return st;
    qsort(c->split_lengths, (size_t)n, sizeof *c->split_lengths, descending_size);
    int64_t distinct = 0;
    for (int64_t k = 0; k < n; k++)
        if (distinct == 0 || c->split_lengths[distinct - 1] != c->split_lengths[k])
            c->split_lengths[distinct++] = c->split_lengths[k];
    c->n_split_lengths = distinct;
    return NT_OK;
}

static nt_status copy_steps(nt_step **out, nt_error *err, const nt_tokenizer_step *steps, int64_t n,
                            const char *what) {
    *out = NULL;
    if (n < 0 || n > 1024 || (n > 0 && steps == NULL))
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "%s: %lld steps", what, (long long)n);
    if (n == 0) return NT_OK;
    nt_step *copies = calloc((size_t)n, sizeof *copies);
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
            nt_step *c = &copies[i];
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
            nt_status st = index_split_strings(c, err);
            if (st != NT_OK) return st;
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

static void free_steps(nt_step *steps, int64_t n) {
    if (steps == NULL) return;
    for (int64_t i = 0; i < n; i++) {
        free(steps[i].a);
        free(steps[i].b);
        for (int64_t k = 0; k < steps[i].n_strings; k++) free(steps[i].strings[k]);
        free(steps[i].strings);
        free(steps[i].string_lens);
        free(steps[i].split_blob);
        free(steps[i].split_offsets);
        free(steps[i].split_lengths);
        nt_str_table_free(&steps[i].split_table);
    }
    free(steps);
}

/* Builds the trie of the added tokens matched in `pass`; when two tokens have the same content, the first wins. */
static nt_status build_trie(nt_added_trie *trie, nt_error *err, const nt_tokenizer *tok, int pass) {
    size_t bytes = 0;
    for (int64_t i = 0; i < tok->n_added; i++) bytes += tok->added[i].content_len;
    memset(trie->root, 0xFF, sizeof trie->root);
    trie->terminal = malloc((bytes + 1) * sizeof *trie->terminal);
    if (trie->terminal == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the added tokens");
    nt_status st = nt_pair_table_create(&trie->edges, err, (int64_t)bytes);
    if (st != NT_OK) return st;
    trie->terminal[0] = -1;
    trie->n_nodes = 1;
    for (int64_t i = 0; i < tok->n_added; i++) {
        const nt_added_token *a = &tok->added[i];
        if ((a->normalized != 0) != (pass == NT_PASS_NORMALIZED)) continue;
        int32_t node = 0;
        for (size_t k = 0; k < a->content_len; k++) {
            unsigned char c = (unsigned char)a->content[k];
            int32_t child, unused;
            int known = node == 0 ? (child = trie->root[c]) >= 0 : nt_pair_table_get(&trie->edges, node, c, &unused, &child);
            if (!known) {
                child = (int32_t)trie->n_nodes++;
                trie->terminal[child] = -1;
                if (node == 0) trie->root[c] = child;
                else nt_pair_table_put(&trie->edges, node, c, 0, child);
            }
            node = child;
        }
        if (trie->terminal[node] < 0) trie->terminal[node] = (int32_t)i;
    }
    return NT_OK;
}

static void free_trie(nt_added_trie *trie) {
    nt_pair_table_free(&trie->edges);
    free(trie->terminal);
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
    free_trie(&tok->trie[0]);
    free_trie(&tok->trie[1]);
    free_steps(tok->normalizer, tok->n_normalizer);
    free_steps(tok->pre_tokenizer, tok->n_pre_tokenizer);
    free_steps(tok->decoder, tok->n_decoder);
    if (tok->pool != NULL) {
        for (int i = 0; i < tok->pool->n_free; i++) nt_encode_scratch_free(tok->pool->free[i]);
        pthread_mutex_destroy(&tok->pool->lock);
        free(tok->pool);
    }
    free(tok);
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
    /* the id tables are dense, sized by the largest id: one id of 2**31 - 1 in a file would take 16 GB. Gaps are
     * allowed (added tokens often follow a hole), a few ids per token, not an arbitrary span. */
    int64_t n_tokens = np + spec->n_added;
    if (n_ids > 4 * n_tokens + 65536)
        FAIL(NT_ERROR_FORMAT, "the largest token id, %lld, is far beyond the %lld tokens (at most 4 ids per token "
             "plus 65536 are allowed: ids index a dense table)", (long long)(n_ids - 1), (long long)n_tokens);
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
    if (tok->added == NULL || tok->added_blob == NULL)
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
    if ((st = build_trie(&tok->trie[NT_PASS_RAW], err, tok, NT_PASS_RAW)) != NT_OK ||
        (st = build_trie(&tok->trie[NT_PASS_NORMALIZED], err, tok, NT_PASS_NORMALIZED)) != NT_OK)
        goto fail;

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

