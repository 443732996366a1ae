/* torch.topk on the CPU, equal values included (nt_topk in nemotron.h).
 *
 * torch does not break ties by index: it runs the C++ standard library's std::partial_sort when k * 64 <= n, else
 * std::nth_element and then std::sort of the first k - 1, over (value, index) pairs compared by value alone (NaN
 * above everything). Which of several equal values comes first is whatever those algorithms' swaps leave, and
 * Transformers' beam search and min_p keep what torch.topk returns. So this file performs the same steps as GNU
 * libstdc++'s implementations (bits/stl_heap.h and bits/stl_algo.h, which torch's Linux wheels are built
 * against): the same heap, the same median-of-three pivots, the same insertion sorts, move for move. Only the
 * comparisons' outcomes steer them, so the indices come out in the order torch gives (tests/test_generation_beam.py
 * compares them with torch.topk on inputs full of ties). */
#include <math.h>

#include "nemotron.h"

/* the comparator torch passes: is the value at index a ranked before the one at b? */
static inline int before(const float *x, int64_t a, int64_t b) {
    float va = x[a], vb = x[b];
    return (isnan(va) && !isnan(vb)) || va > vb;
}

static inline void swap(int64_t *a, int64_t *b) {
    int64_t t = *a;
    *a = *b;
    *b = t;
}

/* ---------------------------------------------------------------- heaps (the root ranks last) */

static void push_heap(const float *x, int64_t *f, int64_t hole, int64_t top, int64_t value) {
    int64_t parent = (hole - 1) / 2;
    while (hole > top && before(x, f[parent], value)) {
        f[hole] = f[parent];
        hole = parent;
        parent = (hole - 1) / 2;
    }
    f[hole] = value;
}

static void adjust_heap(const float *x, int64_t *f, int64_t hole, int64_t len, int64_t value) {
    const int64_t top = hole;
    int64_t child = hole;
    while (child < (len - 1) / 2) {
        child = 2 * (child + 1);
        if (before(x, f[child], f[child - 1])) child--;
        f[hole] = f[child];
        hole = child;
    }
    if ((len & 1) == 0 && child == (len - 2) / 2) {
        child = 2 * (child + 1);
        f[hole] = f[child - 1];
        hole = child - 1;
    }
    push_heap(x, f, hole, top, value);
}

static void make_heap(const float *x, int64_t *f, int64_t len) {
    if (len < 2) return;
    for (int64_t parent = (len - 2) / 2;; parent--) {
        adjust_heap(x, f, parent, len, f[parent]);
        if (parent == 0) return;
    }
}

/* f[0..middle) a heap of the middle best of f[0..last); with `streamed`, f holds only the heap and the element at
 * position i >= middle is i itself (untouched, as in torch's array of iota before the selection) */
static void heap_select(const float *x, int64_t *f, int64_t middle, int64_t last, int streamed) {
    make_heap(x, f, middle);
    for (int64_t i = middle; i < last; i++) {
        int64_t candidate = streamed ? i : f[i];
        if (before(x, candidate, f[0])) {
            /* std::__pop_heap(first, middle, i): position i takes the root, which is never read again */
            if (!streamed) f[i] = f[0];
            adjust_heap(x, f, 0, middle, candidate);
        }
    }
}

static void sort_heap(const float *x, int64_t *f, int64_t len) {
    while (len > 1) {
        len--;
        int64_t value = f[len];
        f[len] = f[0];
        adjust_heap(x, f, 0, len, value);
    }
}

/* ---------------------------------------------------------------- selection and sorting */

static int64_t floor_log2(int64_t n) { return 63 - __builtin_clzll((unsigned long long)n); }

static void move_median_to_first(const float *x, int64_t *result, int64_t *a, int64_t *b, int64_t *c) {
    if (before(x, *a, *b)) {
        if (before(x, *b, *c)) swap(result, b);
        else if (before(x, *a, *c)) swap(result, c);
        else swap(result, a);
    } else if (before(x, *a, *c)) {
        swap(result, a);
    } else if (before(x, *b, *c)) {
        swap(result, c);
    } else {
        swap(result, b);
    }
}

static int64_t *unguarded_partition(const float *x, int64_t *first, int64_t *last, const int64_t *pivot) {
    for (;;) {
        while (before(x, *first, *pivot)) first++;
        last--;
        while (before(x, *pivot, *last)) last--;
        if (!(first < last)) return first;
        swap(first, last);
        first++;
    }
}

static int64_t *partition_pivot(const float *x, int64_t *first, int64_t *last) {
    int64_t *mid = first + (last - first) / 2;
    move_median_to_first(x, first, first + 1, mid, last - 1);
    return unguarded_partition(x, first + 1, last, first);
}

static void unguarded_linear_insert(const float *x, int64_t *last) {
    int64_t value = *last, *next = last - 1;
    while (before(x, value, *next)) {
        *last = *next;
        last = next;
        next--;
    }
    *last = value;
}

static void insertion_sort(const float *x, int64_t *first, int64_t *last) {
    if (first == last) return;
    for (int64_t *i = first + 1; i != last; i++) {
        if (before(x, *i, *first)) {
            int64_t value = *i;
            for (int64_t *p = i; p != first; p--) *p = *(p - 1);
            *first = value;
        } else {
            unguarded_linear_insert(x, i);
        }
    }
}

enum { SORT_THRESHOLD = 16 }; /* libstdc++'s _S_threshold */

static void introsort_loop(const float *x, int64_t *first, int64_t *last, int64_t depth) {
    while (last - first > SORT_THRESHOLD) {
        if (depth == 0) { /* std::partial_sort(first, last, last) */
            heap_select(x, first, last - first, last - first, 0);
            sort_heap(x, first, last - first);
            return;
        }
        depth--;
        int64_t *cut = partition_pivot(x, first, last);
        introsort_loop(x, cut, last, depth);
        last = cut;
    }
}

static void sort(const float *x, int64_t *first, int64_t *last) {
    if (first == last) return;
    introsort_loop(x, first, last, floor_log2(last - first) * 2);
    if (last - first > SORT_THRESHOLD) {
        insertion_sort(x, first, first + SORT_THRESHOLD);
        for (int64_t *i = first + SORT_THRESHOLD; i != last; i++) unguarded_linear_insert(x, i);
    } else {
        insertion_sort(x, first, last);
    }
}

static void nth_element(const float *x, int64_t *first, int64_t *nth, int64_t *last) {
    if (first == last || nth == last) return;
    int64_t depth = floor_log2(last - first) * 2;
    while (last - first > 3) {
        if (depth == 0) {
            heap_select(x, first, nth + 1 - first, last - first, 0);
            swap(first, nth);
            return;
        }
        depth--;
        int64_t *cut = partition_pivot(x, first, last);
        if (cut <= nth) first = cut;
        else last = cut;
    }
    insertion_sort(x, first, last);
}

/* ---------------------------------------------------------------- torch.topk */

int64_t nt_topk_scratch(int64_t n, int64_t k) { return k * 64 <= n ? 0 : n; }

void nt_topk(int64_t *indices, int64_t *scratch, const float *x, int64_t n, int64_t k) {
    if (k * 64 <= n) { /* std::partial_sort over iota, of which only the heap is ever read back */
        for (int64_t i = 0; i < k; i++) indices[i] = i;
        heap_select(x, indices, k, n, 1);
        sort_heap(x, indices, k);
        return;
    }
    for (int64_t i = 0; i < n; i++) scratch[i] = i;
    nth_element(x, scratch, scratch + k - 1, scratch + n);
    sort(x, scratch, scratch + k - 1);
    for (int64_t i = 0; i < k; i++) indices[i] = scratch[i];
}
