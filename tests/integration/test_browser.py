"""The demo in a real browser against the real stack: tests/browser/*.test.mjs (node --test driving
Debian's /usr/bin/chromium through playwright-core) with ingest, the consumer and the api started
by the harness fixtures on free ports, over this session's Kafka and Redis.

    (a) resume.test.mjs     play, close the context, a fresh context resumes within 2 s
    (b) offline.test.mjs    positions recorded while ingest is unreachable all arrive later
    (c) streams.test.mjs    the stream limit (skipped by node while the api has no streams route)
    (d) dashboard.test.mjs  the dashboard shows non-zero rates from the services' /metrics
    (e) viewer.test.mjs     remove, mark watched (next up), history paging, download my data, erase
                            my history with a confirmation (skipped by node while the api has no
                            history route)

The api serves demo/ at /demo/ and tells the page where ingest and the consumer's metrics are
(/demo-config.json); ingest allows the api's origin by CORS. Screenshots go to the test's tmp dir
(printed) and, with PH_UPDATE_SCREENSHOTS=1 and a passing run, the documentation's ones are
copied to docs/screenshots/. Needs scripts/setup-demo.sh (media, vendored uPlot, playwright-core);
skipped with that hint otherwise.
"""

import functools
import os
import random
import shutil
import subprocess
import warnings

import pytest

import nodetest
from harness import BUILD_DIR, HOST, ROOT, TIMEOUT_MULT, Service, free_port, http

CHROMIUM = os.environ.get("PH_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "docs" / "screenshots"
# screenshot of a browser test -> the name it has in docs/screenshots/
DOCS = {"a-resume.png": "player.png", "d-dashboard.png": "dashboard.png", "e-viewer.png": "viewer.png"}
NEEDED = {
    "demo/media/catalog.json": "scripts/gen-demo-media.sh",
    "demo/vendor/uPlot.iife.min.js": "(cd demo && npm ci && npm run vendor)",
    "tests/browser/node_modules/playwright-core/package.json": "(cd tests/browser && npm ci)",
}


@functools.lru_cache(maxsize=None)
def has_flag(kind, flag):
    """Whether the built binary of `kind` knows `flag` (from its --help): lets this test follow
    features other changes are still adding (the consumer's metrics listener)."""
    binary = BUILD_DIR / Service.BINARIES[kind]
    if not binary.exists():
        return False
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=30)
    return f"{flag}=" in out.stdout + out.stderr


def missing_setup():
    missing = [f"{path} (run {how})" for path, how in NEEDED.items() if not (ROOT / path).exists()]
    if nodetest.NODE is None:
        missing.append("node (install nodejs)")
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (install chromium, or set PH_CHROMIUM)")
    return missing


def test_demo_in_a_browser(ingest, consumer, api, tmp_path):
    missing = missing_setup()
    if missing:
        pytest.skip("demo not set up (scripts/setup-demo.sh): missing " + "; ".join(missing))

    api_port = free_port()
    origin = f"http://{HOST}:{api_port}"  # the page's origin: what ingest and the consumer must allow
    ing = ingest(cors_origins=origin)

    # The consumer's metrics listener is optional here: until the consumer has one, the dashboard
    # shows n/a for its figures and dashboard.test.mjs does not require them (it says so).
    metrics_port = free_port()
    consumer_flags = {}
    if has_flag("consumer", "--metrics-listen"):
        consumer_flags["metrics_listen"] = f"{HOST}:{metrics_port}"
        if has_flag("consumer", "--cors-origins"):
            consumer_flags["cors_origins"] = origin
    consumer(**consumer_flags)

    web = api(listen=f"{HOST}:{api_port}", demo_dir=ROOT / "demo", demo_ingest_url=ing.url,
              demo_consumer_url=f"http://{HOST}:{metrics_port}")
    status, _, config = http("GET", f"{web.url}/demo-config.json")
    assert status == 200 and config["ingest_url"] == ing.url, config

    artifacts = tmp_path / "screenshots"
    env = {
        "PH_API_URL": web.url,
        "PH_INGEST_URL": ing.url,
        "PH_ARTIFACTS": str(artifacts),
        # user ids t<seed>-<test>: reproducible from PH_SEED, as the rest of the run
        "PH_SEED": f"{random.getrandbits(32):08x}",
        "PH_TIMEOUT_MULT": f"{TIMEOUT_MULT:g}",
        "PH_CHROMIUM": CHROMIUM,
    }
    run = nodetest.run(["tests/browser"], env=env, timeout=300)
    print(run.report())
    print(f"screenshots: {artifacts}")
    for skip in run.skips:  # a skip inside node would pass unseen: name it in pytest's summary
        warnings.warn(f"browser test skipped: {skip}")
    assert run.ok, f"browser tests failed (screenshots so far: {artifacts})\n{run.report()}"
    assert run.counts["tests"] >= len(nodetest.test_files(ROOT / "tests/browser")), run.report()  # none went missing

    if os.environ.get("PH_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for shot, name in DOCS.items():
            assert (artifacts / shot).exists(), f"no {shot} in {artifacts}"
            shutil.copyfile(artifacts / shot, SCREENSHOTS / name)
            print(f"updated {SCREENSHOTS / name}")
