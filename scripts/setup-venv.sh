#!/usr/bin/env bash
# setup-venv.sh — the Python venv of the tools that Debian 12 does not package, for the tests:
# schemathesis (tests/integration/test_schemathesis.py). Called by scripts/setup.sh --test.
# The venv is ${PLAYHEAD_CACHE:-$HOME/.cache/playhead}/venv, made with Debian's /usr/bin/python3
# (python3-venv) and filled by pip from PyPI with the pinned versions below. Idempotent: a stamp
# records what was installed; nothing runs (no network) when it matches.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Pinned: schemathesis 3.x keeps the CLI the test drives (--hypothesis-seed, --checks all);
# it runs on Debian's Python 3.11. hypothesis 6.131 and later break it ("'many' object has no
# attribute 'more'" while generating every case), so hypothesis is pinned below that.
REQUIREMENTS=(schemathesis==3.39.16 hypothesis==6.130.13)
VENV=${PLAYHEAD_CACHE:-$HOME/.cache/playhead}/venv
stamp=$VENV/.playhead-requirements

[[ $(cat "$stamp" 2>/dev/null) == "${REQUIREMENTS[*]}" && -x $VENV/bin/schemathesis ]] && exit 0
echo "setup-venv.sh: installing ${REQUIREMENTS[*]} into $VENV (pip, PyPI)" >&2
rm -rf "$VENV"
/usr/bin/python3 -m venv "$VENV" || die "python3 -m venv failed (package python3-venv)"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" ||
    die "pip install ${REQUIREMENTS[*]} failed (it needs PyPI once; see the output above)"
echo "${REQUIREMENTS[*]}" >"$stamp"
