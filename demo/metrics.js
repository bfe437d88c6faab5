/**
 * metrics.js — just enough of the Prometheus text format for the demo dashboard.
 *
 * The three services expose `GET /metrics` (text format 0.0.4). The dashboard scrapes them every
 * second and derives what it charts from two consecutive scrapes: counter rates, and latency
 * quantiles from the delta of a cumulative histogram (what PromQL's
 * `histogram_quantile(q, rate(x_bucket[1s]))` does). Tolerant by design: unknown lines, comments
 * and malformed samples are skipped, and a metric that is absent yields null, which the
 * dashboard shows as "n/a".
 *
 * @module metrics
 */

/**
 * @typedef {Object} Sample
 * @property {string} name
 * @property {Object<string, string>} labels
 * @property {number} value
 */

/**
 * Parse Prometheus text exposition into samples, grouped by metric name.
 * @param {string} text
 * @returns {Map<string, Sample[]>}
 */
export function parsePrometheus(text) {
    const out = new Map();
    for (const raw of String(text ?? '').split('\n')) {
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) continue;
        const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
        if (!m) continue;
        const labels = m[2] ? parseLabels(m[2]) : {};
        if (labels === null) continue;
        const value = parseValue(m[3]);
        if (value === null) continue;
        if (!out.has(m[1])) out.set(m[1], []);
        out.get(m[1]).push({ name: m[1], labels, value });
    }
    return out;
}

/** `{a="x",b="y\"z"}` → {a: 'x', b: 'y"z'}, or null if malformed. */
function parseLabels(src) {
    const labels = {};
    const re = /\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})/y;
    let i = 1;
    if (src.trim() === '{}') return labels;
    while (i < src.length) {
        re.lastIndex = i;
        const m = re.exec(src);
        if (!m) return null;
        labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        i = re.lastIndex;
        if (m[3] === '}') return i === src.length ? labels : null;
    }
    return null;
}

function parseValue(s) {
    if (s === '+Inf' || s === 'Inf') return Infinity;
    if (s === '-Inf') return -Infinity;
    if (s === 'NaN') return NaN;
    const v = Number(s);
    return Number.isNaN(v) ? null : v;
}

/**
 * The sum of a metric's samples whose labels match `match` (all given labels equal), or null
 * when there is no such sample — e.g. consumer lag summed over partitions.
 * @param {Map<string, Sample[]>|null} metrics
 * @param {string} name
 * @param {Object<string,string>} [match]
 * @returns {number|null}
 */
export function sumOf(metrics, name, match = {}) {
    const samples = metrics?.get(name);
    if (!samples) return null;
    let sum = null;
    for (const s of samples) {
        if (!matches(s.labels, match)) continue;
        sum = (sum ?? 0) + s.value;
    }
    return sum;
}

function matches(labels, match) {
    return Object.entries(match).every(([k, v]) => labels[k] === v);
}

/**
 * Per-second rate of a counter between two scrapes `dtSeconds` apart. A counter that went down
 * was reset (the service restarted): count from zero. Null if either value is missing.
 * @param {number|null} curr
 * @param {number|null} prev
 * @param {number} dtSeconds
 * @returns {number|null}
 */
export function rate(curr, prev, dtSeconds) {
    if (curr == null || prev == null || !(dtSeconds > 0)) return null;
    const delta = curr >= prev ? curr - prev : curr;
    return delta / dtSeconds;
}

/**
 * A histogram's cumulative buckets, as [[le, count], ...] sorted by le (le = +Inf last).
 * @param {Map<string, Sample[]>|null} metrics
 * @param {string} name  the histogram's base name (without `_bucket`)
 * @param {Object<string,string>} [match]  labels the series must have (e.g. {route: '/v1/positions'})
 * @returns {Array<[number, number]>|null}
 */
export function buckets(metrics, name, match = {}) {
    const samples = metrics?.get(`${name}_bucket`);
    if (!samples) return null;
    const byLe = new Map();
    for (const s of samples) {
        if (!matches(s.labels, match) || s.labels.le === undefined) continue;
        const le = parseValue(s.labels.le);
        if (le === null || Number.isNaN(le)) continue;
        byLe.set(le, (byLe.get(le) ?? 0) + s.value); // several series (methods, codes): add them up
    }
    if (byLe.size === 0) return null;
    return [...byLe.entries()].sort((a, b) => a[0] - b[0]);
}

/**
 * The q-quantile (0..1) of the observations made between two scrapes of a cumulative
 * histogram, interpolating linearly inside the bucket like Prometheus' histogram_quantile.
 * Returns null when either scrape lacks the histogram or nothing was observed in between;
 * a quantile that falls in the +Inf bucket is reported as the largest finite bound.
 * @param {number} q
 * @param {Array<[number, number]>|null} curr
 * @param {Array<[number, number]>|null} prev  null: use curr as is (since the service started)
 * @returns {number|null}
 */
export function quantile(q, curr, prev) {
    if (!curr) return null;
    const prevBy = new Map(prev || []);
    let reset = false;
    const delta = curr.map(([le, c]) => {
        const d = c - (prevBy.get(le) ?? 0);
        if (d < 0) reset = true;
        return [le, d];
    });
    const counts = reset ? curr : delta; // restarted: the current histogram is all new
    const total = counts.at(-1)[1];
    if (!(total > 0)) return null;
    const rank = q * total;
    let lowerBound = 0;
    let lowerCount = 0;
    for (const [le, c] of counts) {
        if (c >= rank) {
            if (le === Infinity) return lowerBound; // can't interpolate into +Inf
            if (c === lowerCount) return le;
            return lowerBound + (le - lowerBound) * ((rank - lowerCount) / (c - lowerCount));
        }
        lowerBound = le;
        lowerCount = c;
    }
    return lowerBound;
}
