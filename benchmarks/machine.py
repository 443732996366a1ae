"""What the benchmark knows of the machine: the CPU's name and instruction sets, and two probes measured on it
at run time, the float32 FMA peak (fma_peak.c) and the streaming-read bandwidth (read_bandwidth.c).

The probes are C programs built here with the system compiler rather than entry points of nemotron_c's core:
they measure the machine, not the library, and the core ships nothing that only a benchmark calls. Without a
compiler (or on a CPU the probe has no code for) the probe reports why and the fractions are left blank.
"""
import hashlib
import os
import platform
import re
import shutil
import subprocess

from nemotron_c.cli import cpu_features

HERE = os.path.dirname(os.path.abspath(__file__))
# (source, compiler flags): the FMA probe picks its instruction sets with target attributes, the read probe
# lets the compiler vectorize for this CPU (-march=native where the compiler knows it)
PROBES = {"fma_peak": ("fma_peak.c", [["-O2"]]),
          "read_bandwidth": ("read_bandwidth.c", [["-O3", "-march=native"], ["-O3"]])}


def cpu_kind():
    """(name, heading): the CPU's model name, and the name with its family and model numbers, which tell CPU
    kinds apart where virtual machines report a generic name ("Intel(R) Xeon(R) Processor")."""
    fields = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    numbers = ", ".join(f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"))
                        if key in fields)
    return name, f"{name} ({numbers})" if numbers else name


def thread_count():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def isa_flags():
    return cpu_features() or []


def build_probe(name, build_dir):
    """Path of the probe's executable, compiled once per source text and CPU kind (-march=native) into build_dir;
    or raises OSError saying why it could not be built."""
    source_name, flag_choices = PROBES[name]
    source = os.path.join(HERE, source_name)
    with open(source, "rb") as f:
        digest = hashlib.sha1(f.read() + cpu_kind()[1].encode()).hexdigest()[:12]
    exe = os.path.join(build_dir, f"{name}-{digest}")
    if os.path.exists(exe):
        return exe
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise OSError("no C compiler (cc, gcc, clang or $CC) to build the probe")
    os.makedirs(build_dir, exist_ok=True)
    errors = ""
    for flags in flag_choices:
        result = subprocess.run([compiler, *flags, "-pthread", source, "-o", exe + ".tmp"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(exe + ".tmp", exe)
            return exe
        errors = result.stderr.strip().splitlines()[-1:] or [f"status {result.returncode}"]
    raise OSError(f"{compiler} could not build {source_name}: {errors[0]}")


def run_probe(name, build_dir, args):
    exe = build_probe(name, build_dir)
    result = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise OSError(f"{name} failed with status {result.returncode}: {result.stderr.strip()[:200]}")
    return result.stdout


def fma_peak(build_dir, threads, repeats):
    """{isa: (GFLOP/s of one core, GFLOP/s of `threads` threads)} for avx2 and avx512 where the CPU runs them."""
    output = run_probe("fma_peak", build_dir, [threads, repeats])
    peaks, column = {}, 0
    for line in output.splitlines():
        if line.startswith("float32 FMA peak"):
            column = 0 if "one core" in line else 1
            continue
        match = re.match(r"\s+(\w+)\s+([\d.]+) GFLOP/s", line)
        if match:
            peaks.setdefault(match[1], [None, None])[column] = float(match[2])
    for pair in peaks.values():
        if threads == 1:
            pair[1] = pair[0]
    return {isa: tuple(pair) for isa, pair in peaks.items()}


def read_bandwidth(build_dir, threads, repeats, mib):
    """(GB/s of one thread, GB/s of `threads` threads) reading a buffer of `mib` MiB."""
    output = run_probe("read_bandwidth", build_dir, [mib, threads, repeats])
    found = {int(m[1]): float(m[2]) for m in re.finditer(r"^\s+(\d+) threads?\s+([\d.]+) GB/s", output, re.M)}
    return found[1], found.get(threads, found[1])
