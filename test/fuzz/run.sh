#!/bin/sh
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for
# FUZZ_SECONDS, starting from the seeds in test/fuzz/corpus/<target>.  New
# inputs go to build/fuzz/corpus-<target>; a crash fails the run and leaves
# its reproducer in build/fuzz/.
set -eu
cd "$(dirname "$0")/../.."
seconds=${FUZZ_SECONDS:-60}
out=build/fuzz
mkdir -p "$out"
make -s third_party/llhttp/llhttp.h
CC=clang
FLAGS="-DLLHTTP_STRICT_MODE=1 -I/usr/include/postgresql -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -std=c11 -D_GNU_SOURCE -Iinclude -Ithird_party/llhttp"
LIBSRC="src/workload_crd.c src/util.c src/log.c src/duration.c src/config_keys.c src/config_maps.c src/workload_objects.c src/kind_process.c src/kind_cronjob.c src/kind_service.c src/kind_persistent.c src/config.c src/config_yaml.c src/config_validate.c src/config_dump.c src/http_session.c src/kube_config.c src/kube_client.c src/kube_calls.c src/kube_easy.c src/informer.c src/yaml_json.c src/yaml_expand.c third_party/llhttp/llhttp.c third_party/llhttp/api.c third_party/llhttp/http.c"
total=0
for t in "$@"; do
    bin=$out/fuzz_$t
    # shellcheck disable=SC2086
    $CC $FLAGS -o "$bin" "test/fuzz/fuzz_$t.c" $LIBSRC -lcyaml -lyaml -ljansson -lcurl -luv -lpq
    mkdir -p "$out/corpus-$t"
    cp -n test/fuzz/corpus/"$t"/* "$out/corpus-$t/" 2>/dev/null || true
    echo "fuzz $t: ${seconds}s"
    if ! "$bin" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
            -artifact_prefix="$out/$t-" -print_final_stats=1 \
            "$out/corpus-$t" test/fuzz/corpus/"$t" >"$out/$t.log" 2>&1; then
        tail -50 "$out/$t.log" >&2
        echo "fuzz $t: FAILED (reproducer in $out/)" >&2
        echo "fuzz 0 1" >> build/test-results.txt
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
    echo "fuzz $t: ok, $runs executions"
    total=$((total + 1))
done
echo "fuzz: $total passed, 0 failed"
echo "fuzz $total 0" >> build/test-results.txt
