// Shared helpers for the browser tests: node --test --test-concurrency=1 tests/browser
//
// They drive Debian's /usr/bin/chromium through playwright-core (never a downloaded browser)
// against a running stack:
//   PH_API_URL      playhead-api, which serves the demo at /demo/   (default http://127.0.0.1:8081)
//   PH_INGEST_URL   playhead-ingest                                 (default http://127.0.0.1:8080)
//   PH_ARTIFACTS    where screenshots go                            (default tests/browser/out)
//   PH_TIMEOUT_MULT deadline multiplier for slow machines           (default 1)
//   PH_CHROMIUM     the browser binary                              (default /usr/bin/chromium)
//   PH_SEED         seed of the per-run user ids, logged            (default: random)
// Every test uses users of its own (`t<seed>-<name>`), so runs never share keys, and waits with
// deadlines (`waitFor`) rather than sleeps; only video playback time is waited out as such.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = fileURLToPath(new URL('.', import.meta.url));
export const API = (process.env.PH_API_URL || 'http://127.0.0.1:8081').replace(/\/+$/, '');
export const INGEST = (process.env.PH_INGEST_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const ARTIFACTS = resolve(process.env.PH_ARTIFACTS || join(here, 'out'));
export const MULT = Number(process.env.PH_TIMEOUT_MULT) || 1;
export const SEED = process.env.PH_SEED || Math.random().toString(36).slice(2, 8);
const CHROMIUM = process.env.PH_CHROMIUM || '/usr/bin/chromium';
let logged = false;

/** Milliseconds on a normal machine, stretched by PH_TIMEOUT_MULT. */
export const scaled = (ms) => ms * MULT;

/** A user id unique to this run and test. */
export function user(name) {
    if (!logged) {
        console.log(`browser tests: api ${API}, ingest ${INGEST}, seed ${SEED} (PH_SEED), screenshots in ${ARTIFACTS}`);
        logged = true;
    }
    return `t${SEED}-${name}`;
}

export async function launch() {
    return chromium.launch({
        executablePath: CHROMIUM,
        args: [
            '--headless',
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
        ],
    });
}

/**
 * Poll `fn` (sync or async) until it returns something truthy and return that; fail after
 * `ms` (scaled) with `what` and the last value or error seen.
 */
export async function waitFor(fn, ms, what, interval = 100) {
    const deadline = Date.now() + scaled(ms);
    let last;
    for (;;) {
        try {
            last = await fn();
            if (last) return last;
        } catch (e) {
            last = e;
        }
        if (Date.now() >= deadline) throw new Error(`timed out after ${scaled(ms) / 1000} s waiting for ${what} (last: ${describe(last)})`);
        await new Promise((r) => setTimeout(r, interval));
    }
}

function describe(v) {
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    try {
        return JSON.stringify(v);
    } catch {
        return String(v);
    }
}

/** GET a JSON document from the api: {status, body}. */
export async function apiGet(path) {
    const r = await fetch(`${API}${path}`, { cache: 'no-store' });
    let body = null;
    try {
        body = await r.json();
    } catch {}
    return { status: r.status, body };
}

/** The position playhead-api has for (user, video), or null (404). */
export async function position(u, v) {
    const r = await apiGet(`/v1/users/${encodeURIComponent(u)}/positions/${encodeURIComponent(v)}`);
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`GET position: HTTP ${r.status}`);
    return r.body;
}

export async function screenshot(page, name) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const path = join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    console.log(`screenshot: ${path}`);
    return path;
}

/**
 * Collect the page's console errors and uncaught exceptions, for failure messages: distinct
 * lines only (a dashboard scraping a dead source every second repeats itself), at most 20.
 */
export function watch(page, log = []) {
    const add = (line) => {
        if (!log.includes(line) && log.length < 20) log.push(line);
    };
    page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') add(`console.${m.type()}: ${m.text()} ${m.location()?.url ?? ''}`.trim());
    });
    page.on('pageerror', (e) => add(`pageerror: ${e.message}`));
    page.on('requestfailed', (r) => add(`request failed: ${r.method()} ${r.url()} (${r.failure()?.errorText})`));
    return log;
}

/** Open the player for `u` (and `video`), wait until it resumed; returns the page. */
export async function openPlayer(context, u, { video = 'clock', extra = '' } = {}) {
    const page = await context.newPage();
    page.playheadLog = watch(page);
    await page.goto(`${API}/demo/index.html?user=${encodeURIComponent(u)}&video=${encodeURIComponent(video)}${extra}`);
    await waitFor(() => page.evaluate(() => document.body.dataset.resumed === '1' || document.body.dataset.error), 20000, `the player of ${u} to resume ${video}`).catch(
        (e) => {
            e.message += `\n${page.playheadLog.join('\n')}`;
            throw e;
        },
    );
    const error = await page.evaluate(() => document.body.dataset.error);
    if (error) throw new Error(`player failed (${error}): ${await page.textContent('#resume-note')}\n${page.playheadLog.join('\n')}`);
    return page;
}

/** video.currentTime, video.paused and the page's queue length. */
export function videoState(page) {
    return page.evaluate(() => {
        const v = document.querySelector('video');
        return { currentTime: v.currentTime, paused: v.paused, pending: window.playheadDemo.client.pending(), lease: document.body.dataset.lease };
    });
}

/** Wait until the video plays past `seconds`. */
export function playUntil(page, seconds, ms = 30000) {
    return waitFor(async () => {
        const s = await videoState(page);
        return s.currentTime >= seconds && !s.paused && s;
    }, ms, `playback to pass ${seconds} s`);
}

/** Seek the page's video to `t` seconds and wait for `seeked` (the player records it). */
export function seekTo(page, t) {
    return page.evaluate(
        (t) =>
            new Promise((resolve) => {
                const v = document.querySelector('video');
                v.addEventListener('seeked', () => resolve(v.currentTime), { once: true });
                v.currentTime = t;
            }),
        t,
    );
}
