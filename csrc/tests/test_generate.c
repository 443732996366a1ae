/* A C-only smoke test of the generator under AddressSanitizer: a random tiny model, every decoding mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "nemotron.h"
static float frand(unsigned *s) { *s = *s * 1103515245u + 12345u; return ((*s >> 8) & 0xffff) / 65536.0f - 0.5f; }
/* Every decoding mode from `first_mode` on, with a vocabulary of V and n_eos eos tokens (62 of 4096: beam search
 * keeps 63 candidates per beam, where its selections take the most work space). */
static int run(int64_t V, int64_t n_eos, int first_mode) {
    nt_config c = {.vocab_size = V, .hidden_size = 32, .intermediate_size = 48, .num_hidden_layers = 2,
                   .num_attention_heads = 4, .num_key_value_heads = 2, .head_dim = 8, .rotary_dim = 4,
                   .rope_attention_scaling = 1.0f, .norm_eps = 1e-5f, .hidden_act = NT_ACT_RELU2};
    float inv_freq[2] = {1.0f, 0.01f};
    c.inv_freq = inv_freq;
    int64_t H = 32, I = 48, QD = 32, KVD = 16;
    unsigned seed = 1;
    nt_tensor t[NT_GLOBAL_COUNT + 2 * NT_LAYER_COUNT];
    memset(t, 0, sizeof t);
    float *store[64]; int ns = 0;
#define MAKE(idx, r, cols) do { int64_t n = (r) * ((cols) ? (cols) : 1); float *d = malloc(n * 4); for (int64_t q = 0; q < n; q++) d[q] = frand(&seed); store[ns++] = d; \
    t[idx].data = d; t[idx].dtype = NT_DTYPE_F32; t[idx].ndim = (cols) ? 2 : 1; t[idx].shape[0] = (r); t[idx].shape[1] = (cols); t[idx].nbytes = n * 4; } while (0)
    MAKE(NT_GLOBAL_EMBED_TOKENS, V, H); MAKE(NT_GLOBAL_NORM_WEIGHT, H, 0); MAKE(NT_GLOBAL_NORM_BIAS, H, 0); MAKE(NT_GLOBAL_LM_HEAD, V, H);
    for (int l = 0; l < 2; l++) {
        int b = NT_GLOBAL_COUNT + l * NT_LAYER_COUNT;
        MAKE(b + NT_LAYER_INPUT_NORM_WEIGHT, H, 0); MAKE(b + NT_LAYER_INPUT_NORM_BIAS, H, 0);
        MAKE(b + NT_LAYER_Q_PROJ, QD, H); MAKE(b + NT_LAYER_K_PROJ, KVD, H); MAKE(b + NT_LAYER_V_PROJ, KVD, H);
        MAKE(b + NT_LAYER_O_PROJ, H, QD); MAKE(b + NT_LAYER_POST_NORM_WEIGHT, H, 0); MAKE(b + NT_LAYER_POST_NORM_BIAS, H, 0);
        MAKE(b + NT_LAYER_UP_PROJ, I, H); MAKE(b + NT_LAYER_DOWN_PROJ, H, I);
    }
    nt_error err = {0};
    nt_model *model;
    if (nt_model_create(&model, &err, &c, t, NT_GLOBAL_COUNT + 2 * NT_LAYER_COUNT, "portable", 2) != NT_OK) { printf("model: %s\n", err.message); return 1; }
    int64_t eos[62] = {7, 9}, bad[3] = {4, 5, 6}, bad_ends[2] = {1, 3}, sup[1] = {2}, bias_tok[2] = {1, 3}, bias_ends[1] = {2}, feos[1] = {7};
    for (int64_t i = 2; i < n_eos; i++) eos[i] = 10 + i;
    float bias_vals[1] = {2.0f};
    for (int mode = first_mode; mode < 4; mode++) {
        int64_t NB = mode >= 2 ? 3 : 1, B = 2, N = B * NB, T = 5, M = 16, G = M - T;
        nt_generation_config g = {.max_length = M, .min_length = 8, .eos_token_ids = eos, .n_eos = n_eos, .pad_token_id = 0,
            .beam_fill_token_id = 0, .repetition_penalty = 1.3f, .no_repeat_ngram_size = 2, .bad_words = bad,
            .bad_word_ends = bad_ends, .n_bad_words = 2, .suppress_tokens = sup, .n_suppress_tokens = 1,
            .begin_index = T, .begin_suppress_tokens = sup, .n_begin_suppress_tokens = 1,
            .sequence_bias = bias_tok, .sequence_bias_ends = bias_ends, .sequence_bias_values = bias_vals, .n_sequence_bias = 1,
            .forced_bos_token_id = -1, .forced_eos_token_ids = feos, .n_forced_eos = 1, .remove_invalid_values = 1,
            .decay_start = 8, .decay_factor = 1.2f,
            .do_sample = mode % 2, .temperature = 0.9f, .top_k = 20, .top_p = 0.9f, .min_p = 0.01f, .typical_p = 0.95f,
            .epsilon_cutoff = 0.001f, .eta_cutoff = 0.001f, .renormalize_logits = 1,
            .min_tokens_to_keep = NB > 1 ? 3 : 1, .seed = 42, .num_beams = NB, .length_penalty = 1.0f,
            .early_stopping = NT_EARLY_STOPPING_FALSE};
        int64_t *ids = malloc(N * T * 8); uint8_t *mask = malloc(N * T);
        for (int64_t i = 0; i < N * T; i++) { ids[i] = (i * 7) % V; mask[i] = (i % T) >= (i / T) % 2; }
        int64_t *seqs = malloc(N * M * 8); float *scores = malloc(G * N * V * 4), *logits = malloc(G * N * V * 4);
        float *ss = malloc(N * 4); int64_t *bi = malloc(N * G * 8);
        nt_generation_outputs out = {seqs, scores, logits, NB > 1 ? ss : NULL, NB > 1 ? bi : NULL};
        nt_generator *gen;
        if (nt_generator_create(&gen, &err, model, &g, &out, ids, mask, N, T, NULL) != NT_OK) { printf("create: %s\n", err.message); return 1; }
        if (nt_generator_run(gen, &err, -1, NULL) != NT_OK) { printf("run: %s\n", err.message); return 1; }
        printf("V %lld, mode %d: length %lld steps %lld first row:", (long long)V, mode, (long long)nt_generator_length(gen), (long long)nt_generator_steps(gen));
        for (int64_t i = 0; i < nt_generator_length(gen); i++) /* past it: unwritten */ printf(" %lld", (long long)seqs[i]);
        printf("\n");
        nt_cache_free(nt_generator_take_cache(gen));
        nt_generator_free(gen);
        free(ids); free(mask); free(seqs); free(scores); free(logits); free(ss); free(bi);
    }
    nt_model_free(model);
    for (int i = 0; i < ns; i++) free(store[i]);
    return 0;
}

int main(void) { return run(50, 2, 0) || run(4096, 62, 2); }
