"""The whole path on a real broker and a real Redis: ingest -> Kafka -> consumer -> Redis -> api.
Last-writer-wins across out-of-order and duplicate events, the continue-watching row (order, cap,
finished rule), and the reference-compatible /watching routes end to end."""

import json
import random
import time

from harness import http, scaled, wait_until

# Event times of the last days: the Kafka timestamp is the event time, and the broker deletes
# segments older than the topic's retention (7 days).
T0 = (int(time.time()) - 86400) * 1000


def post(svc, body, path="/v1/positions", headers=None):
    status, _, resp = http("POST", svc.url + path, json.dumps(body),
                           headers={"Content-Type": "application/json", **(headers or {})})
    assert status in (201, 202), (status, resp)
    return resp


def get(svc, path, headers=None):
    status, _, body = http("GET", svc.url + path, headers=headers)
    return status, body


def stack(ingest, consumer, api):
    return ingest(), consumer(), api()


def wait_position(api, user, video, expect, timeout=20):
    def check():
        status, body = get(api, f"/v1/users/{user}/positions/{video}")
        return status == 200 and body["position"] == expect and body
    return wait_until(check, scaled(timeout), f"{user}/{video} at position {expect}")


def test_post_is_readable_through_the_api(ingest, consumer, api):
    ing, _, rd = stack(ingest, consumer, api)
    started = time.monotonic()
    post(ing, {"user_id": "alice", "video_id": "film", "position": 83.5, "duration": 5400, "ts": T0})
    body = wait_position(rd, "alice", "film", 83.5)
    print(f"POST 202 -> readable from the api in {1000 * (time.monotonic() - started):.0f} ms")
    assert body == {"user_id": "alice", "video_id": "film", "position": 83.5, "duration": 5400,
                    "updated_at": T0, "finished": False}
    assert get(rd, "/v1/users/alice/positions/other") == (404, {"error": "not found"})


def test_lww_out_of_order_and_duplicates(ingest, consumer, api):
    ing, _, rd = stack(ingest, consumer, api)
    expected = {}
    events = []
    for user in ("u1", "u2", "u3"):
        for video in ("a", "b", "c", "d"):
            base = random.randrange(T0 - 3 * 86_400_000, T0)
            evs = [{"user_id": user, "video_id": video, "position": float(random.randrange(0, 5000)) / 4,
                    "duration": 6000, "ts": base + random.randrange(0, 50)} for _ in range(12)]
            # the winner: largest ts; ties broken by received_at, which the server assigns, so avoid ties here
            by_ts = {}
            for e in evs:
                by_ts[e["ts"]] = e
            evs = list(by_ts.values())
            expected[(user, video)] = max(evs, key=lambda e: e["ts"])
            events += evs + random.sample(evs, k=len(evs) // 2)  # duplicates
    random.shuffle(events)
    # single requests and batches of random sizes, in shuffled order
    i = 0
    while i < len(events):
        n = random.choice([1, 1, 3, 10, 40])
        post(ing, events[i:i + n] if n > 1 else events[i])
        i += n
    for (user, video), e in expected.items():
        body = wait_position(rd, user, video, e["position"])
        assert body["updated_at"] == e["ts"]


def test_continue_watching_order_cap_and_finished(ingest, consumer, api):
    # row_max 50: a user keeps the 100 most recently active titles, finished ones included
    ing, _, rd = ingest(), consumer(row_max=50), api()
    t0 = T0 - 200_000_000
    # 105 unfinished videos, newest last; then one finished video, the newest of all
    events = [{"user_id": "row", "video_id": f"v{i:03d}", "position": 10 + i, "duration": 1000, "ts": t0 + i * 1000}
              for i in range(105)]
    random.shuffle(events)
    for chunk in range(0, 105, 35):
        post(ing, events[chunk:chunk + 35])
    post(ing, {"user_id": "row", "video_id": "done", "position": 950, "duration": 1000, "ts": t0 + 999_000})
    wait_position(rd, "row", "done", 950)

    def full_row():
        status, body = get(rd, "/v1/users/row/continue-watching?limit=100")
        return status == 200 and len(body["items"]) == 99 and body["items"][0]["video_id"] == "v104" and body
    body = wait_until(full_row, scaled(20), "a row of the newest 99 unfinished videos")
    ids = [it["video_id"] for it in body["items"]]
    assert ids == [f"v{i:03d}" for i in range(104, 5, -1)]  # newest first; v000..v005 trimmed ("done" counts)
    first = body["items"][0]
    assert first == {"video_id": "v104", "position": 114, "duration": 1000, "progress": 0.114,
                     "updated_at": t0 + 104_000}
    # the trimmed ones are gone from both keys; the finished one keeps its position
    assert get(rd, "/v1/users/row/positions/v000")[0] == 404
    assert get(rd, "/v1/users/row/positions/v005")[0] == 404
    status, done = get(rd, "/v1/users/row/positions/done")
    assert status == 200 and done["finished"] is True and done["position"] == 950
    status, body = get(rd, "/v1/users/row/continue-watching")
    assert status == 200 and len(body["items"]) == 20 and "done" not in [it["video_id"] for it in body["items"]]
    # rewinding a finished video (newer event) brings it back to the front of the row
    post(ing, {"user_id": "row", "video_id": "done", "position": 100, "duration": 1000, "ts": t0 + 1_000_000})
    wait_until(lambda: get(rd, "/v1/users/row/continue-watching?limit=1")[1]["items"][0]["video_id"] == "done",
               scaled(20), "the rewound video first in the row")


def test_keys_are_hash_tagged_and_expire(ingest, consumer, api, redis):
    ing, _, rd = ingest(), consumer(ttl_seconds=3600), api()
    post(ing, {"user_id": "tag", "video_id": "v", "position": 1})
    wait_position(rd, "tag", "v", 1)
    keys = sorted(redis.keys("*"))
    assert keys == ["ph:{tag}:r", "ph:{tag}:v"]
    for k in keys:
        assert 3500_000 < redis.pttl(k) <= 3600_000


def test_reference_compatible_watching_routes_end_to_end(ingest, consumer, api):
    ing, _, rd = stack(ingest, consumer, api)
    cookie = {"Cookie": "user_id=bda031c0-4e7d-493a-92ba-6fc1eb3e6216"}
    status, _, body = http("POST", ing.url + "/watching", json.dumps({"video_id": "123", "position": 1}),
                           headers={**cookie, "Content-Type": "application/json"})
    assert (status, body) == (201, "")
    wait_until(lambda: get(rd, "/watching?video_id=123", cookie) == (200, {"position": 1}), scaled(20),
               "GET /watching returns the position")
    assert get(rd, "/watching?video_id=999", cookie)[0] == 404
    assert get(rd, "/watching?video_id=123")[0] == 400
    assert get(rd, "/watching", cookie)[0] == 400
