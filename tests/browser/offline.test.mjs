// (b) Offline-first: while every request to ingest fails, the player keeps recording into its
// durable queue (surviving a reload); when ingest is reachable again every queued position
// reaches the API, and the newest position wins even when it came from another device.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { INGEST, launch, openPlayer, position, screenshot, seekTo, user, videoState, waitFor } from './lib.mjs';

let browser;
before(async () => {
    browser = await launch();
});
after(async () => {
    await browser?.close();
});

const near = (a, b, eps = 0.01) => Math.abs(a - b) <= eps;

test('positions recorded while ingest is unreachable all arrive once it is back; newest wins', async () => {
    const u = user('offline');
    const ctx = await browser.newContext();
    try {
        // a short retry cap keeps the deadline after "ingest is back" small; backoff itself is unit-tested
        const extra = '&max_backoff_ms=4000';
        // paused (autoplay=0): nothing is recorded before ingest is cut
        let page = await openPlayer(ctx, u, { extra: `${extra}&autoplay=0` });

        let aborted = 0;
        const cut = (route) => {
            aborted++;
            return route.abort('internetdisconnected');
        };
        await ctx.route(`${INGEST}/**`, cut);

        for (const t of [20, 35, 47.5]) await seekTo(page, t); // coalesced: only 47.5 stays queued
        await page.click('#catalog .card[data-video="ocean"]');
        await waitFor(() => page.evaluate(() => document.body.dataset.resumed === '1' && window.playheadDemo.current.id === 'ocean'), 15000, 'ocean to load');
        await page.evaluate(() => document.querySelector('video').pause());
        await seekTo(page, 12.25);

        const queued = await waitFor(
            () =>
                page.evaluate(() => {
                    const s = document.getElementById('status');
                    return s.dataset.level === 'error' && { pending: Number(s.dataset.pending), text: s.textContent };
                }),
            15000,
            'the status line to report the failure',
        );
        assert.equal(queued.pending, 2, 'one queued position per video');
        assert.match(queued.text, /cannot save/);
        assert.ok(aborted > 0, 'ingest requests were attempted and cut');
        assert.equal(await position(u, 'clock'), null, 'nothing reached the API yet');
        await screenshot(page, 'b-offline');

        // a reload while still offline: the queue is in localStorage, and the page resumes from it
        await page.close({ runBeforeUnload: true });
        page = await openPlayer(ctx, u, { extra: `${extra}&autoplay=0` });
        const reloaded = await videoState(page);
        assert.equal(reloaded.pending, 2, 'the queue survived the reload');
        assert.ok(near(reloaded.currentTime, 47.5), `resumed from the local queue at ${reloaded.currentTime}`);
        assert.match(await page.textContent('#resume-note'), /this browser/);
        assert.equal(await page.locator('#continue .badge').count(), 2, 'both queued titles show as not synced');

        // meanwhile another device, online, watched further: its newer position must win
        const newer = { user_id: u, video_id: 'clock', position: 60, duration: 90, ts: Date.now(), session_id: 'other-device' };
        const r = await fetch(`${INGEST}/v1/positions`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([newer]) });
        assert.equal(r.status, 202);
        await waitFor(async () => (await position(u, 'clock'))?.position === 60, 15000, 'the other device position in the API');

        await ctx.unroute(`${INGEST}/**`, cut);
        await waitFor(() => page.evaluate(() => window.playheadDemo.client.pending() === 0), 30000, 'the queue to drain once ingest is back');
        const ocean = await waitFor(async () => {
            const p = await position(u, 'ocean');
            return p && near(p.position, 12.25) && p;
        }, 15000, 'ocean at 12.25 in the API');
        assert.equal(ocean.finished, false);
        // the queued clock event (47.5) was accepted too, but it is older than the other device's 60
        const clock = await position(u, 'clock');
        assert.equal(clock.position, 60, 'last-writer-wins by ts: the newest position stays');
        assert.equal(await page.evaluate(() => window.playheadDemo.client.state().sent), 2);
        await waitFor(() => page.evaluate(() => document.getElementById('status').dataset.level === 'ok'), 5000, 'status ok');
        await waitFor(() => page.evaluate(() => document.querySelectorAll('#continue .badge').length === 0 && document.querySelectorAll('#continue .card').length === 2), 15000, 'the continue-watching row to catch up');
        await screenshot(page, 'b-recovered');
    } finally {
        await ctx.close();
    }
});
