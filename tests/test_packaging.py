"""The source distribution carries everything a build needs, and no build flag ties the binary to the build machine.

CI (.ci/run) builds the wheel from the sdist once and installs it, with no compiler reachable, into a venv without
torch, where it runs the demo and the torch-free tests: that is the wheel's test. Here: what goes into the sdist.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD_FILES = ["setup.py", "pyproject.toml", "csrc/sources.mk", "csrc/Makefile"]


def read_make_variables(path):
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    return {m.group(1): m.group(2).split() for m in re.finditer(r"^([A-Za-z0-9_]+)\s*=\s*(.*)$", text, re.M)}


@pytest.mark.parametrize("name", BUILD_FILES)
def test_no_flag_ties_the_binary_to_the_build_machine(name):
    # kernels are chosen at run time (csrc/kernels/dispatch.c); -march=native would let the compiler use the build
    # machine's instructions everywhere, and a wheel built on an AVX-512 machine would crash on an AVX2 one
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"-m(arch|tune|cpu)=native", text)


def test_only_the_kernel_sets_get_instruction_set_flags():
    make = read_make_variables(os.path.join(REPO, "csrc", "sources.mk"))
    assert not [flag for flag in make["CORE_CFLAGS"] if flag.startswith(("-mavx", "-mfma", "-mf16c", "-march"))]
    for isa in make["ISAS"]:
        assert all(source.startswith("kernels/") for source in make[f"{isa}_SOURCES"])


@pytest.fixture(scope="module")
def sdist_names(tmp_path_factory):
    out, tree = tmp_path_factory.mktemp("sdist"), tmp_path_factory.mktemp("tree")
    # from a copy of the files git knows (as a fresh clone has them): setuptools would otherwise reuse the file
    # list an earlier build left in nemotron_c.egg-info/
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if os.path.isfile(os.path.join(REPO, name)):
            os.makedirs(os.path.dirname(os.path.join(tree, name)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, name), os.path.join(tree, name))
    # isolated: the build requirements of pyproject.toml are installed for it, as pip does for users
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(tree)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (archive,) = out.glob("nemotron_c-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    prefix = names[0].split("/")[0] + "/"
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


def test_sdist_holds_every_source_the_build_reads(sdist_names):
    make = read_make_variables(os.path.join(REPO, "csrc", "sources.mk"))
    sources = make["CORE_SOURCES"] + [s for isa in make["ISAS"] for s in make[f"{isa}_SOURCES"]]
    expected = {f"csrc/{s}" for s in sources} | set(BUILD_FILES) | {"README.md"}
    for folder in ["csrc", "nemotron_c/_binding", "nemotron_c/demo_model"]:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            for name in files:
                if name.endswith((".c", ".h")) or folder.endswith("demo_model"):
                    expected.add(os.path.relpath(os.path.join(root, name), REPO))
    for root, _, files in os.walk(os.path.join(REPO, "nemotron_c")):
        expected |= {os.path.relpath(os.path.join(root, n), REPO) for n in files if n.endswith(".py")}
    assert sorted(expected - sdist_names) == []


def test_sdist_leaves_out_the_repository_only_folders(sdist_names):
    assert not [n for n in sdist_names if n.startswith(("tests/", "fuzz/", ".ci/", "benchmarks/", ".venv"))]
