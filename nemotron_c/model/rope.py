"""Rotary inverse frequencies and cos/sin scaling for each RoPE type, in float32 as Transformers.

Each function mirrors the float32 arithmetic of Transformers' modeling_rope_utils so that the tables
agree to the last bit or within an ulp. For the types whose frequencies change with the sequence length
(dynamic, longrope: Transformers' dynamic_rope_update) these are the frequencies a model starts with;
`core_rope_settings` gives the C core what it needs to change them per call (see nt_rope_scaling in
csrc/nemotron.h), where the positions, and so the length, of each forward pass are known.
"""
import math

import numpy as np

F32 = np.float32


def base_powers(theta, dim):
    """theta ** (2i / dim) for i < dim / 2, as torch computes it in float32 (a correctly rounded power)."""
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)
    return (np.float64(theta) ** exponents.astype(np.float64)).astype(F32)


def default_parameters(params, dim, max_position_embeddings):
    return F32(1.0) / base_powers(params["rope_theta"], dim), 1.0


def linear_parameters(params, dim, max_position_embeddings):
    inv_freq, scaling = default_parameters(params, dim, max_position_embeddings)
    return (inv_freq / F32(params["factor"])).astype(F32), scaling


def llama3_parameters(params, dim, max_position_embeddings):
    inv_freq, scaling = default_parameters(params, dim, max_position_embeddings)
    factor = F32(params["factor"])
    low_freq_factor, high_freq_factor = params["low_freq_factor"], params["high_freq_factor"]
    old_context = params.get("original_max_position_embeddings", max_position_embeddings)
    low_freq_wavelen = old_context / low_freq_factor
    high_freq_wavelen = old_context / high_freq_factor
    wavelen = (F32(2 * math.pi) / inv_freq).astype(F32)
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq).astype(F32)
    smooth = ((F32(old_context) / wavelen - F32(low_freq_factor)) / F32(high_freq_factor - low_freq_factor)).astype(F32)
    smoothed = ((F32(1) - smooth) * scaled / factor + smooth * scaled).astype(F32)
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(F32), scaling


def yarn_parameters(params, dim, max_position_embeddings):
    theta = params["rope_theta"]
    original = params.get("original_max_position_embeddings", max_position_embeddings)
    factor = params.get("factor")
    if factor is None:
        factor = max_position_embeddings / original

    def mscale_of(scale, mscale=1):
        return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0

    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = float(mscale_of(factor, mscale) / mscale_of(factor, mscale_all_dim))
        else:
            attention_factor = mscale_of(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    powers = base_powers(theta, dim)
    extrapolation = (F32(1) / powers).astype(F32)
    interpolation = (F32(1) / (F32(factor) * powers)).astype(F32)
    ramp = np.clip((np.arange(dim // 2, dtype=F32) - F32(low)) / F32(high - low), 0, 1).astype(F32)
    extrapolation_factor = (F32(1) - ramp).astype(F32)
    inv_freq = interpolation * (F32(1) - extrapolation_factor) + extrapolation * extrapolation_factor
    return inv_freq.astype(F32), float(attention_factor)


def dynamic_parameters(params, dim, max_position_embeddings):
    # at its initial length, max_position_embeddings, Transformers computes the NTK base in Python floats: rope_theta
    # itself unless factor * m / m - (factor - 1) rounds away from 1. Longer lengths are the core's (forward.c).
    factor, m = params["factor"], max_position_embeddings
    base = params["rope_theta"] * ((factor * m / m) - (factor - 1)) ** (dim / (dim - 2))
    return F32(1.0) / base_powers(base, dim), 1.0


def longrope_parameters(params, dim, max_position_embeddings, long=False):
    """The short factors' frequencies (the initial ones), or the long ones, and the attention factor of both."""
    original = params["original_max_position_embeddings"]
    factor = params.get("factor")
    if factor is None:
        factor = max_position_embeddings / original
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    scales = np.asarray(params["long_factor" if long else "short_factor"], dtype=F32)
    return (F32(1) / (scales * base_powers(params["rope_theta"], dim))).astype(F32), float(attention_factor)


ROPE_TYPES = {
    "default": default_parameters,
    "linear": linear_parameters,
    "llama3": llama3_parameters,
    "yarn": yarn_parameters,
    "dynamic": dynamic_parameters,
    "longrope": longrope_parameters,
}
# nt_rope_scaling: the types whose frequencies follow each call's length
ROPE_SCALING_CODES = {"dynamic": 1, "longrope": 2}


def rope_parameters(config):
    """(inv_freq (R/2,) float32, attention_scaling) for a NemotronConfig."""
    dim = config.rotary_dim
    params = config.rope_parameters
    if dim == 0:
        return np.zeros(0, dtype=F32), 1.0
    try:
        with np.errstate(all="ignore"):
            inv_freq, scaling = ROPE_TYPES[params["rope_type"]](params, dim, config.max_position_embeddings)
    except (ArithmeticError, ValueError) as e:  # yarn with rope_theta 1 divides by log(1); Transformers too
        raise ValueError(f"rope_parameters {params} give no rotary table ({type(e).__name__}: {e})") from None
    # every parameter may be in range and the table still overflow (rope_theta 1e-300): NaN logits, token 0
    if not (np.isfinite(inv_freq).all() and math.isfinite(scaling)):
        raise ValueError(f"rope_parameters {params} give non-finite rotary frequencies or attention scaling")
    return np.ascontiguousarray(inv_freq, dtype=F32), scaling


def core_rope_settings(config):
    """The nt_config fields that let the core change the frequencies with each call's length (none for the types
    whose frequencies are fixed). rope_parameters(config) must have accepted the config."""
    params, dim = config.rope_parameters, config.rotary_dim
    rope_type = params["rope_type"]
    if rope_type not in ROPE_SCALING_CODES or dim == 0:
        return {}
    settings = {"rope_scaling": ROPE_SCALING_CODES[rope_type]}
    if rope_type == "dynamic":
        # Transformers' threshold and the NTK formula both read max_position_embeddings, not an original one
        return {**settings, "rope_length_threshold": config.max_position_embeddings, "rope_dim": dim,
                "rope_theta": float(params["rope_theta"]), "rope_factor": float(params["factor"])}
    with np.errstate(all="ignore"):
        long_inv_freq, _ = longrope_parameters(params, dim, config.max_position_embeddings, long=True)
    if not np.isfinite(long_inv_freq).all():
        raise ValueError(f"rope_parameters {params} give non-finite long rotary frequencies")
    # lengths above original_max_position_embeddings take the long factors (a length is an integer: floor it)
    return {**settings, "rope_length_threshold": math.floor(params["original_max_position_embeddings"]),
            "long_inv_freq": np.ascontiguousarray(long_inv_freq, dtype=F32)}
