"""Checkpoint loading: what a hostile or broken directory gets (a clear exception, never a crash)."""
import json
import os
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import nemotron_c
import nemotron_c.checkpoint.torch_bin
from nemotron_c import _core
from nemotron_c.checkpoint.safetensors import SafetensorsFormatError, read_safetensors
from nemotron_c.checkpoint.tensors import SAFETENSORS_DTYPES, STORAGE_NUMPY
from helpers.checkpoints import edit_config, write_random_checkpoint

IDS = np.array([[1, 5, 7, 9]])


def copy_checkpoint(source, destination):
    shutil.copytree(source, destination)
    return str(destination)


def write_raw_safetensors(path, header, data):
    header_bytes = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)) + header_bytes + data)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """written(**options) -> a random checkpoint's directory (no torch: these tests run without it)."""
    made = {}

    def write(**options):
        key = repr(sorted(options.items()))
        if key not in made:
            made[key] = write_random_checkpoint(tmp_path_factory.mktemp("written"), **options)
        return made[key]

    return write


@pytest.fixture
def good(written, tmp_path):
    return copy_checkpoint(written(), tmp_path / "good")


def sharded_copy(written, tmp_path):
    """A sharded random checkpoint's copy: (directory, index path, index)."""
    directory = copy_checkpoint(written(shard_size="40KB"), tmp_path / "sharded")
    index_path = os.path.join(directory, "model.safetensors.index.json")
    with open(index_path) as f:
        return directory, index_path, json.load(f)


def weights_path(directory):
    return os.path.join(directory, "model.safetensors")


def rewrite_weights(directory, change):
    tensors = load_file(weights_path(directory))
    change(tensors)
    save_file(tensors, weights_path(directory), metadata={"format": "pt"})


def test_missing_directory_and_files(tmp_path, good):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(str(tmp_path / "nowhere"))
    os.remove(weights_path(good))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)
    os.remove(os.path.join(good, "config.json"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_safetensors_file_named_pytorch_model_bin(good):
    os.rename(weights_path(good), os.path.join(good, "pytorch_model.bin"))
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="pytorch_model.bin: not a torch.save zip"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_other_model_type(good):
    edit_config(good, model_type="llama")
    with pytest.raises(ValueError, match="model_type 'llama'"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)
    with pytest.raises(ValueError, match="model_type 'llama'"):
        nemotron_c.AutoConfig.from_pretrained(good)


def test_config_not_json(good):
    with open(os.path.join(good, "config.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_attention_heads": 3}, "multiple of num_key_value_heads|shape"),
        ({"hidden_size": -4}, "positive"),
        ({"hidden_act": "prelu"}, "hidden_act .prelu."),
        ({"rope_parameters": {"rope_type": "stretchy", "factor": 2.0}}, "stretchy"),  # dynamic is read now
        ({"vocab_size": 97}, "shape"),
        ({"intermediate_size": 100}, "shape"),
        ({"head_dim": 8}, "shape"),
    ],
)
def test_config_inconsistent_with_weights(good, changes, message):
    edit_config(good, **changes)
    with pytest.raises((ValueError, NotImplementedError), match=message):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


# int8 / uint8 linear weights are the values of a nemotron_c int8 / int4 checkpoint, refused without its
# quantization_config; other dtypes are converted as Transformers converts them (test_checkpoint_dtypes)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_unsupported_stored_dtype(good, dtype):
    def change(tensors):
        name = "model.layers.0.mlp.up_proj.weight"
        tensors[name] = tensors[name].astype(dtype)

    rewrite_weights(good, change)
    with pytest.raises(ValueError, match="model.layers.0.mlp.up_proj.weight.*(I8|F64|U8)"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


@pytest.mark.parametrize("dtype, size", [("F4", lambda n: n // 2), ("F6_E2M3", lambda n: n * 6 // 8)])
def test_sub_byte_dtype_named(good, dtype, size):
    # Transformers fails on these too (a shape error for F4; safetensors does not know F6_E2M3)
    tensors = load_file(weights_path(good))
    header, data, offset = {}, bytearray(), 0
    for name, array in tensors.items():
        raw, stored = array.tobytes(), "F32"
        if name == "model.layers.1.self_attn.q_proj.weight":
            raw, stored = raw[: size(array.size)], dtype
        header[name] = {"dtype": stored, "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    write_raw_safetensors(weights_path(good), header, bytes(data))
    with pytest.raises(ValueError, match=f"q_proj.weight.*{dtype}, which cannot be converted"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_missing_tensor_named(good):
    rewrite_weights(good, lambda t: t.pop("model.layers.1.self_attn.v_proj.weight"))
    with pytest.raises(ValueError, match="model.layers.1.self_attn.v_proj.weight"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_missing_lm_head_is_not_silently_random(good):
    rewrite_weights(good, lambda t: t.pop("lm_head.weight"))
    with pytest.raises(ValueError, match="lm_head.weight"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_wrong_shape_named(good):
    def change(tensors):
        tensors["model.layers.0.self_attn.o_proj.weight"] = tensors["model.layers.0.self_attn.o_proj.weight"][:, :-1].copy()

    rewrite_weights(good, change)
    with pytest.raises(ValueError, match="model.layers.0.self_attn.o_proj.weight.*shape"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


@pytest.mark.parametrize("keep", [0, 4, 7, 100, -100])
def test_truncated_file(good, keep):
    path = weights_path(good)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:keep] if keep >= 0 else data[:keep])
    with pytest.raises(SafetensorsFormatError):
        nemotron_c.AutoModelForCausalLM.from_pretrained(good)


def test_format_errors_are_value_errors():
    assert issubclass(SafetensorsFormatError, ValueError)
    assert issubclass(SafetensorsFormatError, nemotron_c.FormatError)


FLOATS = np.arange(12, dtype=np.float32).tobytes()


@pytest.mark.parametrize(
    "header, data, message",
    [
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
          "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 20]}}, FLOATS, "overlap"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 100]}}, FLOATS, "outside the data area"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [40, 52]}}, FLOATS, "outside the data area"),
        ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, FLOATS, "needs 16 bytes"),
        ({"a": {"dtype": "F32", "shape": [-3], "data_offsets": [0, 12]}}, FLOATS, "shape"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [12, 0]}}, FLOATS, "outside"),
        ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0]}}, FLOATS, "pair"),
        ({"a": {"dtype": "Q4", "shape": [3], "data_offsets": [0, 12]}}, FLOATS, "unknown dtype"),
        ({"a": [1, 2]}, FLOATS, "not a JSON object"),
        ({"__metadata__": 5}, FLOATS, "__metadata__"),
        ([1, 2, 3], FLOATS, "not a JSON object"),
    ],
)
def test_malformed_headers(tmp_path, header, data, message):
    path = str(tmp_path / "bad.safetensors")
    write_raw_safetensors(path, header, data)
    with pytest.raises(SafetensorsFormatError, match=message):
        read_safetensors(path)


A = {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}


@pytest.mark.parametrize("metadata", [{"format": "pt"}, {"format": "tf"}, {}, None, {"format": 1}, {"a": {"b": "c"}},
                                      ["x"], 5, "pt"], ids=str)
def test_metadata_read_as_the_safetensors_library_reads_it(tmp_path, metadata):
    # Transformers reads no metadata (not even "format") but safe_open refuses what is not an object of strings
    path = str(tmp_path / "meta.safetensors")
    write_raw_safetensors(path, {"__metadata__": metadata, "a": A}, FLOATS[:12])
    try:
        expected = load_file(path)
    except Exception as e:  # safetensors_rust.SafetensorError
        with pytest.raises(SafetensorsFormatError, match="__metadata__ is not a JSON object of strings"):
            read_safetensors(path)
        assert "invalid type" in str(e)
    else:
        assert np.array_equal(read_safetensors(path)["a"].array("float32"), expected["a"])


@pytest.mark.parametrize("header, data", [
    ({"a": A}, FLOATS),  # bytes after the last tensor
    ({"a": A, "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}}, FLOATS[:24]),  # a gap
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, FLOATS[:12]),  # a gap before the first
    ({"a": A, "b": {"dtype": "F4", "shape": [3], "data_offsets": [12, 14]}}, FLOATS[:14]),  # half a byte
    ({"a": A, "b": {"dtype": "F4", "shape": [6], "data_offsets": [12, 16]}}, FLOATS[:16]),  # 3 bytes, not 4
    ({"a": A, "b": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [12, 15]}}, FLOATS[:15]),  # fine
    ({"a": A, "b": {"dtype": "F32", "shape": [0], "data_offsets": [12, 12]}}, FLOATS[:12]),  # fine
], ids=["trailing", "gap", "leading_gap", "f4_half_byte", "f4_size", "f6", "empty"])
def test_data_area_tiled_as_the_safetensors_library_requires(tmp_path, header, data):
    path = str(tmp_path / "tiles.safetensors")
    write_raw_safetensors(path, header, data)
    try:
        from safetensors import safe_open
        with safe_open(path, framework="numpy") as f:
            names = set(f.keys())
    except Exception as e:  # safetensors_rust.SafetensorError
        with pytest.raises(SafetensorsFormatError, match="belong to no tensor|cover 12 bytes|whole bytes|needs"):
            read_safetensors(path)
        assert "metadata" in str(e) or "offset" in str(e).lower() or "invalid" in str(e).lower(), e
    else:
        assert set(read_safetensors(path)) == names


@pytest.mark.parametrize("dims", [[1] * 10**5, [2**62] * 10**5])
def test_too_many_dimensions_refused_at_once(tmp_path, dims):
    # 10**5 dimensions of 2**62 took the element count's product minutes before the shape was bounded
    path = str(tmp_path / "dims.safetensors")
    write_raw_safetensors(path, {"a": {"dtype": "F32", "shape": dims, "data_offsets": [0, 4]}}, FLOATS)
    with pytest.raises(SafetensorsFormatError, match=r"dims.safetensors: tensor 'a': shape of 100000 dimensions"):
        read_safetensors(path)


def test_huge_dimensions_refused_as_the_count_grows(tmp_path):
    path = str(tmp_path / "huge.safetensors")
    write_raw_safetensors(path, {"a": {"dtype": "F32", "shape": [2**62] * 64, "data_offsets": [0, 4]}}, FLOATS)
    with pytest.raises(SafetensorsFormatError, match=r"huge.safetensors: tensor 'a': .* more elements than the data"):
        read_safetensors(path)


def test_header_length_beyond_file_and_garbage(tmp_path):
    path = str(tmp_path / "bad.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 2**63) + b"{}")
    with pytest.raises(SafetensorsFormatError, match="runs past the end"):
        read_safetensors(path)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", 4) + b"\xff\xfe\x00{")
    with pytest.raises(SafetensorsFormatError, match="not valid JSON"):
        read_safetensors(path)


def test_sharded_index_cannot_escape_directory(written, tmp_path):
    directory, index_path, index = sharded_copy(written, tmp_path)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(os.path.join(directory, next(iter(index["weight_map"].values()))), outside)
    for escape in ("../outside.safetensors", str(outside)):
        bad = dict(index)
        bad["weight_map"] = {k: escape for k in index["weight_map"]}
        with open(index_path, "w") as f:
            json.dump(bad, f)
        with pytest.raises(SafetensorsFormatError, match="outside the checkpoint directory"):
            nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_sharded_index_naming_missing_tensor(written, tmp_path):
    # Transformers 5 reads the listed shards whole and ignores a name the weight_map lists but no shard holds
    directory, index_path, index = sharded_copy(written, tmp_path)
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(IDS).logits
    first_shard = next(iter(index["weight_map"].values()))
    index["weight_map"]["model.ghost.weight"] = first_shard
    with open(index_path, "w") as f:
        json.dump(index, f)
    assert np.array_equal(nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(IDS).logits, reference)
    with open(index_path, "w") as f:
        f.write("[]")
    with pytest.raises(SafetensorsFormatError, match="weight_map"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


# JSON json.loads refuses with a bare ValueError (not a JSONDecodeError) or a RecursionError
HOSTILE_JSON = {"integer_of_5000_digits": "9" * 5000, "nested_100000_deep": "[" * 100_000 + "]" * 100_000}


@pytest.mark.parametrize("value", HOSTILE_JSON.values(), ids=list(HOSTILE_JSON))
def test_hostile_json_is_refused_naming_the_file(written, tmp_path, value):
    header = ('{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}, "__metadata__": {"x": %s}}' % value)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + FLOATS)
    with pytest.raises(SafetensorsFormatError, match=r"bad.safetensors: header is not valid JSON"):
        read_safetensors(str(path))

    directory, index_path, _ = sharded_copy(written, tmp_path)
    with open(index_path, "w") as f:
        f.write('{"metadata": {"total_size": %s}, "weight_map": {}}' % value)
    with pytest.raises(SafetensorsFormatError, match=r"model.safetensors.index.json: not valid JSON"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)

    directory = copy_checkpoint(written(), tmp_path / "config")
    config_path = os.path.join(directory, "config.json")
    with open(config_path) as f:
        config = f.read().rstrip().rstrip("}")
    with open(config_path, "w") as f:
        f.write(config + ', "x": %s}' % value)
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)

    directory = copy_checkpoint(written(), tmp_path / "generation")
    with open(os.path.join(directory, "generation_config.json"), "w") as f:
        f.write('{"x": %s}' % value)
    # Transformers falls back to config.json only from a JSONDecodeError; a hostile file raises (ValueError there)
    with pytest.raises(ValueError, match=r"generation_config.json is not valid JSON: an integer of over 4300"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_nul_byte_in_a_shard_name_is_refused_naming_the_index(written, tmp_path):
    directory, index_path, index = sharded_copy(written, tmp_path)
    index["weight_map"]["model.embed_tokens.weight"] = "a\0b.safetensors"
    with open(index_path, "w") as f:
        json.dump(index, f)
    with pytest.raises(SafetensorsFormatError, match=r"index.json: tensor 'model.embed_tokens.weight' maps to .*not a file"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_config_read_from_the_path_given_as_config(good, tmp_path):
    # Transformers reads config= given as a path (a folder, a config.json file or a Hub id) there
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(good)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(os.path.join(good, "config.json"), elsewhere / "config.json")
    edit_config(str(elsewhere), eos_token_id=7)
    ids = np.array([[1, 5, 9, 3]])
    for config in (str(elsewhere), elsewhere / "config.json"):
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(good, config=config)
        assert model.config.eos_token_id == 7
        assert np.array_equal(model(ids).logits, reference(ids).logits)


def test_every_tensor_of_a_listed_shard_is_read(written, tmp_path):
    # Transformers 5 reads each listed shard whole; a tensor the weight_map leaves out was refused as missing
    directory, index_path, index = sharded_copy(written, tmp_path)
    ids = np.array([[1, 5, 9, 3]])
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(ids).logits
    shards = sorted(set(index["weight_map"].values()))
    listed = list(index["weight_map"].values())
    left_out = next(name for name, shard in index["weight_map"].items() if listed.count(shard) > 1)  # still listed
    del index["weight_map"][left_out]
    with open(index_path, "w") as f:
        json.dump(index, f)
    assert np.array_equal(nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(ids).logits, reference)

    # an unlisted tensor in two shards: the same copy twice is read (as Transformers reads it); of other values,
    # which one is meant is unknown (Transformers takes the last shard's)
    for value in (0, 1):
        for i, shard in enumerate(shards[:2]):
            tensors = load_file(os.path.join(directory, shard))
            extra = np.full(2, value * i, np.float32)
            save_file({**tensors, "extra.weight": extra}, os.path.join(directory, shard), metadata={"format": "pt"})
        if value == 0:
            assert np.array_equal(nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(ids).logits, reference)
    with pytest.raises(SafetensorsFormatError, match=r"index.json: tensor 'extra.weight', which the weight_map .* "
                                                     r"different values"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)


def test_unaligned_tensor_is_copied_not_misread(good):
    """A file whose tensor offsets are not multiples of 4 still loads and gives the same logits."""
    expected = nemotron_c.AutoModelForCausalLM.from_pretrained(good)(IDS).logits
    tensors = load_file(weights_path(good))
    # a 2-byte tensor first shifts every other one off 4-byte alignment (the library refuses gaps between tensors)
    header = {"__metadata__": {"format": "pt"}, "extra.pad": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}
    data, offset = bytearray(2), 2
    for name, array in tensors.items():
        raw = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    write_raw_safetensors(weights_path(good), header, bytes(data))
    assert load_file(weights_path(good)).keys() == header.keys() - {"__metadata__"}
    got = nemotron_c.AutoModelForCausalLM.from_pretrained(good)(IDS).logits
    np.testing.assert_array_equal(got, expected)


def test_bad_inputs_raise(written):
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(written())
    with pytest.raises(ValueError, match="token id -1"):
        model(np.array([[1, -1, 3]]))
    with pytest.raises(ValueError, match="token id 96"):
        model(np.array([[1, 96, 3]]))
    with pytest.raises(ValueError, match="1-D or 2-D"):
        model(np.zeros((1, 2, 3), dtype=np.int64))
    with pytest.raises(TypeError, match="integers"):
        model(np.array([[1.0, 2.0]]))
    with pytest.raises(TypeError, match="integers"):
        model(np.array([[True, False]]))
    with pytest.raises(ValueError, match="empty"):
        model(np.zeros((1, 0), dtype=np.int64))
    with pytest.raises(ValueError, match="ragged"):
        model([[1, 2], [3]])
    with pytest.raises(TypeError, match="input_ids must be a NumPy array, a torch tensor or a nested list, not str"):
        model("hello")
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(IDS, attention_mask=np.ones((1, 3)))
    with pytest.raises(ValueError, match="only 0"):
        model(IDS, attention_mask=np.full((1, 4), 2))
    with pytest.raises(ValueError, match="position_ids"):
        model(IDS, position_ids=np.arange(3))
    # negative positions are rotated as Transformers rotates them (tests/test_modeling.py compares them)
    assert np.isfinite(model(IDS, position_ids=-np.ones((1, 4), dtype=np.int64)).logits).all()
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(IDS, logits_to_keep=np.array([7]))
    with pytest.raises(TypeError, match="NemotronCache"):
        model(IDS, past_key_values=((np.zeros(1), np.zeros(1)),))
    cache = model(IDS).past_key_values
    with pytest.raises(ValueError, match="sequences"):
        model(np.array([[1], [2]]), past_key_values=cache)
    with pytest.raises(TypeError, match="unexpected keyword"):
        model(IDS, not_an_argument=1)
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(inputs_embeds=np.zeros((1, 2, 63), dtype=np.float32))
    with pytest.raises(ValueError, match="labels"):
        model(IDS, labels=np.array([[1, 2]]))
    # the model is still usable after every error
    assert model(IDS).logits.shape == (1, 4, 96)


def test_storage_dtypes_agree_with_the_core_table():
    """loading's dtype names and sizes are those of the core's dtype table, exported as _core.DTYPE_INFO.
    A checkpoint stores the float dtypes as themselves; the quantized ones (scaled: int8, int4) are made at load time
    or read as nemotron_c's own format (checkpoint/quantized.py), whose values are I8 or U8."""
    assert not hasattr(_core, "DTYPES")
    floats = {name: info for name, info in _core.DTYPE_INFO.items() if not info.scaled}
    assert set(STORAGE_NUMPY) == set(floats)
    for name, info in _core.DTYPE_INFO.items():
        assert (info.block_size == 1) == (not info.scaled)
    for name, info in floats.items():
        assert np.dtype(STORAGE_NUMPY[name]).itemsize == info.itemsize
    supported = {core: size for size, core in SAFETENSORS_DTYPES.values() if core is not None}
    assert supported == {name: info.itemsize for name, info in floats.items()}



def test_tensor_named_twice_in_header_is_refused(tmp_path):
    # json.loads alone keeps the second entry; the safetensors library refuses the file
    path = str(tmp_path / "twice.safetensors")
    entry = '{"dtype": "F32", "shape": [1], "data_offsets": [%d, %d]}'
    header = ('{"a": %s, "a": %s}' % (entry % (0, 4), entry % (4, 8))).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + np.array([1, 2], np.float32).tobytes())
    with pytest.raises(Exception) as reference:
        load_file(path)
    with pytest.raises(SafetensorsFormatError, match="'a' twice"):
        read_safetensors(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_shard_naming_a_fifo_or_device_is_refused_at_once(written, tmp_path):
    directory, _, index = sharded_copy(written, tmp_path)
    first = next(iter(index["weight_map"].values()))
    os.remove(os.path.join(directory, first))
    os.mkfifo(os.path.join(directory, first))  # open() of a FIFO with no writer blocks forever
    with pytest.raises(ValueError, match="not a regular file"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
    for reader in (read_safetensors, nemotron_c.checkpoint.torch_bin.read_state_dict):
        with pytest.raises(ValueError, match="not a regular file"):
            reader(os.path.join(directory, first))
        with pytest.raises(ValueError, match="not a regular file"):
            reader("/dev/zero")


def test_weights_replaced_atomically_after_loading_keep_working(good):
    # The weights are memory-mapped: replacing the file by a rename (what save_pretrained, huggingface_hub and
    # `cp` to a temporary then `mv` do) leaves the loaded model on the old inode, unchanged.
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(good)
    before = model(IDS).logits
    path = weights_path(good)
    tensors = load_file(path)
    save_file({k: np.zeros_like(v) for k, v in tensors.items()}, path + ".tmp", metadata={"format": "pt"})
    os.replace(path + ".tmp", path)
    np.testing.assert_array_equal(model(IDS).logits, before)


def test_layers_beyond_num_hidden_layers_warn_as_unused(good):
    # Transformers loads the first layers and warns that the others' weights are unused; so do we (a pruned
    # model is a legitimate use), naming the layers
    with pytest.warns(UserWarning, match="layers 1 beyond config.num_hidden_layers = 1: their weights are not used"):
        model = nemotron_c.AutoModelForCausalLM.from_pretrained(good, num_hidden_layers=1)
    assert np.isfinite(model(IDS).logits).all()


def test_fortran_ordered_and_strided_ids_are_accepted(written):
    # a Fortran-ordered int array was refused as "must be a C-contiguous array"
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(written())
    ids = np.array([[1, 5, 7, 9], [3, 2, 8, 4]])
    expected = model(ids).logits
    for other in (np.asfortranarray(ids), np.asfortranarray(ids.astype(np.int32)), np.repeat(ids, 2, axis=1)[:, ::2]):
        np.testing.assert_array_equal(model(other, attention_mask=np.asfortranarray(np.ones_like(ids))).logits,
                                      expected)
        np.testing.assert_array_equal(model.generate(other, max_new_tokens=2, do_sample=False),
                                      model.generate(ids, max_new_tokens=2, do_sample=False))


def test_a_listed_tensor_that_another_shard_holds_with_other_values_is_refused(written, tmp_path):
    """The weight_map lists a tensor in one shard and another shard holds it too: with the same values it loads;
    with others it is refused, naming both (Transformers silently takes the last shard's copy, ours took the listed
    one: both loaded, 0.38 apart)."""
    directory, _, index = sharded_copy(written, tmp_path)
    ids = np.array([[1, 5, 9, 3]])
    reference = nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(ids).logits
    name = "model.embed_tokens.weight"
    listed = index["weight_map"][name]
    other = next(shard for shard in sorted(set(index["weight_map"].values())) if shard != listed)
    original = load_file(os.path.join(directory, listed))[name]
    tensors = load_file(os.path.join(directory, other))
    save_file({**tensors, name: original}, os.path.join(directory, other), metadata={"format": "pt"})
    assert np.array_equal(nemotron_c.AutoModelForCausalLM.from_pretrained(directory)(ids).logits, reference)
    save_file({**tensors, name: np.zeros_like(original)}, os.path.join(directory, other), metadata={"format": "pt"})
    with pytest.raises(SafetensorsFormatError, match=f"tensor '{name}', which the weight_map lists in .*{listed}, "
                                                     f"is also in .*{other} with different values"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(directory)
