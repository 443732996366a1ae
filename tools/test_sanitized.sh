#!/bin/sh
# Builds nemotron_c._core with AddressSanitizer and UndefinedBehaviorSanitizer (from the same csrc/sources.mk that
# setup.py reads) in a scratch copy of the tree, then runs the given tests there (default: the tokenizer's).
#
#     tools/test_sanitized.sh [pytest arguments...]
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nemotron_c_sanitized.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$here" && tar --exclude=./build --exclude='*.so' --exclude=./.git -cf - .) | (cd "$work" && tar -xf -)
cd "$work"
CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address,undefined" \
    python setup.py build_ext --inplace > build.log 2>&1 || { cat build.log; exit 1; }
[ $# -gt 0 ] || set -- tests/test_tokenizer_errors.py tests/test_tokenizer.py
# -s: a sanitizer report goes to stderr and ends the process; pytest's capture would swallow it
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    python -m pytest -x -q -s -p no:cacheprovider "$@"
