/* torch.topk and torch.sort on the CPU, equal values included (nt_topk and nt_sort in nemotron.h).
 *
 * torch does not break ties by index. torch.topk runs the C++ standard library's std::partial_sort when
 * k * 64 <= n, else std::nth_element and then std::sort of the first k - 1; torch.sort (stable=False, its default)
 * runs std::sort; all over (value, index) pairs compared by value alone (NaN above everything, or below ascending).
 * Which of several equal values comes first is whatever those algorithms' swaps leave, and Transformers' beam
 * search, min_p, top_p and typical_p keep what they return. So this file performs the same steps as GNU
 * libstdc++'s implementations (bits/stl_heap.h and bits/stl_algo.h, which torch's Linux wheels are built
 * against): the same heap, the same median-of-three pivots, the same insertion sorts, move for move. Only the
 * comparisons' outcomes steer them, so the indices come out in the order torch gives (tests/test_generation_ties.py
 * compares them with torch on inputs full of ties). */
#include <math.h>

#include "nemotron.h"

/* the values and the direction: torch.topk and descending sorts rank larger values first, NaN above all;
 * ascending sorts smaller first, NaN below all */
typedef struct {
    const float *x;
    int ascending;
} ranking;

/* the comparator torch passes: is the value at index a ranked before the one at b? */
static inline int before(const ranking *r, int64_t a, int64_t b) {
    float va = r->x[a], vb = r->x[b];
    if (r->ascending) return (!isnan(va) && isnan(vb)) || va < vb;
    return (isnan(va) && !isnan(vb)) || va > vb;
}

static inline void swap(int64_t *a, int64_t *b) {
    int64_t t = *a;
    *a = *b;
    *b = t;
}

/* ---------------------------------------------------------------- heaps (the root ranks last) */

static void push_heap(const ranking *r, int64_t *f, int64_t hole, int64_t top, int64_t value) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(r, f[parent], value)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = value;
}

static void adjust_heap(const ranking *r, int64_t *f, int64_t hole, int64_t len, int64_t value) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(r, f[child], f[child - 1])) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    push_heap(r, f, hole, top, value);
}

static void make_heap(const ranking *r, int64_t *f, int64_t len) {
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(r, f, parent, len, f[parent]);
        if (parent == 0) return;
    }
}

/* f[0..middle) a heap of the middle best of f[0..last); with `streamed`, f holds only the heap and the element at
 * position i >= middle is i itself (untouched, as in torch's array of iota before the selection) */
static void heap_select(const ranking *r, int64_t *f, int64_t middle, int64_t last, int streamed) {
    make_heap(r, f, middle);
    for (int64_t i = middle; i < last; i++) {
        int64_t candidate = streamed ? i : f[i];
        if (before(r, candidate, f[0])) {
            /* std::__pop_heap(first, middle, i): position i takes the root, which is never read again */
            if (!streamed) f[i] = f[0];
            adjust_heap(r, f, 0, middle, candidate);
        }
    }
}

static void sort_heap(const ranking *r, int64_t *f, int64_t len) {
    while (len > 1) {
        len--;
        int64_t value = f[len];
        f[len] = f[0];
        adjust_heap(r, f, 0, len, value);
    }
}

/* ---------------------------------------------------------------- selection and sorting */

static int64_t floor_log2(int64_t n) { return 63 - __builtin_clzll((unsigned long long)n); }

static void move_median_to_first(const ranking *r, int64_t *result, int64_t *a, int64_t *b, int64_t *c) {
    if (before(r, *a, *b)) {
        if (before(r, *b, *c)) swap(result, b);
        else if (before(r, *a, *c)) swap(result, c);
        else swap(result, a);
    } else if (before(r, *a, *c)) {
        swap(result, a);
    } else if (before(r, *b, *c)) {
        swap(result, c);
    } else {
        swap(result, b);
    }
}

static int64_t *unguarded_partition(const ranking *r, int64_t *first, int64_t *last, const int64_t *pivot) {
    for (;;) {
        while (before(r, *first, *pivot)) first++;
        last--;
        while (before(r, *pivot, *last)) last--;
        if (!(first < last)) return first;
        swap(first, last);
        first++;
    }
}

static int64_t *partition_pivot(const ranking *r, int64_t *first, int64_t *last) {
    int64_t *mid = first + (last - first) / 2;
    move_median_to_first(r, first, first + 1, mid, last - 1);
    return unguarded_partition(r, first + 1, last, first);
}

static void unguarded_linear_insert(const ranking *r, int64_t *last) {
    int64_t value = *last, *next = last - 1;
    while (before(r, value, *next)) {
        *last = *next;
        last = next;
        next--;
    }
    *last = value;
}

static void insertion_sort(const ranking *r, int64_t *first, int64_t *last) {
    if (first == last) return;
    for (int64_t *i = first + 1; i != last; i++) {
        if (before(r, *i, *first)) {
            int64_t value = *i;
            for (int64_t *p = i; p != first; p--) *p = *(p - 1);
            *first = value;
        } else {
            unguarded_linear_insert(r, i);
        }
    }
}

enum { SORT_THRESHOLD = 16 }; /* libstdc++'s _S_threshold */

static void introsort_loop(const ranking *r, int64_t *first, int64_t *last, int64_t depth) {
    while (last - first > SORT_THRESHOLD) {
        if (depth == 0) { /* std::partial_sort(first, last, last) */
            heap_select(r, first, last - first, last - first, 0);
            sort_heap(r, first, last - first);
            return;
        }
        depth--;
        int64_t *cut = partition_pivot(r, first, last);
        introsort_loop(r, cut, last, depth);
        last = cut;
    }
}

static void sort(const ranking *r, int64_t *first, int64_t *last) {
    if (first == last) return;
    introsort_loop(r, first, last, floor_log2(last - first) * 2);
    if (last - first > SORT_THRESHOLD) {
        insertion_sort(r, first, first + SORT_THRESHOLD);
        for (int64_t *i = first + SORT_THRESHOLD; i != last; i++) unguarded_linear_insert(r, i);
    } else {
        insertion_sort(r, first, last);
    }
}

static void nth_element(const ranking *r, int64_t *first, int64_t *nth, int64_t *last) {
    if (first == last || nth == last) return;
    int64_t depth = floor_log2(last - first) * 2;
    while (last - first > 3) {
        if (depth == 0) {
            heap_select(r, first, nth + 1 - first, last - first, 0);
            swap(first, nth);
            return;
        }
        depth--;
        int64_t *cut = partition_pivot(r, first, last);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(r, first, last);
}

/* ---------------------------------------------------------------- torch.topk */

int64_t nt_topk_scratch(int64_t n, int64_t k) { return k * 64 <= n ? 0 : n; }

void nt_topk(int64_t *indices, int64_t *scratch, const float *values, int64_t n, int64_t k) {
    const ranking ranks = {values, 0}, *r = &ranks;
    if (k * 64 <= n) { /* std::partial_sort over iota, of which only the heap is ever read back */
        for (int64_t i = 0; i < k; i++) indices[i] = i;
        heap_select(r, indices, k, n, 1);
        sort_heap(r, indices, k);
        return;
    }
    for (int64_t i = 0; i < n; i++) scratch[i] = i;
    nth_element(r, scratch, scratch + k - 1, scratch + n);
    sort(r, scratch, scratch + k - 1);
    for (int64_t i = 0; i < k; i++) indices[i] = scratch[i];
}

void nt_sort(int64_t *order, const float *values, int64_t n, int descending) {
    const ranking ranks = {values, !descending};
    for (int64_t i = 0; i < n; i++) order[i] = i;
    sort(&ranks, order, order + n);
}
