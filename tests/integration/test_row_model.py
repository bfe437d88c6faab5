"""GET /v1/users/:user/continue-watching against a Python model of the row rules (row_model.py), on
many random users seeded straight into Redis: every rule (hides, finished and next up, one item per
series, unwatched, the minimum, tombstones, the limit) under random combinations, for several
minimum settings. The seed is PH_SEED (see conftest.py)."""

import random

import pytest

import row_model
from harness import http

USERS = 150


@pytest.mark.parametrize("min_seconds,min_percent", [(0, 0), (60, 5), (30, 50)])
def test_row_matches_the_model(api, redis, min_seconds, min_percent):
    svc = api(row_min_seconds=min_seconds, row_min_percent=min_percent)
    rng = random.Random(random.random())
    users = []
    for u in range(USERS):
        index, values = row_model.random_user(rng)
        row_model.store(redis, f"m{u}", index, values)
        users.append((f"m{u}", index, values))
    nonempty = 0
    for user, index, values in users:
        limit = rng.choice([1, 2, 3, 5, 20, 100])
        status, _, body = http("GET", f"{svc.url}/v1/users/{user}/continue-watching?limit={limit}")
        assert status == 200, body
        expected = row_model.row(row_model.zrevrange(index), values, limit, min_seconds, min_percent)
        assert body == expected, f"user {user}, limit {limit}, index {index}, values {values}"
        nonempty += bool(expected["items"])
    assert nonempty > USERS // 3  # the random states do reach the rules
