/*
 * nemotron_c: the public interface of the C core.
 *
 * The core implements the Nemotron decoder (Hugging Face Transformers' model_type "nemotron") and
 * its tokenizer. It knows nothing of Python. Every function that can fail returns an nt_status and,
 * on failure, writes a message into the caller's nt_error; none of them exits or aborts.
 *
 * Shape letters used in comments throughout csrc/:
 *   B batch, T new tokens in this call, P tokens already in the cache, S = P + T,
 *   H hidden_size, I intermediate_size, V vocab_size, L num_hidden_layers,
 *   NH num_attention_heads, NKV num_key_value_heads, D head_dim, R rotary dims (even, <= D).
 */
#ifndef NEMOTRON_H
#define NEMOTRON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- status */

typedef enum {
    NT_OK = 0,
    NT_ERROR_INVALID_ARGUMENT, /* a caller's value is out of range or inconsistent */
    NT_ERROR_FORMAT,           /* a file or table read from disk is malformed */
    NT_ERROR_UNSUPPORTED,      /* valid, but not something the core implements */
    NT_ERROR_OUT_OF_MEMORY,
    NT_ERROR_INTERRUPTED,      /* the caller's cancel flag was raised */
    NT_ERROR_INTERNAL,
    NT_ERROR_NOT_FINITE,       /* a computation met values it cannot go on from (sampling from no distribution) */
} nt_status;

typedef struct {
    nt_status status;
    char message[512];
} nt_error;

/* Records status and a printf-style message in err (which may be NULL); returns status. */
nt_status nt_error_set(nt_error *err, nt_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---------------------------------------------------------------- tensors */

/* Weight storage types. Adding one means: a value here, a line in the dtype table and its conversion
 * (kernels/tensor.c), and its matmul in each kernel set (kernels/matmul*.c). */
typedef enum {
    NT_DTYPE_F32 = 0,
    NT_DTYPE_BF16 = 1,
    NT_DTYPE_F16 = 2,
    NT_DTYPE_Q8 = 3, /* int8, symmetric, one float32 scale per NT_Q8_GROUP elements of a row (see nt_quantize) */
    NT_DTYPE_Q4 = 4, /* int4, symmetric, one float32 scale per NT_Q4_GROUP elements of a row, two per byte (see
                        nt_quantize) */
    NT_DTYPE_COUNT
} nt_dtype;

/* Elements of a row of an int8 tensor that share one scale. 64 rather than 32: the scales then add 1/16 to the
 * bytes a decode step streams instead of 1/8, which caps int8 at 2 / 1.0625 = 1.88x bfloat16's speed instead of
 * 1.78x; the weights' relative error grows from 0.53% to 0.59% (Gaussian) or 0.85% to 1.1% (Student-t, 3 degrees).
 * The real widths (3072, 4096, 9216, 16384) are multiples; other widths are refused. */
enum { NT_Q8_GROUP = 64 };

/* Elements of a row of an int4 tensor that share one scale: 32, as llama.cpp's q4_0 and ONNX Runtime's MatMulNBits
 * default. A group is 16 bytes, byte j holding element j in its low nibble and element j + 16 in its high one, each
 * as q + 8 (0..15): the low nibbles of a group's bytes are then its first 16 elements in order and the high nibbles
 * the next 16, so a kernel widens them against contiguous activations without shuffling. With its scale a group is
 * 20 bytes for 32 weights, 5 bits a weight against int8's 8.5: int4 streams 1.7x fewer bytes than int8. */
enum { NT_Q4_GROUP = 32 };

/* One line of the dtype table: what the core, the binding and Python know of a storage type. */
typedef struct {
    const char *name;    /* torch's name: "float32", "bfloat16", "float16"; "int8" and "int4" for the quantized ones */
    int64_t block_size;  /* elements stored together: 1, or the group of a quantized type that shares a scale */
    size_t block_bytes;  /* bytes of one block: the element size when block_size is 1 */
    int scaled;          /* rows carry one float32 scale per block in nt_tensor.scales */
} nt_dtype_info;

/* The table's line for dtype, or NULL outside [0, NT_DTYPE_COUNT). */
const nt_dtype_info *nt_dtype_get(nt_dtype dtype);
const char *nt_dtype_name(nt_dtype dtype); /* "unknown" outside the table */

/* A read-only view of a stored tensor. The core never frees `data`: its owner (a memory map or a
 * buffer held by the caller) must outlive every model built from it. */
typedef struct {
    const void *data;     /* NULL when the tensor is absent (an optional bias) */
    nt_dtype dtype;
    int ndim;             /* 1 or 2 */
    int64_t shape[2];     /* (rows, cols), or (n) when 1-D */
    size_t nbytes;        /* what the owner says the buffer holds; checked against shape x dtype */
    const float *scales;  /* (rows, cols / group_size) per-group scales of a quantized dtype; NULL for the float
                             dtypes. Owned like data. */
    int64_t group_size;   /* elements of a row sharing one scale (the dtype's block_size); 0 without scales */
    size_t scales_nbytes; /* what the owner says the scales buffer holds; checked against the shape */
    int bf16_values;      /* float32 whose every value is a bfloat16 value (widened from a bfloat16 checkpoint):
                             kernels may multiply them as bfloat16, with the same products. 0 when unknown. */
} nt_tensor;

/* ---------------------------------------------------------------- thread pool */

/* A handle on the process's one pool of worker threads: it says how many threads (the caller's included) a
 * call through it may use. The workers are shared by every handle, started on first use, and number the largest
 * num_threads used minus one. While one call has them, a call from another thread runs on its own thread. */
typedef struct nt_threadpool nt_threadpool;

/* num_threads <= 0 means the environment variable NEMOTRON_C_NUM_THREADS when set (an error unless it is an
 * integer in [1, 1024]), else one per CPU the process may run on. */
nt_status nt_threadpool_create(nt_threadpool **out, nt_error *err, int num_threads);
void nt_threadpool_free(nt_threadpool *pool);
int nt_threadpool_size(const nt_threadpool *pool);

/* Calls fn(ctx, begin, end) over consecutive ranges covering [0, n), each at least `grain` long
 * (but the last), spread over up to the handle's number of threads. Returns when all are done.
 * Safe after fork(): a child process starts its own workers on first use. */
typedef void (*nt_range_fn)(void *ctx, int64_t begin, int64_t end);
void nt_threadpool_parallel_for(nt_threadpool *pool, nt_range_fn fn, void *ctx, int64_t n, int64_t grain);

/* ---------------------------------------------------------------- quantization (kernels/quantize.c) */

/* Quantizes a 2-D float32, bfloat16 or float16 tensor (N, K) to a quantized dtype, each group of elements of a row
 * on its own, q rounded to the nearest integer, ties to even:
 * - NT_DTYPE_Q8, groups of NT_Q8_GROUP: scale = max|w| / 127 in float32, q = w / scale clamped to [-127, 127]
 *   (which only a subnormal scale needs);
 * - NT_DTYPE_Q4, groups of NT_Q4_GROUP: m = the weight of largest magnitude (the first of them), scale = m / -8 in
 *   float32 (exact: a power of two), q = w / scale clamped to [-8, 7]. As llama.cpp's q4_0, m maps to -8 exactly and
 *   the whole of the 16 levels is used: the step is max|w| / 8 rather than max|w| / 7, 12% less error (RMS) on
 *   Gaussian and Student-t weights than [-7, 7]; a weight of -m, if the group holds one, clamps to 7. The scale
 *   carries m's sign.
 * A group whose scale is 0 (zeros, or weights so small that the division underflows) is all zeros with scale +0.
 * Outputs: data (N, K) in dtype's layout (int8: N x K bytes; int4: N x K / 2, see NT_Q4_GROUP), scales (N, K / group).
 * K must be a multiple of the group and every weight finite, else NT_ERROR_INVALID_ARGUMENT. Rows are spread over
 * pool (NULL: the caller's thread only). */
nt_status nt_quantize(void *data, float *scales, nt_error *err, nt_dtype dtype, const nt_tensor *src,
                      nt_threadpool *pool);

/* ---------------------------------------------------------------- model */

typedef enum {
    NT_ACT_RELU2 = 0, /* relu(x)^2, Nemotron's default */
    NT_ACT_RELU,
    NT_ACT_SILU,
    NT_ACT_GELU,      /* exact, erf-based */
    NT_ACT_GELU_TANH, /* tanh approximation (gelu_new, gelu_pytorch_tanh) */
    NT_ACT_SIGMOID,
    NT_ACT_GELU_CLIPPED,  /* gelu clipped to [-10, 10] (gelu_10) */
    NT_ACT_QUICK_GELU,    /* x * sigmoid(1.702 x) */
    NT_ACT_LEAKY_RELU,    /* negative slope 0.01 */
    NT_ACT_IDENTITY,      /* linear */
    NT_ACT_MISH,          /* x * tanh(softplus(x)) */
    NT_ACT_RELU6,
    NT_ACT_TANH,
    NT_ACT_HARDSWISH,     /* x * relu6(x + 3) / 6 */
    NT_ACT_LAPLACE,       /* 0.5 (1 + erf((x - 0.707107) / (0.282095 sqrt 2))) */
    NT_ACT_SQRT_SOFTPLUS, /* sqrt(softplus(x)) */
    NT_ACT_COUNT
} nt_activation;

/* RoPE types whose frequencies follow the length of each forward pass, Transformers' dynamic_rope_update. That
 * length is the largest position id of the call + 1 (over the whole batch, left padding included). */
typedef enum {
    NT_ROPE_FIXED = 0, /* inv_freq for every call (default, linear, llama3, yarn) */
    NT_ROPE_DYNAMIC,   /* dynamic NTK: inv_freq up to rope_length_threshold (max_position_embeddings), then the
                          frequencies of base rope_theta * (f * n / m - (f - 1)) ** (d / (d - 2)) for the longest
                          length n the model has seen since it last ran a call shorter than m (f rope_factor,
                          d rope_dim, m the threshold), in float32 as torch; the model keeps that length */
    NT_ROPE_LONGROPE,  /* inv_freq (short factors) while the length is at most rope_length_threshold
                          (original_max_position_embeddings), long_inv_freq beyond it */
} nt_rope_scaling;

typedef struct {
    int64_t vocab_size;          /* V */
    int64_t hidden_size;         /* H */
    int64_t intermediate_size;   /* I */
    int64_t num_hidden_layers;   /* L */
    int64_t num_attention_heads; /* NH */
    int64_t num_key_value_heads; /* NKV, divides NH */
    int64_t head_dim;            /* D */
    int64_t rotary_dim;          /* R = int(D * partial_rotary_factor), even */
    const float *inv_freq;       /* (R/2) rotary inverse frequencies, copied by nt_model_create */
    float rope_attention_scaling;/* multiplies cos and sin (1 for the default rope type) */
    nt_rope_scaling rope_scaling;/* NT_ROPE_FIXED unless the frequencies follow the length (see nt_rope_scaling) */
    int64_t rope_length_threshold;/* the length above which the frequencies change (see nt_rope_scaling) */
    double rope_theta;           /* NT_ROPE_DYNAMIC's base */
    double rope_factor;          /* NT_ROPE_DYNAMIC's factor */
    int64_t rope_dim;            /* NT_ROPE_DYNAMIC: int(D * partial_rotary_factor), odd or even, <= R */
    const float *long_inv_freq;  /* NT_ROPE_LONGROPE: (R/2), copied by nt_model_create */
    float norm_eps;
    nt_activation hidden_act;
    int attention_bias;          /* q/k/v/o projections carry biases */
    int mlp_bias;                /* up/down projections carry biases */
    int tie_word_embeddings;     /* lm_head is embed_tokens */
    int masked_rows_average;     /* a query whose keys are all masked (a left-padding position) averages every
                                    value, as Transformers' eager attention; 0: it is zero, as its SDPA attention */
} nt_config;

/* Tensors given to nt_model_create, in this order: the NT_GLOBAL_COUNT global tensors, then
 * NT_LAYER_COUNT tensors for each layer. Names are those of Transformers' state dict. */
typedef enum {
    NT_GLOBAL_EMBED_TOKENS = 0, /* model.embed_tokens.weight (V, H) */
    NT_GLOBAL_NORM_WEIGHT,      /* model.norm.weight (H) */
    NT_GLOBAL_NORM_BIAS,        /* model.norm.bias (H) */
    NT_GLOBAL_LM_HEAD,          /* lm_head.weight (V, H); absent when tied or for a bare model */
    NT_GLOBAL_COUNT
} nt_global_tensor;

typedef enum {
    NT_LAYER_INPUT_NORM_WEIGHT = 0, /* input_layernorm.weight (H) */
    NT_LAYER_INPUT_NORM_BIAS,       /* input_layernorm.bias (H) */
    NT_LAYER_Q_PROJ,                /* self_attn.q_proj.weight (NH*D, H) */
    NT_LAYER_Q_BIAS,                /* self_attn.q_proj.bias (NH*D) */
    NT_LAYER_K_PROJ,                /* self_attn.k_proj.weight (NKV*D, H) */
    NT_LAYER_K_BIAS,                /* (NKV*D) */
    NT_LAYER_V_PROJ,                /* self_attn.v_proj.weight (NKV*D, H) */
    NT_LAYER_V_BIAS,                /* (NKV*D) */
    NT_LAYER_O_PROJ,                /* self_attn.o_proj.weight (H, NH*D) */
    NT_LAYER_O_BIAS,                /* (H) */
    NT_LAYER_POST_NORM_WEIGHT,      /* post_attention_layernorm.weight (H) */
    NT_LAYER_POST_NORM_BIAS,        /* post_attention_layernorm.bias (H) */
    NT_LAYER_UP_PROJ,               /* mlp.up_proj.weight (I, H) */
    NT_LAYER_UP_BIAS,               /* (I) */
    NT_LAYER_DOWN_PROJ,             /* mlp.down_proj.weight (H, I) */
    NT_LAYER_DOWN_BIAS,             /* (H) */
    NT_LAYER_COUNT
} nt_layer_tensor;

typedef struct nt_model nt_model;

/* kernels: "auto" picks the fastest set the CPU supports, "portable" forces plain C.
 * The model keeps pointers into the tensors' data; norms and biases are converted to float32 copies. */
nt_status nt_model_create(nt_model **out, nt_error *err, const nt_config *config,
                          const nt_tensor *tensors, int64_t n_tensors, const char *kernels,
                          int num_threads);
void nt_model_free(nt_model *model);
const nt_config *nt_model_config(const nt_model *model);
const char *nt_model_kernels_name(const nt_model *model);
int nt_model_num_threads(const nt_model *model);
/* The dtype of the key/value caches the model makes from now on (nt_cache_create, the forward pass's own,
 * the generator's): NT_DTYPE_F32 (the default, Transformers' float32 cache) or NT_DTYPE_BF16 (half the
 * memory; keys and values rounded to bfloat16 as they are stored, attention still in float32). Set it
 * before the model is shared between threads. */
nt_status nt_model_set_cache_dtype(nt_model *model, nt_error *err, nt_dtype dtype);
nt_dtype nt_model_cache_dtype(const nt_model *model);

/* Keys and values of every layer for B sequences that share one length P. */
typedef struct nt_cache nt_cache;

nt_status nt_cache_create(nt_cache **out, nt_error *err, const nt_model *model, int64_t batch_size,
                          int64_t capacity);
void nt_cache_free(nt_cache *cache);
int64_t nt_cache_batch_size(const nt_cache *cache);
int64_t nt_cache_length(const nt_cache *cache); /* P */
/* Makes room for at least `capacity` positions, keeping the contents. */
nt_status nt_cache_reserve(nt_cache *cache, nt_error *err, int64_t capacity);
/* Reorders the B sequences of the cache: sequence i becomes the former sequence rows[i] (rows may repeat).
 * Used by beam search to follow the beams it keeps. */
nt_status nt_cache_reorder(nt_cache *cache, nt_error *err, const int64_t *rows);
/* What a cache is made of: L layers, NKV key/value heads of D values, in dtype NT_DTYPE_F32 or NT_DTYPE_BF16. */
int64_t nt_cache_num_layers(const nt_cache *cache);
int64_t nt_cache_num_kv_heads(const nt_cache *cache);
int64_t nt_cache_head_dim(const nt_cache *cache);
nt_dtype nt_cache_dtype(const nt_cache *cache);
/* Keeps the first `length` positions of every sequence (0 <= length <= P) and forgets the rest; the memory
 * stays for the positions to come. Transformers' DynamicCache.crop and reset. */
nt_status nt_cache_crop(nt_cache *cache, nt_error *err, int64_t length);
/* The cache then holds n >= 1 sequences, sequence i being the former sequence rows[i] (0 <= rows[i] < B; rows
 * may repeat, leave some out or change their order), each with its P positions. Nothing changes on an error.
 * Transformers' batch_select_indices, batch_repeat_interleave and reorder_cache with any number of rows. */
nt_status nt_cache_select(nt_cache *cache, nt_error *err, const int64_t *rows, int64_t n);
/* *out = a new cache with the contents of src (its own memory, sized to src's P positions). */
nt_status nt_cache_copy(nt_cache **out, nt_error *err, const nt_cache *src);
/* out (B, NKV, P, D) = layer `layer`'s keys (values = 0) or values (values = 1) in float32 (bfloat16 ones
 * widened exactly); out_count, the floats out holds, must be B * NKV * P * D. */
nt_status nt_cache_read(const nt_cache *cache, nt_error *err, int64_t layer, int values, float *out,
                        int64_t out_count);

/* What a forward pass may do besides the common case; a NULL pointer means none of it. */
typedef struct {
    const float *inputs_embeds; /* (B, T, H) used instead of the embeddings of input_ids (which may be NULL) */
    float *attentions;          /* (L, B, NH, T, S) out: each layer's softmax attention weights */
} nt_forward_options;

/* One forward pass over T new tokens for each of B sequences.
 * Outputs (each may be NULL when not wanted):
 *   logits        (B, K, V)       for the K positions listed in keep_positions
 *   last_hidden   (B, T, H)       after the final norm
 *   all_hidden    (L + 1, B, T, H) as Transformers' output_hidden_states: the embeddings, the output
 *                                 of layers 0..L-2, then the final-normed output of the last layer
 * Inputs:
 *   input_ids      (B, T)  each in [0, V); may be NULL with options->inputs_embeds
 *   position_ids   (B, T)  rotary positions (negative ones too, as Transformers rotates them)
 *   attention_mask (B, S)  1 keep, 0 padding; NULL means all ones
 *   keep_positions (K)     indices into [0, T)
 * cache: holds P positions for B sequences and receives the T new ones; NULL means P = 0 and the
 *   keys and values are dropped after the call.
 * options: inputs_embeds and attention weights, or NULL.
 * cancel: when non-NULL and set to non-zero by another thread, the call stops with
 *   NT_ERROR_INTERRUPTED; the cache then keeps its previous length. */
nt_status nt_model_forward(nt_model *model, nt_error *err, float *logits, float *last_hidden,
                           float *all_hidden, const int32_t *input_ids, const int64_t *position_ids,
                           const uint8_t *attention_mask, const int64_t *keep_positions, int64_t K,
                           int64_t B, int64_t T, nt_cache *cache, const nt_forward_options *options,
                           const volatile int *cancel);

/* The rotary inverse frequencies (R/2) of a forward pass whose largest position id is length - 1, leaving alone
 * the length NT_ROPE_DYNAMIC keeps: those of a model that has seen no longer call (for tests and inspection). */
void nt_model_rope_frequencies(const nt_model *model, int64_t length, float *inv_freq);

/* ---------------------------------------------------------------- scoring */

/* Log-probabilities of chosen next tokens under the language-modelling head, without ever holding
 * (B, T, V) logits: the lm_head is applied to tiles of rows and vocabulary entries and folded into a
 * running log-sum-exp per row.
 * Output:
 *   logprobs (B, T)  log_softmax(lm_head(h[b, t]))[targets[b, t]] where targets[b, t] >= 0, else 0;
 *                    h is the final-normed hidden state, as nt_model_forward's last_hidden
 * Inputs:
 *   targets  (B, T)  the token each position is scored against, in [0, V), or negative to skip it
 *                    (which token is "next" is the caller's choice: usually input_ids[b, t + 1])
 *   input_ids, position_ids, attention_mask, cache, cancel: as nt_model_forward (the cache, when
 *   given, receives the T new positions).
 * Working memory: the forward pass's, (B, T, H) hidden states, and one tile of about 2^20 floats. */
nt_status nt_model_score(nt_model *model, nt_error *err, float *logprobs, const int32_t *input_ids,
                         const int64_t *position_ids, const uint8_t *attention_mask, const int32_t *targets,
                         int64_t B, int64_t T, nt_cache *cache, const volatile int *cancel);

/* ---------------------------------------------------------------- generation */

/* Transformers' early_stopping for beam search: False, True or "never". */
typedef enum {
    NT_EARLY_STOPPING_FALSE = 0,
    NT_EARLY_STOPPING_TRUE,
    NT_EARLY_STOPPING_NEVER,
} nt_early_stopping;

/* Everything the decoding loop needs, resolved by the caller (defaults, validation and the policy of
 * Transformers' generate() live in Python). Processors run in Transformers' order:
 * sequence_bias, encoder_repetition_penalty, repetition_penalty, no_repeat_ngram_size,
 * encoder_no_repeat_ngram_size, bad_words, min_length, forced_bos,
 * forced_eos, remove_invalid_values, exponential_decay_length_penalty, suppress_tokens,
 * begin_suppress_tokens, then with do_sample: temperature, top_k, top_p, min_p, typical_p,
 * epsilon_cutoff, eta_cutoff; renormalize_logits last.
 * Token lists may hold ids outside [0, V); those never match anything. */
typedef struct {
    int64_t max_length;            /* sequences stop at this length, prompt included */
    int64_t min_length;            /* eos is banned while the length is below this (0: off) */
    const int64_t *eos_token_ids;  /* (n_eos) */
    int64_t n_eos;
    int64_t pad_token_id;          /* written after a row's eos (when n_eos > 0 or custom_eos_criteria) */
    int custom_eos_criteria;       /* the caller's stopping criteria stop rows at their own eos ids, in place of
                                      Transformers' EosTokenCriteria of eos_token_ids (or with none): eos_token_ids
                                      finish no row or beam (the processors still read them), and finished rows get
                                      pad_token_id (Transformers' has_eos_stopping_criteria) */
    int64_t beam_fill_token_id;    /* what beam outputs hold past a hypothesis' end */
    double deadline;               /* wall-clock seconds since the epoch after which generation stops; 0: none */

    const int64_t *sequence_bias;  /* concatenated token sequences, or NULL */
    const int64_t *sequence_bias_ends; /* (n_sequence_bias) end offset of each sequence */
    const float *sequence_bias_values; /* (n_sequence_bias) added when the sequence can be completed */
    int64_t n_sequence_bias;
    float encoder_repetition_penalty; /* 1: off; the prompt's tokens (padding included) scaled by its inverse */
    float repetition_penalty;      /* 1: off */
    const int64_t *prompt_padding; /* (N) leading positions of each row the penalty skips, or NULL */
    int64_t no_repeat_ngram_size;  /* 0: off */
    int64_t encoder_no_repeat_ngram_size; /* 0: off; bans what would repeat an n-gram of the prompt */
    const int64_t *bad_words;      /* concatenated token sequences, or NULL */
    const int64_t *bad_word_ends;  /* (n_bad_words) end offset of each sequence in bad_words */
    int64_t n_bad_words;
    int64_t forced_bos_token_id;   /* forced at length 1; < 0: off */
    const int64_t *forced_eos_token_ids; /* forced at length max_length - 1 */
    int64_t n_forced_eos;
    int remove_invalid_values;     /* nan -> 0, +-inf -> +-FLT_MAX */
    double decay_start;            /* exponential_decay_length_penalty: eos boosted at lengths above this (its start
                                      plus the prompt's length, a float as in Transformers); +inf or NaN: off */
    float decay_factor;
    const int64_t *suppress_tokens;
    int64_t n_suppress_tokens;
    const int64_t *begin_suppress_tokens;
    int64_t n_begin_suppress_tokens;
    int64_t begin_index;           /* begin_suppress_tokens apply when the length equals this */

    int do_sample;
    float temperature;             /* 1: off */
    int64_t top_k;                 /* 0: off */
    float top_p;                   /* >= 1: off */
    float min_p;                   /* < 0: off */
    float typical_p;               /* >= 1: off */
    float epsilon_cutoff;          /* 0: off */
    float eta_cutoff;              /* 0: off */
    int renormalize_logits;        /* log_softmax after every other processor */
    int64_t min_tokens_to_keep;    /* of the sampling warpers */
    uint64_t seed;

    int64_t num_beams;             /* 1: greedy or sampling */
    float length_penalty;
    nt_early_stopping early_stopping;
} nt_generation_config;

/* Caller-owned outputs; G = max_length - prompt length is the most new tokens a call can make.
 * Without beams N = rows of the input; with beams N = B * num_beams. */
typedef struct {
    int64_t *sequences;      /* no beams: (N, max_length) the prompt then the new tokens;
                                beams: (B, num_beams, max_length) the finished hypotheses, best first */
    float *scores;           /* (G, N, V) processed scores of each step, or NULL */
    float *logits;           /* (G, N, V) raw logits of each step, or NULL */
    float *sequence_scores;  /* (B, num_beams) beams only, or NULL */
    int64_t *beam_indices;   /* (B, num_beams, G) beams only, or NULL; -1 past each hypothesis' end */
    int64_t *running_parents; /* (G, N) beams only, or NULL: the row of the step before each running beam continues */
    int64_t *running_tokens;  /* (G, N) beams only, or NULL: the token each running beam took at that step (what
                                 the next step feeds it); with the prompts they rebuild the running beams of every
                                 step, for replaying their forward passes */
} nt_generation_outputs;

typedef struct nt_generator nt_generator;

/* Prepares the decoding of N prompts of T tokens (left-padded by attention_mask (N, T), NULL for none).
 * With beams, N = B * num_beams and the rows of each prompt are repeated num_beams times.
 * position_ids: (N, T) rotary positions of the prompts, or NULL for cumsum(mask) - 1 (0 on padding); either way
 *   each new token's is its row's last + 1, as Transformers extends the positions it is given.
 * cache: NULL, or a cache of N rows holding the first P < T positions of the prompts (an earlier call's),
 *   which the generator extends in place and does not free; the prompts' other T - P tokens are prefilled.
 *   P = T with nt_generator_prefilled.
 * The config's arrays are copied; outputs and cache must outlive the generator. */
nt_status nt_generator_create(nt_generator **out, nt_error *err, nt_model *model, const nt_generation_config *config,
                              const nt_generation_outputs *outputs, const int64_t *input_ids,
                              const uint8_t *attention_mask, const int64_t *position_ids, int64_t N, int64_t T,
                              nt_cache *cache);
/* The caller ran the prompt itself (from embeddings, or for its attention weights): the cache given to
 * nt_generator_create holds all T - uncached positions and logits (N, V) are those of each row's last; the first
 * step processes them instead of making a forward pass. The first `context` (0 <= context <= T) positions of every
 * row are no tokens but embeddings (their input ids stand in, unread): the logits processors see each row from
 * there on, its length and max_length counted from there, as Transformers' generate(inputs_embeds=...) shows
 * them only the tokens that follow. Conversely the first `uncached` (0 <= uncached < T, 0 with a context) tokens
 * of every row are seen by the processors but not in the cache, as Transformers' generate(input_ids=...,
 * inputs_embeds=...) with fewer embeddings than ids: the cache holds the embeddings of the rest; the attention mask
 * given to nt_generator_create covers the whole rows, its first `uncached` columns counting only for the rotary
 * positions (cumsum(mask) - 1). Call it before the first step; logits are copied. */
nt_status nt_generator_prefilled(nt_generator *g, nt_error *err, const float *logits, int64_t context,
                                 int64_t uncached);
void nt_generator_free(nt_generator *g);
/* One decoding step: a forward pass (the prompt first, then one token per row), processing, selection
 * and the stopping criteria. Does nothing once done. cancel: as nt_model_forward. */
nt_status nt_generator_step(nt_generator *g, nt_error *err, const volatile int *cancel);
/* Steps until done, max_steps made (< 0: no limit) or *cancel raised (NT_ERROR_INTERRUPTED; the generator
 * is then unusable, the model unaffected). */
nt_status nt_generator_run(nt_generator *g, nt_error *err, int64_t max_steps, const volatile int *cancel);
int nt_generator_done(const nt_generator *g);
int64_t nt_generator_length(const nt_generator *g); /* current length of the rows, prompt included */
int64_t nt_generator_steps(const nt_generator *g);  /* steps made (= scores written) */
/* Marks rows (N) as finished, as a stopping criterion does (no beams only). */
nt_status nt_generator_stop_rows(nt_generator *g, nt_error *err, const uint8_t *rows);
/* The stages of the logits processors, in Transformers' order (its _get_logits_processor): a caller's processors
 * (nt_generator_set_processor_hook) run after one. MIN_NEW_TOKENS and PREFIX_ALLOWED_TOKENS have no processing of
 * the core's; CUSTOM is where Transformers puts a caller's logits_processor list, after every default processor and
 * before the sampling warpers (WARPERS: temperature to eta_cutoff, then renormalize_logits). */
typedef enum {
    NT_STAGE_SEQUENCE_BIAS = 0,
    NT_STAGE_ENCODER_REPETITION_PENALTY,
    NT_STAGE_REPETITION_PENALTY,
    NT_STAGE_NO_REPEAT_NGRAM,
    NT_STAGE_ENCODER_NO_REPEAT_NGRAM,
    NT_STAGE_BAD_WORDS,
    NT_STAGE_MIN_LENGTH,
    NT_STAGE_MIN_NEW_TOKENS,
    NT_STAGE_PREFIX_ALLOWED_TOKENS,
    NT_STAGE_FORCED_BOS,
    NT_STAGE_FORCED_EOS,
    NT_STAGE_REMOVE_INVALID_VALUES,
    NT_STAGE_EXPONENTIAL_DECAY,
    NT_STAGE_SUPPRESS_TOKENS,
    NT_STAGE_BEGIN_SUPPRESS_TOKENS,
    NT_STAGE_CUSTOM,
    NT_STAGE_WARPERS,
    NT_STAGE_COUNT,
} nt_processor_stage;

/* A caller's logits processors at `stage`: rows (N) of `length` tokens, row r at ids + r * stride (what
 * Transformers' processors see as input_ids: with beams the running beams, after a prefilled context the tokens
 * after it); scores (N, V) the scores so far (log-probabilities with beams), processed in place. Called on the
 * thread running the step, between the core's stages; a status other than NT_OK ends the step with it. */
typedef nt_status (*nt_processor_hook)(void *ctx, nt_error *err, int stage, const int64_t *ids, int64_t stride,
                                       int64_t rows, int64_t length, float *scores, int64_t V);
/* Calls hook after each stage of the bit set `stages` (bit s: stage s; NT_STAGE_WARPERS is not one a hook may
 * follow); hook NULL (stages 0) removes it. Before the first step only. */
nt_status nt_generator_set_processor_hook(nt_generator *g, nt_error *err, nt_processor_hook hook, void *ctx,
                                          uint32_t stages);
/* The logits processors of a step (the core's stages and the caller's hook, as nt_generator_step runs them) on
 * scores (N, V), in place, of rows whose tokens so far are ids (N, length), row r at ids + r * length from its first
 * position (length >= the prompt's); the generator is unchanged. Assisted generation verifies several positions in
 * one forward pass and processes each position's logits with this. Not with beams. */
nt_status nt_generator_process(nt_generator *g, nt_error *err, const int64_t *ids, int64_t length, float *scores);
/* A caller's stopping criteria in beam search: rows (n) of `length` tokens, row r at ids + r * length, are every
 * prompt's candidates of the step (prompt b's K best continuations of its beams, best first, at rows b K..b K + K -
 * 1: what Transformers' beam search shows its criteria); setting hits[r] non-zero stops candidate r, as an eos
 * would. A status other than NT_OK ends the step with it. (Without beams, nt_generator_stop_rows between steps
 * does this.) */
typedef nt_status (*nt_stop_hook)(void *ctx, nt_error *err, const int64_t *ids, int64_t rows, int64_t length,
                                  uint8_t *hits);
/* Sets (or, with NULL, removes) the stop hook of a beam search, before its first step. */
nt_status nt_generator_set_stop_hook(nt_generator *g, nt_error *err, nt_stop_hook hook, void *ctx);
/* Hands the generator's own cache (the rows' keys and values up to length - 1, as Transformers leaves its
 * cache) to the caller, who frees it; the generator is finished afterwards. NULL for a caller's cache. */
nt_cache *nt_generator_take_cache(nt_generator *g);
/* Beam search: the number of new tokens of the longest of the first n hypotheses of every prompt. */
int64_t nt_generator_beam_output_length(const nt_generator *g, int64_t n);

/* torch.topk(x, k) on the CPU, equal values in its order (model/topk.c): indices (k) of the k largest of x (n),
 * largest first, NaN above everything; 1 <= k <= n, which callers check. scratch: nt_topk_scratch(n, k) int64s (none when k * 64 <= n,
 * else n). Transformers' beam search and min_p keep what torch.topk returns, which does not break ties by index. */
int64_t nt_topk_scratch(int64_t n, int64_t k);
void nt_topk(int64_t *indices, int64_t *scratch, const float *x, int64_t n, int64_t k);
/* order (n) = torch.sort(x, descending).indices on the CPU (its default, unstable sort: the C++ library's std::sort),
 * NaN last ascending and first descending: Transformers' top-p and typical-p cut in that order. */
void nt_sort(int64_t *order, const float *x, int64_t n, int descending);

/* ---------------------------------------------------------------- settings tables (model/settings.c) */

/* The fields of nt_config and nt_generation_config as data: a caller that fills these structs from named values
 * (the Python binding) loops over a table instead of spelling every field, and learns the names and the
 * defaults from it. */
typedef enum {
    NT_FIELD_INT64 = 0, /* int64_t */
    NT_FIELD_UINT64,    /* uint64_t */
    NT_FIELD_INT,       /* int: a flag or an enum's value */
    NT_FIELD_FLOAT,     /* float */
    NT_FIELD_DOUBLE,    /* double */
    NT_FIELD_TOKENS,    /* const int64_t *, NULL when absent */
    NT_FIELD_FLOATS,    /* const float *, NULL when absent */
} nt_field_kind;

typedef struct {
    const char *name;         /* the struct member's name */
    size_t offset;            /* of the member in its struct */
    nt_field_kind kind;
    int required;             /* no default: the caller must give a value */
    double default_value;     /* scalars: the value that turns the step off; arrays: none (NULL) */
    ptrdiff_t count_offset;   /* arrays: offset of the int64_t member counting the items, or -1 when the
                                 length follows from other fields (such as the *_ends of concatenated lists) */
} nt_field;

extern const nt_field nt_config_fields[];
extern const size_t nt_config_field_count;
extern const nt_field nt_generation_config_fields[];
extern const size_t nt_generation_config_field_count;

/* ---------------------------------------------------------------- tokenizer */

/* A SentencePiece-style BPE tokenizer as Hugging Face tokenizers runs it from a tokenizer.json: added tokens
 * are split off first, each remaining chunk goes through the normalizer, the Metaspace pre-tokenizer and the
 * BPE model (byte fallback to <0xNN> pieces); decoding maps ids back to pieces and runs the decoder chain.
 * Strings are UTF-8; lengths are in bytes. */

typedef enum {
    NT_TOKENIZER_STEP_PREPEND = 0,   /* normalizer: a = the string put in front of a non-empty chunk */
    NT_TOKENIZER_STEP_REPLACE,       /* normalizer or decoder: every a (non-empty) becomes b */
    NT_TOKENIZER_STEP_METASPACE,     /* pre-tokenizer or decoder: a = replacement (one character),
                                        prepend_scheme, split */
    NT_TOKENIZER_STEP_BYTE_FALLBACK, /* decoder: runs of <0xNN> pieces become their UTF-8 text */
    NT_TOKENIZER_STEP_FUSE,          /* decoder: joins every piece into one */
    NT_TOKENIZER_STEP_STRIP,         /* decoder: removes up to `start` leading and `stop` trailing a's
                                        (one character) from each piece */
    NT_TOKENIZER_STEP_TRIM,          /* normalizer: removes the runs of a (one character) at both ends */
    NT_TOKENIZER_STEP_COLLAPSE,      /* normalizer: each run of two or more a's (one character) becomes b */
    NT_TOKENIZER_STEP_REPLACE_PREFIX,/* normalizer: a at the very start becomes b */
    NT_TOKENIZER_STEP_SPLIT,         /* pre-tokenizer, after the Metaspace: each occurrence of one of
                                        `strings` (leftmost, then longest) becomes a word of its own */
    NT_TOKENIZER_STEP_COUNT
} nt_tokenizer_step_type;

typedef enum {
    NT_PREPEND_SCHEME_ALWAYS = 0,
    NT_PREPEND_SCHEME_FIRST,  /* only to the chunk that starts the text */
    NT_PREPEND_SCHEME_NEVER,
} nt_prepend_scheme;

typedef struct {
    nt_tokenizer_step_type type;
    const char *a, *b;  /* NUL-terminated UTF-8; unused ones may be NULL */
    int64_t start, stop;
    nt_prepend_scheme prepend_scheme;
    int split;          /* Metaspace: split the chunk into words that each begin with the replacement */
    const char *const *strings; /* (n_strings) NUL-terminated UTF-8, for Split */
    int64_t n_strings;
} nt_tokenizer_step;

typedef struct {
    const char *content; /* UTF-8, content_len bytes, not empty */
    size_t content_len;
    int32_t id;
    int special;         /* dropped by decode's skip_special_tokens */
    int lstrip, rstrip;  /* the match takes in the whitespace on its left / right */
    int single_word;     /* matches only between non-word characters */
    int normalized;      /* matched in the normalized text rather than the raw one */
} nt_added_token;

typedef struct {
    const char *pieces;           /* the BPE model's pieces, concatenated */
    const int64_t *piece_offsets; /* (n_pieces + 1) piece i is pieces[piece_offsets[i], piece_offsets[i + 1]) */
    const int32_t *piece_ids;     /* (n_pieces) ids, in [0, 2^31) */
    int64_t n_pieces;
    const int32_t *merges;        /* (n_merges, 2) ids of the left and right pieces, rank = row */
    int64_t n_merges;
    int32_t unk_id;               /* -1 when there is no unknown piece */
    int byte_fallback;
    int fuse_unk;
    int ignore_merges;            /* a word that is a piece is that piece, whatever the merges */
    const nt_added_token *added;  /* (n_added) */
    int64_t n_added;
    const nt_tokenizer_step *normalizer;     /* (n_normalizer) applied in order */
    int64_t n_normalizer;
    const nt_tokenizer_step *pre_tokenizer;  /* (n_pre_tokenizer) a Metaspace, a Split, or a Metaspace then a Split */
    int64_t n_pre_tokenizer;
    const nt_tokenizer_step *decoder;        /* (n_decoder) applied in order */
    int64_t n_decoder;
} nt_tokenizer_spec;

typedef struct nt_tokenizer nt_tokenizer;

/* Builds the tables; copies everything it keeps from spec. A merge whose pieces' concatenation is not a
 * piece, or an id out of range, is NT_ERROR_FORMAT. */
nt_status nt_tokenizer_create(nt_tokenizer **out, nt_error *err, const nt_tokenizer_spec *spec);
void nt_tokenizer_free(nt_tokenizer *tok);

/* Encodes text[0, len) (valid UTF-8) without special tokens around it. *ids is malloc'ed (free() it),
 * *n_ids its length. cancel: as nt_model_forward, read before each word and every 65536 merges within one. */
nt_status nt_tokenizer_encode(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                              const char *text, size_t len, const volatile int *cancel);

/* As nt_tokenizer_encode, and also what each added token matched: match k is ids[positions[k]] and took in
 * texts[text_offsets[k], text_offsets[k + 1]) (its content, and the whitespace it strips with lstrip or rstrip).
 * *positions, *texts and *text_offsets ((n_matches + 1) entries) are malloc'ed like *ids. */
nt_status nt_tokenizer_encode_matches(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                                      int64_t **positions, char **texts, int64_t **text_offsets, int64_t *n_matches,
                                      const char *text, size_t len, const volatile int *cancel);

/* Encodes B texts, spread over pool (NULL: on the caller's thread). *ids (malloc'ed) holds every text's ids
 * back to back, text b's at ids[offsets[b], offsets[b + 1]); offsets is (B + 1), the caller's. cancel: as
 * nt_model_forward, read before each text and within one as nt_tokenizer_encode. */
nt_status nt_tokenizer_encode_batch(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *offsets,
                                    const char *const *texts, const size_t *lens, int64_t B,
                                    nt_threadpool *pool, const volatile int *cancel);

/* Decodes ids to UTF-8 text; *text is malloc'ed and NUL-terminated, *len bytes long. Ids that name no piece
 * are skipped, as tokenizers does; skip_special drops the added tokens marked special. cancel: as
 * nt_model_forward, read every 65536 ids and between the decoder's steps. */
nt_status nt_tokenizer_decode(const nt_tokenizer *tok, nt_error *err, char **text, size_t *len,
                              const int32_t *ids, int64_t n_ids, int skip_special, const volatile int *cancel);

#ifdef __cplusplus
}
#endif

#endif /* NEMOTRON_H */
