// (d) The dashboard, scraping the three services' /metrics, shows non-zero event rates while a
// player runs (ingest accepted/s and consumer applied/s, averaged over the dashboard's window).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { API, launch, openPlayer, playUntil, screenshot, user, waitFor, watch } from './lib.mjs';

let browser;
before(async () => {
    browser = await launch();
});
after(async () => {
    await browser?.close();
});

test('the dashboard shows non-zero rates while a player runs', async () => {
    const u = user('dashboard');
    const ctx = await browser.newContext();
    try {
        const player = await openPlayer(ctx, u);
        await playUntil(player, 1);

        const dash = await ctx.newPage();
        const log = watch(dash);
        await dash.goto(`${API}/dashboard`);
        assert.match(dash.url(), /\/demo\/dashboard\.html$/, '/dashboard redirects to the dashboard page');
        const tiles = () => dash.$$eval('.tile', (ts) => ts.map((t) => `${t.querySelector('.label').textContent}: ${t.querySelector('.value').textContent}`));
        const value = (id) => dash.evaluate((id) => Number(document.getElementById(id).dataset.value || 0), id);
        // the player records every 5 s; the tiles average 10 s, so a rate shows within ~15 s
        const rates = await waitFor(async () => {
            const accepted = await value('v-accepted');
            const applied = await value('v-applied');
            return accepted > 0 && applied > 0 && { accepted, applied };
        }, 30000, 'non-zero accepted/s and applied/s on the dashboard').catch(async (e) => {
            e.message += `\ndashboard: ${(await tiles()).join(' | ')}\nsources: ${await dash.textContent('#sources')}\n${log.join('\n')}`;
            throw e;
        });
        const sources = await dash.textContent('#sources');
        console.log(`dashboard: ${(await tiles()).join(' | ')} — ${sources}`);
        assert.ok(rates.accepted > 0 && rates.applied > 0);
        assert.doesNotMatch(sources, /✗/, `every /metrics source answers: ${sources}`);
        const charted = await dash.evaluate(() => window.playheadDashboard.series.accepted.filter((v) => v > 0).length);
        assert.ok(charted > 0, 'the events/s chart has non-zero points');
        assert.equal(await dash.evaluate(() => typeof window.uPlot), 'function', 'uPlot is vendored (npm run vendor in demo/)');
        await screenshot(dash, 'd-dashboard');
    } finally {
        await ctx.close();
    }
});
