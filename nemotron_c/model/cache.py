"""The KV cache a forward hands back and takes again (Transformers' DynamicCache role), and the one check of a
cache argument that forward, generate and score share."""
from .. import _core


class NemotronCache:
    """Keys and values of every layer for a batch, kept between calls (Transformers' DynamicCache role).

    Pass it back as `past_key_values=` (or `cache=`); each forward appends its tokens in place.
    """

    def __init__(self, model, batch_size, capacity=0):
        self._core = _core.Cache(model._core, int(batch_size), int(capacity))
        self._owner = model._core

    @classmethod
    def _wrap(cls, model, core_cache):
        """A NemotronCache around a core cache made elsewhere (generate() hands its own back)."""
        cache = cls.__new__(cls)
        cache._core = core_cache
        cache._owner = model._core
        return cache

    def get_seq_length(self, layer_idx=0):
        return self._core.length

    @property
    def batch_size(self):
        return self._core.batch_size

    def __repr__(self):
        return f"NemotronCache(batch_size={self.batch_size}, seq_length={self.get_seq_length()})"


def check_cache(cache, model, batch_size, name, rows):
    """Refuses a cache argument that is not this model's NemotronCache for batch_size rows (described by `rows`)."""
    if not isinstance(cache, NemotronCache):
        raise TypeError(f"{name} must be a NemotronCache returned by this library (got {type(cache).__name__}); "
                        "Transformers' cache objects cannot be mixed in")
    if cache._owner is not model._core:
        raise ValueError(f"{name} belongs to another model")
    if cache.batch_size != batch_size:
        raise ValueError(f"{name} holds {cache.batch_size} sequences, but {rows}")
