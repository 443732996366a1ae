"""NemotronCache against Transformers' DynamicCache: each operation applied to both caches after the same forward,
then the keys and values read back and a further forward through each compared; hostile arguments; generate's
cache cropped and passed back."""
import copy
import pickle

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.compare import assert_close
from helpers.generation_reference import PEAKED, hf_generate, our_generate
from helpers.transformers_reference import hf_from_pretrained

RNG = np.random.default_rng(77)
IDS = RNG.integers(0, 96, size=(3, 9))
MASK = np.array([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1, 1]])
PAST = 6  # tokens of the first forward


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from helpers.transformers_reference import Checkpoints

    path = Checkpoints(str(tmp_path_factory.mktemp("cache_checkpoints")))()
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path), path


def first_forward(models, ids=IDS, mask=MASK):
    """Both models over the first PAST tokens with use_cache=True: (our cache, Transformers' DynamicCache)."""
    ours, theirs, _ = models
    ours_out = ours(ids[:, :PAST], attention_mask=mask[:, :PAST], use_cache=True)
    with torch.no_grad():
        theirs_out = theirs(torch.as_tensor(ids[:, :PAST]), attention_mask=torch.as_tensor(mask[:, :PAST]),
                            use_cache=True)
    assert isinstance(theirs_out.cache, transformers.DynamicCache)
    return ours_out.past_key_values, theirs_out.cache


def assert_same_contents(cache, reference, what):
    assert len(cache) == len(reference) == len(cache.layers)
    assert cache.get_seq_length() == reference.get_seq_length(), what
    for i, (layer, ref_layer) in enumerate(zip(cache.layers, reference.layers)):
        assert layer.keys.dtype == np.float32 and layer.values.dtype == np.float32
        assert_close(layer.keys, ref_layer.keys.numpy(), atol=1e-5, what=f"{what}: layer {i} keys")
        assert_close(layer.values, ref_layer.values.numpy(), atol=1e-5, what=f"{what}: layer {i} values")


def assert_next_forward_equal(models, cache, reference, ids, mask, what):
    """A further forward over ids through each cache: the same logits."""
    ours, theirs, _ = models
    got = ours(ids, attention_mask=mask, past_key_values=cache)
    with torch.no_grad():
        expected = theirs(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), cache=reference)
    assert got.past_key_values is cache
    assert_close(got.logits, expected.logits.numpy(), atol=1e-4, what=what)
    assert_same_contents(cache, reference, what + ", after the forward")


def test_keys_values_and_answers_equal_transformers(models):
    cache, reference = first_forward(models)
    assert_same_contents(cache, reference, "after the first forward")
    assert cache.layers[0].keys.shape == (3, 2, PAST, 16)  # (B, num_key_value_heads, P, head_dim)
    for (keys, values, sliding), (ref_keys, ref_values, ref_sliding) in zip(cache, reference):
        assert_close(keys, ref_keys.numpy(), atol=1e-5)
        assert_close(values, ref_values.numpy(), atol=1e-5)
        assert sliding is ref_sliding is None
    for layer_idx in (0, 1, 2, 5, -1):
        assert cache.get_seq_length(layer_idx) == reference.get_seq_length(layer_idx)
        assert cache.get_mask_sizes(4, layer_idx) == reference.get_mask_sizes(4, layer_idx)
    assert cache.get_max_length() == reference.get_max_length() == -1
    assert cache.get_max_length(1) == reference.get_max_length(1) == -1
    assert cache.get_max_length(7) == reference.get_max_length(7) == -1
    assert cache.get_query_offset() == reference.get_query_offset()
    for name in ("is_compileable", "is_croppable", "is_sliding", "is_linear", "is_dummy", "is_initialized"):
        assert getattr(cache, name) == getattr(reference, name), name
    for layer, ref_layer in zip(cache.layers, reference.layers):
        assert layer.get_seq_length() == ref_layer.get_seq_length()
        assert layer.get_max_length() == ref_layer.get_max_length()
        assert layer.get_mask_sizes(3) == ref_layer.get_mask_sizes(3)
        for name in ("is_sliding", "is_compileable", "is_croppable", "is_initialized"):
            assert getattr(layer, name) == getattr(ref_layer, name), name
    assert cache.is_recording_past(0) == reference.is_recording_past(0) is False
    cache.activate_past_recording()
    reference.activate_past_recording()
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST:], MASK, "after activate_past_recording")


def test_a_cache_before_any_forward_reads_as_transformers(models):
    ours, theirs, _ = models
    cache, reference = nemotron_c.NemotronCache(ours, 2), transformers.DynamicCache(config=theirs.config)
    assert len(cache) == len(reference) == 2
    assert cache.get_seq_length() == reference.get_seq_length() == 0
    assert cache.is_initialized == reference.is_initialized is False
    assert [layer.keys for layer in cache.layers] == [layer.keys for layer in reference.layers] == [None, None]
    assert [layer.values for layer in cache.layers] == [None, None]


@pytest.mark.parametrize("tokens", [-1, -3, -PAST, 0, np.int64(-2), torch.tensor(-2)])
def test_crop_then_forward(models, tokens):
    cache, reference = first_forward(models)
    cache.crop(tokens)
    reference.crop(int(tokens))
    left = PAST + int(tokens)
    assert cache.get_seq_length() == reference.get_seq_length() == left
    assert cache.is_initialized == reference.is_initialized is True
    if left:
        assert_same_contents(cache, reference, f"crop({tokens})")
    else:  # Transformers keeps empty tensors
        assert cache.layers[0].keys.shape == tuple(reference.layers[0].keys.shape) == (3, 2, 0, 16)
    assert_next_forward_equal(models, cache, reference, IDS[:, left:], MASK, f"after crop({tokens})")


def test_crop_refuses_what_would_not_make_sense(models):
    cache, reference = first_forward(models)
    # a positive value is the older "keep this many" meaning, which Transformers 5 refuses
    for target in (cache, reference):
        with pytest.raises(ValueError, match="positive value"):
            target.crop(2)
    # more tokens than the cache holds: ours refuses, where Transformers silently empties the cache
    with pytest.raises(ValueError, match=f"cannot remove {PAST + 1} tokens from a cache holding {PAST}"):
        cache.crop(-(PAST + 1))
    with pytest.raises(TypeError, match="tokens_to_remove must be an integer, not float"):
        cache.crop(-1.0)
    with pytest.raises(TypeError, match="tokens_to_remove must be an integer, not str"):
        cache.crop("-1")
    with pytest.raises(TypeError, match="not a bool"):
        cache.crop(False)
    assert cache.get_seq_length() == PAST
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST:], MASK, "after refused crops")


@pytest.mark.parametrize("beam_idx", [[2, 0, 0], [0, 1, 2], [1, 2, 0], np.array([2, 2, 2], np.int32)])
def test_reorder_cache_then_forward(models, beam_idx):
    cache, reference = first_forward(models)
    cache.reorder_cache(beam_idx)
    reference.reorder_cache(torch.as_tensor(np.asarray(beam_idx, np.int64)))
    assert_same_contents(cache, reference, f"reorder_cache({beam_idx})")
    mask = MASK[np.asarray(beam_idx)]
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST:], mask, f"after reorder_cache({beam_idx})")


@pytest.mark.parametrize("indices", [[2, 0], [-1, 1, 1, 0], [True, False, True], [1], "tensor"])
def test_batch_select_indices_then_forward(models, indices):
    cache, reference = first_forward(models)
    torch_indices = torch.tensor([2, -3]) if indices == "tensor" else torch.as_tensor(indices)
    cache.batch_select_indices(torch_indices)
    reference.batch_select_indices(torch_indices)
    rows = np.arange(3)[torch_indices.numpy()]
    assert cache.batch_size == len(rows)
    assert_same_contents(cache, reference, f"batch_select_indices({indices})")
    assert_next_forward_equal(models, cache, reference, IDS[rows, PAST:], MASK[rows], f"after selecting {indices}")


@pytest.mark.parametrize("repeats", [2, 1, [1, 0, 2], "tensor"])
def test_batch_repeat_interleave_then_forward(models, repeats):
    cache, reference = first_forward(models)
    torch_repeats = torch.tensor([3, 1, 1]) if repeats == "tensor" else (
        torch.tensor(repeats) if isinstance(repeats, list) else repeats)
    cache.batch_repeat_interleave(torch_repeats if repeats == "tensor" else repeats)
    reference.batch_repeat_interleave(torch_repeats)
    rows = np.repeat(np.arange(3), np.asarray(torch_repeats))
    assert cache.batch_size == len(rows)
    assert_same_contents(cache, reference, f"batch_repeat_interleave({repeats})")
    assert_next_forward_equal(models, cache, reference, IDS[rows, PAST:], MASK[rows], f"after repeating {repeats}")


def test_reset_then_a_new_batch(models):
    """After reset both caches are empty and take a prompt of another batch size."""
    cache, reference = first_forward(models)
    cache.reset()
    reference.reset()
    assert cache.get_seq_length() == reference.get_seq_length() == 0
    assert cache.is_initialized == reference.is_initialized is False
    assert cache.layers[0].keys is reference.layers[0].keys is None
    ids, mask = IDS[:2, :5], MASK[:2, :5]
    assert_next_forward_equal(models, cache, reference, ids, mask, "after reset, 2 rows")


def test_deepcopy_is_independent(models):
    cache, reference = first_forward(models)
    clone, ref_clone = copy.deepcopy(cache), copy.deepcopy(reference)
    assert clone is not cache and clone._core is not cache._core
    assert_next_forward_equal(models, clone, ref_clone, IDS[:, PAST:], MASK, "through the copy")
    assert cache.get_seq_length() == reference.get_seq_length() == PAST
    assert_same_contents(cache, reference, "the original after the copy's forward")
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST:], MASK, "through the original")


def test_a_cache_of_another_model_object_of_the_same_shape_serves(models):
    """As Transformers' caches, which belong to no model: the same checkpoint loaded again, a deepcopy of the model,
    its NemotronModel; generate too. One of another shape is refused, by the core."""
    ours, _, path = models
    cache, reference = first_forward(models)
    expected = ours(IDS[:, PAST:], attention_mask=MASK, past_key_values=copy.deepcopy(cache)).logits
    for other in (nemotron_c.AutoModelForCausalLM.from_pretrained(path), copy.deepcopy(ours)):
        got = other(IDS[:, PAST:], attention_mask=MASK, past_key_values=copy.deepcopy(cache))
        np.testing.assert_array_equal(got.logits, expected)
    base = nemotron_c.NemotronModel.from_pretrained(path)
    from_base = base(IDS[:, :PAST], attention_mask=MASK[:, :PAST], use_cache=True).past_key_values
    assert_next_forward_equal(models, from_base, reference, IDS[:, PAST:], MASK, "a NemotronModel's cache")
    prompt = IDS[1:2]
    prefix = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(prompt[:, :5], use_cache=True).past_key_values
    np.testing.assert_array_equal(ours.generate(prompt, past_key_values=prefix, max_new_tokens=4),
                                  ours.generate(prompt, max_new_tokens=4))

    wider = nemotron_c.NemotronForCausalLM.from_config(nemotron_c.NemotronConfig(
        vocab_size=96, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2))
    foreign = wider(IDS[:, :PAST], attention_mask=MASK[:, :PAST], use_cache=True).past_key_values
    with pytest.raises(ValueError, match=r"the cache was made by a model of another shape \(3 layers of 2 key/value "
                                         r"heads of 16; this model has 2 of 2 of 16\)"):
        ours(IDS[:, PAST:], attention_mask=MASK, past_key_values=foreign)
    with pytest.raises(ValueError, match="another shape"):
        ours.generate(IDS[1:2], past_key_values=wider(IDS[1:2, :5], use_cache=True).past_key_values)
    assert foreign.get_seq_length() == PAST


def test_a_shallow_copy_shares_and_pickling_is_refused(models):
    cache, reference = first_forward(models)
    shallow, ref_shallow = copy.copy(cache), copy.copy(reference)
    shallow.crop(-2)
    ref_shallow.crop(-2)
    assert cache.get_seq_length() == reference.get_seq_length() == PAST - 2
    with pytest.raises(TypeError, match="a NemotronCache cannot be pickled: its keys and values live in the C core"):
        pickle.dumps(cache)
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST - 2:], MASK, "after the shallow copy's crop")


@pytest.mark.parametrize("call", [
    lambda cache: cache.batch_repeat_interleave(2**40),
    lambda cache: cache.batch_repeat_interleave(2**64),
    lambda cache: cache.batch_repeat_interleave([2**62, 2**62, 2**62]),  # their sum overflows int64
    lambda cache: cache.batch_repeat_interleave(np.array([2**62, 2**62, 2**62], np.uint64)),
    lambda cache: cache.batch_select_indices(np.broadcast_to(np.int64(0), (2**40,))),  # no memory behind it
], ids=["int", "beyond_int64", "sum_beyond_int64", "uint64", "broadcast_indices"])
def test_more_sequences_than_memory_holds_are_refused_before_allocating(models, call):
    cache, _ = first_forward(models)
    with pytest.raises(ValueError, match="sequences of .* positions need .* more than this machine's"):
        call(cache)
    assert cache.batch_size == 3


@pytest.mark.parametrize("args, error, match", [
    ((1.5,), TypeError, "batch_size must be an integer, not float"),
    (("2",), TypeError, "batch_size must be an integer, not str"),
    ((True,), TypeError, "batch_size must be an integer, not a bool"),
    ((2, 2.0), TypeError, "capacity must be an integer, not float"),
    ((0,), ValueError, "batch size must be positive"),
    ((2**63,), ValueError, r"a cache of 9223372036854775808 sequences \(capacity 0\) is too large"),
    ((2, 2**64), ValueError, r"a cache of 2 sequences \(capacity 18446744073709551616\) is too large"),
], ids=["float", "str", "bool", "float_capacity", "zero", "beyond_int64", "capacity_beyond_int64"])
def test_a_new_cache_refuses_what_is_no_size(models, args, error, match):
    with pytest.raises(error, match=match):
        nemotron_c.NemotronCache(models[0], *args)


def test_index_arguments_refused_with_clear_errors(models):
    cache, reference = first_forward(models)
    # as Transformers (torch's index_select and indexing): out of range is an IndexError
    for target, beam_idx in ((cache, [0, 3, 1]), (reference, torch.tensor([0, 3, 1]))):
        with pytest.raises(IndexError):
            target.reorder_cache(beam_idx)
    with pytest.raises(IndexError, match=r"beam_idx holds 3, outside the cache's sequences \[0, 3\)"):
        cache.reorder_cache([0, 3, 1])
    with pytest.raises(IndexError, match=r"beam_idx holds -1"):
        cache.reorder_cache([0, -1, 1])
    with pytest.raises(ValueError, match="beam_idx holds 2 indices, but the cache holds 3 sequences"):
        cache.reorder_cache([0, 1])
    with pytest.raises(TypeError, match="beam_idx must hold integers .* got dtype float64"):
        cache.reorder_cache([0.0, 1.0, 2.0])
    with pytest.raises(TypeError, match="not booleans"):
        cache.reorder_cache([True, False, True])
    with pytest.raises(ValueError, match="must be 1-D"):
        cache.reorder_cache([[0, 1, 2]])
    with pytest.raises(TypeError, match="beam_idx must be a NumPy array"):
        cache.reorder_cache("012")
    for target, indices in ((cache, [0, 3]), (reference, torch.tensor([0, 3]))):
        with pytest.raises(IndexError):
            target.batch_select_indices(indices)
    with pytest.raises(IndexError, match="indices holds 3, outside the cache's 3 sequences"):
        cache.batch_select_indices([0, 3])
    with pytest.raises(IndexError, match="indices holds -4"):
        cache.batch_select_indices([-4])
    with pytest.raises(IndexError, match="boolean mask of 2 entries, but the cache holds 3"):
        cache.batch_select_indices([True, False])
    with pytest.raises(ValueError, match="no sequence"):
        cache.batch_select_indices([])
    with pytest.raises(ValueError, match="no sequence"):
        cache.batch_select_indices([False, False, False])
    with pytest.raises(TypeError, match="got dtype float32"):
        cache.batch_select_indices(np.array([0, 1], np.float32))
    with pytest.raises(ValueError, match="must be 1-D"):
        cache.batch_select_indices(1)
    with pytest.raises(ValueError, match="no sequence"):
        cache.batch_repeat_interleave(0)
    with pytest.raises(ValueError, match="must not be negative"):
        cache.batch_repeat_interleave(-1)
    with pytest.raises(ValueError, match="must not be negative"):
        cache.batch_repeat_interleave([1, -1, 1])
    with pytest.raises(ValueError, match="repeats holds 2 counts, but the cache holds 3 sequences"):
        cache.batch_repeat_interleave([1, 2])
    with pytest.raises(TypeError, match="not a bool"):
        cache.batch_repeat_interleave(True)
    with pytest.raises(TypeError, match="repeats must be an integer .*, not float"):
        cache.batch_repeat_interleave(2.0)
    with pytest.raises(TypeError, match="repeats must hold integers"):
        cache.batch_repeat_interleave([1.0, 2.0, 1.0])
    with pytest.raises(IndexError, match="layer index -3 is out of range for a cache of 2 layers"):
        cache.get_seq_length(-3)
    with pytest.raises(IndexError):
        reference.get_seq_length(-3)
    with pytest.raises(AttributeError, match="no offload\\(\\): the cache already lives in CPU memory"):
        cache.offload(0)
    with pytest.raises(AttributeError, match="no update\\(\\)"):
        cache.update(None, None, 0)
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        cache.nonsense
    # nothing changed
    assert cache.batch_size == 3 and cache.get_seq_length() == PAST
    assert_next_forward_equal(models, cache, reference, IDS[:, PAST:], MASK, "after refused calls")


def test_a_bfloat16_cache_reads_widened_to_float32(models):
    _, theirs, path = models
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, cache_dtype="bfloat16")
    cache = ours(IDS[:, :PAST], attention_mask=MASK[:, :PAST], use_cache=True).past_key_values
    with torch.no_grad():
        reference = theirs(torch.as_tensor(IDS[:, :PAST]), attention_mask=torch.as_tensor(MASK[:, :PAST]),
                           use_cache=True).cache
    assert len(cache.layers) == len(reference.layers) == 2
    for i, (layer, ref_layer) in enumerate(zip(cache.layers, reference.layers)):
        for got, expected in ((layer.keys, ref_layer.keys), (layer.values, ref_layer.values)):
            assert got.dtype == np.float32 and got.shape == tuple(expected.shape)
            assert not (got.view(np.uint32) & 0xFFFF).any(), "every value a bfloat16 one"
            if i == 0:  # Transformers' float32 keys rounded to bfloat16, within one step where rounding ties differ
                np.testing.assert_allclose(got, expected.to(torch.bfloat16).float().numpy(), rtol=2**-7, atol=1e-6)
            else:  # computed from hidden states that attended over bfloat16 keys and values
                assert_close(got, expected.numpy(), atol=0.02, what=f"layer {i}")
    cache.crop(-2)
    assert copy.deepcopy(cache).layers[1].keys.tobytes() == cache.layers[1].keys.tobytes()


def test_generate_cache_cropped_and_passed_back(models, tmp_path_factory):
    """generate's cache, cropped by 3 and passed back with the input ids cut to match, continues exactly as
    generating from those ids alone (and as Transformers from them)."""
    from helpers.transformers_reference import Checkpoints

    path = Checkpoints(str(tmp_path_factory.mktemp("cache_peaked")))(**PEAKED)
    ours, theirs = nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)
    prompts = IDS[:2, :5]
    first = our_generate(ours, prompts, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    expected_first = hf_generate(theirs, prompts, max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    np.testing.assert_array_equal(first.sequences, expected_first["sequences"])
    assert_same_contents(first.cache, expected_first["cache"], "generate's cache")
    cache = first.cache
    length = first.sequences.shape[1] - 1
    assert cache.get_seq_length() == length
    cache.crop(-3)
    shortened = first.sequences[:, :length - 1]  # the cached tokens and one more
    again = our_generate(ours, shortened, max_new_tokens=4, do_sample=False, past_key_values=cache,
                         return_dict_in_generate=True, output_logits=True)
    alone = our_generate(ours, shortened, max_new_tokens=4, do_sample=False, return_dict_in_generate=True,
                         output_logits=True)
    expected = hf_generate(theirs, shortened, max_new_tokens=4, do_sample=False)
    np.testing.assert_array_equal(again.sequences, alone.sequences)
    np.testing.assert_array_equal(again.sequences, expected)
    assert len(again.logits) == len(alone.logits) == 4
    for step, (a, b) in enumerate(zip(again.logits, alone.logits)):
        assert_close(a, b, atol=1e-4, what=f"logits of step {step}")
    assert again.cache is cache and cache.get_seq_length() == again.sequences.shape[1] - 1


class MeddlingStreamer:
    """A streamer that, between generate's steps, tries to change the cache generate is extending."""

    def __init__(self, model, cache):
        self.model, self.cache, self.refusals, self.steps = model, cache, [], 0

    def put(self, value):
        self.steps += 1
        if self.steps == 1 or self.steps == 4:  # the prompt, before generate takes the cache; the last token, after
            return
        for attempt in (lambda: self.cache.crop(-1), lambda: self.cache.reorder_cache([1, 0]),
                        lambda: self.cache.batch_select_indices([0, 1]), self.cache.reset,
                        lambda: self.model(IDS[:2, :1], past_key_values=self.cache)):
            with pytest.raises(RuntimeError, match="being extended by a generate\\(\\) in progress"):
                attempt()
            self.refusals.append(attempt)
        self.cache.layers[0].keys  # reading is harmless

    def end(self):
        pass


def test_a_cache_being_extended_by_generate_cannot_be_changed_meanwhile(models):
    """A streamer (or stopping criterion) runs Python between the steps: had it cropped or reordered the cache
    passed in, the next step would read the wrong keys. The cache is held until generate is done."""
    ours, _, _ = models
    prompts, mask = IDS[:2], np.ones((2, IDS.shape[1]), dtype=np.int64)
    cache = ours(prompts[:, :PAST], attention_mask=mask[:, :PAST], use_cache=True).past_key_values
    streamer = MeddlingStreamer(ours, cache)
    out = ours.generate(prompts, attention_mask=mask, past_key_values=cache, max_new_tokens=3, do_sample=False,
                        streamer=streamer, return_dict_in_generate=True)
    assert streamer.steps == 4 and len(streamer.refusals) == 10  # the prompt, then one put per new token
    alone = ours.generate(prompts, attention_mask=mask, max_new_tokens=3, do_sample=False)
    np.testing.assert_array_equal(out.sequences, alone)
    cache.crop(-1)  # released once generate is done
    assert cache.get_seq_length() == out.sequences.shape[1] - 2


def test_the_core_cache_refuses_bad_arguments_itself(models):
    """The binding's Cache validates too (through the core's statuses), whatever the Python layer checked."""
    cache, _ = first_forward(models)
    core = cache._core
    with pytest.raises(ValueError, match=f"cannot crop a cache of {PAST} positions to {PAST + 1}"):
        core.crop(PAST + 1)
    with pytest.raises(ValueError, match="cannot crop"):
        core.crop(-1)
    with pytest.raises(ValueError, match=r"cache row 3 is outside \[0, 3\)"):
        core.select(np.array([0, 3], np.int64))
    with pytest.raises(ValueError, match=r"cache row -1 is outside"):
        core.select(np.array([-1], np.int64))
    with pytest.raises(ValueError, match="at least one sequence"):
        core.select(np.zeros(0, np.int64))
    with pytest.raises((TypeError, ValueError), match="rows"):
        core.select(np.array([0.0, 1.0]))
    out = np.empty((3, 2, PAST, 16), np.float32)
    with pytest.raises(ValueError, match=r"layer 2 is outside \[0, 2\)"):
        core.read(2, False, out)
    with pytest.raises((TypeError, ValueError), match="out"):
        core.read(0, False, np.empty((3, 2, PAST + 1, 16), np.float32))
    with pytest.raises((TypeError, ValueError), match="out"):
        core.read(0, False, out.astype(np.float64))
    core.read(1, True, out)
    np.testing.assert_array_equal(out, cache.layers[1].values)
    assert (core.batch_size, core.length, core.num_layers, core.num_key_value_heads, core.head_dim) == (3, PAST, 2, 2, 16)


def test_a_prompt_cache_repeated_for_beams_continues_as_without_it(models, tmp_path_factory):
    """Transformers' generate does not expand a cache passed in for num_beams: the caller repeats it with
    batch_repeat_interleave, as here; the beams then equal those of generating from the ids alone."""
    from helpers.transformers_reference import Checkpoints

    path = Checkpoints(str(tmp_path_factory.mktemp("cache_peaked")))(**PEAKED)
    ours, theirs = nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)
    prompts = IDS[:2, :5]
    cache = ours(prompts[:, :3], use_cache=True).past_key_values
    with torch.no_grad():
        reference = theirs(torch.as_tensor(prompts[:, :3]), use_cache=True).cache
    cache.batch_repeat_interleave(2)
    reference.batch_repeat_interleave(2)
    assert_same_contents(cache, reference, "the repeated prompt cache")
    settings = dict(num_beams=2, num_return_sequences=2, max_new_tokens=4, do_sample=False)
    got = our_generate(ours, prompts, past_key_values=cache, **settings)
    alone = our_generate(ours, prompts, **settings)
    expected = hf_generate(theirs, prompts, past_key_values=reference, **settings)
    np.testing.assert_array_equal(got, alone)
    np.testing.assert_array_equal(got, expected)
