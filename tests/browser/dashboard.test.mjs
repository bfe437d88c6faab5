// (d) The dashboard, scraping the three services' /metrics, shows non-zero figures while a
// player and ten synthetic viewers (20 events/s straight to ingest) run: events accepted/s from
// ingest and Redis keys from the api (averaged over the dashboard's window), and events
// applied/s from the consumer when its metrics listener answers (until the consumer has one, the
// dashboard shows n/a there and this test says so).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { API, INGEST, launch, openPlayer, playUntil, screenshot, user, waitFor, watch } from './lib.mjs';

let browser;
before(async () => {
    browser = await launch();
});
after(async () => {
    await browser?.close();
});

test('the dashboard shows non-zero figures while viewers play', async () => {
    const u = user('dashboard');
    const ctx = await browser.newContext();
    const traffic = { stop: false, requests: 0, failures: [] };
    let load = null;
    try {
        const player = await openPlayer(ctx, u);
        await playUntil(player, 1);

        // other viewers meanwhile (20 events/s from 10 users), so the charts have some shape
        const viewers = Array.from({ length: 10 }, (_, i) => ({ u: user(`viewer${i}`), at: 60 * i }));
        load = (async () => {
            while (!traffic.stop) {
                const started = Date.now();
                const events = viewers.map((v) => ({ user_id: v.u, video_id: 'clock', position: (v.at += 0.5) % 90, duration: 90, ts: Date.now() }));
                try {
                    const r = await fetch(`${INGEST}/v1/positions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(events) });
                    if (r.status !== 202) traffic.failures.push(`HTTP ${r.status}`);
                } catch (e) {
                    traffic.failures.push(e.message);
                }
                traffic.requests++;
                await new Promise((r) => setTimeout(r, Math.max(0, 500 - (Date.now() - started))));
            }
        })();

        const dash = await ctx.newPage();
        const log = watch(dash);
        await dash.goto(`${API}/dashboard`);
        assert.match(dash.url(), /\/demo\/dashboard\.html$/, '/dashboard redirects to the dashboard page');
        const tiles = () => dash.$$eval('.tile', (ts) => ts.map((t) => `${t.querySelector('.label').textContent}: ${t.querySelector('.value').textContent}`));
        const value = (id) => dash.evaluate((id) => Number(document.getElementById(id).dataset.value || 0), id);
        // Does the consumer export metrics (the dashboard's config says where)? Asked from node,
        // without CORS: whether the browser may read them is what the dashboard test checks.
        const config = await (await fetch(`${API}/demo-config.json`)).json();
        const consumerUrl = new URL('/metrics', config.consumer_metrics_url).href;
        const consumerDown = await fetch(consumerUrl).then(
            (r) => (r.ok ? null : `HTTP ${r.status}`),
            (e) => e.cause?.code || e.message,
        );
        const consumerUp = consumerDown === null;
        if (!consumerUp) console.log(`consumer metrics: ${consumerUrl} does not answer (${consumerDown}): applied/s not checked until the consumer exports /metrics`);

        // the tiles average 10 s: a rate shows within a few scrapes
        const figures = await waitFor(async () => {
            const accepted = await value('v-accepted');
            const applied = await value('v-applied');
            const keys = await value('v-keys');
            return accepted > 0 && keys > 0 && (applied > 0 || !consumerUp) && { accepted, applied, keys };
        }, 30000, `non-zero accepted/s, Redis keys${consumerUp ? ' and applied/s' : ''} on the dashboard`).catch(async (e) => {
            e.message += `\ndashboard: ${(await tiles()).join(' | ')}\nsources: ${await dash.textContent('#sources')}\n${log.join('\n')}`;
            throw e;
        });
        // ten seconds of history, so the charts (and the screenshot) show a curve, not a point
        const chart = (key) => dash.evaluate((key) => window.playheadDashboard.series[key].filter((v) => v > 0).length, key);
        await waitFor(async () => (await chart('accepted')) >= 10, 30000, 'ten non-zero points in the events/s chart');
        const sources = await dash.textContent('#sources');
        console.log(`dashboard: ${(await tiles()).join(' | ')} — ${sources}`);
        assert.ok(figures.accepted > 0 && figures.keys > 0);
        assert.match(sources, /ingest ✓/, `ingest's /metrics answers the page (CORS): ${sources}`);
        assert.match(sources, /api ✓/, `the api's /metrics answers: ${sources}`);
        if (consumerUp) {
            assert.ok(figures.applied > 0, 'applied/s from the consumer');
            assert.match(sources, /consumer ✓/, `the consumer's /metrics answers the page (CORS for the demo origin): ${sources}`);
        } else {
            assert.equal(await dash.textContent('#v-applied'), 'n/a', 'no consumer metrics: applied/s shows n/a');
        }
        assert.ok((await chart('keys')) > 0, 'the Redis keys chart has non-zero points');
        assert.equal(await dash.evaluate(() => typeof window.uPlot), 'function', 'uPlot is vendored (npm run vendor in demo/)');
        await screenshot(dash, 'd-dashboard');
        traffic.stop = true;
        await load;
        assert.deepEqual(traffic.failures, [], `every POST of the other viewers got 202 (${traffic.requests} requests)`);
    } finally {
        traffic.stop = true;
        await load;
        await ctx.close();
    }
});
