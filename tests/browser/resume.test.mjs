// (a) Continue watching: play ~8 s, close the browser context (the page records on its way
// out), then a fresh context — empty storage, as on another device — starts within 2 s of
// where the first one stopped.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { launch, openPlayer, playUntil, position, screenshot, user, videoState, waitFor } from './lib.mjs';

let browser;
before(async () => {
    browser = await launch();
});
after(async () => {
    await browser?.close();
});

test('a fresh context resumes within 2 s of the last recorded position', async () => {
    const u = user('resume');
    const first = await browser.newContext();
    const page = await openPlayer(first, u);
    await playUntil(page, 8);
    const stoppedAt = (await videoState(page)).currentTime;
    // the periodic record (every 5 s) must have reached the API already
    await waitFor(() => position(u, 'clock'), 15000, 'a first position in the API');
    await first.close(); // pagehide: record + flushOnExit (keepalive fetch)

    // the last recorded position: what the exit flush delivered (poll until it stops moving)
    const recorded = await waitFor(
        async () => {
            const p = await position(u, 'clock');
            return p && p.position >= stoppedAt - 2 && p;
        },
        10000,
        `the API to hold a position within 2 s of ${stoppedAt.toFixed(2)} s`,
    );

    const second = await browser.newContext(); // empty localStorage: nothing local to resume from
    try {
        const page2 = await openPlayer(second, u, { extra: '&autoplay=0' });
        const { currentTime, pending } = await videoState(page2);
        assert.equal(pending, 0, 'the fresh context had nothing queued');
        assert.ok(
            Math.abs(currentTime - recorded.position) <= 2,
            `resumed at ${currentTime.toFixed(2)} s, last recorded position ${recorded.position} s`,
        );
        assert.ok(Math.abs(currentTime - stoppedAt) <= 2, `resumed at ${currentTime.toFixed(2)} s, first context stopped at ${stoppedAt.toFixed(2)} s`);
        assert.match(await page2.textContent('#resume-note'), /Resumed at/);
        // and it plays on from there (the screenshot shows the running clock past the resume point)
        await page2.evaluate(() => document.querySelector('video').play());
        await playUntil(page2, currentTime + 1.5, 15000);
        await waitFor(() => page2.evaluate(() => document.querySelectorAll('#continue .card[data-video="clock"]').length === 1), 10000, 'the clock in the continue-watching row');
        await page2.mouse.move(0, 0); // off the video, so its controls fade
        await screenshot(page2, 'a-resume');
    } finally {
        await second.close();
    }
});
