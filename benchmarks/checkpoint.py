"""The random checkpoint the benchmark runs on: Minitron-4B's layer widths, made with Transformers and a
SentencePiece BPE tokenizer trained on this Python's standard library sources, saved once in a cache directory.

Weights are saved as bfloat16, as NVIDIA ships Minitron: every engine then sees the same values whatever dtype it
computes in (a bfloat16 value is exact in float32), so greedy tokens can be compared across dtypes.
"""
import glob
import json
import os
import shutil
import sysconfig
import time

# nvidia/Minitron-4B-Base's config.json; the layer count and vocabulary come from the command line.
MINITRON_4B = dict(hidden_size=3072, intermediate_size=9216, num_attention_heads=24, num_key_value_heads=8,
                   head_dim=128)
# The smoke test's widths: the same shape of model, small enough to run in seconds (rows of 64 values: every
# quantized dtype's block fits; a rotary half of 8 values or more: ONNX Runtime's attention needs it).
SMOKE = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=32)
# positions the checkpoint takes (config max_position_embeddings): the long prompt's row stays within them
MAX_POSITIONS = 4096
# Nemotron's special tokens as NemotronConfig numbers them (pad 0 and unk 1: what llama.cpp's converter assumes)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def checkpoint_dir(cache_dir, widths, layers, vocab):
    name = "smoke" if widths is SMOKE else "minitron4b"
    return os.path.join(cache_dir, f"{name}-L{layers}-V{vocab}")


def make_checkpoint(path, widths, layers, vocab, log=print):
    """Writes the checkpoint into `path` unless it is already there (a finished one has config.json: it is built
    in a sibling directory and renamed when complete)."""
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import torch  # optional dependencies of nemotron_c: only the benchmark's own model needs them
    import transformers

    transformers.utils.logging.disable_progress_bar()
    start = time.perf_counter()
    partial = path + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    train_tokenizer(partial, vocab)
    config = transformers.NemotronConfig(
        vocab_size=vocab, num_hidden_layers=layers, max_position_embeddings=MAX_POSITIONS, bos_token_id=BOS_ID,
        eos_token_id=EOS_ID, pad_token_id=PAD_ID, tie_word_embeddings=False, **widths)
    torch.manual_seed(0)
    with torch.no_grad():
        model = transformers.NemotronForCausalLM(config).eval()
        for name, param in model.named_parameters():
            # LayerNorm1P stores (scale - 1): spread around 0 as a trained model's are, not Transformers' zeros
            param.normal_(0.0, 0.1 if "norm" in name else 0.02)
    model.to(torch.bfloat16).save_pretrained(partial)
    os.replace(partial, path)
    log(f"checkpoint made in {time.perf_counter() - start:.0f} s: {path}")
    return path


def make_float32_variant(src, path, log=print):
    """A float32 copy of the checkpoint at `src` whose weights are not bfloat16 values, as a float32 fine-tune's
    are: each nonzero one moved up by a relative 2^-16 to 2^-12, less than the bfloat16 grid's step (2^-8 of the
    value or more) and far more than float32's (2^-24), so strictly between two bfloat16 values. nemotron_c
    multiplies float32 weights read from a float32 file otherwise than those of a bfloat16 checkpoint (README.md,
    Kernels). Written into `path` unless already there."""
    if os.path.exists(os.path.join(path, "config.json")):
        return path
    import torch
    from safetensors.torch import load_file, save_file

    start = time.perf_counter()
    partial = path + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for name, tensor in load_file(os.path.join(src, "model.safetensors")).items():
        wide = tensor.float()
        nudge = torch.rand(wide.shape, generator=generator) * 2.0**-12 + 2.0**-16  # never zero: no value stays put
        tensors[name] = (wide * (1.0 + nudge)).contiguous()
    save_file(tensors, os.path.join(partial, "model.safetensors"), metadata={"format": "pt"})
    for entry in os.listdir(src):
        if entry == "config.json":
            config = read_config(src)
            config["dtype"] = "float32"
            config.pop("torch_dtype", None)
            with open(os.path.join(partial, entry), "w", encoding="utf-8") as f:
                json.dump(config, f, indent=2)
        elif entry != "model.safetensors":
            shutil.copy(os.path.join(src, entry), partial)
    os.replace(partial, path)
    log(f"float32 variant made in {time.perf_counter() - start:.0f} s: {path}")
    return path


def train_tokenizer(out, vocab):
    """tokenizer.model (SentencePiece BPE with byte fallback, Nemotron's special ids) and the files Transformers
    writes for it (tokenizer.json, tokenizer_config.json), which the ONNX Runtime GenAI builder reads."""
    import sentencepiece as spm
    import transformers

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(stdlib_lines(min(400_000, max(4000, 40 * vocab)))),
        model_prefix=os.path.join(out, "tokenizer"),
        vocab_size=vocab, model_type="bpe", byte_fallback=True, character_coverage=0.9995,
        normalization_rule_name="identity", remove_extra_whitespaces=False, hard_vocab_limit=False,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID, max_sentence_length=100000,
        num_threads=os.cpu_count() or 1, minloglevel=2)
    os.remove(os.path.join(out, "tokenizer.vocab"))
    # from a folder holding tokenizer.model: LlamaTokenizerFast(vocab_file=...) would encode everything to nothing
    tokenizer = transformers.LlamaTokenizerFast.from_pretrained(out, legacy=False)
    tokenizer.save_pretrained(out)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))


def stdlib_lines(count):
    """The first `count` non-blank lines of the standard library's Python sources, in sorted order."""
    stdlib = sysconfig.get_paths()["stdlib"]
    lines = []
    for path in sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True)):
        if "-packages" in path:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                lines.extend(line.rstrip("\n") for line in f if line.strip())
        except (OSError, UnicodeDecodeError):
            continue
        if len(lines) >= count:
            break
    return lines[:count]


def read_config(path):
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        return json.load(f)
