/* The settings tables declared in nemotron.h: one line per member of nt_config and nt_generation_config. */
#include <stddef.h>

#include "nemotron.h"

#define SCALAR(type, member, kind, default_value) \
    {#member, offsetof(type, member), kind, 0, default_value, -1}
#define REQUIRED(type, member, kind) {#member, offsetof(type, member), kind, 1, 0, -1}
#define ARRAY(type, member, kind, count) {#member, offsetof(type, member), kind, 0, 0, offsetof(type, count)}
#define LIST(type, member, kind) {#member, offsetof(type, member), kind, 0, 0, -1}

#define C(member, kind) REQUIRED(nt_config, member, kind)
const nt_field nt_config_fields[] = {
    C(vocab_size, NT_FIELD_INT64),
    C(hidden_size, NT_FIELD_INT64),
    C(intermediate_size, NT_FIELD_INT64),
    C(num_hidden_layers, NT_FIELD_INT64),
    C(num_attention_heads, NT_FIELD_INT64),
    C(num_key_value_heads, NT_FIELD_INT64),
    C(head_dim, NT_FIELD_INT64),
    C(rotary_dim, NT_FIELD_INT64),
    C(inv_freq, NT_FIELD_FLOATS), /* (rotary_dim / 2) */
    C(rope_attention_scaling, NT_FIELD_FLOAT),
    C(norm_eps, NT_FIELD_FLOAT),
    C(hidden_act, NT_FIELD_INT),
    C(attention_bias, NT_FIELD_INT),
    C(mlp_bias, NT_FIELD_INT),
    C(tie_word_embeddings, NT_FIELD_INT),
};
const size_t nt_config_field_count = sizeof nt_config_fields / sizeof *nt_config_fields;
#undef C

/* defaults turn each processor off, as nt_generation_config's comments say */
#define G(member, kind, default_value) SCALAR(nt_generation_config, member, kind, default_value)
#define G_ARRAY(member, kind, count) ARRAY(nt_generation_config, member, kind, count)
#define G_LIST(member) LIST(nt_generation_config, member, NT_FIELD_TOKENS)
const nt_field nt_generation_config_fields[] = {
    REQUIRED(nt_generation_config, max_length, NT_FIELD_INT64),
    G(min_length, NT_FIELD_INT64, 0),
    G_ARRAY(eos_token_ids, NT_FIELD_TOKENS, n_eos),
    G(pad_token_id, NT_FIELD_INT64, 0),
    G(beam_fill_token_id, NT_FIELD_INT64, -1),
    G(deadline, NT_FIELD_DOUBLE, 0),

    G_LIST(sequence_bias), /* as long as sequence_bias_ends' last value */
    G_ARRAY(sequence_bias_ends, NT_FIELD_TOKENS, n_sequence_bias),
    G_ARRAY(sequence_bias_values, NT_FIELD_FLOATS, n_sequence_bias),
    G(repetition_penalty, NT_FIELD_FLOAT, 1),
    G_LIST(prompt_padding), /* (N) */
    G(no_repeat_ngram_size, NT_FIELD_INT64, 0),
    G_LIST(bad_words), /* as long as bad_word_ends' last value */
    G_ARRAY(bad_word_ends, NT_FIELD_TOKENS, n_bad_words),
    G(forced_bos_token_id, NT_FIELD_INT64, -1),
    G_ARRAY(forced_eos_token_ids, NT_FIELD_TOKENS, n_forced_eos),
    G(remove_invalid_values, NT_FIELD_INT, 0),
    G(decay_start, NT_FIELD_INT64, -1),
    G(decay_factor, NT_FIELD_FLOAT, 1),
    G_ARRAY(suppress_tokens, NT_FIELD_TOKENS, n_suppress_tokens),
    G_ARRAY(begin_suppress_tokens, NT_FIELD_TOKENS, n_begin_suppress_tokens),
    G(begin_index, NT_FIELD_INT64, -1),

    G(do_sample, NT_FIELD_INT, 0),
    G(temperature, NT_FIELD_FLOAT, 1),
    G(top_k, NT_FIELD_INT64, 0),
    G(top_p, NT_FIELD_FLOAT, 1),
    G(min_p, NT_FIELD_FLOAT, -1),
    G(typical_p, NT_FIELD_FLOAT, 1),
    G(epsilon_cutoff, NT_FIELD_FLOAT, 0),
    G(eta_cutoff, NT_FIELD_FLOAT, 0),
    G(renormalize_logits, NT_FIELD_INT, 0),
    G(min_tokens_to_keep, NT_FIELD_INT64, 1),
    G(seed, NT_FIELD_UINT64, 0),

    G(num_beams, NT_FIELD_INT64, 1),
    G(length_penalty, NT_FIELD_FLOAT, 1),
    G(early_stopping, NT_FIELD_INT, NT_EARLY_STOPPING_FALSE),
};
const size_t nt_generation_config_field_count = sizeof nt_generation_config_fields / sizeof *nt_generation_config_fields;
