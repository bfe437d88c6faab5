/**
 * playhead.js — the offline-first "continue watching" client for any HTML5 player.
 *
 * A player calls `record()` with the playhead position as often as it likes, and `hide()`,
 * `markWatched()`, `markUnwatched()`, `erase()` or `eraseUser()` when the viewer shapes their
 * history; the client keeps a durable queue in `localStorage` (one key per user), coalesced per
 * video so it holds only the newest event of each kind that still matters, and delivers it to
 * playhead-ingest (`POST /v1/positions`, the `kind` field telling them apart) in batches. Nothing is removed from the queue until ingest answered 2xx for it, so a closed tab, a
 * reload, a network outage or a 503 storm never loses a position: the next page load (or the
 * retry timer) sends it. Because each event carries the time it was recorded (`ts`) and the
 * backend keeps the newest by `ts` (last-writer-wins), resending is always safe.
 *
 * Coalescing drops only what the backend would ignore anyway (its registers per (user, video)):
 *  - content (`position`, `watched`, `unwatched`): one register, the newest by ts wins, so only
 *    the newest queued content event of a video is kept;
 *  - `hide`: its own register (max ts), kept beside the content event — a position after a hide
 *    does not replace the hide, the backend decides by ts which one shows;
 *  - `erase` of a video and `erase_user`: the backend drops every event with ts <= the erase,
 *    so a queued erase removes the older queued events it covers, and an event older than a
 *    queued erase is not queued at all.
 *
 * Delivery rules:
 *  - 2xx: the sent events leave the queue (unless a newer position of that video was recorded
 *    meanwhile: that one stays and goes next).
 *  - 400 `{"index": i}`: event i is invalid and can never be accepted — it is dropped, the rest
 *    of the batch is sent again at once. A 400 without a usable index splits the batch to find it.
 *  - 413: the batch is split in halves and sent again at once (a single event that is still too
 *    large is dropped).
 *  - network error, timeout, 408, 429, 5xx and any other status: retry with capped exponential
 *    backoff and full jitter (`random() * min(maxBackoffMs, baseBackoffMs * 2^attempt)`), and
 *    never sooner than the response's `Retry-After` (seconds or an HTTP date).
 *
 * Every request is `Content-Type: application/json` (ingest answers 415 to anything else), so a
 * page on another origin needs ingest's CORS preflight, and `navigator.sendBeacon` (which cannot
 * send JSON cross-origin) is never used: leaving the page uses a keepalive `fetch` instead.
 *
 * No dependencies; an ES module. Everything the client touches in the outside world (storage,
 * fetch, clock, randomness, timers) is injectable, which is how the unit tests in tests/demo/
 * drive it.
 *
 * @module playhead
 */

/** Ids accepted by playhead (user and video ids, session ids). */
export const ID_PATTERN = /^(?!\.\.?$)[A-Za-z0-9._:@-]{1,128}$/;

/** Largest position (seconds) the backend accepts. */
export const MAX_POSITION = 1e7;

/** The most events ingest takes in one request. */
export const MAX_BATCH = 1000;

/**
 * Browsers refuse a keepalive request once the bodies of the page's keepalive requests still in
 * flight would add up to over 64 KiB; stay well under, counting our own in-flight ones.
 */
const EXIT_BODY_MAX = 60000;

/** A flush never sends more than this many requests before yielding to the event loop. */
const REQUESTS_PER_FLUSH = 100;

/**
 * @typedef {Object} PositionEvent  One queued event, exactly as sent to `POST /v1/positions`.
 * @property {string} user_id
 * @property {string} [video_id]  every kind but `erase_user`
 * @property {string} [kind]      absent for a position; else one of VIEWER_KINDS
 * @property {number} [position]  seconds, 0..1e7, rounded to the millisecond (positions only)
 * @property {number} [duration]  seconds, when known and finite (positions only)
 * @property {number} ts          when it was recorded (the click time for the other kinds), ms since the epoch (integer)
 * @property {string} [session_id]
 * @property {string} [series_id]      positions: the series the video belongs to
 * @property {string} [next_video_id]  positions: the episode after it (needs series_id)
 */

/** The kinds a viewer queues beside positions (the `kind` field of an event). */
export const VIEWER_KINDS = ['hide', 'watched', 'unwatched', 'erase', 'erase_user'];

/** Coalescing slot of a kind: events in one slot of one video replace each other (newest ts wins). */
const SLOT = { position: 'content', watched: 'content', unwatched: 'content', hide: 'hide', erase: 'erase', erase_user: 'erase_user' };
const kindOf = (e) => e.kind || 'position';

/**
 * @typedef {Object} ClientState  What a status line shows; passed to `onChange` and returned by `state()`.
 * @property {number} pending          events waiting in the queue
 * @property {boolean} sending          a request is in flight
 * @property {number} attempt          consecutive failed attempts (0 when healthy)
 * @property {number|null} retryAt     when the next retry is due (ms epoch), if backing off
 * @property {string|null} lastError   the last delivery error, cleared by the next success
 * @property {string|null} lastDrop    the last event dropped as invalid, and why
 * @property {number|null} lastSentAt  when ingest last accepted events (ms epoch)
 * @property {number} sent             events accepted since the client was created
 * @property {number} dropped          events dropped as invalid (400/413) since then
 */

/**
 * @typedef {Object} FlushResult
 * @property {number} sent      events ingest accepted during this flush
 * @property {number} dropped   events dropped as invalid during this flush
 * @property {number} pending   events still queued afterwards
 * @property {string|null} error  why the flush stopped early (it will retry by itself), or null
 */

/**
 * Create a client for one user.
 *
 * @param {Object} options
 * @param {string} options.ingestUrl  base URL of playhead-ingest, e.g. "http://127.0.0.1:8080"
 * @param {string} options.userId     the user whose positions are recorded (1–128 of [A-Za-z0-9._:@-])
 * @param {string|null} [options.token=null]  a JWT sent as `Authorization: Bearer` (ingest in --auth=jwt
 *        mode); none in --auth=dev mode
 * @param {Storage} [options.storage=localStorage]  where the queue lives (getItem/setItem/removeItem);
 *        if it throws (quota, privacy mode) the queue lives in memory and `lastError` says so
 * @param {typeof fetch} [options.fetch=globalThis.fetch]
 * @param {() => number} [options.now=Date.now]
 * @param {() => number} [options.random=Math.random]  [0, 1), for backoff jitter
 * @param {number} [options.batchMax=100]        events per request (1..1000)
 * @param {number} [options.baseBackoffMs=1000]  first retry delay cap
 * @param {number} [options.maxBackoffMs=60000]  retry delay cap
 * @param {number} [options.flushDelayMs=200]    after `record()`, wait this long before sending,
 *        so a burst (seeking) becomes one request; the queue is already durable meanwhile
 * @param {boolean} [options.autoFlush=true]     send by itself after `record()` and on retry timers
 * @param {number} [options.requestTimeoutMs=15000]  abort a request that takes longer (then retry)
 * @param {{setTimeout: Function, clearTimeout: Function}} [options.timers=globalThis]
 * @param {(state: ClientState) => void} [options.onChange]  called after every change of `state()`
 * @returns {Client}
 */
export function createClient(options) {
    const {
        ingestUrl,
        userId,
        token = null,
        storage = globalThis.localStorage,
        fetch = globalThis.fetch?.bind(globalThis),
        now = Date.now,
        random = Math.random,
        batchMax = 100,
        baseBackoffMs = 1000,
        maxBackoffMs = 60000,
        flushDelayMs = 200,
        autoFlush = true,
        requestTimeoutMs = 15000,
        timers = globalThis,
        onChange = null,
    } = options || {};

    if (typeof ingestUrl !== 'string' || !/^https?:\/\//.test(ingestUrl))
        throw new TypeError(`playhead: ingestUrl must be an http(s) URL, got ${JSON.stringify(ingestUrl)}`);
    if (typeof userId !== 'string' || !ID_PATTERN.test(userId))
        throw new TypeError(`playhead: userId must be 1-128 of [A-Za-z0-9._:@-], got ${JSON.stringify(userId)}`);
    if (!Number.isInteger(batchMax) || batchMax < 1 || batchMax > MAX_BATCH)
        throw new RangeError(`playhead: batchMax must be an integer in 1..${MAX_BATCH}, got ${batchMax}`);
    if (!(maxBackoffMs > 0) || !(baseBackoffMs > 0))
        throw new RangeError('playhead: baseBackoffMs and maxBackoffMs must be > 0');
    if (typeof fetch !== 'function') throw new TypeError('playhead: no fetch available');

    const endpoint = ingestUrl.replace(/\/+$/, '') + '/v1/positions';
    const key = `playhead.queue.v1.${userId}`;

    let memory = null; // the queue, when storage is unusable
    let timer = null; // pending flush (retry or debounce)
    let timerDue = 0;
    let flushing = null; // the in-flight flush promise
    let attempt = 0;
    let retryAt = null; // backing off until then (ms epoch)
    let notBefore = 0; // Retry-After: no request before then, even a forced one
    let lastError = null;
    let lastDrop = null;
    let lastSentAt = null;
    let sent = 0;
    let dropped = 0;
    let closed = false;
    let exitBytesInFlight = 0; // bodies of flushOnExit requests not answered yet

    // ---- the durable queue --------------------------------------------------------------------
    // Every operation reads storage afresh and writes it back in the same task, so several tabs of
    // one user share one queue: whatever any of them recorded is sent by whichever flushes first.

    function load() {
        if (memory) return memory.slice();
        let raw;
        try {
            raw = storage.getItem(key);
        } catch (e) {
            memory = [];
            lastError = `storage unavailable (${e.message}); queue kept in memory`;
            return [];
        }
        if (!raw) return [];
        try {
            const doc = JSON.parse(raw);
            return Array.isArray(doc?.events) ? doc.events.filter(isEvent) : [];
        } catch {
            // Unreadable (hand-edited? another version?): keep it aside rather than overwrite it.
            try {
                storage.setItem(`${key}.corrupt`, raw);
            } catch {}
            return [];
        }
    }

    function save(events) {
        if (memory) {
            memory = events;
            return;
        }
        try {
            if (events.length) storage.setItem(key, JSON.stringify({ v: 1, events }));
            else storage.removeItem(key);
        } catch (e) {
            memory = events; // never drop what we could not persist
            lastError = `storage unavailable (${e.message}); queue kept in memory`;
        }
    }

    /**
     * Coalesce `ev` into the queue: one event per (video, slot), the newest by ts (a tie goes to
     * `ev`, the later call); an erase swallows the older events it covers. Only what the backend
     * would ignore is dropped (see the top of this file).
     */
    function insert(events, ev) {
        const covers = (erase, e) => e.ts <= erase.ts && (kindOf(erase) === 'erase_user' || (e.video_id === erase.video_id && kindOf(e) !== 'erase_user'));
        const erases = events.filter((e) => kindOf(e) === 'erase' || kindOf(e) === 'erase_user');
        if (erases.some((x) => covers(x, ev))) return events; // the backend would drop it (an equal erase is already queued)
        const slot = SLOT[kindOf(ev)];
        const i = events.findIndex((e) => e.video_id === ev.video_id && SLOT[kindOf(e)] === slot);
        if (i >= 0 && ev.ts < events[i].ts) return events; // older than the queued one (another tab's clock): keep newest
        if (i >= 0) events.splice(i, 1);
        if (slot === 'erase' || slot === 'erase_user') events = events.filter((e) => !covers(ev, e));
        events.push(ev);
        events.sort((a, b) => a.ts - b.ts); // oldest first: it has waited longest (stable: ties keep call order)
        return events;
    }

    /** Remove the events of `batch` still queued unchanged (a newer position of a video stays). */
    function remove(batch) {
        const events = load().filter((q) => !batch.some((b) => sameEvent(q, b)));
        save(events);
        return events;
    }

    // ---- state and scheduling -----------------------------------------------------------------

    function state() {
        return {
            pending: load().length,
            sending: flushing !== null,
            attempt,
            retryAt,
            lastError,
            lastDrop,
            lastSentAt,
            sent,
            dropped,
        };
    }

    function changed() {
        if (onChange) {
            try {
                onChange(state());
            } catch {}
        }
    }

    function schedule(delay) {
        if (closed || !autoFlush) return;
        const due = now() + delay;
        if (timer !== null) {
            if (timerDue <= due) return; // an earlier flush is already planned
            timers.clearTimeout(timer);
        }
        timerDue = due;
        timer = timers.setTimeout(() => {
            timer = null;
            flush();
        }, delay);
    }

    function cancelTimer() {
        if (timer !== null) timers.clearTimeout(timer);
        timer = null;
    }

    function backoff(reason, retryAfterMs) {
        attempt += 1;
        const cap = Math.min(maxBackoffMs, baseBackoffMs * 2 ** Math.min(attempt - 1, 52));
        let delay = random() * cap; // full jitter: spreads a herd of clients over the window
        if (retryAfterMs != null) {
            delay = Math.max(delay, retryAfterMs);
            notBefore = now() + retryAfterMs;
        }
        delay = Math.round(delay);
        lastError = reason;
        retryAt = now() + delay;
        cancelTimer();
        schedule(delay);
        return delay;
    }

    // ---- delivery -----------------------------------------------------------------------------

    async function post(batch, extra) {
        const init = {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}) },
            body: JSON.stringify(batch),
            ...extra,
        };
        let abort = null;
        if (!init.keepalive && typeof AbortController === 'function' && requestTimeoutMs > 0) {
            const ac = new AbortController();
            init.signal = ac.signal;
            abort = timers.setTimeout(() => ac.abort(), requestTimeoutMs);
        }
        try {
            return await fetch(endpoint, init);
        } finally {
            if (abort !== null) timers.clearTimeout(abort);
        }
    }

    async function run() {
        let limit = batchMax;
        const result = { sent: 0, dropped: 0, pending: 0, error: null };
        for (let requests = 0; ; requests++) {
            const queue = load();
            if (queue.length === 0) {
                attempt = 0;
                retryAt = null;
                lastError = memory ? lastError : null;
                break;
            }
            if (requests >= REQUESTS_PER_FLUSH) {
                schedule(0); // more to do; let the page breathe first
                break;
            }
            const batch = queue.slice(0, limit);
            let res;
            try {
                res = await post(batch);
            } catch (e) {
                const why = e?.name === 'AbortError' ? 'request timed out' : `network error: ${e?.message || e}`;
                result.error = why;
                backoff(why, null);
                break;
            }
            if (res.status >= 200 && res.status < 300) {
                remove(batch);
                result.sent += batch.length;
                sent += batch.length;
                lastSentAt = now();
                attempt = 0;
                retryAt = null;
                changed();
                continue;
            }
            if (res.status === 400) {
                const body = await readJson(res);
                let index = Number.isInteger(body?.index) ? body.index : -1;
                if (index < 0 && batch.length === 1) index = 0;
                if (index >= 0 && index < batch.length) {
                    remove([batch[index]]); // can never be accepted: resending would wedge the queue
                    result.dropped += 1;
                    dropped += 1;
                    lastDrop = `dropped invalid event for ${label(batch[index])}: ${body?.error || 'HTTP 400'}`;
                    changed();
                    continue;
                }
                limit = Math.max(1, Math.floor(batch.length / 2)); // find the bad one by halving
                continue;
            }
            if (res.status === 413) {
                if (batch.length === 1) {
                    remove(batch);
                    result.dropped += 1;
                    dropped += 1;
                    lastDrop = `dropped event for ${label(batch[0])}: too large (HTTP 413)`;
                    changed();
                    continue;
                }
                limit = Math.max(1, Math.floor(batch.length / 2));
                continue;
            }
            const why = `HTTP ${res.status}${res.status === 503 ? ' (ingest busy)' : ''}`;
            result.error = why;
            backoff(why, retryAfterMs(res.headers?.get?.('Retry-After'), now()));
            break;
        }
        result.pending = load().length;
        return result;
    }

    /**
     * Send the queue now, in batches, until it is empty or a request fails (then a retry is
     * scheduled by itself, and the promise still resolves). Joins a flush already in flight.
     * While backing off it sends nothing unless `force` is set (e.g. the browser came back
     * online); even then it waits out a server's Retry-After.
     * @param {{force?: boolean}} [opts]
     * @returns {Promise<FlushResult>}
     */
    function flush(opts = {}) {
        if (flushing) return flushing;
        const t = now();
        const blockedUntil = opts.force ? notBefore : Math.max(notBefore, retryAt ?? 0);
        if (t < blockedUntil) {
            schedule(blockedUntil - t);
            return Promise.resolve({ sent: 0, dropped: 0, pending: load().length, error: lastError });
        }
        cancelTimer();
        flushing = run().finally(() => {
            flushing = null;
            // something recorded during the last request, with no retry planned: send it too
            if (timer === null && retryAt === null && load().length) schedule(flushDelayMs);
            changed();
        });
        changed();
        return flushing;
    }

    /** Write `ev` to the durable queue and schedule a send; returns `ev`. */
    function enqueue(ev) {
        save(insert(load(), ev));
        if (retryAt === null) schedule(flushDelayMs);
        changed();
        return ev;
    }

    /**
     * Queue the position of a video (durably, before returning) and schedule a send.
     * @param {{videoId: string, position: number, duration?: number, sessionId?: string,
     *          seriesId?: string, nextVideoId?: string}} p  `seriesId`/`nextVideoId` let the
     *        backend show one card per series and, once this episode is finished, the next one
     * @returns {PositionEvent} the queued event
     * @throws {TypeError|RangeError} for an id or position the backend would reject
     */
    function record({ videoId, position, duration, sessionId, seriesId, nextVideoId } = {}) {
        checkId('videoId', videoId);
        checkSeries(seriesId, nextVideoId);
        if (typeof position !== 'number' || !Number.isFinite(position) || position < 0 || position > MAX_POSITION)
            throw new RangeError(`playhead: position must be a number in 0..${MAX_POSITION}, got ${position}`);
        if (sessionId != null) checkId('sessionId', sessionId);
        const ev = { user_id: userId, video_id: videoId, position: Math.round(position * 1000) / 1000, ts: Math.floor(now()) };
        // a <video> reports NaN before metadata and Infinity for live streams: not a duration
        if (typeof duration === 'number' && Number.isFinite(duration) && duration > 0 && duration <= MAX_POSITION)
            ev.duration = Math.round(duration * 1000) / 1000;
        if (sessionId != null) ev.session_id = sessionId;
        return enqueue(withSeries(ev, seriesId, nextVideoId));
    }

    /**
     * Queue a viewer's change to their history, stamped with the click time (`ts = now()`), exactly
     * like a position: durable before returning, batched, retried until ingest accepts it.
     * @param {'hide'|'watched'|'unwatched'|'erase'|'erase_user'} kind
     * @param {string} [videoId]  every kind but `erase_user`
     * @param {{seriesId?: string, nextVideoId?: string}} [series]  `watched`/`unwatched` of an
     *        episode: as for `record()`, so a title marked watched shows its next episode
     * @returns {PositionEvent} the queued event
     * @throws {TypeError} for an unknown kind or an invalid id
     */
    function mark(kind, videoId, { seriesId, nextVideoId } = {}) {
        if (!VIEWER_KINDS.includes(kind)) throw new TypeError(`playhead: kind must be one of ${VIEWER_KINDS.join(', ')}, got ${JSON.stringify(kind)}`);
        const ev = { user_id: userId, kind, ts: Math.floor(now()) };
        if (kind !== 'erase_user') {
            checkId('videoId', videoId);
            ev.video_id = videoId;
        }
        if (kind === 'watched' || kind === 'unwatched') {
            checkSeries(seriesId, nextVideoId);
            withSeries(ev, seriesId, nextVideoId);
        }
        return enqueue(ev);
    }

    /**
     * Last chance to deliver, for `pagehide` / `visibilitychange` (hidden): hands the newest
     * queued events to the browser as one `fetch(..., {keepalive: true})` with a JSON body, which
     * the browser completes (CORS preflight included) even after the page is gone. Synchronous.
     * The body is kept under 60 000 bytes, since browsers refuse keepalive bodies over 64 KiB;
     * what does not fit waits for the next page load. The events stay queued (the outcome may
     * never be known) and are removed only if the page lives to see a 2xx; otherwise the next
     * page load sends them again, which is harmless (last-writer-wins by ts).
     * @returns {boolean} true if a request was handed over
     */
    function flushOnExit() {
        const queue = load();
        if (queue.length === 0 || closed) return false;
        // pagehide often follows visibilitychange: the first request may still be in flight
        const budget = EXIT_BODY_MAX - exitBytesInFlight;
        const batch = [];
        let bytes = 2; // [] — ids and numbers are ASCII, so string length is the byte count
        for (const ev of queue.slice(-batchMax).reverse()) {
            // newest first: if it does not all fit, the latest positions matter most
            const size = JSON.stringify(ev).length + 1;
            if (bytes + size > budget) break;
            batch.push(ev);
            bytes += size;
        }
        if (batch.length === 0) return false;
        batch.reverse();
        exitBytesInFlight += bytes;
        post(batch, { keepalive: true })
            .then((res) => {
                if (res.status >= 200 && res.status < 300) {
                    remove(batch);
                    sent += batch.length;
                    lastSentAt = now();
                    changed();
                }
            })
            .catch(() => {}) // refused or failed: the events are still queued for the next page
            .finally(() => {
                exitBytesInFlight -= bytes;
            });
        return true;
    }

    /** @returns {number} how many events wait in the queue (all tabs of this user). */
    function pending() {
        return load().length;
    }

    /** Stop timers (the queue stays in storage for the next client). */
    function close() {
        closed = true;
        cancelTimer();
    }

    // A queue left by an earlier page (closed tab, crash, outage) goes out straight away.
    if (load().length) schedule(0);

    /**
     * @typedef {Object} Client
     * @property {typeof record} record
     * @property {(videoId: string) => PositionEvent} hide  remove the title from the row (the position is kept)
     * @property {(videoId: string, series?: Object) => PositionEvent} markWatched  finished: leaves the row
     * @property {(videoId: string, series?: Object) => PositionEvent} markUnwatched  position 0, not finished, not in the row
     * @property {(videoId: string) => PositionEvent} erase  forget the title for good (older events stay dropped)
     * @property {() => PositionEvent} eraseUser  forget everything of this user for good
     * @property {typeof mark} mark
     * @property {typeof flush} flush
     * @property {typeof flushOnExit} flushOnExit
     * @property {typeof pending} pending
     * @property {() => ClientState} state
     * @property {() => PositionEvent[]} queued  a copy of the queue, oldest first
     * @property {typeof close} close
     */
    return {
        record,
        mark,
        hide: (videoId) => mark('hide', videoId),
        markWatched: (videoId, series) => mark('watched', videoId, series),
        markUnwatched: (videoId, series) => mark('unwatched', videoId, series),
        erase: (videoId) => mark('erase', videoId),
        eraseUser: () => mark('erase_user'),
        flush,
        flushOnExit,
        pending,
        state,
        queued: load,
        close,
        endpoint,
        storageKey: key,
    };
}

/**
 * Parse a Retry-After header: delay-seconds or an HTTP date. Returns ms (>= 0) or null.
 * @param {string|null|undefined} value
 * @param {number} nowMs
 */
export function retryAfterMs(value, nowMs) {
    if (value == null) return null;
    const v = String(value).trim();
    if (/^\d+$/.test(v)) return Number(v) * 1000;
    if (!/[a-z]/i.test(v)) return null; // Date.parse('-5') is a year; an HTTP date has a weekday
    const when = Date.parse(v);
    return Number.isNaN(when) ? null : Math.max(0, when - nowMs);
}

/** What a drop message names: the video (and the kind, unless a position), or the user. */
function label(e) {
    return `${e.video_id ?? e.user_id}${e.kind ? ` (${e.kind})` : ''}`;
}

function checkId(name, v) {
    if (typeof v !== 'string' || !ID_PATTERN.test(v)) throw new TypeError(`playhead: ${name} must be 1-128 of [A-Za-z0-9._:@-], got ${JSON.stringify(v)}`);
}

function checkSeries(seriesId, nextVideoId) {
    if (seriesId != null) checkId('seriesId', seriesId);
    if (nextVideoId != null) checkId('nextVideoId', nextVideoId);
    if (nextVideoId != null && seriesId == null) throw new TypeError('playhead: nextVideoId needs a seriesId');
}

function withSeries(ev, seriesId, nextVideoId) {
    if (seriesId != null) ev.series_id = seriesId;
    if (nextVideoId != null) ev.next_video_id = nextVideoId;
    return ev;
}

function isEvent(e) {
    if (!e || typeof e.ts !== 'number' || !(kindOf(e) in SLOT)) return false;
    if (kindOf(e) === 'erase_user') return true;
    return typeof e.video_id === 'string' && (kindOf(e) !== 'position' || typeof e.position === 'number');
}

function sameEvent(a, b) {
    return kindOf(a) === kindOf(b) && a.video_id === b.video_id && a.ts === b.ts && a.position === b.position && a.session_id === b.session_id;
}

async function readJson(res) {
    try {
        return await res.json();
    } catch {
        return null;
    }
}
