/* Beam search (beam.c), after Transformers' GenerationMixin._beam_search, for the decoding loop of generate.c.
 *
 * Shapes: B prompts, NB = num_beams running beams each (N = B * NB rows), K candidates kept per prompt
 * per step, M = max_length, T0 prompt length, G = M - T0 new tokens at most, V vocab. */
#ifndef NT_BEAM_H
#define NT_BEAM_H

#include "model/sampling.h"
#include "nemotron.h"

/* Transformers' stand-in for minus infinity in beam scores */
#define NT_BEAM_EXCLUDED (-1.0e9f)

typedef struct {
    const nt_generation_config *config; /* the generator's */
    int64_t B, NB, K, M, T0, G, V;

    /* Every table is as wide as max_length (M) or the new tokens (G), but only the tokens made so far are ever
     * written or copied: a max_length that eos cuts short costs address space, not memory or time. */

    /* the running beams, all `length` tokens long (their tokens are the generator's rows) */
    float *running_scores;         /* (B, NB) summed log-probabilities */
    int64_t *running_beam_indices; /* (B, NB, G) the row each step continued: the first length - T0 */
    int64_t *reorder;              /* (N) the cache row each running beam continues, after a step */
    /* the finished hypotheses, best first: the first lengths[i] tokens of row i and lengths[i] - T0 beam indices,
     * the rest written by nt_beam_search_finish */
    int64_t *sequences;            /* (B, NB, M) the caller's outputs->sequences */
    int64_t *lengths;              /* (B, NB) tokens of each hypothesis, the prompt's included (T0: none yet) */
    float *beam_scores;            /* (B, NB) length-penalised scores */
    int64_t *beam_indices;         /* (B, NB, G) */
    uint8_t *is_finished;          /* (B, NB) */
    uint8_t *unsatisfied;          /* (B) the early-stop heuristic still allows improvement */

    /* scratch of one prompt's step */
    float *cand_scores;            /* (B, K) */
    int64_t *cand_flat;            /* (B, K) index into the NB * V continuations */
    uint8_t *cand_hits;            /* (B, K) the candidate meets a stopping criterion */
    nt_stop_hook stop_hook;        /* the caller's stopping criteria over the candidates, or NULL */
    void *stop_ctx;
    nt_status stop_status;         /* what the stop hook last returned */
    float *step_scores;            /* (NB + K) the candidates' running scores, then the merged finished ones */
    int64_t *chosen;               /* (NB) the candidates that keep running */
    float *chosen_scores;          /* (NB) their running scores */
    int64_t *best;                 /* (NB) the entries of the merged list that are the new finished hypotheses */
    uint8_t *just_finished;        /* (K) */
    int64_t *staged_rows;          /* (2 NB, M) the new finished hypotheses, then the new running beams */
    int64_t *staged_indices;       /* (2 NB, G) their beam indices */
    int64_t *staged_lengths;       /* (NB) the new finished hypotheses' lengths */
    uint8_t *finished_flags;       /* (NB) */
    float *new_scores;             /* (NB) */
    uint8_t *taken;                /* (NB * V) with do_sample: candidates drawn so far */
    int64_t *topk_scratch;         /* nt_topk's work space for the step's selections */
} nt_beam_search;

/* K, the candidates kept per prompt and step: enough that NB of them continue however many end in an eos. */
static inline int64_t nt_beam_search_candidates(const nt_generation_config *c) {
    return (c->n_eos + 1 > 2 ? c->n_eos + 1 : 2) * c->num_beams;
}

/* Starts the search over the B * NB rows (N, M) of `running` (the prompts of T0 tokens, each repeated NB times);
 * the finished hypotheses go to sequences (B, NB, M), which the caller owns. */
nt_status nt_beam_search_create(nt_beam_search **out, nt_error *err, const nt_generation_config *config, int64_t B,
                                int64_t T0, int64_t V, int64_t *sequences, const int64_t *running);
void nt_beam_search_free(nt_beam_search *s);

/* One step over rows of `length` tokens: from the processed log-probabilities scores (N, V) (the running scores
 * are added in place), chooses the continuations, rewrites running (N, M), the finished hypotheses and reorder.
 * timed_out: the deadline has passed. Returns whether the search is done, -1 when sampling finds a prompt's
 * scores give no distribution (every one -inf, or a NaN or +inf among them), or -2 when the stop hook failed or
 * memory for its candidates ran out (stop_status; err says which). */
int nt_beam_search_step(nt_beam_search *s, nt_error *err, int64_t *running, float *scores, int64_t length,
                        nt_rng *rng, int timed_out);

/* The number of new tokens of the longest of the first n hypotheses of every prompt. */
int64_t nt_beam_search_output_length(const nt_beam_search *s, int64_t n);

/* Once the search is done: pads every hypothesis in sequences with the fill token up to the longest one, and
 * writes beam_indices (B, NB, G) (NULL: none) up to the same length, -1 past each hypothesis' end. */
void nt_beam_search_finish(nt_beam_search *s, int64_t *beam_indices, int64_t fill);

#endif
