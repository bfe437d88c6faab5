"""The consumer's Redis apply script (common/src/scripts.c, PH_SCRIPT_APPLY) against a real Redis.

The script must implement the same last-writer-wins order as ph_lww_cmp (common/src/lww.c):
(ts, received_at, position, duration) compared as numbers, which is Python's tuple order on the
same values. Applying any set of events, in any order, with any duplicates, must leave the LWW
maximum of each (user, video). The script text comes from the binary itself
(`playhead-consumer --print-script apply`), so what is tested is what the consumer loads.
"""

import random
import subprocess

import pytest

import harness

TTL_MS = 5184000 * 1000  # the consumer's default ttl-seconds
ERASE_TTL_MS = 605100 * 1000  # the consumer's default erase-marker-ttl-seconds


def fmt(v):
    """ph_format_double: the shortest %.{15,16,17}g text that reads back as exactly v."""
    for prec in (15, 16, 17):
        s = "%.*g" % (prec, v)
        if float(s) == v:
            return s
    return s


def finished(position, duration):
    """ph_state_finished."""
    return duration > 0 and position >= 0.95 * duration


def vkey(user):
    return f"ph:{{{user}}}:v"


def rkey(user):
    return f"ph:{{{user}}}:r"


class Event:
    def __init__(self, user, video, ts, received_at, position, duration=0.0):
        self.user, self.video = user, video
        self.ts, self.received_at, self.position, self.duration = ts, received_at, float(position), float(duration)

    def order(self):
        """The LWW order of ph_lww_cmp."""
        return (self.ts, self.received_at, self.position, self.duration)

    def state(self):
        """What the hash must hold: the texts the consumer sends, joined (see keys.h)."""
        dur = fmt(self.duration) if self.duration > 0 else "0"
        kind = "f" if finished(self.position, self.duration) else "p"
        return f"{self.ts}:{self.received_at}:{fmt(self.position)}:{dur}:{kind}:0"

    def score(self):
        """Its score in the row index: the title's activity, here its ts (no hide, no erase)."""
        return self.ts

    def __repr__(self):
        return f"Event({self.user}/{self.video} {self.order()})"


@pytest.fixture(scope="module")
def script_text():
    binary = harness.BUILD_DIR / "consumer/playhead-consumer"
    if not binary.exists():
        pytest.fail(f"{binary} is not built (PH_BUILD_DIR={harness.BUILD_DIR})")
    r = subprocess.run([str(binary), "--print-script", "apply"], capture_output=True, text=True, timeout=harness.scaled(10))
    assert r.returncode == 0, r.stderr
    assert "redis.call" in r.stdout
    return r.stdout


@pytest.fixture
def apply(redis, script_text):
    """apply(event, row_max=1000, ttl_ms=TTL_MS) -> the script's `changed` flag (1 or 0), called
    exactly as consumer/apply.c does for a position event (see the KEYS and ARGV of apply_lua in
    common/src/scripts.c; test_viewer_script.py covers the other kinds)."""
    sha = redis.script_load(script_text)

    def call(ev, row_max=1000, ttl_ms=TTL_MS):
        dur = fmt(ev.duration) if ev.duration > 0 else "0"
        keys = [f"ph:{{{ev.user}}}:{k}" for k in "vrexsd"]
        return redis.evalsha(sha, 6, *keys, "position", ev.video, str(ev.ts), str(ev.received_at), fmt(ev.position), dur,
                             str(ttl_ms), str(row_max), str(ERASE_TTL_MS), "0.95", "0", "", "")[0]
    return call


# Values chosen so that every tie-break is reached and Lua's number handling is exercised: the
# largest ts, positions that differ only in the last bit, tiny and huge positions, no duration.
TS = [0, 1, 1700000000000, 1700000000001, 2**53 - 2, 2**53 - 1]
POSITIONS = [0.0, 0.1 + 0.2, 0.3, 1e-7, 12.5, 95.0, 9999999.999999998, 1e7]
DURATIONS = [0.0, 100.0, 100.00000000000001, 1e7]


def random_event(user, video):
    return Event(user, video, random.choice(TS), random.choice(TS), random.choice(POSITIONS), random.choice(DURATIONS))


def test_lww_converges_for_any_order_and_duplicates(redis, apply):
    users = [f"u{i}" for i in range(3)] + ["user@example.com"]
    videos = ["v1", "v10", "movie:42"]
    for _ in range(25):
        redis.flushall()
        events = [random_event(random.choice(users), random.choice(videos)) for _ in range(random.randrange(1, 40))]
        # duplicates: exact copies, some applied several times
        stream = [e for e in events for _ in range(random.choice((1, 1, 2, 3)))]
        random.shuffle(stream)
        best = {}
        for ev in stream:
            key = (ev.user, ev.video)
            newer = key not in best or ev.order() > best[key].order()
            # the script's verdict on each step is the comparison of ph_lww_cmp
            assert apply(ev) == (1 if newer else 0), f"{ev} against stored {best.get(key)}"
            if newer:
                best[key] = ev
        for (user, video), ev in best.items():
            assert redis.hget(vkey(user), video) == ev.state()
            assert redis.zscore(rkey(user), video) == float(ev.score())
        for user in users:
            assert redis.hlen(vkey(user)) == sum(1 for u, _ in best if u == user)


def test_same_set_in_different_orders_gives_the_same_state(redis, apply):
    events = [random_event("u1", random.choice(["a", "b"])) for _ in range(30)]
    states = []
    for _ in range(5):
        redis.flushall()
        order = events + random.sample(events, 10)
        random.shuffle(order)
        for ev in order:
            apply(ev)
        states.append((redis.hgetall(vkey("u1")), redis.zrange(rkey("u1"), 0, -1, withscores=True)))
    assert all(s == states[0] for s in states)


def test_finished_video_is_marked_f_and_keeps_its_place_in_the_row_index(redis, apply):
    assert apply(Event("u1", "v1", 1000, 1, 10, 100)) == 1
    assert apply(Event("u1", "v2", 1001, 1, 10, 0)) == 1  # no duration: never finished
    # exactly 95% counts as finished (position >= 0.95 * duration)
    assert apply(Event("u1", "v1", 2000, 1, 95, 100)) == 1
    assert redis.hget(vkey("u1"), "v1") == "2000:1:95:100:f:0"
    assert redis.zrevrange(rkey("u1"), 0, -1, withscores=True) == [("v1", 2000), ("v2", 1001)]
    # an older unfinished event changes nothing
    assert apply(Event("u1", "v1", 1500, 1, 20, 100)) == 0
    assert redis.hget(vkey("u1"), "v1") == "2000:1:95:100:f:0"
    # watching it again (a newer, unfinished position) makes it unfinished
    assert apply(Event("u1", "v1", 3000, 1, 5, 100)) == 1
    assert redis.hget(vkey("u1"), "v1") == "3000:1:5:100:p:0"
    # just below 95% is not finished
    assert apply(Event("u1", "v3", 4000, 1, 94.99, 100)) == 1
    assert redis.hget(vkey("u1"), "v3") == "4000:1:94.99:100:p:0"


def test_row_cap_keeps_the_newest_2_row_max_titles_and_a_horizon(redis, apply):
    row_max = 5
    for i in range(8):  # unfinished, oldest first
        assert apply(Event("u1", f"open{i}", 1000 + i, 1, 10, 100), row_max=row_max) == 1
    for i in range(7):  # finished: the cap counts every title, finished or not
        assert apply(Event("u1", f"done{i}", 2000 + i, 1, 99, 100), row_max=row_max) == 1
    kept = redis.zrevrange(rkey("u1"), 0, -1)
    assert kept == [f"done{i}" for i in range(6, -1, -1)] + ["open7", "open6", "open5"]
    # trimmed titles leave the hash too, and the horizon is the newest activity that fell off
    assert sorted(redis.hkeys(vkey("u1"))) == sorted(kept)
    assert redis.hget("ph:{u1}:e", "/trim") == "1004"
    # an event at or below the horizon is dropped, even for a title that is kept
    assert apply(Event("u1", "open2", 1002, 2, 50, 100), row_max=row_max) == 0
    assert apply(Event("u1", "open5", 1004, 2, 50, 100), row_max=row_max) == 0
    # an update of a title kept trims nothing
    assert apply(Event("u1", "open5", 5000, 1, 11, 100), row_max=row_max) == 1
    assert redis.zcard(rkey("u1")) == 2 * row_max
    assert redis.hget("ph:{u1}:e", "/trim") == "1004"


def test_row_cap_and_erase_commute(redis, script_text):
    """A title trimmed because of a newer one that is erased afterwards: the erased title keeps its
    place in the row index as a tombstone, so the erase before or after gives the same state."""
    sha = redis.script_load(script_text)
    keys = [f"ph:{{u1}}:{k}" for k in "vrexsd"]

    def ev(kind, video, ts):
        return (kind, video, str(ts), str(ts), "10", "100", str(TTL_MS), "1", str(ERASE_TTL_MS), "0.95", "0", "", "")

    events = [ev("position", "a", 1), ev("position", "b", 2), ev("position", "c", 3), ev("erase", "c", 4)]
    states = []
    for order in (events, events[3:] + events[:3], [events[1], events[3], events[2], events[0]]):
        redis.flushall()
        for e in order:
            redis.evalsha(sha, 6, *keys, *e)
        states.append((redis.hgetall(keys[0]), redis.zrange(keys[1], 0, -1, withscores=True), redis.hgetall(keys[2])))
    assert states[0] == ({"b": "2:2:10:100:p:0"}, [("b", 2.0), ("c", 4.0)], {"c": "4", "/trim": "1"})
    assert all(s == states[0] for s in states), states


def test_ttls_are_set_and_refreshed_on_both_keys(redis, apply):
    assert apply(Event("u1", "v1", 1000, 1, 10, 100), ttl_ms=60000) == 1
    for key in (vkey("u1"), rkey("u1")):
        assert 0 < redis.pttl(key) <= 60000
    assert apply(Event("u1", "v2", 1001, 1, 10, 100)) == 1
    for key in (vkey("u1"), rkey("u1")):
        assert 60000 < redis.pttl(key) <= TTL_MS
    # another user's keys are their own
    assert redis.pttl(vkey("u2")) == -2


def test_malformed_stored_state_is_overwritten(redis, apply):
    redis.hset(vkey("u1"), "v1", "garbage")
    assert apply(Event("u1", "v1", 1, 1, 1, 0)) == 1
    assert redis.hget(vkey("u1"), "v1") == "1:1:1:0:p:0"


KINDS = ["position"] * 5 + ["hide"] * 2 + ["watched", "unwatched", "erase", "erase_user"]


def user_keys(user):
    return [f"ph:{{{user}}}:{k}" for k in "vrexsd"]


def keyspace(redis):
    """Every key with its whole value and whether it has a TTL (the TTLs' exact values differ by the
    time between the runs)."""
    out = {}
    for key in sorted(redis.keys("*")):
        kind = redis.type(key)
        value = {"hash": redis.hgetall, "zset": lambda k: redis.zrange(k, 0, -1, withscores=True), "string": redis.get}[kind](key)
        out[key] = (kind, value, redis.pttl(key) > 0)
    return out


def test_the_state_is_a_function_of_the_set_of_events_and_state_records(redis, script_text):
    """Random sets of every kind of event for two users and five titles (equal ts and received_at,
    series, finished positions, row caps of 2, 4, 6 and 200 titles, legacy and malformed stored
    values), each applied in several random orders with duplicates, and then with the state records
    the first order reported mixed in: every order leaves the same keyspace. After every call the
    row index holds at most 2 x row_max titles and every stored title (the apply script asks ZCARD
    only when a title enters the index, which this checks). The records reported, replayed alone in
    a random order over the same stored values, rebuild the same titles, row index and markers. The
    seed is PH_SEED."""
    sha = redis.script_load(script_text)
    users, videos = ["x", "user@example.com"], ["a", "b", "c", "d", "e"]

    def apply(row_max, ev):
        kind, user, video, ts, rc, pos, dur, series, nxt, value = ev
        args = [kind, video, str(ts), str(rc), pos, dur, str(TTL_MS), str(row_max), str(ERASE_TTL_MS), "0.95", "30", series, nxt]
        reply = redis.evalsha(sha, 6, *user_keys(user), *args, *([value] if kind == "state" else []))
        assert reply[0] in (0, 1) and len(reply) % 2 == 1, (ev, reply)
        k = user_keys(user)
        assert redis.zcard(k[1]) <= 2 * row_max, (ev, reply)
        assert set(redis.hkeys(k[0])) <= set(redis.zrange(k[1], 0, -1)), (ev, reply)
        return [(user, reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]

    def seed_values(seeded):
        for user, video, value in seeded:
            k = user_keys(user)
            redis.hset(k[0], video, value)
            redis.zadd(k[1], {video: int(value.split(":")[0]) if value[0].isdigit() else 1})

    for i in range(40):
        row_max = (1, 2, 3, 100)[i % 4]
        # at most one stored title per user beforehand: within every cap (see the test below)
        seeded = [(u, random.choice(videos), random.choice(["7:7:50:100", "7:9:99:100", "8:8:5:0:p:0/S/b", "garbage"]))
                  for u in users if random.random() < 0.3]
        events = []
        for _ in range(random.randint(1, 30)):
            kind = random.choice(KINDS)
            ts = random.randint(1, 20)
            series = random.choice(["", "", "S", "T"])
            events.append((kind, random.choice(users), random.choice(videos) if kind != "erase_user" else "", ts,
                           ts + random.randint(0, 2), random.choice(["0", "5", "50", "95", "97", "0.30000000000000004"]),
                           random.choice(["0", "100"]), series, random.choice(["", "b", "c"]) if series else "", ""))
        first, records = None, None
        for n in range(6):
            redis.flushall()
            seed_values(seeded)
            order = events + random.sample(events, len(events) // 2)
            if records is not None and n >= 3:
                order += [("state", user, name, 0, 0, "0", "0", "", "", value) for user, name, value in records]
            random.shuffle(order)
            reported = [rec for ev in order for rec in apply(row_max, ev)]
            if records is None:
                records = reported
            state = keyspace(redis)
            if first is None:
                first = state
            assert state == first, f"set {i}: row_max {row_max} seeded {seeded} events {events}"
        redis.flushall()
        seed_values(seeded)
        for user, name, value in random.sample(records, len(records)):
            apply(row_max, ("state", user, name, 0, 0, "0", "0", "", "", value))
        rebuilt = keyspace(redis)
        for key, (kind, value, _) in first.items():
            if key.endswith((":v", ":r", ":e", ":x")):
                assert rebuilt.get(key, (kind, None))[1] == value, f"set {i}: {key} rebuilt from {records}"


def test_a_lowered_row_max_applies_at_the_next_new_title(redis, script_text):
    """The row index can only outgrow the cap when a title enters it, so the script counts titles
    only then: after --row-max is lowered, updates of titles kept trim nothing, and the next new
    title trims the row to the new cap."""
    sha = redis.script_load(script_text)
    k = user_keys("u1")

    def position(video, ts, row_max):
        return redis.evalsha(sha, 6, *k, "position", video, str(ts), str(ts), "10", "100", str(TTL_MS), str(row_max),
                             str(ERASE_TTL_MS), "0.95", "0", "", "")

    for i in range(6):
        assert position(f"v{i}", 100 + i, 3)[0] == 1
    assert redis.zcard(k[1]) == 6
    assert position("v5", 200, 1) == [1, "v5", "200:200:10:100:p:0"]
    assert redis.zcard(k[1]) == 6
    assert position("new", 300, 1)[:5] == [1, "new", "300:300:10:100:p:0", "/trim", "104"]
    assert redis.zrevrange(k[1], 0, -1) == ["new", "v5"]
    assert sorted(redis.hkeys(k[0])) == ["new", "v5"]
