#!/usr/bin/env bash
# setup.sh [--asan] [--test] — make this machine ready to build and run playhead (and, with --test,
# to test it), then build it.
# Installs whatever is missing from scripts/packages.txt (apt), and with --test from
# scripts/packages-test.txt too (without recommended packages) and the schemathesis venv
# (scripts/setup-venv.sh); stops the daemons Debian starts for redis-server and prometheus
# (playhead runs its own Redis; the tests need only promtool); fetches Kafka into the cache
# (scripts/kafka.sh fetch); builds ./build (RelWithDebInfo) and, with --asan, ./build-asan
# (Debug + AddressSanitizer/UBSan). Idempotent and quick when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

asan=0 test=0
for arg; do
    case $arg in
    --asan) asan=1 ;;
    --test) test=1 ;;
    *) echo "usage: $0 [--asan] [--test]" >&2; exit 2 ;;
    esac
done

sudo=()
(($(id -u) == 0)) || sudo=(sudo)
updated=0
# install LIST [APT-GET OPTIONS...]: apt-get install the packages of LIST that are not installed.
install() {
    local list=$1 p packages installed fresh
    shift
    mapfile -t packages < <(sed 's/#.*//; s/[[:space:]]//g; /^$/d' "$list")
    mapfile -t installed < <(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${packages[@]}" 2>/dev/null |
        awk '$1 == "installed" { print $2 }')
    fresh=()
    for p in "${packages[@]}"; do
        [[ " ${installed[*]} " == *" $p "* ]] || fresh+=("$p")
    done
    ((${#fresh[@]})) || return 0
    echo "setup.sh: installing ${fresh[*]}" >&2
    ((updated)) || "${sudo[@]}" apt-get update -qq
    updated=1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "${fresh[@]}"
    # Where systemd runs, Debian enables and starts the daemons of redis-server (:6379, which
    # scripts/run.sh needs free) and prometheus (:9090). A daemon this install started is stopped
    # and disabled. (In a container without systemd, policy-rc.d already denies the start.)
    [[ -d /run/systemd/system ]] || return 0
    for p in "${fresh[@]}"; do
        case $p in
        redis-server | prometheus) "${sudo[@]}" systemctl disable --now "$p.service" || true ;;
        esac
    done
}

install scripts/packages.txt
demo_args=()
if ((test)); then
    install scripts/packages-test.txt --no-install-recommends
    scripts/setup-venv.sh
    demo_args=(--test)
fi

scripts/kafka.sh fetch
scripts/setup-demo.sh "${demo_args[@]}" # demo media (ffmpeg), vendored uPlot; --test: playwright-core too

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
if ((asan)); then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPH_SANITIZE=ON
    cmake --build build-asan -j2
fi
