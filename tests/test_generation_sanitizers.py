"""The C decoding loop under AddressSanitizer and UndefinedBehaviorSanitizer (csrc/tests/generate_smoke.c): a
random tiny model through greedy, sampling, beam search and beam sampling with every processor on.

Opt-in, as the sanitizer build takes a while: NEMOTRON_C_SANITIZE=1 python -m pytest tests/test_generation_sanitizers.py
"""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_variables():
    with open(os.path.join(ROOT, "csrc", "sources.mk"), encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    return {m.group(1): m.group(2).split() for m in re.finditer(r"^\s*([A-Z0-9_]+)\s*=\s*(.*)$", text, re.M)}


@pytest.mark.skipif(os.environ.get("NEMOTRON_C_SANITIZE") != "1" or shutil.which("gcc") is None,
                    reason="set NEMOTRON_C_SANITIZE=1 (needs gcc) to run the sanitizer build")
def test_generator_under_sanitizers(tmp_path):
    make = make_variables()
    sources = [os.path.join(ROOT, "csrc", s) for s in make["CORE_SOURCES"] + make["AVX2_SOURCES"]]
    binary = tmp_path / "generate_smoke"
    subprocess.run(["gcc", "-std=c11", "-g", "-O1", "-D_GNU_SOURCE", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-I" + os.path.join(ROOT, "csrc"),
                    *make["AVX2_CFLAGS"], *sources, os.path.join(ROOT, "csrc", "tests", "generate_smoke.c"),
                    "-lm", "-pthread", "-o", str(binary)], check=True)
    result = subprocess.run([str(binary)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("mode ") == 4
