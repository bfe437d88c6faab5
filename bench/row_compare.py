#!/usr/bin/python3
"""row_compare.py OLD_API NEW_API [USERS] [SEED]: the continue-watching bodies of two playhead-api
binaries, byte for byte, on the same Redis state: USERS random users (tests/integration/row_model.py)
per minimum setting (three settings), each read once with a random limit from both apis. A check
for a change of how the row is computed (e.g. the Lua row script replaced by api/row.c) that must
not change a byte of any response. Starts its own redis-server and the two apis on free ports.
Prints the number of responses compared and exits 1 at the first difference."""

import http.client
import os
import random
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import row_model  # noqa: E402

import redis as redis_py  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate, what, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except (OSError, redis_py.ConnectionError):
            pass
        time.sleep(0.05)
    sys.exit(f"row_compare: timed out waiting for {what}")


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def main():
    old, new = sys.argv[1], sys.argv[2]
    users = int(sys.argv[3]) if len(sys.argv) > 3 else 1200
    seed = int(sys.argv[4]) if len(sys.argv) > 4 else random.SystemRandom().randrange(2**32)
    print(f"row_compare: seed {seed}", flush=True)
    rng = random.Random(seed)
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rport = free_port()
            procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no",
                                           "--dir", tmp], stdout=subprocess.DEVNULL))
            rd = redis_py.Redis(port=rport, decode_responses=True)
            wait(rd.ping, "redis-server")
            compared = 0
            for min_seconds, min_percent in [(0, 0), (60, 5), (30, 50)]:
                rd.flushall()
                seeded = []
                for u in range(users):
                    index, values = row_model.random_user(rng)
                    row_model.store(rd, f"c{u}", index, values)
                    seeded.append((f"c{u}", index, values))
                ports = []
                for binary in (old, new):
                    port = free_port()
                    procs.append(subprocess.Popen([binary, "--auth", "dev", "--threads", "1", "--listen", f"127.0.0.1:{port}",
                                                   "--redis", f"redis://127.0.0.1:{rport}", "--log-level", "error",
                                                   "--row-min-seconds", str(min_seconds), "--row-min-percent",
                                                   str(min_percent)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    wait(lambda p=port: get(p, "/readyz")[0] == 200, f"{binary} ready")
                    ports.append(port)
                for user, index, values in seeded:
                    path = f"/v1/users/{user}/continue-watching?limit={rng.choice([1, 2, 3, 5, 20, 100])}"
                    a, b = get(ports[0], path), get(ports[1], path)
                    if a != b:
                        sys.exit(f"row_compare: {path} differs (min {min_seconds} s / {min_percent} %):\n  old {a}\n"
                                 f"  new {b}\n  index {index}\n  values {values}")
                    compared += 1
                for p in procs[1:]:
                    p.terminate()
                    p.wait()
                del procs[1:]
            print(f"row_compare: {compared} responses byte-identical")
        finally:
            for p in procs:
                p.terminate()
                p.wait()


if __name__ == "__main__":
    main()
