"""Writes tests/data/qa/: a tiny seeded NemotronForQuestionAnswering checkpoint with the demo model's tokenizer, and
what Transformers 4.57's question-answering pipeline answers on it (expected.json), the reference of
nemotron_c.pipeline("question-answering"): Transformers 5 removed that pipeline.

    python3 -m venv /tmp/tf4venv
    /tmp/tf4venv/bin/pip install torch==2.13.0 transformers==4.57.1 "tokenizers>=0.22,<=0.23.0" \\
        "huggingface_hub<1.0" sentencepiece protobuf numpy safetensors
    /tmp/tf4venv/bin/python tools/make_qa_reference.py [--out tests/data/qa]

The tokenizer folder is made so that Transformers 4.57 and 5 build the same tokenizer from it: tokenizer_config.json
names PreTrainedTokenizerFast (4.57 would otherwise read tokenizer_class LlamaTokenizer and rebuild the
post-processor around add_bos_token; 5 maps model_type nemotron to TokenizersBackend) and model_input_names without
token_type_ids (4.57's PreTrainedTokenizerFast lists them by default, and its pipeline then passes them to
NemotronForQuestionAnswering, which takes none: a TypeError on every call), and tokenizer.json's own
post-processor puts <s> before each sequence ("<s>:0 $A:0 <s>:1 $B:1"), which both use as it is. expected.json
records 4.57's token ids of every question and context pair, and the test checks that Transformers 5 and
nemotron_c give the same ones.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "nemotron_c", "demo_model")
SEED = 7

CONFIG = dict(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=8, partial_rotary_factor=0.5, max_position_embeddings=1024,
              bos_token_id=1, eos_token_id=2, pad_token_id=2, norm_eps=1e-5, tie_word_embeddings=False)

SHORT = "My name is Wolfgang and I live in Berlin."
MEDIUM = ("The quick brown fox jumps over the lazy dog. It was seen near the river bank in the early morning, "
          "and the dog did not move at all.")
WHITESPACE = "Tabs\tand  double  spaces,\nnew lines\n\nand trailing space "
UNICODE = "Ünïcödé café in 日本語 — naïve résumé 😀 at 3 p.m.; the façade is ochre."
SPECIAL = "Text with </s> inside and <s> too, then more words."
LONG = " ".join([MEDIUM, SHORT, UNICODE, WHITESPACE.strip(), "Return the number of items in the list, or zero.",
                 "Open the file and read it line by line; close it at the end."] * 4)
QUESTIONS = ["Where do I live?", "What did the dog do?", "Who is naïve?", "Which file is opened here?"]


def build_checkpoint(out):
    torch.manual_seed(SEED)
    config = transformers.NemotronConfig(**CONFIG)
    model = transformers.NemotronForQuestionAnswering(config).eval()
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(noise * (0.1 if "norm" in name else 0.5))
    model.save_pretrained(out, safe_serialization=True)
    shutil.copy(os.path.join(DEMO, "NOTICE"), out)
    tokenizer_json = json.load(open(os.path.join(DEMO, "tokenizer.json"), encoding="utf-8"))
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    tokenizer_json["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}},
                 {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "unk_token": "<unk>", "pad_token": "</s>", "model_max_length": 1024,
              "clean_up_tokenization_spaces": False, "model_input_names": ["input_ids", "attention_mask"]}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)


def mask_the_question_when_context_first(qa):
    """4.57 puts the context first when the tokenizer pads on the left, and then masks nothing (p_mask all zeros):
    question tokens and <s> become answers, whose start lies after their end (answer ''). nemotron_c masks what is
    not context in both layouts; for the left-padding cases the reference is 4.57 with that one line changed."""
    preprocess = qa.preprocess

    def patched(example, **kwargs):
        for feature in preprocess(example, **kwargs):
            if qa.tokenizer.padding_side == "left":
                feature["p_mask"] = torch.tensor([[s != 0 for s in feature["encoding"].sequence_ids]])
            yield feature

    qa.preprocess = patched


def cases():
    """(name, padding_side, args, kwargs) of each call."""
    one = dict(question=QUESTIONS[0], context=SHORT)
    yield "default", "right", [], one
    yield "positional strings", "right", [QUESTIONS[0], SHORT], {}
    yield "positional dict", "right", [{"question": QUESTIONS[1], "context": MEDIUM}], {}
    for top_k in (1, 2, 3, 7, 40):
        yield f"top_k={top_k}", "right", [], dict(question=QUESTIONS[1], context=MEDIUM, top_k=top_k)
    for align in (True, False):
        for context in (MEDIUM, WHITESPACE, UNICODE, SPECIAL):
            yield f"align_to_words={align} {context[:12]!r}", "right", [], dict(
                question=QUESTIONS[2], context=context, align_to_words=align, top_k=4)
    for max_answer_len in (1, 2, 5):
        yield f"max_answer_len={max_answer_len}", "right", [], dict(
            question=QUESTIONS[1], context=MEDIUM, max_answer_len=max_answer_len, top_k=3, align_to_words=False)
    yield "impossible", "right", [], dict(question=QUESTIONS[0], context=SHORT, handle_impossible_answer=True)
    yield "impossible top_k", "right", [], dict(question=QUESTIONS[0], context=MEDIUM, handle_impossible_answer=True,
                                                top_k=5, align_to_words=False)
    yield "long default windows", "right", [], dict(question=QUESTIONS[3], context=LONG * 2, top_k=3)
    for max_seq_len, doc_stride in ((32, 8), (48, 16), (64, 0), (40, 20)):
        for align in (True, False):
            yield f"windows {max_seq_len}/{doc_stride} align={align}", "right", [], dict(
                question=QUESTIONS[3], context=LONG, max_seq_len=max_seq_len, doc_stride=doc_stride, top_k=4,
                align_to_words=align, max_question_len=5)
    yield "windows impossible", "right", [], dict(question=QUESTIONS[0], context=LONG, max_seq_len=48, doc_stride=12,
                                                   handle_impossible_answer=True, top_k=2, align_to_words=False)
    yield "questions, one context", "right", [], dict(question=QUESTIONS, context=MEDIUM, align_to_words=False)
    yield "questions and contexts", "right", [], dict(question=QUESTIONS, context=[SHORT, MEDIUM, UNICODE, LONG],
                                                      top_k=2, max_seq_len=48, doc_stride=10, align_to_words=False)
    yield "one-element lists", "right", [], dict(question=[QUESTIONS[0]], context=[SHORT])
    items = [{"question": q, "context": c} for q, c in zip(QUESTIONS, [SHORT, LONG, UNICODE, WHITESPACE])]
    for batch_size in (1, 2, 3, 5):
        for side in ("right", "left"):
            yield f"dicts batch_size={batch_size} {side}", side, [items], dict(
                batch_size=batch_size, max_seq_len=40, doc_stride=12, top_k=3, align_to_words=False)
    for side in ("right", "left"):
        yield f"single long batch_size=4 {side}", side, [], dict(question=QUESTIONS[3], context=LONG, batch_size=4,
                                                                 max_seq_len=48, doc_stride=16, top_k=2)
    yield "left padding", "left", [], dict(question=QUESTIONS[1], context=MEDIUM, top_k=3)
    yield "left padding align", "left", [], dict(question=QUESTIONS[2], context=UNICODE, top_k=3,
                                                 align_to_words=False)
    yield "left windows", "left", [], dict(question=QUESTIONS[3], context=LONG, max_seq_len=40, doc_stride=10,
                                           top_k=5, align_to_words=False, handle_impossible_answer=True)
    yield "padding max_length", "right", [], dict(question=QUESTIONS[1], context=MEDIUM, padding="max_length",
                                                  max_seq_len=64, top_k=2, align_to_words=False)
    # errors
    yield "top_k=0", "right", [], dict(question=QUESTIONS[0], context=SHORT, top_k=0)
    yield "max_answer_len=0", "right", [], dict(question=QUESTIONS[0], context=SHORT, max_answer_len=0)
    yield "doc_stride > max_seq_len", "right", [], dict(question=QUESTIONS[0], context=SHORT, max_seq_len=16,
                                                        doc_stride=20)
    yield "question too long", "right", [], dict(question=" ".join(QUESTIONS), context=LONG, max_seq_len=16,
                                                 doc_stride=2)
    yield "empty context", "right", [{"question": "Why?", "context": ""}], {}
    yield "lists of different lengths", "right", [], dict(question=QUESTIONS, context=[SHORT])


def as_json(value):
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(HERE, "..", "tests", "data", "qa"))
    out = parser.parse_args().out
    os.makedirs(out, exist_ok=True)
    build_checkpoint(out)
    torch.set_num_threads(1)
    qa = transformers.pipeline("question-answering", model=out, tokenizer=out, device="cpu")
    assert type(qa.tokenizer).__name__ == "PreTrainedTokenizerFast", type(qa.tokenizer)
    assert qa.model.dtype == torch.float32
    mask_the_question_when_context_first(qa)
    records = []
    for name, side, args, kwargs in cases():
        qa.tokenizer.padding_side = side
        record = {"name": name, "padding_side": side, "args": args, "kwargs": kwargs}
        try:
            record["expected"] = as_json(qa(*args, **kwargs))
        except BaseException as error:  # noqa: B036 (tokenizers' PanicException is no Exception)
            record["error"] = f"{type(error).__name__}: {error}"
        records.append(record)
    qa.tokenizer.padding_side = "right"
    pairs = sorted({(q, c) for q in QUESTIONS for c in (SHORT, MEDIUM, UNICODE, WHITESPACE, SPECIAL, LONG)})
    token_ids = [{"question": q, "context": c, "input_ids": qa.tokenizer(q, c)["input_ids"]} for q, c in pairs]
    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "numpy": np.__version__,
                   "cases": records, "token_ids": token_ids}, f, ensure_ascii=False, indent=1)
    print(f"{len(records)} cases ({sum('error' in r for r in records)} errors) written to {out}")


if __name__ == "__main__":
    main()
