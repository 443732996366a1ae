"""Tiny random Nemotron checkpoints written by nemotron_c's own safetensors writer, with no torch: inputs for the
tests of what loading refuses (the writer itself is compared with Transformers' files in test_checkpoint_saving)."""
import json
import os

import numpy as np

import nemotron_c
from nemotron_c.checkpoint.saving import TensorToSave, save_weights
from nemotron_c.model.weights import STATE_DICT_LAYER_ORDER, layer_shapes

# The widths every tiny test checkpoint has (the Transformers-made ones too).
TINY = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


def write_random_checkpoint(path, seed=0, shard_size=None, **overrides):
    """config.json and float32 weights (model.safetensors, or shards above shard_size) of a random NemotronForCausalLM."""
    config = nemotron_c.NemotronConfig(**{**TINY, **overrides})
    config.save_pretrained(path)
    rng = np.random.default_rng(seed)
    H, V = config.hidden_size, config.vocab_size
    shapes = layer_shapes(config)
    optional = {"attention_bias": config.attention_bias, "mlp_bias": config.mlp_bias}
    names = [("model.embed_tokens.weight", (V, H))]
    for layer in range(config.num_hidden_layers):
        for name in STATE_DICT_LAYER_ORDER:
            is_bias = name.endswith(".bias") and "layernorm" not in name
            if is_bias and not optional["attention_bias" if "self_attn" in name else "mlp_bias"]:
                continue
            names.append((f"model.layers.{layer}.{name}", shapes[name]))
    names += [("model.norm.weight", (H,)), ("model.norm.bias", (H,))]
    if not config.tie_word_embeddings:
        names.append(("lm_head.weight", (V, H)))
    tensors = [TensorToSave.of(name, (rng.standard_normal(shape) * 0.1).astype(np.float32), "float32")
               for name, shape in names]
    save_weights(path, tensors, shard_size or "50GB")
    return str(path)



def edit_config(directory, **changes):
    """Sets keys of a checkpoint's config.json (a value of None removes the key)."""
    edit_json(os.path.join(directory, "config.json"), **changes)


def edit_json(path, **changes):
    """Sets keys of the JSON object in a file (a value of None removes the key)."""
    with open(path) as f:
        config = json.load(f)
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    with open(path, "w") as f:
        json.dump(config, f)
