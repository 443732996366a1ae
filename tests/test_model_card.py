"""The model cards' examples run with nemotron_c in place of transformers and give the same answer.

A checkpoint directory as on the Hub: a SentencePiece BPE tokenizer converted by Transformers (as
Nemotron's), a random Nemotron model with its vocabulary, config and generation config. Each card's
code is written once and run with either library.
"""
import json
import os
import shutil

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.transformers_reference import build_hf_model, save_bin
from helpers.tokenizer_builders import build_all

MESSAGES = [
    {"role": "system", "content": "You are a friendly chatbot who always responds in the style of a pirate"},
    {"role": "user", "content": "How many helicopters can a human eat in one sitting?"},
]


@pytest.fixture(scope="module", params=["safetensors", "official"])
def card_dir(tmp_path_factory, request):
    """"official": as NVIDIA ships its checkpoints, bf16 weights in pytorch_model.bin shards with their index."""
    tokenizers = build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))
    path = tmp_path_factory.mktemp("model_card")
    shutil.copytree(tokenizers["nemotron"], path, dirs_exist_ok=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = build_hf_model(scale=0.25, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    if request.param == "official":
        model = model.to(torch.bfloat16)
        model.config.dtype = torch.bfloat16
        save_bin(path, model, shard_size="300KB")
        model.generation_config.save_pretrained(path)
        assert os.path.isfile(os.path.join(path, "pytorch_model.bin.index.json"))
    else:
        model.save_pretrained(path)
    return str(path)


def minitron_base_card(lib, path):
    """nvidia/Minitron-4B-Base's example, on the CPU (its device_map="cuda" dropped: Transformers needs accelerate for it)."""
    tokenizer = lib.AutoTokenizer.from_pretrained(path)
    model = lib.AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    prompt = "Complete the paragraph: our solar system is"
    inputs = tokenizer.encode(prompt, return_tensors="pt").to(model.device)
    outputs = model.generate(inputs, max_length=40)  # the card's 20, plus room for our small vocabulary's longer prompt
    return tokenizer.decode(outputs[0])


def mini_instruct_card(lib, path):
    """nvidia/Nemotron-Mini-4B-Instruct's example."""
    tokenizer = lib.AutoTokenizer.from_pretrained(path)
    model = lib.AutoModelForCausalLM.from_pretrained(path)
    tokenized_chat = tokenizer.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True,
                                                   return_tensors="pt")
    outputs = model.generate(**tokenized_chat, max_new_tokens=128)
    return tokenizer.decode(outputs[0])


def nemotron_generate_docstring(lib, path):
    """The example in Transformers' NemotronForCausalLM.forward docstring."""
    model = lib.NemotronForCausalLM.from_pretrained(path)
    tokenizer = lib.AutoTokenizer.from_pretrained(path)
    prompt = "Hey, are you conscious? Can you talk to me?"
    inputs = tokenizer(prompt, return_tensors="pt")
    generate_ids = model.generate(inputs.input_ids, max_length=50)  # 30 in the docstring; our prompt is longer
    return tokenizer.batch_decode(generate_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]


@pytest.fixture
def float32_reference(monkeypatch):
    """Transformers 5 loads a bf16 checkpoint with dtype "auto" and computes in bf16; nemotron_c computes in float32
    whatever the storage, which is Transformers loading the same files with dtype=float32 (README: where we
    differ). The cards' code is kept; only Transformers' default dtype is set."""
    for cls in (transformers.AutoModelForCausalLM, transformers.NemotronForCausalLM):
        load = cls.from_pretrained.__func__

        def float32_load(owner, *args, _load=load, **kwargs):
            if "torch_dtype" not in kwargs:
                kwargs.setdefault("dtype", torch.float32)
            return _load(owner, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(float32_load))


@pytest.mark.parametrize("card", [minitron_base_card, mini_instruct_card, nemotron_generate_docstring])
def test_model_card_gives_the_same_answer(card_dir, card, float32_reference):
    with torch.inference_mode():
        expected = card(transformers, card_dir)
    got = card(nemotron_c, card_dir)
    assert isinstance(got, str) and len(got) > 0
    assert got == expected


def test_card_folder_is_a_checkpoint_folder(card_dir):
    """As on the Hub: config.json (model_type nemotron) beside the tokenizer files, so that Transformers'
    AutoTokenizer ignores tokenizer_class; ours picks the same tokenizer, with the same padding side."""
    with open(os.path.join(card_dir, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["model_type"] == "nemotron"
    assert os.path.isfile(os.path.join(card_dir, "tokenizer.json"))
    ours = nemotron_c.AutoTokenizer.from_pretrained(card_dir)
    theirs = transformers.AutoTokenizer.from_pretrained(card_dir)
    assert (type(ours).__name__, type(theirs).__name__) == ("NemotronTokenizer", "TokenizersBackend")
    assert ours.padding_side == theirs.padding_side == "right"


def test_scores_of_the_card_prompt(card_dir):
    """Logits of the tokenized card prompt equal Transformers' (tokenizer and model together)."""
    ours_tok = nemotron_c.AutoTokenizer.from_pretrained(card_dir)
    theirs_tok = transformers.AutoTokenizer.from_pretrained(card_dir)
    for tokenizer in (ours_tok, theirs_tok):
        tokenizer.pad_token = tokenizer.eos_token  # what scripts do for a checkpoint without a pad token
        tokenizer.padding_side = "left"
    text = ["Complete the paragraph: our solar system is", "Hey"]
    ours_inputs = ours_tok(text, padding=True, return_tensors="np")
    theirs_inputs = theirs_tok(text, padding=True, return_tensors="pt")
    np.testing.assert_array_equal(ours_inputs["input_ids"], theirs_inputs["input_ids"].numpy())
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(card_dir)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(card_dir, dtype=torch.float32)
    with torch.inference_mode():
        expected = theirs(**theirs_inputs).logits.numpy()
    got = ours(**ours_inputs).logits
    assert np.abs(got - expected).max() < 1e-4
