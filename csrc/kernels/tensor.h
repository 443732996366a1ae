/*
 * The weight seam: every byte offset into a stored tensor and every conversion of its elements to
 * float32 goes through these helpers (kernels/tensor.c), so that the model code never learns a dtype's
 * layout. The dtype table in tensor.c holds each dtype's name, block size and bytes, and conversion.
 */
#ifndef NT_TENSOR_H
#define NT_TENSOR_H

#include <stdint.h>

#include "nemotron.h"

/* Bytes of n elements of dtype, or -1 when n is negative, not whole blocks, or the size overflows. */
int64_t nt_dtype_bytes(nt_dtype dtype, int64_t n);

/* Checks what the model cannot see from the shape: a known dtype, nbytes equal to shape x dtype, data
 * aligned to its element, and scales given exactly when the dtype has them. name appears in the message. */
nt_status nt_tensor_check_storage(nt_error *err, const nt_tensor *t, const char *name);

/* Elements per row: shape[1], or shape[0] for a 1-D tensor (one row). */
static inline int64_t nt_tensor_cols(const nt_tensor *t) { return t->ndim == 1 ? t->shape[0] : t->shape[1]; }

/* The address of row r (a 1-D tensor has the one row 0). */
const void *nt_tensor_row(const nt_tensor *t, int64_t r);

/* Rows [begin, begin + count) of a 2-D tensor as a (count, cols) tensor of their own. */
nt_tensor nt_tensor_rows(const nt_tensor *t, int64_t begin, int64_t count);

/* out (n) = elements [begin, begin + n) of row r in float32; begin and n whole blocks of the dtype. */
void nt_tensor_span_to_f32(float *out, const nt_tensor *t, int64_t r, int64_t begin, int64_t n);

/* out (cols) = row r in float32 */
void nt_tensor_row_to_f32(float *out, const nt_tensor *t, int64_t r);

/* Element conversions, for kernels that widen in registers. */
static inline float nt_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
float nt_f16_to_f32(uint16_t h);

/* float32 to bfloat16 rounded to nearest even, as torch's .to(torch.bfloat16); NaN stays NaN */
static inline uint16_t nt_f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}

#endif
