/*
 * dashboard.js — scrapes the three services' /metrics every second and charts them with uPlot.
 *
 * Sources (from /demo-config.json): ingest `<ingest_url>/metrics`, consumer
 * `<consumer_metrics_url>/metrics`, api `<api_url or this origin>/metrics`. Each scrape is parsed
 * by metrics.js; per-second values come from the difference with the previous scrape (counter
 * rates; p50/p99 from histogram bucket deltas), the tiles from the difference over the last
 * WINDOW_S seconds so a player recording every 5 s still shows a steady rate. A source that is
 * down, or a metric it does not export, shows as "n/a" and a gap in its chart.
 */
import { buckets, parsePrometheus, quantile, rate, sumOf } from './metrics.js';

const HISTORY = 120; // points per chart (seconds)
const SCRAPE_TIMEOUT_MS = 900;
const params = new URLSearchParams(location.search);
const WINDOW_S = Math.max(1, Number(params.get('window')) || 10);
const LATENCY = 'playhead_http_request_duration_seconds';
const ROUTE = { route: '/v1/positions' };

const $ = (id) => document.getElementById(id);
const state = {
    sources: [],
    snapshots: [], // {t: seconds, ingest, consumer, api}, newest last, WINDOW_S + 1 kept
    series: { t: [], accepted: [], applied: [], lag: [], spool: [], p50: [], p99: [], keys: [] },
    latest: {}, // what the tiles show (numbers or null), for tests
    charts: {},
};
window.playheadDashboard = state;

async function loadConfig() {
    const cfg = { ingest_url: `${location.protocol}//${location.hostname}:8080`, api_url: '', consumer_metrics_url: `${location.protocol}//${location.hostname}:9464` };
    try {
        const r = await fetch('/demo-config.json', { cache: 'no-store' });
        if (r.ok) Object.assign(cfg, await r.json());
    } catch {}
    for (const k of ['ingest_url', 'api_url', 'consumer_metrics_url']) if (params.get(k)) cfg[k] = params.get(k);
    return cfg;
}

async function scrape(source) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), SCRAPE_TIMEOUT_MS);
    const t0 = performance.now();
    try {
        const r = await fetch(source.url, { cache: 'no-store', signal: ac.signal });
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const metrics = parsePrometheus(await r.text());
        Object.assign(source, { up: true, error: null, ms: Math.round(performance.now() - t0) });
        return metrics;
    } catch (e) {
        Object.assign(source, { up: false, error: e.name === 'AbortError' ? 'timeout' : e.message, ms: null });
        return null;
    } finally {
        clearTimeout(timer);
    }
}

/** Everything charted, between two snapshots (a and b, a older). */
function derive(a, b) {
    const dt = b.t - a.t;
    const q = (x) => {
        const now = buckets(b.ingest, LATENCY, ROUTE);
        if (!now) return null;
        const v = quantile(x, now, buckets(a.ingest, LATENCY, ROUTE));
        return v == null ? 'idle' : v * 1000;
    };
    return {
        accepted: rate(sumOf(b.ingest, 'playhead_ingest_events_accepted_total'), sumOf(a.ingest, 'playhead_ingest_events_accepted_total'), dt),
        applied: rate(sumOf(b.consumer, 'playhead_consumer_events_applied_total'), sumOf(a.consumer, 'playhead_consumer_events_applied_total'), dt),
        lag: sumOf(b.consumer, 'playhead_consumer_lag'),
        spool: sumOf(b.ingest, 'playhead_spool_records'),
        p50: q(0.5),
        p99: q(0.99),
        keys: sumOf(b.api, 'playhead_redis_keys'),
    };
}

async function tick() {
    const [ingest, consumer, api] = await Promise.all(state.sources.map(scrape));
    const snap = { t: Date.now() / 1000, ingest, consumer, api };
    const snaps = state.snapshots;
    snaps.push(snap);
    while (snaps.length > WINDOW_S + 1) snaps.shift();
    renderSources();
    if (snaps.length < 2) return;

    const now = derive(snaps.at(-2), snap);
    const s = state.series;
    s.t.push(snap.t);
    for (const k of Object.keys(now)) s[k].push(typeof now[k] === 'number' ? now[k] : null);
    for (const k of Object.keys(s)) while (s[k].length > HISTORY) s[k].shift();

    const avg = derive(snaps[0], snap); // tiles: over the window
    state.latest = avg;
    tile('v-accepted', avg.accepted, (v) => v.toFixed(v < 10 ? 2 : 0));
    tile('v-applied', avg.applied, (v) => v.toFixed(v < 10 ? 2 : 0));
    tile('v-lag', avg.lag, (v) => String(Math.round(v)));
    tile('v-spool', avg.spool, (v) => String(Math.round(v)));
    tile('v-p50', avg.p50, ms);
    tile('v-p99', avg.p99, ms);
    tile('v-keys', avg.keys, (v) => String(Math.round(v)));
    drawCharts();
}

function ms(v) {
    return v < 1 ? `${(v * 1000).toFixed(0)} µs` : v < 100 ? `${v.toFixed(1)} ms` : `${v.toFixed(0)} ms`;
}

function tile(id, v, fmt) {
    const e = $(id);
    const missing = v == null;
    e.textContent = missing ? 'n/a' : v === 'idle' ? 'idle' : fmt(v);
    e.classList.toggle('na', missing || v === 'idle');
    e.dataset.value = typeof v === 'number' ? String(v) : '';
}

function renderSources() {
    $('sources').replaceChildren(
        ...state.sources.flatMap((s, i) => [
            i ? ' · ' : '',
            Object.assign(document.createElement('span'), {
                className: s.up ? 'up' : 'down',
                textContent: `${s.name} ${s.up ? `✓ ${s.ms} ms` : `✗ ${s.error}`}`,
                title: s.url,
            }),
        ]),
    );
}

// ---- charts -------------------------------------------------------------------------------

const COLORS = { accepted: '#4cc9f0', applied: '#2ecc71', lag: '#f4a261', spool: '#e9c46a', p50: '#4cc9f0', p99: '#e63946', keys: '#b392f0' };

function makeChart(id, series) {
    const host = $(id);
    const opts = {
        width: Math.max(300, host.clientWidth || 400),
        height: 170,
        legend: { show: true },
        cursor: { show: true },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [
            { stroke: '#8b9bab', grid: { stroke: '#2a3947' }, ticks: { stroke: '#2a3947' } },
            { stroke: '#8b9bab', grid: { stroke: '#2a3947' }, ticks: { stroke: '#2a3947' }, size: 55 },
        ],
        series: [{}, ...series.map(([key, label]) => ({ label, stroke: COLORS[key], width: 2, spanGaps: false, value: (u, v) => (v == null ? '–' : +v.toFixed(2)) }))],
    };
    const chart = new window.uPlot(opts, [[], ...series.map(() => [])], host);
    chart._keys = series.map(([k]) => k);
    return chart;
}

function setupCharts() {
    if (typeof window.uPlot !== 'function') {
        $('no-uplot').hidden = false;
        return;
    }
    state.charts = {
        rates: makeChart('c-rates', [
            ['accepted', 'accepted/s'],
            ['applied', 'applied/s'],
        ]),
        lag: makeChart('c-lag', [['lag', 'lag']]),
        spool: makeChart('c-spool', [['spool', 'records']]),
        latency: makeChart('c-latency', [
            ['p50', 'p50 ms'],
            ['p99', 'p99 ms'],
        ]),
        keys: makeChart('c-keys', [['keys', 'keys']]),
    };
    window.addEventListener('resize', () => {
        for (const [name, c] of Object.entries(state.charts)) c.setSize({ width: Math.max(300, $(`c-${name}`).clientWidth), height: 170 });
    });
}

function drawCharts() {
    const s = state.series;
    for (const c of Object.values(state.charts)) c.setData([s.t, ...c._keys.map((k) => s[k])]);
}

async function main() {
    const cfg = await loadConfig();
    const origin = cfg.api_url || location.origin;
    state.sources = [
        { name: 'ingest', url: new URL('/metrics', cfg.ingest_url).href },
        { name: 'consumer', url: new URL('/metrics', cfg.consumer_metrics_url).href },
        { name: 'api', url: new URL('/metrics', origin).href },
    ];
    $('window').textContent = String(WINDOW_S);
    setupCharts();
    // one scrape at a time: a slow source delays the next tick instead of piling requests up
    for (;;) {
        const started = Date.now();
        await tick().catch((e) => console.error('dashboard', e));
        await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (Date.now() - started))));
    }
}

main();
