/* Logits processors, warpers and token selection of the decoding loop (sampling.c), for generate.c. */
#ifndef NT_SAMPLING_H
#define NT_SAMPLING_H

#include "nemotron.h"

/* Work space of one row's processing: V of each (ranks: 2 V, nt_topk's indices and scratch). */
typedef struct {
    float *values, *spare;
    int32_t *order;
    int64_t *ranks;
    uint8_t *flags;
} nt_row_scratch;

nt_status nt_row_scratch_init(nt_row_scratch *s, nt_error *err, int64_t V);
void nt_row_scratch_free(nt_row_scratch *s);

/* Applies the processors of `c` (and the sampling warpers when c->do_sample) of the stages [from, to)
 * (nt_processor_stage) to scores (V) in place; [0, NT_STAGE_COUNT) is all of them.
 * seq (len) is the row so far, its first prompt_len tokens the prompt (what Transformers' encoder processors read
 * as encoder_input_ids); the repetition penalty skips its first `skip` tokens. */
void nt_process_scores(const nt_generation_config *c, float *scores, const int64_t *seq, int64_t len,
                       int64_t prompt_len, int64_t skip, int64_t V, nt_row_scratch *s, int from, int to);

/* log_softmax of x (V) into y (may equal x), as torch computes it in float32. */
void nt_log_softmax(float *y, const float *x, int64_t V);

/* Whether token is one of c's eos tokens. */
int nt_is_eos(const nt_generation_config *c, int64_t token);

/* Index of the first largest score (torch.argmax). */
int64_t nt_argmax(const float *scores, int64_t V);

/* xoshiro256** seeded by splitmix64: every stream of draws is reproducible from its seed. */
typedef struct {
    uint64_t s[4];
} nt_rng;

void nt_rng_seed(nt_rng *rng, uint64_t seed);
double nt_rng_uniform(nt_rng *rng); /* [0, 1) with 53 random bits */

/* Draws a token from softmax(scores) (torch.multinomial of the softmax); work (V) is scratch. -1 when the scores give
 * no distribution: every one -inf, or a NaN or +inf among them (where torch.multinomial raises). */
int64_t nt_sample(nt_rng *rng, const float *scores, int64_t V, float *work);

#endif
