/* Beam search, after Transformers' GenerationMixin._beam_search (see model/beam.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/beam.h"

void nt_beam_search_free(nt_beam_search *s) {
    if (s == NULL) return;
    void *buffers[] = {s->running_scores, s->running_beam_indices, s->reorder, s->lengths, s->beam_scores,
                       s->beam_indices, s->is_finished, s->unsatisfied, s->cand_scores, s->cand_flat, s->cand_hits,
                       s->step_scores, s->chosen, s->chosen_scores, s->best, s->just_finished, s->staged_rows,
                       s->staged_indices, s->staged_lengths, s->finished_flags, s->new_scores, s->taken, s->topk_scratch};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    free(s);
}

nt_status nt_beam_search_create(nt_beam_search **out, nt_error *err, const nt_generation_config *config, int64_t B,
                                int64_t T0, int64_t V, int64_t *sequences, const int64_t *running) {
    *out = NULL;
    int64_t NB = config->num_beams, M = config->max_length, G = M - T0, N = B * NB;
    int64_t K = nt_beam_search_candidates(config);
    if (K > NB * V) /* torch.topk fails there too ("selected index k out of range") */
        return nt_error_set(err, NT_ERROR_INVALID_ARGUMENT,
                            "beam search keeps num_beams x (1 + the number of eos tokens) = %lld candidates a step, "
                            "more than its num_beams x vocab_size = %lld continuations", (long long)K,
                            (long long)(NB * V));
    nt_beam_search *s = calloc(1, sizeof *s);
    if (s == NULL) return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for beam search");
    *s = (nt_beam_search){.config = config, .B = B, .NB = NB, .K = K, .M = M, .T0 = T0, .G = G, .V = V,
                          .sequences = sequences};
    /* the (.., M) and (.., G) tables are written as tokens come: malloc leaves their pages untouched */
    s->running_scores = malloc((size_t)N * sizeof(float));
    s->running_beam_indices = malloc((size_t)(N * G) * sizeof(int64_t));
    s->reorder = malloc((size_t)N * sizeof(int64_t));
    s->lengths = malloc((size_t)N * sizeof(int64_t));
    s->beam_scores = malloc((size_t)N * sizeof(float));
    s->beam_indices = malloc((size_t)(N * G) * sizeof(int64_t));
    s->is_finished = calloc((size_t)N, 1);
    s->unsatisfied = malloc((size_t)B);
    s->cand_scores = malloc((size_t)(B * K) * sizeof(float));
    s->cand_flat = malloc((size_t)(B * K) * sizeof(int64_t));
    s->cand_hits = malloc((size_t)(B * K));
    s->step_scores = malloc((size_t)(NB + K) * sizeof(float));
    s->chosen = malloc((size_t)NB * sizeof(int64_t));
    s->chosen_scores = malloc((size_t)NB * sizeof(float));
    s->best = malloc((size_t)NB * sizeof(int64_t));
    s->just_finished = malloc((size_t)K);
    s->staged_rows = malloc((size_t)(2 * NB * M) * sizeof(int64_t));
    s->staged_indices = malloc((size_t)(2 * NB * G) * sizeof(int64_t));
    s->staged_lengths = malloc((size_t)NB * sizeof(int64_t));
    s->finished_flags = malloc((size_t)NB);
    s->new_scores = malloc((size_t)NB * sizeof(float));
    s->taken = malloc(config->do_sample ? (size_t)(NB * V) : 1);
    int64_t scratch = nt_topk_scratch(NB * V, K); /* the three selections' work space: the largest */
    if (nt_topk_scratch(K, NB) > scratch) scratch = nt_topk_scratch(K, NB);
    if (nt_topk_scratch(NB + K, NB) > scratch) scratch = nt_topk_scratch(NB + K, NB);
    s->topk_scratch = malloc((size_t)scratch * sizeof(int64_t) + 1);
    if (s->running_scores == NULL || s->running_beam_indices == NULL || s->reorder == NULL || s->lengths == NULL ||
        s->beam_scores == NULL || s->beam_indices == NULL || s->is_finished == NULL || s->unsatisfied == NULL ||
        s->cand_scores == NULL || s->cand_flat == NULL || s->cand_hits == NULL || s->step_scores == NULL ||
        s->chosen == NULL || s->chosen_scores == NULL || s->best == NULL || s->just_finished == NULL ||
        s->staged_rows == NULL || s->staged_indices == NULL || s->staged_lengths == NULL ||
        s->finished_flags == NULL || s->new_scores == NULL || s->taken == NULL || s->topk_scratch == NULL) {
        nt_beam_search_free(s);
        return nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for beam search");
    }
    for (int64_t i = 0; i < N; i++) {
        memcpy(sequences + i * M, running + i * M, (size_t)T0 * sizeof(int64_t));
        s->lengths[i] = T0;
        s->running_scores[i] = i % NB == 0 ? 0.0f : NT_BEAM_EXCLUDED; /* a prompt's copies start excluded */
        s->beam_scores[i] = NT_BEAM_EXCLUDED;
    }
    memset(s->unsatisfied, 1, (size_t)B);
    *out = s;
    return NT_OK;
}

/* K continuations of prompt b from its NB * V accumulated log-probabilities (in scores), best first; -1 when
 * sampling and they give no distribution */
static int candidates(nt_beam_search *s, float *scores, int64_t b, nt_rng *rng) {
    int64_t NB = s->NB, V = s->V, K = s->K;
    float *acc = scores + b * NB * V; /* (NB * V) */
    for (int64_t j = 0; j < NB; j++)
        for (int64_t v = 0; v < V; v++) acc[j * V + v] += s->running_scores[b * NB + j];
    int64_t *flat = s->cand_flat + b * K;
    if (!s->config->do_sample) {
        nt_topk(flat, s->topk_scratch, acc, NB * V, K);
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
        if (!(total > 0.0 && isfinite(total))) return -1;
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
    return 0;
}

/* copies a row of `length` tokens and its length - T0 beam indices, then appends token continuing beam `row` */
static void extend(const nt_beam_search *s, int64_t *seq, int64_t *idx, const int64_t *from_seq,
                   const int64_t *from_idx, int64_t length, int64_t token, int64_t row) {
    memcpy(seq, from_seq, (size_t)length * sizeof(int64_t));
    memcpy(idx, from_idx, (size_t)(length - s->T0) * sizeof(int64_t));
    seq[length] = token;
    idx[length - s->T0] = row;
}

/* The caller's stopping criteria over every prompt's K candidates (B K rows of length + 1 tokens, best first), as
 * Transformers' beam search calls them: their hits are added to cand_hits. */
static int stop_hook_hits(nt_beam_search *s, nt_error *err, const int64_t *running, int64_t length) {
    int64_t K = s->K, V = s->V, M = s->M, rows = s->B * K, L = length;
    int64_t *ids = malloc((size_t)(rows * (L + 1)) * sizeof(int64_t));
    uint8_t *hits = calloc((size_t)rows, 1);
    nt_status status = ids == NULL || hits == NULL
                           ? nt_error_set(err, NT_ERROR_OUT_OF_MEMORY, "out of memory for the beam candidates")
                           : NT_OK;
    for (int64_t i = 0; i < rows && status == NT_OK; i++) {
        int64_t flat = s->cand_flat[i], source = (i / K) * s->NB + flat / V;
        memcpy(ids + i * (L + 1), running + source * M, (size_t)L * sizeof(int64_t));
        ids[i * (L + 1) + L] = flat % V;
    }
    if (status == NT_OK) status = s->stop_hook(s->stop_ctx, err, ids, rows, L + 1, hits);
    for (int64_t i = 0; i < rows && status == NT_OK; i++) s->cand_hits[i] |= hits[i] != 0;
    free(ids);
    free(hits);
    s->stop_status = status;
    return status == NT_OK ? 0 : -2;
}

int nt_beam_search_step(nt_beam_search *s, nt_error *err, int64_t *running, float *scores, int64_t length,
                        nt_rng *rng, int timed_out) {
    const nt_generation_config *c = s->config;
    int64_t NB = s->NB, K = s->K, M = s->M, G = s->G, V = s->V, T0 = s->T0, L = length;
    int all_hit = 1;

    /* every prompt's candidates first (the draws of beam sampling in prompt order), then which of them stop: the
     * caller's criteria see them all at once */
    for (int64_t b = 0; b < s->B; b++)
        if (candidates(s, scores, b, rng) < 0) return -1;
    for (int64_t i = 0; i < s->B * K; i++)
        s->cand_hits[i] =
            (uint8_t)(L + 1 >= M || timed_out || (!c->custom_eos_criteria && nt_is_eos(c, s->cand_flat[i] % V)));
    if (s->stop_hook != NULL && stop_hook_hits(s, err, running, L) < 0) return -2;
    for (int64_t i = 0; i < s->B * K; i++) all_hit &= s->cand_hits[i];

    for (int64_t b = 0; b < s->B; b++) {
        const float *cand_scores = s->cand_scores + b * K;
        const int64_t *cand_flat = s->cand_flat + b * K;
        const uint8_t *cand_hits = s->cand_hits + b * K;

        /* the best NB candidates that did not stop keep running */
        float *running_scores = s->step_scores; /* (K) */
        for (int64_t k = 0; k < K; k++) running_scores[k] = cand_scores[k] + (cand_hits[k] ? NT_BEAM_EXCLUDED : 0.0f);
        nt_topk(s->chosen, s->topk_scratch, running_scores, K, NB);
        for (int64_t j = 0; j < NB; j++) s->chosen_scores[j] = running_scores[s->chosen[j]];

        /* the finished hypotheses: the best NB of those kept so far and the candidates that just stopped */
        int full = c->early_stopping == NT_EARLY_STOPPING_TRUE;
        for (int64_t j = 0; j < NB; j++) full &= s->is_finished[b * NB + j];
        float divisor = (float)pow((double)(L + 1 - T0), (double)c->length_penalty);
        /* merged (NB + K): the finished scores, then the candidates' with the length penalty, excluded (-1e9
         * added, in Transformers' order) unless among the best NB, just stopped and still able to improve */
        float *merged = s->step_scores;
        for (int64_t j = 0; j < NB; j++) merged[j] = s->beam_scores[b * NB + j];
        for (int64_t k = 0; k < K; k++) {
            float score = cand_scores[k] / divisor;
            score += full ? NT_BEAM_EXCLUDED : 0.0f;
            score += s->unsatisfied[b] ? 0.0f : NT_BEAM_EXCLUDED;
            s->just_finished[k] = cand_hits[k] && k < NB;
            score += s->just_finished[k] ? 0.0f : NT_BEAM_EXCLUDED;
            merged[NB + k] = score;
        }
        nt_topk(s->best, s->topk_scratch, merged, NB + K, NB);

        /* Staged, as both read the running rows they replace and the kept hypotheses may move among themselves:
         * rows 0..NB-1 the new finished hypotheses, rows NB..2NB-1 the new running beams. */
        for (int64_t j = 0; j < NB; j++) {
            int64_t i = s->best[j], *seq = s->staged_rows + j * M, *idx = s->staged_indices + j * G;
            if (i < NB) {
                int64_t kept = b * NB + i, n = s->lengths[kept];
                memcpy(seq, s->sequences + kept * M, (size_t)n * sizeof(int64_t));
                memcpy(idx, s->beam_indices + kept * G, (size_t)(n - T0) * sizeof(int64_t));
                s->staged_lengths[j] = n;
                s->finished_flags[j] = s->is_finished[kept];
            } else {
                int64_t flat = cand_flat[i - NB], source = b * NB + flat / V;
                extend(s, seq, idx, running + source * M, s->running_beam_indices + source * G, L, flat % V, source);
                s->staged_lengths[j] = L + 1;
                s->finished_flags[j] = s->just_finished[i - NB];
            }
            s->new_scores[j] = merged[i];
        }
        for (int64_t j = 0; j < NB; j++) {
            int64_t flat = cand_flat[s->chosen[j]], source = b * NB + flat / V;
            extend(s, s->staged_rows + (NB + j) * M, s->staged_indices + (NB + j) * G, running + source * M,
                   s->running_beam_indices + source * G, L, flat % V, source);
            s->reorder[b * NB + j] = source; /* the cache row it continues */
        }
        for (int64_t j = 0; j < NB; j++) {
            int64_t row = b * NB + j, n = s->staged_lengths[j];
            memcpy(s->sequences + row * M, s->staged_rows + j * M, (size_t)n * sizeof(int64_t));
            memcpy(s->beam_indices + row * G, s->staged_indices + j * G, (size_t)(n - T0) * sizeof(int64_t));
            s->lengths[row] = n;
            s->beam_scores[row] = s->new_scores[j];
            s->is_finished[row] = s->finished_flags[j];
            memcpy(running + row * M, s->staged_rows + (NB + j) * M, (size_t)(L + 1) * sizeof(int64_t));
            memcpy(s->running_beam_indices + row * G, s->staged_indices + (NB + j) * G,
                   (size_t)(L + 1 - T0) * sizeof(int64_t));
            s->running_scores[row] = s->chosen_scores[j];
        }
    }
    L = length + 1;

    /* can a running beam still beat the worst finished one? (_check_early_stop_heuristic) */
    int improvement_possible = 0, all_finished = 1;
    for (int64_t b = 0; b < s->B; b++) {
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
        for (int64_t j = 0; j < n && j < s->NB; j++)
            if (s->lengths[b * s->NB + j] - s->T0 > longest) longest = s->lengths[b * s->NB + j] - s->T0;
    return longest;
}

void nt_beam_search_finish(nt_beam_search *s, int64_t *beam_indices, int64_t fill) {
    int64_t longest = nt_beam_search_output_length(s, s->NB), M = s->M, G = s->G, T0 = s->T0;
    for (int64_t i = 0; i < s->B * s->NB; i++) {
        int64_t n = s->lengths[i] - T0;
        for (int64_t t = n; t < longest; t++) s->sequences[i * M + T0 + t] = fill;
        if (beam_indices == NULL) continue;
        memcpy(beam_indices + i * G, s->beam_indices + i * G, (size_t)n * sizeof(int64_t));
        for (int64_t t = n; t < longest; t++) beam_indices[i * G + t] = -1;
    }
}
