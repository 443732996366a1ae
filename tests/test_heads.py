"""Sequence-classification, question-answering and token-classification heads against Transformers."""
import warnings

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import hf_from_pretrained

import nemotron_c
from nemotron_c.model.heads import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    NemotronForQuestionAnswering,
    NemotronForSequenceClassification,
    NemotronForTokenClassification,
)
from nemotron_c.checkpoint.reading import read_checkpoint

PAD = 0


def padded_batch(padding_side, seed=0, vocab=96, lengths=(7, 4, 1)):
    """ids (B, T) with real tokens in [1, vocab) and PAD elsewhere, and the matching mask."""
    rng = np.random.default_rng(seed)
    T = max(lengths)
    ids = np.full((len(lengths), T), PAD, dtype=np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        cols = slice(0, n) if padding_side == "right" else slice(T - n, T)
        ids[b, cols] = rng.integers(1, vocab, size=n)
        mask[b, cols] = 1
    return ids, mask


def run_hf(model, ids, mask, **labels):
    with torch.no_grad():
        kwargs = {k: torch.as_tensor(v) for k, v in labels.items()}
        return model(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), **kwargs)


@pytest.fixture(scope="module")
def seq_path(checkpoint):
    return checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=3, pad_token_id=PAD)


@pytest.fixture(scope="module")
def qa_path(checkpoint):
    return checkpoint(model_class=transformers.NemotronForQuestionAnswering, seed=1)


@pytest.fixture(scope="module")
def token_path(checkpoint):
    return checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=5, seed=2)


# ---------------------------------------------------------------- sequence classification


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification"])
def test_sequence_classification_matches_transformers(seq_path, padding_side, problem, kernels):
    ids, mask = padded_batch(padding_side)
    if problem == "single_label_classification":
        labels = np.array([2, 0, 1])
    else:
        labels = np.random.default_rng(3).integers(0, 2, size=(3, 3)).astype(np.float32)
    ours = NemotronForSequenceClassification.from_pretrained(seq_path)
    assert kernels == "auto" or ours.kernels == kernels  # the portable run is not the default one again
    theirs = hf_from_pretrained(seq_path, transformers.NemotronForSequenceClassification)
    out = ours(ids, attention_mask=mask, labels=labels)
    ref = run_hf(theirs, ids, mask, labels=labels)
    assert ours.config.problem_type == theirs.config.problem_type == problem
    assert out.logits.shape == (3, 3) and out.logits.dtype == np.float32
    assert_close(out.logits, ref.logits.numpy(), what="pooled logits")
    assert_close(out.loss, ref.loss.numpy(), what="loss")


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_sequence_regression_matches_transformers(checkpoint, padding_side):
    path = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=1, pad_token_id=PAD)
    ids, mask = padded_batch(padding_side, seed=4)
    labels = np.array([0.5, -1.25, 2.0], dtype=np.float32)
    out = NemotronForSequenceClassification.from_pretrained(path)(ids, attention_mask=mask, labels=labels)
    theirs = hf_from_pretrained(path, transformers.NemotronForSequenceClassification)
    ref = run_hf(theirs, ids, mask, labels=labels)
    assert theirs.config.problem_type == "regression"
    assert_close(out.logits, ref.logits.numpy(), what="logits")
    assert_close(out.loss, ref.loss.numpy(), what="loss")


def test_sequence_classification_regression_with_integer_labels_and_many_outputs(seq_path):
    ids, mask = padded_batch("right", seed=5)
    labels = np.random.default_rng(5).normal(size=(3, 3)).astype(np.float32)
    ours = NemotronForSequenceClassification.from_pretrained(seq_path, problem_type="regression")
    theirs = hf_from_pretrained(seq_path, transformers.NemotronForSequenceClassification)
    theirs.config.problem_type = "regression"
    assert_close(ours(ids, attention_mask=mask, labels=labels).loss, run_hf(theirs, ids, mask, labels=labels).loss)


def test_sequence_classification_pools_at_rightmost_non_pad_token(seq_path):
    """Padding in the middle and an all-padding row: the rule looks at ids only, as Transformers does."""
    ids = np.array([[5, 6, PAD, PAD, 7, PAD], [PAD] * 6, [9, 9, 9, 9, 9, 9]])
    ours = NemotronForSequenceClassification.from_pretrained(seq_path)
    theirs = hf_from_pretrained(seq_path, transformers.NemotronForSequenceClassification)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids)).logits.numpy()
    assert_close(ours(ids).logits, ref, what="pooled logits")


def test_sequence_classification_without_pad_token(checkpoint):
    path = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=2, seed=6)
    ours = NemotronForSequenceClassification.from_pretrained(path)
    theirs = hf_from_pretrained(path, transformers.NemotronForSequenceClassification)
    ids = np.array([[4, 8, 15, 16, 23]])
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids)).logits.numpy()
    assert_close(ours(ids).logits, ref)
    with pytest.raises(ValueError, match="no padding token"):
        ours(np.vstack([ids, ids]))


def test_sequence_classification_outputs_and_cache(seq_path):
    ours = NemotronForSequenceClassification.from_pretrained(seq_path)
    ids, mask = padded_batch("right")
    out = ours(ids, attention_mask=mask, output_hidden_states=True)
    assert len(out.hidden_states) == ours.config.num_hidden_layers + 1
    assert out.cache is not None and out.cache.get_seq_length() == ids.shape[1]
    assert ours(ids, use_cache=False).cache is None
    logits, cache = ours(ids, return_dict=False)
    assert_close(logits, out.logits)
    assert ours.num_labels == 3 and ours.config.id2label == {0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}
    theirs = hf_from_pretrained(seq_path, transformers.NemotronForSequenceClassification)
    assert_close(ours.score.weight, theirs.score.weight.detach().numpy(), atol=0)
    assert ours.score.bias is None and ours.score.out_features == 3


# ---------------------------------------------------------------- question answering


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_question_answering_matches_transformers(qa_path, padding_side, kernels):
    ids, mask = padded_batch(padding_side, seed=7)
    # in range, past the end (ignored after clamping), negative (clamped to 0), and a (B, 1) column
    start = np.array([[3], [50], [-2]])
    end = np.array([5, 6, 0])
    ours = NemotronForQuestionAnswering.from_pretrained(qa_path)
    assert kernels == "auto" or ours.kernels == kernels
    theirs = hf_from_pretrained(qa_path, transformers.NemotronForQuestionAnswering)
    out = ours(ids, attention_mask=mask, start_positions=start, end_positions=end)
    ref = run_hf(theirs, ids, mask, start_positions=start, end_positions=end)
    assert out.start_logits.shape == out.end_logits.shape == ids.shape
    assert_close(out.start_logits, ref.start_logits.numpy(), what="start logits")
    assert_close(out.end_logits, ref.end_logits.numpy(), what="end logits")
    assert_close(out.loss, ref.loss.numpy(), what="loss")
    assert ours(ids, start_positions=start).loss is None  # both positions are needed, as in Transformers


def test_question_answering_loss_over_num_items_in_batch(qa_path):
    """Transformers passes the QA head's keyword arguments on to its loss: summed over num_items_in_batch."""
    ids, mask = padded_batch("right", seed=8)
    start, end = np.array([3, 50, 0]), np.array([5, 6, 0])
    ours = NemotronForQuestionAnswering.from_pretrained(qa_path)
    theirs = hf_from_pretrained(qa_path, transformers.NemotronForQuestionAnswering)
    for count in (2, torch.tensor(5)):
        with torch.no_grad():
            ref = theirs(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), start_positions=torch.as_tensor(
                start), end_positions=torch.as_tensor(end), num_items_in_batch=count)
        out = ours(ids, attention_mask=mask, start_positions=start, end_positions=end, num_items_in_batch=count)
        assert_close(out.loss, ref.loss.numpy(), what="loss")


@pytest.mark.parametrize("head", ["sequence", "qa", "token"])
def test_heads_return_tuples_when_the_config_says_return_dict_false(seq_path, qa_path, token_path, head):
    """return_dict=None reads config.return_dict, as Transformers' can_return_tuple. Transformers' heads fail with
    such a config (the tuple of their backbone has no last_hidden_state): the values are compared with their
    output's to_tuple()."""
    path, ours_class, theirs_class = {
        "sequence": (seq_path, NemotronForSequenceClassification, transformers.NemotronForSequenceClassification),
        "qa": (qa_path, NemotronForQuestionAnswering, transformers.NemotronForQuestionAnswering),
        "token": (token_path, NemotronForTokenClassification, transformers.NemotronForTokenClassification)}[head]
    ids, mask = padded_batch("right", seed=9)
    ours = ours_class.from_pretrained(path, return_dict=False)
    got = ours(ids, attention_mask=mask)
    ref = run_hf(hf_from_pretrained(path, theirs_class), ids, mask).to_tuple()
    assert isinstance(got, tuple) and len(got) == len(ref)
    for mine, theirs_value in zip(got, ref):
        if isinstance(theirs_value, torch.Tensor):  # else both are caches
            assert_close(mine, theirs_value.numpy())
    assert not isinstance(ours(ids, attention_mask=mask, return_dict=True), tuple)


def test_question_answering_all_positions_ignored_gives_nan(qa_path):
    ours = NemotronForQuestionAnswering.from_pretrained(qa_path)
    ids, mask = padded_batch("right")
    out = ours(ids, attention_mask=mask, start_positions=[99, 99, 99], end_positions=[99, 99, 99])
    assert np.isnan(out.loss)


def test_question_answering_accepts_model_prefix(qa_path):
    tensors = {name.replace("transformer.", "model.", 1): t for name, t in read_checkpoint(qa_path).items()}
    config = nemotron_c.NemotronConfig.from_pretrained(qa_path)
    ours = NemotronForQuestionAnswering(config, tensors)
    reference = NemotronForQuestionAnswering.from_pretrained(qa_path)
    ids = np.array([[1, 2, 3, 4]])
    assert_close(ours(ids).start_logits, reference(ids).start_logits, atol=0)
    assert ours.qa_outputs.weight.shape == (2, 64) and ours.qa_outputs.bias.shape == (2,)


# ---------------------------------------------------------------- token classification


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_classification_matches_transformers(token_path, padding_side, kernels):
    ids, mask = padded_batch(padding_side, seed=8)
    labels = np.random.default_rng(8).integers(0, 5, size=ids.shape)
    labels[mask == 0] = -100
    ours = NemotronForTokenClassification.from_pretrained(token_path)
    assert kernels == "auto" or ours.kernels == kernels
    theirs = hf_from_pretrained(token_path, transformers.NemotronForTokenClassification)
    out = ours(ids, attention_mask=mask, labels=labels)
    ref = run_hf(theirs, ids, mask, labels=labels)
    assert out.logits.shape == ids.shape + (5,)
    assert_close(out.logits, ref.logits.numpy(), what="logits")
    assert_close(out.loss, ref.loss.numpy(), what="loss")
    # any shape of as many labels, as Transformers' labels.view(-1) takes them
    for shape in (ids.shape + (1,), (ids.size,), (1, ids.size)):
        reshaped = labels.reshape(shape)
        assert_close(ours(ids, attention_mask=mask, labels=reshaped).loss,
                     run_hf(theirs, ids, mask, labels=reshaped).loss.numpy(), what=f"loss of labels {shape}")
    with pytest.raises(ValueError, match="labels has shape"):
        ours(ids, attention_mask=mask, labels=labels[:, :-1])


def test_token_classification_without_bias(checkpoint):
    path = checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=4, seed=9,
                      token_classification_bias=False)
    ids = np.array([[3, 1, 4, 1, 5, 9]])
    ours = NemotronForTokenClassification.from_pretrained(path)
    assert ours.score.bias is None and ours.score.weight.shape == (4, 64)
    theirs = hf_from_pretrained(path, transformers.NemotronForTokenClassification)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids)).logits.numpy()
    assert_close(ours(ids).logits, ref)


def test_bfloat16_head_weights_match_transformers(checkpoint):
    path = checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=5, seed=2, dtype="bfloat16")
    ids = np.array([[3, 1, 4, 1, 5, 9]])
    ours = NemotronForTokenClassification.from_pretrained(path)
    assert ours.dtype == "bfloat16"
    theirs = hf_from_pretrained(path, transformers.NemotronForTokenClassification)
    with torch.no_grad():
        ref = theirs(torch.as_tensor(ids)).logits.numpy()
    assert_close(ours(ids).logits, ref)


# ---------------------------------------------------------------- auto classes


def test_auto_classes(seq_path, qa_path, token_path):
    assert type(AutoModelForSequenceClassification.from_pretrained(seq_path)) is NemotronForSequenceClassification
    assert type(AutoModelForQuestionAnswering.from_pretrained(qa_path)) is NemotronForQuestionAnswering
    assert type(AutoModelForTokenClassification.from_pretrained(token_path)) is NemotronForTokenClassification


# ---------------------------------------------------------------- bad input


def test_missing_head_weights_name_the_tensor(checkpoint, seq_path):
    causal = checkpoint()
    with pytest.raises(ValueError, match="lacks tensor 'score.weight'"):
        NemotronForSequenceClassification.from_pretrained(causal)
    with pytest.raises(ValueError, match="lacks tensor 'qa_outputs.weight'"):
        NemotronForQuestionAnswering.from_pretrained(seq_path)
    with pytest.raises(ValueError, match="lacks tensor 'score.bias'"):
        NemotronForTokenClassification.from_pretrained(seq_path, num_labels=3)


def test_num_labels_inconsistent_with_weights(seq_path, token_path):
    with pytest.raises(ValueError, match="3 rows but config.num_labels is 5"):
        NemotronForSequenceClassification.from_pretrained(seq_path, num_labels=5)
    with pytest.raises(ValueError, match="5 rows but config.num_labels is 2"):
        NemotronForTokenClassification.from_pretrained(token_path, num_labels=2)


def test_bad_labels(seq_path, token_path, qa_path):
    seq = NemotronForSequenceClassification.from_pretrained(seq_path, problem_type="single_label_classification")
    ids, mask = padded_batch("right")
    with pytest.raises(ValueError, match="expected 3 class indices"):
        seq(ids, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="outside \\[0, 3\\)"):
        seq(ids, labels=np.array([0, 1, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        seq(ids, labels=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="must hold numbers"):
        seq(ids, labels=np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match="must hold numbers"):
        seq(ids, labels=np.array([True, False, True]))

    multi = NemotronForSequenceClassification.from_pretrained(seq_path, problem_type="multi_label_classification")
    with pytest.raises(TypeError, match="float labels"):
        multi(ids, labels=np.ones((3, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="multi-label classification needs"):
        multi(ids, labels=np.ones((3, 2), dtype=np.float32))
    regression = NemotronForSequenceClassification.from_pretrained(seq_path, problem_type="regression")
    with pytest.raises(ValueError, match="regression over 3"):
        regression(ids, labels=np.ones(3, dtype=np.float32))
    odd = NemotronForSequenceClassification.from_pretrained(seq_path, problem_type="ranking")
    with pytest.raises(ValueError, match="problem_type must be one of"):
        odd(ids, labels=np.array([0, 1, 2]))

    token = NemotronForTokenClassification.from_pretrained(token_path)
    with pytest.raises(ValueError, match="expected \\(3, 7\\)"):
        token(ids, labels=np.zeros((3, 6), dtype=np.int64))
    with pytest.raises(TypeError, match="integer class indices"):
        token(ids, labels=np.zeros((3, 7), dtype=np.float32))

    qa = NemotronForQuestionAnswering.from_pretrained(qa_path)
    with pytest.raises(TypeError, match="start_positions must hold integer"):
        qa(ids, start_positions=np.zeros(3), end_positions=np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="end_positions has shape"):
        qa(ids, start_positions=np.zeros(3, dtype=np.int64), end_positions=np.zeros((3, 2), dtype=np.int64))


# ---------------------------------------------------------------- inputs_embeds, attentions, output keys


HEADS = {"seq": NemotronForSequenceClassification, "qa": NemotronForQuestionAnswering,
         "token": NemotronForTokenClassification}


def head_paths(seq_path, qa_path, token_path):
    return {"seq": seq_path, "qa": qa_path, "token": token_path}


def output_arrays(out):
    """name -> array of every field but the cache, tuples flattened with their index"""
    arrays = {}
    for key, value in out.items():
        if key == "cache":
            continue
        if isinstance(value, tuple):
            arrays.update({f"{key}[{i}]": np.asarray(v) for i, v in enumerate(value)})
        else:
            arrays[key] = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    return arrays


@pytest.mark.parametrize("head", ["seq", "qa", "token"])
@pytest.mark.parametrize("flags", [{}, {"output_attentions": True}, {"output_hidden_states": True},
                                   {"output_attentions": True, "output_hidden_states": True, "use_cache": True}])
def test_heads_outputs_match_transformers_field_by_field(seq_path, qa_path, token_path, head, flags):
    """The keys in Transformers' order and every array, padding positions included, with either attention.
    Transformers' heads return attention weights with its eager attention only (SDPA gives an empty tuple), and
    the two differ at the padding positions whose keys are all masked: ours follow the attn_implementation
    asked for, SDPA's by default, and return the weights with either."""
    path = head_paths(seq_path, qa_path, token_path)[head]
    ids, mask = padded_batch("left", seed=8)
    flags = dict(flags)
    if head == "qa":
        flags.pop("use_cache", None)
    for attention in ("sdpa", "eager"):
        ours = HEADS[head].from_pretrained(path, attn_implementation=attention)
        theirs = hf_from_pretrained(path, getattr(transformers, HEADS[head].__name__), attn_implementation=attention)
        out = ours(ids, attention_mask=mask, **flags)
        with torch.no_grad():
            ref = theirs(torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), **flags)
        got, want = output_arrays(out), output_arrays(ref)
        if attention == "eager":
            assert list(out.keys()) == list(ref.keys())
            assert got.keys() == want.keys()
            assert any(name.startswith("attentions") for name in got) == bool(flags.get("output_attentions"))
        for name in want:
            assert_close(got[name], want[name], what=f"{name} ({attention})")


@pytest.mark.parametrize("head", ["seq", "qa", "token"])
def test_heads_take_inputs_embeds_as_transformers(seq_path, qa_path, token_path, head):
    path = head_paths(seq_path, qa_path, token_path)[head]
    ids, mask = padded_batch("left", seed=9)
    # eager attention, the one whose weights Transformers returns
    ours = HEADS[head].from_pretrained(path, attn_implementation="eager")
    theirs = hf_from_pretrained(path, getattr(transformers, HEADS[head].__name__), attn_implementation="eager")
    embeds = ours.get_input_embeddings()(ids)
    with torch.no_grad():
        ref = theirs(inputs_embeds=torch.as_tensor(embeds), attention_mask=torch.as_tensor(mask),
                     output_attentions=True)
    if head == "seq":
        # no token can be seen to be padding: each row is pooled at its last position, with a warning once
        with pytest.warns(UserWarning, match="will not detect padding tokens in `inputs_embeds`"):
            out = ours(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours(inputs_embeds=embeds, attention_mask=mask)
    else:
        out = ours(inputs_embeds=embeds, attention_mask=mask, output_attentions=True)
    got, want = output_arrays(out), output_arrays(ref)
    assert got.keys() == want.keys()
    for name in want:
        assert_close(got[name], want[name], what=name)
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours(ids, inputs_embeds=embeds)
    with pytest.raises(ValueError, match="exactly one of input_ids or inputs_embeds"):
        ours()
    with pytest.raises(ValueError, match="inputs_embeds must have shape"):
        ours(inputs_embeds=embeds[..., :5])


def test_sequence_classification_of_inputs_embeds_without_pad_token(checkpoint):
    path = checkpoint(model_class=transformers.NemotronForSequenceClassification, num_labels=2, seed=6)
    ours = NemotronForSequenceClassification.from_pretrained(path)
    theirs = hf_from_pretrained(path, transformers.NemotronForSequenceClassification)
    embeds = ours.get_input_embeddings()(np.array([[4, 8, 15, 16, 23]]))
    with torch.no_grad():
        ref = theirs(inputs_embeds=torch.as_tensor(embeds)).logits.numpy()
    assert_close(ours(inputs_embeds=embeds).logits, ref)
    with pytest.raises(ValueError, match="no padding token"):
        ours(inputs_embeds=np.concatenate([embeds, embeds]))
