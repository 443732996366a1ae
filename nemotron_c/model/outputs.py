"""Model outputs that behave like Transformers' ModelOutput: attribute, key and index access."""
from collections import OrderedDict


class ModelOutput(OrderedDict):
    """An ordered dict of the fields that are set (None fields are left out, as in Transformers)."""

    _fields = ()

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        super().__init__((key, kwargs[key]) for key in self._fields if kwargs.get(key) is not None)

    def __getattr__(self, name):
        if name in self._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())

    def __reduce__(self):
        return (_rebuild, (type(self), dict(self)))


def _rebuild(cls, fields):
    return cls(**fields)


class BaseModelOutputWithPast(ModelOutput):
    _fields = ("last_hidden_state", "past_key_values", "hidden_states", "attentions")

    @property
    def cache(self):
        return self.get("past_key_values")


class CausalLMOutputWithPast(ModelOutput):
    _fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions")

    @property
    def cache(self):
        return self.get("past_key_values")


class SequenceClassifierOutputWithPast(ModelOutput):
    _fields = ("loss", "logits", "past_key_values", "hidden_states", "attentions")

    @property
    def cache(self):
        return self.get("past_key_values")


class QuestionAnsweringModelOutput(ModelOutput):
    _fields = ("loss", "start_logits", "end_logits", "hidden_states", "attentions")


class TokenClassifierOutput(ModelOutput):
    _fields = ("loss", "logits", "hidden_states", "attentions")


class SequenceScoreOutput(ModelOutput):
    """Per-sequence log-likelihoods from NemotronForCausalLM.score (arrays of one entry per input sequence).

    num_tokens: tokens scored (every token but the first); sum_logprob / mean_logprob: the sum and mean
    of their log-probabilities (natural log); perplexity: exp(-mean_logprob); token_logprobs (when asked
    for): one float32 array of num_tokens entries per sequence, in order.
    """

    _fields = ("sum_logprob", "mean_logprob", "perplexity", "num_tokens", "token_logprobs")
