#!/usr/bin/env bash
# setup.sh [--asan] — make this machine ready to build, run and test playhead, then build it.
# Installs whatever is missing from scripts/packages.txt (apt), fetches Kafka into the cache
# (scripts/kafka.sh fetch), builds ./build (RelWithDebInfo) and, with --asan, ./build-asan
# (Debug + AddressSanitizer/UBSan). Idempotent and quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

asan=0
for arg; do
    case $arg in
    --asan) asan=1 ;;
    *) echo "usage: $0 [--asan]" >&2; exit 2 ;;
    esac
done

mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' scripts/packages.txt)
mapfile -t installed < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null |
    awk '$1 == "installed" { print $2 }')
missing=()
for p in "${packages[@]}"; do
    [[ " ${installed[*]} " == *" $p "* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup.sh: installing ${missing[*]}" >&2
    sudo=()
    (($(id -u) == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

scripts/kafka.sh fetch
scripts/setup-demo.sh # demo media (ffmpeg), vendored uPlot, playwright-core for the browser tests

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
if ((asan)); then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPH_SANITIZE=ON
    cmake --build build-asan -j2
fi
