"""The C kernels against their naive references, the thread pool, and the decoding loop in every mode, built
and run as C programs.

The same programs run under AddressSanitizer and UndefinedBehaviorSanitizer when the compiler has them.
"""
import os
import subprocess

import pytest

CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc")


def run_make(build_dir, *extra):
    result = subprocess.run(["make", "-C", CSRC, "test", f"BUILD={build_dir}", *extra],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ok: 0 failure(s)" in result.stdout


def test_kernels_match_naive_reference(tmp_path):
    run_make(str(tmp_path / "build"))


def sanitizers_available(tmp_path):
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    result = subprocess.run(["cc", "-fsanitize=address,undefined", str(probe), "-o", str(tmp_path / "probe")],
                            capture_output=True)
    return result.returncode == 0


def test_kernels_under_sanitizers(tmp_path):
    if not sanitizers_available(tmp_path):
        pytest.skip("this compiler has no AddressSanitizer/UBSan runtime")
    run_make(str(tmp_path / "asan"), "SANITIZE=address,undefined")
