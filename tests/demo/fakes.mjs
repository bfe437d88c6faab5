// Fakes for the demo client's unit tests: a Storage, a scripted fetch and a manual clock with
// timers, so tests decide exactly when time passes and what the network answers.

/** An in-memory Storage (getItem/setItem/removeItem), optionally failing on writes. */
export class FakeStorage {
    constructor() {
        this.map = new Map();
        this.failWrites = false;
    }
    getItem(k) {
        return this.map.has(k) ? this.map.get(k) : null;
    }
    setItem(k, v) {
        if (this.failWrites) throw new Error('QuotaExceededError');
        this.map.set(k, String(v));
    }
    removeItem(k) {
        this.map.delete(k);
    }
}

/** A clock (`now()`) and setTimeout/clearTimeout that only move when `advance()` is called. */
export class FakeClock {
    constructor(start = 1_700_000_000_000) {
        this.t = start;
        this.timers = [];
        this.nextId = 1;
        this.now = () => this.t;
        this.setTimeout = (fn, ms = 0) => {
            const id = this.nextId++;
            this.timers.push({ id, at: this.t + Math.max(0, ms), fn });
            return id;
        };
        this.clearTimeout = (id) => {
            this.timers = this.timers.filter((x) => x.id !== id);
        };
    }
    /** Delays (from now) of the timers still pending, soonest first. */
    pending() {
        return this.timers.map((x) => x.at - this.t).sort((a, b) => a - b);
    }
    /** Move time forward by `ms`, firing due timers in order and letting promises settle. */
    async advance(ms) {
        const target = this.t + ms;
        for (;;) {
            await settle();
            this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
            const next = this.timers[0];
            if (!next || next.at > target) break;
            this.timers.shift();
            this.t = next.at;
            next.fn();
        }
        this.t = target;
        await settle();
    }
}

/** Let every pending promise chain run (fake fetches resolve on microtasks). */
export async function settle() {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

/**
 * A fetch whose answers come from `responder(call)`, which returns a Response, a status number,
 * or throws (a network error). Every call is kept in `.calls` with its parsed body.
 */
export function fakeFetch(responder = () => 202) {
    const calls = [];
    async function fetch(url, init = {}) {
        const call = { url, init, body: JSON.parse(init.body), n: calls.length };
        calls.push(call);
        const r = await responder(call);
        if (typeof r === 'number') return json(r, r === 202 ? { accepted: call.body.length } : {});
        return r;
    }
    fetch.calls = calls;
    return fetch;
}

/** A JSON Response with optional headers. */
export function json(status, body, headers = {}) {
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } });
}
