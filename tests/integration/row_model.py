"""The continue-watching row as a Python model, and random users to check the api against it.

row(ids, states, limit, min_seconds, min_percent) is the rule set of api/row.c (and of the Lua row
script before it) written from its description, over the same input: the row index newest first
(ZREVRANGE) and the stored values (HGETALL). random_user() makes a user's stored state in the layout
the apply script writes (see keys.h and apply_lua in common/src/scripts.c):

    ts:received_at:position:duration:K:hide_ts[;series_ts;series_received_at][/series_id[/next_video_id]]

with every case the rules tell apart: kinds p, f, w, u and n (a hide alone), hides before and at or
after the content, series with and without a next episode, positions around the minimum, unknown
durations, the legacy 4-field layout, and erased titles' tombstones (in the index, no state).
Used by test_row_model.py and bench/row_compare.py (the api of two builds on the same state).
"""

import math
import random

KINDS = "pfwun"


def _fmt(x):
    return repr(x) if x != int(x) else str(int(x))


def random_user(rng, titles=None):
    """(index, values): index {video_id: score} for the row zset, values {video_id: stored value}."""
    n = rng.randint(0, 14) if titles is None else titles
    series = [f"s{k}" for k in range(rng.randint(1, 4))]
    index, values = {}, {}
    ts0 = 1_700_000_000_000 + rng.randrange(10**6)
    for i in range(n):
        vid = f"v{i:02d}"
        ts = ts0 + rng.choice([rng.randrange(10**6), i * 1000])  # ties in score happen
        if rng.random() < 0.1:  # an erased title: the tombstone in the index, no state
            index[vid] = ts
            continue
        duration = rng.choice([0, 0, 100, 1200, 5400, 5400.5])
        position = rng.choice([0, 4.9, 5, 30, 59.9, 60, 61, 120.5, 1000, 1199, 5399.5])
        if duration and position > duration:
            position = duration
        if rng.random() < 0.08:  # the layout before the viewer's fields
            values[vid] = f"{ts}:{ts + 7}:{_fmt(position)}:{_fmt(duration)}"
            index[vid] = ts
            continue
        kind = rng.choice(KINDS)
        hide = rng.choice([0, 0, 0, ts - 5, ts, ts + 5])
        if kind == "n":
            ts_text, position, duration, hide = "0:0:0:0", 0, 0, ts
            value = f"{ts_text}:n:{hide}"
        else:
            value = f"{ts}:{ts + 7}:{_fmt(position)}:{_fmt(duration)}:{kind}:{hide}"
        if kind != "n" and rng.random() < 0.6:
            if rng.random() < 0.2:
                value += f";{ts - 100};{ts - 93}"
            value += "/" + rng.choice(series)
            if rng.random() < 0.6:
                value += "/" + rng.choice([f"v{rng.randrange(20):02d}", f"next-{i}"])
        values[vid] = value
        index[vid] = max(ts, hide)
    return index, values


def parse(value):
    """The fields of a stored value, or None (a layout the rules cannot read)."""
    head, _, tail = value.partition("/")
    series, _, nxt = tail.partition("/")
    fields = head.split(";")[0].split(":")
    if len(fields) == 4:
        ts, _, pos, dur = fields
        pos, dur = float(pos), float(dur)
        kind, hide = ("f" if dur > 0 and pos >= 0.95 * dur else "p"), 0
    elif len(fields) == 6:
        ts, _, pos, dur, kind, hide = fields
        pos, dur, hide = float(pos), float(dur), int(hide)
    else:
        return None
    return {"ts": int(ts), "position": pos, "duration": dur, "kind": kind, "hide": hide, "series": series, "next": nxt}


def _item_fields(video, st):
    item = {"video_id": video, "position": st["position"]}
    if st["duration"] > 0:
        p = 1 if st["kind"] == "w" else st["position"] / st["duration"]
        item["duration"] = st["duration"]
        item["progress"] = 0 if p < 0 else 1 if p > 1 else math.floor(p * 1e4 + 0.5) / 1e4
    else:
        item["duration"] = None
        item["progress"] = 1 if st["kind"] == "w" else None
    item["updated_at"] = st["ts"]
    if st["series"]:
        item["series_id"] = st["series"]
    return item


def row(ids, values, limit, min_seconds, min_percent):
    """The body the api answers: {"items": [...]} (ids newest first, as ZREVRANGE gives them)."""
    items, seen = [], set()
    for vid in ids:
        if len(items) >= limit:
            break
        st = parse(values[vid]) if vid in values else None
        if st is None or st["kind"] == "n" or (st["series"] and st["series"] in seen):
            continue
        minimum = min_seconds
        if st["duration"] > 0 and min_percent / 100 * st["duration"] < minimum:
            minimum = min_percent / 100 * st["duration"]
        if st["hide"] > 0 and st["hide"] >= st["ts"]:
            if st["series"]:
                seen.add(st["series"])
        elif st["kind"] in "fw":
            if st["series"]:
                seen.add(st["series"])
                if st["next"]:
                    items.append({"video_id": st["next"], "position": 0, "duration": None, "progress": 0,
                                  "updated_at": st["ts"], "series_id": st["series"], "next_up": True})
        elif st["kind"] != "u" and st["position"] >= minimum:
            if st["series"]:
                seen.add(st["series"])
            items.append(_item_fields(vid, st))
    return {"items": items}


def store(redis, user, index, values):
    if index:
        redis.zadd(f"ph:{{{user}}}:r", index)
    if values:
        redis.hset(f"ph:{{{user}}}:v", mapping=values)


def zrevrange(index):
    """ZREVRANGE's order: score descending, ties by member descending."""
    return [v for v, _ in sorted(index.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
