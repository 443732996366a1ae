/* Beam search, after Transformers' GenerationMixin._beam_search (see model/beam.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/beam.h"

/* is x[i] ranked before x[j]? larger first, ties by lower index (torch.topk) */
static int ranks_before(const float *x, int64_t i, int64_t j) { return x[i] > x[j] || (x[i] == x[j] && i < j); }

/* restores the heap below `at` in heap (n), the lowest-ranked element at the root */
static void sift_down(int64_t *heap, const float *x, int64_t n, int64_t at) {
    for (;;) {
        int64_t lowest = at, left = 2 * at + 1, right = left + 1;
        if (left < n && ranks_before(x, heap[lowest], heap[left])) lowest = left;
        if (right < n && ranks_before(x, heap[lowest], heap[right])) lowest = right;
        if (lowest == at) return;
        int64_t t = heap[at];
        heap[at] = heap[lowest];
        heap[lowest] = t;
        at = lowest;
    }
}

/* order (n) = indices of the n largest of x (len), largest first, ties by lower index (torch.topk). A heap of the
 * n best so far: len * log(n) at worst, where insertion into a sorted list took len * n (hours for n = 2e5). */
static void top_n(int64_t *order, const float *x, int64_t len, int64_t n) {
    int64_t count = 0;
    for (int64_t i = 0; i < len; i++) {
        if (count < n) {
            int64_t at = count++;
            order[at] = i;
            while (at > 0 && ranks_before(x, order[(at - 1) / 2], order[at])) {
                int64_t parent = (at - 1) / 2, t = order[at];
                order[at] = order[parent];
                order[parent] = t;
                at = parent;
            }
        } else if (ranks_before(x, i, order[0])) {
            order[0] = i;
            sift_down(order, x, n, 0);
        }
    }
    /* heapsort: the lowest-ranked goes last */
    for (int64_t end = count - 1; end > 0; end--) {
        int64_t t = order[0];
        order[0] = order[end];
        order[end] = t;
        sift_down(order, x, end, 0);
    }
}

void nt_beam_search_free(nt_beam_search *s) {
    if (s == NULL) return;
    void *buffers[] = {s->running_scores, s->running_beam_indices, s->reorder, s->beam_scores, s->beam_indices,
                       s->is_finished, s->unsatisfied, s->cand_scores, s->cand_flat, s->cand_hits, s->cand_seqs,
                       s->cand_beam_indices, s->staged_rows, s->staged_indices, s->step_scores, s->chosen, s->best,
                       s->just_finished, s->finished_flags, s->new_scores, s->taken};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(s);
}

nt_status nt_beam_search_create(nt_beam_search **out, nt_error *err, const nt_generation_config *config, int64_t B,
                                int64_t T0, int64_t V, int64_t *sequences, const int64_t *running) {
    *out = NULL;
    nt_beam_search *s = calloc(1, sizeof *s);
    if (s == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for beam search");
    int64_t NB = config->num_beams, M = config->max_length, G = M - T0;
    int64_t K = nt_beam_search_candidates(config);
    *s = (nt_beam_search){.config = config, .B = B, .NB = NB, .K = K, .M = M, .T0 = T0, .G = G, .V = V,
                          .sequences = sequences};
    s->running_scores = malloc((size_t)(B * NB) * sizeof(float));
    s->running_beam_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
    s->reorder = malloc((size_t)(B * NB) * sizeof(int64_t));
    s->beam_scores = malloc((size_t)(B * NB) * sizeof(float));
    s->beam_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
    s->is_finished = calloc((size_t)(B * NB), 1);
    s->unsatisfied = malloc((size_t)B);
    s->cand_scores = malloc((size_t)(B * K) * sizeof(float));
    s->cand_flat = malloc((size_t)(B * K) * sizeof(int64_t));
    s->cand_hits = malloc((size_t)(B * K));
    s->cand_seqs = malloc((size_t)(B * K * M) * sizeof(int64_t));
    s->cand_beam_indices = malloc((size_t)(B * K * G) * sizeof(int64_t));
    s->staged_rows = malloc((size_t)(B * NB * M) * sizeof(int64_t));
    s->staged_indices = malloc((size_t)(B * NB * G) * sizeof(int64_t));
    s->step_scores = malloc((size_t)(B * (NB + K)) * sizeof(float));
    s->chosen = malloc((size_t)NB * sizeof(int64_t));
    s->best = malloc((size_t)NB * sizeof(int64_t));
    s->just_finished = malloc((size_t)K);
    s->finished_flags = malloc((size_t)NB);
    s->new_scores = malloc((size_t)NB * sizeof(float));
    s->taken = malloc(config->do_sample ? (size_t)(NB * V) : 1);
    if (s->running_scores == NULL || s->running_beam_indices == NULL || s->reorder == NULL ||
        s->beam_scores == NULL || s->beam_indices == NULL || s->is_finished == NULL || s->unsatisfied == NULL ||
        s->cand_scores == NULL || s->cand_flat == NULL || s->cand_hits == NULL || s->cand_seqs == NULL ||
        s->cand_beam_indices == NULL || s->staged_rows == NULL || s->staged_indices == NULL || s->step_scores == NULL ||
        s->chosen == NULL || s->best == NULL || s->just_finished == NULL || s->finished_flags == NULL ||
        s->new_scores == NULL || s->taken == NULL) {
        nt_beam_search_free(s);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for beam search");
    }
    memcpy(sequences, running, (size_t)(B * NB * M) * sizeof(int64_t));
    for (int64_t i = 0; i < B * NB; i++) {
        s->running_scores[i] = i % NB == 0 ? 0.0f : NT_BEAM_EXCLUDED; /* a prompt's copies start excluded */
        s->beam_scores[i] = NT_BEAM_EXCLUDED;
    }
    for (int64_t i = 0; i < B * NB * G; i++) s->running_beam_indices[i] = s->beam_indices[i] = -1;
    memset(s->unsatisfied, 1, (size_t)B);
    *out = s;
    return NT_OK;
}

/* K continuations of prompt b from its NB * V accumulated log-probabilities (in scores), best first */
static void candidates(nt_beam_search *s, float *scores, int64_t b, nt_rng *rng) {
    int64_t NB = s->NB, V = s->V, K = s->K;
    float *acc = scores + b * NB * V; /* (NB * V) */
    for (int64_t j = 0; j < NB; j++)
        for (int64_t v = 0; v < V; v++) acc[j * V + v] += s->running_scores[b * NB + j];
    int64_t *flat = s->cand_flat + b * K;
    if (!s->config->do_sample) {
        top_n(flat, acc, NB * V, K);
    } else {
        /* K draws without replacement from softmax(acc), then sorted by score (torch.multinomial + sort).
         * Once every candidate of non-zero probability is drawn, torch goes on with zero-probability ones: so
         * do we, in index order. */
        uint8_t *taken = s->taken;
        memset(taken, 0, (size_t)(NB * V));
        float m = -INFINITY;
        for (int64_t i = 0; i < NB * V; i++)
            if (acc[i] > m) m = acc[i];
        double total = 0.0;
        for (int64_t i = 0; i < NB * V; i++) total += exp((double)(acc[i] - m));
        for (int64_t k = 0; k < K; k++) {
            double u = nt_rng_uniform(rng) * total, cumulative = 0.0;
            int64_t pick = -1, last = -1, first_free = -1;
            for (int64_t i = 0; i < NB * V; i++) {
                if (taken[i]) continue;
                if (first_free < 0) first_free = i;
                double p = exp((double)(acc[i] - m));
                if (p <= 0.0) continue;
                last = i;
                cumulative += p;
                if (u < cumulative) {
                    pick = i;
                    break;
                }
            }
            if (pick < 0) pick = last >= 0 ? last : first_free; /* rounding at the end, or only zeros left */
            taken[pick] = 1;
            flat[k] = pick;
            total -= exp((double)(acc[pick] - m));
            if (total < 0) total = 0;
        }
        /* sort the draws by score, best first */
        for (int64_t k = 1; k < K; k++)
            for (int64_t q = k; q > 0 && acc[flat[q]] > acc[flat[q - 1]]; q--) {
                int64_t t = flat[q];
                flat[q] = flat[q - 1];
                flat[q - 1] = t;
            }
    }
    for (int64_t k = 0; k < K; k++) s->cand_scores[b * K + k] = acc[flat[k]];
}

int nt_beam_search_step(nt_beam_search *s, int64_t *running, float *scores, int64_t length, nt_rng *rng,
                        int timed_out) {
    const nt_generation_config *c = s->config;
    int64_t B = s->B, NB = s->NB, K = s->K, M = s->M, G = s->G, V = s->V, T0 = s->T0, L = length;
    int all_hit = 1;

    for (int64_t b = 0; b < B; b++) {
        candidates(s, scores, b, rng);
        /* the candidates' sequences, beam indices and whether they meet a stopping criterion */
        for (int64_t k = 0; k < K; k++) {
            int64_t flat = s->cand_flat[b * K + k], source = flat / V, token = flat % V;
            int64_t *seq = s->cand_seqs + (b * K + k) * M;
            int64_t *idx = s->cand_beam_indices + (b * K + k) * G;
            memcpy(seq, running + (b * NB + source) * M, (size_t)M * sizeof(int64_t));
            memcpy(idx, s->running_beam_indices + (b * NB + source) * G, (size_t)G * sizeof(int64_t));
            seq[L] = token;
            idx[L - T0] = b * NB + source;
            int hit = L + 1 >= M || timed_out || nt_is_eos(c, token);
            s->cand_hits[b * K + k] = (uint8_t)hit;
            all_hit &= hit;
        }

        /* the best NB candidates that did not stop keep running (candidates are copies: no aliasing) */
        float *running_scores = s->step_scores + b * (NB + K); /* (K) */
        for (int64_t k = 0; k < K; k++)
            running_scores[k] = s->cand_scores[b * K + k] + (s->cand_hits[b * K + k] ? NT_BEAM_EXCLUDED : 0.0f);
        int64_t *chosen = s->chosen;
        top_n(chosen, running_scores, K, NB);
        for (int64_t j = 0; j < NB; j++) {
            int64_t k = chosen[j], row = b * NB + j;
            memcpy(running + row * M, s->cand_seqs + (b * K + k) * M, (size_t)M * sizeof(int64_t));
            memcpy(s->running_beam_indices + row * G, s->cand_beam_indices + (b * K + k) * G,
                   (size_t)G * sizeof(int64_t));
            s->running_scores[row] = running_scores[k];
            s->reorder[row] = s->running_beam_indices[row * G + L - T0]; /* the cache row it continues */
        }

        /* the finished hypotheses: the best NB of those kept so far and the candidates that just stopped */
        int full = c->early_stopping == NT_EARLY_STOPPING_TRUE;
        for (int64_t j = 0; j < NB; j++) full &= s->is_finished[b * NB + j];
        float divisor = (float)pow((double)(L + 1 - T0), (double)c->length_penalty);
        /* merged (NB + K): the finished scores, then the candidates' with the length penalty, excluded (-1e9
         * added, in Transformers' order) unless among the best NB, just stopped and still able to improve */
        float *merged = s->step_scores + b * (NB + K);
        uint8_t *just_finished = s->just_finished;
        for (int64_t j = 0; j < NB; j++) merged[j] = s->beam_scores[b * NB + j];
        for (int64_t k = 0; k < K; k++) {
            float score = s->cand_scores[b * K + k] / divisor;
            score += full ? NT_BEAM_EXCLUDED : 0.0f;
            score += s->unsatisfied[b] ? 0.0f : NT_BEAM_EXCLUDED;
            just_finished[k] = s->cand_hits[b * K + k] && k < NB;
            score += just_finished[k] ? 0.0f : NT_BEAM_EXCLUDED;
            merged[NB + k] = score;
        }
        int64_t *best = s->best;
        top_n(best, merged, NB + K, NB);
        uint8_t *finished_flags = s->finished_flags;
        float *new_scores = s->new_scores;
        for (int64_t j = 0; j < NB; j++) {
            int64_t i = best[j];
            const int64_t *seq = i < NB ? s->sequences + (b * NB + i) * M : s->cand_seqs + (b * K + i - NB) * M;
            const int64_t *idx = i < NB ? s->beam_indices + (b * NB + i) * G : s->cand_beam_indices + (b * K + i - NB) * G;
            /* staged, as the kept hypotheses may move among themselves */
            memcpy(s->staged_rows + (b * NB + j) * M, seq, (size_t)M * sizeof(int64_t));
            memcpy(s->staged_indices + (b * NB + j) * G, idx, (size_t)G * sizeof(int64_t));
            new_scores[j] = merged[i];
            finished_flags[j] = i < NB ? s->is_finished[b * NB + i] : just_finished[i - NB];
        }
        for (int64_t j = 0; j < NB; j++) {
            memcpy(s->sequences + (b * NB + j) * M, s->staged_rows + (b * NB + j) * M, (size_t)M * sizeof(int64_t));
            memcpy(s->beam_indices + (b * NB + j) * G, s->staged_indices + (b * NB + j) * G, (size_t)G * sizeof(int64_t));
            s->beam_scores[b * NB + j] = new_scores[j];
            s->is_finished[b * NB + j] = finished_flags[j];
        }
    }
    L = length + 1;

    /* can a running beam still beat the worst finished one? (_check_early_stop_heuristic) */
    int improvement_possible = 0, all_finished = 1;
    for (int64_t b = 0; b < B; b++) {
        int64_t hypothetical = c->early_stopping == NT_EARLY_STOPPING_NEVER && c->length_penalty > 0.0f ? M - T0
                                                                                                       : L - T0;
        float best_possible = s->running_scores[b * NB] / (float)pow((double)hypothetical, (double)c->length_penalty);
        float worst = INFINITY;
        for (int64_t j = 0; j < NB; j++)
            if (s->beam_scores[b * NB + j] < worst) worst = s->beam_scores[b * NB + j];
        int better = 0;
        for (int64_t j = 0; j < NB; j++) better |= best_possible > (s->is_finished[b * NB + j] ? worst : NT_BEAM_EXCLUDED);
        s->unsatisfied[b] &= (uint8_t)better;
        improvement_possible |= s->unsatisfied[b];
        for (int64_t j = 0; j < NB; j++) all_finished &= s->is_finished[b * NB + j];
    }
    int open_beam = !(all_finished && c->early_stopping == NT_EARLY_STOPPING_TRUE);
    return !(improvement_possible && open_beam && !all_hit);
}

int64_t nt_beam_search_output_length(const nt_beam_search *s, int64_t n) {
    int64_t longest = 0;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t j = 0; j < n && j < s->NB; j++) {
            const int64_t *idx = s->beam_indices + (b * s->NB + j) * s->G;
            int64_t count = 0;
            for (int64_t t = 0; t < s->G; t++) count += idx[t] != -1;
            if (count > longest) longest = count;
        }
    return longest;
}
