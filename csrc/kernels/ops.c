/* Row and element-wise operations in float32. */
#include <math.h>

#include "kernels/kernels.h"

void nt_layernorm1p(float *y, const float *x, const float *weight, const float *bias, int64_t rows,
                    int64_t H, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *x_r = x + r * H;
        float *y_r = y + r * H;
        /* the moments in double: as exact as PyTorch's float32 Welford, with no ordering to match */
        double sum = 0.0;
        for (int64_t i = 0; i < H; i++) sum += x_r[i];
        double mean = sum / (double)H;
        double sq = 0.0;
        for (int64_t i = 0; i < H; i++) {
            double d = x_r[i] - mean;
            sq += d * d;
        }
        float rstd = (float)(1.0 / sqrt(sq / (double)H + (double)eps));
        float mean_f = (float)mean;
        for (int64_t i = 0; i < H; i++)
            y_r[i] = (x_r[i] - mean_f) * rstd * (1.0f + weight[i]) + bias[i];
    }
}

void nt_rope_apply(float *x, const float *cos, const float *sin, int64_t n_heads, int64_t D, int64_t R) {
    int64_t half = R / 2;
    for (int64_t h = 0; h < n_heads; h++) {
        float *x_h = x + h * D;
        for (int64_t i = 0; i < half; i++) {
            float a = x_h[i], b = x_h[i + half];
            /* Transformers: x * cos + rotate_half(x) * sin, where rotate_half(x) = (-b, a) */
            x_h[i] = a * cos[i] - b * sin[i];
            x_h[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

/* torch's softplus with beta 1 and threshold 20 */
static float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

static float gelu(float x) { return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2)); }

void nt_activation_apply(float *x, int64_t n, nt_activation act) {
    switch (act) {
    case NT_ACT_RELU2:
        for (int64_t i = 0; i < n; i++) {
            float r = x[i] > 0.0f ? x[i] : 0.0f;
            x[i] = r * r;
        }
        break;
    case NT_ACT_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case NT_ACT_SILU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
        break;
    case NT_ACT_GELU:
        for (int64_t i = 0; i < n; i++) x[i] = gelu(x[i]);
        break;
    case NT_ACT_GELU_TANH:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            x[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        }
        break;
    case NT_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
        break;
    case NT_ACT_GELU_CLIPPED:
        for (int64_t i = 0; i < n; i++) x[i] = fminf(fmaxf(gelu(x[i]), -10.0f), 10.0f);
        break;
    case NT_ACT_QUICK_GELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
        break;
    case NT_ACT_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] >= 0.0f ? x[i] : 0.01f * x[i];
        break;
    case NT_ACT_IDENTITY:
        break;
    case NT_ACT_MISH:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * tanhf(softplus(x[i]));
        break;
    case NT_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) x[i] = fminf(fmaxf(x[i], 0.0f), 6.0f);
        break;
    case NT_ACT_TANH:
        for (int64_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
        break;
    case NT_ACT_HARDSWISH:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] * fminf(fmaxf(x[i] + 3.0f, 0.0f), 6.0f) / 6.0f;
        break;
    case NT_ACT_LAPLACE:
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.5f * (1.0f + erff((x[i] - 0.707107f) / (0.282095f * (float)M_SQRT2)));
        break;
    case NT_ACT_SQRT_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) x[i] = sqrtf(softplus(x[i]));
        break;
    default:
        break;
    }
}

void nt_add_bias(float *y, const float *bias, int64_t rows, int64_t N) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t n = 0; n < N; n++) y[r * N + n] += bias[n];
}
