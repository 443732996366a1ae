/* Encoding: added tokens split off the raw text, then per chunk the normalizer, the normalized added tokens,
 * the pre-tokenizers (Metaspace, Split) and BPE; batches spread over the thread pool. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define OOM(what) nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory %s", what)

/* One thread's working memory for encoding. */
struct nt_encode_scratch {
    nt_bpe_scratch bpe;
    nt_byte_buf norm[2]; /* the normalizer's ping-pong buffers */
    nt_byte_buf meta;    /* the Metaspace output */
};

void nt_encode_scratch_free(nt_encode_scratch *s) {
    if (s == NULL) return;
    nt_bpe_scratch_free(&s->bpe);
    free(s->norm[0].data);
    free(s->norm[1].data);
    free(s->meta.data);
    free(s);
}

static nt_encode_scratch *scratch_acquire(const nt_tokenizer *tok) {
    nt_encode_scratch *s = NULL;
    pthread_mutex_lock(&tok->pool->lock);
    if (tok->pool->n_free > 0) s = tok->pool->free[--tok->pool->n_free];
    pthread_mutex_unlock(&tok->pool->lock);
    return s != NULL ? s : calloc(1, sizeof *s);
}

static void scratch_release(const nt_tokenizer *tok, nt_encode_scratch *s) {
    if (s == NULL) return;
    s->bpe.cancel = NULL;
    /* large buffers from a huge text are not kept */
    if (s->meta.cap > (1 << 20) || s->norm[0].cap > (1 << 20) || s->norm[1].cap > (1 << 20) ||
        s->bpe.symbols_cap > (1 << 18)) {
        nt_encode_scratch_free(s);
        return;
    }
    pthread_mutex_lock(&tok->pool->lock);
    if (tok->pool->n_free < NT_SCRATCH_POOL) {
        tok->pool->free[tok->pool->n_free++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&tok->pool->lock);
    nt_encode_scratch_free(s);
}

static uint32_t char_before(const char *text, size_t pos, size_t *start) {
    size_t i = pos;
    while (i > 0 && ((unsigned char)text[i - 1] & 0xC0) == 0x80) i--;
    if (i > 0) i--;
    *start = i;
    return nt_utf8_decode(text + i, nt_utf8_len((unsigned char)text[i]));
}

/* Finds in text[from, len) the leftmost, then longest, added token of `pass`. Returns its index in
 * tok->added, or -1; *start and *end delimit the match with the whitespace it strips (lstrip goes back no further
 * than `floor`, the end of the previous match), *resume is the end of the token itself: tokenizers' matcher goes on
 * from there, so a token may begin inside the whitespace an rstrip token took in ("<x> y" with " y" added); an
 * lstrip one then starts at `floor`, and is no match at all when nothing of it is left past `floor`. */
static int64_t find_added(const nt_tokenizer *tok, int pass, const char *text, size_t len, size_t from,
                          size_t floor, size_t *start, size_t *end, size_t *resume) {
    const nt_added_trie *trie = &tok->trie[pass];
    if (trie->n_nodes <= 1) return -1;
    size_t i = from;
    while (i < len) {
        int32_t node = trie->root[(unsigned char)text[i]];
        if (node < 0) {
            i++;
            continue;
        }
        /* the longest token that starts at i */
        int64_t hit = trie->terminal[node];
        for (size_t j = i + 1; j < len;) {
            int32_t rank, child;
            if (!nt_pair_table_get(&trie->edges, node, (unsigned char)text[j], &rank, &child)) break;
            node = child;
            j++;
            if (trie->terminal[node] >= 0) hit = trie->terminal[node];
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
        *resume = e;
        if (a->lstrip) {
            while (s > floor && nt_unicode_is_whitespace(char_before(text, s, &cs))) s = cs;
            if (s < floor) s = floor; /* it began in the whitespace the previous match took in: its split starts after */
        }
        if (a->rstrip)
            while (e < len) {
                int l = nt_utf8_len((unsigned char)text[e]);
                if (!nt_unicode_is_whitespace(nt_utf8_decode(text + e, l))) break;
                e += (size_t)l;
            }
        if (s >= e) { /* all of it inside that whitespace: tokenizers' split is empty and makes no token */
            i = *resume;
            continue;
        }
        *start = s;
        *end = e;
        return hit;
    }
    return -1;
}


/* BPE on one word, after isolating the Split step's strings when there is one. */
static nt_status encode_word(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, nt_encode_scratch *s,
                             const char *text, size_t len) {
    const nt_step *split = NULL;
    if (tok->n_pre_tokenizer > 0 && tok->pre_tokenizer[tok->n_pre_tokenizer - 1].step.type == NT_TOKENIZER_STEP_SPLIT)
        split = &tok->pre_tokenizer[tok->n_pre_tokenizer - 1];
    if (split == NULL) return nt_bpe_encode(&tok->bpe, err, out, &s->bpe, text, len);
    size_t start = 0;
    nt_status st;
    for (size_t i = 0; i < len;) {
        size_t match = 0;
        for (int64_t k = 0; k < split->n_split_lengths && match == 0; k++) {
            size_t L = split->split_lengths[k];
            if (L <= len - i && nt_str_table_get(&split->split_table, text + i, L) >= 0) match = L;
        }
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
static nt_status encode_pretokenized(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, nt_encode_scratch *s,
                                     const char *text, size_t len, int first) {
    if (len == 0) return NT_OK;
    if (tok->n_pre_tokenizer == 0 || tok->pre_tokenizer[0].step.type != NT_TOKENIZER_STEP_METASPACE)
        return encode_word(tok, err, out, s, text, len);
    const nt_step *m = &tok->pre_tokenizer[0];
    nt_byte_buf *b = &s->meta;
    b->len = 0;
    if (nt_buf_reserve(b, len * m->a_len + m->a_len + 1)) return OOM("in the pre-tokenizer");
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
    /* split: each word begins at a replacement character, wherever it is (tokenizers cuts before every one; with
     * prepend_scheme "never" or "first" one may stand at the second character, as in ") 0") */
    size_t word = 0;
    for (size_t i = 1; i + m->a_len <= b->len; i++) {
        if (memcmp(b->data + i, m->a, m->a_len) == 0) {
            nt_status st = encode_word(tok, err, out, s, b->data + word, i - word);
            if (st != NT_OK) return st;
            word = i;
            i += m->a_len - 1;
        }
    }
    return encode_word(tok, err, out, s, b->data + word, b->len - word);
}

/* Applies the normalizer to text[0, len); returns the result in one of s->norm (or text itself). *trimmed_start is
 * set when a Trim removed the start of the text: tokenizers then no longer sees the result as beginning the input,
 * and Metaspace's prepend_scheme "first" does not prepend. */
static nt_status normalize(const nt_tokenizer *tok, nt_error *err, nt_encode_scratch *s, const char *text, size_t len,
                           const char **out, size_t *out_len, int *trimmed_start) {
    const char *cur = text;
    size_t cur_len = len;
    *trimmed_start = 0;
    for (int64_t k = 0; k < tok->n_normalizer; k++) {
        const nt_step *st = &tok->normalizer[k];
        nt_byte_buf *b = &s->norm[k & 1];
        b->len = 0;
        if (nt_buf_reserve(b, 1)) return OOM("in the normalizer");
        if (st->step.type == NT_TOKENIZER_STEP_PREPEND) {
            if (cur_len == 0) continue;
            if (nt_buf_append(b, st->a, st->a_len) || nt_buf_append(b, cur, cur_len)) return OOM("in the normalizer");
        } else if (st->step.type == NT_TOKENIZER_STEP_TRIM) {
            size_t lo = 0, hi = cur_len;
            while (lo + st->a_len <= hi && memcmp(cur + lo, st->a, st->a_len) == 0) lo += st->a_len;
            while (hi >= lo + st->a_len && memcmp(cur + hi - st->a_len, st->a, st->a_len) == 0) hi -= st->a_len;
            if (lo > 0) *trimmed_start = 1;
            if (nt_buf_append(b, cur + lo, hi - lo)) return OOM("in the normalizer");
        } else if (st->step.type == NT_TOKENIZER_STEP_COLLAPSE) {
            size_t i = 0;
            while (i < cur_len) {
                size_t run = 0;
                while (i + (run + 1) * st->a_len <= cur_len && memcmp(cur + i + run * st->a_len, st->a, st->a_len) == 0)
                    run++;
                if (run >= 2) {
                    if (nt_buf_append(b, st->b, st->b_len)) return OOM("in the normalizer");
                    i += run * st->a_len;
                } else {
                    size_t n = run == 1 ? st->a_len : 1;
                    if (nt_buf_append(b, cur + i, n)) return OOM("in the normalizer");
                    i += n;
                }
            }
        } else if (st->step.type == NT_TOKENIZER_STEP_REPLACE_PREFIX) {
            int hit = cur_len >= st->a_len && memcmp(cur, st->a, st->a_len) == 0;
            if ((hit && nt_buf_append(b, st->b, st->b_len)) || nt_buf_append(b, cur + (hit ? st->a_len : 0), cur_len - (hit ? st->a_len : 0)))
                return OOM("in the normalizer");
        } else { /* Replace */
            size_t i = 0, last = 0;
            while (i + st->a_len <= cur_len) {
                if (memcmp(cur + i, st->a, st->a_len) == 0) {
                    if (nt_buf_append(b, cur + last, i - last) || nt_buf_append(b, st->b, st->b_len)) return OOM("in the normalizer");
                    i += st->a_len;
                    last = i;
                } else {
                    i++;
                }
            }
            if (nt_buf_append(b, cur + last, cur_len - last)) return OOM("in the normalizer");
        }
        cur = b->data;
        cur_len = b->len;
    }
    *out = cur;
    *out_len = cur_len;
    return NT_OK;
}

/* A chunk of raw text between added tokens: normalize, split on normalized added tokens, encode the rest. */
/* Where added tokens matched, for nt_tokenizer_encode_matches. */
typedef struct {
    nt_byte_buf text; /* the matched texts, back to back */
    int64_t *at;      /* (n) index in the ids of match k */
    int64_t *end;     /* (n) end of match k in text */
    int64_t n, cap;
} match_log;

/* Pushes the id of an added token, and logs the text it matched when log is not NULL. */
static nt_status push_added(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, match_log *log, int64_t hit,
                            const char *matched, size_t len) {
    nt_status st = nt_id_vec_push(out, err, tok->added[hit].id);
    if (st != NT_OK || log == NULL) return st;
    if (log->n == log->cap) {
        int64_t cap = log->cap ? 2 * log->cap : 16;
        int64_t *at = realloc(log->at, (size_t)cap * sizeof *at);
        if (at == NULL) return OOM("for the matches");
        log->at = at;
        int64_t *end = realloc(log->end, (size_t)cap * sizeof *end);
        if (end == NULL) return OOM("for the matches");
        log->end = end;
        log->cap = cap;
    }
    if (nt_buf_append(&log->text, matched, len)) return OOM("for the matches");
    log->at[log->n] = out->len - 1;
    log->end[log->n] = (int64_t)log->text.len;
    log->n++;
    return NT_OK;
}

static nt_status encode_chunk(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, nt_encode_scratch *s,
                              match_log *log, const char *text, size_t len, int first) {
    if (len == 0) return NT_OK;
    const char *norm = NULL;
    size_t norm_len = 0;
    int trimmed_start;
    nt_status st = normalize(tok, err, s, text, len, &norm, &norm_len, &trimmed_start);
    if (st != NT_OK) return st;
    size_t pos = 0, from = 0, ms, me; /* pos: end of the last match, its whitespace included; from: of the token */
    for (;;) {
        int64_t hit = find_added(tok, NT_PASS_NORMALIZED, norm, norm_len, from, pos, &ms, &me, &from);
        size_t stop = hit >= 0 ? ms : norm_len;
        if (stop > pos && (st = encode_pretokenized(tok, err, out, s, norm + pos, stop - pos,
                                                    first && pos == 0 && !trimmed_start)) != NT_OK)
            return st;
        if (hit < 0) return NT_OK;
        if ((st = push_added(tok, err, out, log, hit, norm + ms, me - ms)) != NT_OK) return st;
        pos = me; /* a token inside the previous match's whitespace gives the rest of that whitespace back */
    }
}

static nt_status encode_one(const nt_tokenizer *tok, nt_error *err, nt_id_vec *out, nt_encode_scratch *s,
                            match_log *log, const char *text, size_t len) {
    if (!nt_utf8_valid(text, len)) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "the text is not valid UTF-8");
    size_t pos = 0, from = 0, ms, me; /* pos: end of the last match, its whitespace included; from: of the token */
    nt_status st;
    for (;;) {
        int64_t hit = find_added(tok, NT_PASS_RAW, text, len, from, pos, &ms, &me, &from);
        size_t stop = hit >= 0 ? ms : len;
        if (stop > pos && (st = encode_chunk(tok, err, out, s, log, text + pos, stop - pos, pos == 0)) != NT_OK) return st;
        if (hit < 0) return NT_OK;
        if ((st = push_added(tok, err, out, log, hit, text + ms, me - ms)) != NT_OK) return st;
        pos = me; /* a token inside the previous match's whitespace gives the rest of that whitespace back */
    }
}

nt_status nt_tokenizer_encode(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                              const char *text, size_t len, const volatile int *cancel) {
    *ids = NULL;
    *n_ids = 0;
    nt_encode_scratch *s = scratch_acquire(tok);
    if (s == NULL) return OOM("for encoding");
    s->bpe.cancel = cancel;
    nt_id_vec out = {0};
    nt_status st = encode_one(tok, err, &out, s, NULL, text, len);
    scratch_release(tok, s);
    if (st != NT_OK) {
        free(out.data);
        return st;
    }
    *ids = out.data;
    *n_ids = out.len;
    return NT_OK;
}

nt_status nt_tokenizer_encode_matches(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                                      int64_t **positions, char **texts, int64_t **text_offsets, int64_t *n_matches,
                                      const char *text, size_t len, const volatile int *cancel) {
    *ids = NULL;
    *positions = *text_offsets = NULL;
    *texts = NULL;
    *n_ids = *n_matches = 0;
    nt_encode_scratch *s = scratch_acquire(tok);
    if (s == NULL) return OOM("for encoding");
    s->bpe.cancel = cancel;
    nt_id_vec out = {0};
    match_log log = {0};
    nt_status st = encode_one(tok, err, &out, s, &log, text, len);
    scratch_release(tok, s);
    if (st == NT_OK) {
        *text_offsets = malloc(((size_t)log.n + 1) * sizeof **text_offsets);
        if (nt_buf_reserve(&log.text, 1) || *text_offsets == NULL) st = OOM("for the matches");
    }
    if (st != NT_OK) {
        free(out.data);
        free(log.text.data);
        free(log.at);
        free(log.end);
        free(*text_offsets);
        *text_offsets = NULL;
        return st;
    }
    (*text_offsets)[0] = 0;
    for (int64_t k = 0; k < log.n; k++) (*text_offsets)[k + 1] = log.end[k];
    free(log.end);
    *ids = out.data;
    *n_ids = out.len;
    *positions = log.at;
    *texts = log.text.data;
    *n_matches = log.n;
    return NT_OK;
}

typedef struct {
    const nt_tokenizer *tok;
    const char *const *texts;
    const size_t *lens;
    nt_id_vec *results; /* (B) */
    const volatile int *cancel;
    nt_status status;   /* the first failure, written once under `failed` */
    nt_error err;
    int failed;         /* atomic flag: set by the first failing thread */
} batch_ctx;

static void encode_range(void *arg, int64_t begin, int64_t end) {
    batch_ctx *ctx = arg;
    nt_encode_scratch *s = scratch_acquire(ctx->tok);
    if (s != NULL) s->bpe.cancel = ctx->cancel;
    for (int64_t b = begin; b < end; b++) {
        nt_error e;
        nt_status st = ctx->cancel != NULL && *ctx->cancel ? nt_error_set(&e, NT_ERROR_INTERRUPTED, "interrupted")
                     : s == NULL ? nt_error_set(&e, NT_ERROR_OUT_OF_MEMORY, "out of memory for encoding")
                                 : encode_one(ctx->tok, &e, &ctx->results[b], s, NULL, ctx->texts[b], ctx->lens[b]);
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
                                    nt_threadpool *pool, const volatile int *cancel) {
    *ids = NULL;
    if (B < 0) return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "batch size %lld", (long long)B);
    batch_ctx ctx = {tok, texts, lens, calloc((size_t)B + 1, sizeof(nt_id_vec)), cancel, NT_OK, {0}, 0};
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

