"""What the tests of nemotron_c.distributed share: a checkpoint folder holding a tokenizer (as on the Hub), a
corpus with row ids, files of it for the engines to read, the single-process reference and the comparison, their
fixtures (imported by each test module), and a worker that kills its own process."""
import functools
import os
import shutil
import signal

import numpy as np
import pandas
import pytest

import nemotron_c
from nemotron_c.distributed import BatchScorer
from .checkpoints import write_random_checkpoint
from .compare import assert_close
from .tokenizer_builders import build_all
from .tokenizer_corpus import training_lines

N_TEXTS = 300
KILL_ID = 150  # the row whose batch kills its worker in the fault tests


@functools.lru_cache(maxsize=None)
def model_dir(root):
    """A random tiny NemotronForCausalLM (torch-free) with the converted Nemotron tokenizer beside it."""
    path = os.path.join(root, "model")
    shutil.copytree(build_all(os.path.join(root, "tokenizers"))["nemotron"], path, dirs_exist_ok=True)
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(path)
    write_random_checkpoint(path, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id)
    return path


def corpus(n=N_TEXTS):
    """Rows (id, text): sentences, code, CJK, digits, emoji, plus an empty text (nothing scored: NaN mean) and a
    one-character one."""
    texts = training_lines(seed=7, n=n)[:n]
    texts[3], texts[10] = "", "a"
    return pandas.DataFrame({"id": np.arange(n), "text": texts})


def with_input_ids(frame, path):
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(path)
    ids = [list(x) for x in tokenizer(frame["text"].tolist())["input_ids"]]
    return pandas.DataFrame({"id": frame["id"], "input_ids": ids})


def write_parts(frame, directory, parts, fmt):
    """`frame` as `parts` files (the engines' partitions or blocks): Parquet, or JSON lines."""
    os.makedirs(directory, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(len(frame)), parts)):
        rows = frame.iloc[part]
        if fmt == "parquet":
            rows.to_parquet(os.path.join(directory, f"part-{k}.parquet"), index=False)
        else:
            rows.to_json(os.path.join(directory, f"part-{k}.jsonl"), orient="records", lines=True, force_ascii=False)
    return directory


def read_output(directory):
    """Every Parquet or JSON-lines file an engine wrote, as one frame in id order."""
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory)
                   if f.endswith((".parquet", ".json", ".jsonl")))
    frames = [pandas.read_parquet(f) if f.endswith(".parquet") else pandas.read_json(f, lines=True) for f in files]
    return pandas.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)


def single_process_scores(path, texts):
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    return model.score(texts, tokenizer=nemotron_c.AutoTokenizer.from_pretrained(path))


def generated_alone(path, texts, max_new_tokens):
    """The text model.generate gives for each prompt alone (its new tokens, decoded)."""
    model = nemotron_c.AutoModelForCausalLM.from_pretrained(path)
    tokenizer = nemotron_c.AutoTokenizer.from_pretrained(path)
    expected = []
    for ids in tokenizer(texts)["input_ids"]:
        new = model.generate(np.array([ids]), max_new_tokens=max_new_tokens)[0, len(ids):]
        expected.append(tokenizer.decode(new, skip_special_tokens=True))
    return expected


def assert_complete(frame, n=N_TEXTS):
    """Each row once: none lost, none duplicated."""
    ids = np.asarray(frame["id"])
    assert len(ids) == n and np.array_equal(np.sort(ids), np.arange(n)), (
        f"{len(ids)} rows out for {n} in; missing {sorted(set(range(n)) - set(ids.tolist()))[:10]}, "
        f"duplicated {sorted(i for i in set(ids.tolist()) if (ids == i).sum() > 1)[:10]}")


def assert_same_scores(frame, reference):
    """`frame` (rows in id order) holds `reference`'s scores (a SequenceScoreOutput), row for row: token counts
    and NaNs exactly, the rest up to float32 rounding (model.score's batching contract)."""
    assert_complete(frame, len(reference.num_tokens))
    np.testing.assert_array_equal(np.asarray(frame["num_tokens"]), reference.num_tokens)
    for name in ("sum_logprob", "mean_logprob", "perplexity"):
        ours, theirs = np.asarray(frame[name], dtype=np.float64), getattr(reference, name)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: NaN rows differ")
        kept = ~np.isnan(theirs)
        scale = np.maximum(np.abs(theirs[kept]), 1.0)  # perplexities can be large: compare relatively
        assert_close(ours[kept] / scale, theirs[kept] / scale, atol=1e-5, what=name)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return model_dir(str(tmp_path_factory.getbasetemp() / "distributed"))


@pytest.fixture(scope="module")
def frame():
    return corpus()


@pytest.fixture(scope="module")
def reference(path, frame):
    return single_process_scores(path, frame["text"].tolist())


# ---------------------------------------------------------------- a worker lost mid-job


class DiesOnce(BatchScorer):
    """Kills its own worker process (SIGKILL: no clean-up, as a machine lost) on the batch holding row KILL_ID,
    the first time any worker sees it. The engines unpickle it by value (cloudpickle.register_pickle_by_value):
    their workers cannot import the tests' helpers."""

    def __init__(self, marker, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.marker = marker

    def __call__(self, batch):
        if KILL_ID in np.asarray(batch["id"]) and claim(self.marker):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(batch)


def claim(marker):
    """True for the one process that creates `marker` first."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False
