"""Hub ids ("org/name") resolved through huggingface_hub's cache, compared with Transformers on the same cache.

The cache is laid out by hand exactly as huggingface_hub lays it out (blobs, refs, snapshots of symlinks) and holds
a tiny random checkpoint and tokenizer. Nothing here may reach the network: every test runs with HF_HUB_OFFLINE=1
(in the environment, for subprocesses, and in huggingface_hub.constants, which read it at import).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap

import huggingface_hub
import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import build_hf_model, hf_from_pretrained, hf_logits, save_bin
from helpers.tokenizer_builders import build_all

import nemotron_c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = "nvidia/Tiny-Nemotron"
MAIN = "1" * 40  # refs/main, with a copy of the checkpoint in subfolder "sub"
DEV = "2" * 40   # refs/dev: another model, sharded
BIN = "3" * 40   # refs/bin: another model, as sharded pytorch_model.bin files
TEXT = "Complete the paragraph: our solar system is"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def add_to_cache(cache, repo_id, commit, files, ref=None):
    """files: {path in the repo: local file}. Blobs named by their sha256, snapshot entries relative symlinks."""
    storage = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    for name, source in files.items():
        with open(source, "rb") as f:
            data = f.read()
        blob = os.path.join(storage, "blobs", hashlib.sha256(data).hexdigest())
        os.makedirs(os.path.dirname(blob), exist_ok=True)
        with open(blob, "wb") as f:
            f.write(data)
        link = os.path.join(storage, "snapshots", commit, *name.split("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob, os.path.dirname(link)), link)
    if ref is not None:
        os.makedirs(os.path.join(storage, "refs"), exist_ok=True)
        with open(os.path.join(storage, "refs", ref), "w") as f:
            f.write(commit)


def files_of(directory, prefix=""):
    return {prefix + name: os.path.join(directory, name) for name in sorted(os.listdir(directory))}


def save_checkpoint(path, tokenizer_dir, seed, bin_shard_size=None, **save_kwargs):
    shutil.copytree(tokenizer_dir, path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = build_hf_model(seed=seed, scale=0.25, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                           eos_token_id=tokenizer.eos_token_id)
    if bin_shard_size:
        return save_bin(path, model, shard_size=bin_shard_size)
    model.save_pretrained(path, **save_kwargs)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tokenizers = build_all(str(tmp_path_factory.getbasetemp() / "tokenizers"))
    root = tmp_path_factory.mktemp("hub_sources")
    main = save_checkpoint(str(root / "main"), tokenizers["nemotron"], seed=0)
    dev = save_checkpoint(str(root / "dev"), tokenizers["nemotron"], seed=1, max_shard_size="100KB")
    sub = save_checkpoint(str(root / "sub"), tokenizers["plain_strings"], seed=2)
    bin_ = save_checkpoint(str(root / "bin"), tokenizers["nemotron"], seed=3, bin_shard_size="100KB")
    assert os.path.isfile(os.path.join(dev, "model.safetensors.index.json"))
    assert os.path.isfile(os.path.join(bin_, "pytorch_model.bin.index.json"))
    return {"main": main, "dev": dev, "sub": sub, "bin": bin_}


@pytest.fixture(scope="module")
def cache(sources, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("hub_cache"))
    add_to_cache(cache, REPO, MAIN, {**files_of(sources["main"]), **files_of(sources["sub"], "sub/")}, ref="main")
    add_to_cache(cache, REPO, DEV, files_of(sources["dev"]), ref="dev")
    add_to_cache(cache, REPO, BIN, files_of(sources["bin"]), ref="bin")
    # a repo whose snapshot holds the config only
    add_to_cache(cache, "nvidia/Config-Only", MAIN, {"config.json": os.path.join(sources["main"], "config.json")},
                 ref="main")
    return cache


def compare_with_transformers(hub_kwargs, source=None):
    """nemotron_c and Transformers load REPO with the same keywords: same tokens, logits and greedy generation."""
    ours_tok = nemotron_c.AutoTokenizer.from_pretrained(REPO, **hub_kwargs)
    hf_tok = transformers.AutoTokenizer.from_pretrained(REPO, **hub_kwargs)
    ids = hf_tok(TEXT, return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(ours_tok(TEXT, return_tensors="np")["input_ids"], ids)
    # config.json comes along with the tokenizer files: it decides the tokenizer class, hence the padding side
    assert type(hf_tok).__name__ == "TokenizersBackend" and ours_tok.padding_side == hf_tok.padding_side == "right"
    batch = [TEXT, "our"]
    for tok in (ours_tok, hf_tok):
        tok.pad_token = tok.pad_token or tok.eos_token
    for key, value in hf_tok(batch, padding=True, return_tensors="np").items():
        np.testing.assert_array_equal(ours_tok(batch, padding=True, return_tensors="np")[key], value)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, **hub_kwargs)
    hf = transformers.AutoModelForCausalLM.from_pretrained(REPO, dtype=torch.float32, attn_implementation="eager",
                                                           **hub_kwargs).eval()
    assert_close(ours(ids).logits, hf_logits(hf, ids), what="logits")
    with torch.no_grad():
        expected = hf.generate(torch.as_tensor(ids), max_new_tokens=8, do_sample=False).numpy()
    np.testing.assert_array_equal(ours.generate(ids, max_new_tokens=8, do_sample=False), expected)
    assert ours.name_or_path == ours.config._name_or_path == hf.name_or_path == REPO
    assert ours_tok.name_or_path == hf_tok.name_or_path == REPO
    if source is not None:  # the files came from that checkpoint, not another of the cache
        assert_close(ours(ids).logits, hf_logits(hf_from_pretrained(source), ids), what="logits of the source")
    return ours


def test_cache_dir_matches_transformers(cache, sources):
    compare_with_transformers({"cache_dir": cache, "local_files_only": True}, sources["main"])


def test_offline_mode_without_local_files_only(cache, sources):
    compare_with_transformers({"cache_dir": cache}, sources["main"])


@pytest.mark.parametrize("revision", ["dev", DEV, MAIN])
def test_revision_branch_and_commit(cache, sources, revision):
    model = compare_with_transformers({"cache_dir": cache, "revision": revision},
                                      sources["main" if revision == MAIN else "dev"])
    assert os.path.dirname(model._load_args[0]).endswith(os.path.join("snapshots")), model._load_args
    assert os.path.basename(model._load_args[0]) == (MAIN if revision == MAIN else DEV)


def test_sharded_pytorch_model_bin(cache, sources):
    compare_with_transformers({"cache_dir": cache, "revision": "bin"}, sources["bin"])


def test_subfolder(cache, sources):
    compare_with_transformers({"cache_dir": cache, "subfolder": "sub"}, sources["sub"])


@pytest.mark.parametrize("kwargs", [{"revision": "dev"}, {"subfolder": "sub"}, {"revision": MAIN, "local_files_only": True},
                                    {"revision": "bin"}], ids=["branch", "subfolder", "commit_local", "bin"])
def test_configs_match_transformers(cache, kwargs):
    kwargs = {"cache_dir": cache, **kwargs}
    ours = nemotron_c.AutoConfig.from_pretrained(REPO, **kwargs)
    hf = transformers.AutoConfig.from_pretrained(REPO, **kwargs)
    assert ours._name_or_path == hf._name_or_path == REPO
    assert ours.vocab_size == hf.vocab_size and ours.hidden_size == hf.hidden_size
    assert ours.to_diff_dict() == hf.to_diff_dict()  # every key: a key ours lost would not be compared otherwise
    assert not hasattr(ours, "revision") and not hasattr(ours, "cache_dir")  # consumed, not taken as overrides
    if kwargs.get("revision") == "bin":  # a .bin checkpoint saved without generation_config.json
        with pytest.raises(OSError):
            transformers.GenerationConfig.from_pretrained(REPO, **kwargs)
        with pytest.raises(OSError, match="generation_config.json is not in the Hugging Face cache"):
            nemotron_c.GenerationConfig.from_pretrained(REPO, **kwargs)
        return
    ours_gen = nemotron_c.GenerationConfig.from_pretrained(REPO, **kwargs)
    hf_gen = transformers.GenerationConfig.from_pretrained(REPO, **kwargs)
    assert ours_gen.to_diff_dict() == hf_gen.to_diff_dict()


def test_missing_repo(cache, monkeypatch):
    with pytest.raises(OSError):
        transformers.AutoConfig.from_pretrained("nvidia/Absent", cache_dir=cache, local_files_only=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # local_files_only keeps us off the net
    for load in (nemotron_c.AutoModelForCausalLM.from_pretrained, nemotron_c.AutoTokenizer.from_pretrained,
                 nemotron_c.AutoConfig.from_pretrained, nemotron_c.GenerationConfig.from_pretrained):
        with pytest.raises(OSError, match=r"'nvidia/Absent' is not a local folder and revision 'main' of it is not "
                                          r"in the Hugging Face cache .*local_files_only=True"):
            load("nvidia/Absent", cache_dir=cache, local_files_only=True)
    with pytest.raises(OSError, match="revision 'nope' of it is not in the Hugging Face cache"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache, local_files_only=True, revision="nope")


def test_missing_files(cache):
    with pytest.raises(OSError):
        transformers.AutoModelForCausalLM.from_pretrained("nvidia/Config-Only", cache_dir=cache)
    with pytest.raises(OSError, match=r"nvidia/Config-Only \(revision main\): model.safetensors or "
                                      r"model.safetensors.index.json or pytorch_model.bin or "
                                      r"pytorch_model.bin.index.json is not in the Hugging Face cache .*HF_HUB_OFFLINE"):
        nemotron_c.AutoModelForCausalLM.from_pretrained("nvidia/Config-Only", cache_dir=cache)
    with pytest.raises(OSError, match="tokenizer.json or tokenizer.model is not in the Hugging Face cache"):
        nemotron_c.AutoTokenizer.from_pretrained("nvidia/Config-Only", cache_dir=cache)
    with pytest.raises(OSError, match="generation_config.json is not in the Hugging Face cache"):
        nemotron_c.GenerationConfig.from_pretrained("nvidia/Config-Only", cache_dir=cache)
    # a model without generation_config.json takes it from config.json, as Transformers does
    assert nemotron_c.AutoConfig.from_pretrained("nvidia/Config-Only", cache_dir=cache).vocab_size > 0


def test_shard_missing_from_cache(cache, sources, tmp_path):
    index = json.load(open(os.path.join(sources["dev"], "model.safetensors.index.json")))
    first, *rest = sorted(set(index["weight_map"].values()))
    kept = {n: p for n, p in files_of(sources["dev"]).items() if n != first}
    add_to_cache(str(tmp_path), REPO, DEV, kept, ref="main")
    with pytest.raises(OSError, match=f"{first} is not in the Hugging Face cache"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=str(tmp_path))


def test_files_known_absent_are_not_requested(sources, tmp_path, monkeypatch):
    """huggingface_hub records a commit's 404s in .no_exist/<commit>/: a sharded repo then costs no request for
    model.safetensors, as in Transformers (the count is of hf_hub_download calls, the network's door)."""
    add_to_cache(str(tmp_path), REPO, DEV, files_of(sources["dev"]), ref="main")
    no_exist = tmp_path / f"models--{REPO.replace('/', '--')}" / ".no_exist" / DEV
    no_exist.mkdir(parents=True)
    (no_exist / "model.safetensors").touch()
    asked = []
    download = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: asked.append(name) or
                        download(repo, name, **kw))
    nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=str(tmp_path))
    # first, as Transformers with peft installed, whether the repo is a LoRA adapter
    assert asked[:3] == ["adapter_config.json", "config.json", "model.safetensors.index.json"], asked
    assert "model.safetensors" not in asked, asked


def test_tokenizer_fetches_config_json(cache, monkeypatch):
    """config.json decides which tokenizer Transformers builds (model_type nemotron: tokenizer.json as it is), so a
    tokenizer loaded by Hub id must bring it into the snapshot even when no model is loaded."""
    asked = []
    download = huggingface_hub.hf_hub_download
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: asked.append(name) or
                        download(repo, name, **kw))
    nemotron_c.AutoTokenizer.from_pretrained(REPO, cache_dir=cache)
    assert asked[0] == "tokenizer.json" and "config.json" in asked, asked


@pytest.mark.parametrize("name", ["/no/such/dir", "a b/c", "org/na--me", "a/b/c"])
def test_invalid_id(name):
    with pytest.raises(OSError):
        transformers.AutoConfig.from_pretrained(name)
    for load in (nemotron_c.AutoModelForCausalLM.from_pretrained, nemotron_c.AutoTokenizer.from_pretrained,
                 nemotron_c.AutoConfig.from_pretrained):
        with pytest.raises(FileNotFoundError, match="is not a directory and not a valid Hub repo id"):
            load(name)


def test_local_directory_wins(cache, sources, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(sources["sub"], REPO)
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache)
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(REPO, cache_dir=cache)
    ids = tokenizer(TEXT, return_tensors="np")["input_ids"]
    assert_close(model(ids).logits, hf_logits(hf_from_pretrained(sources["sub"]), ids))
    assert model._load_args[0] == os.path.abspath(REPO)  # the local folder (made absolute for pickling), not the cache


def test_keywords_are_not_ignored(cache):
    with pytest.raises(OSError, match="force_download"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache, force_download=True)
    with pytest.raises(OSError, match=r"model\.fp16\.safetensors or .* is not in the Hugging Face cache"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache, variant="fp16")
    with pytest.raises(NotImplementedError, match="output_loading_info=True"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache, output_loading_info=True)
    with pytest.raises(TypeError, match="use_auth_token"):
        nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache, use_auth_token="x")


def run_python(code, **env):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1",
           **env}
    for name in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if name not in env or env[name] is None:
            env.pop(name, None)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.parametrize("variable", ["HF_HOME", "HF_HUB_CACHE"])
def test_cache_from_environment(cache, tmp_path, variable):
    if variable == "HF_HOME":
        os.symlink(cache, tmp_path / "hub")
        value = str(tmp_path)
    else:
        value = cache
    run = run_python(f"""
        import numpy as np, torch, transformers, nemotron_c
        ids = np.array([[5, 9, 2, 77, 13]])
        ours = nemotron_c.AutoModelForCausalLM.from_pretrained({REPO!r})
        hf = transformers.AutoModelForCausalLM.from_pretrained({REPO!r}, dtype=torch.float32)
        with torch.no_grad():
            expected = hf(torch.as_tensor(ids)).logits.numpy()
        print(float(np.abs(ours(ids).logits - expected).max()))
        try:
            nemotron_c.AutoTokenizer.from_pretrained("nvidia/Absent")
        except OSError as e:
            print(e)
        """, **{variable: value})
    assert run.returncode == 0, run.stderr
    difference, message = run.stdout.splitlines()[:2]
    assert float(difference) <= 1e-4
    assert "'nvidia/Absent' is not a local folder" in message and "HF_HUB_OFFLINE=1" in message, message


def test_without_huggingface_hub(sources):
    run = run_python(f"""
        import sys
        sys.modules["huggingface_hub"] = None
        import nemotron_c
        model = nemotron_c.AutoModelForCausalLM.from_pretrained({sources['main']!r})  # directories need no hub
        nemotron_c.AutoTokenizer.from_pretrained({sources['main']!r})
        for load in (nemotron_c.AutoModelForCausalLM.from_pretrained, nemotron_c.AutoTokenizer.from_pretrained,
                     nemotron_c.AutoConfig.from_pretrained, nemotron_c.GenerationConfig.from_pretrained):
            try:
                load({REPO!r})
            except ImportError as e:
                print(e)
        """)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 4, run.stdout
    for line in lines:
        assert line == (f"{REPO!r} is not a local directory; loading a Hugging Face Hub id needs huggingface_hub: "
                        'pip install "nemotron_c[hub]"')


def test_cli_takes_a_hub_id(cache, sources, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text(TEXT + "\nanother line of text\n")

    def score(model):
        return subprocess.run([sys.executable, "-m", "nemotron_c", "score", "--model", model, str(texts),
                               "--no-progress"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": cache})

    absent = score("nvidia/Absent")
    assert absent.returncode == 1 and absent.stderr.startswith("error: 'nvidia/Absent' is not a local folder")
    run = score(REPO)
    assert run.returncode == 0, run.stderr
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(sources["main"])
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(sources["main"])
    expected = model.score([TEXT, "another line of text"], tokenizer=tokenizer)
    got = [json.loads(line)["sum_logprob"] for line in run.stdout.splitlines()]
    assert_close(got, expected.sum_logprob, atol=1e-4)


def test_hub_model_and_tokenizer_pickle(cache, sources):
    import pickle

    model = nemotron_c.AutoModelForCausalLM.from_pretrained(REPO, cache_dir=cache)
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(REPO, cache_dir=cache)
    model2, tokenizer2 = pickle.loads(pickle.dumps((model, tokenizer)))
    ids = tokenizer(TEXT, return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(tokenizer2(TEXT, return_tensors="np")["input_ids"], ids)
    np.testing.assert_array_equal(model2(ids).logits, model(ids).logits)
    assert model2.name_or_path == model2.config._name_or_path == tokenizer2.name_or_path == REPO


def hub_error(cls, status):
    import httpx2  # huggingface_hub's HTTP client

    response = httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/x"))
    return cls("from the Hub", response=response)


@pytest.mark.parametrize("error, message", [
    (lambda: hub_error(huggingface_hub.errors.RepositoryNotFoundError, 404),
     "nvidia/Tiny-Nemotron is not a local folder and is not a valid model identifier"),
    (lambda: hub_error(huggingface_hub.errors.GatedRepoError, 403), "nvidia/Tiny-Nemotron is a gated repo"),
    (lambda: hub_error(huggingface_hub.errors.RevisionNotFoundError, 404),
     "v9 is not a valid git identifier .* that exists for nvidia/Tiny-Nemotron"),
    (lambda: hub_error(huggingface_hub.errors.RemoteEntryNotFoundError, 404),
     r"nvidia/Tiny-Nemotron \(revision v9\) does not appear to have a file named config.json"),
    (lambda: huggingface_hub.errors.LocalEntryNotFoundError("connection refused"),
     "'nvidia/Tiny-Nemotron' is not a local folder .* the Hub could not be reached"),
])
def test_online_answers(tmp_path, monkeypatch, error, message):
    """What the Hub may answer online, played by a stand-in for hf_hub_download (no request is made)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def answer(repo_id, filename, **kwargs):
        assert kwargs["local_files_only"] is False
        raise error()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", answer)
    with pytest.raises(OSError, match=message):
        nemotron_c.AutoConfig.from_pretrained(REPO, cache_dir=str(tmp_path), revision="v9")


def test_hostile_index_lists_no_shards_and_is_left_to_the_reader(tmp_path):
    # json's RecursionError escaped the Hub resolution before the reader could name the index
    from nemotron_c.checkpoint.hub import shard_names
    for value in ("9" * 5000, "[" * 100_000 + "]" * 100_000):
        (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": %s}' % value)
        assert shard_names(tmp_path / "model.safetensors.index.json") == []


def test_transformers_weights_of_a_hub_config_names_the_file_fetched(sources, tmp_path):
    """config.json's transformers_weights names the weight file Transformers fetches from the Hub too: here the
    repo has no model.safetensors, only the file it names."""
    cache = str(tmp_path / "cache")
    config = tmp_path / "config.json"
    with open(os.path.join(sources["main"], "config.json")) as f:
        data = json.load(f)
    config.write_text(json.dumps({**data, "transformers_weights": "named.safetensors"}))
    files = {name: source for name, source in files_of(sources["main"]).items() if name != "model.safetensors"}
    files.update({"config.json": str(config), "named.safetensors": os.path.join(sources["main"], "model.safetensors")})
    add_to_cache(cache, "nvidia/Named-Weights", MAIN, files, ref="main")
    theirs = transformers.AutoModelForCausalLM.from_pretrained("nvidia/Named-Weights", cache_dir=cache)
    ours = nemotron_c.AutoModelForCausalLM.from_pretrained("nvidia/Named-Weights", cache_dir=cache)
    ids = np.array([[1, 5, 7, 9]])
    assert_close(ours(ids).logits, hf_logits(theirs, ids))


def test_transformers_weights_that_is_no_file_name_is_named_before_fetching(sources, tmp_path):
    cache = str(tmp_path / "cache")
    config = tmp_path / "config.json"
    with open(os.path.join(sources["main"], "config.json")) as f:
        config.write_text(json.dumps({**json.load(f), "transformers_weights": 7}))
    add_to_cache(cache, "nvidia/Bad-Name", MAIN, {**files_of(sources["main"]), "config.json": str(config)}, ref="main")
    with pytest.raises(ValueError, match="transformers_weights 7 is neither a safetensors file"):
        nemotron_c.AutoModelForCausalLM.from_pretrained("nvidia/Bad-Name", cache_dir=cache)
