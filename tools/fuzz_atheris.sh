#!/bin/sh
# Runs one fuzz target under atheris against an AddressSanitizer + UndefinedBehaviorSanitizer build of the
# extension, built (from the same csrc/sources.mk as setup.py) in a scratch copy of the tree, so the in-place build
# of the checkout is left alone. Coverage guidance is the Python readers' (gcc has no libFuzzer coverage for C);
# ASan and UBSan end the run on any memory error or undefined behaviour in the C core on the way.
#
#     tools/fuzz_atheris.sh TARGET [libFuzzer options...]     e.g. tools/fuzz_atheris.sh safetensors -runs=1000000
#
# Findings (a Python exception outside the target's EXPECTED, a sanitizer report, a timeout) land in
# fuzz/findings/ of the checkout; the corpus libFuzzer grows stays in the scratch copy and goes with it.
set -eu
[ $# -ge 1 ] || { echo "usage: $0 TARGET [libFuzzer options...]" >&2; exit 2; }
target=$1
shift
here=$(cd "$(dirname "$0")/.." && pwd)
# without atheris the shim below would have no libFuzzer to hand the callbacks to (it recursed until the stack ran out)
python -c "import atheris" 2>/dev/null || { echo "$0: the python on PATH cannot import atheris (pip install atheris)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/nemotron_c_atheris.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$here" && tar --exclude=./build --exclude='*.so' --exclude=./.git --exclude='./.venv*' --exclude=./dist \
    --exclude=./fuzz/findings -cf - .) |
    (cd "$work" && tar -xf -)
cd "$work"
CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address,undefined" \
    python setup.py build_ext --inplace > build.log 2>&1 || { cat build.log; exit 1; }
mkdir -p "$here/fuzz/findings"
# gcc's libasan defines do-nothing coverage callbacks that would take atheris's calls and leave libFuzzer blind:
# fuzz/libfuzzer_first.c, preloaded first, hands them to atheris's libFuzzer.
# detect_leaks=0: CPython's own allocations look like leaks at exit; halt_on_error and abort_on_error: UBSan's
# reports end the run like ASan's, by an abort that libFuzzer catches to save the input; -timeout: an input that takes longer is a hang (the ASan build is a few times slower than the
# release one, and no reader comes near this)
gcc -shared -fPIC -O1 -o libfuzzer_first.so fuzz/libfuzzer_first.c -ldl
ATHERIS_LIBFUZZER=$(python -c 'import glob, os, atheris
print(glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))[0])') \
LD_PRELOAD="$work/libfuzzer_first.so $(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1 \
    python fuzz/run.py "$target" --atheris -timeout=30 -artifact_prefix="$here/fuzz/findings/$target-" "$@"
