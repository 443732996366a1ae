"""The adapter methods of Transformers' models (load_adapter, set_adapter, disable_adapters, enable_adapters,
active_adapters, delete_adapter, get_adapter_state_dict) against Transformers 5.24 with peft 0.21.2 on the same
folders.

Transformers 5.24 asks for peft >= 0.22 in every one of these methods but load_adapter (check_peft_version), and
0.21.2 is what is installed: the reference fixture lifts that check; the methods then run on 0.21.2's layers."""
import os
import pickle

import numpy as np
import pytest
import torch
import transformers
import transformers.integrations.peft
from helpers.compare import assert_close
from helpers.transformers_reference import hf_logits
from test_checkpoint_adapters import IDS, MASK, edit_adapter_weights, make_adapter

import nemotron_c
from nemotron_c.checkpoint.adapters import AdapterFormatError

NO_ADAPTER = "No adapter loaded. Please load an adapter first."
SCORE = "base_model.model.score.weight"


@pytest.fixture(autouse=True)
def peft_methods(monkeypatch):
    monkeypatch.setattr(transformers.integrations.peft, "check_peft_version", lambda **kwargs: None)


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def adapters(request, checkpoint, tmp_path_factory):
    """(base, first adapter, second adapter): the first adapts the attention and the embedding, the second the MLP,
    v_proj and the head, so that with tied embeddings each unties them in its own way."""
    base = checkpoint(tie_word_embeddings=request.param)
    root = tmp_path_factory.mktemp("adapters")
    first = make_adapter(base, str(root / "first"), target_modules=["q_proj", "k_proj", "embed_tokens"])
    second = make_adapter(base, str(root / "second"), seed=9, r=2, lora_alpha=1,
                          target_modules=["v_proj", "up_proj", "down_proj", "lm_head"])
    return base, first, second


def load_both(base, dtype=None):
    theirs = transformers.NemotronForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    return nemotron_c.AutoModelForCausalLM.from_pretrained(base, dtype=dtype), theirs


def assert_same(ours, theirs, what):
    assert_close(ours(IDS, attention_mask=MASK).logits, hf_logits(theirs, IDS, MASK), what=f"logits {what}")
    assert ours.active_adapters() == theirs.active_adapters(), what


def test_switching_adapters_matches_transformers(adapters):
    base, first, second = adapters
    ours, theirs = load_both(base)
    plain = ours(IDS, attention_mask=MASK).logits
    tied = ours.config.tie_word_embeddings
    for model in (ours, theirs):
        model.load_adapter(first)
    assert_same(ours, theirs, "after load_adapter")
    assert ours.active_adapters() == ["default"]
    assert not np.allclose(ours(IDS, attention_mask=MASK).logits, plain, atol=0.05)
    assert ours.config.tie_word_embeddings is False if tied else True
    for model in (ours, theirs):  # the adapter loaded becomes the active one
        model.load_adapter(second, adapter_name="second")
    assert_same(ours, theirs, "after loading a second adapter")
    assert ours.active_adapters() == ["second"]
    for step in ("default", "second", ["default", "second"], ["second"], "default"):
        for model in (ours, theirs):
            model.set_adapter(step)
        assert_same(ours, theirs, f"after set_adapter({step!r})")
        assert not np.allclose(ours(IDS, attention_mask=MASK).logits, plain, atol=0.05)
    for model in (ours, theirs):
        model.disable_adapters()
    assert_same(ours, theirs, "disabled")
    np.testing.assert_array_equal(ours(IDS, attention_mask=MASK).logits, plain)  # the base, tied again
    assert ours.config.tie_word_embeddings == tied
    for model in (ours, theirs):  # set_adapter leaves them disabled
        model.set_adapter("second")
    assert_same(ours, theirs, "set_adapter while disabled")
    np.testing.assert_array_equal(ours(IDS, attention_mask=MASK).logits, plain)
    for model in (ours, theirs):
        model.enable_adapters()
    assert_same(ours, theirs, "enabled again")
    for model in (ours, theirs):
        with pytest.warns(UserWarning, match="Adapter second was active which is now deleted. Setting active adapter "
                                             "to default."):
            model.delete_adapter("second")
    assert_same(ours, theirs, "after deleting the active adapter")
    assert list(ours.peft_config) == list(theirs.peft_config) == ["default"]
    for model in (ours, theirs):
        model.delete_adapter(["default"])
        assert not hasattr(model, "peft_config")
        with pytest.raises(ValueError, match=NO_ADAPTER):
            model.active_adapters()
    np.testing.assert_array_equal(ours(IDS, attention_mask=MASK).logits, plain)
    assert ours.config.tie_word_embeddings == tied


def test_deleting_an_inactive_adapter_keeps_the_active_one(adapters):
    base, first, second = adapters
    ours, theirs = load_both(base)
    for model in (ours, theirs):
        model.load_adapter(first, adapter_name="one")
        model.load_adapter(second, adapter_name="two")
        model.set_adapter(["one", "two"])
        model.delete_adapter("two")
    assert_same(ours, theirs, "after deleting one of two active adapters")
    assert ours.active_adapters() == ["one"]


def test_two_embedding_adapters_active_together(checkpoint, tmp_path):
    """Both save the embedding's own weight beside their update (the same values): the updates add up."""
    base = checkpoint(tie_word_embeddings=True)
    one = make_adapter(base, str(tmp_path / "one"), target_modules=["embed_tokens", "q_proj"])
    two = make_adapter(base, str(tmp_path / "two"), seed=4, target_modules=["embed_tokens", "lm_head"])
    ours, theirs = load_both(base)
    for model in (ours, theirs):
        model.load_adapter(one)
        model.load_adapter(two, adapter_name="two")
        model.set_adapter(["default", "two"])
    assert_same(ours, theirs, "two embedding adapters")
    for model in (ours, theirs):
        model.set_adapter("two")
    assert_same(ours, theirs, "the second alone")


def test_without_adapters_every_method_but_load_raises_as_transformers(checkpoint):
    ours, theirs = load_both(checkpoint())
    calls = [("active_adapters", ()), ("disable_adapters", ()), ("enable_adapters", ()),
             ("get_adapter_state_dict", ()), ("set_adapter", ("default",)), ("delete_adapter", ("default",))]
    for method, args in calls:
        for model in (ours, theirs):
            with pytest.raises(ValueError, match=NO_ADAPTER):
                getattr(model, method)(*args)
    assert not hasattr(ours, "peft_config") and not hasattr(theirs, "peft_config")


@pytest.mark.parametrize("call, error, match", [
    (lambda m, a: m.load_adapter(a), ValueError, "Adapter with name default already exists"),
    (lambda m, a: m.load_adapter(a, adapter_name="x", hotswap=False), None, None),
    (lambda m, a: m.load_adapter(a, adapter_name="y", hotswap=True), ValueError, "To hotswap an adapter"),
    (lambda m, a: m.set_adapter("nope"), ValueError,
     r"Adapter with name nope not found. Please pass the correct adapter name among \['default'\]"),
    (lambda m, a: m.set_adapter(["default", "nope"]), ValueError,
     "Following adapter\\(s\\) could not be found: nope"),
    (lambda m, a: m.delete_adapter(["nope", "default"]), ValueError,
     "The following adapter\\(s\\) are not present and cannot be deleted: nope"),
    (lambda m, a: m.get_adapter_state_dict("nope"), KeyError, "nope"),
    (lambda m, a: m.load_adapter(os.path.dirname(a), adapter_name="z"), ValueError, "adapter model file not found in"),
])
def test_bad_names_raise_as_in_transformers(adapters, call, error, match):
    base, first, _ = adapters
    ours, theirs = load_both(base)
    for model in (ours, theirs):
        model.load_adapter(first)
        if error is None:
            call(model, first)
            continue
        with pytest.raises(error, match=match):
            call(model, first)
        assert model.active_adapters() == ["default"]
    assert_same(ours, theirs, "after the refused call")


def test_adapter_state_dict_matches_transformers(adapters):
    base, first, second = adapters
    for directory in (first, second):
        ours, theirs = load_both(base)
        for model in (ours, theirs):
            model.load_adapter(directory, adapter_name="mine")
        expected = {name: tensor.numpy() for name, tensor in theirs.get_adapter_state_dict().items()}
        got = ours.get_adapter_state_dict()
        assert sorted(got) == sorted(expected)
        for name, value in expected.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        assert sorted(ours.get_adapter_state_dict("mine")) == sorted(expected)
    ours.load_adapter(first, adapter_name="other")  # the default is the active adapter's
    assert sorted(ours.get_adapter_state_dict()) == sorted(ours.get_adapter_state_dict("other")) != sorted(got)


def test_a_failed_rebuild_leaves_the_model_as_it_was(adapters, monkeypatch):
    """An error while the core model is built again (memory, an interrupt) keeps the model that ran before."""
    base, first, second = adapters
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(first)
    ours.load_adapter(second, adapter_name="second")
    before, tied, dtype = ours(IDS).logits, ours.config.tie_word_embeddings, ours.config.dtype

    def fail(*args):
        raise MemoryError("no room")

    monkeypatch.setattr(nemotron_c.model.modeling._core, "Model", fail)
    with pytest.raises(MemoryError):
        ours.set_adapter("default")
    monkeypatch.undo()
    assert ours.active_adapters() == ["second"]
    assert (ours.config.tie_word_embeddings, ours.config.dtype) == (tied, dtype)
    np.testing.assert_array_equal(ours(IDS).logits, before)


def test_hotswap_replaces_the_weights_of_an_adapter(adapters):
    base, first, second = adapters
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(base)
    ours.load_adapter(first)
    ours.load_adapter(second, adapter_name="other")
    ours.load_adapter(second, adapter_name="default", hotswap=True)
    assert ours.active_adapters() == ["other"]
    ours.set_adapter("default")
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(second)
    np.testing.assert_array_equal(ours(IDS).logits, reference(IDS).logits)


def test_adapter_folder_loads_as_the_default_adapter(adapters):
    base, first, _ = adapters
    plain = nemotron_c.AutoModelForCausalLM.from_pretrained(base)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(first)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(first, dtype=torch.float32).eval()
    assert_same(ours, theirs, "loaded from the adapter folder")
    assert ours.active_adapters() == ["default"]
    named = nemotron_c.AutoModelForCausalLM.from_pretrained(first, adapter_name="zed")
    assert named.active_adapters() == ["zed"]
    ours.disable_adapters()
    np.testing.assert_array_equal(ours(IDS).logits, plain(IDS).logits)
    assert ours.config.tie_word_embeddings == plain.config.tie_word_embeddings


def test_int8_switches_keep_dtype_threads_and_cache_dtype(checkpoint, tmp_path):
    base = checkpoint(intermediate_size=128)  # rows of whole int8 groups
    first = make_adapter(base, str(tmp_path / "first"))
    second = make_adapter(base, str(tmp_path / "second"), seed=3, target_modules=["q_proj", "up_proj"])
    settings = {"dtype": "int8", "cache_dtype": "bfloat16"}
    plain = nemotron_c.AutoModelForCausalLM.from_pretrained(base, **settings)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(base, num_threads=1, **settings)
    ours.load_adapter(first)
    ours.load_adapter(second, adapter_name="second")
    ours.set_adapter("default")
    np.testing.assert_array_equal(
        ours(IDS).logits, nemotron_c.AutoModelForCausalLM.from_pretrained(first, **settings)(IDS).logits)
    assert (ours.dtype, ours.num_threads, ours.cache_dtype) == ("int8", 1, "bfloat16")
    assert ours.config.quantization_config == plain.config.quantization_config
    ours.disable_adapters()
    np.testing.assert_array_equal(ours(IDS).logits, plain(IDS).logits)
    assert (ours.dtype, ours.num_threads, ours.cache_dtype) == ("int8", 1, "bfloat16")


def test_pickle_and_save_pretrained_follow_the_active_adapter(adapters, tmp_path):
    base, first, second = adapters
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(first)
    ours.load_adapter(second, adapter_name="second")
    again = pickle.loads(pickle.dumps(ours))
    assert again.active_adapters() == ["second"] and list(again.peft_config) == ["default", "second"]
    np.testing.assert_array_equal(again(IDS).logits, ours(IDS).logits)
    again.set_adapter("default")
    np.testing.assert_array_equal(
        again(IDS).logits, nemotron_c.AutoModelForCausalLM.from_pretrained(first)(IDS).logits)
    ours.save_pretrained(tmp_path / "merged")  # the merged model, as it runs
    saved = nemotron_c.AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    np.testing.assert_array_equal(saved(IDS).logits, ours(IDS).logits)
    ours.disable_adapters()
    disabled = pickle.loads(pickle.dumps(ours))
    np.testing.assert_array_equal(
        disabled(IDS).logits, nemotron_c.AutoModelForCausalLM.from_pretrained(base)(IDS).logits)
    disabled.enable_adapters()
    np.testing.assert_array_equal(disabled(IDS).logits, again.__class__.from_pretrained(second)(IDS).logits)


def test_a_bad_adapter_leaves_the_model_as_it_was(adapters, tmp_path):
    base, first, second = adapters
    bad = make_adapter(base, str(tmp_path / "bad"), target_modules=["q_proj"])
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    edit_adapter_weights(bad, lambda t: t.update({name: np.full_like(t[name], np.inf)}))
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(first)
    before = ours(IDS).logits
    tied = ours.config.tie_word_embeddings
    ours.disable_adapters()  # refused even when it would not be merged now
    with pytest.raises(AdapterFormatError, match="not finite"):
        ours.load_adapter(bad, adapter_name="bad")
    ours.enable_adapters()
    with pytest.raises(AdapterFormatError, match="not finite"):
        ours.load_adapter(bad, adapter_name="bad")
    assert list(ours.peft_config) == ["default"] and ours.active_adapters() == ["default"]
    np.testing.assert_array_equal(ours(IDS).logits, before)
    assert ours.config.tie_word_embeddings == tied


def test_a_cache_made_before_a_switch_is_refused(adapters):
    base, first, _ = adapters
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(base)
    cache = ours(IDS[:, :4]).past_key_values
    ours.load_adapter(first)
    with pytest.raises(ValueError, match="made before this model's weights changed"):
        ours(IDS[:, 4:], past_key_values=cache)


def test_task_head_adapters(checkpoint, tmp_path):
    """modules_to_save: the score head trained whole follows the active adapter; two adapters that both replace it
    cannot be active together (PEFT refuses it too). Transformers 5.24 (peft 0.21.2) runs a second adapter just
    loaded with the base model's head until set_adapter names it, and leaves the head disabled after
    enable_adapters: nemotron_c takes the active adapter's head in both cases."""
    base = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=3, pad_token_id=0)
    kwargs = {"model_class": transformers.NemotronForSequenceClassification, "task_type": "SEQ_CLS"}
    first = make_adapter(base, str(tmp_path / "first"), target_modules=["q_proj", "v_proj"], **kwargs)
    second = make_adapter(base, str(tmp_path / "second"), seed=8, target_modules=["o_proj"], **kwargs)
    for directory, shift in ((first, 0.5), (second, -0.5)):  # heads of their own (make_adapter trains nothing)
        edit_adapter_weights(directory, lambda t: t.update({SCORE: t[SCORE] + np.float32(shift)}))
    theirs = transformers.NemotronForSequenceClassification.from_pretrained(base, dtype=torch.float32).eval()
    ours = nemotron_c.AutoModelForSequenceClassification.from_pretrained(base)

    def same(what):
        with torch.no_grad():
            expected = theirs(torch.as_tensor(IDS), attention_mask=torch.as_tensor(MASK)).logits.numpy()
        assert_close(ours(IDS, attention_mask=MASK).logits, expected, what=what)

    plain = ours(IDS, attention_mask=MASK).logits
    for directory, name in ((first, "default"), (second, "second")):
        for model in (ours, theirs):
            model.load_adapter(directory, adapter_name=name)
        # the head of a second adapter: Transformers leaves the base's until set_adapter (nemotron_c takes the
        # loaded adapter's at once)
        theirs.set_adapter(name)
        same(f"after loading {directory}")
    for model in (ours, theirs):
        model.set_adapter("default")
    same("after set_adapter")
    for model in (ours, theirs):
        model.disable_adapters()
    same("disabled")
    np.testing.assert_array_equal(ours(IDS, attention_mask=MASK).logits, plain)
    with pytest.raises(ValueError, match="multiple"):
        theirs.set_adapter(["default", "second"])
    with pytest.raises(ValueError, match="replace 'score.weight' .* with other values"):
        ours.set_adapter(["default", "second"])
    ours.enable_adapters()  # the head too (Transformers 5.24 leaves it disabled)
    reference = nemotron_c.AutoModelForSequenceClassification.from_pretrained(first)
    np.testing.assert_array_equal(ours(IDS, attention_mask=MASK).logits, reference(IDS, attention_mask=MASK).logits)


def test_load_adapter_refuses_what_needs_torch(adapters):
    base, first, _ = adapters
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(base)
    with pytest.raises(NotImplementedError, match="peft_config=..., adapter_state_dict"):
        ours.load_adapter(peft_config={"r": 4}, adapter_state_dict={})
    with pytest.raises(NotImplementedError, match="is_trainable"):
        ours.load_adapter(first, is_trainable=True)
    with pytest.raises(TypeError, match="unexpected keyword argument.*nope"):
        ours.load_adapter(first, nope=1)
    with pytest.raises(ValueError, match="You should either pass a `peft_model_id`"):
        ours.load_adapter()
    with pytest.raises(NotImplementedError, match="state_dict"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(first).get_adapter_state_dict(state_dict={})
    assert not hasattr(ours, "peft_config")


def test_load_adapter_from_the_hub_cache(adapters, tmp_path, monkeypatch):
    """A Hub id found in huggingface_hub's cache (offline), with the Hub keywords given directly or in
    adapter_kwargs."""
    import huggingface_hub
    from test_checkpoint_hub import add_to_cache, files_of

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    base, first, second = adapters
    cache = str(tmp_path / "hub")
    add_to_cache(cache, "someone/tiny-lora", "6" * 40, files_of(first), ref="main")
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(base)
    ours.load_adapter("someone/tiny-lora", cache_dir=cache)
    ours.load_adapter("someone/tiny-lora", adapter_name="again", adapter_kwargs={"cache_dir": cache})
    expected = nemotron_c.AutoModelForCausalLM.from_pretrained(first)(IDS).logits
    np.testing.assert_array_equal(ours(IDS).logits, expected)
    with pytest.raises(ValueError, match="adapter model file not found in someone/other"):
        ours.load_adapter("someone/other", adapter_name="other", cache_dir=cache)


def test_pickles_made_from_relative_paths_load_in_another_directory(adapters, monkeypatch):
    """A model, its adapters and a tokenizer loaded by relative paths pickle as absolute ones: a worker whose
    working directory differs loaded nothing (FileNotFoundError, or a Hub lookup of the relative name)."""
    base, first, second = adapters
    monkeypatch.chdir(os.path.dirname(first))
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(os.path.basename(first))
    ours.load_adapter(os.path.relpath(second), adapter_name="second")
    plain = nemotron_c.AutoModelForCausalLM.from_pretrained(os.path.relpath(base))
    pickled = pickle.dumps(ours), pickle.dumps(plain)
    monkeypatch.chdir("/")
    again, plain_again = map(pickle.loads, pickled)
    assert again.active_adapters() == ["second"]
    np.testing.assert_array_equal(again(IDS).logits, ours(IDS).logits)
    np.testing.assert_array_equal(plain_again(IDS).logits, plain(IDS).logits)


@pytest.mark.parametrize("tied", [False, True])
def test_an_adapters_saved_base_layer_keeps_another_adapters_update(checkpoint, tmp_path, tied):
    """Two active adapters on the embedding, one saved without its base layer (targeted by its full name) and one
    with it: Transformers sums both updates in either order; ours let the saved base layer replace the update
    merged before it (2.2 apart in one order)."""
    base = checkpoint(tie_word_embeddings=tied)
    full = make_adapter(base, str(tmp_path / "full"), target_modules=["model.embed_tokens"])
    short = make_adapter(base, str(tmp_path / "short"), seed=9, target_modules=["embed_tokens"])
    ours, theirs = load_both(base)
    for model in (ours, theirs):
        model.load_adapter(full)
        model.load_adapter(short, adapter_name="two")
    for order in (["default", "two"], ["two", "default"]):
        ours.set_adapter(order)
        theirs.set_adapter(order)
        assert_close(ours(IDS, attention_mask=MASK).logits, hf_logits(theirs, IDS, MASK))
