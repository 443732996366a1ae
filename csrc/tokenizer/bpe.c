/* Byte-pair encoding of one word, as Hugging Face tokenizers' BPE model does it:
 * the word starts as one symbol per character (a character missing from the vocabulary becomes its
 * <0xNN> byte pieces with byte_fallback, else the unknown piece, consecutive unknowns fused with
 * fuse_unk); then the known merge of lowest rank is applied, the leftmost on ties, until none is left.
 *
 * Symbols form a doubly linked list over an array; merge candidates sit in a binary min-heap keyed by
 * (rank, position of the left symbol). A popped candidate is stale when its left symbol was merged away,
 * has no right neighbour any more, or the current pair no longer merges into the candidate's piece: it is
 * then dropped. Each merge removes one symbol and pushes at most two candidates, so a word of n characters
 * costs O(n log n). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

struct nt_bpe_symbol {
    int32_t id;
    int32_t prev, next; /* indices in the symbol array, -1 at the ends */
    int32_t alive;      /* 0 once merged into its left neighbour */
};

struct nt_bpe_candidate {
    uint64_t key;   /* rank << 32 | position of the left symbol: smaller pops first */
    int32_t merged; /* id of the piece the pair merges into */
};

void nt_bpe_scratch_free(nt_bpe_scratch *scratch) {
    free(scratch->symbols);
    free(scratch->heap);
    free(scratch->cache);
    memset(scratch, 0, sizeof *scratch);
}

static int reserve(void **buf, size_t *cap, size_t want, size_t item) {
    if (want <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < want) cap2 *= 2;
    void *p = realloc(*buf, cap2 * item);
    if (p == NULL) return -1;
    *buf = p;
    *cap = cap2;
    return 0;
}

static void heap_push(struct nt_bpe_candidate *heap, size_t *n, struct nt_bpe_candidate c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent].key <= c.key) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = c;
}

static struct nt_bpe_candidate heap_pop(struct nt_bpe_candidate *heap, size_t *n) {
    struct nt_bpe_candidate top = heap[0], last = heap[--(*n)];
    size_t i = 0, size = *n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= size) break;
        if (child + 1 < size && heap[child + 1].key < heap[child].key) child++;
        if (last.key <= heap[child].key) break;
        heap[i] = heap[child];
        i = child;
    }
    if (size > 0) heap[i] = last;
    return top;
}

/* Pushes the pair (symbols[pos], its right neighbour) when it is a known merge. */
static void push_pair(const nt_bpe *bpe, struct nt_bpe_symbol *symbols, struct nt_bpe_candidate *heap,
                      size_t *n_heap, int32_t pos) {
    if (pos < 0) return;
    int32_t next = symbols[pos].next;
    if (next < 0) return;
    int32_t rank, merged;
    if (nt_pair_table_get(&bpe->merges, symbols[pos].id, symbols[next].id, &rank, &merged)) {
        struct nt_bpe_candidate c = {(uint64_t)(uint32_t)rank << 32 | (uint32_t)pos, merged};
        heap_push(heap, n_heap, c);
    }
}

static void push_symbol(struct nt_bpe_symbol *symbols, int32_t *n, int32_t id) {
    symbols[*n] = (struct nt_bpe_symbol){id, *n - 1, *n + 1, 1};
    (*n)++;
}

static nt_status encode_word(const nt_bpe *bpe, nt_error *err, nt_id_vec *out, nt_bpe_scratch *scratch,
                             const char *word, size_t len) {
    if (len == 0) return NT_OK;
    if (len > INT32_MAX / 4)
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT, "a word of %zu bytes is too long to encode", len);
    /* at most one symbol per byte (byte fallback); the heap holds at most 2 len candidates, as each merge
     * pops one and pushes at most two */
    if (reserve((void **)&scratch->symbols, &scratch->symbols_cap, len, sizeof *scratch->symbols) ||
        reserve((void **)&scratch->heap, &scratch->heap_cap, 2 * len + 2, sizeof *scratch->heap))
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory encoding a word of %zu bytes", len);
    struct nt_bpe_symbol *symbols = scratch->symbols;
    struct nt_bpe_candidate *heap = scratch->heap;

    /* one symbol per character */
    int32_t n = 0;
    int pending_unk = 0; /* the last symbol is an unknown that fuse_unk may extend */
    for (size_t i = 0; i < len;) {
        int clen = nt_utf8_len((unsigned char)word[i]);
        if (i + (size_t)clen > len) clen = (int)(len - i);
        int32_t id = nt_str_table_get(&bpe->vocab, word + i, (size_t)clen);
        if (id >= 0) {
            push_symbol(symbols, &n, id);
            pending_unk = 0;
        } else {
            int all_bytes = bpe->byte_fallback;
            for (int k = 0; k < clen && all_bytes; k++)
                if (bpe->byte_ids[(unsigned char)word[i + k]] < 0) all_bytes = 0;
            if (all_bytes) {
                for (int k = 0; k < clen; k++)
                    push_symbol(symbols, &n, bpe->byte_ids[(unsigned char)word[i + k]]);
                pending_unk = 0;
            } else if (bpe->unk_id >= 0) {
                if (!(pending_unk && bpe->fuse_unk)) push_symbol(symbols, &n, bpe->unk_id);
                pending_unk = 1;
            }
            /* without an unknown piece the character is dropped, as tokenizers does */
        }
        i += (size_t)clen;
    }
    if (n == 0) return NT_OK;
    symbols[n - 1].next = -1;

    /* merge, lowest rank first, leftmost on ties */
    size_t n_heap = 0;
    for (int32_t i = 0; i + 1 < n; i++) push_pair(bpe, symbols, heap, &n_heap, i);
    for (uint32_t popped = 1; n_heap > 0; popped++) {
        if (popped % 65536 == 0 && scratch->cancel != NULL && *scratch->cancel)
            return nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
        struct nt_bpe_candidate c = heap_pop(heap, &n_heap);
        int32_t pos = (int32_t)(c.key & 0xFFFFFFFFu);
        struct nt_bpe_symbol *left = &symbols[pos];
        if (!left->alive || left->next < 0) continue;
        struct nt_bpe_symbol *right = &symbols[left->next];
        int32_t rank, merged;
        if (!nt_pair_table_get(&bpe->merges, left->id, right->id, &rank, &merged) || merged != c.merged) continue;
        left->id = merged;
        right->alive = 0;
        left->next = right->next;
        if (right->next >= 0) symbols[right->next].prev = pos;
        push_pair(bpe, symbols, heap, &n_heap, left->prev);
        push_pair(bpe, symbols, heap, &n_heap, pos);
    }

    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
        nt_status st = nt_id_vec_push(out, err, symbols[i].id);
        if (st != NT_OK) return st;
    }
    return NT_OK;
}

/* ---------------------------------------------------------------- words and the cache */

static uint64_t hash_word(const char *s, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

static nt_status encode_cached(const nt_bpe *bpe, nt_error *err, nt_id_vec *out, nt_bpe_scratch *scratch,
                               const char *word, size_t len) {
    if (scratch->cancel != NULL && *scratch->cancel) return nt_error_set(err, NT_ERROR_INTERRUPTED, "interrupted");
    if (len == 0 || len > NT_BPE_CACHE_WORD) return encode_word(bpe, err, out, scratch, word, len);
    if (scratch->cache == NULL) {
        scratch->cache = calloc(NT_BPE_CACHE_SIZE, sizeof *scratch->cache);
        if (scratch->cache == NULL) return encode_word(bpe, err, out, scratch, word, len);
    }
    uint64_t h = hash_word(word, len);
    nt_bpe_cache_entry *e = &scratch->cache[h & (NT_BPE_CACHE_SIZE - 1)];
    nt_status st;
    if (e->len == len && e->hash == h && memcmp(e->word, word, len) == 0) {
        for (int k = 0; k < e->n_ids; k++)
            if ((st = nt_id_vec_push(out, err, e->ids[k])) != NT_OK) return st;
        return NT_OK;
    }
    int64_t before = out->len;
    if ((st = encode_word(bpe, err, out, scratch, word, len)) != NT_OK) return st;
    int64_t n = out->len - before;
    if (n <= NT_BPE_CACHE_IDS) {
        e->hash = h;
        e->len = (uint8_t)len;
        e->n_ids = (uint8_t)n;
        memcpy(e->word, word, len);
        /* a word of dropped characters (no unknown piece) has no ids, and out may have no buffer yet */
        if (n > 0) memcpy(e->ids, out->data + before, (size_t)n * sizeof *e->ids);
    }
    return NT_OK;
}

static int is_glue(const nt_bpe *bpe, uint32_t cp) {
    for (int64_t i = 0; i < bpe->n_glue; i++)
        if (bpe->glue[i] == cp) return 1;
    return 0;
}

nt_status nt_bpe_encode(const nt_bpe *bpe, nt_error *err, nt_id_vec *out, nt_bpe_scratch *scratch,
                        const char *text, size_t len) {
    if (bpe->ignore_merges && len > 0) {
        int32_t id = nt_str_table_get(&bpe->vocab, text, len);
        if (id >= 0) return nt_id_vec_push(out, err, id);
    }
    if (bpe->split_len == 0) return encode_cached(bpe, err, out, scratch, text, len);
    const char *split = bpe->split;
    size_t sl = (size_t)bpe->split_len, start = 0;
    for (size_t i = 1; i + sl <= len; i++) {
        if (text[i] != split[0] || memcmp(text + i, split, sl) != 0) continue;
        size_t prev = i - 1;
        while (prev > start && ((unsigned char)text[prev] & 0xC0) == 0x80) prev--;
        if (prev >= start && is_glue(bpe, nt_utf8_decode(text + prev, nt_utf8_len((unsigned char)text[prev]))))
            continue;
        if (i > start) {
            nt_status st = encode_cached(bpe, err, out, scratch, text + start, i - start);
            if (st != NT_OK) return st;
        }
        start = i;
    }
    return encode_cached(bpe, err, out, scratch, text + start, len - start);
}

nt_status nt_bpe_init_split(nt_bpe *bpe, nt_error *err, const char *pieces, const int64_t *piece_offsets,
                            const int32_t *id_to_piece, const int32_t *merges, int64_t n_merges) {
    static const char mark[] = "\xE2\x96\x81"; /* U+2581, SentencePiece's space */
    bpe->split_len = 0;
    bpe->n_glue = 0;
    /* the split character must be a piece of its own, or unknowns could fuse across a cut */
    if (nt_str_table_get(&bpe->vocab, mark, 3) < 0) return NT_OK;
    for (int64_t r = 0; r < n_merges; r++) {
        int32_t li = id_to_piece[merges[2 * r]], ri = id_to_piece[merges[2 * r + 1]];
        const char *right = pieces + piece_offsets[ri];
        size_t rlen = (size_t)(piece_offsets[ri + 1] - piece_offsets[ri]);
        if (rlen < 3 || memcmp(right, mark, 3) != 0) continue;
        const char *left = pieces + piece_offsets[li];
        size_t llen = (size_t)(piece_offsets[li + 1] - piece_offsets[li]);
        if (llen == 0) continue;
        /* a left piece that stands for bytes or unknowns ends in no character of the text: no cuts at all */
        if (merges[2 * r] == bpe->unk_id) return NT_OK;
        for (int b = 0; b < 256; b++)
            if (merges[2 * r] == bpe->byte_ids[b]) return NT_OK;
        size_t last = llen - 1;
        while (last > 0 && ((unsigned char)left[last] & 0xC0) == 0x80) last--;
        uint32_t cp = nt_utf8_decode(left + last, nt_utf8_len((unsigned char)left[last]));
        if (is_glue(bpe, cp)) continue;
        uint32_t *glue = realloc(bpe->glue, (size_t)(bpe->n_glue + 1) * sizeof *glue);
        if (glue == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the word boundaries");
        bpe->glue = glue;
        bpe->glue[bpe->n_glue++] = cp;
        if (bpe->n_glue > 64) { /* many characters glue to the split character: cutting would not pay */
            bpe->n_glue = 0;
            return NT_OK;
        }
    }
    memcpy(bpe->split, mark, 3);
    bpe->split_len = 3;
    return NT_OK;
}
