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

nt_status nt_bpe_encode_word(const nt_bpe *bpe, nt_error *err, nt_id_vec *out, nt_bpe_scratch *scratch,
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
    while (n_heap > 0) {
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
