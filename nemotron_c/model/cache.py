"""The KV cache a forward hands back and takes again (Transformers' DynamicCache role), and the one check of a
cache argument that forward, generate and score share."""
import operator
import os
import weakref

import numpy as np

from .. import _core
from .inputs import to_numpy

# What Transformers' DynamicCache has that has no meaning here, and why (asked for, they raise AttributeError).
_NOT_OFFERED = {
    "update": "the C core writes the keys and values during the forward pass; a NemotronCache takes no tensors "
              "from outside (run the model over the tokens instead)",
    "early_initialization": "the C core allocates the cache as the forward pass needs it",
    "offload": "the cache already lives in CPU memory: there is no device to offload it from",
    "prefetch": "the cache already lives in CPU memory: there is no device to prefetch it to",
    "get_conv_state": "Nemotron has attention layers only: there are no convolution states",
    "update_conv_state": "Nemotron has attention layers only: there are no convolution states",
    "get_recurrent_state": "Nemotron has attention layers only: there are no recurrent states",
    "update_recurrent_state": "Nemotron has attention layers only: there are no recurrent states",
    "has_previous_state": "Nemotron has attention layers only: there are no linear-attention states",
    "update_indexer": "Nemotron has attention layers only: there is no indexer key cache",
}


def physical_memory():
    """This machine's memory in bytes (None where the OS does not say): what no allocation may exceed."""
    if not hasattr(os, "sysconf"):
        return None
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _count(value, name):
    """A Python int from an int, NumPy integer or 0-d integer tensor (not a bool or float)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not a bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None


def _row_indices(value, name):
    """A 1-D integer or boolean NumPy array of row indices from an array-like (list, NumPy array, torch tensor)."""
    rows = to_numpy(value, name)
    if rows.dtype == np.float64 and rows.size == 0:  # np.array([])
        rows = rows.astype(np.int64)
    if not (rows.dtype == np.bool_ or np.issubdtype(rows.dtype, np.integer)):
        raise TypeError(f"{name} must hold integers (or booleans, one per sequence), got dtype {rows.dtype}")
    if rows.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per sequence kept), got shape {rows.shape}")
    return rows


class NemotronCacheLayer:
    """One layer of a NemotronCache, read as Transformers' DynamicLayer is: `keys` and `values` of shape
    (batch, num_key_value_heads, seq_length, head_dim), the keys after the rotary embedding.

    Each read is a new float32 NumPy copy (a bfloat16 cache gives its values widened to float32 exactly);
    None before the cache holds anything, as Transformers' uninitialised layer."""

    is_sliding = False
    is_compileable = False
    is_croppable = True

    def __init__(self, cache, layer_idx):
        self._cache = cache
        self._layer_idx = layer_idx

    def _read(self, values):
        if not self.is_initialized:
            return None
        core = self._cache._core
        out = np.empty((core.batch_size, core.num_key_value_heads, core.length, core.head_dim), np.float32)
        core.read(self._layer_idx, values, out)
        return out

    @property
    def keys(self):
        return self._read(False)

    @property
    def values(self):
        return self._read(True)

    @property
    def is_initialized(self):
        return self._cache.is_initialized

    def get_seq_length(self):
        return self._cache._core.length

    def get_max_length(self):
        return -1

    def get_mask_sizes(self, query_length):
        return self.get_seq_length() + query_length, 0

    def __repr__(self):
        return f"NemotronCacheLayer(layer_idx={self._layer_idx})"


class NemotronCache:
    """Keys and values of every layer for a batch, kept between calls (Transformers' DynamicCache role).

    Pass it back as `past_key_values=` (or `cache=`); each forward appends its tokens in place. It answers as
    Transformers' DynamicCache does: get_seq_length, crop, reorder_cache, batch_select_indices,
    batch_repeat_interleave, reset, len() (the layers), layers[i].keys / .values (float32 NumPy copies),
    iteration, copy.deepcopy. All layers share one length, so it is cropped as a whole.
    """

    def __init__(self, model, batch_size, capacity=0):
        batch_size, capacity = _count(batch_size, "batch_size"), _count(capacity, "capacity")
        try:
            self._core = _core.Cache(model._core, batch_size, capacity)
        except OverflowError:  # beyond the core's int64 sizes
            raise ValueError(f"a cache of {batch_size} sequences (capacity {capacity}) is too large") from None
        self._owner, self._model = model._core, weakref.ref(model)
        self._initialized = False

    @classmethod
    def _wrap(cls, model, core_cache):
        """A NemotronCache around a core cache made elsewhere (generate() hands its own back)."""
        cache = cls.__new__(cls)
        cache._core = core_cache
        cache._owner, cache._model = model._core, weakref.ref(model)
        cache._initialized = False
        return cache

    def __getattr__(self, name):
        if name in _NOT_OFFERED:
            raise AttributeError(f"NemotronCache has no {name}(): {_NOT_OFFERED[name]}")
        raise AttributeError(f"'NemotronCache' object has no attribute '{name}'")

    # ------------------------------------------------------------ reading

    def get_seq_length(self, layer_idx=0):
        """Positions held (every layer holds as many; 0 for a layer index past the last, as Transformers)."""
        layer_idx = _count(layer_idx, "layer_idx")
        if layer_idx >= len(self):
            return 0
        self._layer_index(layer_idx)
        return self._core.length

    def get_query_offset(self, layer_idx=0):
        return self.get_seq_length(layer_idx)

    def get_max_length(self, layer_idx=None):
        """-1: a dynamic cache has no maximum length (Transformers' answer for DynamicCache)."""
        if layer_idx is not None:
            layer_idx = _count(layer_idx, "layer_idx")
            if layer_idx < len(self):
                self._layer_index(layer_idx)
        return -1

    def get_mask_sizes(self, query_length, layer_idx):
        """(kv_length, kv_offset) of a forward over query_length new tokens."""
        query_length = _count(query_length, "query_length")
        if _count(layer_idx, "layer_idx") >= len(self):
            return query_length, 0
        return self._core.length + query_length, 0

    @property
    def batch_size(self):
        # Transformers' DynamicCache answers -1 (its layers do not record it); ours always knows its sequences
        return self._core.batch_size

    @property
    def layers(self):
        return [NemotronCacheLayer(self, i) for i in range(len(self))]

    def __len__(self):
        return self._core.num_layers

    def __iter__(self):
        # as DynamicCache: (keys, values, sliding-window tensor) per layer, the last None (no sliding window)
        for layer in self.layers:
            yield layer.keys, layer.values, None

    def _layer_index(self, layer_idx):
        if not -len(self) <= layer_idx < len(self):
            raise IndexError(f"layer index {layer_idx} is out of range for a cache of {len(self)} layers")
        return layer_idx % len(self)

    @property
    def is_initialized(self):
        """Whether a forward pass has filled the cache since it was made or reset (cropping keeps it so)."""
        return self._initialized or self._core.length > 0

    @property
    def is_compileable(self):
        return False

    @property
    def is_croppable(self):
        return True

    @property
    def is_sliding(self):
        return [False] * len(self)

    @property
    def is_linear(self):
        return [False] * len(self)

    @property
    def is_dummy(self):
        return [False] * len(self)

    def activate_past_recording(self):
        """Nothing to do: only linear-attention layers record past states (as DynamicCache's attention layers)."""

    def is_recording_past(self, layer_idx):
        return False

    # ------------------------------------------------------------ changing

    def _remember_initialized(self):
        self._initialized = self.is_initialized

    def crop(self, tokens_to_remove):
        """Forgets the last -tokens_to_remove positions of every sequence (assisted decoding rolls back this way).

        As Transformers 5, a positive value (the older "keep this many" meaning) is refused. Removing more
        positions than the cache holds is refused too, where Transformers silently empties the cache."""
        tokens_to_remove = _count(tokens_to_remove, "tokens_to_remove")
        if tokens_to_remove > 0:
            raise ValueError(f"Calling `crop` with a positive value (`{tokens_to_remove}`) is not supported. Please "
                             "use a negative integer to remove that number of tokens from the cache instead.")
        length = self._core.length
        if -tokens_to_remove > length:
            raise ValueError(f"cannot remove {-tokens_to_remove} tokens from a cache holding {length}")
        self._remember_initialized()
        self._core.crop(length + tokens_to_remove)

    def reset(self):
        """Empties the cache (Transformers drops the tensors; ours keeps the memory for the next forward)."""
        self._core.crop(0)
        self._initialized = False

    def reorder_cache(self, beam_idx):
        """Sequence i becomes the former sequence beam_idx[i], for beam search (one index per sequence)."""
        rows = _row_indices(beam_idx, "beam_idx")
        B = self.batch_size
        if rows.dtype == np.bool_:
            raise TypeError("beam_idx must hold integer indices, not booleans")
        if len(rows) != B:
            raise ValueError(f"beam_idx holds {len(rows)} indices, but the cache holds {B} sequences (one index "
                             "per sequence; batch_select_indices changes their number)")
        # torch's index_select refuses negative indices too
        if B and (rows.min() < 0 or rows.max() >= B):
            bad = rows.min() if rows.min() < 0 else rows.max()
            raise IndexError(f"beam_idx holds {bad}, outside the cache's sequences [0, {B})")
        self._select(rows)

    def batch_select_indices(self, indices):
        """Keeps the sequences `indices` picks, in that order, as Transformers' keys[indices]: integer indices
        (negative ones count from the end, repeats allowed) or a boolean mask of one entry per sequence."""
        rows = _row_indices(indices, "indices")
        B = self.batch_size
        self._check_fits(len(rows))  # before reading them: a broadcast array declares more than it holds
        if rows.dtype == np.bool_ and len(rows) != B:
            raise IndexError(f"indices is a boolean mask of {len(rows)} entries, but the cache holds {B} sequences")
        if rows.dtype != np.bool_ and len(rows) and (rows.min() < -B or rows.max() >= B):
            bad = rows.min() if rows.min() < -B else rows.max()
            raise IndexError(f"indices holds {bad}, outside the cache's {B} sequences")
        self._select(np.arange(B)[rows])

    def batch_repeat_interleave(self, repeats):
        """Each sequence `repeats` times in a row (an int, or one count per sequence), as torch.repeat_interleave
        on the batch: how generate() expands a cache for num_return_sequences or beams."""
        B = self.batch_size
        if isinstance(repeats, (bool, np.bool_)):
            raise TypeError("repeats must be an integer (or one integer per sequence), not a bool")
        try:
            counts = _count(repeats, "repeats")
        except TypeError:
            if np.ndim(repeats) == 0:
                raise TypeError("repeats must be an integer (or one integer per sequence), not "
                                f"{type(repeats).__name__}") from None
            counts = _row_indices(repeats, "repeats")
            if counts.dtype == np.bool_:
                raise TypeError("repeats must hold integers, not booleans") from None
            if len(counts) != B:
                raise ValueError(f"repeats holds {len(counts)} counts, but the cache holds {B} sequences") from None
        if np.any(np.asarray(counts) < 0):
            raise ValueError(f"repeats must not be negative, got {repeats}")
        # summed as Python ints, which do not wrap as int64 would
        self._check_fits(B * counts if isinstance(counts, int) else sum(int(c) for c in counts))
        self._select(np.repeat(np.arange(B), counts))

    def _check_fits(self, sequences):
        """Refuses, before anything is allocated, a cache of more sequences than this machine's memory holds."""
        core = self._core
        itemsize = next(info.itemsize for info in _core.DTYPE_INFO.values() if info.code == core.dtype)
        per_sequence = 2 * core.num_layers * core.num_key_value_heads * core.head_dim * itemsize * max(core.length, 1)
        available = physical_memory()
        if available and sequences * per_sequence > available:
            raise ValueError(f"{sequences} sequences of {core.length} positions need "
                             f"{sequences * per_sequence / 2**30:.1f} GiB of keys and values, more than this "
                             f"machine's {available / 2**30:.1f} GiB")

    def _select(self, rows):
        if len(rows) == 0:
            raise ValueError("this would leave the cache with no sequence; a cache holds at least one")
        self._remember_initialized()
        self._core.select(np.ascontiguousarray(rows, dtype=np.int64))

    def __deepcopy__(self, memo):
        # the copy shares the model (as a Transformers cache references none) and owns its keys and values
        copy = NemotronCache.__new__(NemotronCache)
        copy._core = self._core.copy()
        copy._owner, copy._model = self._owner, self._model
        copy._initialized = self._initialized
        memo[id(self)] = copy
        return copy

    def __copy__(self):
        # shares the keys and values, as a shallow copy of a DynamicCache shares its layers
        shallow = NemotronCache.__new__(NemotronCache)
        shallow.__dict__.update(self.__dict__)
        return shallow

    def __reduce__(self):
        # Transformers' cache pickles its tensors; ours lives in the C core and belongs to one model object,
        # which another process would not have
        raise TypeError("a NemotronCache cannot be pickled: its keys and values live in the C core of one model; "
                        "read them with cache.layers[i].keys / .values, or run the model again where needed")

    def __repr__(self):
        return f"NemotronCache(batch_size={self.batch_size}, seq_length={self.get_seq_length()})"


def check_cache(cache, model, batch_size, name, rows):
    """Refuses a cache argument that is not this model's NemotronCache for batch_size rows (described by `rows`).

    An empty cache takes any batch size, as Transformers' DynamicCache has none before its first update."""
    if not isinstance(cache, NemotronCache):
        raise TypeError(f"{name} must be a NemotronCache returned by this library (got {type(cache).__name__}); "
                        "Transformers' cache objects cannot be mixed in")
    # another model object's cache serves (the core refuses one of another shape), as Transformers' caches belong to
    # no model; but this model's own from before its weights changed holds keys of other weights
    if cache._owner is not model._core and cache._model() is model:
        raise ValueError(f"{name} was made before this model's weights changed (an adapter switch, or to() another "
                         "dtype): its keys and values come from other weights")
    if cache.batch_size != batch_size and cache.get_seq_length() == 0:
        cache._core.select(np.zeros(batch_size, np.int64))
    if cache.batch_size != batch_size:
        raise ValueError(f"{name} holds {cache.batch_size} sequences, but {rows}")
