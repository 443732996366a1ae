"""Writes the seed corpus of fuzz/corpus/ (run once; needs torch, transformers and sentencepiece, as the tests do):
small valid files of every format the readers take, for the mutations to start from."""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

import nemotron_c  # noqa: E402
from helpers.checkpoints import TINY  # noqa: E402
from helpers.tokenizer_builders import CONTROL, USER_DEFINED, train  # noqa: E402


def corpus(target, name):
    os.makedirs(os.path.join(HERE, "corpus", target), exist_ok=True)
    return os.path.join(HERE, "corpus", target, name)


def main():
    work = tempfile.mkdtemp()
    lines = [f"the quick brown fox jumps over the lazy dog {i} times, then 12 more." for i in range(200)]
    lines += ["Hello wörld 😀 tabs\tand  spaces"] * 5
    train(os.path.join(work, "tokenizer"), 400, lines, USER_DEFINED, CONTROL, normalization_rule_name="identity")
    shutil.copy(os.path.join(work, "tokenizer.model"), corpus("tokenizer_model", "identity_bpe.model"))
    os.remove(os.path.join(work, "tokenizer.vocab"))
    with open(os.path.join(work, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "LlamaTokenizer", "legacy": False}, f)
    saved = tempfile.mkdtemp()
    transformers.AutoTokenizer.from_pretrained(work).save_pretrained(saved)
    with open(os.path.join(saved, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(corpus("tokenizer_json", "llama.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    # the other pipeline: a normalizer, a Split pre-tokenizer
    tj["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    tj["pre_tokenizer"] = {"type": "Split", "pattern": {"String": "<extra_id_0>"}, "behavior": "Isolated",
                           "invert": False}
    with open(corpus("tokenizer_json", "normalized.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)

    with open(corpus("config_json", "tiny.json"), "w") as f:
        f.write(nemotron_c.NemotronConfig(**TINY).to_json_string())
    yarn = {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "original_max_position_embeddings": 64}
    with open(corpus("config_json", "yarn.json"), "w") as f:
        f.write(nemotron_c.NemotronConfig(**TINY, rope_parameters=yarn).to_json_string())

    save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(4, dtype=np.float16)},
              corpus("safetensors", "two.safetensors"), metadata={"format": "pt"})
    save_file({"model.layers.0.mlp.up_proj.weight": np.arange(-128, 128, dtype=np.int8).reshape(2, 128),
               "model.layers.0.mlp.up_proj.weight_scale": np.array([[0.5, 1], [2, 0]], dtype=np.float32),
               "model.norm.weight": np.ones(3, dtype=np.float32)},
              corpus("safetensors", "int8.safetensors"), metadata={"format": "pt"})
    save_file({"model.layers.0.mlp.up_proj.weight": (np.arange(128) * 37 % 256).astype(np.uint8).reshape(2, 64),
               "model.layers.0.mlp.up_proj.weight_scale": np.array([[0.5, 1, -2, 0], [2, 0, 1, -0.25]], np.float32),
               "model.norm.weight": np.ones(3, dtype=np.float32)},
              corpus("safetensors", "int4.safetensors"), metadata={"format": "pt"})
    torch.save({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4, dtype=torch.bfloat16)},
               corpus("torch_bin", "two.bin"))
    with open(corpus("encode_decode", "text.txt"), "w", encoding="utf-8") as f:
        f.write("Hello <extra_id_0> wörld  12\n\ttabs 😀 end <ctrl_0>")


if __name__ == "__main__":
    main()
