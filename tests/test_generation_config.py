"""GenerationConfig and generate()'s bad-input behaviour, each against what Transformers does."""
import json
import os
import re
import warnings

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from helpers.generation_reference import MASK, PROMPTS, hf_generate, models, our_generate  # noqa: F401


def public(config):
    return {k: v for k, v in config.to_dict().items() if k != "transformers_version" and not k.startswith("_")}


def test_fields_and_defaults_match_transformers():
    ours, theirs = nemotron_c.GenerationConfig(), transformers.GenerationConfig()
    assert public(ours) == {k: v for k, v in public(theirs).items()}
    assert nemotron_c.generation.configuration.default_generation_params() == theirs._get_default_generation_params()
    assert ours.max_length is None and ours.do_sample is None  # v5: unset until generate() applies defaults


def test_from_model_config_and_checkpoint(models, checkpoint, tmp_path):
    ours, theirs = models
    assert public(ours.generation_config) == public(theirs.generation_config)
    # a checkpoint's generation_config.json wins over the model config
    path = checkpoint(scale=0.25)
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for name in os.listdir(path):
        os.symlink(os.path.join(path, name), copy / name)
    os.unlink(copy / "generation_config.json")
    (copy / "generation_config.json").write_text(json.dumps({"max_new_tokens": 3, "eos_token_id": [3, 7],
                                                             "do_sample": False, "num_beams": 2}))
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(str(copy))
    reference = transformers.NemotronForCausalLM.from_pretrained(str(copy))
    assert public(model.generation_config) == public(reference.generation_config)
    np.testing.assert_array_equal(our_generate(model, PROMPTS, MASK), hf_generate(reference, PROMPTS, MASK))
    # kwargs override it; a passed generation_config too
    np.testing.assert_array_equal(our_generate(model, PROMPTS, MASK, num_beams=1, max_new_tokens=5),
                                  hf_generate(reference, PROMPTS, MASK, num_beams=1, max_new_tokens=5))
    config = nemotron_c.GenerationConfig(max_new_tokens=4)
    np.testing.assert_array_equal(
        our_generate(model, PROMPTS, MASK, generation_config=config),
        hf_generate(reference, PROMPTS, MASK, generation_config=transformers.GenerationConfig(max_new_tokens=4)))
    # model.generation_config is the default that generate() reads
    model.generation_config.max_new_tokens = 2
    assert our_generate(model, PROMPTS, MASK, num_beams=1).shape == (3, 9)


def test_round_trip_and_update():
    config = nemotron_c.GenerationConfig(do_sample=True, top_k=7, custom_key=1)
    assert config.custom_key == 1
    unused = config.update(top_p=0.5, not_a_field=3)
    assert config.top_p == 0.5 and unused == {"not_a_field": 3}
    assert nemotron_c.GenerationConfig.from_dict(config.to_dict()) == config


def outcome(fn):
    """('raise', type) or ('ok', sorted warning-message heads) of calling fn."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - the exception type is what we compare
            return "raise", type(e), str(e)
    return "ok", None, [str(w.message) for w in caught]


BAD_INPUTS = [
    ("max_new_tokens=0", dict(max_new_tokens=0), "`max_new_tokens` must be greater than 0"),
    ("max_new_tokens<0", dict(max_new_tokens=-3), "`max_new_tokens` must be greater than 0"),
    ("max_length below prompt", dict(max_length=5), "Input length of input_ids is 7"),
    ("max_length equal to prompt", dict(max_length=7), "Input length of input_ids is 7"),
    ("top_p < 0", dict(do_sample=True, top_p=-0.5, max_new_tokens=2), "`top_p` has to be a float > 0 and < 1"),
    ("negative top_k", dict(do_sample=True, top_k=-1, max_new_tokens=2), "`top_k` has to be a strictly positive"),
    ("float top_k", dict(do_sample=True, top_k=5.0, max_new_tokens=2), "`top_k` has to be a strictly positive"),
    ("temperature 0", dict(do_sample=True, temperature=0.0, max_new_tokens=2), "set `do_sample=False`"),
    ("temperature < 0", dict(do_sample=True, temperature=-1.0, max_new_tokens=2), "strictly positive float"),
    ("int temperature", dict(do_sample=True, temperature=2, max_new_tokens=2), "strictly positive float"),
    ("num_return_sequences > num_beams", dict(num_beams=2, num_return_sequences=3, max_new_tokens=2),
     "has to be smaller or equal to `num_beams`"),
    ("num_return_sequences greedy", dict(num_return_sequences=2, max_new_tokens=2), "Greedy methods"),
    ("repetition_penalty 0", dict(repetition_penalty=0.0, max_new_tokens=2), "`penalty` has to be a strictly"),
    ("min_p > 1", dict(do_sample=True, min_p=1.5, max_new_tokens=2), "`min_p` has to be a float in the [0, 1]"),
    ("typical_p 0", dict(do_sample=True, typical_p=0.0, max_new_tokens=2), "`typical_p` has to be a float > 0"),
    ("early_stopping", dict(early_stopping="x", max_new_tokens=2), "`early_stopping` must be a boolean or 'never'"),
    ("bad word out of vocab", dict(bad_words_ids=[[1000]], max_new_tokens=2), "vocabulary size is 96"),
    ("bad words empty", dict(bad_words_ids=[], max_new_tokens=2), "has to be a non-empty list"),
    ("bad words flat", dict(bad_words_ids=[3], max_new_tokens=2), "has to be a list of lists"),
    ("stop strings without tokenizer", dict(stop_strings="a", max_new_tokens=2), "could not locate a tokenizer"),
    ("typo", dict(max_new_tokenz=2), "not used by the model"),
    ("sequence bias empty", dict(sequence_bias=[], max_new_tokens=2), "has to be a non-empty dictionary"),
    ("sequence bias int value", dict(sequence_bias=[[[3], 1]], max_new_tokens=2), "Each element in `sequence_bias`"),
    ("sequence bias dict keys", dict(sequence_bias={3: 1.0}, max_new_tokens=2), "dict with tuples as keys"),
    ("sequence bias out of vocab", dict(sequence_bias={(3, 500): 1.0}, max_new_tokens=2), "vocabulary size is 96"),
    ("negative forced eos", dict(forced_eos_token_id=-1, max_new_tokens=2), "`eos_token_id` has to be a list of"),
    # Transformers' own checks name these (we raised a TypeError of ours first)
    ("top_k string", dict(do_sample=True, top_k="5", max_new_tokens=2), "`top_k` has to be a strictly positive integer"),
    ("temperature string", dict(do_sample=True, temperature="0.5", max_new_tokens=2), "`temperature` (=0.5) has to be"),
    ("repetition_penalty list", dict(repetition_penalty=[1.2], max_new_tokens=2), "`penalty` has to be a strictly"),
    ("min_new_tokens whole float", dict(min_new_tokens=1.0, max_new_tokens=2), "`min_length` has to be a non-negative"),
    ("encoder penalty int", dict(encoder_repetition_penalty=2, max_new_tokens=2), "`penalty` has to be a strictly"),
    ("encoder penalty negative", dict(encoder_repetition_penalty=-1.0, max_new_tokens=2), "`penalty` has to be"),
    ("encoder ngram float", dict(encoder_no_repeat_ngram_size=2.5, max_new_tokens=2),
     "`encoder_ngram_size` has to be a strictly positive integer"),
    ("streamer with beams", dict(num_beams=2, streamer=object(), max_new_tokens=2), "cannot be used with beam"),
]


@pytest.mark.parametrize("name,kwargs,message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_as_transformers(models, name, kwargs, message):
    ours, theirs = models
    kind, theirs_type, theirs_message = outcome(lambda: theirs.generate(torch.as_tensor(PROMPTS[1:2]), **kwargs))
    assert kind == "raise" and message in theirs_message
    with pytest.raises(theirs_type) as raised:
        ours.generate(PROMPTS[1:2], **kwargs)
    assert message in str(raised.value)


@pytest.mark.parametrize("kwargs", [dict(max_new_tokens=3.0), dict(max_length=12.0), dict(num_return_sequences=1.0),
                                    dict(max_new_tokens=3, pad_token_id=2.0)])
def test_whole_floats_for_lengths_and_ids_generate_as_transformers(models, kwargs):
    """Transformers (torch) takes 3.0 where it wants 3; we raised a TypeError."""
    ours, theirs = models
    np.testing.assert_array_equal(ours.generate(PROMPTS[1:2], **kwargs),
                                  theirs.generate(torch.as_tensor(PROMPTS[1:2]), **kwargs).numpy())


UNNAMED_IN_TRANSFORMERS = [
    (dict(do_sample=True, top_p="0.9"), "`top_p` must be a number"),
    (dict(do_sample=True, min_p=[0.1]), "`min_p` must be a number"),
    (dict(num_beams=2, length_penalty="1"), "`length_penalty` must be a number"),
    (dict(max_time="10"), "`max_time` must be a number"),
    (dict(no_repeat_ngram_size="2"), "`no_repeat_ngram_size` must be a number"),
    (dict(exponential_decay_length_penalty=-1), "`exponential_decay_length_penalty` must be a pair"),
    (dict(early_stopping=[1], num_beams=2), "`early_stopping` must be a boolean or 'never'"),
    (dict(eos_token_id="x"), "`eos_token_id` must be"),
    (dict(suppress_tokens="x"), "`suppress_tokens` must be"),
    (dict(suppress_tokens=-1), "`suppress_tokens` must be a list of token ids, got -1"),
    # torch.tensor fails on these with "Overflow when unpacking long"; numpy's int64 cast did too, nameless
    (dict(eos_token_id=2**64), "`eos_token_id` holds 18446744073709551616, which does not fit a 64-bit integer"),
    (dict(eos_token_id=np.uint64(2**63)), "`eos_token_id` holds 9223372036854775808, which does not fit"),
    (dict(suppress_tokens=[3, 2**64]), "`suppress_tokens` holds 18446744073709551616"),
    (dict(begin_suppress_tokens=[-(2**70)]), "`begin_suppress_tokens` holds -1180591620717411303424"),
    (dict(forced_eos_token_id=[2**64]), "`forced_eos_token_id` holds 18446744073709551616"),
]


@pytest.mark.parametrize("kwargs,message", UNNAMED_IN_TRANSFORMERS,
                         ids=[message.split("`")[1] for _, message in UNNAMED_IN_TRANSFORMERS])
def test_settings_of_the_wrong_type_are_named(models, kwargs, message):
    """Transformers fails on these comparing or converting them ("'<' not supported between instances of 'str'
    and 'float'", "unhashable type: 'list'", "cannot unpack non-iterable int object"...), without naming the
    setting; we raise a TypeError (a ValueError for early_stopping, as for its other bad values) naming it."""
    ours, theirs = models
    assert outcome(lambda: theirs.generate(torch.as_tensor(PROMPTS[1:2]), max_new_tokens=2, **kwargs))[0] == "raise"
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        ours.generate(PROMPTS[1:2], max_new_tokens=2, **kwargs)


def test_length_penalty_none_is_the_default(models):
    # Transformers: "unsupported operand type(s) for ** or pow(): 'int' and 'NoneType'"
    ours, _ = models
    np.testing.assert_array_equal(ours.generate(PROMPTS[1:2], num_beams=2, max_new_tokens=3, length_penalty=None),
                                  ours.generate(PROMPTS[1:2], num_beams=2, max_new_tokens=3))


ACCEPTED = [
    ("top_p 0 is accepted", dict(do_sample=True, top_p=0.0, max_new_tokens=2)),
    ("top_p > 1 is off", dict(do_sample=True, top_p=1.5, max_new_tokens=2)),
    ("top_k 0 is off", dict(do_sample=True, top_k=0, max_new_tokens=2)),
    ("epsilon and eta 1 are off", dict(do_sample=True, epsilon_cutoff=1.0, eta_cutoff=1.0, max_new_tokens=2)),
    ("sampling flags without sampling", dict(top_k=-1, temperature=0.0, top_p=2.0, max_new_tokens=2)),
    ("eos beyond the vocabulary", dict(eos_token_id=1000, max_new_tokens=2)),
    ("eos list beyond the vocabulary", dict(eos_token_id=[3, 1000], num_beams=2, max_new_tokens=2)),
    ("negative eos", dict(eos_token_id=-1, max_new_tokens=2)),
    ("min lengths above max", dict(min_length=30, min_new_tokens=40, max_new_tokens=2)),
    ("suppress beyond the vocabulary", dict(suppress_tokens=[1000], max_new_tokens=2)),
    ("bad words of the end token only", dict(bad_words_ids=[[3], []], eos_token_id=3, max_new_tokens=2)),
]


@pytest.mark.parametrize("name,kwargs", ACCEPTED, ids=[case[0] for case in ACCEPTED])
def test_inputs_transformers_accepts(models, name, kwargs):
    ours, theirs = models
    expected = hf_generate(theirs, PROMPTS[1:2], None, **kwargs)
    kind, _, messages = outcome(lambda: ours.generate(PROMPTS[1:2], seed=0, **kwargs))
    assert kind == "ok", messages
    if not kwargs.get("do_sample"):
        np.testing.assert_array_equal(ours.generate(PROMPTS[1:2], **kwargs), expected)
    if name.startswith("eos"):
        assert any("outside the vocabulary" in m for m in messages)
    if name == "negative eos":
        assert any("should consist of positive integers" in m for m in messages)
    if name == "min lengths above max":
        assert sum("Unfeasible length constraints" in m for m in messages) == 2
    if name == "sampling flags without sampling":
        assert any("generation flags are not valid and may be ignored" in m for m in messages)


@pytest.mark.parametrize("num_beams", [0, -1, 1.5])
def test_bad_num_beams_is_a_clear_value_error(models, num_beams):
    """Transformers fails with ZeroDivisionError / RuntimeError / TypeError here; we say what is wrong."""
    ours, theirs = models
    assert outcome(lambda: theirs.generate(torch.as_tensor(PROMPTS[1:2]), num_beams=num_beams,
                                           max_new_tokens=2))[0] == "raise"
    with pytest.raises(ValueError, match="`num_beams` has to be a positive integer"):
        ours.generate(PROMPTS[1:2], num_beams=num_beams, max_new_tokens=2)


def test_unsupported_features_say_so(models):
    ours, _ = models
    cases = [(dict(guidance_scale=1.5), "`guidance_scale=1.5` is not supported"),
             (dict(penalty_alpha=0.6, top_k=4), "generation mode 'contrastive_search' is not supported"),
             (dict(num_beam_groups=2, num_beams=2), "generation mode 'group_beam_search' is not supported"),
             (dict(do_sample=True, top_h=0.5), "`top_h=0.5` is not supported"),
             (dict(negative_prompt_ids=PROMPTS[:1], guidance_scale=1.5), "`guidance_scale=1.5` is not supported"),
             (dict(custom_generate="transformers-community/dola"), "custom_generate is not supported")]
    for kwargs, message in cases:
        with pytest.raises(NotImplementedError, match=message):
            ours.generate(PROMPTS[1:2], max_new_tokens=2, **kwargs)
    # without guidance, Transformers ignores a negative prompt: so do we
    for guidance in ({}, {"guidance_scale": 1.0}):
        np.testing.assert_array_equal(ours.generate(PROMPTS[1:2], max_new_tokens=3, negative_prompt_ids=PROMPTS[:1],
                                                    negative_prompt_attention_mask=MASK[:1], **guidance),
                                      ours.generate(PROMPTS[1:2], max_new_tokens=3))


def test_checkpoint_without_generation_config(checkpoint, tmp_path):
    """Without generation_config.json the generation config comes from config.json, as in Transformers."""
    path = checkpoint(scale=0.25, pad_token_id=1, bos_token_id=5, eos_token_id=[40, 12])
    copy = tmp_path / "bare"
    copy.mkdir()
    for name in os.listdir(path):
        if name != "generation_config.json":
            os.symlink(os.path.join(path, name), copy / name)
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(str(copy))
    reference = transformers.NemotronForCausalLM.from_pretrained(str(copy))
    assert public(model.generation_config) == public(reference.generation_config)
    assert model.generation_config.eos_token_id == [40, 12]
    np.testing.assert_array_equal(our_generate(model, PROMPTS, MASK, max_new_tokens=8),
                                  hf_generate(reference, PROMPTS, MASK, max_new_tokens=8))


def test_generation_settings_in_config_json(checkpoint, tmp_path):
    """config.json's generation settings reach generation_config, not the config (Transformers 5); set on the
    config afterwards, generate and save refuse them with Transformers' ValueErrors."""
    path = checkpoint(scale=0.25)
    copy = tmp_path / "legacy"
    copy.mkdir()
    for name in os.listdir(path):
        if name not in ("generation_config.json", "config.json"):
            os.symlink(os.path.join(path, name), copy / name)
    settings = {"max_length": 12, "num_beams": 2, "repetition_penalty": 1.3, "no_repeat_ngram_size": 2}
    config = json.loads(open(os.path.join(path, "config.json")).read())
    (copy / "config.json").write_text(json.dumps({**config, **settings}))
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(str(copy))
    reference = transformers.NemotronForCausalLM.from_pretrained(str(copy))
    for key, value in settings.items():
        assert not hasattr(model.config, key) and not hasattr(reference.config, key)
        assert getattr(model.generation_config, key) == getattr(reference.generation_config, key) == value
    assert public(model.generation_config) == public(reference.generation_config)
    np.testing.assert_array_equal(our_generate(model, PROMPTS, MASK), hf_generate(reference, PROMPTS, MASK))
    model.save_pretrained(str(tmp_path / "saved"))
    written = json.loads((tmp_path / "saved" / "generation_config.json").read_text())
    assert {key: written[key] for key in settings} == settings
    assert not set(settings) & set(json.loads((tmp_path / "saved" / "config.json").read_text()))

    for m in (model, reference):
        m.config.temperature = 0.5
    for m in (model, reference):
        with pytest.raises(ValueError, match=re.escape("values set - {'temperature': 0.5}")):
            m.generate(torch.as_tensor(PROMPTS[:1]) if m is reference else PROMPTS[:1], max_new_tokens=2)
        with pytest.raises(ValueError, match=re.escape("Generation parameters found: {'temperature': 0.5}")):
            m.config.save_pretrained(str(tmp_path / "refused"))
    assert not os.path.exists(tmp_path / "refused")
    given = nemotron_c.GenerationConfig(max_new_tokens=2)  # a generation config of the caller's own is used as is
    assert model.generate(PROMPTS[:1], generation_config=given).shape[1] == len(PROMPTS[0]) + 2


def test_save_pretrained_reads_back_in_transformers(tmp_path):
    config = nemotron_c.GenerationConfig(do_sample=True, top_p=0.9, eos_token_id=[3, 4], max_new_tokens=30)
    config.save_pretrained(str(tmp_path))
    theirs = transformers.GenerationConfig.from_pretrained(str(tmp_path))
    assert {k: v for k, v in public(theirs).items() if v is not None} == \
        {k: v for k, v in public(config).items() if v is not None}
    assert nemotron_c.GenerationConfig.from_pretrained(str(tmp_path)) == config
    with pytest.raises(ValueError, match="GenerationConfig is invalid"):
        nemotron_c.GenerationConfig(temperature=0.5).save_pretrained(str(tmp_path / "strict"))


def test_transformers_refusals_and_prefill_chunk_size(checkpoint):
    """low_memory with beams and a cache beside cache_implementation raise Transformers' ValueErrors (ours ran);
    prefill_chunk_size, which changes no token there, is taken (ours refused it): a bad one is a ValueError where
    torch fails inside Transformers."""
    path = checkpoint()
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    theirs = transformers.NemotronForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    ids = np.array([[5, 17, 33, 2, 9, 40, 11, 12]])
    for kwargs, cache in ((dict(num_beams=2, low_memory=True), None), (dict(cache_implementation="dynamic"), True)):
        with pytest.raises(ValueError) as expected:
            theirs.generate(torch.as_tensor(ids), max_new_tokens=3,
                            past_key_values=transformers.DynamicCache() if cache else None, **kwargs)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            ours.generate(ids, max_new_tokens=3, past_key_values=ours(ids[:, :4]).cache if cache else None,
                          **kwargs)
    assert ours.generate(ids, max_new_tokens=3, low_memory=True).shape == (1, 11)  # greedy takes it, as there
    for chunk in (1, 3, 100):
        for extra in ({}, dict(num_beams=2)):
            with torch.no_grad():
                expected = theirs.generate(torch.as_tensor(ids), max_new_tokens=4, prefill_chunk_size=chunk, **extra)
            np.testing.assert_array_equal(ours.generate(ids, max_new_tokens=4, prefill_chunk_size=chunk, **extra),
                                          expected.numpy())
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="`prefill_chunk_size` must be a positive integer"):
            ours.generate(ids, max_new_tokens=2, prefill_chunk_size=bad)


@pytest.mark.parametrize("kwargs, what", [
    ({"max_new_tokens": 10 ** 14}, "the sequences"),
    ({"max_new_tokens": 10 ** 10, "output_scores": True, "return_dict_in_generate": True}, "the scores"),
])
def test_outputs_beyond_the_memory_are_named(models, kwargs, what):
    """The loop's outputs are sized for max_length up front: one beyond the memory is a MemoryError naming it."""
    ours, _ = models
    with pytest.raises(MemoryError, match=f"cannot make room for {what} .*max_new_tokens {kwargs['max_new_tokens']}"):
        ours.generate(PROMPTS, attention_mask=MASK, **kwargs)


def test_a_transformers_generation_config_is_taken(models):
    """A script that swaps Transformers' model for ours may still build transformers.GenerationConfig: the same
    fields, the same tokens; anything else is refused by type."""
    ours, theirs = models
    for settings in ({"max_new_tokens": 6, "do_sample": False, "repetition_penalty": 1.3},
                     {"max_new_tokens": 4, "num_beams": 2, "length_penalty": 0.5}):
        config = transformers.GenerationConfig(**settings)
        np.testing.assert_array_equal(our_generate(ours, PROMPTS, MASK, generation_config=config),
                                      hf_generate(theirs, PROMPTS, MASK, generation_config=config))
    with pytest.raises(TypeError, match="generation_config must be a GenerationConfig, not dict"):
        ours.generate(PROMPTS, attention_mask=MASK, generation_config={"max_new_tokens": 2})


def test_numpy_ids_are_written_as_numbers_and_other_objects_refused(tmp_path):
    """A token id taken from an output is a NumPy integer: it was written as the string "81" (a file Transformers
    cannot generate from); an object JSON has no form for is a TypeError, as in Transformers."""
    stop = np.array([[5, 81]])[0, -1]
    config = nemotron_c.GenerationConfig(eos_token_id=[3, stop], pad_token_id=np.int32(0),
                                         sequence_bias={(np.int64(4),): 1.0})
    config.save_pretrained(str(tmp_path))
    written = json.loads((tmp_path / "generation_config.json").read_text())
    assert written["eos_token_id"] == [3, 81] and written["pad_token_id"] == 0
    assert written["sequence_bias"] == {"(4,)": 1.0}
    theirs = transformers.GenerationConfig.from_pretrained(str(tmp_path))
    assert theirs.eos_token_id == [3, 81]
    config.to_json_file(str(tmp_path / "popped.json"), keys_to_pop=["pad_token_id"])
    assert "pad_token_id" not in json.loads((tmp_path / "popped.json").read_text())
    with pytest.raises(TypeError, match="not JSON serializable"):
        nemotron_c.GenerationConfig(eos_token_id={1, 2}).to_json_string()


def test_generation_config_by_position_and_at_load(models, checkpoint):
    """generate(inputs, generation_config) as Transformers orders its arguments; from_pretrained(...,
    generation_config=) replaces the checkpoint's, ours or Transformers'."""
    ours, theirs = models
    config = nemotron_c.GenerationConfig(max_new_tokens=3, num_beams=2)
    np.testing.assert_array_equal(ours.generate(PROMPTS, config, attention_mask=MASK),
                                  hf_generate(theirs, PROMPTS, MASK, generation_config=config))
    path = checkpoint(scale=0.25)
    for given in (config, transformers.GenerationConfig(max_new_tokens=3, num_beams=2)):
        loaded = nemotron_c.AutoModelForCausalLM.from_pretrained(path, generation_config=given)
        reference = transformers.NemotronForCausalLM.from_pretrained(path, generation_config=given)
        assert loaded.generation_config.max_new_tokens == 3 and loaded.generation_config.num_beams == 2
        np.testing.assert_array_equal(our_generate(loaded, PROMPTS, MASK), hf_generate(reference, PROMPTS, MASK))
