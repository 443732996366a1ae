"""Task heads over the Nemotron decoder, as Transformers defines them for Nemotron:

    NemotronForSequenceClassification  score (num_labels, H), no bias; pooled at the rightmost non-pad token
    NemotronForQuestionAnswering       qa_outputs (2, H) + bias; backbone saved under "transformer."
    NemotronForTokenClassification     score (num_labels, H) + bias

The core runs the decoder and returns the final-normed hidden states (B, T, H); the heads are small
enough to apply in NumPy (float32, with the weights rounded to the model's storage dtype first, as the
core does for every other weight). Losses follow Transformers' loss_utils and are computed in float64.

Head weights are read from the checkpoint. A missing head tensor is an error, never a random
initialisation: a checkpoint without a trained head cannot give meaningful outputs.
"""
import warnings

import numpy as np

from ..checkpoint.tensors import convert
from .inputs import to_numpy
from .losses import question_answering_loss, sequence_classification_loss, token_classification_loss
from .modeling import AutoModel, NemotronPreTrainedModel, check_extra_kwargs
from .outputs import QuestionAnsweringModelOutput, SequenceClassifierOutputWithPast, TokenClassifierOutput
from .weights import QUANTIZED_DTYPES, float32_weight, resolve_storage


class Linear:
    """A head's weight (out_features, in_features) and bias as float32 NumPy arrays; callable like nn.Linear."""

    def __init__(self, weight, bias=None):
        self.weight, self.bias = weight, bias
        self.out_features, self.in_features = weight.shape

    def __call__(self, x):
        """x (..., in_features) -> (..., out_features) float32"""
        out = x @ self.weight.T
        if self.bias is not None:
            out += self.bias
        return out.astype(np.float32, copy=False)

    def __repr__(self):
        return f"Linear(in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None})"


class NemotronHeadModel(NemotronPreTrainedModel):
    """A decoder plus a linear head read from the checkpoint (private base of the three heads).

    The head is an attribute named as in Transformers (`model.score`, `model.qa_outputs`), a Linear.
    """

    head_name = None  # "score" or "qa_outputs"

    def _build(self, tensors, dtype, num_threads, kernels):
        super()._build(tensors, dtype, num_threads, kernels)
        config = self.config
        rows, has_bias = self._head_layout(config)
        # a head stays in float, in the dtype the core would hold it in: a float dtype= converts it, otherwise it
        # keeps its own (a checkpoint's tensors are in the model's dtype; an adapter's head is float32)
        self._head_dtypes = {}
        float_dtype = None if dtype in QUANTIZED_DTYPES else dtype
        weight = self._head_tensor(tensors, f"{self.head_name}.weight", (rows, config.hidden_size), float_dtype)
        bias = self._head_tensor(tensors, f"{self.head_name}.bias", (rows,), float_dtype) if has_bias else None
        setattr(self, self.head_name, Linear(weight, bias))

    @property
    def head(self):
        return getattr(self, self.head_name)

    @classmethod
    def _head_layout(cls, config):
        """(rows of the head's weight, whether it has a bias) as the config implies."""
        raise NotImplementedError

    @classmethod
    def _head_shapes(cls, config):
        rows, has_bias = cls._head_layout(config)
        shapes = {f"{cls.head_name}.weight": (rows, config.hidden_size)}
        if has_bias:
            shapes[f"{cls.head_name}.bias"] = (rows,)
        return shapes

    def _repr_heads(self):
        rows, has_bias = self._head_layout(self.config)
        return [f"({self.head_name}): Linear(in_features={self.config.hidden_size}, out_features={rows}, "
                f"bias={has_bias})"]

    def _head_tensor(self, tensors, name, shape, float_dtype):
        stored = tensors.get(name)
        if stored is None:
            raise ValueError(
                f"checkpoint lacks tensor {name!r}, the weight of {type(self).__name__}'s head; nemotron_c does not "
                f"initialise missing weights randomly (is this a checkpoint of another architecture?)"
            )
        if tuple(stored.shape) != shape:
            raise ValueError(self._shape_message(name, tuple(stored.shape), shape))
        self._head_dtypes[name] = resolve_storage(stored, float_dtype)
        return float32_weight(stored, self._head_dtypes[name])

    def _shape_message(self, name, got, want):
        if self.head_name == "score" and len(got) == 2 and got[1] == want[1] and got[0] != want[0]:
            return (f"tensor {name!r} has {got[0]} rows but config.num_labels is {want[0]}; the checkpoint's head "
                    f"classifies into {got[0]} labels (fix num_labels / id2label to match)")
        return f"tensor {name!r} has shape {got}, the config implies {want}"

    @property
    def num_labels(self):
        return self.config.num_labels

    def _tensors_to_save(self):
        # the head holds float32 values already rounded to their dtype: converting back is exact
        head = [(f"{self.head_name}.weight", self.head.weight)]
        if self.head.bias is not None:
            head.append((f"{self.head_name}.bias", self.head.bias))
        return super()._tensors_to_save() + [(name, convert(np.ascontiguousarray(value, dtype=np.float32), "float32",
                                                              self._head_dtypes[name]), self._head_dtypes[name])
                                             for name, value in head]

    def _hidden(self, input_ids, attention_mask, position_ids, past_key_values, cache, use_cache, output_hidden_states,
                inputs_embeds, output_attentions, kwargs):
        """One core call: the ForwardResult with last_hidden (B, T, H), and every layer's hidden states and
        attention weights when asked for."""
        check_extra_kwargs(kwargs)
        cache, use_cache, want_all, want_attentions = self._forward_settings(
            past_key_values, cache, use_cache, output_hidden_states, output_attentions)
        return self._run(input_ids, attention_mask, position_ids, cache, use_cache, inputs_embeds=inputs_embeds,
                         last_hidden=True, all_hidden=want_all, attentions=want_attentions)

    def _apply_head(self, hidden):
        """hidden (..., H) -> (..., rows) in float32."""
        return self.head(hidden)


class NemotronForSequenceClassification(NemotronHeadModel):
    """Decoder + `score` (num_labels, H) applied at each sequence's rightmost token that is not pad_token_id.

    Without pad_token_id in the config, a batch of one is pooled at its last token and a larger batch
    raises, as in Transformers. The attention mask plays no part in choosing the pooled token.
    """

    head_name = "score"

    @classmethod
    def _head_layout(cls, config):
        return config.num_labels, False

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, **kwargs):
        result = self._hidden(input_ids, attention_mask, position_ids, past_key_values, cache, use_cache,
                              output_hidden_states, inputs_embeds, output_attentions, kwargs)
        B, T = result.last_hidden.shape[:2]
        if input_ids is not None:
            positions = pooling_positions(to_numpy(input_ids, "input_ids").reshape(B, T), self.config.pad_token_id)
        else:
            positions = self._embeds_pooling_positions(B, T)
        pooled = self._apply_head(result.last_hidden[np.arange(B), positions])
        loss = None if labels is None else sequence_classification_loss(pooled, labels, self.config)
        output = SequenceClassifierOutputWithPast(
            loss=loss,
            logits=pooled,
            cache=result.cache,
            hidden_states=result.all_hidden,
            attentions=result.attentions,
        )
        return self._returned(output, return_dict)

    def _embeds_pooling_positions(self, B, T):
        """Transformers' rule for inputs_embeds, where no token can be seen to be padding: the last position."""
        if self.config.pad_token_id is None:
            if B != 1:
                raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
        elif not getattr(self, "_warned_embeds_padding", False):
            self._warned_embeds_padding = True
            warnings.warn(f"{type(self).__name__} will not detect padding tokens in `inputs_embeds`: each row is "
                          "classified at its last position, padding or not", UserWarning, stacklevel=3)
        return np.full(B, T - 1)


class NemotronForQuestionAnswering(NemotronHeadModel):
    """Decoder + `qa_outputs` (2, H) with bias: start and end logits (B, T) for extractive QA."""

    base_model_prefix = "transformer"
    head_name = "qa_outputs"

    @classmethod
    def _head_layout(cls, config):
        return 2, True

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, start_positions=None, end_positions=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, cache=None, **kwargs):
        kwargs.pop("use_cache", None)  # Transformers' QA output has no cache to return
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)  # its loss alone of the heads' reads it
        result = self._hidden(input_ids, attention_mask, position_ids, past_key_values, cache, False,
                              output_hidden_states, inputs_embeds, output_attentions, kwargs)
        logits = self._apply_head(result.last_hidden)
        start_logits = np.ascontiguousarray(logits[..., 0])
        end_logits = np.ascontiguousarray(logits[..., 1])
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions,
                                           num_items_in_batch)
        output = QuestionAnsweringModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits,
                                              hidden_states=result.all_hidden, attentions=result.attentions)
        return self._returned(output, return_dict)


class NemotronForTokenClassification(NemotronHeadModel):
    """Decoder + `score` (num_labels, H), with a bias unless config.token_classification_bias is false.

    Dropout is the identity at inference, so logits are score(last_hidden_state).
    """

    head_name = "score"

    @classmethod
    def _head_layout(cls, config):
        return config.num_labels, bool(getattr(config, "token_classification_bias", True))

    def _repr_heads(self):
        # Transformers' token classifier holds a dropout module before its head
        c = self.config
        p = next((v for v in (getattr(c, "classifier_dropout", None), getattr(c, "hidden_dropout", None))
                  if v is not None), 0.1)
        return [f"(dropout): Dropout(p={p}, inplace=False)"] + super()._repr_heads()

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache=None, **kwargs):
        # the output has no cache field: keep one only when the caller passed one to extend
        result = self._hidden(input_ids, attention_mask, position_ids, past_key_values, cache, bool(use_cache),
                              output_hidden_states, inputs_embeds, output_attentions, kwargs)
        logits = self._apply_head(result.last_hidden)
        loss = None if labels is None else token_classification_loss(logits, labels, self.config.num_labels)
        output = TokenClassifierOutput(loss=loss, logits=logits, hidden_states=result.all_hidden,
                                       attentions=result.attentions)
        return self._returned(output, return_dict)


# ---------------------------------------------------------------- pooling


def pooling_positions(ids, pad_token_id):
    """Index (B,) of the token each sequence is classified at: Transformers' rule.

    With a pad_token_id, the rightmost token that differs from it (index 0 when every token is padding),
    which serves left and right padding alike; without one, the last token, for a batch of one only.
    """
    B, T = ids.shape
    if pad_token_id is None:
        if B != 1:
            raise ValueError("Cannot handle batch sizes > 1 if no padding token is defined.")
        return np.array([T - 1])
    # argmax returns the first maximum, so an all-padding row gives 0 as torch's argmax does
    return np.argmax(np.arange(T) * (ids != pad_token_id), axis=-1)


# ---------------------------------------------------------------- Auto classes


class AutoModelForSequenceClassification(AutoModel):
    model_class = NemotronForSequenceClassification


class AutoModelForQuestionAnswering(AutoModel):
    model_class = NemotronForQuestionAnswering


class AutoModelForTokenClassification(AutoModel):
    model_class = NemotronForTokenClassification
