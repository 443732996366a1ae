"""Batch scoring against the log-softmax of Transformers' logits, and its memory bound."""
import os
import subprocess
import sys
import textwrap

import warnings

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained

import nemotron_c
from nemotron_c.generation.scoring import score

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_token_logprobs(model, ids, mask=None):
    """Per sequence, log_softmax(logits)[t-1][ids[t]] over its kept tokens, from one padded Transformers call."""
    mask = np.ones_like(ids) if mask is None else mask
    with torch.no_grad():
        logits = model(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask)).logits
    logp = torch.log_softmax(logits.float(), dim=-1).numpy()
    out = []
    for b in range(ids.shape[0]):
        kept = np.flatnonzero(mask[b])
        out.append(logp[b, kept[:-1], ids[b, kept[1:]]])
    return out


def padded(lengths, padding_side, seed=0, vocab=96):
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.zeros((len(lengths), T), dtype=np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        cols = slice(0, n) if padding_side == "right" else slice(T - n, T)
        ids[b, cols] = rng.integers(0, vocab, size=n)
        mask[b, cols] = 1
    return ids, mask


def check_against(result, reference):
    assert len(result.num_tokens) == len(result.token_logprobs) == len(reference) > 0
    for b, ref in enumerate(reference):
        assert_close(result.token_logprobs[b], ref, what=f"token log-probabilities of sequence {b}")
        assert result.num_tokens[b] == len(ref)
        assert_close(result.sum_logprob[b], ref.astype(np.float64).sum(), what="sum")
        if len(ref):
            assert_close(result.mean_logprob[b], ref.astype(np.float64).mean(), what="mean")
            assert_close(np.log(result.perplexity[b]), -ref.astype(np.float64).mean(), what="log perplexity")


@pytest.fixture(scope="module")
def path(checkpoint):
    return checkpoint()


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_scores_match_transformers_log_softmax(path, padding_side, kernels):
    ids, mask = padded((9, 5, 2, 7), padding_side)
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    assert kernels == "auto" or ours.kernels == kernels  # the portable run is not the default one again
    result = ours.score(ids, attention_mask=mask, return_token_logprobs=True)
    check_against(result, hf_token_logprobs(hf_from_pretrained(path), ids, mask))


def test_ragged_lists_batches_and_chunks_do_not_change_results(path):
    rng = np.random.default_rng(1)
    sequences = [list(rng.integers(0, 96, size=n)) for n in (12, 3, 30, 1, 17, 8)]
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    theirs = hf_from_pretrained(path)
    reference = [hf_token_logprobs(theirs, np.array([s]))[0] for s in sequences]
    for kwargs in ({}, {"batch_size": 1}, {"batch_size": 4, "chunk_size": 5}, {"chunk_size": 1}):
        check_against(ours.score(sequences, return_token_logprobs=True, **kwargs), reference)


def test_large_vocabulary_spans_many_tiles(checkpoint):
    """V = 40000 and 354 scored rows: several vocabulary blocks in the core."""
    path = checkpoint(vocab_size=40000, num_hidden_layers=1, seed=3)
    ids, mask = padded((60, 60, 55, 60, 60, 60), "right", seed=3, vocab=40000)
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    result = ours.score(ids, attention_mask=mask, return_token_logprobs=True)
    check_against(result, hf_token_logprobs(hf_from_pretrained(path), ids, mask))


@pytest.mark.parametrize("variant", [{"dtype": "bfloat16"}, {"tie_word_embeddings": True}], ids=["bf16", "tied"])
def test_weight_variants(checkpoint, variant):
    path = checkpoint(seed=4, **variant)
    ids, mask = padded((8, 6), "left", seed=4)
    result = nemotron_c.NemotronForCausalLM.from_pretrained(path).score(ids, attention_mask=mask,
                                                                        return_token_logprobs=True)
    check_against(result, hf_token_logprobs(hf_from_pretrained(path), ids, mask))


def test_core_score_equals_forward_logits(path):
    """The tiled log-softmax in C against NumPy's log-softmax of our own forward's logits, any targets."""
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 96, size=(2, 6))
    logits = ours(ids).logits.astype(np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    targets = rng.integers(-1, 96, size=(2, 6)).astype(np.int32)
    out = np.full((2, 6), 7.0, dtype=np.float32)
    positions = np.tile(np.arange(6), (2, 1))
    ours._core.score(input_ids=ids.astype(np.int32), position_ids=positions, targets=targets, logprobs=out)
    expected = np.where(targets >= 0, np.take_along_axis(logp, np.maximum(targets, 0)[..., None], -1)[..., 0], 0)
    assert_close(out, expected, atol=1e-5)


def word_tokenizer():
    """A Transformers fast tokenizer over a word-level vocabulary that fits the tiny model (96 ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["<unk>", "<s>", "</s>"] + "the a cat dog sat on mat ran far and is big small red blue".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                unk_token="<unk>")


def test_texts_with_a_tokenizer(path):
    tokenizer = word_tokenizer()
    texts = ["the cat sat on the mat", "a dog ran far", "red", "the big blue dog is small"]
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    result = ours.score(texts, tokenizer=tokenizer, return_token_logprobs=True)
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert ids[2] == [1, 16]  # <s> red
    theirs = hf_from_pretrained(path)
    check_against(result, [hf_token_logprobs(theirs, np.array([s]))[0] for s in ids])
    # a single text; a tokenizer's padded output; a tokenizer with encode() only
    single = ours.score(texts[0], tokenizer=tokenizer)
    assert_close(single.sum_logprob, result.sum_logprob[:1])
    tokenizer.pad_token = "</s>"
    batch = tokenizer(texts, padding=True, return_tensors="np")
    assert_close(ours.score(batch).sum_logprob, result.sum_logprob)
    assert_close(ours.score(tokenizer(texts, padding=True)).sum_logprob, result.sum_logprob)  # lists and a mask
    # one (1, T) array or tensor per text, as tokenizer(text, return_tensors=...)["input_ids"] gives them
    for tensors in ("np", "pt"):
        rows = [tokenizer(t, return_tensors=tensors)["input_ids"] for t in texts]
        assert_close(ours.score(rows).sum_logprob, result.sum_logprob)

    class EncodeOnly:
        def encode(self, text, add_special_tokens=True):
            return tokenizer.encode(text, add_special_tokens=add_special_tokens)

    assert_close(score(ours, texts, tokenizer=EncodeOnly()).sum_logprob, result.sum_logprob)
    without_bos = ours.score(texts, tokenizer=tokenizer, add_special_tokens=False)
    assert list(without_bos.num_tokens) == [5, 3, 0, 5]


def test_short_sequences_and_max_length(path):
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    result = ours.score([[5], [], [1, 2, 3, 4, 5, 6]], max_length=3, return_token_logprobs=True)
    assert list(result.num_tokens) == [0, 0, 2]
    assert result.sum_logprob[0] == 0 and np.isnan(result.mean_logprob[0]) and np.isnan(result.perplexity[1])
    alone = ours.score([1, 2, 3], return_token_logprobs=True)
    one = ours.score([[5]], return_token_logprobs=True)  # a batch with no token to score still runs
    assert one.num_tokens[0] == 0 and one.token_logprobs[0].shape == (0,)
    assert_close(result.token_logprobs[2], alone.token_logprobs[0], atol=1e-6)


def test_a_perplexity_beyond_float64_is_inf_quietly(checkpoint):
    """exp(-mean) overflows past a mean log-probability of -709.8: inf, without NumPy's overflow warning."""
    model = nemotron_c.NemotronForCausalLM.from_pretrained(checkpoint(scale=60.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = model.score([[5, 17, 33, 2, 9, 4], [5, 17]])
    assert result.mean_logprob.max() < -710 and np.all(np.isfinite(result.mean_logprob))
    assert np.all(np.isposinf(result.perplexity))


def test_bad_input(path, checkpoint):
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(path)
    with pytest.raises(ValueError, match="needs a tokenizer"):
        ours.score(["some text"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ours.score([[1, 2, 96]])
    with pytest.raises(TypeError, match="integer token ids"):
        ours.score(np.ones((2, 3)))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        ours.score(np.ones((2, 3), dtype=np.int64), attention_mask=np.ones((2, 4)))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ours.score([[1, 2]], batch_size=0)
    with pytest.raises(ValueError, match="no sequence"):
        ours.score([])
    with pytest.raises(TypeError, match="mixes texts"):
        ours.score(["a", [1, 2]])
    with pytest.raises(ValueError, match=r"inputs\[1\] has shape \(2, 2\): each element of a list is one sequence"):
        ours.score([np.array([[1, 2]]), np.array([[1, 2], [3, 4]])])
    with pytest.raises(ValueError, match="token id 9223372036854775813, which does not fit"):  # not wrapped negative
        ours.score(np.array([1, 2**63 + 5], dtype=np.uint64))
    with pytest.raises(ValueError, match=r"inputs\[0\] holds token id 18446744073709551615"):
        ours.score([np.array([2**64 - 1, 1], dtype=np.uint64)])
    with pytest.raises(TypeError, match="language-modelling head"):
        score(nemotron_c.NemotronModel.from_pretrained(path), [[1, 2]])
    ids = np.ones((1, 3), dtype=np.int32)
    positions = np.zeros((1, 3), dtype=np.int64)
    def core_score(targets, logprobs):
        ours._core.score(input_ids=ids, position_ids=positions, targets=targets, logprobs=logprobs)

    with pytest.raises(ValueError, match="target id 96"):
        core_score(np.array([[96, -1, -1]], dtype=np.int32), np.empty((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"targets must have shape \(1, 3\), got \(1, 2\)"):
        core_score(np.zeros((1, 2), dtype=np.int32), np.empty((1, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="logprobs must be"):
        core_score(np.zeros((1, 3), dtype=np.int32), np.empty((1, 3), dtype=np.float64))
    with pytest.raises(TypeError, match="targets is required"):
        core_score(None, np.empty((1, 3), dtype=np.float32))


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    import nemotron_c


    def peak_rss_kb():
        # VmHWM belongs to this process image; ru_maxrss on Linux also counts the parent's RSS at fork
        try:
            with open("/proc/self/status") as f:
                return int(f.read().split("VmHWM:")[1].split()[0])
        except (OSError, IndexError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


    model = nemotron_c.NemotronForCausalLM.from_pretrained(sys.argv[1], num_threads=2)
    B, T, V = 8, 128, model.config.vocab_size
    ids = np.random.default_rng(0).integers(0, V, size=(B, T))
    # page in the weights this batch reads (the whole lm_head, the embedding rows of its ids) one small
    # call at a time, so that only working memory can raise the peak below
    for row in ids:
        model.score(row[None, :])
    before = peak_rss_kb()
    tracemalloc.start()
    result = model.score(ids, batch_size=B, return_token_logprobs=True)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    after = peak_rss_kb()
    print(json.dumps({"rss_growth_kb": after - before, "traced_peak": traced_peak, "btv_bytes": B * T * V * 4,
                      "finite": bool(np.isfinite(result.sum_logprob).all())}))
""")


def test_scoring_never_holds_batch_by_vocabulary_logits(checkpoint):
    """B x T x V float32 logits would be 800 MB here; the peak RSS may grow by a small fraction of that."""
    path = checkpoint(vocab_size=200_000, num_hidden_layers=1, seed=6)
    package_root = os.path.dirname(HERE)
    run = subprocess.run([sys.executable, "-c", MEMORY_PROBE, path, package_root], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    import json

    probe = json.loads(run.stdout.strip().splitlines()[-1])
    assert probe["finite"]
    assert probe["btv_bytes"] > 800e6
    assert probe["traced_peak"] < 2e6, probe  # NumPy arrays: ids, masks and (B, T) results only
    assert probe["rss_growth_kb"] * 1024 < 40e6, probe  # core working memory: (B, T, H) and a 16 MB tile
