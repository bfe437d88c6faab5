// Unit tests for demo/playhead.js, the offline-first client: node --test tests/demo
// Everything outside the client (storage, network, clock, timers, randomness) is a fake from
// fakes.mjs, so each test states exactly what the network answers and when time passes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, retryAfterMs } from '../../demo/playhead.js';
import { FakeClock, FakeStorage, fakeFetch, json, settle } from './fakes.mjs';

const INGEST = 'http://ingest.test:8080';

/** A client wired to fakes; returns it with the fakes. Options override the defaults. */
function setup(opts = {}) {
    const clock = opts.clock || new FakeClock();
    const storage = opts.storage || new FakeStorage();
    const fetch = opts.fetch || fakeFetch();
    const client = createClient({
        ingestUrl: INGEST,
        userId: 'alice',
        storage,
        fetch,
        now: clock.now,
        timers: clock,
        random: () => 0.999999,
        flushDelayMs: 0,
        ...opts.client,
    });
    return { client, clock, storage, fetch };
}

/** Record `n` videos v0..v(n-1), one ms apart. */
function recordMany(t, n) {
    for (let i = 0; i < n; i++) {
        t.client.record({ videoId: `v${i}`, position: i });
        t.clock.t += 1;
    }
}

test('record coalesces per video, keeping only the newest position', async () => {
    const t = setup({ client: { autoFlush: false } });
    t.client.record({ videoId: 'v1', position: 10, duration: 90, sessionId: 's1' });
    t.clock.t += 1000;
    t.client.record({ videoId: 'v2', position: 3 });
    t.clock.t += 1000;
    t.client.record({ videoId: 'v1', position: 15, duration: 90, sessionId: 's1' });
    assert.equal(t.client.pending(), 2);
    const q = t.client.queued();
    assert.deepEqual(
        q.map((e) => [e.video_id, e.position]),
        [
            ['v2', 3],
            ['v1', 15],
        ],
        'oldest first, v1 holds its newest position',
    );
    assert.deepEqual(q[1], { user_id: 'alice', video_id: 'v1', position: 15, duration: 90, ts: t.clock.t, session_id: 's1' });
});

test('coalescing is by ts: an older event (another tab, slower clock) does not replace a newer one', () => {
    const storage = new FakeStorage();
    const a = setup({ storage, client: { autoFlush: false } });
    const b = setup({ storage, clock: new FakeClock(a.clock.t - 5000), client: { autoFlush: false } });
    a.client.record({ videoId: 'v1', position: 50 });
    b.client.record({ videoId: 'v1', position: 20 }); // recorded "earlier" by ts
    assert.deepEqual(
        a.client.queued().map((e) => e.position),
        [50],
    );
    a.clock.t += 1;
    a.client.record({ videoId: 'v1', position: 51 });
    assert.deepEqual(
        b.client.queued().map((e) => e.position),
        [51],
        'both tabs share one queue',
    );
});

test('record validates input and stores sane numbers only', () => {
    const t = setup({ client: { autoFlush: false } });
    assert.throws(() => t.client.record({ videoId: 'bad id', position: 1 }), TypeError);
    assert.throws(() => t.client.record({ videoId: '', position: 1 }), TypeError);
    assert.throws(() => t.client.record({ videoId: 'v'.repeat(129), position: 1 }), TypeError);
    assert.throws(() => t.client.record({ videoId: 'v1', position: -1 }), RangeError);
    assert.throws(() => t.client.record({ videoId: 'v1', position: NaN }), RangeError);
    assert.throws(() => t.client.record({ videoId: 'v1', position: 1e7 + 1 }), RangeError);
    assert.throws(() => t.client.record({ videoId: 'v1', position: 1, sessionId: 'no spaces' }), TypeError);
    assert.equal(t.client.pending(), 0);
    const ev = t.client.record({ videoId: 'a.b:c@d-e_f', position: 1.23456789, duration: NaN });
    assert.equal(ev.position, 1.235);
    assert.equal('duration' in ev, false, 'NaN duration (no metadata yet) is left out');
    assert.equal('duration' in t.client.record({ videoId: 'live', position: 1, duration: Infinity }), false);
    assert.throws(() => createClient({ ingestUrl: INGEST, userId: 'a b', storage: new FakeStorage(), fetch() {} }), TypeError);
    assert.throws(() => createClient({ ingestUrl: 'ftp://x', userId: 'a', storage: new FakeStorage(), fetch() {} }), TypeError);
    assert.throws(() => createClient({ ingestUrl: INGEST, userId: 'a', batchMax: 1001, storage: new FakeStorage(), fetch() {} }), RangeError);
});

test('flush sends the queue in batches of batchMax, oldest first, as JSON arrays', async () => {
    const t = setup({ client: { autoFlush: false, batchMax: 2 } });
    recordMany(t, 5);
    const r = await t.client.flush();
    assert.deepEqual(r, { sent: 5, dropped: 0, pending: 0, error: null });
    assert.deepEqual(
        t.fetch.calls.map((c) => c.body.map((e) => e.video_id)),
        [['v0', 'v1'], ['v2', 'v3'], ['v4']],
    );
    const c = t.fetch.calls[0];
    assert.equal(c.url, `${INGEST}/v1/positions`);
    assert.equal(c.init.method, 'POST');
    assert.equal(c.init.headers['Content-Type'], 'application/json');
    assert.equal(t.client.pending(), 0);
    assert.equal(t.storage.getItem(t.client.storageKey), null, 'an empty queue leaves nothing behind');
});

test('record schedules a send by itself after flushDelayMs', async () => {
    const t = setup({ client: { flushDelayMs: 200 } });
    t.client.record({ videoId: 'v1', position: 1 });
    t.client.record({ videoId: 'v2', position: 2 });
    await t.clock.advance(199);
    assert.equal(t.fetch.calls.length, 0);
    await t.clock.advance(1);
    assert.equal(t.fetch.calls.length, 1, 'a burst of records becomes one request');
    assert.equal(t.fetch.calls[0].body.length, 2);
    assert.equal(t.client.pending(), 0);
});

test('backoff grows exponentially with full jitter and is capped at maxBackoffMs', async () => {
    const fetch = fakeFetch(() => {
        throw new TypeError('Failed to fetch');
    });
    let rnd = 0.999999;
    const t = setup({ fetch, client: { baseBackoffMs: 1000, maxBackoffMs: 10000, random: () => rnd } });
    t.client.record({ videoId: 'v1', position: 1 });
    const delays = [];
    await t.clock.advance(0);
    for (let i = 0; i < 7; i++) {
        assert.equal(t.clock.pending().length, 1, 'exactly one retry planned');
        const d = t.clock.pending()[0];
        delays.push(d);
        assert.equal(t.client.state().retryAt, t.clock.t + d);
        await t.clock.advance(d);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 10000, 10000, 10000]);
    assert.equal(fetch.calls.length, 8);
    assert.match(t.client.state().lastError, /network error: Failed to fetch/);
    assert.equal(t.client.pending(), 1, 'nothing lost while failing');

    // full jitter: the delay is random() × the cap
    rnd = 0.25;
    await t.clock.advance(t.clock.pending()[0]);
    assert.equal(t.clock.pending()[0], 2500);
});

test('no sends while backing off: record() and flush() wait, flush({force}) does not', async () => {
    let fail = true;
    const fetch = fakeFetch(() => (fail ? 500 : 202));
    const t = setup({ fetch });
    t.client.record({ videoId: 'v1', position: 1 });
    await t.clock.advance(0);
    assert.equal(fetch.calls.length, 1);
    t.client.record({ videoId: 'v1', position: 2 });
    await t.client.flush();
    await t.clock.advance(500);
    assert.equal(fetch.calls.length, 1, 'still backing off');
    fail = false;
    const r = await t.client.flush({ force: true }); // e.g. the browser's "online" event
    assert.equal(r.sent, 1);
    assert.equal(fetch.calls[1].body[0].position, 2, 'coalesced while waiting');
    assert.equal(t.client.state().attempt, 0);
    assert.equal(t.client.state().lastError, null);
});

test('5xx is retried until it succeeds, then the backoff resets', async () => {
    const answers = [500, 502, 504, 202];
    const fetch = fakeFetch(() => answers.shift());
    const t = setup({ fetch });
    t.client.record({ videoId: 'v1', position: 7 });
    await t.clock.advance(0);
    assert.match(t.client.state().lastError, /HTTP 500/);
    for (let i = 0; i < 3; i++) await t.clock.advance(t.clock.pending()[0]);
    assert.equal(fetch.calls.length, 4);
    assert.ok(fetch.calls.every((c) => c.body[0].position === 7));
    assert.equal(t.client.pending(), 0);
    assert.deepEqual(
        [t.client.state().attempt, t.client.state().retryAt, t.client.state().lastError],
        [0, null, null],
    );
    assert.deepEqual(t.clock.pending(), []);
});

test('503 Retry-After is honoured even when the jittered delay is shorter', async () => {
    const answers = [json(503, { error: 'busy' }, { 'Retry-After': '7' }), 202];
    const fetch = fakeFetch(() => answers.shift());
    const t = setup({ fetch, client: { random: () => 0 } });
    t.client.record({ videoId: 'v1', position: 1 });
    await t.clock.advance(0);
    assert.deepEqual(t.clock.pending(), [7000]);
    assert.match(t.client.state().lastError, /HTTP 503/);
    await t.client.flush({ force: true });
    assert.equal(fetch.calls.length, 1, 'even a forced flush waits out Retry-After');
    await t.clock.advance(6999);
    assert.equal(fetch.calls.length, 1);
    await t.clock.advance(1);
    assert.equal(fetch.calls.length, 2);
    assert.equal(t.client.pending(), 0);
});

test('Retry-After longer than maxBackoffMs still wins; 429 backs off too', async () => {
    const answers = [json(429, {}, { 'Retry-After': '120' }), 202];
    const fetch = fakeFetch(() => answers.shift());
    const t = setup({ fetch, client: { maxBackoffMs: 5000 } });
    t.client.record({ videoId: 'v1', position: 1 });
    await t.clock.advance(0);
    assert.deepEqual(t.clock.pending(), [120000]);
    await t.clock.advance(120000);
    assert.equal(t.client.pending(), 0);
});

test('retryAfterMs parses seconds and HTTP dates', () => {
    const now = Date.parse('2024-01-01T00:00:00Z');
    assert.equal(retryAfterMs('3', now), 3000);
    assert.equal(retryAfterMs(' 0 ', now), 0);
    assert.equal(retryAfterMs('Mon, 01 Jan 2024 00:00:30 GMT', now), 30000);
    assert.equal(retryAfterMs('Sun, 31 Dec 2023 00:00:00 GMT', now), 0, 'a date in the past: retry now');
    assert.equal(retryAfterMs(null, now), null);
    assert.equal(retryAfterMs('soon', now), null);
    assert.equal(retryAfterMs('-5', now), null);
});

test('400 with an index drops exactly that event and resends the rest at once', async () => {
    const answers = [json(400, { error: 'position out of range', index: 1, field: 'position' }), 202];
    const fetch = fakeFetch(() => answers.shift());
    const t = setup({ fetch, client: { autoFlush: false } });
    recordMany(t, 3);
    const r = await t.client.flush();
    assert.deepEqual(r, { sent: 2, dropped: 1, pending: 0, error: null });
    assert.deepEqual(
        fetch.calls.map((c) => c.body.map((e) => e.video_id)),
        [
            ['v0', 'v1', 'v2'],
            ['v0', 'v2'],
        ],
    );
    assert.equal(t.client.state().dropped, 1);
    assert.match(t.client.state().lastDrop, /dropped invalid event for v1: position out of range/);
    assert.equal(t.client.state().lastError, null);
});

test('400 without an index splits the batch until the bad event is alone, then drops it', async () => {
    const fetch = fakeFetch((c) => (c.body.some((e) => e.video_id === 'v2') ? json(400, { error: 'bad' }) : 202));
    const t = setup({ fetch, client: { autoFlush: false } });
    recordMany(t, 4);
    const r = await t.client.flush();
    assert.equal(r.sent, 3);
    assert.equal(r.dropped, 1);
    assert.equal(t.client.pending(), 0);
    assert.ok(fetch.calls.length <= 6);
});

test('413 splits the batch in halves', async () => {
    const fetch = fakeFetch((c) => (c.body.length > 2 ? json(413, { error: 'too large' }) : 202));
    const t = setup({ fetch, client: { autoFlush: false } });
    recordMany(t, 5);
    const r = await t.client.flush();
    assert.deepEqual(r, { sent: 5, dropped: 0, pending: 0, error: null });
    assert.deepEqual(
        fetch.calls.map((c) => c.body.length),
        [5, 2, 2, 1],
    );
});

test('413 for a single event drops it rather than wedging the queue', async () => {
    const fetch = fakeFetch(() => json(413, {}));
    const t = setup({ fetch, client: { autoFlush: false } });
    recordMany(t, 2);
    const r = await t.client.flush();
    assert.deepEqual(r, { sent: 0, dropped: 2, pending: 0, error: null });
});

test('a position recorded while its older one is in flight is kept and sent next', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    const fetch = fakeFetch(async (c) => {
        if (c.n === 0) await gate;
        return 202;
    });
    const t = setup({ fetch });
    t.client.record({ videoId: 'v1', position: 10 });
    await t.clock.advance(0);
    assert.equal(t.client.state().sending, true);
    t.clock.t += 5000;
    t.client.record({ videoId: 'v1', position: 15 });
    release();
    await t.clock.advance(0);
    assert.deepEqual(
        fetch.calls.map((c) => c.body[0].position),
        [10, 15],
    );
    assert.equal(t.client.pending(), 0);
});

test('concurrent flush() calls join the one in flight', async () => {
    const t = setup({ client: { autoFlush: false } });
    recordMany(t, 3);
    const [a, b] = await Promise.all([t.client.flush(), t.client.flush()]);
    assert.equal(a, b);
    assert.equal(t.fetch.calls.length, 1);
});

test('the queue survives client re-creation (a page reload) and is sent by the new client', async () => {
    const storage = new FakeStorage();
    const down = fakeFetch(() => {
        throw new TypeError('Failed to fetch');
    });
    const first = setup({ storage, fetch: down });
    first.client.record({ videoId: 'v1', position: 11 });
    first.client.record({ videoId: 'v2', position: 22 });
    await first.clock.advance(0);
    assert.equal(first.client.pending(), 2);
    first.client.close(); // the page goes away mid-backoff

    const up = fakeFetch();
    const second = setup({ storage, fetch: up, clock: new FakeClock(first.clock.t + 60000) });
    assert.equal(second.client.pending(), 2);
    await second.clock.advance(0); // no record() needed: a leftover queue is sent on start
    assert.equal(up.calls.length, 1);
    assert.deepEqual(
        up.calls[0].body.map((e) => [e.user_id, e.video_id, e.position]),
        [
            ['alice', 'v1', 11],
            ['alice', 'v2', 22],
        ],
    );
    assert.equal(second.client.pending(), 0);
});

test('each user has their own queue', () => {
    const storage = new FakeStorage();
    const a = setup({ storage, client: { autoFlush: false } });
    const b = setup({ storage, client: { autoFlush: false, userId: 'bob' } });
    a.client.record({ videoId: 'v1', position: 1 });
    assert.equal(b.client.pending(), 0);
    assert.notEqual(a.client.storageKey, b.client.storageKey);
});

test('a corrupt stored queue is kept aside, not overwritten', () => {
    const storage = new FakeStorage();
    storage.setItem('playhead.queue.v1.alice', '{not json');
    const t = setup({ storage, client: { autoFlush: false } });
    assert.equal(t.client.pending(), 0);
    t.client.record({ videoId: 'v1', position: 1 });
    assert.equal(storage.getItem('playhead.queue.v1.alice.corrupt'), '{not json');
    assert.equal(t.client.pending(), 1);
});

test('when storage refuses writes the queue lives on in memory', async () => {
    const storage = new FakeStorage();
    storage.failWrites = true;
    const t = setup({ storage, client: { autoFlush: false } });
    t.client.record({ videoId: 'v1', position: 1 });
    t.client.record({ videoId: 'v2', position: 2 });
    assert.equal(t.client.pending(), 2);
    assert.match(t.client.state().lastError, /storage unavailable/);
    const r = await t.client.flush();
    assert.equal(r.sent, 2);
});

test('a request that hangs is aborted after requestTimeoutMs and retried', async () => {
    const fetch = fakeFetch(
        (c) =>
            new Promise((resolve, reject) => {
                if (c.n > 0) return resolve(json(202, { accepted: 1 }));
                c.init.signal.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
            }),
    );
    const t = setup({ fetch, client: { requestTimeoutMs: 3000 } });
    t.client.record({ videoId: 'v1', position: 1 });
    await t.clock.advance(2999);
    assert.equal(t.client.state().sending, true);
    await t.clock.advance(1);
    assert.equal(t.client.state().lastError, 'request timed out');
    await t.clock.advance(t.clock.pending()[0]);
    assert.equal(t.client.pending(), 0);
});

test('flushOnExit hands the queue to a keepalive JSON fetch and keeps it until a 2xx is seen', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    const fetch = fakeFetch(async () => {
        await gate;
        return 202;
    });
    const t = setup({ fetch, client: { autoFlush: false } });
    assert.equal(t.client.flushOnExit(), false, 'nothing to send');
    recordMany(t, 3);
    assert.equal(t.client.flushOnExit(), true);
    assert.equal(fetch.calls.length, 1, 'sent synchronously');
    const { url, init, body } = fetch.calls[0];
    assert.equal(url, `${INGEST}/v1/positions`);
    assert.equal(init.method, 'POST');
    assert.equal(init.keepalive, true);
    // ingest answers 415 to anything but JSON: no text/plain (sendBeacon-style) body, ever
    assert.equal(init.headers['Content-Type'], 'application/json');
    assert.equal(init.signal, undefined, 'no abort timer: the page is going away anyway');
    assert.deepEqual(
        body.map((e) => e.video_id),
        ['v0', 'v1', 'v2'],
    );
    assert.equal(t.client.pending(), 3, 'still queued: the page may die before the answer');
    release();
    await settle();
    assert.equal(t.client.pending(), 0, 'the page lived to see the 202');
    assert.equal(t.client.state().sent, 3);
});

test('flushOnExit leaves the queue alone when the keepalive request fails or is refused', async () => {
    let answer = () => {
        throw new TypeError('Failed to fetch'); // what a browser does over its keepalive quota
    };
    const fetch = fakeFetch((call) => answer(call));
    const t = setup({ fetch, client: { autoFlush: false } });
    recordMany(t, 2);
    assert.equal(t.client.flushOnExit(), true);
    await settle();
    assert.equal(t.client.pending(), 2, 'kept for the next page load');
    answer = () => 503;
    assert.equal(t.client.flushOnExit(), true);
    await settle();
    assert.equal(t.client.pending(), 2, 'a 503 removes nothing either');
    assert.equal(t.client.state().sent, 0);
});

function recordBig(t, n) {
    for (let i = 0; i < n; i++) {
        t.client.record({ videoId: `video-${'x'.repeat(100)}-${i}`, position: i, sessionId: 's'.repeat(64) });
        t.clock.t += 1;
    }
}

test('flushOnExit keeps the body under the 64 KiB keepalive limit, newest positions first', () => {
    const fetch = fakeFetch();
    const t = setup({ fetch, client: { autoFlush: false, batchMax: 1000 } });
    recordBig(t, 1000);
    t.client.flushOnExit();
    const body = fetch.calls[0].init.body;
    assert.ok(body.length <= 60000, `body is ${body.length} bytes`);
    assert.ok(body.length > 50000, `the budget is used (${body.length} bytes)`);
    const positions = fetch.calls[0].body.map((e) => e.position);
    assert.equal(positions.at(-1), 999, 'the newest made it');
    assert.deepEqual(positions, [...positions].sort((a, b) => a - b), 'oldest first within the batch');
});

test('a second flushOnExit while the first is in flight stays within what is left of the 64 KiB', async () => {
    let release;
    const gate = new Promise((r) => (release = r));
    const fetch = fakeFetch(async () => {
        await gate;
        return 202;
    });
    const t = setup({ fetch, client: { autoFlush: false, batchMax: 1000 } });
    recordBig(t, 200); // ~52 KB, all in the first request
    assert.equal(t.client.flushOnExit(), true); // visibilitychange → hidden
    assert.equal(fetch.calls[0].body.length, 200);
    const first = fetch.calls[0].init.body.length;
    t.client.record({ videoId: 'last', position: 1 }); // the position recorded on pagehide
    assert.equal(t.client.flushOnExit(), true); // pagehide, the first still in flight
    const second = fetch.calls[1].init.body.length;
    assert.ok(first + second <= 60000, `in flight together: ${first} + ${second} bytes`);
    assert.ok(second > 60000 - first - 300, `and what was left is used: ${second} bytes`);
    assert.equal(fetch.calls[1].body.at(-1).video_id, 'last', 'the newest position is in it');
    release();
    await settle();
    // once the first is answered the budget is back
    t.client.record({ videoId: 'later', position: 2 });
    assert.equal(t.client.flushOnExit(), true);
    assert.ok(fetch.calls.at(-1).init.body.length <= 60000);
});

test('onChange reports the queue length and the last error for a status line', async () => {
    const seen = [];
    const fetch = fakeFetch(() => 503);
    const t = setup({ fetch, client: { onChange: (s) => seen.push(s) } });
    t.client.record({ videoId: 'v1', position: 1 });
    await t.clock.advance(0);
    const last = seen.at(-1);
    assert.equal(last.pending, 1);
    assert.equal(last.sending, false);
    assert.match(last.lastError, /503/);
    assert.ok(last.retryAt > t.clock.t);
});

test('a token is sent as Authorization: Bearer; without one no Authorization header is sent', async () => {
    for (const token of ['h.p.s', null]) {
        const t = setup({ client: { autoFlush: false, token } });
        t.client.record({ videoId: 'v1', position: 1 });
        await t.client.flush();
        assert.equal(t.fetch.calls.length, 1);
        const { headers } = t.fetch.calls[0].init;
        assert.equal(headers['Content-Type'], 'application/json');
        assert.equal(headers.Authorization, token ? `Bearer ${token}` : undefined);
        assert.ok(token || !('Authorization' in headers));
    }
});
