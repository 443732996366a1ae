"""Which tokenizer AutoTokenizer builds for a folder, against Transformers' AutoTokenizer on the same folder.

Every tokenizer variant of tokenizer_builders is loaded as it sits in a Nemotron checkpoint folder (config.json
written by NemotronConfig.save_pretrained beside the tokenizer files: Transformers then ignores tokenizer_class and
uses tokenizer.json as it is), beside another model's config.json, and alone (tokenizer_class decides). Padding
side is never forced: the default is part of what is compared."""
import json
import pickle
import shutil

import numpy as np
import pytest

from helpers.tokenizer_builders import SPM_ONLY, VARIANTS, build_all
from helpers.tokenizer_corpus import make_test_corpus

import transformers

import nemotron_c
from nemotron_c.tokenizer.tokenization import AutoTokenizer, FormatError, LlamaTokenizer, NemotronTokenizer

NAMES = list(VARIANTS) + [name for name, _, _ in SPM_ONLY]
SPM_ONLY_CONFIGS = {name: config for name, _, config in SPM_ONLY}
LLAMA_NAMES = [n for n in NAMES if ((VARIANTS[n][2] if n in VARIANTS else SPM_ONLY_CONFIGS[n]) or {})
               .get("tokenizer_class") in ("LlamaTokenizer", "LlamaTokenizerFast")]
FOLDERS = ("nemotron", "llama", "alone")  # config.json beside the tokenizer: NemotronConfig, LlamaConfig, none


def tiny(config_class):
    return config_class(vocab_size=64, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """{(variant, folder kind): directory}."""
    dirs = build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))
    root = tmp_path_factory.mktemp("auto")
    out = {}
    for name in NAMES:
        for kind in FOLDERS:
            path = root / f"{name}-{kind}"
            shutil.copytree(dirs[name], path)
            if kind == "nemotron":
                tiny(transformers.NemotronConfig).save_pretrained(path)
            elif kind == "llama":
                tiny(transformers.LlamaConfig).save_pretrained(path)
            out[name, kind] = str(path)
    return out


@pytest.fixture(scope="session")
def texts():
    return make_test_corpus()[::25]


_loaded = {}


def pair(folders, name, kind):
    key = name, kind
    if key not in _loaded:
        _loaded[key] = (AutoTokenizer.from_pretrained(folders[key]),
                        transformers.AutoTokenizer.from_pretrained(folders[key]))
    return _loaded[key]


def assert_same_tokenizer(ours, theirs, texts):
    """ids, tokens, decoded text, special tokens, vocabulary size and padding side."""
    for attr in ("padding_side", "special_tokens_map", "all_special_tokens", "all_special_ids", "bos_token_id",
                 "eos_token_id", "pad_token_id", "unk_token_id", "vocab_size", "model_max_length"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    assert len(ours) == len(theirs)
    ids = theirs(texts)["input_ids"]
    assert ours(texts)["input_ids"] == ids
    assert [ours.encode(t, add_special_tokens=False) for t in texts[:100]] == \
        [theirs.encode(t, add_special_tokens=False) for t in texts[:100]]
    assert [ours.tokenize(t) for t in texts[:100]] == [theirs.tokenize(t) for t in texts[:100]]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == theirs.batch_decode(ids, skip_special_tokens=skip)


@pytest.mark.parametrize("kind", FOLDERS)
@pytest.mark.parametrize("name", NAMES)
def test_autotokenizer_matches_transformers_in_the_folder(folders, texts, name, kind):
    ours, theirs = pair(folders, name, kind)
    assert_same_tokenizer(ours, theirs, texts)
    # the class Transformers picks, in our vocabulary
    assert isinstance(ours, LlamaTokenizer) == (type(theirs).__name__ == "LlamaTokenizer")


def test_a_nemotron_folder_gets_the_tokenizers_backend(folders):
    """The reason for the rule: tokenizer_class says LlamaTokenizer, config.json says nemotron."""
    ours, theirs = pair(folders, "nemotron", "nemotron")
    assert type(theirs).__name__ == "TokenizersBackend" and type(ours) is NemotronTokenizer
    assert (ours.padding_side, theirs.padding_side) == ("right", "right")
    alone, _ = pair(folders, "nemotron", "alone")
    assert type(alone) is LlamaTokenizer and alone.padding_side == "left"


PADDED_CALLS = [
    dict(padding=True),
    dict(padding=True, return_tensors="np"),
    dict(padding="max_length", max_length=40, truncation=True, return_tensors="np"),
    dict(padding="longest", truncation=True, max_length=9, return_tensors="pt"),
    dict(padding=True, pad_to_multiple_of=8, return_tensors="np"),
]


def _array(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


@pytest.mark.parametrize("kind", FOLDERS)
@pytest.mark.parametrize("name", NAMES)
def test_padded_batches_match_transformers_in_the_folder(folders, texts, name, kind):
    ours, theirs = pair(folders, name, kind)
    if theirs.pad_token is None:
        # Transformers' error first, then what scripts do; the side stays each tokenizer's default
        with pytest.raises(ValueError, match="does not have a padding token"):
            theirs(texts[:3], padding=True)
        with pytest.raises(ValueError, match="does not have a padding token"):
            ours(texts[:3], padding=True)
        ours, theirs = (AutoTokenizer.from_pretrained(folders[name, kind], pad_token="<unk>"),
                        transformers.AutoTokenizer.from_pretrained(folders[name, kind], pad_token="<unk>"))
    batch = [t for t in texts if len(t) < 300][:24]
    for call in PADDED_CALLS:
        a, b = ours(batch, **call), theirs(batch, **call)
        assert set(a) == set(b) - {"token_type_ids"}, call
        for key in a:
            np.testing.assert_array_equal(_array(a[key]), _array(b[key]), err_msg=f"{key} {call}")


@pytest.mark.parametrize("name", NAMES)
def test_nemotron_tokenizer_is_pretrained_tokenizer_fast(folders, texts, name):
    """NemotronTokenizer.from_pretrained(dir) is PreTrainedTokenizerFast.from_pretrained(dir), whatever the folder."""
    path = folders[name, "alone"]
    assert_same_tokenizer(NemotronTokenizer.from_pretrained(path),
                          transformers.PreTrainedTokenizerFast.from_pretrained(path), texts)


@pytest.mark.parametrize("name", LLAMA_NAMES)
def test_llama_tokenizer_is_llama_tokenizer_fast(folders, texts, name):
    path = folders[name, "nemotron"]  # config.json does not matter to the class itself
    assert_same_tokenizer(LlamaTokenizer.from_pretrained(path), transformers.LlamaTokenizerFast.from_pretrained(path),
                          texts)


@pytest.mark.parametrize("kwargs", [{"use_fast": False}, {"trust_remote_code": True}])
@pytest.mark.parametrize("kind", ["nemotron", "alone"])
def test_use_fast_and_trust_remote_code_change_nothing(folders, texts, kwargs, kind):
    path = folders["nemotron", kind]
    ours = AutoTokenizer.from_pretrained(path, **kwargs)
    theirs = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    assert type(ours) is type(pair(folders, "nemotron", kind)[0])
    assert_same_tokenizer(ours, theirs, texts[:50])


def test_the_folder_choice_survives_pickling(folders):
    ours, _ = pair(folders, "nemotron", "nemotron")
    again = pickle.loads(pickle.dumps(ours))
    assert type(again) is NemotronTokenizer and again.padding_side == "right"


def test_unknown_tokenizer_class_is_refused_only_where_transformers_reads_it(folders, tmp_path):
    for kind in ("alone", "nemotron"):
        path = tmp_path / kind
        shutil.copytree(folders["big", kind], path)
        config_path = path / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer_class"] = "GPT2Tokenizer"
        config_path.write_text(json.dumps(config))
        if kind == "alone":
            with pytest.raises(ValueError, match="unsupported tokenizer_class 'GPT2Tokenizer'"):
                AutoTokenizer.from_pretrained(path)
        else:  # a Nemotron folder: Transformers ignores tokenizer_class, and so do we
            ours, theirs = AutoTokenizer.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
            assert ours("a b c")["input_ids"] == theirs("a b c")["input_ids"]


def test_top_level_names():
    assert nemotron_c.AutoTokenizer is AutoTokenizer and nemotron_c.LlamaTokenizer is LlamaTokenizer


@pytest.mark.parametrize("name", ["spm_only_llama", "nemotron"])
def test_leading_spaces_trimmed_before_a_first_metaspace(folders, name):
    """tokenizer.model alone with legacy=False: the normalizer trims leading spaces, and Metaspace's
    prepend_scheme "first" then no longer prepends (the text no longer starts at offset 0)."""
    ours, theirs = pair(folders, name, "nemotron")
    for text in [" us your", "  us", "us your", "<s>  us", " <s> us", "\tus", "<extra_id_0> us", " <extra_id_0> us",
                 " \u2581us", "   "]:
        assert ours.tokenize(text) == theirs.tokenize(text), text
        assert ours.encode(text) == theirs.encode(text), text


def test_a_broken_config_json_is_named(folders, tmp_path):
    shutil.copytree(folders["big", "alone"], tmp_path, dirs_exist_ok=True)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(FormatError, match="config.json"):
        AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(FormatError, match="config.json: the top level is not an object"):
        AutoTokenizer.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"architectures": ["X"]}')  # no model_type: tokenizer_class decides
    assert type(AutoTokenizer.from_pretrained(tmp_path)) is NemotronTokenizer


@pytest.mark.parametrize("with_decoder", [False, True])
@pytest.mark.parametrize("kind", ["nemotron", "alone"])
def test_special_tokens_precedence_in_the_folder(folders, tmp_path, kind, with_decoder):
    """special_tokens_map.json over tokenizer_config.json unless the latter has an added_tokens_decoder; with
    LlamaTokenizer named in tokenizer_config.json, whichever class the folder gets."""
    shutil.copytree(folders["nemotron", kind], tmp_path, dirs_exist_ok=True)
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.update(pad_token="</s>", eos_token="<extra_id_1>")
    if with_decoder:
        flags = {"lstrip": True, "rstrip": False, "normalized": False, "single_word": False}
        config["added_tokens_decoder"] = {"5": {"content": "<extra_id_0>", "special": False, **flags},
                                          "3000": {"content": "<new>", "special": True, **flags}}
    config_path.write_text(json.dumps(config))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"pad_token": {"content": "<pad>"},
                                                                  "bos_token": "<ctrl_0>"}))
    ours, theirs = AutoTokenizer.from_pretrained(tmp_path), transformers.AutoTokenizer.from_pretrained(tmp_path)
    texts = ["x <extra_id_0> y<ctrl_0><pad> <new>z", "a"]
    assert_same_tokenizer(ours, theirs, texts)
    assert ours(texts, padding=True) == dict(theirs(texts, padding=True))
