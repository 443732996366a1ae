"""Every kernel set this CPU runs (NEMOTRON_C_KERNELS) gives the portable set's logits and Transformers', for
weights stored in float32, bfloat16 and float16, at prefill and at decode through the cache.

Odd widths (hidden 40, intermediate 70) and 37 tokens reach the tails of every kernel: partial panels of
columns, partial blocks of rows and a K that is no multiple of the vector width.
"""
import functools

import numpy as np
import pytest

import nemotron_c
from helpers.compare import assert_close
from helpers.kernel_sets import SETS, load_on
from helpers.transformers_reference import hf_from_pretrained, hf_logits

STORED = ["float32", "bfloat16", "float16"]
ODD_WIDTHS = dict(hidden_size=40, intermediate_size=70, num_attention_heads=5, num_key_value_heads=5)

T, PROMPT = 37, 30  # prefill length; decode runs tokens PROMPT..T-1 one at a time through the cache
IDS = np.random.default_rng(7).integers(0, 96, size=(2, T))
MASK = np.ones((2, T), dtype=np.int64)
MASK[0, :4] = 0  # left padding in the first row


def prefill_and_decode(model):
    """Logits of the whole prompt at once, and of tokens PROMPT..T-1 decoded one by one after a prefill."""
    full = model(IDS, attention_mask=MASK, use_cache=False).logits
    cache = model(IDS[:, :PROMPT], attention_mask=MASK[:, :PROMPT]).past_key_values
    steps = [model(IDS[:, t : t + 1], attention_mask=MASK[:, : t + 1], past_key_values=cache).logits[:, 0]
             for t in range(PROMPT, T)]
    return full, np.stack(steps, axis=1)


@pytest.fixture(scope="module")
def reference():
    """Per stored dtype: the checkpoint's path, Transformers' float32 logits, the portable set's logits."""

    @functools.cache
    def get(checkpoint, stored):
        path = checkpoint(dtype=stored, **ODD_WIDTHS)
        with pytest.MonkeyPatch.context() as monkeypatch:
            portable = prefill_and_decode(load_on(path, "portable", monkeypatch))
        return path, hf_logits(hf_from_pretrained(path), IDS, MASK), portable

    return get


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("kernels", SETS)
def test_kernel_set_matches_portable_and_transformers(checkpoint, reference, monkeypatch, kernels, stored):
    path, transformers_logits, (portable_full, portable_steps) = reference(checkpoint, stored)
    model = load_on(path, kernels, monkeypatch)
    assert model.kernels == kernels
    full, steps = prefill_and_decode(model)
    real = MASK == 1  # padded positions attend to every key, as in Transformers; only real tokens compare
    assert_close(full[real], portable_full[real], atol=1e-5, what=f"{kernels} prefill against portable")
    assert_close(full[real], transformers_logits[real], atol=1e-4, what=f"{kernels} prefill against Transformers")
    assert_close(steps, portable_steps, atol=1e-5, what=f"{kernels} decode against portable")
    assert_close(steps, transformers_logits[:, PROMPT:], atol=1e-4, what=f"{kernels} decode against Transformers")


def test_auto_is_the_first_set_this_cpu_runs(checkpoint, monkeypatch):
    path = checkpoint(**ODD_WIDTHS)
    chosen = load_on(path, "auto", monkeypatch)
    supported = []
    for kernels in SETS:
        monkeypatch.setenv("NEMOTRON_C_KERNELS", kernels)
        try:
            supported.append(nemotron_c.AutoModelForCausalLM.from_pretrained(path))
        except ValueError as error:
            assert "this CPU cannot run" in str(error)
    assert supported[-1].kernels == "portable"
    best = supported[0]
    assert chosen.kernels == best.kernels
    np.testing.assert_array_equal(chosen(IDS, attention_mask=MASK).logits, best(IDS, attention_mask=MASK).logits)



@pytest.fixture(scope="module")
def long_prompt(checkpoint):
    """Per stored dtype: a checkpoint whose MLP runs in chunks of rows (intermediate 8192: 512 rows per chunk), 2 x
    300 token ids (more rows than one chunk, and than one row block of the packed kernels, 516 and 512), and
    Transformers' logits for them. The widths are whole steps of the amx set's tiles (32)."""

    @functools.cache
    def get(stored):
        path = checkpoint(dtype=stored, hidden_size=64, intermediate_size=8192, num_attention_heads=4,
                          num_key_value_heads=2, max_position_embeddings=512)
        ids = np.random.default_rng(3).integers(0, 96, size=(2, 300))
        return path, ids, hf_logits(hf_from_pretrained(path), ids)

    return get


# "bfloat16 as float32": a bfloat16 checkpoint loaded with dtype="float32", whose weights hold bfloat16 values (the
# amx set multiplies them on its tile unit, as bfloat16 weights)
@pytest.mark.parametrize("stored", ["float32", "bfloat16", "bfloat16 as float32"])
@pytest.mark.parametrize("kernels", SETS)
def test_thread_counts_give_identical_logits(long_prompt, monkeypatch, kernels, stored):
    """Threads split each matmul's columns; every output is computed by the same code in the same order whichever
    thread takes it, so 1, 2 and 3 threads agree to the bit, and with Transformers across the MLP's row chunks.
    One thread packs the rows of x block by block within the matmul, two and three pack them once before it
    (matmul_packed): the same sums in the same order."""
    path, ids, transformers_logits = long_prompt(stored.split()[0])
    dtype = "float32" if stored.endswith("float32") else None
    logits = []
    for threads in (1, 2, 3):
        model = load_on(path, kernels, monkeypatch, num_threads=threads, dtype=dtype)
        assert model.num_threads == threads
        logits.append(model(ids, use_cache=False).logits)
    assert np.array_equal(logits[0], logits[1]) and np.array_equal(logits[0], logits[2])
    assert_close(logits[0], transformers_logits, atol=1e-4, what=f"{kernels}, 600 rows, against Transformers")


# Batch decode: one step multiplies as many rows as sequences by every weight, through the kernels for a few rows
# (kernels/matmul_avx512.c: passes of at most 8 rows, 4 with avx2, 16 rows at most, beyond which the packed
# kernel). 11 sequences reach a second (and with avx2 a third) pass of unequal rows; the widths here are whole int8
# groups of 64 (and int4 groups of 32), and the intermediate size is no multiple of the 24 weight rows of a block.
BATCH_WIDTHS = dict(hidden_size=128, intermediate_size=320, num_attention_heads=4, num_key_value_heads=2)
BATCH, BATCH_PROMPT, BATCH_T = 11, 8, 12
BATCH_IDS = np.random.default_rng(11).integers(0, 96, size=(BATCH, BATCH_T))
BATCH_MASK = np.ones((BATCH, BATCH_T), dtype=np.int64)
for row in range(BATCH):
    BATCH_MASK[row, : row % 5] = 0  # left padding of 0..4 tokens


def batch_decode(model):
    """Logits (BATCH, BATCH_T - BATCH_PROMPT, V) of the tokens after the prompt, decoded one step at a time for
    every sequence at once."""
    cache = model(BATCH_IDS[:, :BATCH_PROMPT], attention_mask=BATCH_MASK[:, :BATCH_PROMPT]).past_key_values
    steps = [model(BATCH_IDS[:, t : t + 1], attention_mask=BATCH_MASK[:, : t + 1], past_key_values=cache).logits[:, 0]
             for t in range(BATCH_PROMPT, BATCH_T)]
    return np.stack(steps, axis=1)


@pytest.mark.parametrize("stored", STORED + ["int8", "int4"])
@pytest.mark.parametrize("kernels", SETS)
def test_batch_decode_matches_portable_and_transformers(checkpoint, monkeypatch, kernels, stored):
    quantized = stored in ("int8", "int4")
    path = checkpoint(dtype="float32" if quantized else stored, **BATCH_WIDTHS)
    dtype = stored if quantized else None  # quantized at load from the float32 files
    monkeypatch.setenv("NEMOTRON_C_KERNELS", "portable")
    portable = batch_decode(nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, num_threads=1))
    load_on(path, kernels, monkeypatch)  # skips when this CPU lacks the set
    models = [nemotron_c.AutoModelForCausalLM.from_pretrained(path, dtype=dtype, num_threads=n) for n in (1, 2)]
    assert [model.kernels for model in models] == [kernels] * 2
    one, two = (batch_decode(model) for model in models)
    # every output is one thread's sum over a whole row of w, in an order that does not depend on the columns
    # a thread was given
    np.testing.assert_array_equal(one, two)
    assert_close(one, portable, atol=1e-5, what=f"{kernels} {stored} batch decode against portable")
    if not quantized:  # Transformers has no int8/int4 of these rules; the kernels' are checked against portable
        theirs = hf_logits(hf_from_pretrained(path), BATCH_IDS, BATCH_MASK)[:, BATCH_PROMPT:]
        assert_close(one, theirs, atol=1e-4, what=f"{kernels} {stored} batch decode against Transformers")
