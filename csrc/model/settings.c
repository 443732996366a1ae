/* The settings tables declared in nemotron.h: one line per member of nt_config and nt_generation_config. */
#include <math.h>
#include <stddef.h>

#include "nemotron.h"

/* the kind follows from the member's type, so that a table line cannot disagree with the struct */
#define KIND(type, member)                                                                                 \
    _Generic(((type *)0)->member, int64_t: NT_FIELD_INT64, uint64_t: NT_FIELD_UINT64, float: NT_FIELD_FLOAT, \
             double: NT_FIELD_DOUBLE, const int64_t *: NT_FIELD_TOKENS, const float *: NT_FIELD_FLOATS,      \
             default: NT_FIELD_INT)
/* flags are int, and the enums below are written as ints */
_Static_assert(sizeof(nt_activation) == sizeof(int) && sizeof(nt_early_stopping) == sizeof(int) &&
                   sizeof(nt_rope_scaling) == sizeof(int), "enums are ints");

#define SCALAR(type, member, default_value) {#member, offsetof(type, member), KIND(type, member), 0, default_value, -1}
#define REQUIRED(type, member) {#member, offsetof(type, member), KIND(type, member), 1, 0, -1}
#define ARRAY(type, member, count) {#member, offsetof(type, member), KIND(type, member), 0, 0, offsetof(type, count)}
#define LIST(type, member) {#member, offsetof(type, member), KIND(type, member), 0, 0, -1}

#define C(member) REQUIRED(nt_config, member)
const nt_field nt_config_fields[] = {
    C(vocab_size),
    C(hidden_size),
    C(intermediate_size),
    C(num_hidden_layers),
    C(num_attention_heads),
    C(num_key_value_heads),
    C(head_dim),
    C(rotary_dim),
    C(inv_freq), /* (rotary_dim / 2) */
    C(rope_attention_scaling),
    SCALAR(nt_config, rope_scaling, NT_ROPE_FIXED),
    SCALAR(nt_config, rope_length_threshold, 0),
    SCALAR(nt_config, rope_theta, 0),
    SCALAR(nt_config, rope_factor, 0),
    SCALAR(nt_config, rope_dim, 0),
    LIST(nt_config, long_inv_freq), /* (rotary_dim / 2) */
    C(norm_eps),
    C(hidden_act),
    C(attention_bias),
    C(mlp_bias),
    C(tie_word_embeddings),
    C(masked_rows_average),
};
const size_t nt_config_field_count = sizeof nt_config_fields / sizeof *nt_config_fields;
#undef C

/* defaults turn each processor off, as nt_generation_config's comments say */
#define G(member, default_value) SCALAR(nt_generation_config, member, default_value)
#define G_ARRAY(member, count) ARRAY(nt_generation_config, member, count)
#define G_LIST(member) LIST(nt_generation_config, member)
const nt_field nt_generation_config_fields[] = {
    REQUIRED(nt_generation_config, max_length),
    G(min_length, 0),
    G_ARRAY(eos_token_ids, n_eos),
    G(pad_token_id, 0),
    G(custom_eos_criteria, 0),
    G(beam_fill_token_id, -1),
    G(deadline, 0),

    G_LIST(sequence_bias), /* as long as sequence_bias_ends' last value */
    G_ARRAY(sequence_bias_ends, n_sequence_bias),
    G_ARRAY(sequence_bias_values, n_sequence_bias),
    G(encoder_repetition_penalty, 1),
    G(repetition_penalty, 1),
    G_LIST(prompt_padding), /* (N) */
    G(no_repeat_ngram_size, 0),
    G(encoder_no_repeat_ngram_size, 0),
    G_LIST(bad_words), /* as long as bad_word_ends' last value */
    G_ARRAY(bad_word_ends, n_bad_words),
    G(forced_bos_token_id, -1),
    G_ARRAY(forced_eos_token_ids, n_forced_eos),
    G(remove_invalid_values, 0),
    G(decay_start, INFINITY),
    G(decay_factor, 1),
    G_ARRAY(suppress_tokens, n_suppress_tokens),
    G_ARRAY(begin_suppress_tokens, n_begin_suppress_tokens),
    G(begin_index, -1),

    G(do_sample, 0),
    G(temperature, 1),
    G(top_k, 0),
    G(top_p, 1),
    G(min_p, -1),
    G(typical_p, 1),
    G(epsilon_cutoff, 0),
    G(eta_cutoff, 0),
    G(renormalize_logits, 0),
    G(min_tokens_to_keep, 1),
    G(seed, 0),

    G(num_beams, 1),
    G(length_penalty, 1),
    G(early_stopping, NT_EARLY_STOPPING_FALSE),
};
const size_t nt_generation_config_field_count =
    sizeof nt_generation_config_fields / sizeof *nt_generation_config_fields;
