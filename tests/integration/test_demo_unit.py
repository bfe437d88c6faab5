"""The demo's JavaScript unit tests (tests/demo: the offline-first client demo/playhead.js and the
dashboard's Prometheus parser demo/metrics.js), run with `node --test` so that scripts/test.sh
runs them too. No browser, no services: every outside dependency of the client is a fake.
"""

import pytest

import nodetest


@pytest.mark.skipif(nodetest.NODE is None, reason="node not found: install nodejs (scripts/packages.txt)")
def test_demo_unit_tests_pass():
    run = nodetest.run(["tests/demo"], timeout=120)
    print(run.report())  # shown by pytest -s, and with -rA
    assert run.ok, run.report()
    assert run.counts["pass"] > 0 and run.counts["skipped"] == 0, run.report()
