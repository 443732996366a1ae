"""Corners of GenerationConfig and generate() found by comparing with Transformers 5.24 case by case."""
import json
import os
import warnings

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.generation_reference import MASK, PROMPTS, hf_generate, models, our_generate  # noqa: F401


def public(config):
    return {k: v for k, v in config.to_dict().items() if k != "transformers_version" and not k.startswith("_")}


def saved(directory):
    with open(os.path.join(directory, "generation_config.json"), encoding="utf-8") as f:
        data = json.load(f)
    data.pop("transformers_version")
    return data


PUBLISHED_WITH_ISSUES = {"temperature": 0.6, "top_p": 0.9, "length_penalty": 2.0, "bos_token_id": 1, "eos_token_id": 3}


def test_a_loaded_config_with_minor_issues_saves_back_as_transformers(tmp_path):
    """Transformers only warns when saving a config unchanged since it was loaded (a published one with temperature
    but no do_sample); changed, it refuses it."""
    (tmp_path / "generation_config.json").write_text(json.dumps(PUBLISHED_WITH_ISSUES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = nemotron_c.GenerationConfig.from_pretrained(str(tmp_path))
        theirs = transformers.GenerationConfig.from_pretrained(str(tmp_path))
        ours.save_pretrained(str(tmp_path / "ours"))
        theirs.save_pretrained(str(tmp_path / "theirs"))
    assert saved(tmp_path / "ours") == saved(tmp_path / "theirs") == PUBLISHED_WITH_ISSUES
    for config in (ours, theirs):
        config.temperature = 0.7
        with pytest.raises(ValueError, match="Fix these issues to save the configuration") as error:
            config.save_pretrained(str(tmp_path / "changed"))
        assert "`temperature`" in str(error.value)


def test_a_model_with_such_a_generation_config_saves_back(checkpoint, tmp_path):
    path = checkpoint(scale=0.25)
    copy = tmp_path / "published"
    copy.mkdir()
    for name in os.listdir(path):
        if name != "generation_config.json":
            os.symlink(os.path.join(path, name), copy / name)
    (copy / "generation_config.json").write_text(json.dumps(PUBLISHED_WITH_ISSUES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nemotron_c.AutoModelForCausalLM.from_pretrained(str(copy)).save_pretrained(str(tmp_path / "ours"))
        transformers.NemotronForCausalLM.from_pretrained(str(copy)).save_pretrained(str(tmp_path / "theirs"))
    assert saved(tmp_path / "ours") == saved(tmp_path / "theirs")


def test_from_model_config_is_a_loaded_config_too(tmp_path):
    model_config = {"bos_token_id": 1, "temperature": 0.5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nemotron_c.GenerationConfig.from_model_config(model_config).save_pretrained(str(tmp_path / "ours"))
        transformers.GenerationConfig.from_model_config(model_config).save_pretrained(str(tmp_path / "theirs"))
    assert saved(tmp_path / "ours") == saved(tmp_path / "theirs")


@pytest.mark.parametrize("name", ["mamba", "foo", "paged", "hybrid_chunked", "quantized"])
def test_cache_implementations_are_transformers(name):
    outcomes = []
    for cls in (nemotron_c.GenerationConfig, transformers.GenerationConfig):
        try:
            cls(cache_implementation=name)
            outcomes.append("ok")
        except ValueError as error:
            outcomes.append(str(error))
    assert outcomes[0] == outcomes[1]


def test_legacy_force_bos_token_to_be_generated_in_a_model_config():
    model_config = {"bos_token_id": 5, "force_bos_token_to_be_generated": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = nemotron_c.GenerationConfig.from_model_config(model_config)
        theirs = transformers.GenerationConfig.from_model_config(model_config)
    assert ours.forced_bos_token_id == theirs.forced_bos_token_id == 5
    assert public(ours) == public(theirs)


def test_max_cache_len_without_a_static_cache_warns():
    with pytest.warns(UserWarning, match="`max_cache_len` is only used with static caches"):
        nemotron_c.GenerationConfig(max_cache_len=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nemotron_c.GenerationConfig(max_cache_len=64, cache_implementation="static")


@pytest.mark.parametrize("cache_implementation", ["hybrid", "static", "sliding_window", "hybrid_chunked"])
@pytest.mark.parametrize("num_beams", [1, 2])
def test_cache_implementations_transformers_generates_with(models, cache_implementation, num_beams):
    """A static cache holds the keys and values a dynamic one does ("hybrid" becomes a dynamic cache)."""
    ours, theirs = models
    kwargs = dict(max_new_tokens=4, num_beams=num_beams, cache_implementation=cache_implementation)
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, **kwargs), hf_generate(theirs, PROMPTS, MASK, **kwargs))


def test_offloaded_caches_generate_as_a_dynamic_one(models):
    # Transformers' offloaded caches need CUDA (an AssertionError on a CPU-only torch); their tokens are the
    # dynamic cache's wherever they run
    ours, theirs = models
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4)
    for name in ("offloaded", "offloaded_static", "offloaded_hybrid_chunked"):
        np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, max_new_tokens=4, cache_implementation=name),
                                      expected)
    for name in ("quantized", "paged"):  # other numbers (quantized keys and values), continuous batching
        with pytest.raises(NotImplementedError, match=name):
            our_generate(ours, PROMPTS, MASK, max_new_tokens=4, cache_implementation=name)


def test_a_generation_config_with_generation_kwargs_warns(models):
    ours, _ = models
    with pytest.warns(UserWarning, match=r"Passing `generation_config` together with generation-related arguments"):
        ours.generate(PROMPTS, attention_mask=MASK, generation_config=nemotron_c.GenerationConfig(max_new_tokens=2),
                      num_beams=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.generate(PROMPTS, attention_mask=MASK, generation_config=nemotron_c.GenerationConfig(max_new_tokens=2))
        ours.generate(PROMPTS, attention_mask=MASK, max_new_tokens=2, num_beams=2)


class LoggedWarnings:
    """Transformers' logged warnings during a block (logger.warning_once's cache cleared first)."""

    def __enter__(self):
        import logging

        self.messages = []
        self.logger = transformers.utils.logging.get_logger("transformers")
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.messages.append(record.getMessage())
        transformers.utils.logging.warning_once.cache_clear()
        self.verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_warning()
        self.logger.addHandler(self.handler)
        return self.messages

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        transformers.logging.set_verbosity(self.verbosity)


PADDING_WARNINGS = ("The attention mask and the pad token id were not set", "cannot be inferred from input because pad "
                    "token is same as eos token", "right-padding was detected", "should consist of positive integers")


@pytest.mark.parametrize("ids, mask, kwargs", [
    ([[2, 2, 5, 17], [9, 4, 61, 12]], None, dict(pad_token_id=2, eos_token_id=2)),
    ([[2, 2, 5, 17], [9, 4, 61, 12]], None, dict(pad_token_id=None, eos_token_id=[2, 7])),
    ([[5, 17, 2, 2], [9, 4, 61, 12]], None, dict(pad_token_id=2, eos_token_id=2)),  # right padding, mask not inferred
    ([[5, 17, 2, 2], [9, 4, 61, 12]], None, dict(pad_token_id=2, eos_token_id=3)),
    ([[5, 17, 2, 2], [9, 4, 61, 12]], [[1, 1, 1, 1], [1, 1, 1, 1]], dict(pad_token_id=2, eos_token_id=2)),
    ([[5, 17, 33, 2]], None, dict(pad_token_id=2, eos_token_id=2)),
    ([[5, 17, 33, 2], [9, 4, 61, 12]], None, dict(pad_token_id=1, eos_token_id=-1)),
])
def test_padding_and_special_token_warnings_as_transformers(models, ids, mask, kwargs):
    ours, theirs = models
    ids = np.array(ids)
    mask = None if mask is None else np.array(mask)
    with LoggedWarnings() as logged:
        expected = hf_generate(theirs, ids, mask, max_new_tokens=3, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ours.generate(ids, attention_mask=mask, max_new_tokens=3, **kwargs)
    np.testing.assert_array_equal(got, expected)
    theirs_warned = [w for w in PADDING_WARNINGS if any(w in message for message in logged)]
    ours_warned = [w for w in PADDING_WARNINGS if any(w in str(c.message) for c in caught)]
    assert ours_warned == theirs_warned


def both_configs(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nemotron_c.GenerationConfig(**kwargs), transformers.GenerationConfig(**kwargs)


def outcome(make):
    try:
        return make().to_json_string(ignore_metadata=True)
    except (TypeError, ValueError) as error:
        return type(error).__name__, str(error)


def test_sequence_bias_with_tuple_keys_serialises_as_transformers(tmp_path):
    """Transformers writes the tuple keys as strings; json.dumps refused them (repr, ==, save_pretrained failed)."""
    ours, theirs = both_configs(sequence_bias={(1, 2): 0.5, (3,): -1.0}, eos_token_id=[3, 4])
    assert ours.to_json_string() == theirs.to_json_string()
    assert repr(ours).split(" ", 1)[1] == repr(theirs).split(" ", 1)[1]
    assert ours == nemotron_c.GenerationConfig(sequence_bias={(1, 2): 0.5, (3,): -1.0}, eos_token_id=[3, 4])
    ours.save_pretrained(str(tmp_path / "ours"))
    theirs.save_pretrained(str(tmp_path / "theirs"))
    assert saved(tmp_path / "ours") == saved(tmp_path / "theirs")


def test_to_json_file_and_dtype_as_transformers(tmp_path):
    ours, theirs = both_configs(top_k=3, dtype=torch.float16)
    assert ours.to_dict()["dtype"] == theirs.to_dict()["dtype"] == "float16"
    for config, name in ((ours, "ours.json"), (theirs, "theirs.json")):
        config.to_json_file(str(tmp_path / name))
    assert (tmp_path / "ours.json").read_text() == (tmp_path / "theirs.json").read_text()
    for config, name in ((ours, "ours_full.json"), (theirs, "theirs_full.json")):
        config.to_json_file(str(tmp_path / name), use_diff=False)
    assert (tmp_path / "ours_full.json").read_text() == (tmp_path / "theirs_full.json").read_text()


@pytest.mark.parametrize("kwargs", [
    dict(compile_config={"fullgraph": True}),
    dict(watermarking_config={"greenlist_ratio": 0.5}),
    dict(watermarking_config={"greenlist_ratio": 2.0}),
    dict(watermarking_config={"context_width": 0}),
    dict(watermarking_config={"seeding_scheme": "other"}),
    dict(watermarking_config={"unknown": 1}),
])
def test_compile_and_watermarking_configs_as_transformers(kwargs):
    def make(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cls(**kwargs)

    assert outcome(lambda: make(nemotron_c.GenerationConfig)) == outcome(lambda: make(transformers.GenerationConfig))


def test_generation_mode_with_an_assistant_model():
    for kwargs in (dict(), dict(do_sample=True), dict(num_beams=2)):
        ours, theirs = both_configs(**kwargs)
        assert ours.get_generation_mode(assistant_model=object()) == theirs.get_generation_mode(assistant_model=object())


LENGTH_WARNINGS = ("Both `max_new_tokens`", "Both `min_new_tokens`", "Using the model-agnostic default `max_length`",
                   "Unfeasible length constraints: `min_length`", "Unfeasible length constraints: `min_new_tokens`")


@pytest.mark.parametrize("kwargs", [
    dict(max_new_tokens=3, max_length=30),
    dict(max_new_tokens=3, min_new_tokens=2, min_length=4, eos_token_id=22),
    dict(max_new_tokens=3, min_new_tokens=5, eos_token_id=22),
    dict(max_length=10, min_length=12, eos_token_id=22),
    dict(min_length=40, eos_token_id=22),
    dict(max_new_tokens=3, generation_config=dict(max_length=30)),
    dict(max_new_tokens=3, min_new_tokens=1, generation_config=dict(min_length=2)),
])
def test_length_settings_and_their_warnings_as_transformers(models, kwargs):
    ours, theirs = models
    kwargs = dict(kwargs)
    settings = kwargs.pop("generation_config", None)
    our_config = theirs_config = None
    if settings is not None:
        our_config, theirs_config = both_configs(**settings)
    with LoggedWarnings() as logged, warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        with torch.no_grad():
            expected = theirs.generate(torch.as_tensor(PROMPTS), attention_mask=torch.as_tensor(MASK),
                                       generation_config=theirs_config, **kwargs).numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ours.generate(PROMPTS, attention_mask=MASK, generation_config=our_config, **kwargs)
    np.testing.assert_array_equal(got, expected)
    theirs_said = logged + [str(w.message) for w in raised]
    assert ([w for w in LENGTH_WARNINGS if any(w in str(c.message) for c in caught)]
            == [w for w in LENGTH_WARNINGS if any(w in message for message in theirs_said)])


@pytest.mark.parametrize("num_beams", [1, 2])
@pytest.mark.parametrize("use_cache", [True, False])
def test_the_returned_cache_follows_use_cache(models, num_beams, use_cache):
    ours, theirs = models
    kwargs = dict(max_new_tokens=3, num_beams=num_beams, use_cache=use_cache, return_dict_in_generate=True)
    expected = hf_generate(theirs, PROMPTS, MASK, **kwargs)
    got = our_generate(ours, PROMPTS, MASK, **kwargs)
    np.testing.assert_array_equal(got.sequences, expected["sequences"])
    assert list(got.keys()) == list(expected.keys())
    if use_cache:
        assert got.cache.get_seq_length() == expected["cache"].get_seq_length()


@pytest.mark.parametrize("value", [torch.tensor(0), np.int64(0), np.array(0), torch.tensor([0])])
def test_pad_token_id_as_a_tensor_or_array(models, value):
    ours, theirs = models
    ids = np.array([[0, 0, 5, 17, 33], [9, 4, 61, 12, 8]])
    expected = hf_generate(theirs, ids, max_new_tokens=3, pad_token_id=value, eos_token_id=22)
    got = our_generate(ours, ids, max_new_tokens=3, pad_token_id=value, eos_token_id=22)
    np.testing.assert_array_equal(got, expected)


def test_a_float_tensor_for_a_token_id_is_named(models):
    ours, _ = models
    with pytest.raises(TypeError, match="`pad_token_id` must be an integer"):
        ours.generate(PROMPTS, max_new_tokens=2, pad_token_id=torch.tensor(0.5))


def test_from_dict_drops_transformers_telemetry_flags_and_warns_once():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = nemotron_c.GenerationConfig.from_dict({"top_k": 3}, _from_auto=True, _from_pipeline="text-generation")
    theirs = transformers.GenerationConfig.from_dict({"top_k": 3}, _from_auto=True, _from_pipeline="text-generation")
    assert ours.to_json_string(use_diff=False) == theirs.to_json_string(use_diff=False)
    assert sorted(vars(ours)) == sorted(vars(theirs))
    assert len([w for w in caught if "generation flags are not valid" in str(w.message)]) == 1


@pytest.mark.parametrize("kwargs", [
    dict(temperature=0.5, top_p=0.9),
    dict(pad_token_id=-1),
    dict(use_cache=False, cache_implementation="static"),
    dict(use_cache=False, cache_config={"backend": "quanto"}),
    dict(num_beams=1, length_penalty=2.0, early_stopping=True),
    dict(output_scores=True, output_logits=True),
    dict(suppress_tokens=[3, 4], forced_eos_token_id=[3, 4]),
    dict(suppress_tokens=[3, 4], forced_bos_token_id=4),
    dict(assistant_ensemble_weight=1.5),
    dict(num_return_sequences=3, num_beams=2),
    dict(num_return_sequences=2),
    dict(max_new_tokens=0),
    dict(do_sample=True, temperature=0.5, num_beams=2, length_penalty=0.5),
])
def test_strict_validation_says_what_transformers_says(kwargs):
    def strict(cls):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cls(**kwargs).validate(strict=True)
                return "valid"
            except ValueError as error:
                return str(error)

    assert strict(nemotron_c.GenerationConfig) == strict(transformers.GenerationConfig)


def test_one_prompt_as_a_list_or_a_1d_array(models):
    """Transformers fails on both (IndexError for a 1-D tensor, AttributeError for a list): ours reads them as one
    prompt, the tokens of the (1, T) batch."""
    ours, theirs = models
    expected = hf_generate(theirs, np.array([[5, 17, 33]]), max_new_tokens=3)
    for prompt in ([5, 17, 33], np.array([5, 17, 33]), [[5, 17, 33]]):
        np.testing.assert_array_equal(our_generate(ours, prompt, max_new_tokens=3), expected)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0)])
def test_empty_input_ids_are_a_clear_error(models, shape):
    """Transformers fails in its attention with a RuntimeError about reshaping 0 elements."""
    ours, _ = models
    with pytest.raises(ValueError, match="input_ids is empty"):
        ours.generate(np.zeros(shape, dtype=np.int64), max_new_tokens=2)


def test_a_streamer_with_beam_sampling_is_refused(models):
    """Transformers only refuses it with beam search: with beam sampling its streamer gets the prompt and then no
    token and no end(), so a TextIteratorStreamer's reader would wait forever."""
    ours, theirs = models

    class Recorder:
        def __init__(self):
            self.calls = []

        def put(self, value):
            self.calls.append("put")

        def end(self):
            self.calls.append("end")

    recorder = Recorder()
    with torch.no_grad():
        theirs.generate(torch.as_tensor(PROMPTS[:1]), max_new_tokens=3, num_beams=2, do_sample=True, streamer=recorder)
    assert recorder.calls == ["put"]
    for do_sample in (False, True):
        with pytest.raises(ValueError, match="`streamer` cannot be used with beam search"):
            ours.generate(PROMPTS[:1], max_new_tokens=3, num_beams=2, do_sample=do_sample, streamer=Recorder())


def test_loss_and_router_arguments_change_no_token(models):
    ours, theirs = models
    kwargs = dict(labels=PROMPTS, num_items_in_batch=5, output_router_logits=True, max_new_tokens=3)
    expected = hf_generate(theirs, PROMPTS, MASK, **{**kwargs, "labels": torch.as_tensor(PROMPTS)})
    np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, **kwargs), expected)
    np.testing.assert_array_equal(expected, hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3))


def test_score_is_transformers_loss(models):
    """model.score's mean log-probability is minus Transformers' causal LM loss: per sequence, and over a padded batch
    with the padding's labels at -100, the token-weighted mean."""
    ours, theirs = models
    ids = np.array([[5, 17, 33, 2, 9, 14], [9, 4, 61, 12, 8, 40], [0, 0, 0, 88, 7, 12]])
    mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]])
    scores = ours.score(ids, attention_mask=mask)
    for row in range(2):
        with torch.no_grad():
            loss = theirs(torch.as_tensor(ids[row:row + 1]), labels=torch.as_tensor(ids[row:row + 1])).loss.item()
        np.testing.assert_allclose(-scores.mean_logprob[row], loss, rtol=1e-5)
    with torch.no_grad():
        loss = theirs(torch.as_tensor(ids[2:, 3:]), labels=torch.as_tensor(ids[2:, 3:])).loss.item()
    np.testing.assert_allclose(-scores.mean_logprob[2], loss, rtol=1e-5)
    labels = np.where(mask[:2] == 1, ids[:2], -100)
    with torch.no_grad():
        loss = theirs(torch.as_tensor(ids[:2]), labels=torch.as_tensor(labels)).loss.item()
    np.testing.assert_allclose(-scores.sum_logprob[:2].sum() / scores.num_tokens[:2].sum(), loss, rtol=1e-5)


def test_without_input_ids_the_attention_mask_gives_the_batch(models):
    ours, theirs = models
    with torch.no_grad():
        expected = theirs.generate(attention_mask=torch.ones((2, 1), dtype=torch.long), max_new_tokens=3).numpy()
    np.testing.assert_array_equal(ours.generate(attention_mask=np.ones((2, 1), dtype=np.int64), max_new_tokens=3),
                                  expected)
    np.testing.assert_array_equal(ours.generate(max_new_tokens=3), expected[:1])


def test_async_text_iterator_streamer_as_transformers(models):
    """Transformers' AsyncTextIteratorStreamer: the same pieces, read with `async for` while generate() runs in a
    thread, for their generate and ours; a reader that waits past the timeout gets TimeoutError."""
    import asyncio
    import threading

    from helpers.tokenizer_builders import byte_level_tokenizer
    from test_generation_streaming import VOCAB

    from nemotron_c.generation.streamers import AsyncTextIteratorStreamer

    tokenizer = byte_level_tokenizer(VOCAB)
    ours, theirs = models

    async def pieces(streamer_class, generate, prompt):
        streamer = streamer_class(tokenizer, skip_prompt=True, timeout=30)
        worker = threading.Thread(target=generate, args=(prompt,), kwargs=dict(max_new_tokens=10, streamer=streamer))
        worker.start()
        got = [text async for text in streamer]
        worker.join()
        return got

    def hf_run(prompt, **kwargs):
        with torch.no_grad():
            theirs.generate(prompt, **kwargs)

    expected = asyncio.run(pieces(transformers.AsyncTextIteratorStreamer, hf_run, torch.as_tensor(PROMPTS[1:2])))
    assert asyncio.run(pieces(AsyncTextIteratorStreamer, ours.generate, PROMPTS[1:2])) == expected
    assert "".join(expected).strip()

    async def wait_for_nothing():
        streamer = AsyncTextIteratorStreamer(tokenizer, timeout=0.05)
        return [text async for text in streamer]

    with pytest.raises(TimeoutError):
        asyncio.run(wait_for_nothing())


def test_stop_string_with_the_space_a_decoder_strips_at_the_start(models):
    """A sentencepiece-style decoder strips the space of a leading "▁": Transformers matches the tokens' own strings
    (decoded after a static prefix), so the prompt "▁" and the new token "a" end in " a"."""
    from tokenizers import Tokenizer, decoders, models as token_models, normalizers

    ours, theirs = models
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6, "▁b": 7, "c": 8, "d": 9, "e": 10,
             "f": 11}
    vocab.update({f"x{i}": i for i in range(len(vocab), 96)})
    core = Tokenizer(token_models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                                     unk_token="<unk>")
    prompt = np.array([[3]])
    kwargs = dict(max_new_tokens=5, stop_strings=[" a"], tokenizer=tokenizer, sequence_bias={(4,): 50.0})
    expected = hf_generate(theirs, prompt, None, **kwargs)
    assert expected.shape == (1, 2)
    np.testing.assert_array_equal(our_generate(ours, prompt, None, **kwargs), expected)


def test_continuous_batching_config_is_deprecated_as_in_transformers():
    for cls in (nemotron_c.GenerationConfig, transformers.GenerationConfig):
        with pytest.warns(FutureWarning, match="Passing ContinuousBatchingConfig through GenerationConfig is deprecated"):
            cls(continuous_batching_config={"max_batch_tokens": 8})


def test_a_saved_sequence_bias_generates_again(models, tmp_path):
    """to_json_string writes sequence_bias's tuple keys as "(5, 79)"; Transformers' generate refuses its own saved
    file (a ValueError: keys must be tuples). Ours reads them back as the tuples they were."""
    ours, theirs = models
    bias = {(22,): -50.0, (5, 79): 3.0}
    transformers.GenerationConfig(sequence_bias=bias).save_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="has to be a dict with tuples as keys"):
        hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4,
                    generation_config=transformers.GenerationConfig.from_pretrained(str(tmp_path)))
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=4, sequence_bias=bias)
    got = our_generate(ours, PROMPTS, MASK, max_new_tokens=4,
                       generation_config=nemotron_c.GenerationConfig.from_pretrained(str(tmp_path)))
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="has to be a dict with tuples as keys"):
        our_generate(ours, PROMPTS, MASK, max_new_tokens=2, sequence_bias={"22": -5.0})


@pytest.mark.parametrize("num_beams", [1, 2])
def test_empty_eos_lists(models, num_beams):
    ours, theirs = models
    # an empty eos_token_id is no eos token: Transformers' greedy search takes it so with a pad_token_id, and fails
    # taking its first id (IndexError) without one, or in beam search
    expected = hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3, num_beams=num_beams, eos_token_id=None, pad_token_id=0)
    if num_beams == 1:
        np.testing.assert_array_equal(expected, hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3, eos_token_id=[],
                                                            pad_token_id=0))
    for pad in (0, None):
        got = our_generate(ours, PROMPTS, MASK, max_new_tokens=3, num_beams=num_beams, eos_token_id=[], pad_token_id=pad)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="has to be a list of positive integers"):
        hf_generate(theirs, PROMPTS, MASK, max_new_tokens=3, num_beams=num_beams, forced_eos_token_id=[])
    with pytest.raises(ValueError, match="has to be a list of positive integers"):
        our_generate(ours, PROMPTS, MASK, max_new_tokens=3, num_beams=num_beams, forced_eos_token_id=[])


def test_save_pretrained_takes_transformers_arguments(tmp_path):
    ours, theirs = both_configs(top_k=3, do_sample=True)
    ours.save_pretrained(str(tmp_path / "ours"), push_to_hub=False)
    theirs.save_pretrained(str(tmp_path / "theirs"), push_to_hub=False)
    assert saved(tmp_path / "ours") == saved(tmp_path / "theirs")
    with pytest.raises(NotImplementedError, match="push_to_hub"):
        ours.save_pretrained(str(tmp_path / "hub"), push_to_hub=True, repo_id="someone/model")
