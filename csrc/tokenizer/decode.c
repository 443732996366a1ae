/* Decoding: ids to pieces (added tokens first), then the decoder chain over the list of pieces. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define OOM(what) nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory %s", what)

/* A list of strings: string i is data[off[i], off[i + 1]). */
typedef struct {
    nt_byte_buf bytes;
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
    if (nt_buf_append(&l->bytes, s, len)) return -1;
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
static int flush_bytes(str_list *dst, nt_byte_buf *run) {
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

/* Pushes t (len bytes) with every occurrence of `from` replaced by `to` (which may be empty). An empty
 * `from` matches nothing. */
static int push_replaced(str_list *dst, const char *t, size_t len, const char *from, size_t from_len,
                         const char *to, size_t to_len) {
    nt_byte_buf piece = {0};
    size_t j = 0, last = 0;
    int rc = 0;
    while (from_len > 0 && j + from_len <= len && rc == 0) {
        if (memcmp(t + j, from, from_len) == 0) {
            rc = nt_buf_append(&piece, t + last, j - last) || nt_buf_append(&piece, to, to_len);
            j += from_len;
            last = j;
        } else {
            j++;
        }
    }
    if (rc == 0) rc = nt_buf_append(&piece, t + last, len - last);
    if (rc == 0) rc = list_push(dst, piece.data ? piece.data : "", piece.len);
    free(piece.data);
    return rc;
}

/* whether the caller's cancel flag is up, looked at every 65536 items (a volatile read per item would cost) */
#define CANCELLED(i) (((i) & 0xFFFF) == 0xFFFF && cancel != NULL && *cancel)

/* Copies len bytes from s to d in blocks of COPY_BLOCK, looking at the cancel flag between them: the fuse and strip
 * steps and the final join copy the whole text at once (hundreds of MB for a long one, a second and more under ASan),
 * which Ctrl-C must be able to stop. Returns 1 when cancelled (d part done), else 0. */
enum { COPY_BLOCK = 1 << 24 };
static int copy_cancellable(char *d, const char *s, size_t len, const volatile int *cancel) {
    for (size_t done = 0; done < len; done += COPY_BLOCK) {
        if (cancel != NULL && *cancel) return 1;
        memcpy(d + done, s + done, len - done < COPY_BLOCK ? len - done : COPY_BLOCK);
    }
    return 0;
}

/* list_push for a string that may be long: the copy as copy_cancellable's. -1 without memory; 0 otherwise, the
 * string whole or, when cancelled, part copied (the caller looks at the flag). */
static int list_push_long(str_list *l, const char *s, size_t len, const volatile int *cancel) {
    if (len < COPY_BLOCK) return list_push(l, s, len);
    if (list_push(l, "", 0) || nt_buf_reserve(&l->bytes, l->bytes.len + len + 1)) return -1;
    copy_cancellable(l->bytes.data + l->bytes.len, s, len, cancel);
    l->bytes.len += len;
    l->off[l->n] = l->bytes.len;
    return 0;
}

/* One decoder step from src to dst; stops early, leaving dst part done, when cancelled. */
static int apply_decoder(const nt_step *d, str_list *dst, const str_list *src, const volatile int *cancel) {
    const char *a = d->a;
    size_t al = d->a_len;
    switch (d->step.type) {
    case NT_TOKENIZER_STEP_REPLACE:
        for (int64_t i = 0; i < src->n && !CANCELLED(i); i++)
            if (push_replaced(dst, ITEM(src, i), ITEM_LEN(src, i), a, al, d->b, d->b_len)) return -1;
        return 0;
    case NT_TOKENIZER_STEP_BYTE_FALLBACK: {
        nt_byte_buf run = {0};
        for (int64_t i = 0; i < src->n && !CANCELLED(i); i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i);
            int hi, lo;
            if (len == 6 && memcmp(t, "<0x", 3) == 0 && t[5] == '>' && (hi = hex_value(t[3])) >= 0 &&
                (lo = hex_value(t[4])) >= 0) {
                char byte = (char)(hi << 4 | lo);
                if (nt_buf_append(&run, &byte, 1)) goto fail_bf;
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
        return list_push_long(dst, src->n ? src->bytes.data : "", src->n ? src->off[src->n] : 0, cancel);
    case NT_TOKENIZER_STEP_STRIP:
        for (int64_t i = 0; i < src->n && !CANCELLED(i); i++) {
            const char *t = ITEM(src, i);
            size_t len = ITEM_LEN(src, i);
            for (int64_t k = 0; k < d->step.start && len >= al && memcmp(t, a, al) == 0; k++) t += al, len -= al;
            for (int64_t k = 0; k < d->step.stop && len >= al && memcmp(t + len - al, a, al) == 0; k++) len -= al;
            if (list_push_long(dst, t, len, cancel)) return -1;
        }
        return 0;
    case NT_TOKENIZER_STEP_METASPACE:
        /* the replacement becomes a space, except in the first piece (unless prepend_scheme is never),
         * where it is dropped */
        for (int64_t i = 0; i < src->n && !CANCELLED(i); i++) {
            int drop = i == 0 && d->step.prepend_scheme != NT_PREPEND_SCHEME_NEVER;
            if (push_replaced(dst, ITEM(src, i), ITEM_LEN(src, i), a, al, " ", drop ? 0 : 1)) return -1;
        }
        return 0;
    default:
        return -1;
    }
}

nt_status nt_tokenizer_decode(const nt_tokenizer *tok, nt_error *err, char **text, size_t *len,
                              const int32_t *ids, int64_t n_ids, int skip_special, const volatile int *cancel) {
    *text = NULL;
    *len = 0;
    str_list lists[2];
    memset(lists, 0, sizeof lists);
    str_list *cur = &lists[0];
    for (int64_t i = 0; i < n_ids; i++) {
        if (CANCELLED(i)) goto interrupted;
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
        if (apply_decoder(&tok->decoder[k], next, cur, cancel)) goto oom;
        if (cancel != NULL && *cancel) goto interrupted;
        cur = next;
    }
    /* the pieces are joined as they are; without a decoder, tokenizers puts a space between them */
    size_t sep = tok->n_decoder == 0 ? 1 : 0;
    size_t total = cur->n ? cur->off[cur->n] + sep * (size_t)(cur->n - 1) : 0;
    *text = malloc(total + 1);
    if (*text == NULL) goto oom;
    char *w = *text;
    for (int64_t i = 0; i < cur->n; i++) {
        if (i > 0 && sep) *w++ = ' ';
        if (CANCELLED(i) || copy_cancellable(w, ITEM(cur, i), ITEM_LEN(cur, i), cancel)) {
            free(*text);
            *text = NULL;
            goto interrupted;
        }
        w += ITEM_LEN(cur, i);
    }
    *w = '\0';
    *len = total;
    list_free(&lists[0]);
    list_free(&lists[1]);
    return NT_OK;
oom:
    list_free(&lists[0]);
    list_free(&lists[1]);
    return OOM("decoding");
interrupted:
    list_free(&lists[0]);
    list_free(&lists[1]);
    return nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
}
