"""Builds nemotron_c._core from csrc/ (the C core) and nemotron_c/_binding/ (the CPython binding).

The list of core sources and their flags lives in csrc/sources.mk, which csrc/Makefile reads too.
"""
import functools
import os
import re
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("csrc")


def read_make_variables(path):
    """Parses the `NAME = words...` assignments (with backslash continuations) of a Makefile fragment."""
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    variables = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        match = re.match(r"^\s*([A-Za-z0-9_]+)\s*=\s*(.*)$", line)
        if match:
            variables[match.group(1)] = match.group(2).split()
    return variables


MAKE = read_make_variables(os.path.join(HERE, CSRC, "sources.mk"))
ISA_SOURCES = {isa: [os.path.join(CSRC, s) for s in MAKE[f"{isa}_SOURCES"]] for isa in MAKE["ISAS"]}
BINDING_SOURCES = sorted(
    os.path.join("nemotron_c", "_binding", name)
    for name in os.listdir(os.path.join(HERE, "nemotron_c", "_binding"))
    if name.endswith(".c")
)


class BuildExtWithIsaObjects(build_ext):
    """Compiles each ISA's kernels (ISAS in sources.mk) with its own flags, then links them into the extension."""

    def build_extension(self, ext):
        objects = []
        for isa, sources in ISA_SOURCES.items():
            compile_isa = functools.partial(self.compiler.compile, sources, output_dir=self.build_temp,
                                            include_dirs=ext.include_dirs, depends=ext.depends)
            try:
                objects += compile_isa(extra_postargs=MAKE["CORE_CFLAGS"] + MAKE[f"{isa}_CFLAGS"])
            except CompileError:
                # a compiler that lacks these flags (AMX needs gcc 11 or clang 12): without them the file builds
                # a set that reports itself unsupported, and the CPU uses the next one
                print(f"building without the {isa} kernels: the compiler refused {' '.join(MAKE[f'{isa}_CFLAGS'])}",
                      file=sys.stderr)
                objects += compile_isa(extra_postargs=MAKE["CORE_CFLAGS"])
        ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extension(ext)


core = Extension(
    "nemotron_c._core",
    sources=[os.path.join(CSRC, s) for s in MAKE["CORE_SOURCES"]] + BINDING_SOURCES,
    include_dirs=[CSRC],
    extra_compile_args=MAKE["CORE_CFLAGS"],
    extra_link_args=["-pthread", "-lm"],
    # the ISA-specific sources are compiled by BuildExtWithIsaObjects, so they count as dependencies here
    depends=[os.path.join(root, name) for root, _, names in os.walk(CSRC) for name in names
             if name.endswith(".h") or name == "sources.mk"]
    + [source for sources in ISA_SOURCES.values() for source in sources]
    + [os.path.join("nemotron_c", "_binding", "binding.h")],
)

setup(ext_modules=[core], cmdclass={"build_ext": BuildExtWithIsaObjects})
