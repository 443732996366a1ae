"""generate(..., return_dict_in_generate=True) with output_attentions / output_hidden_states against Transformers:
per step a tuple over layers, step 0 the whole prompt, later steps one position (every position without a cache),
with beams the running beams of that step in their order. Transformers returns attention weights only with its
eager attention, so the weights are compared between eager models."""
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.generation_reference import MASK, PEAKED, PROMPTS, our_generate
from helpers.transformers_reference import hf_from_pretrained

OUTPUTS = dict(return_dict_in_generate=True, output_attentions=True, output_hidden_states=True)


@pytest.fixture(scope="module")
def eager(checkpoint):
    """nemotron_c and Transformers with eager attention on the peaked checkpoint."""
    path = checkpoint(**PEAKED)
    return (nemotron_c.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager"),
            hf_from_pretrained(path, attn_implementation="eager"))


def as_numpy(value):
    """Tensors, and tuples of them at any depth, as NumPy arrays."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return tuple(as_numpy(v) for v in value) if isinstance(value, tuple) else value


def hf_generate(model, ids, mask=None, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(torch.as_tensor(ids), attention_mask=None if mask is None else torch.as_tensor(mask),
                             **kwargs)
    return as_numpy(out) if isinstance(out, torch.Tensor) else {key: as_numpy(value) for key, value in out.items()}


def assert_steps_equal(ours, theirs, what, atol=1e-4):
    """Per-step tuples of per-layer arrays equal in count, shape and value."""
    assert len(ours) == len(theirs), f"{what}: {len(ours)} steps, Transformers {len(theirs)}"
    for step, (a, b) in enumerate(zip(ours, theirs)):
        assert isinstance(a, tuple) and len(a) == len(b), f"{what}[{step}]: {len(a)} layers, Transformers {len(b)}"
        for layer, (x, y) in enumerate(zip(a, b)):
            y = np.asarray(y)
            assert x.dtype == np.float32 and x.shape == y.shape, f"{what}[{step}][{layer}]: {x.shape} != {y.shape}"
            np.testing.assert_allclose(x, y, atol=atol, rtol=0, err_msg=f"{what}[{step}][{layer}]")


def compare(ours, theirs, ids, mask, **kwargs):
    expected = hf_generate(theirs, ids, mask, **OUTPUTS, **kwargs)
    got = our_generate(ours, ids, mask, **OUTPUTS, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_steps_equal(got.attentions, expected["attentions"], "attentions")
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")
    return got


def test_greedy_left_padded_batch(eager):
    ours, theirs = eager
    got = compare(ours, theirs, PROMPTS, MASK, max_new_tokens=5)
    layers, heads = ours.config.num_hidden_layers, ours.config.num_attention_heads
    assert len(got.attentions) == 5 and len(got.attentions[0]) == layers and len(got.hidden_states[0]) == layers + 1
    assert got.attentions[0][0].shape == (3, heads, 7, 7) and got.attentions[4][0].shape == (3, heads, 1, 11)
    assert got.hidden_states[0][0].shape == (3, 7, ours.config.hidden_size)


def test_one_output_without_the_other_and_without_return_dict(eager):
    ours, theirs = eager
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, return_dict_in_generate=True, output_hidden_states=True)
    assert got.attentions is None and len(got.hidden_states) == 3
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, return_dict_in_generate=True, output_attentions=True)
    assert got.hidden_states is None and len(got.attentions) == 3
    # as Transformers: without return_dict_in_generate they are not computed, only the sequences return
    plain = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, output_attentions=True, output_hidden_states=True)
    np.testing.assert_array_equal(plain, hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3,
                                                     output_attentions=True, output_hidden_states=True))


def test_max_new_tokens_one_and_no_padding(eager):
    ours, theirs = eager
    compare(ours, theirs, PROMPTS, MASK, max_new_tokens=1)
    compare(ours, theirs, PROMPTS[1:], None, max_new_tokens=4)


def test_a_row_that_reaches_eos_early_keeps_being_fed_pad_tokens(eager):
    ours, theirs = eager
    free = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=8)
    eos = int(free[0, PROMPTS.shape[1] + 1])  # row 0 ends at its second new token
    got = compare(ours, theirs, PROMPTS, MASK, max_new_tokens=8, eos_token_id=eos, pad_token_id=1)
    assert (got.sequences[0, PROMPTS.shape[1] + 2:] == 1).all() and len(got.attentions) > 3


def test_without_a_cache_every_step_runs_the_whole_rows(eager):
    ours, theirs = eager
    got = compare(ours, theirs, PROMPTS, MASK, max_new_tokens=4, use_cache=False)
    assert got.attentions[3][0].shape[2:] == (10, 10)


@pytest.mark.parametrize("kwargs", [dict(num_beams=2), dict(num_beams=3, num_return_sequences=2, use_cache=False),
                                    dict(num_beams=3, do_sample=False, length_penalty=0.5)])
def test_beam_search_gives_the_running_beams_of_each_step(eager, kwargs):
    ours, theirs = eager
    compare(ours, theirs, PROMPTS, MASK, max_new_tokens=6, **kwargs)


def test_beam_replay_asks_weights_of_one_position_a_step(eager, monkeypatch):
    """Rebuilding a step's running beams must not compute (positions x positions) weights for every step: only
    the step's own position gives outputs, as in the decoding."""
    ours, _ = eager
    run, queries = ours._run, []

    def recording_run(ids, *args, attentions=False, inputs_embeds=None, **kwargs):
        if attentions:
            queries.append((ids if ids is not None else inputs_embeds).shape[1])
        return run(ids, *args, attentions=attentions, inputs_embeds=inputs_embeds, **kwargs)

    monkeypatch.setattr(ours, "_run", recording_run)
    our_generate(ours, PROMPTS, MASK, max_new_tokens=5, num_beams=2, **OUTPUTS)
    assert queries == [PROMPTS.shape[1], 1, 1, 1, 1]


def test_beam_search_with_eos_ending_hypotheses(eager):
    """Finished hypotheses leave the running beams: each step's beams are none of the returned sequences'."""
    ours, theirs = eager
    free = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=6, num_beams=3)
    new = free[:, PROMPTS.shape[1]:]
    eos = [int(new[0, 1]), int(new[1, 2])]
    got = compare(ours, theirs, PROMPTS, MASK, max_new_tokens=8, num_beams=3, eos_token_id=eos, pad_token_id=1)
    assert np.isin(got.sequences[:, PROMPTS.shape[1]:], eos).any()


def hf_forward_replay(theirs, sequences, mask, prompt_length):
    """What each step of Transformers' generate computes, by its forward over the rows so far: the whole prompt,
    then the last position of each longer prefix, positions following the mask."""
    rows, total = sequences.shape
    full_mask = np.concatenate([mask, np.ones((rows, total - prompt_length), dtype=mask.dtype)], axis=1)
    positions = np.where(full_mask != 0, np.cumsum(full_mask, axis=1) - 1, 0)
    new = np.arange(1, total - prompt_length + 1)
    positions[:, prompt_length:] = positions[:, prompt_length - 1:prompt_length] + new
    attentions, hidden_states = [], []
    for length in range(prompt_length, total):
        with torch.no_grad():
            out = theirs(torch.as_tensor(sequences[:, :length]), attention_mask=torch.as_tensor(full_mask[:, :length]),
                         position_ids=torch.as_tensor(positions[:, :length]), output_attentions=True,
                         output_hidden_states=True)
        first = 0 if length == prompt_length else length - 1
        attentions.append(tuple(a[:, :, first:].numpy() for a in out.attentions))
        hidden_states.append(tuple(h[:, first:].numpy() for h in out.hidden_states))
    return attentions, hidden_states


def test_sampling_outputs_are_those_of_the_sampled_rows(eager):
    """Torch's random stream cannot be reproduced: the sampled rows' outputs are compared with Transformers'
    forward over them, and two runs with one seed agree."""
    ours, theirs = eager
    kwargs = dict(do_sample=True, top_k=20, max_new_tokens=5, num_return_sequences=2, seed=7, **OUTPUTS)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    again = our_generate(ours, PROMPTS, MASK, **kwargs)
    assert got.sequences.shape == (6, PROMPTS.shape[1] + 5)
    assert_steps_equal(got.attentions, again.attentions, "attentions", atol=0)
    attentions, hidden_states = hf_forward_replay(theirs, got.sequences, np.repeat(MASK, 2, axis=0), PROMPTS.shape[1])
    assert_steps_equal(got.attentions, attentions, "attentions")
    assert_steps_equal(got.hidden_states, hidden_states, "hidden_states")


def test_default_attention_gives_the_weights_where_transformers_sdpa_gives_none(checkpoint):
    """Transformers' SDPA returns an empty tuple per step; ours returns the weights (zero rows where a padding
    query sees no key, eager's elsewhere) and the same hidden states."""
    path = checkpoint(**PEAKED)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    sdpa, eager = hf_from_pretrained(path), hf_from_pretrained(path, attn_implementation="eager")
    expected = hf_generate(sdpa, PROMPTS, MASK, max_new_tokens=3, **OUTPUTS)
    assert expected["attentions"] == ((), (), ())
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, **OUTPUTS)
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")
    weights = hf_generate(eager, PROMPTS, MASK, max_new_tokens=3, **OUTPUTS)["attentions"]
    sees_a_key = MASK.astype(bool)[:, None, :, None]
    masked = tuple(tuple(np.where(sees_a_key, a, 0) for a in step) for step in weights[:1]) + weights[1:]
    assert_steps_equal(got.attentions, masked, "attentions")


def test_bfloat16_checkpoint(checkpoint):
    path = checkpoint(**PEAKED, dtype="bfloat16")
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    theirs = hf_from_pretrained(path, attn_implementation="eager")
    compare(ours, theirs, PROMPTS, MASK, max_new_tokens=4)


def prefix_caches(models, ids, mask, positions, cached):
    """(ours, Transformers') caches of the first `cached` tokens of ids at the given positions."""
    ours, theirs = models
    ours_cache = ours(ids[:, :cached], attention_mask=mask[:, :cached], position_ids=positions[:, :cached],
                      use_cache=True).cache
    with torch.no_grad():
        theirs_cache = theirs(torch.as_tensor(ids[:, :cached]), attention_mask=torch.as_tensor(mask[:, :cached]),
                              position_ids=torch.as_tensor(positions[:, :cached]), use_cache=True,
                              cache=transformers.DynamicCache(config=theirs.config)).past_key_values
    return ours_cache, theirs_cache


@pytest.mark.parametrize("num_beams", [1, 2])
def test_continuing_from_a_cache_replays_only_the_uncached_prompt(eager, num_beams):
    """With a cache passed in, step 0 covers the prompt positions the cache lacks, as Transformers' prefill (with
    eager attention a padding query there averages the cache's values: the replay must start from that cache)."""
    ours, theirs = eager
    cached = 4
    ids, mask = np.repeat(PROMPTS, num_beams, axis=0), np.repeat(MASK, num_beams, axis=0)  # a cache row per beam
    positions = np.where(mask != 0, np.cumsum(mask, axis=1) - 1, 0)
    ours_cache, theirs_cache = prefix_caches(eager, ids, mask, positions, cached)
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3, past_key_values=theirs_cache, num_beams=num_beams,
                           **OUTPUTS)
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, cache=ours_cache, num_beams=num_beams, **OUTPUTS)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert got.hidden_states[0][0].shape[1] == PROMPTS.shape[1] - cached
    assert_steps_equal(got.attentions, expected["attentions"], "attentions")
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")


# ---------------------------------------------------------------- position_ids

# shifted, repeated, negative and with the padding's own positions: any int64 the model rotates
GIVEN_POSITIONS = [np.arange(7) + 40, np.full(7, 3) - np.arange(7)[::-1] % 2, np.arange(7) - 3]


@pytest.mark.parametrize("kwargs", [{}, dict(num_beams=2), dict(num_beams=3, num_return_sequences=2),
                                    dict(do_sample=True, top_k=1)])
def test_position_ids_given_to_generate(eager, kwargs):
    """As Transformers: the prompt runs at the positions given, each row's new tokens count on from its last; the
    replayed attentions and hidden states too (they were refused with NotImplementedError)."""
    ours, theirs = eager
    positions = np.stack([GIVEN_POSITIONS[i % len(GIVEN_POSITIONS)] for i in range(len(PROMPTS))])
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4, position_ids=torch.as_tensor(positions),
                           **OUTPUTS, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=4, position_ids=positions, **OUTPUTS, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_steps_equal(got.attentions, expected["attentions"], "attentions")
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")
    plain = our_generate(ours, PROMPTS, MASK, max_new_tokens=4, **kwargs)
    assert not np.array_equal(our_generate(ours, PROMPTS, MASK, max_new_tokens=4, position_ids=positions, **kwargs),
                              plain)
    default = np.where(MASK != 0, np.cumsum(MASK, axis=1) - 1, 0)
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, max_new_tokens=4, position_ids=default, **kwargs),
                                  plain)


def test_position_ids_given_with_a_cache_cover_the_whole_prompt(eager):
    """Transformers takes the positions of the tokens the cache lacks from the whole prompt's."""
    ours, theirs = eager
    cached, positions = 4, np.tile(np.arange(7) * 2 + 1, (len(PROMPTS), 1))
    ours_cache, theirs_cache = prefix_caches(eager, PROMPTS, MASK, positions, cached)
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4, past_key_values=theirs_cache,
                           position_ids=torch.as_tensor(positions))
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=4, cache=ours_cache, position_ids=positions)
    np.testing.assert_array_equal(got, expected)


def test_position_ids_that_cannot_serve_are_refused(eager):
    ours, _ = eager
    with pytest.raises(ValueError, match=r"position_ids has shape \(3, 6\), expected \(3, 7\)"):
        ours.generate(PROMPTS, attention_mask=MASK, position_ids=np.zeros((3, 6), np.int64))
    with pytest.raises(TypeError, match="position_ids must hold integers"):
        ours.generate(PROMPTS, attention_mask=MASK, position_ids=np.zeros((3, 7)))
    with pytest.raises(ValueError, match="leaves no room for"):
        ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2,
                      position_ids=np.full((3, 7), np.iinfo(np.int64).max - 3))
    with pytest.raises(NotImplementedError, match="position_ids together with inputs_embeds"):
        ours.generate(inputs_embeds=ours.get_input_embeddings()(PROMPTS), position_ids=np.zeros((3, 7), np.int64))
    with pytest.raises(NotImplementedError, match="position_ids in assisted generation"):
        ours.generate(PROMPTS[:1], position_ids=np.arange(7)[None], prompt_lookup_num_tokens=2)


# ---------------------------------------------------------------- inputs_embeds


def embeddings(ours, theirs, ids):
    """The prompt's embeddings from either model (equal: one table)."""
    with torch.no_grad():
        return ours.get_input_embeddings()(ids), theirs.get_input_embeddings()(torch.as_tensor(ids))


def hf_generate_embeds(theirs, embeds, mask=None, **kwargs):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = theirs.generate(inputs_embeds=embeds, attention_mask=None if mask is None else torch.as_tensor(mask),
                              **kwargs)
    return as_numpy(out) if isinstance(out, torch.Tensor) else {key: as_numpy(value) for key, value in out.items()}


def test_inputs_embeds_return_only_the_new_tokens(eager):
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    expected = hf_generate_embeds(theirs, reference, MASK, max_new_tokens=5, return_dict_in_generate=True,
                                  output_scores=True)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, max_new_tokens=5, return_dict_in_generate=True,
                       output_scores=True)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert got.sequences.shape == (3, 5)
    np.testing.assert_array_equal(got.sequences, our_generate(ours, PROMPTS, MASK, max_new_tokens=5)[:, 7:])
    assert_steps_equal(tuple((s,) for s in got.scores), tuple((s,) for s in expected["scores"]), "scores")
    assert got.cache.get_seq_length() == expected["cache"].get_seq_length() == 7 + 5 - 1


@pytest.mark.parametrize("kwargs", [
    dict(max_new_tokens=4), dict(max_length=10), dict(), dict(max_new_tokens=6, repetition_penalty=5.0),
    dict(max_new_tokens=4, min_length=9, eos_token_id=24), dict(max_new_tokens=4, min_new_tokens=2, eos_token_id=24),
    dict(max_new_tokens=12, no_repeat_ngram_size=2), dict(max_new_tokens=3, begin_suppress_tokens=[24, 16]),
    dict(max_new_tokens=3, forced_bos_token_id=5), dict(max_new_tokens=3, forced_eos_token_id=5),
    dict(max_new_tokens=6, exponential_decay_length_penalty=(2, 3.0), eos_token_id=14),
    dict(max_new_tokens=3, encoder_repetition_penalty=3.0, encoder_no_repeat_ngram_size=1),
    dict(max_new_tokens=8, eos_token_id=81, pad_token_id=1),
])
def test_inputs_embeds_lengths_and_processors_count_only_the_new_tokens(eager, kwargs):
    """Transformers' input_ids are empty: lengths, min_length, forced and suppressed tokens, the penalties and
    n-grams see only the new tokens; an explicit max_length and min_length count the embeddings' positions."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS[1:])
    expected = hf_generate_embeds(theirs, reference, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ours.generate(inputs_embeds=mine, **kwargs)
    np.testing.assert_array_equal(got, expected)
    if "repetition_penalty" in kwargs or "encoder_repetition_penalty" in kwargs:
        assert any("inputs_embeds" in str(w.message) or "requires some form of `input_ids`" in str(w.message)
                   for w in caught)


def test_inputs_embeds_too_long_for_max_length(eager):
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS[1:])
    with pytest.raises(ValueError, match="Input length of input_ids is 0, but `max_length` is set to 0"):
        hf_generate_embeds(theirs, reference, max_length=7)
    with pytest.raises(ValueError, match="Input length of input_ids is 0, but `max_length` is set to 0"):
        our_generate(ours, None, inputs_embeds=mine, max_length=7)


@pytest.mark.parametrize("kwargs", [dict(num_beams=2), dict(num_beams=3, num_return_sequences=2, eos_token_id=[79, 81],
                                                            pad_token_id=1)])
def test_inputs_embeds_beam_search(eager, kwargs):
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    expected = hf_generate_embeds(theirs, reference, MASK, max_new_tokens=5, return_dict_in_generate=True,
                                  output_scores=True, **kwargs)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, max_new_tokens=5, return_dict_in_generate=True,
                       output_scores=True, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    np.testing.assert_array_equal(got.beam_indices, expected["beam_indices"])
    np.testing.assert_allclose(got.sequences_scores, expected["sequences_scores"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(), dict(num_beams=2), dict(eos_token_id=81, pad_token_id=1)])
def test_inputs_embeds_attentions_and_hidden_states(eager, kwargs):
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    expected = hf_generate_embeds(theirs, reference, MASK, max_new_tokens=5, **OUTPUTS, **kwargs)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, max_new_tokens=5, **OUTPUTS, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_steps_equal(got.attentions, expected["attentions"], "attentions")
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")


def test_inputs_embeds_with_input_ids_of_their_length(eager):
    """Both given: the embeddings run the prompt, the ids are what the processors see and the result starts with."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, (PROMPTS + 1) % ours.config.vocab_size)  # not the ids' own
    kwargs = dict(max_new_tokens=5, repetition_penalty=3.0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = theirs.generate(torch.as_tensor(PROMPTS), inputs_embeds=reference,
                                   attention_mask=torch.as_tensor(MASK), **kwargs).numpy()
    got = our_generate(ours, PROMPTS, MASK, inputs_embeds=mine, **kwargs)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, our_generate(ours, PROMPTS, MASK, **kwargs))
    # Transformers looks for right padding in 2-D inputs only: not in embeddings, even with input_ids
    right_padded = MASK.copy()
    right_padded[1, -1] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.generate(PROMPTS, attention_mask=right_padded, inputs_embeds=mine, max_new_tokens=2, pad_token_id=0,
                      eos_token_id=3)


class RecordIds(transformers.LogitsProcessor):
    """Keeps the input_ids it is given."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append(input_ids.clone().numpy())
        return scores


@pytest.mark.parametrize("ids_length, masked", [(3, True), (10, False), (10, True)],
                         ids=["fewer ids", "more ids", "more ids, masked"])
@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=4), dict(max_new_tokens=4, num_beams=2), dict(max_length=20),
                                    dict(min_length=12, max_new_tokens=5, eos_token_id=81),
                                    dict(max_new_tokens=3, do_sample=True, top_k=1),
                                    dict(max_new_tokens=3, **OUTPUTS), dict(max_new_tokens=3, num_beams=2, **OUTPUTS)],
                         ids=["greedy", "beams", "max_length", "min_length", "sampling", "outputs", "beam outputs"])
def test_inputs_embeds_with_input_ids_of_another_length(eager, ids_length, masked, kwargs):
    """As Transformers: the embeddings run the prompt, at the positions of the mask given (of the embeddings'
    length), else at the last of the ids' positions; the processors, lengths and result see the ids then the new
    tokens (an explicit max_length and min_length count the embeddings' positions too); the cache holds the
    embeddings' positions."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    ids = np.arange(1, 1 + 3 * ids_length).reshape(3, ids_length) % ours.config.vocab_size
    mask = MASK if masked else None
    settings = dict(dict(eos_token_id=None, return_dict_in_generate=True, output_scores=True), **kwargs)
    theirs_seen, ours_seen = RecordIds(), RecordIds()
    expected = hf_generate(theirs, ids, mask, inputs_embeds=reference, logits_processor=[theirs_seen], **settings)
    got = our_generate(ours, ids, mask, inputs_embeds=mine, logits_processor=[ours_seen], seed=0, **settings)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    np.testing.assert_array_equal(got.sequences[:, :ids_length], ids)
    assert_steps_equal(tuple((s,) for s in got.scores), tuple((s,) for s in expected["scores"]), "scores")
    assert len(ours_seen.seen) == len(theirs_seen.seen)
    for a, b in zip(ours_seen.seen, theirs_seen.seen):
        np.testing.assert_array_equal(a, b)
    assert got.cache.get_seq_length() == expected["cache"].get_seq_length() == 7 + len(got.scores) - 1
    # the keys hold the rotary embedding of the positions
    np.testing.assert_allclose(got.cache.layers[1].keys, expected["cache"].layers[1].keys.numpy(), atol=1e-4, rtol=0)
    if "output_attentions" in kwargs:
        assert_steps_equal(got.attentions, expected["attentions"], "attentions")
        assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")


def test_inputs_embeds_with_fewer_input_ids_and_no_mask(eager):
    """Transformers fails (RuntimeError: positions of the ids' length for the embeddings'); ours runs the embeddings
    at positions 0.. as with a mask of ones, and takes a mask of the ids' length that holds no padding as none.
    A mask that covers the ids, not the embeddings, with padding is refused: Transformers applies it to the
    embeddings' positions, which it does not cover."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    ids = PROMPTS[:, -3:] + 1
    kwargs = dict(max_new_tokens=4, eos_token_id=None)
    with pytest.raises(RuntimeError, match="must match the size"):
        hf_generate(theirs, ids, None, inputs_embeds=reference, **kwargs)
    expected = hf_generate(theirs, ids, np.ones((3, 7), dtype=np.int64), inputs_embeds=reference, **kwargs)
    np.testing.assert_array_equal(our_generate(ours, ids, None, inputs_embeds=mine, **kwargs), expected)
    np.testing.assert_array_equal(our_generate(ours, ids, np.ones((3, 3)), inputs_embeds=mine, **kwargs), expected)
    with pytest.raises(ValueError, match=r"runs the 7 positions of inputs_embeds \(input_ids hold 3\)"):
        our_generate(ours, ids, MASK[:, -3:], inputs_embeds=mine, **kwargs)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(3, 5\)"):
        our_generate(ours, ids, MASK[:, -5:], inputs_embeds=mine, **kwargs)
    with pytest.raises(ValueError, match="inputs_embeds hold 3 sequences, but input_ids 2"):
        our_generate(ours, ids[:2], None, inputs_embeds=mine, **kwargs)


def test_inputs_embeds_continuing_a_cache(eager):
    """As Transformers, the embeddings cover the whole prompt and those the cache holds are skipped."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    cached = 4
    positions = np.where(MASK != 0, np.cumsum(MASK, axis=1) - 1, 0)
    ours_cache = ours(inputs_embeds=mine[:, :cached], attention_mask=MASK[:, :cached],
                      position_ids=positions[:, :cached], use_cache=True).cache
    with torch.no_grad():
        theirs_cache = theirs(inputs_embeds=reference[:, :cached], attention_mask=torch.as_tensor(MASK[:, :cached]),
                              position_ids=torch.as_tensor(positions[:, :cached]), use_cache=True,
                              cache=transformers.DynamicCache(config=theirs.config)).past_key_values
    expected = hf_generate_embeds(theirs, reference, MASK, max_new_tokens=4, past_key_values=theirs_cache, **OUTPUTS)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, max_new_tokens=4, cache=ours_cache, **OUTPUTS)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert_steps_equal(got.attentions, expected["attentions"], "attentions")
    assert_steps_equal(got.hidden_states, expected["hidden_states"], "hidden_states")


def test_repetition_penalty_after_padded_embeddings_penalizes_every_new_token(eager):
    """Transformers skips as many new tokens as a row has left padding (its input_ids hold nothing else, yet it
    skips the prompt's padding length in them), sparing them the penalty; ours penalizes every new token, which is
    Transformers' processor without that skip."""
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, max_new_tokens=6, repetition_penalty=5.0)
    processor = transformers.RepetitionPenaltyLogitsProcessor(5.0)
    expected = hf_generate_embeds(theirs, reference, MASK, max_new_tokens=6,
                                  logits_processor=transformers.LogitsProcessorList([processor]))
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got, hf_generate_embeds(theirs, reference, MASK, max_new_tokens=6,
                                                      repetition_penalty=5.0))


def test_inputs_embeds_sampling_and_bad_shapes(eager):
    ours, theirs = eager
    mine, _ = embeddings(ours, theirs, PROMPTS)
    got = our_generate(ours, None, MASK, inputs_embeds=mine, do_sample=True, max_new_tokens=4, seed=3,
                       num_return_sequences=2)
    np.testing.assert_array_equal(got, our_generate(ours, None, MASK, inputs_embeds=mine, do_sample=True,
                                                    max_new_tokens=4, seed=3, num_return_sequences=2))
    assert got.shape == (6, 4)
    with pytest.raises(ValueError, match="inputs_embeds must have shape"):
        our_generate(ours, None, None, inputs_embeds=mine[..., :5], max_new_tokens=2)
    with pytest.raises(ValueError, match="attention_mask has shape"):
        our_generate(ours, None, MASK[:, :5], inputs_embeds=mine, max_new_tokens=2)


def test_inputs_embeds_of_a_huge_broadcast_batch_with_a_bad_mask_are_refused_before_copying(eager):
    ours, theirs = eager
    mine, _ = embeddings(ours, theirs, PROMPTS[:1])
    embeds = np.broadcast_to(mine, (2**16,) + mine.shape[1:])  # 115 MB declared
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="attention_mask has shape"):
            our_generate(ours, None, np.ones((2**16, 5), np.int64), inputs_embeds=embeds, max_new_tokens=2)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


class Recorder:
    """A streamer that keeps what it is given."""

    def __init__(self):
        self.puts = []

    def put(self, value):
        self.puts.append(np.asarray(value).tolist())

    def end(self):
        self.puts.append("end")


def test_inputs_embeds_stream_an_empty_prompt_then_the_new_tokens(eager):
    ours, theirs = eager
    mine, reference = embeddings(ours, theirs, PROMPTS[1:2])
    expected, got = Recorder(), Recorder()
    hf_generate_embeds(theirs, reference, max_new_tokens=3, streamer=expected)
    ours.generate(inputs_embeds=mine, max_new_tokens=3, streamer=got)
    assert got.puts == expected.puts and got.puts[0] == [[]]
    assert list(ours.generate_iter(inputs_embeds=mine, max_new_tokens=3)) == [t[0] for t in expected.puts[1:-1]]
