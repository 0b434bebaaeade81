#!/bin/sh
# Runs pytest with the given arguments and records its counts for the
# closing summary of `make test` (build/test-results.txt).
set -u
label=$1
shift
out=$(mktemp)
python3 -m pytest "$@" 2>&1 | tee "$out"
status=0
tail -1 "$out" | grep -q " passed" || status=1
grep -qE "[0-9]+ (failed|error)" "$out" && status=1
passed=$(tail -1 "$out" | grep -oE "[0-9]+ passed" | grep -oE "[0-9]+" || echo 0)
failed=$(tail -1 "$out" | grep -oE "[0-9]+ (failed|errors?)" | grep -oE "[0-9]+" | paste -sd+ | bc 2>/dev/null || echo 0)
[ -n "$failed" ] || failed=0
mkdir -p build
echo "$label $passed $failed" >> build/test-results.txt
rm -f "$out"
exit $status
