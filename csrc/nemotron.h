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

typedef enum {
    NT_DTYPE_F32 = 0,
    NT_DTYPE_BF16 = 1,
    NT_DTYPE_F16 = 2,
    NT_DTYPE_COUNT
} nt_dtype;

size_t nt_dtype_size(nt_dtype dtype);
const char *nt_dtype_name(nt_dtype dtype);

/* A read-only view of a stored tensor. The core never frees `data`: its owner (a memory map or a
 * buffer held by the caller) must outlive every model built from it. */
typedef struct {
    const void *data;  /* NULL when the tensor is absent (an optional bias) */
    nt_dtype dtype;
    int ndim;          /* 1 or 2 */
    int64_t shape[2];
    size_t nbytes;     /* what the owner says the buffer holds; checked against shape x dtype */
} nt_tensor;

/* ---------------------------------------------------------------- thread pool */

typedef struct nt_threadpool nt_threadpool;

/* num_threads <= 0 means one per online CPU. */
nt_status nt_threadpool_create(nt_threadpool **out, nt_error *err, int num_threads);
void nt_threadpool_free(nt_threadpool *pool);
int nt_threadpool_size(const nt_threadpool *pool);

/* Calls fn(ctx, begin, end) over consecutive ranges covering [0, n), each at least `grain` long
 * (but the last), spread over the pool's threads and the caller's. Returns when all are done.
 * Safe after fork(): a child process rebuilds the pool's threads on first use. */
typedef void (*nt_range_fn)(void *ctx, int64_t begin, int64_t end);
void nt_threadpool_parallel_for(nt_threadpool *pool, nt_range_fn fn, void *ctx, int64_t n, int64_t grain);

/* ---------------------------------------------------------------- model */

typedef enum {
    NT_ACT_RELU2 = 0, /* relu(x)^2, Nemotron's default */
    NT_ACT_RELU,
    NT_ACT_SILU,
    NT_ACT_GELU,      /* exact, erf-based */
    NT_ACT_GELU_TANH, /* tanh approximation (gelu_new, gelu_pytorch_tanh) */
    NT_ACT_SIGMOID,
    NT_ACT_COUNT
} nt_activation;

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
    float norm_eps;
    nt_activation hidden_act;
    int attention_bias;          /* q/k/v/o projections carry biases */
    int mlp_bias;                /* up/down projections carry biases */
    int tie_word_embeddings;     /* lm_head is embed_tokens */
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

/* Keys and values of every layer for B sequences that share one length P. */
typedef struct nt_cache nt_cache;

nt_status nt_cache_create(nt_cache **out, nt_error *err, const nt_model *model, int64_t batch_size,
                          int64_t capacity);
void nt_cache_free(nt_cache *cache);
int64_t nt_cache_batch_size(const nt_cache *cache);
int64_t nt_cache_length(const nt_cache *cache); /* P */
/* Makes room for at least `capacity` positions, keeping the contents. */
nt_status nt_cache_reserve(nt_cache *cache, nt_error *err, int64_t capacity);

/* One forward pass over T new tokens for each of B sequences.
 * Outputs (each may be NULL when not wanted):
 *   logits        (B, K, V)       for the K positions listed in keep_positions
 *   last_hidden   (B, T, H)       after the final norm
 *   all_hidden    (L + 1, B, T, H) as Transformers' output_hidden_states: the embeddings, the output
 *                                 of layers 0..L-2, then the final-normed output of the last layer
 * Inputs:
 *   input_ids      (B, T)  each in [0, V)
 *   position_ids   (B, T)  rotary positions, >= 0
 *   attention_mask (B, S)  1 keep, 0 padding; NULL means all ones
 *   keep_positions (K)     indices into [0, T)
 * cache: holds P positions for B sequences and receives the T new ones; NULL means P = 0 and the
 *   keys and values are dropped after the call.
 * cancel: when non-NULL and set to non-zero by another thread, the call stops with
 *   NT_ERROR_INTERRUPTED; the cache then keeps its previous length. */
nt_status nt_model_forward(nt_model *model, nt_error *err, float *logits, float *last_hidden,
                           float *all_hidden, const int32_t *input_ids, const int64_t *position_ids,
                           const uint8_t *attention_mask, const int64_t *keep_positions, int64_t K,
                           int64_t B, int64_t T, nt_cache *cache, const volatile int *cancel);

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
 * *n_ids its length. */
nt_status nt_tokenizer_encode(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                              const char *text, size_t len);

/* As nt_tokenizer_encode, and also what each added token matched: match k is ids[positions[k]] and took in
 * texts[text_offsets[k], text_offsets[k + 1]) (its content, and the whitespace it strips with lstrip or rstrip).
 * *positions, *texts and *text_offsets ((n_matches + 1) entries) are malloc'ed like *ids. */
nt_status nt_tokenizer_encode_matches(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *n_ids,
                                      int64_t **positions, char **texts, int64_t **text_offsets, int64_t *n_matches,
                                      const char *text, size_t len);

/* Encodes B texts, spread over pool (NULL: on the caller's thread). *ids (malloc'ed) holds every text's ids
 * back to back, text b's at ids[offsets[b], offsets[b + 1]); offsets is (B + 1), the caller's. */
nt_status nt_tokenizer_encode_batch(const nt_tokenizer *tok, nt_error *err, int32_t **ids, int64_t *offsets,
                                    const char *const *texts, const size_t *lens, int64_t B,
                                    nt_threadpool *pool);

/* Decodes ids to UTF-8 text; *text is malloc'ed and NUL-terminated, *len bytes long. Ids that name no piece
 * are skipped, as tokenizers does; skip_special drops the added tokens marked special. */
nt_status nt_tokenizer_decode(const nt_tokenizer *tok, nt_error *err, char **text, size_t *len,
                              const int32_t *ids, int64_t n_ids, int skip_special);

#ifdef __cplusplus
}
#endif

#endif /* NEMOTRON_H */
