"""Tiny random Nemotron checkpoints made with Transformers, and Transformers itself as the reference."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import transformers
from huggingface_hub import split_torch_state_dict_into_shards

torch.set_num_threads(2)
transformers.logging.set_verbosity_error()

TINY = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
)


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


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return Checkpoints(str(tmp_path_factory.mktemp("checkpoints")))


def hf_from_pretrained(path, model_class=None):
    """Transformers' model on the same files, in float32 with eager attention."""
    cls = model_class or transformers.NemotronForCausalLM
    return cls.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()


def hf_logits(model, ids, mask=None, **kwargs):
    with torch.no_grad():
        out = model(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask), **kwargs)
    return out.logits.float().numpy()


def assert_close(ours, reference, atol=1e-4, what="values"):
    ours, reference = np.asarray(ours), np.asarray(reference)
    assert ours.shape == reference.shape, f"{what}: shape {ours.shape} != {reference.shape}"
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64))
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else None
    assert diff.size == 0 or diff.max() <= atol, (
        f"{what}: max abs difference {diff.max():.3g} at {worst} (ours {ours[worst]}, reference {reference[worst]})"
    )


@pytest.fixture(params=["auto", "portable"])
def kernels(request, monkeypatch):
    """Runs a test with the CPU's best kernels and again with the portable C ones."""
    monkeypatch.setenv("NEMOTRON_C_KERNELS", request.param)
    return request.param


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


def interrupt_child(script):
    """Runs `script` in a child Python that prints "ready" before a long call, "interrupted ..." when the call
    raises KeyboardInterrupt, then "usable" if the model still gives its earlier results. Sends SIGINT 1.5 s after
    "ready" and checks that KeyboardInterrupt came within 5 s and the model is usable."""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(1.5)
        sent = time.time()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().strip()
        latency = time.time() - sent
        assert line.startswith("interrupted"), line + child.stderr.read()
        assert latency < 5.0, f"KeyboardInterrupt came {latency:.1f} s after SIGINT"
        assert child.stdout.readline().strip() == "usable"
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
