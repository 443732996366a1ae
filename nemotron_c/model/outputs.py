"""Model outputs that behave like Transformers' ModelOutput: attribute, key and index access."""
from collections import OrderedDict


class ModelOutput(OrderedDict):
    """An ordered dict of the fields that are set (None fields are left out, as in Transformers).

    As Transformers' ModelOutput: fields by keyword or in order, setting a field as an attribute or a key sets both
    (a field set later comes last), and the dict cannot shrink or grow otherwise (del, pop, update, setdefault
    raise). `past_key_values` and `cache_params`, the older names of the cache, still reach the `cache` field (as
    an argument, an attribute or a key)."""

    _fields = ()
    _aliases = {"past_key_values": "cache", "cache_params": "cache"}

    def __init__(self, *args, **kwargs):
        if len(args) > len(self._fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(self._fields)} fields, got {len(args)}")
        for field, value in zip(self._fields, args):
            if field in kwargs:
                raise TypeError(f"{type(self).__name__} got {field!r} twice")
            kwargs[field] = value
        for old, new in self._aliases.items():
            if old in kwargs and new in self._fields:
                if kwargs.get(new) is not None:
                    raise TypeError(f"{type(self).__name__} got both {new!r} and its old name {old!r}")
                kwargs[new] = kwargs.pop(old)
        unknown = set(kwargs) - set(self._fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        super().__init__((key, kwargs[key]) for key in self._fields if kwargs.get(key) is not None)

    def __getattr__(self, name):  # fields not set since construction (those set later are instance attributes)
        name = self._field_name(name)
        if name in self._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        name = self._field_name(name)
        if name in self._fields and value is not None:
            super().__setitem__(name, value)
        object.__setattr__(self, name, value)  # None too: as Transformers, the key keeps its value

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(self._field_name(key))

    def __setitem__(self, key, value):
        key = self._field_name(key)
        super().__setitem__(key, value)
        object.__setattr__(self, key, value)

    def __contains__(self, key):
        return super().__contains__(self._field_name(key))

    def get(self, key, default=None):
        return super().get(self._field_name(key), default)

    def __delitem__(self, key):
        raise Exception(f"You cannot use ``__delitem__`` on a {type(self).__name__} instance.")

    def pop(self, *args, **kwargs):
        raise Exception(f"You cannot use ``pop`` on a {type(self).__name__} instance.")

    def update(self, *args, **kwargs):
        raise Exception(f"You cannot use ``update`` on a {type(self).__name__} instance.")

    def setdefault(self, *args, **kwargs):
        raise Exception(f"You cannot use ``setdefault`` on a {type(self).__name__} instance.")

    def _field_name(self, name):
        new = self._aliases.get(name)
        return new if new is not None and new in self._fields else name

    def to_tuple(self):
        return tuple(self.values())

    def __repr__(self):  # as the dataclass Transformers' outputs are: every field, None ones too
        fields = ", ".join(f"{name}={self.get(name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

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
