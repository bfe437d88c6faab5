"""Property test of the apply script (common/src/scripts.c) with every event kind against a real
Redis: random sets of position, hide, watched, unwatched, erase and erase_user events for two users
and three titles, applied in many random orders with duplicates, must leave an identical Redis state
(titles, row index, erase markers, trim horizon), with a row cap above the titles and with one so
small that titles fall off it. The seed is PH_SEED (conftest seeds `random`)."""

import random
import subprocess

import pytest

import harness

KINDS = ["position"] * 4 + ["hide", "watched", "unwatched", "erase", "erase_user"]


@pytest.fixture(scope="module")
def script_text():
    r = subprocess.run([str(harness.BUILD_DIR / "consumer/playhead-consumer"), "--print-script", "apply"],
                       capture_output=True, text=True, timeout=harness.scaled(10))
    assert r.returncode == 0, r.stderr
    return r.stdout


def keys(user):
    return [f"ph:{{{user}}}:{k}" for k in "vrexsd"]


def snapshot(redis, user):
    k = keys(user)
    return (redis.hgetall(k[0]), redis.zrange(k[1], 0, -1, withscores=True), redis.hgetall(k[2]), redis.get(k[3]))


def test_any_order_and_duplicates_of_every_kind_give_the_same_state(redis, script_text):
    sha = redis.script_load(script_text)

    def apply(row_max, kind, user, video, ts, rc, pos, dur, series, nxt):
        # as consumer/apply.c: KEYS v r e x s d
        return redis.evalsha(sha, 6, *keys(user), kind, video, ts, rc, pos, dur, 10**9, row_max, 10**9, "0.95", "30",
                             series, nxt)

    for i in range(60):
        row_max = (100, 1, 2)[i % 3]  # 100: no trimming; 1 and 2: a cap of 2 or 4 titles of the 4
        events = []
        for _ in range(random.randint(1, 25)):
            kind = random.choice(KINDS)
            video = random.choice("abcd") if kind != "erase_user" else ""
            ts = random.randint(1, 20)
            series = random.choice(["", "S", "T"])
            events.append((kind, random.choice("xy"), video, ts, ts + random.randint(0, 2), random.choice([0, 5, 50, 97]),
                           random.choice([0, 100]), series, random.choice(["", "b"]) if series else ""))
        first = None
        for _ in range(8):
            redis.flushall()
            order = events + random.sample(events, len(events) // 2)
            random.shuffle(order)
            for ev in order:
                assert apply(row_max, *ev)[0] in (0, 1)
            state = (snapshot(redis, "x"), snapshot(redis, "y"))
            if first is None:
                first = state
            assert state == first, f"row_max {row_max} events {events}"


def test_c_property_test_against_the_real_apply_script(redis, redis_server):
    """tests/consumer/prop_apply.c: the same property in C, with the arguments consumer/apply.c
    builds (ph_apply_args), row caps of 200, 2 and 4 titles. The seed is logged and in the output."""
    seed = random.randrange(2**32)
    print(f"prop_apply seed {seed}")
    r = subprocess.run([str(harness.BUILD_DIR / "tests/prop_apply"), redis_server.host, str(redis_server.port), str(seed),
                        "60"], capture_output=True, text=True, timeout=harness.scaled(120))
    assert r.returncode == 0, f"seed {seed}\n{r.stdout}\n{r.stderr}"
    assert "60 sets, 420 orders compared, all equal" in r.stdout
