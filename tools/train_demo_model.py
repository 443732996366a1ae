"""Trains the demo model shipped in nemotron_c/demo_model/: a small Nemotron that writes Python-docstring English.

    nice -n 19 python tools/train_demo_model.py [--out nemotron_c/demo_model] [--steps 1000]

Needs torch, transformers and sentencepiece; nothing is downloaded. The text is the docstrings of the Python
standard library this interpreter ships (modules, classes and functions; the test suites, idlelib, tkinter and the
demos left out), read with `ast` from the sources, each paragraph joined into one line. Those docstrings are © the
Python Software Foundation under the PSF License Version 2, which permits redistributing derived works with its
notice (written beside the model as NOTICE). One module in twenty (by a hash of its path) is held out; the
perplexity on it is printed at the end and recorded in README.md.

The tokenizer is a SentencePiece BPE with byte fallback trained on the training split, converted to tokenizer.json
by Transformers (from a folder holding tokenizer.model: Transformers 5's LlamaTokenizerFast(vocab_file=...) would
encode everything to nothing). The model is Transformers' NemotronForCausalLM trained from a seeded random init
on one thread, saved in bfloat16 safetensors.
"""
import argparse
import ast
import hashlib
import json
import math
import os
import re
import shutil
import sys
import sysconfig
import tempfile
import time

SKIPPED_DIRS = {"test", "tests", "idlelib", "site-packages", "__pycache__", "lib2to3", "tkinter", "turtledemo",
                "ensurepip", "pydoc_data"}

# Nemotron-Mini-4B-Instruct's turn markers; the demo model was not trained on dialogues, so in `chat` it answers
# in docstring English, but the template, history and stop tokens work as with a real chat checkpoint.
CHAT_TEMPLATE = (
    "{{ '<extra_id_0>System' }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '\n' + message['content'].strip() }}{% endif %}{% endfor %}{{ '\n' }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '<extra_id_1>User\n' + message['content'].strip() + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ '<extra_id_1>Assistant\n' + message['content'].strip() + '\n' }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<extra_id_1>Assistant\n' }}{% endif %}"
)

NOTICE = """\
This demo model and its tokenizer were trained by tools/train_demo_model.py on the docstrings of the Python {version}
standard library.

Copyright (c) 2001-2024 Python Software Foundation. All rights reserved. The docstrings are distributed under the
PSF License Agreement (Python Software Foundation License Version 2), https://docs.python.org/3/license.html,
which permits reproducing and distributing derivative works provided this notice is retained.
"""


def docstrings(stdlib):
    """Yields (relative path, docstring) for every module, class and function docstring of the standard library."""
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    text = ast.get_docstring(node)
                    if text and len(text) >= 40:
                        yield os.path.relpath(path, stdlib), tidy(text)


def tidy(text):
    """Each paragraph on one line with one space between words (docstrings wrap prose at 72 columns and align
    tables with runs of spaces, which a small model would learn instead of words); doctest paragraphs keep their
    lines."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [" ".join(line.split()) for line in paragraph.splitlines()]
        paragraphs.append("\n".join(lines) if ">>>" in paragraph else " ".join(lines))
    return "\n\n".join(p for p in paragraphs if p)


def held_out(path):
    return int(hashlib.sha256(path.encode()).hexdigest(), 16) % 20 == 0


def train_tokenizer(lines, vocab_size, out_dir):
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    with tempfile.TemporaryDirectory() as spm_dir:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=os.path.join(spm_dir, "tokenizer"), vocab_size=vocab_size,
            model_type="bpe", byte_fallback=True, character_coverage=1.0, split_digits=True,
            control_symbols=["<extra_id_0>", "<extra_id_1>"], max_sentence_length=100000, minloglevel=2,
            num_threads=1, input_sentence_size=len(lines), shuffle_input_sentence=False,
        )
        tokenizer = LlamaTokenizer.from_pretrained(spm_dir, legacy=False)
        tokenizer.save_pretrained(out_dir)
    for name in ("special_tokens_map.json", "chat_template.jinja", "tokenizer.model"):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                   "unk_token": "<unk>", "clean_up_tokenization_spaces": False, "legacy": False,
                   "model_max_length": 512, "tokenizer_class": "LlamaTokenizer", "chat_template": CHAT_TEMPLATE},
                  f, indent=2)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(out_dir)


def pack(tokenizer, texts):
    """One stream of text EOS text EOS ... (with BOS before each text if the tokenizer adds one)."""
    ids = []
    for encoded in tokenizer(texts)["input_ids"]:
        ids += encoded + [tokenizer.eos_token_id]
    return ids


def perplexity(model, torch, stream, seq_len):
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(stream) - seq_len - 1, seq_len):
            chunk = torch.tensor(stream[start:start + seq_len + 1]).unsqueeze(0)
            loss = model(chunk, labels=chunk).loss
            total += loss.item() * seq_len
            count += seq_len
    model.train()
    return math.exp(total / count)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "nemotron_c", "demo_model"))
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--vocab-size", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import NemotronConfig, NemotronForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    stdlib = sysconfig.get_paths()["stdlib"]
    train_texts, eval_texts = [], []
    for path, text in docstrings(stdlib):
        (eval_texts if held_out(path) else train_texts).append(text)
    print(f"{len(train_texts)} training docstrings ({sum(map(len, train_texts)) / 1e6:.2f} MB), "
          f"{len(eval_texts)} held out, from {stdlib}", flush=True)

    out = os.path.abspath(args.out)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    tokenizer = train_tokenizer(train_texts, args.vocab_size, out)
    train_ids, eval_ids = pack(tokenizer, train_texts), pack(tokenizer, eval_texts)
    print(f"{len(train_ids)} training tokens, {len(eval_ids)} held-out tokens", flush=True)

    config = NemotronConfig(
        vocab_size=len(tokenizer), hidden_size=192, intermediate_size=768, num_hidden_layers=4,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=None,
    )
    model = NemotronForCausalLM(config)
    print(f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(
        (step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)) * 0.9 + 0.1))
    data = torch.tensor(train_ids)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.monotonic()
    model.train()
    for step in range(args.steps):
        offsets = torch.randint(0, len(data) - args.seq_len - 1, (args.batch_size,), generator=generator)
        batch = torch.stack([data[o:o + args.seq_len + 1] for o in offsets.tolist()])
        loss = model(batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.monotonic() - start:.0f} s", flush=True)

    model = model.to(torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    with open(os.path.join(out, "NOTICE"), "w", encoding="utf-8") as f:
        f.write(NOTICE.format(version=sys.version.split()[0]))
    model = model.to(torch.float32)
    print(f"held-out perplexity (float32 arithmetic on the bf16 weights): "
          f"{perplexity(model, torch, eval_ids, args.seq_len):.2f}", flush=True)
    prompt = tokenizer("Return the", return_tensors="pt")
    sample = model.generate(**prompt, max_new_tokens=24, do_sample=False)
    print("greedy from 'Return the':", tokenizer.decode(sample[0], skip_special_tokens=True), flush=True)


if __name__ == "__main__":
    main()
