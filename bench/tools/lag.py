#!/usr/bin/python3
"""lag.py count BROKERS TOPIC: prints the number of messages in TOPIC (sum of its end offsets).
lag.py BROKERS TOPIC GROUP EXPECTED TIMEOUT_S: waits until consumer group GROUP has committed
offsets equal to the end offsets of every partition of TOPIC (lag 0), whose end offsets must sum to
EXPECTED messages. Polls every 50 ms, without joining the group. Prints one JSON object:
seconds from start to the first committed progress and to lag 0 (monotonic clock), and the lag then.
Bench tooling only (bench/run.sh); uses python3-confluent-kafka (Debian's /usr/bin/python3)."""
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition

if sys.argv[1] == "count":
    c = Consumer({"bootstrap.servers": sys.argv[2], "group.id": "bench-count"})
    md = c.list_topics(sys.argv[3], timeout=10)
    print(sum(c.get_watermark_offsets(TopicPartition(sys.argv[3], p), timeout=10)[1] for p in md.topics[sys.argv[3]].partitions))
    c.close()
    sys.exit(0)

brokers, topic, group, expected, timeout = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
t0 = time.monotonic()
c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
md = c.list_topics(topic, timeout=10)
parts = [TopicPartition(topic, p) for p in sorted(md.topics[topic].partitions)]
ends = {}
for tp in parts:
    lo, hi = c.get_watermark_offsets(tp, timeout=10)
    ends[tp.partition] = hi
total = sum(ends.values())
first = None
lag = total
samples = []
while time.monotonic() - t0 < timeout:
    committed = c.committed(parts, timeout=10)
    done = sum(max(tp.offset, 0) for tp in committed)
    lag = total - done
    now = time.monotonic() - t0
    if done > 0 and first is None:
        first = now
    if not samples or now - samples[-1][0] >= 1.0:
        samples.append((round(now, 2), done))
    if lag <= 0:
        break
    time.sleep(0.05)
end = time.monotonic() - t0
c.close()
print(json.dumps({"messages": total, "expected": expected, "first_commit_s": first, "caught_up_s": end if lag <= 0 else None,
                  "lag": lag, "progress": samples}))
