"""generate() with a caller's logits_processor, stopping_criteria and prefix_allowed_tokens_fn (the plug-in points of
constrained-decoding libraries) against Transformers: where in the processors they run, what they are given, and
what a misbehaving one raises."""
import contextvars
import os
import textwrap
import threading
import warnings

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.logits_process import (NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                                                     TemperatureLogitsWarper)
from transformers.generation.stopping_criteria import EosTokenCriteria, MaxLengthCriteria, MaxTimeCriteria

from helpers.interrupt import interrupt_child
from helpers.generation_reference import MASK, PROMPTS, assert_scores_equal, hf_generate, models, our_generate  # noqa: F401

DICT = dict(return_dict_in_generate=True, output_scores=True)
BANNED = [40, 12, 33, 5]


class BanTokens(LogitsProcessor):
    def __init__(self, tokens):
        self.tokens = tokens

    def __call__(self, input_ids, scores):
        assert isinstance(input_ids, torch.Tensor) and input_ids.dtype == torch.int64
        assert isinstance(scores, torch.Tensor) and scores.dtype == torch.float32
        scores = scores.clone()
        scores[:, self.tokens] = -float("inf")
        return scores


class ByLength(LogitsProcessor):
    """Pushes each row to token (length * 7) % 96: a processor that reads input_ids."""

    def __call__(self, input_ids, scores):
        boost = torch.zeros_like(scores)
        boost[:, (input_ids.shape[1] * 7) % scores.shape[1]] = 30.0
        if input_ids.shape[1] > 0:  # none at first after inputs_embeds
            boost[:, int(input_ids[0, -1]) % scores.shape[1]] += 1.5
        return scores + boost


class RecordScores(LogitsProcessor):
    """Keeps what it was given: the scores after every processor before it."""

    def __init__(self):
        self.seen = []

    def __call__(self, input_ids, scores):
        self.seen.append((input_ids.clone().numpy(), scores.clone().numpy()))
        return scores


class StopRow(StoppingCriteria):
    """Stops row `row` once it has `after` new tokens."""

    def __init__(self, row, length):
        self.row, self.length = row, length

    def __call__(self, input_ids, scores, **kwargs):
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        if input_ids.shape[1] >= self.length:
            done[self.row] = True
        return done


def compare(models, ids, mask, **kwargs):
    ours, theirs = models
    expected = hf_generate(theirs, ids, mask, **kwargs)
    got = our_generate(ours, ids, mask, **kwargs)
    if isinstance(expected, dict):
        if not kwargs.get("do_sample"):  # sampled tokens differ (torch's random stream): the scores are compared
            np.testing.assert_array_equal(got["sequences"], expected["sequences"])
        if expected.get("scores") is not None:
            assert_scores_equal(got["scores"], expected["scores"])
        if expected.get("sequences_scores") is not None:
            np.testing.assert_allclose(got["sequences_scores"], expected["sequences_scores"], atol=1e-4)
    else:
        np.testing.assert_array_equal(got, expected)
    return got


def processors(*items):
    return dict(logits_processor=LogitsProcessorList(list(items)))


@pytest.mark.parametrize("mode", [dict(), dict(num_beams=3), dict(num_beams=3, num_return_sequences=2)])
def test_processor_that_bans_tokens(models, mode):
    got = compare(models, PROMPTS, MASK, max_new_tokens=6, eos_token_id=None, **processors(BanTokens(BANNED)),
                  **DICT, **mode)
    assert not np.isin(got["sequences"][:, PROMPTS.shape[1]:], BANNED).any()


@pytest.mark.parametrize("mode", [dict(), dict(num_beams=2)])
def test_processor_that_reads_input_ids(models, mode):
    compare(models, PROMPTS, MASK, max_new_tokens=5, eos_token_id=None, repetition_penalty=1.3,
            **processors(ByLength()), **DICT, **mode)


def test_custom_processors_come_after_the_defaults_and_before_the_warpers(models):
    """Transformers puts them after begin_suppress_tokens and before temperature: the scores they see carry the
    penalty and suppression, not the temperature, and the temperature scales what they return."""
    ours, theirs = models
    settings = dict(max_new_tokens=1, do_sample=True, temperature=0.5, top_k=0, repetition_penalty=1.5,
                    suppress_tokens=[7, 8], eos_token_id=None)
    ours_seen, theirs_seen = RecordScores(), RecordScores()
    got = our_generate(ours, PROMPTS, MASK, **processors(ours_seen, BanTokens([3])), **settings, **DICT, seed=0)
    expected = hf_generate(theirs, PROMPTS, MASK, **processors(theirs_seen, BanTokens([3])), **settings, **DICT)
    assert_scores_equal(got["scores"], expected["scores"])
    np.testing.assert_array_equal(ours_seen.seen[0][0], theirs_seen.seen[0][0])
    assert_scores_equal([ours_seen.seen[0][1]], [theirs_seen.seen[0][1]])


def test_beam_processors_see_log_probabilities(models):
    ours, theirs = models
    ours_seen, theirs_seen = RecordScores(), RecordScores()
    compare((ours, theirs), PROMPTS[:2], MASK[:2], max_new_tokens=1, num_beams=2, eos_token_id=None)
    our_generate(ours, PROMPTS[:2], MASK[:2], max_new_tokens=3, num_beams=2, eos_token_id=None,
                 **processors(ours_seen))
    hf_generate(theirs, PROMPTS[:2], MASK[:2], max_new_tokens=3, num_beams=2, eos_token_id=None,
                **processors(theirs_seen))
    assert len(ours_seen.seen) == len(theirs_seen.seen) == 3
    for (our_ids, our_scores), (their_ids, their_scores) in zip(ours_seen.seen, theirs_seen.seen):
        np.testing.assert_array_equal(our_ids, their_ids)  # the running beams
        assert_scores_equal([our_scores], [their_scores])
    assert np.allclose(np.exp(ours_seen.seen[0][1]).sum(axis=1), 1.0, atol=1e-4)


def test_builtin_warper_passed_as_a_processor(models):
    """A TemperatureLogitsWarper given explicitly is a custom processor (warpers are not merged): it scales before
    the processors' ... and the config's temperature scales again."""
    compare(models, PROMPTS, MASK, max_new_tokens=1, do_sample=True, temperature=0.7, top_k=0, eos_token_id=None,
            **processors(TemperatureLogitsWarper(0.5)), **DICT)
    # without sampling too: Transformers applies it to greedy scores (no warper of the config then)
    compare(models, PROMPTS, MASK, max_new_tokens=3, eos_token_id=None, **processors(TemperatureLogitsWarper(0.5)),
            **DICT)


def test_custom_processor_of_a_default_type_takes_its_place(models):
    """Transformers (5.x) warns and uses the caller's processor in place of the one the config builds."""
    ours, theirs = models
    kwargs = dict(max_new_tokens=6, eos_token_id=None, repetition_penalty=1.2, no_repeat_ngram_size=2, **DICT)
    custom = processors(RepetitionPenaltyLogitsProcessor(3.0), NoRepeatNGramLogitsProcessor(3))
    with pytest.warns(UserWarning, match="will take precedence"):
        ours.generate(PROMPTS, attention_mask=MASK, **kwargs, **custom)
    compare(models, PROMPTS, MASK, **kwargs, **custom)
    # a type the config does not build is appended, where the others go
    compare(models, PROMPTS, MASK, max_new_tokens=4, eos_token_id=None, **DICT,
            **processors(RepetitionPenaltyLogitsProcessor(3.0)))


def test_numpy_results_are_accepted(models):
    def halve(input_ids, scores):
        return scores.numpy() / 2 + np.where(np.arange(scores.shape[1]) == 11, 50.0, 0.0).astype(np.float32)

    got = our_generate(models[0], PROMPTS, MASK, max_new_tokens=2, eos_token_id=None, logits_processor=[halve])
    assert (got[:, PROMPTS.shape[1]:] == 11).all()


# ---------------------------------------------------------------- stopping criteria


@pytest.mark.parametrize("mode", [dict(), dict(do_sample=True, top_k=1)])
def test_criterion_stops_one_row_early(models, mode):
    length = PROMPTS.shape[1] + 2
    got = compare(models, PROMPTS, MASK, max_new_tokens=6, eos_token_id=40, pad_token_id=0, **mode,
                  stopping_criteria=StoppingCriteriaList([StopRow(1, length)]), **DICT)["sequences"]
    assert (got[1, length:] == 0).all()


def test_criteria_stopping_every_row_end_generation(models):
    stop = StoppingCriteriaList([StopRow(0, 9), StopRow(1, 10), StopRow(2, 10)])
    got = compare(models, PROMPTS, MASK, max_new_tokens=8, eos_token_id=None, stopping_criteria=stop)
    assert got.shape[1] == 10
    # a criterion returning a plain bool, and one given the scores of every step so far
    calls = []

    def after_three(input_ids, scores, **kwargs):
        calls.append((input_ids.shape, None if scores is None else len(scores)))
        return input_ids.shape[1] >= PROMPTS.shape[1] + 3

    got = compare(models, PROMPTS, MASK, max_new_tokens=8, eos_token_id=None, stopping_criteria=[after_three], **DICT)
    assert got["sequences"].shape[1] == PROMPTS.shape[1] + 3
    ours_calls = calls[len(calls) // 2:]
    assert ours_calls == calls[:len(calls) // 2] == [((3, 8 + i), i + 1) for i in range(3)]


def test_max_length_criteria_passed_explicitly(models):
    compare(models, PROMPTS, MASK, max_new_tokens=8, eos_token_id=None,
            stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(max_length=PROMPTS.shape[1] + 3)]))
    # a longer one replaces the config's: Transformers goes on to it (its processors keep the config's max_length)
    got = compare(models, PROMPTS, MASK, max_new_tokens=3, eos_token_id=None, min_new_tokens=2, **DICT,
                  stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(max_length=PROMPTS.shape[1] + 6)]))
    assert got["sequences"].shape[1] == PROMPTS.shape[1] + 6
    # where Transformers' beam search fails (IndexError) it is refused
    for kwargs in (dict(num_beams=2), dict(num_beams=2, forced_eos_token_id=3, eos_token_id=40)):
        with pytest.raises(NotImplementedError, match="MaxLengthCriteria"):
            our_generate(models[0], PROMPTS, MASK, max_new_tokens=2, **kwargs,
                         stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(max_length=50)]))


@pytest.mark.parametrize("mode", [dict(eos_token_id=None), dict(eos_token_id=40, pad_token_id=0),
                                  dict(eos_token_id=3, pad_token_id=0), dict(do_sample=True, top_k=1),
                                  dict(num_beams=2, eos_token_id=[3, 40], pad_token_id=0),
                                  dict(num_beams=3, eos_token_id=3, early_stopping="never", pad_token_id=0)])
def test_longer_max_length_criteria_with_forced_eos(models, mode):
    """The forced eos comes at the config's max_length, then the rows go on to the criterion's (in beam search,
    where Transformers fails past the config's max_length, only forced ids that are eos ids, which end every beam
    there)."""
    got = compare(models, PROMPTS, MASK, max_new_tokens=3, forced_eos_token_id=3, **mode, **DICT,
                  stopping_criteria=StoppingCriteriaList([MaxLengthCriteria(max_length=PROMPTS.shape[1] + 6)]))
    assert (got["sequences"][:, PROMPTS.shape[1] + 2] == 3).all()


@pytest.mark.parametrize("mode", [dict(), dict(do_sample=True, top_k=1), dict(num_beams=2),
                                  dict(num_beams=3, num_return_sequences=2, early_stopping=True)])
@pytest.mark.parametrize("special", [dict(eos_token_id=22), dict(eos_token_id=22, pad_token_id=5),
                                     dict(eos_token_id=[22, 81], min_new_tokens=2),
                                     dict(eos_token_id=None, pad_token_id=5), dict(eos_token_id=None)])
def test_eos_token_criteria_of_other_ids(models, mode, special):
    """Transformers' EosTokenCriteria of ids other than the config's takes the default's place: rows (and beams)
    stop at its ids alone, not at the config's eos ids, which the processors (min_new_tokens) still read; finished
    rows get the pad token (the config's eos without one), even with no eos_token_id."""
    stop = StoppingCriteriaList([EosTokenCriteria(eos_token_id=[79, 3])])
    if special == dict(eos_token_id=None) and not mode.get("num_beams"):
        # Transformers fails (TypeError) padding with no pad_token_id; beam search needs none
        with pytest.raises(ValueError, match="set pad_token_id"):
            our_generate(models[0], PROMPTS, MASK, max_new_tokens=6, stopping_criteria=stop, **special, **mode)
        return
    got = compare(models, PROMPTS, MASK, max_new_tokens=6, stopping_criteria=stop, **special, **mode, **DICT)
    plain = our_generate(models[0], PROMPTS, MASK, max_new_tokens=6, **special, **mode)
    assert not np.array_equal(got["sequences"], plain)
    if not mode:
        assert got["sequences"].shape[1] == PROMPTS.shape[1] + 6  # one row has no 79: 22 stops nothing
        assert (got["sequences"][:, PROMPTS.shape[1]] == 22).any() or "min_new_tokens" in special


class StopAfterToken(StoppingCriteria):
    """Stops the rows whose last token is `token`: in beam search, a candidate ending in it finishes as one ending in
    eos does."""

    def __init__(self, token):
        self.token = token
        self.calls = []

    def __call__(self, input_ids, scores, **kwargs):
        self.calls.append((tuple(input_ids.shape), None if scores is None else len(scores)))
        return input_ids[:, -1] == self.token


@pytest.mark.parametrize("mode", [dict(num_beams=3), dict(num_beams=3, num_return_sequences=2, length_penalty=0.5),
                                  dict(num_beams=2, do_sample=True, top_k=1)])
def test_criteria_in_beam_search_see_the_candidates(models, mode):
    ours, theirs = models
    kwargs = dict(max_new_tokens=6, eos_token_id=40, **mode, **DICT)
    plain = our_generate(ours, PROMPTS, MASK, **kwargs)
    # a token some beam takes, so that the criterion changes the search
    token = int(plain["sequences"][0, PROMPTS.shape[1] + 1])
    our_criterion, their_criterion = StopAfterToken(token), StopAfterToken(token)
    got = our_generate(ours, PROMPTS, MASK, stopping_criteria=StoppingCriteriaList([our_criterion]), **kwargs)
    expected = hf_generate(theirs, PROMPTS, MASK, stopping_criteria=StoppingCriteriaList([their_criterion]),
                           **kwargs)
    if not mode.get("do_sample"):
        np.testing.assert_array_equal(got["sequences"], expected["sequences"])
        np.testing.assert_allclose(got["sequences_scores"], expected["sequences_scores"], atol=1e-4)
    assert_scores_equal(got["scores"], expected["scores"])
    assert our_criterion.calls == their_criterion.calls
    assert not np.array_equal(got["sequences"], plain["sequences"])


# ---------------------------------------------------------------- prefix_allowed_tokens_fn


def small_vocabulary(batch_id, input_ids):
    """Token (last + batch_id) % 5 + 10 .. + 13: depends on the row and its prefix."""
    assert isinstance(input_ids, torch.Tensor) and input_ids.dim() == 1
    base = (int(input_ids[-1]) + batch_id) % 5 + 10
    return [base, base + 1, base + 3]


@pytest.mark.parametrize("mode", [dict(), dict(num_beams=3), dict(num_beams=2, num_return_sequences=2),
                                  dict(do_sample=True, num_return_sequences=2, top_k=0)])
def test_prefix_allowed_tokens_fn(models, mode):
    kwargs = dict(max_new_tokens=5, eos_token_id=None, prefix_allowed_tokens_fn=small_vocabulary, **mode)
    if mode.get("do_sample"):  # sampled tokens differ: compare the first step's scores
        ours, theirs = models
        got = our_generate(ours, PROMPTS, MASK, **kwargs, **DICT, seed=0)
        expected = hf_generate(theirs, PROMPTS, MASK, **{**kwargs, "max_new_tokens": 1}, **DICT)
        assert_scores_equal(got["scores"][:1], expected["scores"])
        sequences = got["sequences"]
    else:
        sequences = compare(models, PROMPTS, MASK, **kwargs, **DICT)["sequences"]
    expand = max(mode.get("num_beams", 1), mode.get("num_return_sequences", 1))
    rows = sequences.shape[0] // PROMPTS.shape[0]
    for row in range(sequences.shape[0]):
        for t in range(PROMPTS.shape[1], sequences.shape[1]):
            assert sequences[row, t] in small_vocabulary(row // rows, torch.as_tensor(sequences[row, :t]))
    assert expand >= 1


def test_prefix_allowed_tokens_fn_before_forced_bos_and_unsatisfiable(models):
    """forced_bos comes after the prefix constraint (it wins at length 1); a constraint that leaves a prompt only
    -inf scores gets 0 on its allowed tokens."""
    one = np.array([[5], [9]])
    compare(models, one, None, max_new_tokens=3, eos_token_id=None, forced_bos_token_id=7,
            prefix_allowed_tokens_fn=small_vocabulary, **DICT)
    # bad words come before the constraint: every token it allows is -inf there
    got = compare(models, PROMPTS, MASK, max_new_tokens=3, eos_token_id=None, bad_words_ids=[[t] for t in range(10, 18)],
                  prefix_allowed_tokens_fn=small_vocabulary, **DICT)
    assert np.isfinite(got["scores"][0].max(axis=1)).all()


@pytest.mark.parametrize("allowed, error, match", [
    ([1.5, 2.0], TypeError, "prefix_allowed_tokens_fn returned float64 token ids for batch ID 0"),
    (np.array([3.0]), TypeError, "prefix_allowed_tokens_fn returned float64 token ids"),
    (None, TypeError, "prefix_allowed_tokens_fn returned NoneType for batch ID 0; it must return the allowed token"),
    (5, TypeError, "prefix_allowed_tokens_fn returned int for batch ID 0"),
    ({3, 4}, TypeError, "prefix_allowed_tokens_fn returned set for batch ID 0"),
    ([5, 96], IndexError, "prefix_allowed_tokens_fn returned token id 96 for batch ID 0, outside the vocabulary"),
    ([-97], IndexError, "prefix_allowed_tokens_fn returned token id -97 for batch ID 0, outside the vocabulary"),
], ids=["floats", "float_array", "none", "int", "set", "beyond", "below"])
def test_prefix_allowed_tokens_fn_returning_what_are_not_token_ids(models, allowed, error, match):
    """Transformers indexes its mask with what the function returns: floats there raise IndexError in torch (NumPy
    would truncate them), None and sets fail in len() or in indexing; each is named here."""
    with pytest.raises(error, match=match):
        models[0].generate(PROMPTS, attention_mask=MASK, max_new_tokens=2,
                           prefix_allowed_tokens_fn=lambda b, s: allowed)


def test_prefix_allowed_tokens_fn_negative_ids_count_from_the_end(models):
    """as torch indexing in Transformers' mask"""
    compare(models, PROMPTS, MASK, max_new_tokens=3, eos_token_id=None, prefix_allowed_tokens_fn=lambda b, s: [-1, 4],
            **DICT)


# ---------------------------------------------------------------- refusals


def test_processor_errors(models):
    ours = models[0]
    run = dict(max_new_tokens=2, eos_token_id=None)

    class Boom(Exception):
        pass

    def raises(input_ids, scores):
        raise Boom("from the processor")

    with pytest.raises(Boom, match="from the processor"):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[raises], **run)
    with pytest.raises(Boom):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[raises], num_beams=2, **run)
    with pytest.raises(ValueError, match="shape"):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[lambda i, s: s[:, :10]], **run)
    with pytest.raises(ValueError, match="finite or -inf"):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[lambda i, s: s * float("nan")], **run)
    with pytest.raises(TypeError, match="not scores"):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[lambda i, s: None], **run)
    with pytest.raises(TypeError, match="not callable"):
        ours.generate(PROMPTS, attention_mask=MASK, logits_processor=[3], **run)
    with pytest.raises(TypeError, match="not callable"):
        ours.generate(PROMPTS, attention_mask=MASK, stopping_criteria=["stop"], **run)
    with pytest.raises(TypeError, match="prefix_allowed_tokens_fn"):
        ours.generate(PROMPTS, attention_mask=MASK, prefix_allowed_tokens_fn=[1, 2], **run)
    with pytest.raises(ValueError, match="empty list for batch ID 0"):
        ours.generate(PROMPTS, attention_mask=MASK, prefix_allowed_tokens_fn=lambda b, s: [], **run)
    with pytest.raises(TypeError, match="bool tensor"):
        ours.generate(PROMPTS, attention_mask=MASK, stopping_criteria=[lambda i, s: torch.ones(2)], **run)
    # as Transformers' LogitsProcessorList: a __call__ taking more than (input_ids, scores) is given nothing more
    class WithOptions(LogitsProcessor):
        def __call__(self, input_ids, scores, **kwargs):
            return scores

    for model in models:
        with pytest.raises(ValueError, match="Make sure that all the required parameters"):
            model.generate(torch.as_tensor(PROMPTS), logits_processor=LogitsProcessorList([WithOptions()]), **run)
    # the model works after each
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, **run), our_generate(ours, PROMPTS, MASK, **run))


CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {root!r})
    import nemotron_c
    model = nemotron_c.AutoModelForCausalLM.from_pretrained({path!r}, num_threads=1)
    prompt = np.array([[9, 4, 61, 12, 8, 40, 71]])
    expected = model.generate(prompt, max_new_tokens=5)

    def slow(input_ids, scores):
        time.sleep(0.002)
        return scores

    print("ready", flush=True)
    start = time.time()
    try:
        model.generate(prompt, max_new_tokens=200000, eos_token_id=None, logits_processor=[slow],
                       prefix_allowed_tokens_fn=lambda batch_id, ids: list(range(50)), num_beams={num_beams})
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted %.3f" % (time.time() - start), flush=True)
    again = model.generate(prompt, max_new_tokens=5)
    print("usable" if (again == expected).all() else "broken", flush=True)
""")


@pytest.mark.parametrize("num_beams", [1, 2])
def test_ctrl_c_interrupts_generate_with_python_processors(checkpoint, num_beams):
    """The processors run on the loop's worker thread holding the GIL: SIGINT still stops generate() promptly."""
    path = checkpoint(scale=0.25)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    interrupt_child(CHILD.format(root=root, path=path, num_beams=num_beams))


def test_without_torch_the_callables_get_numpy_arrays(models, monkeypatch):
    """Where torch cannot be imported (here: made so), processors, prefix_allowed_tokens_fn and criteria get NumPy
    arrays; the tokens are those of the torch path."""
    import nemotron_c.generation.custom as custom

    ours, theirs = models
    kwargs = dict(max_new_tokens=5, eos_token_id=40, pad_token_id=0)
    expected = our_generate(ours, PROMPTS, MASK, logits_processor=[BanTokens(BANNED)], **kwargs,
                            prefix_allowed_tokens_fn=lambda b, ids: list(range(30, 60)),
                            stopping_criteria=[StopRow(2, 9)])
    seen = []

    def ban(input_ids, scores):
        seen.append((type(input_ids), input_ids.dtype, type(scores), scores.dtype))
        scores = scores.copy()
        scores[:, BANNED] = -np.inf
        return scores

    def allowed(batch_id, ids):
        seen.append((type(ids), ids.dtype))
        return list(range(30, 60))

    def stop(input_ids, scores):
        seen.append((type(input_ids), input_ids.dtype))
        done = np.zeros(input_ids.shape[0], dtype=bool)
        done[2] = input_ids.shape[1] >= 9
        return done

    monkeypatch.setattr(custom, "torch_module", lambda: None)
    got = our_generate(ours, PROMPTS, MASK, logits_processor=[ban], prefix_allowed_tokens_fn=allowed,
                       stopping_criteria=[stop], **kwargs)
    np.testing.assert_array_equal(got, expected)
    int64, float32 = np.dtype(np.int64), np.dtype(np.float32)
    assert set(seen) == {(np.ndarray, int64, np.ndarray, float32), (np.ndarray, int64)}


@pytest.mark.parametrize("mode", [dict(), dict(num_beams=2)])
def test_with_inputs_embeds_the_callables_see_only_the_new_tokens(models, mode):
    """Transformers' input_ids are then empty at first: processors, prefix_allowed_tokens_fn and criteria see the new
    tokens alone."""
    ours, theirs = models
    ids = PROMPTS[1:]
    with torch.no_grad():
        mine, reference = ours.get_input_embeddings()(ids), theirs.get_input_embeddings()(torch.as_tensor(ids))
    seen = {"ours": [], "theirs": []}

    def kwargs(who):
        def allowed(batch_id, sent):
            seen[who].append(tuple(sent.tolist()))
            return list(range(20, 70))

        return dict(max_new_tokens=5, eos_token_id=None, logits_processor=[ByLength()], **mode,
                    prefix_allowed_tokens_fn=allowed, stopping_criteria=[StopRow(0, 3)], **DICT)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            expected = theirs.generate(inputs_embeds=reference, **kwargs("theirs"))
        got = ours.generate(inputs_embeds=mine, **kwargs("ours"))
    np.testing.assert_array_equal(got["sequences"], expected["sequences"].numpy())
    assert_scores_equal(got["scores"], [s.numpy() for s in expected["scores"]])
    assert seen["ours"] == seen["theirs"] and seen["ours"][0] == ()


def test_a_criterion_raising_in_beam_search_propagates(models):
    class Boom(Exception):
        pass

    def raises(input_ids, scores):
        raise Boom("from the criterion")

    with pytest.raises(Boom, match="from the criterion"):
        models[0].generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, num_beams=2, stopping_criteria=[raises])
    with pytest.raises(TypeError, match="bool tensor"):
        models[0].generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, num_beams=2,
                           stopping_criteria=[lambda i, s: torch.ones(1, 2)])


@pytest.mark.parametrize("criterion", [MaxLengthCriteria(10), MaxTimeCriteria(100.0), EosTokenCriteria(40)],
                         ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("mode", [dict(), dict(num_beams=3), dict(num_beams=2, early_stopping="never")])
def test_builtin_criteria_passed_explicitly(models, criterion, mode):
    """Transformers' own criteria of the types generate() builds take the defaults' place (with its warning)."""
    compare(models, PROMPTS, MASK, max_new_tokens=6, eos_token_id=40, max_time=50.0, **mode, **DICT,
            stopping_criteria=StoppingCriteriaList([criterion]))
    with pytest.warns(UserWarning, match="will take precedence"):
        models[0].generate(PROMPTS, attention_mask=MASK, max_new_tokens=6, eos_token_id=40, max_time=50.0, **mode,
                           stopping_criteria=StoppingCriteriaList([criterion]))


def byte_level_tokenizer():
    """A byte-level tokenizer over the tiny checkpoints' 96 ids: specials, letters, a space and some word pieces."""
    from helpers.tokenizer_builders import byte_level_tokenizer as build

    return build(["<unk>", "<s>", "</s>", "<pad>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] +
                 ["Ġ", "st", "op", "Ġthe", "ing", "er", "Ġst", "ed", "Ġa", "on", "Ġto", "es", "en", "Ġand", "at", "or"])


@pytest.mark.parametrize("mode", [dict(num_beams=3), dict(num_beams=2, num_return_sequences=2)])
def test_stop_strings_in_beam_search(models, mode):
    """Transformers' StopStringCriteria sees beam search's candidates as any criterion: one ending in a stop string
    finishes as one ending in eos. The string is the text of a token the search takes unstopped."""
    ours, theirs = models
    tokenizer = byte_level_tokenizer()
    plain = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=6, **mode)
    text = tokenizer.decode([int(plain[0, PROMPTS.shape[1] + 1])])
    assert text.strip()
    kwargs = dict(max_new_tokens=6, stop_strings=[text.strip()], tokenizer=tokenizer, **mode, **DICT)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got["sequences"], expected["sequences"])
    np.testing.assert_allclose(got["sequences_scores"], expected["sequences_scores"], atol=1e-4)
    assert not np.array_equal(got["sequences"], plain)
    # with a criterion of the caller's too
    kwargs["stopping_criteria"] = StoppingCriteriaList([StopAfterToken(int(plain[1, PROMPTS.shape[1]]))])
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, **kwargs)["sequences"],
                                  hf_generate(theirs, PROMPTS, MASK, **kwargs)["sequences"])


def test_generate_iter_takes_them_too(models):
    ours = models[0]
    kwargs = dict(max_new_tokens=8, eos_token_id=None, logits_processor=[BanTokens(BANNED)],
                  prefix_allowed_tokens_fn=small_vocabulary, stopping_criteria=[StopRow(0, PROMPTS.shape[1] + 5)])
    expected = our_generate(ours, PROMPTS[1:2], None, **kwargs)
    assert list(ours.generate_iter(PROMPTS[1:2], **kwargs)) == expected[0, PROMPTS.shape[1]:].tolist()
    assert expected.shape[1] == PROMPTS.shape[1] + 5
    # an EosTokenCriteria of other ids: the config's eos (the first token here) ends nothing
    kwargs = dict(max_new_tokens=6, eos_token_id=24, stopping_criteria=[EosTokenCriteria(eos_token_id=3)])
    expected = our_generate(ours, PROMPTS[1:2], None, **kwargs)
    assert expected[0, PROMPTS.shape[1]] == 24 and expected.shape[1] == PROMPTS.shape[1] + 6
    assert list(ours.generate_iter(PROMPTS[1:2], **kwargs)) == expected[0, PROMPTS.shape[1]:].tolist()


@pytest.mark.parametrize("num_beams", [1, 2])
def test_processors_and_criteria_run_on_the_callers_thread(models, num_beams):
    """As Transformers calls them: on the thread that called generate(), with its thread-locals, context variables
    and NumPy error state (they ran on a thread of the core's, which saw none of them)."""
    ours, _ = models
    local, request = threading.local(), contextvars.ContextVar("request", default=None)
    seen = []

    def where():
        seen.append((threading.current_thread(), getattr(local, "user", None), request.get(), np.geterr()["over"]))

    def processor(input_ids, scores):
        where()
        return scores

    def criterion(input_ids, scores):
        where()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    def call():
        local.user = "alice"
        request.set("req-42")
        with np.errstate(over="raise"):
            ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=3, num_beams=num_beams,
                          logits_processor=[processor], stopping_criteria=[criterion])

    caller = threading.Thread(target=call)
    caller.start()
    caller.join()
    assert seen and all(s == (caller, "alice", "req-42", "raise") for s in seen), seen[:2]
