#!/bin/sh
# The sanitizer runs of issue 11, each optional by name (default: all):
#   c-asan   the C tests (csrc/tests) under AddressSanitizer and UndefinedBehaviorSanitizer
#   py-asan  a short Python suite (loading errors, tokenizer errors, fuzz targets) against an ASan+UBSan build of
#            the extension, through tools/test_sanitized.sh
#   c-tsan   the C tests under ThreadSanitizer: the thread pool's own test and the threaded kernels and generation
#
#     tools/test_sanitizers.sh [c-asan] [py-asan] [c-tsan]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -gt 0 ] || set -- c-asan py-asan c-tsan
build=$(mktemp -d "${TMPDIR:-/tmp}/nemotron_c_sanitizers.XXXXXX")
trap 'rm -rf "$build"' EXIT
for run in "$@"; do
    start=$(date +%s)
    case "$run" in
    c-asan)
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            make -s -C "$here/csrc" test SANITIZE=address,undefined BUILD="$build/asan" ;;
    py-asan)
        "$here/tools/test_sanitized.sh" tests/test_checkpoint_safetensors.py tests/test_checkpoint_torch_bin.py \
            tests/test_tokenizer_errors.py tests/test_fuzz.py ;;
    c-tsan)
        # die_after_fork=0: the thread pool test forks on purpose, to check the pool is rebuilt in the child;
        # halt_on_error: a data race fails the run
        TSAN_OPTIONS=die_after_fork=0:halt_on_error=1 \
            make -s -C "$here/csrc" test SANITIZE=thread BUILD="$build/tsan" ;;
    *)
        echo "unknown run $run (c-asan, py-asan, c-tsan)" >&2
        exit 2 ;;
    esac
    echo "$run: passed in $(( $(date +%s) - start )) s"
done
