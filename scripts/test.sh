#!/usr/bin/env bash
# test.sh [PYTEST ARGS...] — run every playhead test and end with one line "N passed, N failed".
# Does all set-up first (scripts/setup.sh --asan --test: Debian packages for running and testing,
# Kafka, the schemathesis venv, ./build and ./build-asan), then runs the cmocka unit tests of both with
# ctest, then the integration tests (tests/integration, pytest) against the sanitizer build.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k outage`. PH_SEED reproduces a run's randomness.
set -euo pipefail
cd "$(dirname "$0")/.."

results=$(mktemp -d "${TMPDIR:-/tmp}/playhead-test.XXXXXX")
trap 'rm -rf "$results"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"

# suite NAME CMD...: run one suite, which writes a JUnit report to $results/NAME.xml; a non-zero exit
# is remembered so that a suite failing without a report (a crash, a build error) still counts.
suite() {
    local name=$1 rc=0
    shift
    echo "=== test.sh: $name: $*"
    "$@" || rc=$?
    ((rc == 0)) || echo "$rc" >"$results/$name.rc"
}

# Set-up first (on a bare machine it installs everything, Python modules included), then the tools.
if scripts/setup.sh --asan --test; then
    # Debian's python3 has the modules set-up installed (python3-pytest, ...); the python3 first on
    # PATH (e.g. a pyenv one) may not. $PYTHON overrides.
    py=
    for candidate in ${PYTHON:+"$PYTHON"} /usr/bin/python3 python3; do
        if "$candidate" -c 'import pytest, redis, confluent_kafka' 2>/dev/null; then py=$candidate && break; fi
    done
    [[ -n $py ]] || { echo "test.sh: no python3 with pytest, redis and confluent_kafka after scripts/setup.sh" >&2; exit 1; }
    # Tools the set-up installs for the tests (promtool, schemathesis) must be there: a test that
    # would skip without one fails instead.
    export PH_REQUIRE_TOOLS=1
    suite unit ctest --test-dir build --output-on-failure --output-junit "$results/unit.xml"
    suite unit-asan ctest --test-dir build-asan --output-on-failure --output-junit "$results/unit-asan.xml"
    suite integration env PH_BUILD_DIR=build-asan PH_TIMEOUT_MULT="${PH_TIMEOUT_MULT:-3}" \
        "$py" -m pytest -v --junitxml="$results/integration.xml" tests/integration "$@"
    # libFuzzer targets (tests/fuzz) under ASan+UBSan, 30 s each; longer runs: scripts/fuzz.sh SECONDS
    suite fuzz env PH_FUZZ_JUNIT="$results/fuzz.xml" scripts/fuzz.sh 30
else
    echo "test.sh: setup/build failed" >&2
    echo 1 >"$results/build.rc"
fi
[[ -n ${py:-} ]] || py=/usr/bin/python3

# Sum the JUnit reports per test case (pytest reports a test that fails and then errors in teardown
# twice); a suite that exited non-zero counts at least one failure.
"$py" - "$results" <<'PY'
import pathlib, sys, xml.etree.ElementTree as ET
passed = failed = 0
for name in ("build", "unit", "unit-asan", "integration", "fuzz"):
    xml, rc = pathlib.Path(sys.argv[1], name + ".xml"), pathlib.Path(sys.argv[1], name + ".rc")
    if not (xml.exists() or rc.exists()):
        continue
    state = {}  # (class, name) -> worst outcome: 0 passed, 1 skipped, 2 failed
    for case in ET.parse(xml).getroot().iter("testcase") if xml.exists() else ():
        now = 2 if case.find("failure") is not None or case.find("error") is not None else \
              1 if case.find("skipped") is not None else 0
        key = (case.get("classname"), case.get("name"))
        state[key] = max(state.get(key, 0), now)
    p, f = list(state.values()).count(0), list(state.values()).count(2)
    if rc.exists():
        f = max(f, 1)
    print(f"test.sh: {name}: {p} passed, {f} failed" + (f" (exit {rc.read_text().strip()})" if rc.exists() else ""))
    passed, failed = passed + p, failed + f
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
