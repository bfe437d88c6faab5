#!/usr/bin/env bash
# setup-demo.sh [--test] — make the demo (and with --test its tests) ready; called by scripts/setup.sh.
#   demo/media/                 scripts/gen-demo-media.sh (ffmpeg, offline; skips files already there)
#   demo/vendor/                uPlot from npm: (cd demo && npm ci && npm run vendor)
#   tests/browser/node_modules  --test: playwright-core from npm: (cd tests/browser && npm ci); the browser
#                               is Debian's /usr/bin/chromium, nothing is downloaded besides npm packages
# Idempotent and quick when done (well under a second, no network): `npm ci` runs only when a
# folder's node_modules does not match its package-lock.json (a stamp records the lock it came
# from), and vendor/ is copied only when it differs. Needs the packages of scripts/packages.txt
# (with --test, chromium from scripts/packages-test.txt);
# installs Debian's npm if there is no npm at all (NodeSource's nodejs has its own, and conflicts
# with Debian's npm package, which is why npm is not in packages.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
test=0
for arg; do
    case $arg in
    --test) test=1 ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
    esac
done
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
t0=$EPOCHREALTIME

command -v node >/dev/null || die "node not found (apt-get install nodejs; see scripts/packages.txt)"
if ! command -v npm >/dev/null; then
    echo "setup-demo.sh: installing npm" >&2
    sudo=()
    (($(id -u) == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
fi

scripts/gen-demo-media.sh

# npm_ci DIR FILE: `npm ci` in DIR unless DIR/node_modules came from this very package-lock.json
# and holds FILE (a file of the main dependency: a half-deleted node_modules does not count).
# The stamp is written last, so an interrupted install is redone next time.
npm_ci() {
    local dir=$1 file=$2 stamp=$1/node_modules/.playhead-lock.sha256 want
    want=$(cat "$dir/package.json" "$dir/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [[ -f $dir/node_modules/$file && $(cat "$stamp" 2>/dev/null) == "$want" ]]; then
        return 0
    fi
    echo "setup-demo.sh: npm ci in $dir" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error >/dev/null) ||
        die "npm ci failed in $dir (it needs the npm registry once; see the output above)"
    [[ -f $dir/node_modules/$file ]] || die "npm ci in $dir did not install $file"
    echo "$want" >"$stamp"
}

npm_ci demo uplot/dist/uPlot.iife.min.js
for f in uPlot.iife.min.js uPlot.min.css; do
    if ! cmp -s "demo/node_modules/uplot/dist/$f" "demo/vendor/$f"; then
        (cd demo && npm run --silent vendor) >&2
        break
    fi
done

uplot=$(node -p 'require("./demo/node_modules/uplot/package.json").version')
pw=
if ((test)); then
    npm_ci tests/browser playwright-core/package.json
    pw=", playwright-core $(node -p 'require("./tests/browser/node_modules/playwright-core/package.json").version')"
fi
echo "setup-demo.sh: demo ready (media, uPlot $uplot$pw) in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f s", b - a }')" >&2
