// Unit tests for demo/metrics.js, the dashboard's Prometheus text parser: node --test tests/demo
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buckets, parsePrometheus, quantile, rate, sumOf } from '../../demo/metrics.js';

const SCRAPE = `# HELP playhead_ingest_events_accepted_total Events accepted.
# TYPE playhead_ingest_events_accepted_total counter
playhead_ingest_events_accepted_total 1027
playhead_spool_records 0
# TYPE playhead_http_request_duration_seconds histogram
playhead_http_request_duration_seconds_bucket{route="/v1/positions",le="0.001"} 10
playhead_http_request_duration_seconds_bucket{route="/v1/positions",le="0.005"} 60
playhead_http_request_duration_seconds_bucket{route="/v1/positions",le="0.01"} 90
playhead_http_request_duration_seconds_bucket{route="/v1/positions",le="+Inf"} 100
playhead_http_request_duration_seconds_sum{route="/v1/positions"} 0.4
playhead_http_request_duration_seconds_count{route="/v1/positions"} 100
playhead_http_request_duration_seconds_bucket{route="/healthz",le="0.001"} 5
playhead_http_request_duration_seconds_bucket{route="/healthz",le="+Inf"} 5
playhead_consumer_lag{partition="0"} 3
playhead_consumer_lag{partition="1"} 4 1700000000000
weird line that is not a sample
bad_value{a="b"} twelve
bad_labels{a=b} 1
escaped{path="a\\"b\\\\c",x="1"} 2.5e3
`;

test('parses samples, labels, timestamps and escapes; skips what it cannot read', () => {
    const m = parsePrometheus(SCRAPE);
    assert.equal(sumOf(m, 'playhead_ingest_events_accepted_total'), 1027);
    assert.equal(sumOf(m, 'playhead_spool_records'), 0, 'a zero gauge is 0, not missing');
    assert.equal(sumOf(m, 'playhead_consumer_lag'), 7, 'summed over partitions');
    assert.equal(sumOf(m, 'playhead_consumer_lag', { partition: '1' }), 4);
    assert.deepEqual(m.get('escaped')[0], { name: 'escaped', labels: { path: 'a"b\\c', x: '1' }, value: 2500 });
    assert.equal(m.has('bad_value'), false);
    assert.equal(m.has('bad_labels'), false);
    assert.equal(m.has('weird'), false);
});

test('a missing metric or a failed scrape is null ("n/a"), never 0', () => {
    const m = parsePrometheus('');
    assert.equal(sumOf(m, 'playhead_redis_keys'), null);
    assert.equal(sumOf(null, 'playhead_redis_keys'), null);
    assert.equal(buckets(null, 'x'), null);
    assert.equal(quantile(0.5, null, null), null);
    assert.equal(rate(null, 5, 1), null);
    assert.equal(parsePrometheus(undefined).size, 0);
});

test('rate is the per-second delta and survives a counter reset', () => {
    assert.equal(rate(150, 100, 2), 25);
    assert.equal(rate(100, 100, 1), 0);
    assert.equal(rate(30, 1000, 1), 30, 'restarted service: counts since restart');
    assert.equal(rate(1, 0, 0), null);
});

test('buckets picks one route and sorts by le with +Inf last', () => {
    const b = buckets(parsePrometheus(SCRAPE), 'playhead_http_request_duration_seconds', { route: '/v1/positions' });
    assert.deepEqual(b, [
        [0.001, 10],
        [0.005, 60],
        [0.01, 90],
        [Infinity, 100],
    ]);
});

test('quantiles interpolate inside the bucket, from the delta between scrapes', () => {
    const prev = [
        [0.001, 10],
        [0.005, 60],
        [0.01, 90],
        [Infinity, 100],
    ];
    const curr = [
        [0.001, 10], // no new fast requests
        [0.005, 160], // 100 new in (0.001, 0.005]
        [0.01, 190], // 0 new in (0.005, 0.01]
        [Infinity, 200],
    ];
    // delta: 0 | 100 | 0 | 0 → median at rank 50 of 100 → halfway through (0.001, 0.005]
    assert.ok(Math.abs(quantile(0.5, curr, prev) - 0.003) < 1e-12);
    assert.ok(Math.abs(quantile(0.99, curr, prev) - 0.00496) < 1e-12);
    // whole histogram (no previous scrape): 10 | 50 | 30 | 10
    assert.ok(Math.abs(quantile(0.5, prev, null) - (0.001 + 0.004 * (40 / 50))) < 1e-12);
    assert.equal(quantile(0.99, prev, null), 0.01, 'in the +Inf bucket: the largest finite bound');
    assert.equal(quantile(0.5, curr, curr), null, 'no requests in between');
    assert.ok(quantile(0.5, prev, curr) > 0, 'a reset (counts went down) uses the current histogram');
});
