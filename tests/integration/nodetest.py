"""Run JavaScript tests (`node --test`) from pytest, for the demo's unit and browser tests.

`run(paths, env, timeout)` runs node's test runner with the TAP reporter in its own process group
(Chromium, started by the browser tests, goes with it on a timeout), one test file at a time, and
returns a NodeRun with the TAP counts and the whole output, which the callers put into their
assertion messages. Node >= 20.10 runs them as one `node --test --test-concurrency=1 PATH...`;
older nodes (Debian 12 ships 18) have no --test-concurrency, so each file gets its own run.
"""

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, scaled

NODE = os.environ.get("PH_NODE") or shutil.which("node")
TEST_FILE = re.compile(r"(^test|[.\-_]test)\.(c|m)?js$")


def node_version():
    """(major, minor, patch) of $PH_NODE or the node on PATH, or None when there is none."""
    if not NODE:
        return None
    out = subprocess.run([NODE, "--version"], capture_output=True, text=True, timeout=30).stdout
    m = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.strip())
    return tuple(map(int, m.groups())) if m else None


@dataclass
class NodeRun:
    command: str
    returncode: int = 0
    timed_out: bool = False
    output: str = ""
    counts: dict = field(default_factory=lambda: {"tests": 0, "pass": 0, "fail": 0, "skipped": 0,
                                                  "cancelled": 0, "todo": 0})
    skips: list = field(default_factory=list)  # "test name: reason" of each skipped test

    @property
    def ok(self):
        return self.returncode == 0 and not self.timed_out and self.counts["fail"] == 0 \
            and self.counts["cancelled"] == 0

    def summary(self):
        c = self.counts
        return (f"{c['tests']} tests: {c['pass']} passed, {c['fail']} failed, {c['skipped']} skipped, "
                f"{c['cancelled']} cancelled" + (" — TIMED OUT" if self.timed_out else "")
                + (f" (exit {self.returncode})" if self.returncode else ""))

    def report(self):
        """What an assertion message shows: the command, the summary and the whole TAP output."""
        return f"$ {self.command}\n{self.summary()}\n{self.output}"


def test_files(path):
    """The files `node --test DIR` picks in DIR (node_modules excluded), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and TEST_FILE.search(p.name)
                  and "node_modules" not in p.parts)


def _run_one(argv, env, deadline_s, run):
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        run.timed_out = True
        for sig in (signal.SIGTERM, signal.SIGKILL):  # node and the browsers it started
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                out, _ = proc.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        out = (out or "") + f"\n[nodetest: killed after {deadline_s:.0f} s]\n"
    run.output += out
    run.returncode = run.returncode or proc.returncode
    for key in run.counts:
        for m in re.finditer(rf"^# {key} (\d+)$", out, re.M):
            run.counts[key] += int(m.group(1))
    # TAP: "ok 3 - name # SKIP reason"
    run.skips += [f"{m.group(1)}: {m.group(2)}" for m in re.finditer(r"^\s*ok \d+ - (.*?) # SKIP ?(.*)$", out, re.M)]


def run(paths, env=None, timeout=120):
    """Run the node tests in `paths` (files or folders, relative to the repository root) and return a
    NodeRun. `timeout` (seconds on a normal machine, scaled by PH_TIMEOUT_MULT) bounds the whole run."""
    assert NODE, "node not found (set PH_NODE or install nodejs)"
    env = {**os.environ, **(env or {})}
    files = [f for p in paths for f in test_files(ROOT / p)]
    assert files, f"no test files in {paths}"
    base = [NODE, "--test", "--test-reporter=tap"]
    if node_version() >= (20, 10, 0):
        batches = [base + ["--test-concurrency=1", *map(str, paths)]]
    else:
        batches = [base + [str(f.relative_to(ROOT))] for f in files]
    result = NodeRun(command=" && ".join(" ".join(["node", *b[1:]]) for b in batches))
    deadline = time.monotonic() + scaled(timeout)
    for argv in batches:
        left = deadline - time.monotonic()
        if left <= 0:
            result.timed_out = True
            break
        _run_one(argv, env, left, result)
        if result.timed_out:
            break
    return result
