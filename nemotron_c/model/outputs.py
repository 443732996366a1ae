"""Model outputs that behave like Transformers' ModelOutput: attribute, key and index access."""
from collections import OrderedDict


class ModelOutput(OrderedDict):
    """An ordered dict of the fields that are set (None fields are left out, as in Transformers).

    `past_key_values`, the older name of the cache, still reaches the `cache` field (as an argument, an
    attribute or a key), as it does in Transformers."""

    _fields = ()
    _aliases = {"past_key_values": "cache"}

    def __init__(self, **kwargs):
        for old, new in self._aliases.items():
            if old in kwargs and new in self._fields:
                if kwargs.get(new) is not None:
                    raise TypeError(f"{type(self).__name__} got both {new!r} and its old name {old!r}")
                kwargs[new] = kwargs.pop(old)
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        super().__init__((key, kwargs[key]) for key in self._fields if kwargs.get(key) is not None)

    def __getattr__(self, name):
        name = self._field_name(name)
        if name in self._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(self._field_name(key))

    def _field_name(self, name):
        new = self._aliases.get(name)
        return new if new is not None and new in self._fields else name

    def to_tuple(self):
        return tuple(self.values())

    def __reduce__(self):
        return (_rebuild, (type(self), dict(self)))


def _rebuild(cls, fields):
    return cls(**fields)


class BaseModelOutputWithPast(ModelOutput):
    _fields = ("last_hidden_state", "cache", "hidden_states", "attentions")


class CausalLMOutputWithPast(ModelOutput):
    _fields = ("loss", "logits", "cache", "hidden_states", "attentions")


class SequenceClassifierOutputWithPast(ModelOutput):
    _fields = ("loss", "logits", "cache", "hidden_states", "attentions")


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
