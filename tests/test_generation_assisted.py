"""Assisted generation (generation/assisted.py) against Transformers' assisted generate: prompt lookup and an
assistant model, token for token, and iteration for iteration (what the streamer receives at each one)."""
import copy
import warnings

import numpy as np
import pytest
import torch

import nemotron_c
from nemotron_c.generation.assisted import PromptLookupCandidates, speculative_sampling
from helpers.generation_reference import PEAKED, assert_scores_equal, hf_generate, our_generate
from helpers.transformers_reference import hf_from_pretrained

REPEATED = np.array([[5, 17, 33, 2, 40, 71, 9, 5, 17, 33, 2, 40, 71, 9, 5, 17, 33]])
DISTINCT = np.array([[3, 14, 15, 92, 65, 35, 89, 79]])


class Recorder:
    """A streamer that keeps what each put() received."""

    def __init__(self):
        self.puts = []

    def put(self, value):
        self.puts.append([int(t) for t in np.asarray(value).reshape(-1)])

    def end(self):
        self.puts.append("end")


@pytest.fixture(scope="module")
def models(checkpoint):
    path = checkpoint(**PEAKED)
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)


@pytest.fixture(scope="module")
def assistants(checkpoint):
    """A smaller checkpoint with the same vocabulary: one layer, other weights."""
    path = checkpoint(seed=1, num_hidden_layers=1, **PEAKED)
    return nemotron_c.AutoModelForCausalLM.from_pretrained(path), hf_from_pretrained(path)


@pytest.fixture(scope="module")
def looping(models):
    """Prompts the tiny random model continues as they repeat: its own greedy output, which falls into loops (the
    prompt REPEATED it does not continue). (40 tokens: candidates nearly always kept; 60: kept and refused.)"""
    out = hf_generate(models[1], REPEATED, max_new_tokens=60 - REPEATED.shape[1])
    return {40: out[:, :40], 60: out}


def both(models, ids, **kwargs):
    """(ours, Transformers') sequences and the puts of their streamers."""
    ours, theirs = models
    mine, reference = Recorder(), Recorder()
    got = our_generate(ours, ids, streamer=mine, **kwargs)
    expected = hf_generate(theirs, ids, streamer=reference, **{k: v for k, v in kwargs.items() if k != "seed"})
    return got, expected, mine.puts, reference.puts


@pytest.mark.parametrize("prompt, settings", [
    (40, dict(prompt_lookup_num_tokens=3)),
    (40, dict(prompt_lookup_num_tokens=10, max_matching_ngram_size=3, max_new_tokens=10)),  # the third run trimmed
    (60, dict(prompt_lookup_num_tokens=4, max_matching_ngram_size=1)),
    (60, dict(prompt_lookup_num_tokens=10, max_matching_ngram_size=3)),
    (None, dict(prompt_lookup_num_tokens=5, max_new_tokens=3)),  # no candidate is ever found
])
def test_prompt_lookup_greedy(models, looping, prompt, settings):
    settings = {"max_new_tokens": 24, **settings}
    ids = DISTINCT if prompt is None else looping[prompt]
    got, expected, puts, reference_puts = both(models, ids, **settings)
    np.testing.assert_array_equal(got, expected)
    assert puts == reference_puts  # the same candidates accepted at every iteration
    if prompt is None:
        assert all(len(p) == 1 for p in puts[1:-1])
    else:
        assert max(len(p) for p in puts[1:-1]) > 2, "few candidates were accepted: the test checks little"
    np.testing.assert_array_equal(got, our_generate(models[0], ids, max_new_tokens=settings["max_new_tokens"]))


@pytest.mark.parametrize("assisted", ["lookup", "assistant"])
def test_left_padded_prompt(models, looping, assisted):
    ids = np.concatenate([np.zeros((1, 3), np.int64), looping[60]], axis=1)
    mask = (np.arange(ids.shape[1]) >= 3).astype(np.int64)[None]
    puts, outputs = [], []
    for model, generate in zip(models, (our_generate, hf_generate)):
        recorder = Recorder()
        # the model as its own assistant: its drafts are all kept only where it reads the mask as the model does
        extra = {"prompt_lookup_num_tokens": 4} if assisted == "lookup" else {"assistant_model": model}
        model.generation_config.assistant_confidence_threshold = 0.0
        try:
            outputs.append(generate(model, ids, mask, max_new_tokens=16, streamer=recorder, **extra))
        finally:
            model.generation_config.assistant_confidence_threshold = None
        puts.append(recorder.puts)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    assert puts[0] == puts[1]
    if assisted == "assistant":
        assert len(puts[0]) == 3
    np.testing.assert_array_equal(outputs[0], our_generate(models[0], ids, mask, max_new_tokens=16))


def test_assistant_draft_stops_after_eos(models, looping):
    """The model as its own assistant drafts up to an eos, which is kept; the model's token after it is not."""
    ours, theirs = models
    ids = looping[60]
    free = our_generate(ours, ids, max_new_tokens=12)[0, ids.shape[1]:]
    eos = int(free[5])
    assert eos not in free[:5]
    puts = []
    for model in (ours, theirs):
        model.generation_config.assistant_confidence_threshold = 0.0
        recorder = Recorder()
        try:
            generate = our_generate if model is ours else hf_generate
            out = generate(model, ids, max_new_tokens=12, eos_token_id=eos, assistant_model=model, streamer=recorder)
        finally:
            model.generation_config.assistant_confidence_threshold = None
        puts.append(recorder.puts)
        np.testing.assert_array_equal(out[0, ids.shape[1]:], free[:6])
    assert puts[0] == puts[1] == [list(ids[0]), list(free[:6]), "end"]


@pytest.mark.parametrize("settings", [
    dict(repetition_penalty=1.3),
    dict(no_repeat_ngram_size=3),  # forbids the lookup's candidates: they are cut before the forbidden token
    dict(bad_words_ids=[[22, 74]], suppress_tokens=[81]),
    dict(min_new_tokens=6, eos_token_id=74),
])
def test_prompt_lookup_processors(models, looping, settings):
    got, expected, puts, reference_puts = both(models, looping[60], max_new_tokens=20, prompt_lookup_num_tokens=5,
                                               **settings)
    np.testing.assert_array_equal(got, expected)
    assert puts == reference_puts


def test_custom_processor_and_criteria(models, looping):
    class Ban:  # a custom processor: bans token 74 after token 22 once the row is long enough
        def __call__(self, input_ids, scores):
            scores = scores.clone()
            if input_ids.shape[1] > 66:
                scores[input_ids[:, -1] == 22, 74] = -float("inf")
            return scores

    class StopAt:
        def __call__(self, input_ids, scores, **kwargs):
            return input_ids.shape[1] >= 60 + 15

    got, expected, puts, reference_puts = both(models, looping[60], max_new_tokens=20, prompt_lookup_num_tokens=5,
                                               logits_processor=[Ban()], stopping_criteria=[StopAt()])
    np.testing.assert_array_equal(got, expected)
    assert puts == reference_puts


def test_a_processor_that_raises(models, looping):
    class Fails:
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] > 62:
                raise KeyError("from the processor")
            return scores

    with pytest.raises(KeyError, match="from the processor"):
        our_generate(models[0], looping[60], max_new_tokens=8, prompt_lookup_num_tokens=3, logits_processor=[Fails()])


def test_scores_and_logits(models, looping):
    ours, theirs = models
    kwargs = dict(max_new_tokens=16, prompt_lookup_num_tokens=4, return_dict_in_generate=True, output_scores=True,
                  output_logits=True, repetition_penalty=1.2)
    got = our_generate(ours, looping[40], **kwargs)
    expected = hf_generate(theirs, looping[40], **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert len(got.scores) == got.sequences.shape[1] - 40
    assert_scores_equal(got.scores, expected["scores"])
    assert_scores_equal(got.logits, expected["logits"], what="logits")
    assert got.cache.get_seq_length() == got.sequences.shape[1] - 1


@pytest.mark.parametrize("schedule, ensemble", [("constant", None), ("heuristic", None), ("constant", 0.3)])
def test_assistant_model_greedy(models, assistants, looping, schedule, ensemble):
    """assistant_ensemble_weight w keeps candidates that are the argmax of w p + (1 - w) q (not lossless)."""
    ours, theirs = models
    ids = looping[60]
    kwargs = dict(max_new_tokens=20, assistant_ensemble_weight=ensemble)
    settings = dict(num_assistant_tokens=4, num_assistant_tokens_schedule=schedule, assistant_confidence_threshold=0.3)
    ours_assistant, their_assistant = (copy.deepcopy(a) for a in assistants)
    for assistant in (ours_assistant, their_assistant):
        for key, value in settings.items():
            setattr(assistant.generation_config, key, value)
    mine, reference = Recorder(), Recorder()
    got = our_generate(ours, ids, assistant_model=ours_assistant, streamer=mine, **kwargs)
    expected = hf_generate(theirs, ids, assistant_model=their_assistant, streamer=reference, **kwargs)
    np.testing.assert_array_equal(got, expected)
    assert mine.puts == reference.puts
    assert (ours_assistant.generation_config.num_assistant_tokens
            == their_assistant.generation_config.num_assistant_tokens)
    plain = our_generate(ours, ids, max_new_tokens=20)
    assert np.array_equal(got, plain) == (ensemble is None)


@pytest.mark.parametrize("settings", [
    dict(threshold=0.0),  # the assistant drafts its 20 tokens, cut at max_new_tokens
    dict(threshold=0.6),  # it stops drafting below that probability of its own token
    dict(threshold=0.0, min_new_tokens=8, eos=3),  # it drafts no eos before the model's min_new_tokens
])
def test_model_as_its_own_assistant(models, looping, settings):
    """The model as its own assistant agrees with every draft: the drafts' lengths show in the streamer's puts."""
    ids = looping[60]
    free = our_generate(models[0], ids, max_new_tokens=12)[0, ids.shape[1]:]
    kwargs = dict(max_new_tokens=12)
    if "eos" in settings:
        kwargs.update(min_new_tokens=settings["min_new_tokens"], eos_token_id=int(free[settings["eos"]]))
    puts = []
    for model, generate in zip(models, (our_generate, hf_generate)):
        model.generation_config.assistant_confidence_threshold = settings["threshold"]
        recorder = Recorder()
        try:
            out = generate(model, ids, assistant_model=model, streamer=recorder, **kwargs)
        finally:
            model.generation_config.assistant_confidence_threshold = None
        puts.append(recorder.puts)
        np.testing.assert_array_equal(out, generate(model, ids, **kwargs))
    assert puts[0] == puts[1]
    if settings["threshold"] == 0.0:  # one draft, all of it kept
        assert [len(p) for p in puts[0][1:-1]] == [12] or "eos" in settings and len(puts[0]) == 3
    else:
        assert len(puts[0]) > 3


@pytest.mark.parametrize("use_assistant, top_p", [(False, 1.0), (False, 0.5), (True, 1.0)])
def test_sampling_with_top_k_1_is_deterministic_as_in_transformers(models, assistants, looping, use_assistant, top_p):
    """top_k=1 leaves one token to draw: speculative sampling and the lookup's draws then pick Transformers' tokens.
    top_p=0.5 cuts half of the lookup's logits of ones (in torch.sort's order of equal values): candidates among
    them are cut, as in Transformers."""
    kwargs = dict(max_new_tokens=16, do_sample=True, top_k=1, top_p=top_p, seed=3)
    if use_assistant:
        got = our_generate(models[0], looping[60], assistant_model=assistants[0], **kwargs)
        kwargs.pop("seed")
        expected = hf_generate(models[1], looping[60], assistant_model=assistants[1], **kwargs)
    else:
        got, expected, puts, reference_puts = both(models, looping[60], prompt_lookup_num_tokens=4, **kwargs)
        assert puts == reference_puts
    np.testing.assert_array_equal(got, expected)


def test_max_time_stops_after_the_first_pass(models, looping):
    got, expected, puts, reference_puts = both(models, looping[40], max_new_tokens=20, prompt_lookup_num_tokens=4,
                                               max_time=1e-9)
    np.testing.assert_array_equal(got, expected)
    assert puts == reference_puts and len(puts) == 3


def test_sampling_is_seeded(models, assistants):
    ours = models[0]
    for extra in (dict(prompt_lookup_num_tokens=4), dict(assistant_model=assistants[0])):
        a = our_generate(ours, REPEATED, max_new_tokens=12, do_sample=True, seed=7, **extra)
        b = our_generate(ours, REPEATED, max_new_tokens=12, do_sample=True, seed=7, **extra)
        np.testing.assert_array_equal(a, b)


def test_prompt_lookup_sampling_draws_from_the_model(models, looping):
    """Sampling with prompt lookup draws every position from the processed scores (and keeps the candidates equal to
    the draws): the first new token follows softmax(scores) whatever the candidates."""
    ours = models[0]
    ids = looping[40]
    kwargs = dict(max_new_tokens=3, do_sample=True, temperature=3.0, top_k=5, prompt_lookup_num_tokens=3)
    scores = our_generate(ours, ids, return_dict_in_generate=True, output_scores=True, seed=0, **kwargs).scores[0][0]
    p = np.exp(scores - scores.max())
    p /= p.sum()
    draws = 1500
    counts = np.bincount([our_generate(ours, ids, seed=seed, **kwargs)[0, ids.shape[1]] for seed in range(draws)],
                         minlength=p.size)
    assert 0.5 * np.abs(counts / draws - p).sum() < 0.06  # total variation; argmax would be about 1 - max(p)
    assert p.max() < 0.5


def test_speculative_sampling_keeps_the_model_distribution():
    """Algorithm 1 of the speculative decoding paper: whatever the assistant proposes, the first token kept is drawn
    from the model's distribution p; a candidate the model gives p = q is always accepted."""
    rng = np.random.default_rng(0)
    p = np.array([[0.5, 0.3, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    q = np.array([[0.1, 0.2, 0.6, 0.1]], dtype=np.float32)
    counts = np.zeros(4)
    draws = 20000
    for _ in range(draws):
        candidate = np.array([rng.choice(4, p=q[0])])
        kept, n = speculative_sampling(candidate, np.log(q), np.log(p), rng)
        counts[kept[0]] += 1
        assert n in (0, 1) and len(kept) == n + 1
    np.testing.assert_allclose(counts / draws, p[0], atol=0.015)
    kept, n = speculative_sampling(np.array([2]), np.log(p[:1]), np.log(p), rng)
    assert n == 1 and kept[0] == 2


def test_prompt_lookup_candidates():
    """Transformers' PromptLookupCandidateGenerator: the first earlier match of the longest n-gram, cut at eos."""
    lookup = PromptLookupCandidates([9], 3, 2, 100, lambda ids, scores: None, 16)
    ids = np.array([1, 2, 3, 4, 5, 2, 3, 7, 1, 2, 3])
    np.testing.assert_array_equal(lookup.get_candidates(ids)[0], [4, 5, 2])  # "2 3" first at 1, not at 5
    np.testing.assert_array_equal(lookup.get_candidates(np.array([4, 1, 9, 6, 5, 4]))[0], [1])  # cut before eos
    assert len(lookup.get_candidates(np.array([1, 2, 3]))[0]) == 0
    # the first match's candidates start with a token the processors forbid: the next match is taken
    banned = PromptLookupCandidates([9], 3, 2, 100, lambda ids, scores: scores.__setitem__((0, 3), -np.inf), 16)
    np.testing.assert_array_equal(banned.get_candidates(np.array([1, 2, 3, 7, 8, 1, 2, 4, 5, 1, 2]))[0], [4, 5, 1])
    np.testing.assert_array_equal(banned.get_candidates(np.array([1, 2, 4, 3, 5, 1, 2]))[0], [4])  # cut before 3
    # one token left to max_length: the model's own
    assert len(PromptLookupCandidates([9], 3, 2, 12, lambda ids, scores: None, 16).get_candidates(ids)[0]) == 0


def test_errors_as_transformers(models, assistants):
    ours, _ = models
    with pytest.raises(ValueError, match="only supported for batch_size = 1"):
        our_generate(ours, np.repeat(REPEATED, 2, axis=0), max_new_tokens=4, prompt_lookup_num_tokens=3)
    with pytest.raises(ValueError, match="num_return_sequences has to be 1 when doing assisted generate"):
        our_generate(ours, REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=3, do_sample=True,
                     num_return_sequences=2)
    with pytest.raises(RuntimeError, match="Assisted decoding requires a cache"):
        our_generate(ours, REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=3, use_cache=False)
    with pytest.raises(ValueError, match="Invalid max_matching_ngram_size or num_output_tokens"):
        our_generate(ours, REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=0)
    with pytest.raises(ValueError, match="not supported with prompt lookup decoding"):
        our_generate(ours, REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=3, assistant_ensemble_weight=0.5)
    with pytest.raises(ValueError, match="`assistant_tokenizer` is not required"):
        our_generate(ours, REPEATED, max_new_tokens=4, assistant_model=assistants[0], assistant_tokenizer=object())
    for name, value in (("assistant_early_exit", 1), ("use_mtp", True)):
        with pytest.raises(NotImplementedError, match=name):
            our_generate(ours, REPEATED, max_new_tokens=4, **{name: value})
    with pytest.raises(NotImplementedError, match="output_attentions"):
        our_generate(ours, REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=3, return_dict_in_generate=True,
                     output_attentions=True)
    with pytest.raises(NotImplementedError, match="generate_iter"):
        list(ours.generate_iter(REPEATED, max_new_tokens=4, prompt_lookup_num_tokens=3))


def test_assistant_with_another_vocabulary(models, checkpoint):
    other = nemotron_c.AutoModelForCausalLM.from_pretrained(checkpoint(num_hidden_layers=1, vocab_size=128))
    with pytest.raises(ValueError, match="The main and assistant models have different tokenizers"):
        our_generate(models[0], REPEATED, max_new_tokens=4, assistant_model=other)
    with pytest.raises(NotImplementedError, match="universal assisted decoding"):
        our_generate(models[0], REPEATED, max_new_tokens=4, assistant_model=other, tokenizer=object(),
                     assistant_tokenizer=object())
    # prompt lookup goes before an assistant, which Transformers checks all the same
    with pytest.raises(ValueError, match="The main and assistant models have different tokenizers"):
        our_generate(models[0], REPEATED, max_new_tokens=4, assistant_model=other, prompt_lookup_num_tokens=3)
    np.testing.assert_array_equal(
        our_generate(models[0], REPEATED, max_new_tokens=4, assistant_model=other, prompt_lookup_num_tokens=3,
                     tokenizer=object(), assistant_tokenizer=object()),
        our_generate(models[0], REPEATED, max_new_tokens=4))


def test_beams_ignore_prompt_lookup_with_a_warning(models):
    ours, theirs = models
    with pytest.warns(UserWarning, match="assisted generate is only supported with Greedy Search and Sample"):
        got = ours.generate(REPEATED, max_new_tokens=6, num_beams=2, prompt_lookup_num_tokens=3)
    np.testing.assert_array_equal(got, hf_generate(theirs, REPEATED, max_new_tokens=6, num_beams=2,
                                                   prompt_lookup_num_tokens=3))
