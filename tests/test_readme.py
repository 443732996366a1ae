"""Runs every ```python block of README.md, in order and in one namespace, so that the README cannot drift from
the code. Checkpoints the README names ("path/to/...", Hub ids) are replaced by tiny local ones made here."""
import os
import re

import pytest
import transformers
from test_pipelines import LABELS, checkpoint_with_tokenizer

import nemotron_c

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RECIPE = "# recipe:"  # the first line of a block that needs what a test cannot stand in for (a cluster, a corpus)


def python_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        blocks = re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)
    return [block for block in blocks if not block.startswith(RECIPE)]


def test_recipes_say_where_they_are_tested():
    """A block left out here must name the tests that run it instead."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        recipes = [line for line in f if line.startswith(RECIPE)]
    assert recipes and all("tests/test_distributed_" in line for line in recipes), recipes


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """README names -> local checkpoints (the demo model's tokenizer, with a pad token so that padding=True works)."""
    root = str(tmp_path_factory.mktemp("readme"))
    causal = checkpoint_with_tokenizer(root, "causal", transformers.NemotronForCausalLM, pad=True)
    return {
        "nvidia/Minitron-4B-Base": causal,
        "path/to/classifier": checkpoint_with_tokenizer(
            root, "classifier", transformers.NemotronForSequenceClassification, pad=True, num_labels=2,
            pad_token_id=2),
        "path/to/tagger": checkpoint_with_tokenizer(
            root, "tagger", transformers.NemotronForTokenClassification, num_labels=5, **LABELS),
        "path/to/reader": os.path.join(ROOT, "tests", "data", "qa"),
    }


def test_readme_python_blocks_run(stand_ins, tmp_path, monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # blocks that save checkpoints write here
    ids = nemotron_c.AutoTokenizer.from_pretrained(stand_ins["nvidia/Minitron-4B-Base"])(
        ["a first text", "another"], padding=True, return_tensors="np")
    namespace = {
        # names the README's fragments take as given
        "path": stand_ins["nvidia/Minitron-4B-Base"],
        "fine_tuned_path": stand_ins["path/to/classifier"],
        "next_ids": ids["input_ids"][:, :1],
        "longer_mask": __import__("numpy").concatenate([ids["attention_mask"], ids["attention_mask"][:, :1]], 1),
        "prompt_ids": ids["input_ids"][:1, :3],
    }
    for number, block in enumerate(blocks):
        for name, local in stand_ins.items():
            block = block.replace(f'"{name}"', repr(local))
        assert "path/to/" not in block, f"README block {number} names a checkpoint this test has no stand-in for"
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith("Return the")
