#!/bin/sh
# Runs every unit test binary in DIR, optionally under valgrind, and prints
# one closing line "N passed, N failed".  Exit status is non-zero if any
# binary fails (cmocka exits non-zero when a test fails).
set -u
dir=$1
mode=${2:-plain}
pass=0
fail=0
failed=""
for t in "$dir"/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.d) continue ;; esac
    name=$(basename "$t")
    if [ "$mode" = valgrind ]; then
        # Every leak kind counts: the unit tests free everything they make.
        valgrind --quiet --leak-check=full --show-leak-kinds=all \
            --errors-for-leak-kinds=all --error-exitcode=99 "$t" >"$dir/$name.log" 2>&1
    else
        "$t" >"$dir/$name.log" 2>&1
    fi
    rc=$?
    n_ok=$(grep -c '^\[       OK \]' "$dir/$name.log")
    n_bad=$(grep -c '^\[  FAILED  \]' "$dir/$name.log")
    if [ $rc -eq 0 ]; then
        pass=$((pass + n_ok))
        echo "  $mode $name: $n_ok ok"
    else
        fail=$((fail + (n_bad > 0 ? n_bad : 1)))
        pass=$((pass + n_ok))
        failed="$failed $name"
        echo "  $mode $name: FAILED (exit $rc), log follows" >&2
        tail -40 "$dir/$name.log" >&2
    fi
done
echo "unit-$mode: $pass passed, $fail failed"
mkdir -p build
echo "unit-$mode $pass $fail" >> build/test-results.txt
[ -z "$failed" ]
