"""pytorch_model.bin read without torch: logits equal Transformers' on the same files; hostile files refused."""
import collections
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
import transformers

import nemotron_c
from nemotron_c.checkpoint import torch_bin
from nemotron_c.checkpoint.reading import read_checkpoint, read_torch_bin
from helpers.compare import assert_close
from helpers.transformers_reference import build_hf_model, hf_from_pretrained, hf_logits, save_bin

IDS = np.array([[1, 5, 7, 9, 3, 60], [2, 4, 8, 16, 32, 64]])


def slices_of_one_tensor(model):
    """Every tensor a view, at its own storage offset, of one flat tensor: a single storage in the file."""
    state = model.state_dict()
    flat = torch.cat([t.reshape(-1) for t in state.values()])
    views, offset = {}, 0
    for name, t in state.items():
        views[name] = flat[offset : offset + t.numel()].view(t.shape)
        offset += t.numel()
    return views


def parameters_with_state(model):
    """nn.Parameters as saved with keep_vars=True; one carries an attribute, so torch writes
    _rebuild_parameter_with_state for it."""
    state = model.state_dict(keep_vars=True)
    state["model.norm.weight"].marked = True
    return state


CASES = {
    "f32_untied": dict(dtype=torch.float32, tie=False),
    "bf16_tied": dict(dtype=torch.bfloat16, tie=True),
    "f16_parameters": dict(dtype=torch.float16, tie=False, state=parameters_with_state),
    "f32_tied_sharded": dict(dtype=torch.float32, tie=True, shard_size=40_000),
    "bf16_untied_sharded": dict(dtype=torch.bfloat16, tie=False, shard_size=30_000),
    "f32_slices_of_one_storage": dict(dtype=torch.float32, tie=False, state=slices_of_one_tensor),
    "bf16_tied_slices": dict(dtype=torch.bfloat16, tie=True, state=slices_of_one_tensor),
}

# Loads every case with nemotron_c in a process where `import torch` fails, and saves the logits.
TORCHLESS = """
import sys
sys.modules["torch"] = None
import numpy as np
import nemotron_c
ids, out, *paths = sys.argv[1:]
ids = np.load(ids)
logits = {}
for path in paths:
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    logits[path] = model(ids).logits
assert "torch" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
np.savez(out, *[logits[p] for p in paths])
"""


@pytest.fixture(scope="session")
def bin_cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("bin_checkpoints")
    paths = {}
    for name, case in CASES.items():
        model = build_hf_model(seed=len(paths), tie_word_embeddings=case["tie"]).to(case["dtype"])
        state = case["state"](model) if "state" in case else None
        paths[name] = save_bin(root / name, model, state, case.get("shard_size"))
    np.save(root / "ids.npy", IDS)
    subprocess.run([sys.executable, "-c", TORCHLESS, str(root / "ids.npy"), str(root / "ours.npz"), *paths.values()],
                   check=True)
    ours = np.load(root / "ours.npz")
    return {name: (path, ours[f"arr_{i}"]) for i, (name, path) in enumerate(paths.items())}


@pytest.mark.parametrize("name", CASES)
def test_bin_logits_equal_transformers_without_torch(bin_cases, name):
    path, ours = bin_cases[name]
    assert not os.path.exists(os.path.join(path, "model.safetensors"))
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS), what=name)


def test_tied_weights_share_one_storage_read_in_place(bin_cases):
    path, _ = bin_cases["bf16_tied"]
    tensors = read_checkpoint(path)
    head, embed = tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]
    assert head.dtype == embed.dtype == "BF16"
    array = embed.array("bfloat16")
    assert not array.flags.owndata and not array.flags.writeable  # a view of the read-only map, not a copy
    assert np.shares_memory(array, head.array("bfloat16"))


def test_safetensors_preferred_over_bin(bin_cases, tmp_path):
    path, _ = bin_cases["f32_untied"]
    other = build_hf_model(seed=99)
    other.save_pretrained(tmp_path / "both")
    save_bin(tmp_path / "both", build_hf_model(seed=5))  # a different model's .bin beside it is ignored
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(str(tmp_path / "both"))(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(str(tmp_path / "both")), IDS))
    assert_close(ours, hf_logits(other, IDS))


def test_non_contiguous_tensors_are_copied_as_transformers_copies_them(tmp_path):
    # torch.save writes a view with its whole storage; it was refused
    model = build_hf_model().to(torch.bfloat16)
    state = dict(model.state_dict())
    state["model.layers.0.mlp.up_proj.weight"] = state["model.layers.0.mlp.up_proj.weight"].t().contiguous().t()
    wide = torch.cat([state["model.layers.1.mlp.down_proj.weight"]] * 3, dim=1)
    state["model.layers.1.mlp.down_proj.weight"] = wide[:, 1::3]  # a strided slice at an offset
    norm = state["model.norm.weight"]
    state["model.norm.weight"] = torch.stack([norm, -norm], dim=1)[:, 0]
    views = ("model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight")
    assert not any(state[name].is_contiguous() for name in views)
    path = save_bin(tmp_path / "strided", model, state)
    tensors = read_checkpoint(path)
    for name, t in state.items():
        assert bytes(tensors[name].data) == t.contiguous().view(torch.uint8).numpy().tobytes(), name
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))


def test_unsupported_dtype_named_at_use(tmp_path):
    path = save_bin(tmp_path / "f64", build_hf_model().to(torch.float64))
    assert read_checkpoint(path)["model.norm.weight"].dtype == "F64"
    with pytest.raises(ValueError, match="stored as F64"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)


NEWER_DTYPES = {torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64", torch.float8_e4m3fn: "F8_E4M3",
                torch.float8_e5m2: "F8_E5M2"}


def test_unused_tensors_of_newer_dtypes_are_read_and_ignored(tmp_path):
    # torch.save writes these with _rebuild_tensor_v3 on an UntypedStorage; the whole file used to be refused
    model = build_hf_model()
    extras = {f"extra.{name}": torch.arange(6).reshape(2, 3).to(dtype) for dtype, name in NEWER_DTYPES.items()}
    path = save_bin(tmp_path / "newer", model, {**model.state_dict(), **extras})
    tensors = read_torch_bin(os.path.join(path, "pytorch_model.bin"))
    for name, t in extras.items():
        assert (tensors[name].dtype, tensors[name].shape) == (name[len("extra."):], (2, 3))
        assert bytes(tensors[name].data) == t.view(torch.uint8).numpy().tobytes(), name
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))


# ------------------------------------------------------------------ hostile and broken files

class Stored:
    """A storage in a hand-written torch.save pickle: its class name in torch, key and element count."""

    def __init__(self, storage_type, key, numel):
        self.pid = ("storage", getattr(torch, storage_type), key, "cpu", numel)


class Rebuilt:
    """A tensor in a hand-written torch.save pickle, with whatever offset, size and stride a test wants."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Stored) else None


def write_zip(path, entries, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in entries:
            z.writestr(name, data)


def write_hand_made(path, state, storages, byteorder=b"little", protocol=2):
    """A torch.save-shaped zip: archive/data.pkl of `state`, archive/data/<key> for each of `storages`."""
    buffer = io.BytesIO()
    TorchPickler(buffer, protocol=protocol, fix_imports=False).dump(state)
    entries = [("archive/data.pkl", buffer.getvalue()), ("archive/byteorder", byteorder)]
    entries += [(f"archive/data/{key}", data) for key, data in storages.items()]
    write_zip(path, entries)
    return str(path)


def one_tensor(path, offset=0, size=(2, 3), stride=(3, 1), numel=6, data=bytes(24), **kwargs):
    storage = Stored("FloatStorage", "0", numel)
    return write_hand_made(path, {"w": Rebuilt(storage, offset, size, stride)}, {"0": data}, **kwargs)


def entries_of(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def rewrite_declaring(path, index, file_size):
    """Writes the zip again with entry `index` declaring file_size bytes in the central directory (its data kept)."""
    entries = entries_of(path)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            z.writestr(name, data)
        z.filelist[index].file_size = z.filelist[index].compress_size = file_size(z.filelist[index])


def test_hand_made_file_is_read(tmp_path):
    data = np.arange(12, dtype=np.float32).tobytes()
    path = one_tensor(tmp_path / "ok.bin", offset=4, size=(2, 4), stride=(4, 1), numel=12, data=data)
    tensor = read_torch_bin(path)["w"]
    assert tensor.shape == (2, 4)
    assert tensor.array("float32").tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]


class Payload:
    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def __reduce__(self):
        return self.function, (self.argument,)


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL is refused before unpickling; STACK_GLOBAL by find_class
@pytest.mark.parametrize("function, named", [(os.system, "posix.system"), (eval, "builtins.eval"),
                                             (subprocess.call, "subprocess.call")])
def test_code_in_the_pickle_never_runs(tmp_path, monkeypatch, protocol, function, named):
    if protocol == 2:  # a GLOBAL opcode is refused by the opcode check, before an unpickler exists
        monkeypatch.setattr(torch_bin, "StateDictUnpickler", None)
    marker = tmp_path / "ran"
    command = {os.system: f"touch {marker}", eval: f"open({str(marker)!r}, 'w')",
               subprocess.call: ["touch", str(marker)]}[function]
    path = write_hand_made(tmp_path / "evil.bin", {"w": Payload(function, command)}, {}, protocol=protocol)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=rf"refers to {named}\b.*refused"):
        read_torch_bin(path)
    assert not marker.exists()


def test_unknown_torch_global_is_refused_by_name(tmp_path):
    state = {"w": Payload(torch._utils._rebuild_sparse_tensor, 0)}
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"torch\._utils\._rebuild_sparse_tensor"):
        read_torch_bin(write_hand_made(tmp_path / "sparse.bin", state, {}))


def test_huge_memo_index_is_refused(tmp_path):
    data_pkl = b"\x80\x02N" + b"r" + (2**31).to_bytes(4, "little") + b"."  # LONG_BINPUT 2**31
    write_zip(tmp_path / "memo.bin", [("archive/data.pkl", data_pkl)])
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="memo index 2147483648"):
        read_torch_bin(tmp_path / "memo.bin")


def test_object_building_opcode_is_refused(tmp_path):
    data_pkl = b"\x80\x02(\x82\x01."  # MARK EXT1 1
    write_zip(tmp_path / "ext.bin", [("archive/data.pkl", data_pkl)])
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="opcode EXT1"):
        read_torch_bin(tmp_path / "ext.bin")


def test_missing_storage_entry(tmp_path):
    storage = Stored("FloatStorage", "7", 6)
    path = write_hand_made(tmp_path / "missing.bin", {"w": Rebuilt(storage, 0, (2, 3), (3, 1))}, {"0": bytes(24)})
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="storage '7' has no entry archive/data/7"):
        read_torch_bin(path)


def test_storage_size_must_match_its_entry(tmp_path):
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="needs 24 bytes, its entry holds 20"):
        read_torch_bin(one_tensor(tmp_path / "short.bin", data=bytes(20)))


@pytest.mark.parametrize("offset, size, stride", [(1, (2, 3), (3, 1)), (0, (2, 4), (4, 1)),
                                                  (0, (2**40, 2**40), (2**40, 1)), (2**62, (1,), (1,))])
def test_tensor_outside_its_storage(tmp_path, offset, size, stride):
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="fall outside the storage's 6 elements"):
        read_torch_bin(one_tensor(tmp_path / "outside.bin", offset=offset, size=size, stride=stride))


@pytest.mark.parametrize("dims", [(1,) * 10**5, (2**62,) * 10**5])
def test_too_many_dimensions_refused_at_once(tmp_path, dims):
    # 10**5 dimensions of 2**62 took the element count's product minutes and gigabytes before it was bounded
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"storage '0': 100000 dimensions, more than 64"):
        read_torch_bin(one_tensor(tmp_path / "dims.bin", size=dims, stride=dims))


def test_stride_of_too_many_dimensions_refused_unprinted(tmp_path):
    # it was refused as malformed, with all 10**5 strides in the message
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"storage '0': 100000 dimensions, more than 64$"):
        read_torch_bin(one_tensor(tmp_path / "stride.bin", size=(2, 3), stride=(2**62,) * 10**5))


def test_huge_dimensions_refused_as_the_count_grows(tmp_path):
    dims = (2**62,) * 64
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"outside.bin: .*outside the storage's 6 elements"):
        read_torch_bin(one_tensor(tmp_path / "outside.bin", size=dims, stride=dims))


@pytest.mark.parametrize("offset, size, stride", [(-1, (2, 3), (3, 1)), (0, (2, -3), (3, 1)),
                                                  (0, (2, 3), (3,)), (0, [2, 3], (3, 1)), (0, (2.0, 3), (3, 1))])
def test_malformed_offsets_and_shapes(tmp_path, offset, size, stride):
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="not non-negative integers"):
        read_torch_bin(one_tensor(tmp_path / "bad.bin", offset=offset, size=size, stride=stride))


def test_strided_view_is_read_and_checked(tmp_path):
    data = np.arange(6, dtype=np.float32).tobytes()
    tensor = read_torch_bin(one_tensor(tmp_path / "t.bin", size=(3, 2), stride=(1, 3), data=data))["w"]
    assert np.array_equal(tensor.array("float32"), np.arange(6, dtype=np.float32).reshape(2, 3).T)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"stride \(1, 4\) .* reaches element 6, outside"):
        read_torch_bin(one_tensor(tmp_path / "t.bin", size=(3, 2), stride=(1, 4), data=data))


@pytest.fixture
def real_bin(tmp_path):
    return save_bin(tmp_path / "real", build_hf_model())


def test_truncated_zip(real_bin):
    path = os.path.join(real_bin, "pytorch_model.bin")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="not a readable zip archive.*truncated"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(real_bin)


def test_truncated_storage_past_end_of_file(tmp_path):
    path = one_tensor(tmp_path / "cut.bin")
    rewrite_declaring(path, -1, lambda info: 10**9)  # a storage larger than the file
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="past the end of the file"):
        read_torch_bin(path)


def test_overlapping_entries(tmp_path):
    path = one_tensor(tmp_path / "overlap.bin")
    rewrite_declaring(path, 0, lambda info: info.file_size + 100)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="entries 'archive/data.pkl' and .* overlap"):
        read_torch_bin(path)


def test_compressed_entry_is_never_inflated(real_bin):
    """A deflated entry (a zip bomb's tool) is refused by its method, before anything is decompressed."""
    path = os.path.join(real_bin, "pytorch_model.bin")
    entries = entries_of(path)
    entries[-1] = ("real/bomb", bytes(50 * 2**20))
    write_zip(path, entries, method=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 2**20
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=r"is compressed \(zip method 8\).*save it again"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(real_bin)


def test_duplicate_entry_names(real_bin):
    path = os.path.join(real_bin, "pytorch_model.bin")
    entries = entries_of(path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        write_zip(path, entries + [entries[-1]])
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="two entries named"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(real_bin)


@pytest.mark.parametrize("dtype, tie, shard_size", [(torch.float32, False, None), (torch.bfloat16, True, None),
                                                     (torch.float16, False, 40_000)])
def test_legacy_format_is_read(tmp_path, dtype, tie, shard_size):
    # torch.save(..., _use_new_zipfile_serialization=False), torch < 1.6's format: torch.load reads it with
    # weights_only=True, and so Transformers
    model = build_hf_model(tie_word_embeddings=tie).to(dtype)
    path = save_bin(tmp_path / "legacy", model, shard_size=shard_size)
    rewritten = 0
    for name in os.listdir(path):
        if name.endswith(".bin"):
            file = os.path.join(path, name)
            torch.save(torch.load(file), file, _use_new_zipfile_serialization=False)
            assert not zipfile.is_zipfile(file)
            rewritten += 1
    assert rewritten == (1 if shard_size is None else len(set(json.load(open(
        os.path.join(path, "pytorch_model.bin.index.json")))["weight_map"].values())))  # every file, or none is legacy
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))


def legacy_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def test_legacy_format_read_in_place_with_shared_storages(tmp_path):
    flat = torch.arange(10, dtype=torch.float32)
    path = tmp_path / "views.bin"
    path.write_bytes(legacy_bytes({"a": flat[2:6].view(2, 2), "b": flat[6:9], "n": 3}))
    tensors = read_torch_bin(path)
    assert set(tensors) == {"a", "b"}
    assert np.array_equal(tensors["a"].array("float32"), [[2, 3], [4, 5]])
    assert np.array_equal(tensors["b"].array("float32"), [6, 7, 8])


def test_legacy_format_code_never_runs(tmp_path):
    data = legacy_bytes({"w": torch.zeros(2)})
    hostile = data.replace(b"collections\nOrderedDict\n", b"os\nsystem\n")
    assert hostile != data
    (tmp_path / "hostile.bin").write_bytes(hostile)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="refers to os.system"):
        read_torch_bin(tmp_path / "hostile.bin")


def test_legacy_format_truncated_anywhere(tmp_path):
    data = legacy_bytes(build_hf_model().state_dict())
    path = tmp_path / "cut.bin"
    for size in sorted({*range(0, 700, 7), *range(len(data) - 300, len(data), 5), *range(0, len(data), 997)}):
        path.write_bytes(data[:size])
        with pytest.raises(ValueError, match="cut.bin"):
            read_torch_bin(path)


def test_legacy_format_storage_sizes_checked(tmp_path):
    data = bytearray(legacy_bytes({"w": torch.zeros(3)}))
    count = data.rindex(struct.pack("<q", 3))
    data[count : count + 8] = struct.pack("<q", 2**40)
    (tmp_path / "size.bin").write_bytes(data)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="holds 1099511627776 elements"):
        read_torch_bin(tmp_path / "size.bin")


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 123456789\n"


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.safetensors"])
def test_git_lfs_pointer_is_named(real_bin, name):
    # a repo cloned without git-lfs holds pointers; Transformers fails on them with the format's own error
    os.remove(os.path.join(real_bin, "pytorch_model.bin"))
    with open(os.path.join(real_bin, name), "wb") as f:
        f.write(LFS_POINTER)
    with pytest.raises(ValueError, match=f"{name}: .*Git LFS pointer, not the weights: run `git lfs pull`"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(real_bin)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "text.bin").write_bytes(b"hello world")
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="not a torch.save zip archive"):
        read_torch_bin(tmp_path / "text.bin")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_big_endian_file_is_byteswapped_as_torch_load_does(tmp_path, dtype):
    # as a big-endian machine writes it: byteorder "big", every element's bytes reversed; it was refused
    model = build_hf_model(tie_word_embeddings=dtype == torch.bfloat16).to(dtype)
    path = save_bin(tmp_path / "big", model)
    file = os.path.join(path, "pytorch_model.bin")
    unit = torch.empty(0, dtype=dtype).element_size()
    entries = [(name, b"big" if name.endswith("/byteorder") else
                np.frombuffer(data, f"<u{unit}").astype(f">u{unit}").tobytes() if "/data/" in name else data)
               for name, data in entries_of(file)]
    write_zip(file, entries)
    assert torch.equal(torch.load(file)["model.norm.weight"], model.state_dict()["model.norm.weight"])
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))
    assert_close(ours, hf_logits(model.float(), IDS))


def test_big_endian_legacy_file_is_refused(tmp_path):
    # torch.load does not swap a legacy file's bytes: its values would be wrong
    data = legacy_bytes({"w": torch.zeros(2)})
    flag = data.index(b"\x88", data.index(b"little_endian"))  # its value, NEWTRUE (after the key's memo PUT)
    (tmp_path / "be.bin").write_bytes(data[:flag] + b"\x89" + data[flag + 1:])
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="big-endian machine in the legacy format"):
        read_torch_bin(tmp_path / "be.bin")


def test_unknown_byteorder_is_refused(tmp_path):
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="byteorder entry is b'middle'"):
        read_torch_bin(one_tensor(tmp_path / "be.bin", byteorder=b"middle"))


def test_nested_state_dict_is_refused(tmp_path):
    model = build_hf_model()
    torch.save({"state_dict": model.state_dict()}, tmp_path / "nested.bin")
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="'state_dict'.*not a tensor"):
        read_torch_bin(tmp_path / "nested.bin")


def test_values_beside_the_tensors_are_ignored(tmp_path):
    # torch.load(weights_only=True) gives them; Transformers ignores them as unexpected keys (they were refused)
    model = build_hf_model()
    extras = {"global_step": 1200, "epoch": 3.5, "version": "1.0", "resumed": False, "scheduler": None,
              "shape": torch.Size([2, 3]), "device": torch.device("cpu"), "dtype": torch.float16, "steps": [1, 2],
              "seen": {3, 4}, "optimizer": {"lr": 0.1, "state": {"w": torch.ones(2)}},
              "counts": collections.Counter(a=2), "hash": b"\x00\xff", "buffer": bytearray(b"ab"), "z": 1 + 2j}
    state = dict(model.state_dict())
    state["model.norm.weight"] = state["model.norm.weight"].clone()
    state["model.norm.weight"].note = "a tensor with an attribute: torch.save writes _rebuild_from_type_v2"
    path = save_bin(tmp_path / "extras", model, {**state, **extras})
    assert set(extras).isdisjoint(read_torch_bin(os.path.join(path, "pytorch_model.bin")))
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))


@pytest.mark.parametrize("where", ["other_shard", "no_shard"])
def test_index_listing_a_tensor_elsewhere_reads_the_shards(tmp_path, where):
    # Transformers 5 reads each listed shard whole: the weight_map only chooses the files
    model = build_hf_model()
    path = save_bin(tmp_path / where, model, shard_size=40_000)
    index_path = os.path.join(path, "pytorch_model.bin.index.json")
    with open(index_path) as f:
        index = json.load(f)
    listed = list(index["weight_map"].values())
    moved, shard = next((name, shard) for name, shard in index["weight_map"].items() if listed.count(shard) > 1)
    index["weight_map"][moved] = next(other for other in listed if other != shard)  # its shard is still listed
    if where == "no_shard":
        index["weight_map"]["model.layers.0.not_a_tensor"] = shard
    with open(index_path, "w") as f:
        json.dump(index, f)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(path)(IDS).logits
    assert_close(ours, hf_logits(hf_from_pretrained(path), IDS))
    assert_close(ours, hf_logits(model, IDS))


@pytest.mark.parametrize("extra, named", [
    (lambda: __import__("argparse").Namespace(lr=0.1), "argparse.Namespace"),  # Megatron's "args"
    (lambda: np.zeros(3), "numpy"),
    (lambda: collections.deque([1]), "collections.deque"),
])
def test_objects_weights_only_refuses_are_refused_by_name(tmp_path, extra, named):
    # torch.load(weights_only=True), hence Transformers, refuses them; so do we, cleanly and without running them
    model = build_hf_model()
    path = save_bin(tmp_path / "objects", model, {**model.state_dict(), "extra": extra()})
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        transformers.NemotronForCausalLM.from_pretrained(path)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match=f"refers to {named}.*refused without importing"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)


def test_protocol_4_pickle_is_read(real_bin):
    # torch.load(weights_only=True), hence Transformers, refuses FRAME (protocol 4); the file is valid, so it is read
    file = os.path.join(real_bin, "pytorch_model.bin")
    state = torch.load(file)
    torch.save(state, file, pickle_protocol=4)
    with pytest.raises(pickle.UnpicklingError, match="Unsupported operand 149"):
        torch.load(file, weights_only=True)
    tensors = read_torch_bin(file)
    for name, t in state.items():
        assert bytes(tensors[name].data) == t.view(torch.uint8).numpy().tobytes(), name


def test_pickle_size_limit(real_bin, monkeypatch):
    monkeypatch.setattr(torch_bin, "MAX_PICKLE_BYTES", 1000)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="data.pkl of .* bytes exceeds 1000"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(real_bin)


def test_index_pointing_outside_the_directory(tmp_path):
    model = build_hf_model()
    path = save_bin(tmp_path / "sharded", model, shard_size=30_000)
    save_bin(tmp_path / "elsewhere", model)
    index_path = os.path.join(path, "pytorch_model.bin.index.json")
    with open(index_path) as f:
        index = json.load(f)
    index["weight_map"]["model.norm.weight"] = "../elsewhere/pytorch_model.bin"
    with open(index_path, "w") as f:
        json.dump(index, f)
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="outside the checkpoint directory"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path)


def test_use_safetensors_refuses_a_bin_only_folder(bin_cases):
    path, _ = bin_cases["f32_untied"]
    with pytest.raises(OSError, match=r"no file named model.safetensors found in"):  # Transformers'
        transformers.NemotronForCausalLM.from_pretrained(path, use_safetensors=True)
    with pytest.raises(OSError, match=r"no file named model.safetensors or model.safetensors.index.json found in"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(path, use_safetensors=True)
    nemotron_c.AutoModelForCausalLM.from_pretrained(path, use_safetensors=None)


def test_no_weights_names_every_file(tmp_path):
    build_hf_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="model.safetensors, .*pytorch_model.bin or pytorch_model.bin.index"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(str(tmp_path))


def test_bytearray_of_a_huge_count_is_refused_at_once(tmp_path):
    """bytearray(10**11) in a pickle of a few bytes would ask for 100 GB; torch.save never writes a bytearray from a
    count (its pickles give the bytes)."""
    state = {"w": Rebuilt(Stored("FloatStorage", "0", 6), 0, (2, 3), (3, 1)), "extra": Payload(bytearray, 10**11)}
    path = write_hand_made(tmp_path / "huge.bin", state, {"0": bytes(24)})
    with pytest.raises(nemotron_c.TorchCheckpointFormatError, match="bytes made from a int"):
        read_torch_bin(path)

