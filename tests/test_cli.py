"""python -m nemotron_c score and convert, run as subprocesses on tiny checkpoints."""
import json
import mmap
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import transformers
from helpers.compare import assert_close
from helpers.transformers_reference import build_hf_model, hf_from_pretrained, hf_logits, save_bin
from safetensors.numpy import load_file
from test_scoring import word_tokenizer

import nemotron_c
from nemotron_c import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, stdin=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-m", "nemotron_c", *args], capture_output=True, env=env, timeout=120,
                         input=None if stdin is None else stdin.encode(), stdin=subprocess.DEVNULL if stdin is None else None)
    # decoded by hand: text mode would turn the progress bar's carriage returns into newlines
    return subprocess.CompletedProcess(run.args, run.returncode, run.stdout.decode(), run.stderr.decode())


@pytest.fixture(scope="module")
def path(checkpoint):
    return checkpoint()


SEQUENCES = [[5, 9, 2, 77, 13], [1, 2], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], [7]]


def write_jsonl(tmp_path, records, blank_after=1):
    lines = [json.dumps(r) for r in records]
    lines.insert(blank_after, "   ")
    file = tmp_path / "input.jsonl"
    file.write_text("\n".join(lines) + "\n")
    return file


def test_jsonl_ids_to_output_file(path, tmp_path):
    records = [{"input_ids": s, "id": f"doc{i}"} for i, s in enumerate(SEQUENCES)]
    out = tmp_path / "scores.jsonl"
    run = run_cli("score", "--model", path, str(write_jsonl(tmp_path, records)), "--output", str(out),
                  "--batch-size", "3", "--token-logprobs", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == f"warning: {tmp_path / 'input.jsonl'}:2: empty line skipped\n"
    results = [json.loads(line) for line in out.read_text().splitlines()]
    expected = nemotron_c.NemotronForCausalLM.from_pretrained(path).score(SEQUENCES, return_token_logprobs=True)
    assert [r["line"] for r in results] == [1, 3, 4, 5]  # line 2 is blank
    assert [r["id"] for r in results] == ["doc0", "doc1", "doc2", "doc3"]
    for i, r in enumerate(results):
        assert r["num_tokens"] == expected.num_tokens[i]
        assert_close(r["sum_logprob"], expected.sum_logprob[i], atol=1e-5)
        assert_close(r["token_logprobs"], expected.token_logprobs[i], atol=1e-5)
    assert results[3]["num_tokens"] == 0 and results[3]["mean_logprob"] is None and results[3]["perplexity"] is None
    assert_close(results[0]["perplexity"], np.exp(-expected.mean_logprob[0]), atol=1e-3)


def test_stdin_stdout_max_length_and_progress_bar(path):
    stdin = "\n".join(json.dumps({"input_ids": s}) for s in SEQUENCES) + "\n"
    run = run_cli("score", "--model", path, "-", "--max-length", "3", "--progress", stdin=stdin)
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["num_tokens"] for r in results] == [2, 1, 2, 0]
    assert "scoring 4 texts" in run.stderr  # the total of standard input is unknown


def test_progress_bar_with_a_known_total(path, tmp_path):
    file = write_jsonl(tmp_path, [{"input_ids": s} for s in SEQUENCES])
    run = run_cli("score", "--model", path, str(file), "--batch-size", "1", "--progress")
    assert run.returncode == 0, run.stderr
    assert "scoring 100% |########################| 4/4 texts" in run.stderr
    assert run.stderr.startswith("\rscoring   0% |")


def test_text_lines_with_a_tokenizer(path, tmp_path, monkeypatch, capsys):
    """In process, with Transformers' tokenizer standing in for the one the model directory would give."""
    tokenizer = word_tokenizer()
    monkeypatch.setattr(cli.Tokenizers, "get", lambda self: tokenizer)
    texts = ["the cat sat on the mat", "a dog ran far", "red"]
    file = tmp_path / "texts.txt"
    file.write_text("\n".join(texts) + "\n\n")
    assert cli.main(["score", "--model", path, str(file), "--no-progress"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = nemotron_c.NemotronForCausalLM.from_pretrained(path).score(texts, tokenizer=tokenizer)
    assert [r["line"] for r in results] == [1, 2, 3]
    assert_close([r["sum_logprob"] for r in results], expected.sum_logprob, atol=1e-5)
    assert [r["num_tokens"] for r in results] == [6, 4, 1]  # BOS is added, then not scored
    assert cli.main(["score", "--model", path, str(file), "--no-special-tokens", "--no-progress"]) == 0
    assert [json.loads(x)["num_tokens"] for x in capsys.readouterr().out.splitlines()] == [5, 3, 0]


@pytest.mark.parametrize("content, message", [
    ('{"input_ids": [1, 2]}\n{"input_ids": [1, \n', "input.jsonl:2: not valid JSON"),
    ('{"input_ids": [1, 2]}\n{"ids": [1]}\n', 'input.jsonl:2: a record needs either "text"'),
    ('{"input_ids": [1, 2.5]}\n', '"input_ids" must be a list of integers'),
    ('{"input_ids": [1, 2, 500]}\n', "input.jsonl:1: token id 500 is outside the vocabulary [0, 96)"),
    ('["not", "an", "object"]\n', "input.jsonl:1: a JSONL record must be an object"),
])
def test_bad_input_exits_with_a_message(path, tmp_path, content, message):
    file = tmp_path / "input.jsonl"
    file.write_text(content)
    run = run_cli("score", "--model", path, str(file), "--format", "jsonl")
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("error: ")
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_bad_arguments(path, tmp_path):
    run = run_cli("score", "--model", path, str(tmp_path / "missing.txt"))
    assert run.returncode == 2 and "no such file" in run.stderr
    file = tmp_path / "ok.jsonl"
    file.write_text('{"input_ids": [1, 2]}\n')
    run = run_cli("score", "--model", path, str(file), "--batch-size", "0")
    assert run.returncode == 2 and "--batch-size must be at least 1" in run.stderr
    run = run_cli("score", "--model", str(tmp_path / "nowhere"), str(file))
    assert run.returncode == 1 and "error:" in run.stderr and "Traceback" not in run.stderr
    run = run_cli("score", str(file), "--no-progress")  # no --model: the demo model
    assert run.returncode == 0 and json.loads(run.stdout)["num_tokens"] == 1, run.stderr


def test_output_naming_the_input_is_refused_and_the_input_kept(path, tmp_path):
    file = tmp_path / "input.jsonl"
    content = '{"input_ids": [1, 2]}\n{"input_ids": [3, 4, 5]}\n'
    file.write_text(content)
    (tmp_path / "link.jsonl").symlink_to(file)
    (tmp_path / "sub").mkdir()
    for output in (file, tmp_path / "link.jsonl", tmp_path / "sub" / ".." / "input.jsonl"):
        run = run_cli("score", "--model", path, str(file), "--output", str(output), "--no-progress")
        assert run.returncode == 2 and "is the input file" in run.stderr, run.stderr
        assert file.read_text() == content
    with open(file) as stdin:  # `score - --output input.jsonl < input.jsonl`
        run = subprocess.run([sys.executable, "-m", "nemotron_c", "score", "--model", path, "-", "--output",
                              str(file), "--no-progress"], stdin=stdin, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 2 and "is the input file" in run.stderr, run.stderr
    assert file.read_text() == content


def test_bytes_that_are_not_utf8_are_named_by_line(path, tmp_path):
    file = tmp_path / "latin1.txt"
    file.write_bytes(b'{"input_ids": [1, 2]}\n{"text": "caf\xe9"}\n')
    run = run_cli("score", "--model", path, str(file), "--no-progress")
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr == f"error: {file}:2: not valid UTF-8 (byte 0xe9 at column 14); the input must be UTF-8 text\n"
    for command in (["score", "--model", path, "-"], ["chat", "--max-new-tokens", "2"]):
        run = subprocess.run([sys.executable, "-m", "nemotron_c", *command], input=b"\xff\xfe\n", capture_output=True,
                             timeout=120, env={**os.environ, "PYTHONPATH": ROOT})
        assert run.returncode == 2, run.stderr
        assert run.stderr.decode() == ("error: <stdin>:1: not valid UTF-8 (byte 0xff at column 1); the input must be "
                                       "UTF-8 text\n")


def test_a_fifo_is_read(path, tmp_path):
    """A named pipe, or a shell's <(...), is a file to read (once), not a missing one."""
    fifo = tmp_path / "texts.fifo"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "nemotron_c", "score", "--model", path, str(fifo), "--progress"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}) as run:
        # opened without blocking, so that a command that never opens the FIFO fails the test instead of hanging it
        deadline = time.monotonic() + 60
        while True:
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:  # ENXIO: no reader yet
                assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()
                time.sleep(0.05)
        os.set_blocking(writer, True)
        os.write(writer, "".join(json.dumps({"input_ids": s}) + "\n" for s in SEQUENCES).encode())
        os.close(writer)
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    expected = nemotron_c.NemotronForCausalLM.from_pretrained(path).score(SEQUENCES)
    assert_close([json.loads(line)["sum_logprob"] for line in out.splitlines()], expected.sum_logprob, atol=1e-5)
    run = run_cli("score", "--model", path, str(tmp_path))
    assert run.returncode == 2 and "is a directory" in run.stderr, run.stderr


# ---------------------------------------------------------------- convert


TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json"]
# how each source format convert reads is written from a Transformers model: a new format is a new entry here
WEIGHT_WRITERS = {
    "safetensors": lambda model, directory: model.save_pretrained(directory),
    "bin": lambda model, directory: save_bin(directory, model),
    "bin_sharded": lambda model, directory: save_bin(directory, model, shard_size="40KB"),
}


@pytest.fixture(scope="module", params=sorted(WEIGHT_WRITERS))
def convert_source(request, tmp_path_factory):
    """(directory, Transformers' float32 state_dict): a checkpoint in one of the formats convert reads, with
    config.json, generation_config.json and tokenizer files beside the weights."""
    model = build_hf_model(seed=5)
    source = tmp_path_factory.mktemp(f"convert_{request.param}")
    WEIGHT_WRITERS[request.param](model, source)
    model.config.save_pretrained(source)
    model.generation_config.save_pretrained(source)
    word_tokenizer().save_pretrained(source)
    return str(source), model.state_dict()


def test_convert_to_bfloat16_shards(convert_source, tmp_path):
    convert_source, state = convert_source
    destination = tmp_path / "out"
    run = run_cli("convert", convert_source, str(destination), "--dtype", "bfloat16", "--max-shard-size", "30KB",
                  "--progress")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and "wrote model-00001-of-" in run.stderr
    files = sorted(os.listdir(destination))
    index = json.loads((destination / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and files == sorted(["config.json", "generation_config.json", "model.safetensors.index.json",
                                                *shards, *TOKENIZER_FILES])
    assert json.loads((destination / "config.json").read_text())["dtype"] == "bfloat16"
    for name in ["generation_config.json", *TOKENIZER_FILES]:
        assert (destination / name).read_bytes() == open(os.path.join(convert_source, name), "rb").read()

    # Transformers reads the shards: each tensor is torch's bfloat16 rounding of the original
    converted = transformers.NemotronForCausalLM.from_pretrained(destination, dtype=torch.bfloat16)
    assert converted.config.dtype == torch.bfloat16
    for name, tensor in converted.state_dict().items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, state[name].to(torch.bfloat16)), name
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in state.values())
    # nemotron_c maps the converted weights and runs them as Transformers does in float32
    ours = nemotron_c.NemotronForCausalLM.from_pretrained(destination)
    assert ours.dtype == "bfloat16"
    reference = transformers.NemotronForCausalLM.from_pretrained(destination, dtype=torch.float32,
                                                                 attn_implementation="eager")
    ids = np.array([SEQUENCES[0]])
    with torch.no_grad():
        assert_close(ours(ids).logits, reference(torch.as_tensor(ids)).logits.numpy(), atol=1e-4)
    assert transformers.AutoTokenizer.from_pretrained(destination)("the cat")["input_ids"] == \
        word_tokenizer()("the cat")["input_ids"]


def test_convert_keeps_the_stored_dtype_by_default(convert_source, tmp_path):
    convert_source, state = convert_source
    run = run_cli("convert", convert_source, str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # progress only on a terminal or with --progress
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert sorted(written) == sorted(state)
    for name, values in written.items():
        assert values.dtype == np.float32 and np.array_equal(values, state[name].numpy()), name
    with open(os.path.join(convert_source, "config.json"), "rb") as f:
        assert (tmp_path / "out" / "config.json").read_bytes() == f.read()


def test_convert_refuses_its_source_and_a_non_empty_destination(convert_source, tmp_path):
    convert_source, _ = convert_source
    run = run_cli("convert", convert_source, convert_source + os.sep)
    assert run.returncode == 1 and "is the source directory" in run.stderr
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "model-00001-of-00009.safetensors").write_text("stale")
    run = run_cli("convert", convert_source, str(destination))
    assert run.returncode == 1 and "is not empty" in run.stderr and "--overwrite" in run.stderr
    run = run_cli("convert", convert_source, str(destination), "--overwrite", "--dtype", "float16")
    assert run.returncode == 0, run.stderr
    assert "model-00001-of-00009.safetensors" not in os.listdir(destination)  # a stale shard of an earlier save
    assert nemotron_c.NemotronForCausalLM.from_pretrained(destination).dtype == "float16"


@pytest.mark.parametrize("args, message", [
    (["--max-shard-size", "5XB"], "max_shard_size '5XB'"),
    (["--dtype", "int2"], "invalid choice"),
])
def test_convert_bad_arguments(convert_source, tmp_path, args, message):
    convert_source, _ = convert_source
    run = run_cli("convert", convert_source, str(tmp_path / "out"), *args)
    assert run.returncode == 2 and message in run.stderr
    assert not (tmp_path / "out").exists()


def test_convert_keeps_a_head_the_config_ties_but_stores_apart(tmp_path):
    # Transformers and from_pretrained untie such a head; convert used to drop it, and the copy's logits changed
    source, destination = tmp_path / "src", tmp_path / "out"
    build_hf_model(seed=3, tie_word_embeddings=False).save_pretrained(source)
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    run = run_cli("convert", str(source), str(destination))
    assert run.returncode == 0, run.stderr
    assert json.loads((destination / "config.json").read_text())["tie_word_embeddings"] is False
    assert "lm_head.weight" in load_file(destination / "model.safetensors")
    ids = np.array([SEQUENCES[0]])
    converted = nemotron_c.NemotronForCausalLM.from_pretrained(destination)
    assert_close(converted(ids).logits, hf_logits(hf_from_pretrained(source), ids), atol=1e-4)


def test_convert_writes_what_save_pretrained_writes(tmp_path):
    # extras from_pretrained and Transformers leave unused; convert refused the I64 and BOOL ones and copied the others
    model = build_hf_model(seed=4)
    state = model.state_dict()
    extras = {"optimizer.step": torch.tensor(5), "attention_mask": torch.ones(3, dtype=torch.bool),
              "model.rotary_emb.inv_freq": torch.ones(4),
              **{name.replace(".layers.1.", ".layers.7."): t for name, t in state.items() if ".layers.1." in name}}
    source, destination = tmp_path / "src", tmp_path / "out"
    save_bin(source, model, {**state, **extras})
    run = run_cli("convert", str(source), str(destination))
    assert run.returncode == 0, run.stderr
    transformers.NemotronForCausalLM.from_pretrained(source).save_pretrained(tmp_path / "transformers")
    expected = load_file(tmp_path / "transformers" / "model.safetensors")
    written = load_file(destination / "model.safetensors")
    assert sorted(written) == sorted(expected)
    for name, values in written.items():
        assert np.array_equal(values, expected[name]), name


def test_convert_names_what_it_cannot_read(tmp_path):
    run = run_cli("convert", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert run.returncode == 1 and "is not a checkpoint directory" in run.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    run = run_cli("convert", str(tmp_path / "empty"), str(tmp_path / "out"))
    assert run.returncode == 1 and "model_type 'llama'" in run.stderr


# ---------------------------------------------------------------- generate, chat, info (on the demo model)


@pytest.fixture(scope="module")
def demo():
    """The demo model in Transformers (float32 arithmetic, as nemotron_c computes) and its tokenizer."""
    path = nemotron_c.demo_model_path()
    return (transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
            transformers.AutoTokenizer.from_pretrained(path))


def hf_continuation(demo, ids, max_new_tokens):
    model, tokenizer = demo
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, len(ids):].tolist()


def test_generate_streams_the_greedy_text_of_transformers(demo):
    run = run_cli("generate", "The", "--max-new-tokens", "24")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    tokenizer = demo[1]
    prompt = tokenizer("The")["input_ids"]
    expected = tokenizer.decode(prompt + hf_continuation(demo, prompt, 24), skip_special_tokens=True)
    assert run.stdout == expected + "\n"


def test_generate_and_chat_are_greedy_when_the_checkpoint_samples(demo, tmp_path):
    """A generation_config.json with do_sample true does not make the command sample: only its options do."""
    path = tmp_path / "sampling"
    shutil.copytree(nemotron_c.demo_model_path(), path)
    file = path / "generation_config.json"
    config = json.loads(file.read_text()) if file.exists() else {}
    file.write_text(json.dumps({**config, "do_sample": True, "temperature": 5.0}))
    tokenizer = demo[1]
    prompt = tokenizer("The")["input_ids"]
    expected = tokenizer.decode(prompt + hf_continuation(demo, prompt, 24), skip_special_tokens=True)
    for _ in range(2):
        run = run_cli("generate", "The", "--model", str(path), "--max-new-tokens", "24")
        assert run.returncode == 0 and run.stdout == expected + "\n", run.stderr
    args = cli.build_parser().parse_args(["chat"])
    assert cli.generation_kwargs(args)["do_sample"] is False
    args = cli.build_parser().parse_args(["chat", "--top-p", "0.9"])
    assert cli.generation_kwargs(args)["do_sample"] is True


def test_generate_sampling_is_seeded():
    first = run_cli("generate", "Return the", "--max-new-tokens", "16", "--top-k", "20", "--seed", "7")
    again = run_cli("generate", "Return the", "--max-new-tokens", "16", "--top-k", "20", "--seed", "7")
    other = run_cli("generate", "Return the", "--max-new-tokens", "16", "--top-k", "20", "--seed", "8")
    assert first.returncode == 0 and first.stdout == again.stdout and first.stdout != other.stdout


def test_chat_keeps_the_history_and_reports_empty_lines(demo):
    model, tokenizer = demo
    run = run_cli("chat", "--max-new-tokens", "6", stdin="Hello there\n\n   \nWhat is a list?\n")
    assert run.returncode == 0, run.stderr
    assert run.stderr.count("empty message ignored") == 2
    marker = tokenizer.convert_tokens_to_ids("<extra_id_1>")
    messages, replies = [], []
    for text in ("Hello there", "What is a list?"):
        messages.append({"role": "user", "content": text})
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=6, do_sample=False,
                                 eos_token_id=[tokenizer.eos_token_id, marker])
        reply = tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        replies.append(reply)
        messages.append({"role": "assistant", "content": reply.strip()})
    assert run.stdout == "".join(reply + "\n" for reply in replies)


def test_info_describes_the_checkpoint(demo):
    run = run_cli("info", "--json")
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["parameters"] == demo[0].num_parameters()
    assert info["config"]["hidden_size"] == demo[0].config.hidden_size
    assert set(info["weights"]) == {"bfloat16"}
    assert info["weights"]["bfloat16"]["bytes"] == 2 * info["parameters"]
    assert info["kernels"] == nemotron_c.NemotronForCausalLM.from_pretrained(nemotron_c.demo_model_path()).kernels
    run = run_cli("info", "--dtype", "float32")
    assert run.returncode == 0 and "float32 (" in run.stdout and f"{info['parameters']:,}" in run.stdout


@pytest.mark.parametrize("dtype, bits", [("int8", 8.5), ("int4", 5)])
def test_info_counts_quantized_weights(demo, dtype, bits):
    """The linear layers' matrices quantized (values and a float32 scale per group), the rest as stored; the parameter
    count is the float model's."""
    run = run_cli("info", "--json", "--dtype", dtype)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["parameters"] == demo[0].num_parameters()
    c = demo[0].config
    matrices = c.num_hidden_layers * c.hidden_size * (2 * c.num_attention_heads * c.head_dim +
                                                      2 * c.num_key_value_heads * c.head_dim + 2 * c.intermediate_size)
    assert info["weights"][dtype] == {"tensors": 6 * c.num_hidden_layers, "bytes": matrices * bits / 8}
    assert info["weights"]["bfloat16"]["bytes"] == 2 * (info["parameters"] - matrices)


def test_info_loads_the_architecture_of_the_config(checkpoint):
    path = checkpoint(model_class=transformers.NemotronForTokenClassification, num_labels=3)
    run = run_cli("info", "--model", path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[1].startswith("architecture NemotronForTokenClassification: ")
    expected = nemotron_c.NemotronForTokenClassification.from_pretrained(path).num_parameters()
    assert f"parameters   {expected:,} " in run.stdout


def test_broken_pipe_ends_quietly():
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-m", "nemotron_c", "generate", "The", "--max-new-tokens", "40"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    child.stdout.close()  # the reader is gone before the first token
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == cli.EXIT_BROKEN_PIPE
    assert stderr == ""


def test_generate_and_chat_errors(tmp_path):
    for args in (("generate", "The", "--model", str(tmp_path / "missing")),
                 ("chat", "--model", str(tmp_path / "missing"))):
        run = run_cli(*args)
        assert run.returncode == 1 and run.stderr.startswith("error: ") and "Traceback" not in run.stderr
    run = run_cli("generate", "  ")
    assert run.returncode == 2 and "the prompt is empty" in run.stderr
    run = run_cli("generate", "The", "--max-new-tokens", "0")
    assert run.returncode == 2 and "--max-new-tokens must be at least 1" in run.stderr
    # more new tokens than the memory could hold: said, not a NumPy traceback
    run = run_cli("generate", "The", "--max-new-tokens", str(10 ** 14))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("error: generate() cannot make room for the sequences") and "max_new_tokens" in run.stderr


@pytest.mark.parametrize("template, message", [
    ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
     "{% for m in messages %}{{ m['content'] }}{% endfor %}", "failed: System role not supported"),
    ("{% for m in messages %}{{ m.content }", "failed (line 1): unexpected '}'"),
])
def test_chat_template_errors_end_with_a_message(tmp_path, template, message):
    path = tmp_path / "templated"
    shutil.copytree(nemotron_c.demo_model_path(), path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": template}))
    run = run_cli("chat", "--model", str(path), "--system", "Be brief.", "--max-new-tokens", "2", stdin="hi\n")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr == f"error: the chat template of {path} {message}\n"


def test_sampling_without_a_distribution_ends_with_a_message():
    """Scores that leave no distribution raise generate()'s RuntimeError (torch.multinomial's in Transformers)."""
    run = run_cli("generate", "The", "--max-new-tokens", "3", "--temperature", "1e-45")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("error: cannot sample") and len(run.stderr.splitlines()) == 1


def test_program_name_in_help(monkeypatch, capsys):
    run = run_cli("--help")
    assert run.returncode == 0 and run.stdout.startswith("usage: python -m nemotron_c ")
    for command in ("generate", "chat", "score", "info", "convert"):
        assert command in run.stdout
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/nemotron_c", "--help"])  # the installed script
    with pytest.raises(SystemExit):
        cli.main()
    assert capsys.readouterr().out.startswith("usage: nemotron_c ")


def test_chat_sends_the_whole_history(monkeypatch, capsys):
    """Each turn renders every earlier message (the replies as generated) with the chat template."""
    prompts = []
    generate = nemotron_c.NemotronForCausalLM.generate

    def recording(self, *args, **kwargs):
        prompts.append(kwargs["input_ids"][0].tolist())
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(nemotron_c.NemotronForCausalLM, "generate", recording)
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("The socket is closed\n/reset\nWhat now\nWhy\n"))
    assert cli.main(["chat", "--max-new-tokens", "6", "--system", "Be brief."]) == 0
    assert capsys.readouterr().out.strip()  # the replies were streamed
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(nemotron_c.demo_model_path())
    system = [{"role": "system", "content": "Be brief."}]
    turns = [system + [{"role": "user", "content": "The socket is closed"}],
             system + [{"role": "user", "content": "What now"}]]
    assert [prompts[0], prompts[1]] == [tokenizer.apply_chat_template(t, add_generation_prompt=True)["input_ids"]
                                        for t in turns]
    model = nemotron_c.NemotronForCausalLM.from_pretrained(nemotron_c.demo_model_path())
    marker = tokenizer.convert_tokens_to_ids("<extra_id_1>")
    second = generate(model, np.array([prompts[1]]), max_new_tokens=6, eos_token_id=[tokenizer.eos_token_id, marker])
    reply = tokenizer.decode(second[0, len(prompts[1]):], skip_special_tokens=True).strip()
    history = turns[1] + [{"role": "assistant", "content": reply}, {"role": "user", "content": "Why"}]
    assert prompts[2] == tokenizer.apply_chat_template(history, add_generation_prompt=True)["input_ids"]


# ---------------------------------------------------------------- hostile input


def test_a_byte_order_mark_is_not_part_of_the_first_text(tmp_path, capsys):
    """A UTF-8 BOM first (Windows editors write one) is dropped, as Python's utf-8-sig: it was scored as text, and a
    JSONL file starting with one was scored as text lines or refused as bad JSON."""
    for name, content in (("texts.txt", "Return the value\nof x\n"),
                          ("records.jsonl", '{"text": "Return the value"}\n{"text": "of x"}\n')):
        plain, marked = tmp_path / name, tmp_path / f"bom_{name}"
        plain.write_text(content, encoding="utf-8")
        marked.write_text(content, encoding="utf-8-sig")
        for fmt in ("auto", "text" if name.endswith(".txt") else "jsonl"):
            assert cli.main(["score", str(plain), "--format", fmt, "--no-progress"]) == 0
            expected = capsys.readouterr().out
            assert cli.main(["score", str(marked), "--format", fmt, "--no-progress"]) == 0
            assert capsys.readouterr().out == expected
    assert json.loads(expected.splitlines()[0])["num_tokens"] > 0


@pytest.mark.parametrize("line, message", [
    ('{"input_ids": [1, 2], "id": NaN}', "not valid JSON (NaN is not a JSON value)"),
    ('{"input_ids": [1, 2], "id": -Infinity}', "not valid JSON (-Infinity is not a JSON value)"),
    ('{"input_ids": [1, 2], "id": 1e999}', '"id" holds a value that cannot be written back as JSON'),
    ('{"input_ids": [1, 2], "id": "\\ud800"}', '"id" holds a value that cannot be written back as JSON'),
    ('{"text": "a\\udc00b"}', '"text" holds a lone surrogate'),
    ('{"input_ids": [1, 2], "id": ' + "[" * 100000 + "]" * 100000 + "}", "not valid JSON (nested too deeply)"),
])
def test_jsonl_records_the_output_could_not_hold_are_named_by_line(tmp_path, capsys, line, message):
    """Python's json reads NaN, Infinity and 1e999 and lone surrogate escapes: the "id" was written back as NaN or
    Infinity (not JSON) or failed writing, naming no line; such a text failed in the tokenizer, naming none either."""
    file = tmp_path / "records.jsonl"
    file.write_text('{"input_ids": [3, 4], "id": null}\n' + line + "\n")
    assert cli.main(["score", str(file), "--no-progress"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(f"error: {file}:2: {message}")
    file.write_text('{"input_ids": [3, 4], "id": null}\n')
    assert cli.main(["score", str(file), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] is None  # an id of null is copied too


def test_arguments_that_are_not_utf8_are_named():
    """Bytes of argv that are not UTF-8 reach Python as lone surrogates, which the tokenizer refused naming nothing."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    for args, message in (([b"generate", b"caf\xe9 au lait"], "the prompt is not valid UTF-8 (byte 0xe9 at column 4)"),
                          ([b"chat", b"--system", b"\xffhi"], "--system is not valid UTF-8 (byte 0xff at column 1)")):
        run = subprocess.run([sys.executable.encode(), b"-m", b"nemotron_c", *args], input=b"hi\n",
                             capture_output=True, env=env, timeout=120)
        assert run.returncode == cli.EXIT_BAD_INPUT and run.stdout == b"", run.stderr
        assert run.stderr.decode() == f"error: {message}; give UTF-8 text\n"


def test_a_thread_count_too_large_for_the_core_ends_with_a_message(capsys):
    assert cli.main(["info", "--num-threads", str(10 ** 20)]) == 1  # was an OverflowError traceback
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1


def test_info_on_a_cpu_with_none_of_the_features(monkeypatch, capsys):
    """A CPU that reports none of the instruction sets (no AVX: the portable kernels) is not 'features unknown',
    which is for a machine without /proc/cpuinfo."""
    for features, expected in (([], "CPU: none of avx, avx2, "), (None, "CPU: features unknown;"),
                               (["avx", "avx2"], "CPU: avx avx2;")):
        monkeypatch.setattr(cli, "cpu_features", lambda: features)
        assert cli.main(["info"]) == 0
        assert expected in capsys.readouterr().out.splitlines()[-1]


def test_progress_bar_counts_the_lines_it_scores(tmp_path):
    """The total skips what read_records skips: a line of Unicode whitespace (NO-BREAK SPACE, IDEOGRAPHIC SPACE) and
    a first line that is only a BOM were counted as texts, and the bar ended below 100%."""
    file = tmp_path / "texts.txt"
    file.write_text("\ufeff\nReturn the value\n\u00a0\u3000\nof x\n", encoding="utf-8")
    run = run_cli("score", str(file), "--progress")
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["line"] for line in run.stdout.splitlines()] == [2, 4]
    assert "scoring 100% |########################| 2/2 texts" in run.stderr


def test_help_names_the_thread_default():
    for command in ("generate", "chat", "info", "score"):
        run = run_cli(command, "--help")
        assert "NEMOTRON_C_NUM_THREADS, else one per available CPU" in " ".join(run.stdout.split())


@pytest.mark.parametrize("args, closed, message", [
    (["generate", "The", "--max-new-tokens", "2"], 1, "standard output is closed"),
    (["info"], 1, "standard output is closed"),  # printed nothing and exited 0
    (["score", "{file}", "--no-progress"], 1, "standard output is closed: give the command somewhere to write (or"),
    (["score", "-", "--no-progress", "--output", "{out}"], 0, "standard input is closed: the command reads the texts"),
    (["chat", "--max-new-tokens", "2"], 0, "standard input is closed: the command reads the messages"),
])
def test_a_closed_standard_stream_ends_with_a_message(tmp_path, args, closed, message):
    """`>&-` or `<&-` in a shell: Python sets sys.stdout or sys.stdin to None, which failed with an AttributeError
    traceback at the first write or read."""
    file = tmp_path / "texts.txt"
    file.write_text("Return the value\n")
    args = [a.format(file=file, out=tmp_path / "out.jsonl") for a in args]
    run = subprocess.run([sys.executable, "-m", "nemotron_c", *args], stderr=subprocess.PIPE, timeout=120,
                         preexec_fn=lambda: os.close(closed), env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == cli.EXIT_BAD_INPUT, run.stderr
    assert run.stderr.decode().startswith(f"error: {message}")
    # with --output, score needs no standard output
    run = subprocess.run([sys.executable, "-m", "nemotron_c", "score", str(file), "--output", str(tmp_path / "o"),
                          "--no-progress"], stderr=subprocess.PIPE, timeout=120, preexec_fn=lambda: os.close(1),
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0 and json.loads((tmp_path / "o").read_text())["line"] == 1, run.stderr


def test_output_dash_is_standard_output(tmp_path, monkeypatch, capsys):
    """As FILE's "-" is standard input; it wrote a file named "-"."""
    monkeypatch.chdir(tmp_path)
    file = tmp_path / "ids.jsonl"
    file.write_text('{"input_ids": [5, 9, 2]}\n')
    assert cli.main(["score", str(file), "--output", "-", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["num_tokens"] == 2
    assert not (tmp_path / "-").exists()


def test_output_in_a_standard_output_that_is_not_utf8(tmp_path):
    """A Latin-1 (or ASCII) standard output could not encode a JSONL id's text nor a generated one: the command
    ended with a UnicodeEncodeError. Scores are then written with JSON's \\u escapes, generated text with "?"."""
    file = tmp_path / "ids.jsonl"
    file.write_text('{"input_ids": [5, 9, 2], "id": "日本 é"}\n', encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONIOENCODING": "latin-1"}
    run = subprocess.run([sys.executable, "-m", "nemotron_c", "score", str(file), "--no-progress"],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(b'{"line": 1, "id": "\\u65e5\\u672c \\u00e9", "num_tokens": 2')
    run = subprocess.run([sys.executable, "-m", "nemotron_c", "generate", "日本 é", "--max-new-tokens", "3"],
                         capture_output=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("?? é".encode("latin-1"))


def test_chat_input_with_a_byte_order_mark(monkeypatch, capsys):
    """The BOM a Windows editor writes first made the first message "\\ufeff/reset", which str.strip keeps."""
    monkeypatch.setattr(sys, "stdin", __import__("io").BytesIO("\ufeff/reset\r\n".encode()))
    assert cli.main(["chat", "--max-new-tokens", "2"]) == 0
    assert capsys.readouterr().err == "(conversation reset)\n"


def test_text_lines_read_as_jsonl_say_how_to_read_them_as_text(tmp_path, capsys):
    """A text file whose first line starts with "{" (code) is taken for JSONL: the error said only "not valid JSON"."""
    file = tmp_path / "code.txt"
    file.write_text("{\n    return x;\n}\n")
    assert cli.main(["score", str(file), "--no-progress"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == (f"error: {file}:1: not valid JSON (Expecting property name enclosed in double "
                                       'quotes); line 1 starts with "{", so the file is read as JSONL: --format text '
                                       "reads text lines\n")
    assert cli.main(["score", str(file), "--no-progress", "--format", "jsonl"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err.endswith("(Expecting property name enclosed in double quotes)\n")  # asked for
    assert cli.main(["score", str(file), "--no-progress", "--format", "text"]) == 0
    assert [json.loads(line)["line"] for line in capsys.readouterr().out.splitlines()] == [1, 2, 3]


def test_an_error_after_the_streamed_prompt_starts_its_own_line():
    """generate() checks the sampling options after the streamer got the prompt (as Transformers does): the message
    followed the prompt on the terminal's line ("Theerror: ...")."""
    run = run_cli("generate", "The", "--max-new-tokens", "3", "--temperature", "-1")
    assert run.returncode == 1 and run.stdout == "The\n"
    assert run.stderr.startswith("error: `temperature` (=-1.0) has to be a strictly positive float")
    run = run_cli("chat", "--max-new-tokens", "3", "--top-k", "-2", stdin="hello\n")
    assert run.returncode == 1 and run.stdout == "" and run.stderr.startswith("error: `top_k`")


def test_an_output_that_cannot_be_a_file_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    """It failed with an OSError (status 1) only after the model had loaded."""
    file = tmp_path / "ids.jsonl"
    file.write_text('{"input_ids": [5, 9, 2]}\n')

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(nemotron_c.NemotronForCausalLM, "from_pretrained", no_loading)
    for output, message in ((tmp_path, f"--output {tmp_path} names a directory: give a file name"),
                            (f"{tmp_path}/new/", f"--output {tmp_path}/new/ names a directory: give a file name"),
                            ("", "--output is empty: give a file name"),
                            (tmp_path / "no" / "out.jsonl",
                             f"--output {tmp_path / 'no' / 'out.jsonl'}: there is no directory {tmp_path / 'no'}")):
        assert cli.main(["score", str(file), "--output", str(output), "--no-progress"]) == cli.EXIT_BAD_INPUT
        assert capsys.readouterr().err == f"error: {message}\n"


def test_an_output_over_the_checkpoint_is_refused(tmp_path):
    """Opening --output empties it: over the mapped weights the model crashed (SIGBUS) and the checkpoint was lost,
    over the tokenizer (loaded on first use) the tokenizer was."""
    model = tmp_path / "model"
    shutil.copytree(nemotron_c.demo_model_path(), model)
    (tmp_path / "texts.txt").write_text("hello world\n")
    elsewhere = tmp_path / "weights-link.safetensors"
    os.symlink(model / "model.safetensors", elsewhere)
    before = {name: (model / name).read_bytes() for name in os.listdir(model)}
    for output in (model / "model.safetensors", elsewhere, model / "tokenizer.json", model / "config.json"):
        run = run_cli("score", "--model", str(model), str(tmp_path / "texts.txt"), "--output", str(output))
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith(f"error: --output {output} is a file of the model or its tokenizer")
    assert {name: (model / name).read_bytes() for name in os.listdir(model)} == before
    run = run_cli("score", "--model", str(model), str(tmp_path / "texts.txt"), "--output", str(tmp_path / "ok.jsonl"))
    assert run.returncode == 0 and json.loads((tmp_path / "ok.jsonl").read_text())["num_tokens"] > 0


def test_a_mapped_file_outside_the_folders_is_refused_as_output(tmp_path):
    """A LoRA adapter's base weights lie outside the folders named: the process's mappings find them."""
    weights = tmp_path / "base.safetensors"
    weights.write_bytes(b"\0" * 4096)
    with open(weights, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ):
        with pytest.raises(cli.InputError, match="is a file of the model or its tokenizer"):
            cli.refuse_output_over_checkpoint(str(weights), [])
    cli.refuse_output_over_checkpoint(str(weights), [])  # unmapped: free to write


def test_an_output_that_fails_to_write_names_it(tmp_path):
    (tmp_path / "texts.txt").write_text("hello world\n")
    for output in ("/dev/full", "/proc/version"):
        if not os.path.exists(output):
            continue
        run = run_cli("score", str(tmp_path / "texts.txt"), "--output", output)
        assert run.returncode == 1 and "Traceback" not in run.stderr
        assert run.stderr.startswith(f"error: cannot write --output {output}: "), run.stderr
