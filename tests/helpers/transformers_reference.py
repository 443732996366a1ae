"""Transformers as the reference: tiny random Nemotron checkpoints made with it, and its outputs (needs torch)."""
import json
import os

import torch
import transformers
from huggingface_hub import split_torch_state_dict_into_shards

from .checkpoints import TINY

torch.set_num_threads(2)
transformers.logging.set_verbosity_error()


def hf_config(**overrides):
    settings = {**TINY, **overrides}
    config = transformers.NemotronConfig(**settings)
    config._attn_implementation = "eager"
    return config


def randomize(model, seed, scale):
    """Transformers initialises norms to ones and zeros; perturb every parameter so that all of them matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            if "norm" in name:
                param.copy_(noise * 0.1)
            else:
                param.copy_(noise * scale)


def build_hf_model(seed=0, scale=0.08, model_class=None, **overrides):
    config = hf_config(**overrides)
    torch.manual_seed(seed)
    model = (model_class or transformers.NemotronForCausalLM)(config).eval()
    randomize(model, seed, scale)
    return model


class Checkpoints:
    """Saves each distinct tiny checkpoint once per test session."""

    def __init__(self, root):
        self.root = root
        self.made = {}

    def __call__(self, seed=0, scale=0.08, dtype="float32", shard_size=None, model_class=None, **overrides):
        key = json.dumps([seed, scale, dtype, shard_size, getattr(model_class, "__name__", None), overrides],
                         sort_keys=True, default=str)
        if key not in self.made:
            path = os.path.join(self.root, f"ckpt{len(self.made)}")
            model = build_hf_model(seed=seed, scale=scale, model_class=model_class, **overrides)
            model = model.to(getattr(torch, dtype))
            kwargs = {"max_shard_size": shard_size} if shard_size else {}
            model.save_pretrained(path, **kwargs)
            self.made[key] = path
        return self.made[key]


def hf_from_pretrained(path, model_class=None, attn_implementation=None):
    """Transformers' model on the same files, in float32, with its default attention (SDPA) unless asked for
    another ("eager" for output_attentions, which SDPA does not give)."""
    cls = model_class or transformers.NemotronForCausalLM
    return cls.from_pretrained(path, dtype=torch.float32, attn_implementation=attn_implementation).eval()


def hf_logits(model, ids, mask=None, **kwargs):
    with torch.no_grad():
        out = model(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask), **kwargs)
    return out.logits.float().numpy()


def save_bin(directory, model, state_dict=None, shard_size=None):
    """Lays out a checkpoint as Transformers 4 did with safe_serialization=False: config.json and
    pytorch_model.bin, or pytorch_model-0000k-of-0000n.bin shards and pytorch_model.bin.index.json."""
    os.makedirs(directory, exist_ok=True)
    model.config.save_pretrained(directory)
    state_dict = model.state_dict() if state_dict is None else state_dict
    if shard_size is None:
        torch.save(state_dict, os.path.join(directory, "pytorch_model.bin"))
        return str(directory)
    split = split_torch_state_dict_into_shards(state_dict, filename_pattern="pytorch_model{suffix}.bin",
                                               max_shard_size=shard_size)
    assert split.is_sharded
    for file_name, names in split.filename_to_tensors.items():
        torch.save({n: state_dict[n] for n in names}, os.path.join(directory, file_name))
    with open(os.path.join(directory, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": split.metadata, "weight_map": split.tensor_to_filename}, f, indent=2)
    return str(directory)
