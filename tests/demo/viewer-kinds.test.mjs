// Unit tests for the viewer kinds of demo/playhead.js (hide, watched, unwatched, erase,
// erase_user): queued like positions, and coalesced only where the backend would ignore the
// dropped event (last-writer-wins registers per (user, video); erases drop every older event).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, VIEWER_KINDS } from '../../demo/playhead.js';
import { FakeClock, FakeStorage, fakeFetch } from './fakes.mjs';

function setup(opts = {}) {
    const clock = new FakeClock();
    const storage = opts.storage || new FakeStorage();
    const fetch = fakeFetch(opts.responder);
    const client = createClient({
        ingestUrl: 'http://ingest.test:8080',
        userId: 'alice',
        storage,
        fetch,
        now: clock.now,
        timers: clock,
        random: () => 0.5,
        flushDelayMs: 0,
        ...opts.client,
    });
    return { client, clock, storage, fetch };
}

/** The queue as [kind, video_id, ts offset] rows, for readable assertions. */
const rows = (t, t0) => t.client.queued().map((e) => [e.kind || 'position', e.video_id ?? null, e.ts - t0]);

test('each viewer kind is queued with the click time as ts, and sent to POST /v1/positions', async () => {
    const t = setup({ client: { autoFlush: false } });
    const t0 = t.clock.t;
    t.client.hide('v1');
    t.clock.t += 1;
    t.client.markWatched('v2');
    t.clock.t += 1;
    t.client.markUnwatched('v3');
    t.clock.t += 1;
    t.client.erase('v4');
    assert.deepEqual(t.client.queued()[0], { user_id: 'alice', kind: 'hide', ts: t0, video_id: 'v1' });
    assert.deepEqual(rows(t, t0), [
        ['hide', 'v1', 0],
        ['watched', 'v2', 1],
        ['unwatched', 'v3', 2],
        ['erase', 'v4', 3],
    ]);
    const r = await t.client.flush();
    assert.deepEqual(r, { sent: 4, dropped: 0, pending: 0, error: null });
    assert.equal(t.fetch.calls.length, 1, 'one batch');
    assert.equal(t.fetch.calls[0].url, 'http://ingest.test:8080/v1/positions');
    assert.deepEqual(
        t.fetch.calls[0].body.map((e) => e.kind),
        ['hide', 'watched', 'unwatched', 'erase'],
    );
    for (const e of t.fetch.calls[0].body) assert.equal('position' in e, false, 'no position on a viewer kind');
});

test('erase_user carries no video_id; kinds and ids are validated', () => {
    const t = setup({ client: { autoFlush: false } });
    const ev = t.client.eraseUser();
    assert.deepEqual(ev, { user_id: 'alice', kind: 'erase_user', ts: t.clock.t });
    assert.deepEqual(VIEWER_KINDS, ['hide', 'watched', 'unwatched', 'erase', 'erase_user']);
    assert.throws(() => t.client.mark('delete', 'v1'), TypeError);
    assert.throws(() => t.client.mark('position', 'v1'), TypeError, 'positions go through record()');
    assert.throws(() => t.client.hide('bad id'), TypeError);
    assert.throws(() => t.client.erase(), TypeError);
    assert.throws(() => t.client.record({ videoId: 'e1', position: 1, nextVideoId: 'e2' }), TypeError, 'next needs a series');
    assert.throws(() => t.client.record({ videoId: 'e1', position: 1, seriesId: 'bad id' }), TypeError);
    assert.equal(t.client.pending(), 1);
});

test('record sends series_id and next_video_id', () => {
    const t = setup({ client: { autoFlush: false } });
    const ev = t.client.record({ videoId: 's1e1', position: 5, duration: 30, seriesId: 's1', nextVideoId: 's1e2' });
    assert.equal(ev.series_id, 's1');
    assert.equal(ev.next_video_id, 's1e2');
    assert.deepEqual(t.client.queued(), [ev]);
    t.clock.t += 1;
    const w = t.client.markWatched('s1e1', { seriesId: 's1', nextVideoId: 's1e2' });
    assert.deepEqual(w, { user_id: 'alice', kind: 'watched', ts: t.clock.t, video_id: 's1e1', series_id: 's1', next_video_id: 's1e2' });
    assert.deepEqual(t.client.queued(), [w], 'watched replaced the older position (one content register)');
    assert.throws(() => t.client.markWatched('s1e1', { nextVideoId: 's1e2' }), TypeError);
});

test('a position after a hide of the same video keeps the hide (separate registers)', () => {
    const t = setup({ client: { autoFlush: false } });
    const t0 = t.clock.t;
    t.client.record({ videoId: 'v1', position: 10 });
    t.clock.t += 1;
    t.client.hide('v1');
    t.clock.t += 1;
    t.client.record({ videoId: 'v1', position: 12 });
    t.clock.t += 1;
    t.client.hide('v1'); // newer hide replaces the older one
    assert.deepEqual(rows(t, t0), [
        ['position', 'v1', 2],
        ['hide', 'v1', 3],
    ]);
});

test('watched, unwatched and positions share one register: only the newest is kept', () => {
    const t = setup({ client: { autoFlush: false } });
    const t0 = t.clock.t;
    t.client.record({ videoId: 'v1', position: 10 });
    t.clock.t += 1;
    t.client.markWatched('v1');
    assert.deepEqual(rows(t, t0), [['watched', 'v1', 1]]);
    t.clock.t += 1;
    t.client.markUnwatched('v1');
    assert.deepEqual(rows(t, t0), [['unwatched', 'v1', 2]]);
    t.clock.t += 1;
    t.client.record({ videoId: 'v1', position: 3 });
    assert.deepEqual(rows(t, t0), [['position', 'v1', 3]]);
});

test('an erase drops the older queued events of its video only; a newer event is kept after it', () => {
    const t = setup({ client: { autoFlush: false } });
    const t0 = t.clock.t;
    t.client.record({ videoId: 'v1', position: 10 });
    t.client.record({ videoId: 'v2', position: 20 });
    t.clock.t += 1;
    t.client.hide('v1');
    t.clock.t += 1;
    t.client.erase('v1');
    assert.deepEqual(rows(t, t0), [
        ['position', 'v2', 0],
        ['erase', 'v1', 2],
    ]);
    t.clock.t += 1;
    t.client.record({ videoId: 'v1', position: 1 }); // starts afresh: newer than the erase
    assert.deepEqual(rows(t, t0), [
        ['position', 'v2', 0],
        ['erase', 'v1', 2],
        ['position', 'v1', 3],
    ]);
});

test('an event older than a queued erase (another tab, slower clock) is not queued', () => {
    const storage = new FakeStorage();
    const a = setup({ storage, client: { autoFlush: false } });
    const b = setup({ storage, client: { autoFlush: false } });
    b.clock.t = a.clock.t - 5000;
    a.client.erase('v1');
    b.client.record({ videoId: 'v1', position: 40 });
    b.client.hide('v1');
    assert.deepEqual(
        a.client.queued().map((e) => e.kind),
        ['erase'],
    );
    a.client.eraseUser();
    b.client.record({ videoId: 'v9', position: 1 });
    assert.deepEqual(
        a.client.queued().map((e) => e.kind),
        ['erase_user'],
        'erase_user covered the erase of v1 (same ts) and the older v9',
    );
});

test('erase_user drops everything older queued for the user; later events queue after it', async () => {
    const t = setup({ client: { autoFlush: false } });
    const t0 = t.clock.t;
    t.client.record({ videoId: 'v1', position: 10 });
    t.client.markWatched('v2');
    t.client.hide('v3');
    t.clock.t += 1;
    t.client.eraseUser();
    assert.deepEqual(rows(t, t0), [['erase_user', null, 1]]);
    t.clock.t += 1;
    t.client.record({ videoId: 'v1', position: 2 });
    assert.deepEqual(rows(t, t0), [
        ['erase_user', null, 1],
        ['position', 'v1', 2],
    ]);
    const r = await t.client.flush();
    assert.equal(r.sent, 2);
    assert.deepEqual(
        t.fetch.calls[0].body.map((e) => e.kind ?? 'position'),
        ['erase_user', 'position'],
        'the erase goes first, so a newer position is never sent before it',
    );
});

test('an erase queued while an older position is in flight does not bring it back on 2xx', async () => {
    let release;
    const t = setup({ responder: (call) => (call.n === 0 ? new Promise((r) => (release = r)) : 202) });
    t.client.record({ videoId: 'v1', position: 10 });
    const flushing = t.client.flush();
    await t.clock.advance(0);
    t.clock.t += 1;
    t.client.erase('v1');
    assert.deepEqual(
        t.client.queued().map((e) => e.kind),
        ['erase'],
        'the in-flight position is covered by the erase',
    );
    release(202);
    const r = await flushing;
    assert.equal(r.pending, 0);
    assert.deepEqual(
        t.fetch.calls.map((c) => c.body.map((e) => e.kind ?? 'position')),
        [['position'], ['erase']],
        'the erase went out right after',
    );
});

test('a queue stored by the previous version (positions without kind) still loads and sends', async () => {
    const storage = new FakeStorage();
    storage.setItem('playhead.queue.v1.alice', JSON.stringify({ v: 1, events: [{ user_id: 'alice', video_id: 'v1', position: 3, ts: 1 }] }));
    const t = setup({ storage, client: { autoFlush: false } });
    assert.equal(t.client.pending(), 1);
    t.client.hide('v1');
    assert.equal(t.client.pending(), 2, 'the old position and the hide are different registers');
});
