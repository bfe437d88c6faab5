"""Issue 14 end to end on the real pipeline (ingest -> Kafka -> consumer -> Redis -> api): the
viewer's write routes (hide, watched, unwatched, erase one title, erase the user), the row's filters
(hidden, finished, below the minimum), series grouping and next-up, the history with stable paging
under concurrent writes, the export, and erasure surviving older events and a replay from earliest."""

import json
import time

from harness import Service, http, scaled, unique_name, wait_until

T0 = (int(time.time()) - 3600) * 1000  # recent: the Kafka timestamp is the event time
H = {"Content-Type": "application/json"}


def send(svc, method, path, body=None):
    status, _, resp = http(method, svc.url + path, json.dumps(body) if body is not None else None,
                           headers=H if body is not None else None)
    return status, resp


def post(svc, *events):
    status, resp = send(svc, "POST", "/v1/positions", list(events))
    assert status == 202, (status, resp)


def act(svc, method, path, ts):
    status, resp = send(svc, method, path, {"ts": ts})
    assert (status, resp) == (202, {"accepted": 1}), (method, path, status, resp)


def pos(user, video, position, ts, duration=600, **extra):
    return {"user_id": user, "video_id": video, "position": position, "duration": duration, "ts": ts, **extra}


def row(api, user):
    status, _, body = http("GET", f"{api.url}/v1/users/{user}/continue-watching")
    assert status == 200, body
    return body["items"]


def row_ids(api, user):
    return [it["video_id"] for it in row(api, user)]


def history(api, user, limit=100, cursor=None):
    q = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    status, _, body = http("GET", f"{api.url}/v1/users/{user}/history{q}")
    assert status == 200, body
    return body


def eventually(fn, expect, what, timeout=20):
    wait_until(lambda: fn() == expect, scaled(timeout), f"{what}: want {expect}")


def test_hide_watched_unwatched_and_newer_position_brings_back(ingest, consumer, api):
    ing, _, rd = ingest(), consumer(), api()
    post(ing, pos("u", "a", 100, T0), pos("u", "b", 100, T0 + 1), pos("u", "c", 100, T0 + 2))
    eventually(lambda: row_ids(rd, "u"), ["c", "b", "a"], "row")
    act(ing, "DELETE", "/v1/users/u/continue-watching/a", T0 + 10)
    act(ing, "PUT", "/v1/users/u/videos/b/watched", T0 + 10)
    eventually(lambda: row_ids(rd, "u"), ["c"], "hidden and watched leave the row")
    # the position is kept: resuming works, the history shows it hidden
    status, _, body = http("GET", f"{rd.url}/v1/users/u/positions/a")
    assert (status, body["position"]) == (200, 100)
    items = {it["video_id"]: it for it in history(rd, "u")["items"]}
    assert (items["a"]["hidden"], items["a"]["finished"]) == (True, False)
    assert (items["b"]["finished"], items["b"]["progress"]) == (True, 1)
    # an older position does not bring the hidden title back; a newer one does
    post(ing, pos("u", "a", 120, T0 + 5))
    act(ing, "DELETE", "/v1/users/u/videos/c/watched", T0 + 10)  # unwatched: position 0, not in the row
    eventually(lambda: row_ids(rd, "u"), [], "unwatched leaves the row")
    # the older position is still the newest position (resuming uses it), but the hide stays
    assert http("GET", f"{rd.url}/v1/users/u/positions/a")[2]["position"] == 120
    assert {it["video_id"]: it for it in history(rd, "u")["items"]}["a"]["hidden"] is True
    post(ing, pos("u", "a", 130, T0 + 20))
    eventually(lambda: row_ids(rd, "u"), ["a"], "a newer position brings the hidden title back")
    items = {it["video_id"]: it for it in history(rd, "u")["items"]}
    assert (items["c"]["position"], items["c"]["finished"]) == (0, False)


def test_erase_title_and_user_then_replay_from_earliest(ingest, consumer, api, services, tmp_path, kafka, topic, redis,
                                                       redis_server):
    ing, live, rd = ingest(), consumer(), api()
    post(ing, pos("e", "a", 100, T0), pos("e", "b", 100, T0), pos("keep", "a", 100, T0))
    status, _ = send(rd, "POST", "/v1/users/e/streams", {"session_id": "s1"})
    assert status == 201
    eventually(lambda: sorted(row_ids(rd, "e")), ["a", "b"], "row")
    act(ing, "DELETE", "/v1/users/e/videos/a", T0 + 10)
    eventually(lambda: row_ids(rd, "e"), ["b"], "erased title gone")
    assert http("GET", f"{rd.url}/v1/users/e/positions/a")[0] == 404
    act(ing, "DELETE", "/v1/users/e", T0 + 20)
    eventually(lambda: history(rd, "e")["items"], [], "erased user gone")
    assert http("GET", f"{rd.url}/v1/users/e/streams")[2]["active"] == []
    # older events stay gone (late, offline device); a newer one starts afresh
    post(ing, pos("e", "b", 200, T0 + 15), pos("e", "a", 200, T0 + 5))
    post(ing, pos("e", "z", 50, T0 + 30), pos("keep", "a", 120, T0 + 30))
    eventually(lambda: row_ids(rd, "e"), ["z"], "a newer event appears")
    eventually(lambda: row_ids(rd, "keep"), ["a"], "other users untouched")
    assert [it["video_id"] for it in history(rd, "e")["items"]] == ["z"]
    before = {k: redis.hgetall(k) for k in redis.scan_iter("ph:{e}:v")}
    live.stop()
    redis.flushall()
    r = Service("consumer", ["--brokers", kafka.bootstrap, "--topic", topic, "--group", unique_name("replay"),
                             "--redis", redis_server.url, "--replay-from", "earliest"], tmp_path, name="replay")
    services.append(r)
    r.start(ready=False)
    assert r.proc.wait(timeout=scaled(60)) == 0, r.logs()
    r._ended = True
    r.check_sanitizers()
    assert {k: redis.hgetall(k) for k in redis.scan_iter("ph:{e}:v")} == before
    assert [it["video_id"] for it in history(rd, "e")["items"]] == ["z"]
    assert redis.get("ph:{e}:x") == str(T0 + 20)


def test_series_next_up_and_thresholds(ingest, consumer, api):
    ing = ingest()
    consumer(finished_remaining_seconds=30)
    rd = api(row_min_seconds=60, row_min_percent=5)
    post(ing,
         pos("s", "s1e1", 590, T0, series_id="show", next_video_id="s1e2"),  # 10 s left < 30: finished (credits)
         pos("s", "s1e0", 300, T0 - 10, series_id="show"),  # older episode of the same series: not shown
         pos("s", "film", 200, T0 + 1, duration=7200),  # 200 s >= 60 s
         pos("s", "clip", 10, T0 + 2, duration=100),  # 10 s >= 5 % of 100 s: in the row
         pos("s", "trailer", 30, T0 + 3, duration=7200),  # 30 s < min(60 s, 360 s): below the minimum
         pos("s", "other", 100, T0 + 4, series_id="show2"))
    eventually(lambda: [(it["video_id"], it.get("next_up")) for it in row(rd, "s")],
               [("other", None), ("clip", None), ("film", None), ("s1e2", True)], "row with next-up")
    items = row(rd, "s")
    assert items[0]["series_id"] == "show2"
    assert items[3] == {"video_id": "s1e2", "position": 0, "duration": None, "progress": 0, "updated_at": T0,
                        "series_id": "show", "next_up": True}
    # starting the next episode makes it the series' card
    post(ing, pos("s", "s1e2", 120, T0 + 10, series_id="show", next_video_id="s1e3"))
    eventually(lambda: [it["video_id"] for it in row(rd, "s")], ["s1e2", "other", "clip", "film"], "series card moves")
    # 95 % counts as finished without end credits
    post(ing, pos("s", "film", 6840, T0 + 20, duration=7200))
    eventually(lambda: [it["video_id"] for it in row(rd, "s")], ["s1e2", "other", "clip"], "finished film")


def test_marks_keep_the_series_of_earlier_positions(ingest, consumer, api):
    """The watched/unwatched routes carry no series: the series_id and next_video_id a position
    gave survive the mark, so a watched episode gives next-up and an unwatched one keeps its series."""
    ing = ingest()
    consumer()
    rd = api()
    post(ing, pos("m", "e1", 100, T0, series_id="show", next_video_id="e2"),
         pos("m", "f1", 100, T0 + 1, series_id="other", next_video_id="f2"))
    eventually(lambda: row_ids(rd, "m"), ["f1", "e1"], "both episodes in the row")
    act(ing, "PUT", "/v1/users/m/videos/e1/watched", T0 + 10)
    act(ing, "DELETE", "/v1/users/m/videos/f1/watched", T0 + 11)
    eventually(lambda: [(it["video_id"], it.get("series_id"), it.get("next_up")) for it in row(rd, "m")],
               [("e2", "show", True)], "next-up after the mark")
    items = {it["video_id"]: it for it in history(rd, "m")["items"]}
    assert items["e1"]["series_id"] == "show" and items["e1"]["finished"] is True
    assert items["f1"]["series_id"] == "other" and items["f1"]["position"] == 0


def test_history_paging_stable_under_concurrent_writes_and_export(ingest, consumer, api):
    ing, _, rd = ingest(), consumer(), api()
    post(ing, *[pos("h", f"v{i:02d}", 100, T0 + i) for i in range(25)])
    eventually(lambda: len(history(rd, "h")["items"]), 25, "all titles")
    seen, cursor, page = [], None, 0
    while True:
        body = history(rd, "h", limit=7, cursor=cursor)
        seen += [it["video_id"] for it in body["items"]]
        cursor = body["next_cursor"]
        if page == 0:  # writes during paging: new titles, and titles already paged through
            post(ing, pos("h", "new1", 100, T0 + 100), pos("h", "v24", 110, T0 + 101), pos("h", "v20", 110, T0 + 102))
            eventually(lambda: history(rd, "h", limit=1)["items"][0]["video_id"], "v20", "writes applied")
            # the three keys sit in different partitions: v20 first does not mean new1 is in yet
            eventually(lambda: len(history(rd, "h", limit=100)["items"]), 26, "the new title applied")
        page += 1
        if cursor is None:
            break
    assert seen == [f"v{i:02d}" for i in range(24, -1, -1)]
    assert page == 4
    status, headers, body = http("GET", f"{rd.url}/v1/users/h/export")
    assert status == 200
    assert headers["content-disposition"] == 'attachment; filename="playhead-h.json"'
    assert body["user_id"] == "h" and len(body["history"]) == 26 and body["streams"] == []
    assert {"video_id", "position", "duration", "progress", "updated_at", "finished", "hidden", "kind", "received_at",
            "hidden_at"} <= set(body["history"][0])
    assert http("GET", f"{rd.url}/v1/users/h/history?limit=0")[0] == 400
    assert http("GET", f"{rd.url}/v1/users/h/history?cursor=bogus")[0] == 400
