#!/usr/bin/env bash
# fuzz.sh [SECONDS] — build the libFuzzer targets of tests/fuzz with clang in ./build-fuzz and run
# each for SECONDS (default 45), one after the other, from a temporary copy of its seed corpus
# (tests/fuzz/corpus/<target>), with its dictionary when there is one. Exits non-zero when a build
# fails or any target finds a crash, a leak, a timeout or a failed check; the input that did it is
# kept in build-fuzz/artifacts/ and printed with the command that reproduces it.
# Environment: PH_FUZZ_TARGETS="fuzz_events ..." to run only some; PH_FUZZ_JUNIT=FILE to also write
# a JUnit report (one test case per target) for scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-45}
[[ $seconds =~ ^[0-9]+$ ]] && ((seconds > 0)) || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
targets=(${PH_FUZZ_TARGETS:-fuzz_events fuzz_router fuzz_query_cookie fuzz_token})
build=build-fuzz
artifacts=$PWD/$build/artifacts

command -v clang >/dev/null || { echo "fuzz.sh: clang is required (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B "$build" -DPH_FUZZ=ON -DPH_SANITIZE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target "${targets[@]}" -j2

work=$(mktemp -d "${TMPDIR:-/tmp}/playhead-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
# libFuzzer reports through the sanitizers; a leak or UB must end the run, not scroll past
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

failed=() junit_cases=()
for t in "${targets[@]}"; do
    corpus=$work/$t
    mkdir -p "$corpus"
    cp tests/fuzz/corpus/"$t"/* "$corpus"/
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
          -artifact_prefix="$artifacts/$t-")
    [[ -f tests/fuzz/$t.dict ]] && args+=(-dict="tests/fuzz/$t.dict")
    echo "=== fuzz.sh: $t for ${seconds}s"
    start=$SECONDS rc=0
    "$build/tests/fuzz/$t" "${args[@]}" "$corpus" >"$work/$t.log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$work/$t.log" || true
    if ((rc != 0)); then
        failed+=("$t")
        tail -60 "$work/$t.log"
        art=$(grep -o "Test unit written to .*" "$work/$t.log" | tail -1 | sed 's/Test unit written to //' || true)
        echo "fuzz.sh: $t FAILED (exit $rc)${art:+; reproduce with: $build/tests/fuzz/$t $art}" >&2
        junit_cases+=("<testcase classname=\"fuzz\" name=\"$t\" time=\"$((SECONDS - start))\">"
                      "<failure message=\"exit $rc${art:+, input $art}\"/></testcase>")
    else
        junit_cases+=("<testcase classname=\"fuzz\" name=\"$t\" time=\"$((SECONDS - start))\"/>")
    fi
done

if [[ -n ${PH_FUZZ_JUNIT:-} ]]; then
    {
        echo "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
        echo "<testsuite name=\"fuzz\" tests=\"${#targets[@]}\" failures=\"${#failed[@]}\">"
        printf '%s\n' "${junit_cases[@]}"
        echo "</testsuite>"
    } >"$PH_FUZZ_JUNIT"
fi
if ((${#failed[@]})); then
    echo "fuzz.sh: ${#failed[@]} of ${#targets[@]} targets failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets ran ${seconds}s each without a finding"
