/*
 * player.js — the demo page: an HTML5 <video> wired to playhead.
 *
 * On load it asks playhead-api where this user left the title (or this browser's own queue, if
 * it holds a newer position that ingest has not seen yet) and starts there. While playing it
 * records the position every 5 s, and on pause, seek, tab hidden and page hide, through the
 * offline-first client in playhead.js — so positions survive outages and reloads. Playing takes a
 * stream lease (at most N devices per user; refreshed every 30 s, released on pause and page
 * hide); when the limit is reached it lists the active devices, each with a button to stop it.
 * The viewer shapes their history through the same queue: each card of the row has "remove"
 * (hide) and "mark watched"; a history view pages through every title (GET /history with a
 * cursor); the settings menu downloads everything stored (GET /export) and erases the user
 * (after a confirmation). Series show as one card, or as "next up" once an episode is finished.
 *
 * Works against the real stack (api serves this folder at /demo/ and the config at
 * /demo-config.json) and needs nothing from the internet. Query parameters for testing:
 * ?user=<id> (any valid id; the picker offers alice, bob, carol), ?video=<id>,
 * ?ingest=<url>, ?api=<url>, ?autoplay=0, ?max_backoff_ms=<n> (retry cap; tests shorten it),
 * ?history_page=<n> (history page size, 1..100, default 10).
 * JWT mode (--auth=jwt): a token in the fragment, #token=<JWT> (scripts/run.sh prints such a URL),
 * is sent as `Authorization: Bearer` to ingest and the api, and its `sub` is the user. The fragment
 * is never sent to a server, and survives the redirect from /.
 */
import { createClient, ID_PATTERN } from './playhead.js';

const USERS = ['alice', 'bob', 'carol'];
const RECORD_EVERY_MS = 5000;
const LEASE_REFRESH_MS = 30000;
const CONTINUE_REFRESH_MS = 10000;
const REQUEST_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
const video = $('video');
const params = new URLSearchParams(location.search);
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const HISTORY_PAGE = Math.min(100, Math.max(1, Number(params.get('history_page')) || 10));

const page = {
    config: null,
    client: null,
    userId: null,
    sessionId: randomId(),
    device: null, // how other tabs see this one in the stream-limit list
    catalog: [],
    current: null, // the catalog entry playing
    resumed: false, // the resume seek is done: from now on positions are recorded
    lease: { state: 'none', limit: null, expiresAt: null, error: null, releasePending: false },
    leaseTimer: null,
    lastSentCount: 0,
    lastQueue: null,
    history: { items: [], cursor: null, loading: false, error: null, stale: false },
    recent: [], // this page's viewer events, kept over the row until the consumer surely applied them
};
const RECENT_MS = 60000;
page.device = deviceName(page.sessionId);
// Tests and curious developers: everything the page knows.
window.playheadDemo = page;

// ---- small helpers ------------------------------------------------------------------------

function randomId() {
    // crypto.getRandomValues works outside secure contexts too (unlike randomUUID)
    const b = crypto.getRandomValues(new Uint8Array(8));
    return 'web-' + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function deviceName(sessionId) {
    const ua = navigator.userAgent;
    const browser = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chromium' : /Safari\//.test(ua) ? 'Safari' : 'Browser';
    const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS/.test(ua) ? 'macOS' : /Windows/.test(ua) ? 'Windows' : /Linux/.test(ua) ? 'Linux' : 'unknown OS';
    return `${browser} on ${os} · tab ${sessionId.slice(4, 8)}`;
}

function fmtTime(s) {
    if (!Number.isFinite(s) || s < 0) return '–:––';
    s = Math.floor(s);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = String(s % 60).padStart(2, '0');
    return h ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

function fmtAgo(ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : new Date(ms).toLocaleTimeString();
}

/** updated_at / started_at may be ms, seconds or an ISO date: ms since the epoch, or 0. */
function toMs(v) {
    if (typeof v === 'number') return v < 1e11 ? v * 1000 : v;
    const t = Date.parse(v);
    return Number.isNaN(t) ? 0 : t;
}

function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (k === 'class') e.className = v;
        else if (k === 'style') e.style.cssText = v;
        else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
}

function apiUrl(path) {
    return new URL(path, page.config.api_url || location.origin).href;
}

async function apiFetch(path, init = {}) {
    const ac = new AbortController();
    const t = setTimeout(() => ac.abort(), REQUEST_TIMEOUT_MS);
    try {
        return await fetch(apiUrl(path), { cache: 'no-store', signal: ac.signal, ...init, headers: { ...auth, ...init.headers } });
    } finally {
        clearTimeout(t);
    }
}

function once(target, ...types) {
    return new Promise((resolve, reject) => {
        const done = (ev) => {
            for (const t of types) target.removeEventListener(t, done);
            target.removeEventListener('error', fail);
            resolve(ev);
        };
        const fail = () => {
            for (const t of types) target.removeEventListener(t, done);
            reject(new Error(`cannot load ${target.currentSrc || target.src}`));
        };
        for (const t of types) target.addEventListener(t, done);
        target.addEventListener('error', fail);
    });
}

const uPath = () => `/v1/users/${encodeURIComponent(page.userId)}`;

// ---- configuration and start-up -----------------------------------------------------------

async function loadConfig() {
    const cfg = { ingest_url: `${location.protocol}//${location.hostname}:8080`, api_url: '', auth: 'dev' };
    try {
        const r = await fetch('/demo-config.json', { cache: 'no-store' });
        if (r.ok) Object.assign(cfg, await r.json());
    } catch {
        // no config (e.g. the folder opened from another server): the defaults above
    }
    if (params.get('ingest')) cfg.ingest_url = params.get('ingest');
    if (params.get('api')) cfg.api_url = params.get('api');
    return cfg;
}

/** The `sub` of the #token= JWT, or null (no token, or not a readable JWT). */
function tokenSubject() {
    try {
        const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
        return JSON.parse(atob(b64)).sub ?? null;
    } catch {
        return null;
    }
}

function pickUser() {
    const fromUrl = tokenSubject() ?? params.get('user');
    let stored = null;
    try {
        stored = localStorage.getItem('playhead.demo.user');
    } catch {}
    const user = [fromUrl, stored, USERS[0]].find((u) => u && ID_PATTERN.test(u));
    const select = $('user');
    for (const u of new Set([...USERS, user])) select.append(el('option', { value: u }, u));
    select.value = user;
    select.disabled = page.config.auth !== 'dev';
    select.addEventListener('change', () => {
        try {
            localStorage.setItem('playhead.demo.user', select.value);
        } catch {}
        const next = new URLSearchParams(location.search);
        next.set('user', select.value);
        next.delete('video');
        location.search = next.toString(); // pagehide saves and releases on the way out
    });
    return user;
}

async function loadCatalog() {
    const r = await fetch('media/catalog.json', { cache: 'no-store' });
    if (!r.ok) throw new Error(`media/catalog.json: HTTP ${r.status}`);
    return (await r.json()).titles;
}

async function main() {
    page.config = await loadConfig();
    page.userId = pickUser();
    $('session').textContent = page.sessionId;
    page.client = createClient({
        ingestUrl: page.config.ingest_url,
        userId: page.userId,
        token,
        onChange: onClientChange,
        maxBackoffMs: Number(params.get('max_backoff_ms')) || 60000,
    });
    renderStatus();
    try {
        page.catalog = await loadCatalog();
    } catch (e) {
        $('title').textContent = 'No demo media';
        $('resume-note').textContent = `${e.message} — generate it with scripts/gen-demo-media.sh`;
        document.body.dataset.error = 'no-media';
        renderStatus();
        return;
    }
    renderCatalog();
    wireVideo();
    wireLifecycle();
    wireViewerActions();
    setInterval(renderStatus, 1000);
    setInterval(refreshContinue, CONTINUE_REFRESH_MS);
    setInterval(() => {
        if (page.resumed && !video.paused && !video.ended) recordNow();
    }, RECORD_EVERY_MS);

    const items = await refreshContinue();
    const wanted = params.get('video');
    const first = page.catalog.find((t) => t.id === wanted) || page.catalog.find((t) => t.id === items[0]?.video_id) || page.catalog[0];
    await openTitle(first.id, { autoplay: params.get('autoplay') !== '0' });
}

// ---- titles and resuming ------------------------------------------------------------------

/** Where to start `videoId`: the newer of the server's position and this browser's queue. */
async function resumePoint(videoId) {
    let server = null;
    let error = null;
    try {
        const r = await apiFetch(`${uPath()}/positions/${encodeURIComponent(videoId)}`);
        if (r.ok) server = await r.json();
        else if (r.status !== 404) error = `api: HTTP ${r.status}`;
    } catch (e) {
        error = `api unreachable (${e.message})`;
    }
    const local = page.client.queued().find((e) => e.video_id === videoId);
    if (local && (!server || local.ts >= toMs(server.updated_at)))
        return { position: local.position, finished: false, from: "from this browser's queue, not yet synced", error };
    if (server) return { position: server.position, finished: Boolean(server.finished), from: 'where playhead says you left off', error };
    return { position: 0, finished: false, from: null, error };
}

async function openTitle(videoId, { autoplay = true } = {}) {
    const title = page.catalog.find((t) => t.id === videoId);
    if (!title) return;
    if (page.current && page.resumed) recordNow();
    releaseLease();
    page.current = title;
    page.resumed = false;
    delete document.body.dataset.resumed;
    $('title').textContent = title.title;
    $('resume-note').textContent = 'finding where you left off…';
    const q = new URLSearchParams(location.search);
    q.set('video', videoId);
    history.replaceState(null, '', `?${q}`);
    renderCards();

    const [point] = await Promise.all([
        resumePoint(videoId),
        (async () => {
            video.src = title.src;
            await once(video, 'loadedmetadata');
        })().catch((e) => e),
    ]);
    if (page.current !== title) return; // another title was picked meanwhile
    if (video.error || video.readyState < 1) {
        $('resume-note').textContent = `Cannot play ${title.src} — generate the media with scripts/gen-demo-media.sh`;
        document.body.dataset.error = 'media';
        return;
    }
    const duration = video.duration || title.duration;
    let start = point.position;
    // finished, or so close to the end that resuming would show nothing: start over
    if (point.finished || start >= duration - 1) start = 0;
    if (start > 0) {
        video.currentTime = start;
        await once(video, 'seeked').catch(() => {});
    }
    page.resumed = true;
    document.body.dataset.resumed = '1';
    $('resume-note').textContent =
        (start > 0 ? `Resumed at ${fmtTime(start)} — ${point.from}.` : point.finished ? 'Finished last time — starting over.' : 'Starting from the beginning.') +
        (point.error ? ` ${point.error}.` : '');
    if (autoplay) {
        try {
            await video.play();
        } catch {
            if (page.lease.state !== 'denied') $('resume-note').textContent += ' Press play to continue.';
        }
    }
}

function recordNow() {
    if (!page.current || !page.resumed) return;
    const position = video.currentTime;
    if (!Number.isFinite(position)) return;
    try {
        page.client.record({
            videoId: page.current.id,
            position,
            duration: video.duration,
            sessionId: page.sessionId,
            ...seriesOf(page.current.id),
        });
    } catch (e) {
        console.warn('playhead: not recorded', e);
    }
}

// ---- video and page lifecycle -------------------------------------------------------------

function wireVideo() {
    video.addEventListener('play', () => {
        if (page.lease.state !== 'held' && page.lease.state !== 'acquiring') acquireLease();
    });
    video.addEventListener('pause', () => {
        if (page.lease.state === 'denied') return; // paused for the stream limit: it never really played
        recordNow();
        if (!video.ended) releaseLease();
    });
    video.addEventListener('seeked', () => recordNow());
    video.addEventListener('ended', () => {
        recordNow(); // at the very end: playhead marks it finished
        releaseLease();
    });
    video.addEventListener('timeupdate', renderNow);
}

function wireLifecycle() {
    document.addEventListener('visibilitychange', () => {
        if (document.visibilityState === 'hidden') {
            recordNow();
            page.client.flushOnExit();
        }
    });
    window.addEventListener('pagehide', () => {
        recordNow();
        page.client.flushOnExit();
        releaseLease({ keepalive: true });
    });
    window.addEventListener('online', () => {
        page.client.flush({ force: true });
        renderStatus();
    });
    window.addEventListener('offline', renderStatus);
    // another tab of this user changed the shared queue
    window.addEventListener('storage', (e) => {
        if (e.key !== page.client.storageKey) return;
        renderStatus();
        mergeContinue();
    });
    $('limit-retry').addEventListener('click', () => retryPlay());
}

// ---- stream leases ------------------------------------------------------------------------

async function acquireLease() {
    const lease = page.lease;
    if (lease.state === 'unsupported') return true;
    lease.state = 'acquiring';
    lease.releasePending = false;
    renderLease();
    let r;
    let body = null;
    try {
        r = await apiFetch(`${uPath()}/streams`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ session_id: page.sessionId, device: page.device }),
        });
        body = await r.json().catch(() => null);
    } catch (e) {
        // fail open: watching matters more than counting devices; positions still record
        Object.assign(lease, { state: 'error', error: `streams: ${e.message}` });
        renderLease();
        return true;
    }
    if (r.status === 404 || r.status === 405 || r.status === 501) {
        Object.assign(lease, { state: 'unsupported', error: null });
        renderLease();
        return true;
    }
    if (r.status === 429) {
        Object.assign(lease, { state: 'denied', limit: body?.limit ?? null, error: null });
        stopLeaseTimer();
        if (!video.paused) video.pause();
        showLimit(body);
        renderLease();
        return false;
    }
    if (!r.ok) {
        Object.assign(lease, { state: 'error', error: `streams: HTTP ${r.status}` });
        renderLease();
        return true;
    }
    Object.assign(lease, { state: 'held', limit: body?.limit ?? null, expiresAt: body?.expires_at ?? null, error: null });
    hideLimit();
    if (lease.releasePending && video.paused) {
        releaseLease();
        return true;
    }
    startLeaseTimer();
    renderLease();
    return true;
}

function startLeaseTimer() {
    stopLeaseTimer();
    page.leaseTimer = setInterval(() => {
        if (page.lease.state === 'held') acquireLease(); // a repeated POST refreshes the lease
    }, LEASE_REFRESH_MS);
}

function stopLeaseTimer() {
    if (page.leaseTimer) clearInterval(page.leaseTimer);
    page.leaseTimer = null;
}

function releaseLease({ keepalive = false } = {}) {
    stopLeaseTimer();
    const lease = page.lease;
    if (lease.state === 'acquiring') {
        lease.releasePending = true; // paused before the lease came back: give it back then
        return;
    }
    if (lease.state !== 'held') return; // denied, unsupported, error: nothing to give back
    lease.state = 'none';
    renderLease();
    fetch(apiUrl(`${uPath()}/streams/${encodeURIComponent(page.sessionId)}`), { method: 'DELETE', keepalive, headers: auth }).catch(() => {});
}

async function stopDevice(sessionId, button) {
    button.disabled = true;
    button.textContent = 'stopping…';
    try {
        const r = await apiFetch(`${uPath()}/streams/${encodeURIComponent(sessionId)}`, { method: 'DELETE' });
        if (!r.ok && r.status !== 404) throw new Error(`HTTP ${r.status}`);
    } catch (e) {
        button.disabled = false;
        button.textContent = `stop (failed: ${e.message})`;
        return;
    }
    await retryPlay();
}

async function retryPlay() {
    if (await acquireLease()) {
        hideLimit();
        try {
            await video.play();
        } catch {}
    }
}

function showLimit(body) {
    const active = Array.isArray(body?.active) ? body.active : [];
    $('limit-text').textContent =
        `${page.userId} is already watching on ${active.length || 'the maximum number of'} device${active.length === 1 ? '' : 's'}` +
        (body?.limit ? ` (limit ${body.limit})` : '') +
        '. Stop one to watch here.';
    const list = $('limit-devices');
    list.replaceChildren(
        ...active.map((s) => {
            const button = el('button', { type: 'button', class: 'stop', dataset: { session: s.session_id } }, 'Stop');
            button.addEventListener('click', () => stopDevice(s.session_id, button));
            return el(
                'li',
                { dataset: { session: s.session_id } },
                el('span', { class: 'device' }, s.device || s.session_id),
                el('span', { class: 'muted small' }, s.started_at ? ` started ${fmtAgo(toMs(s.started_at))}` : ''),
                ' ',
                button,
            );
        }),
    );
    $('limit').hidden = false;
    document.body.dataset.limit = '1';
}

function hideLimit() {
    $('limit').hidden = true;
    delete document.body.dataset.limit;
}

function renderLease() {
    const l = page.lease;
    const text = {
        none: 'no stream lease',
        acquiring: 'taking a stream lease…',
        held: `stream lease held${l.limit ? ` (limit ${l.limit} devices)` : ''}`,
        denied: 'stream limit reached',
        unsupported: 'stream limits not available on this server',
        error: `stream lease unavailable (${l.error}) — playing anyway`,
    }[l.state];
    $('lease').textContent = text;
    document.body.dataset.lease = l.state;
}

// ---- continue-watching row and catalog ----------------------------------------------------

let serverItems = []; // the last continue-watching answer
let continueItems = []; // what the row shows: serverItems merged with the local queue
let continueError = null;

async function refreshContinue() {
    try {
        const r = await apiFetch(`${uPath()}/continue-watching?limit=12`);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        serverItems = (await r.json()).items || [];
        continueError = null;
    } catch (e) {
        continueError = e.message; // keep showing what we had
    }
    return mergeContinue();
}

/**
 * The row: the server's items, overridden by what this browser has not delivered yet — newer
 * positions show (marked "not synced"); a queued hide, mark, erase or erase of the user takes
 * the titles it covers out at once, as the backend will once it has them.
 */
function mergeContinue() {
    const queue = page.client.queued();
    // A queued or recently sent viewer event (any kind but a position) takes a title out when it
    // is not older: harmless once the server applied it too (the title is gone or newer there),
    // and it covers the moment between ingest's 202 and the consumer's apply.
    page.recent = page.recent.filter((e) => e.ts > Date.now() - RECENT_MS);
    const marks = [...queue.filter((e) => e.kind), ...page.recent];
    const removedBy = (videoId, ts) => marks.some((e) => (e.kind === 'erase_user' || e.video_id === videoId) && e.ts >= ts);
    let items = serverItems.filter((i) => !removedBy(i.video_id, toMs(i.updated_at))).map((i) => ({ ...i }));
    for (const ev of queue) {
        if (ev.kind || removedBy(ev.video_id, ev.ts)) continue;
        // one card per series: a newer local episode replaces the series' card
        if (ev.series_id) items = items.filter((x) => x.series_id !== ev.series_id || x.video_id === ev.video_id || toMs(x.updated_at) > ev.ts);
        const i = items.findIndex((x) => x.video_id === ev.video_id);
        if (i >= 0 && toMs(items[i].updated_at) > ev.ts) continue;
        const duration = ev.duration ?? page.catalog.find((t) => t.id === ev.video_id)?.duration;
        const item = {
            video_id: ev.video_id,
            position: ev.position,
            duration,
            progress: duration ? ev.position / duration : 0,
            updated_at: ev.ts,
            series_id: ev.series_id,
            local: true,
        };
        if (duration && ev.position >= duration - 1) {
            if (i >= 0) items.splice(i, 1); // finished locally
            continue;
        }
        if (i >= 0) items[i] = item;
        else items.push(item);
    }
    items.sort((a, b) => toMs(b.updated_at) - toMs(a.updated_at));
    continueItems = items;
    renderContinue(continueError);
    return items;
}

function card(videoId, { progress = null, caption = '', local = false, nextUp = false } = {}) {
    const t = page.catalog.find((x) => x.id === videoId);
    const active = page.current?.id === videoId;
    return el(
        'button',
        { type: 'button', class: `card${active ? ' active' : ''}`, dataset: { video: videoId }, onclick: () => openTitle(videoId) },
        t ? el('img', { src: t.thumbnail, alt: '', loading: 'lazy' }) : el('div', { class: 'noimg' }, videoId),
        progress == null ? null : el('div', { class: 'progress' }, el('span', { style: `width:${Math.min(100, Math.max(0, progress * 100)).toFixed(1)}%` })),
        el('span', { class: 'card-title' }, t?.title ?? videoId),
        el('span', { class: 'muted small' }, caption, local ? el('span', { class: 'badge' }, 'not synced') : null, nextUp ? el('span', { class: 'badge next' }, 'next up') : null),
    );
}

/** A continue-watching card with its "remove" and "mark watched" buttons. */
function rowCard(item) {
    const v = item.video_id;
    const action = (name, label, run) => el('button', { type: 'button', dataset: { action: name }, title: `${label}: ${titleOf(v)}`, onclick: run }, label);
    return el(
        'div',
        { class: 'card-wrap', dataset: { video: v, ...(item.series_id ? { series: item.series_id } : {}) } },
        card(v, {
            progress: item.next_up ? 0 : (item.progress ?? (item.duration ? item.position / item.duration : 0)),
            caption: item.next_up ? `${seriesLabel(item.series_id)} · ` : `${fmtTime(item.position)} / ${fmtTime(item.duration)} · ${fmtAgo(toMs(item.updated_at))}`,
            local: item.local,
            nextUp: item.next_up,
        }),
        el(
            'div',
            { class: 'card-actions' },
            action('hide', 'remove', () => viewerAction('hide', v)),
            action('watched', 'mark watched', () => viewerAction('watched', v)),
        ),
    );
}

function renderContinue(error) {
    const row = $('continue');
    if (continueItems.length === 0) {
        row.replaceChildren(el('p', { class: 'muted' }, error ? `Cannot reach playhead-api (${error}).` : 'Nothing yet — start a title below.'));
        return;
    }
    row.replaceChildren(
        ...continueItems.map(rowCard),
        ...(error ? [el('p', { class: 'muted small' }, `(api unreachable: ${error})`)] : []),
    );
}

function renderCatalog() {
    $('catalog').replaceChildren(...page.catalog.map((t) => card(t.id, { caption: fmtTime(t.duration) })));
}

function renderCards() {
    for (const c of document.querySelectorAll('.card')) c.classList.toggle('active', c.dataset.video === page.current?.id);
}

function renderNow() {
    // keep the playing title's card honest between refreshes
    const c = document.querySelector(`#continue .card[data-video="${CSS.escape(page.current?.id ?? '')}"] .progress span`);
    if (c && video.duration) c.style.width = `${((video.currentTime / video.duration) * 100).toFixed(1)}%`;
}

// ---- the viewer's history: remove, mark watched, history, download, erase ---------------

const titleOf = (videoId) => page.catalog.find((t) => t.id === videoId)?.title ?? videoId;

/** seriesId / nextVideoId of a catalog title, for record() and markWatched(). */
function seriesOf(videoId) {
    const t = page.catalog.find((x) => x.id === videoId);
    return t?.series_id ? { seriesId: t.series_id, ...(t.next_video_id ? { nextVideoId: t.next_video_id } : {}) } : {};
}

function seriesLabel(seriesId) {
    const eps = page.catalog.filter((t) => t.series_id === seriesId);
    return eps.length ? `series ${seriesId} · ${eps.length} episodes` : `series ${seriesId}`;
}

/**
 * Queue a change of the viewer (hide, watched, erase_user) through the offline-first client,
 * stamped with the click time: the row updates at once from the queue, the server follows once
 * ingest accepted it and the consumer applied it.
 */
function viewerAction(kind, videoId) {
    try {
        const ev = kind === 'watched' ? page.client.markWatched(videoId, seriesOf(videoId)) : page.client.mark(kind, videoId);
        page.recent.push(ev); // (mark() re-renders the row, which prunes page.recent: push after it)
    } catch (e) {
        console.warn('playhead: not queued', e);
        return;
    }
    page.history.stale = true;
    page.client.flush({ force: true });
}

function wireViewerActions() {
    const view = $('history-view');
    view.addEventListener('toggle', () => {
        if (view.open) loadHistory({ reset: true });
    });
    $('history-more').addEventListener('click', () => loadHistory());
    $('history-reload').addEventListener('click', () => loadHistory({ reset: true }));
    $('download').addEventListener('click', downloadMyData);
    const dialog = $('erase-dialog');
    $('erase-open').addEventListener('click', () => {
        $('erase-user').textContent = page.userId;
        $('settings').open = false;
        dialog.showModal();
    });
    dialog.addEventListener('close', () => {
        if (dialog.returnValue === 'erase') eraseMyHistory();
    });
}

/** The next page of GET /history (or the first, with `reset`), appended to the table. */
async function loadHistory({ reset = false } = {}) {
    const h = page.history;
    if (h.loading) return;
    if (reset) Object.assign(h, { items: [], cursor: null, stale: false, done: false });
    h.loading = true;
    renderHistory();
    try {
        const q = new URLSearchParams({ limit: String(HISTORY_PAGE) });
        if (h.cursor) q.set('cursor', h.cursor);
        const r = await apiFetch(`${uPath()}/history?${q}`);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const body = await r.json();
        h.items.push(...(body.items || []));
        h.cursor = body.next_cursor ?? null;
        h.done = h.cursor === null;
        h.error = null;
    } catch (e) {
        h.error = e.message;
    } finally {
        h.loading = false;
    }
    renderHistory();
}

function renderHistory() {
    const h = page.history;
    const badge = (text, cls = '') => el('span', { class: `badge ${cls}` }, text);
    $('history')
        .querySelector('tbody')
        .replaceChildren(
            ...h.items.map((i) =>
                el(
                    'tr',
                    { dataset: { video: i.video_id } },
                    el('td', {}, titleOf(i.video_id), i.series_id ? el('span', { class: 'muted small' }, ` · ${i.series_id}`) : null),
                    el(
                        'td',
                        {},
                        el('div', { class: 'progress' }, el('span', { style: `width:${Math.min(100, Math.max(0, (i.progress ?? 0) * 100)).toFixed(1)}%` })),
                        el('span', { class: 'muted small' }, `${fmtTime(i.position)} / ${fmtTime(i.duration)}`),
                    ),
                    el('td', {}, i.finished ? badge('watched', 'next') : null, i.hidden ? badge('hidden') : null),
                    el('td', { class: 'muted small' }, fmtAgo(toMs(i.updated_at))),
                ),
            ),
        );
    $('history-more').hidden = h.done || h.items.length === 0 || Boolean(h.error);
    $('history-note').textContent = h.loading
        ? 'loading…'
        : h.error
          ? `cannot load the history (${h.error})`
          : h.items.length === 0
            ? 'Nothing watched yet.'
            : `${h.items.length} title${h.items.length === 1 ? '' : 's'}${h.done ? ', all shown' : ''}`;
    const view = $('history-view');
    view.dataset.count = String(h.items.length);
    view.dataset.done = h.done ? '1' : '0';
    view.dataset.loading = h.loading ? '1' : '0';
}

/** GET /export, saved as the file the server names (Content-Disposition), else playhead-<user>.json. */
async function downloadMyData() {
    const note = $('settings-note');
    note.textContent = 'preparing your data…';
    try {
        const r = await apiFetch(`${uPath()}/export`);
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const name = /filename="?([^";]+)"?/.exec(r.headers.get('Content-Disposition') || '')?.[1] || `playhead-${page.userId}.json`;
        const url = URL.createObjectURL(await r.blob());
        const a = el('a', { href: url, download: name, hidden: '' });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10000);
        note.textContent = `saved ${name}`;
    } catch (e) {
        note.textContent = `download failed: ${e.message}`;
    }
}

/** After the confirmation: one erase_user event; the row and history empty at once. */
function eraseMyHistory() {
    viewerAction('erase_user');
    page.history = { items: [], cursor: null, loading: false, error: null, stale: true, done: true };
    renderHistory();
    $('settings-note').textContent = 'history erased';
}

// ---- status line --------------------------------------------------------------------------

function onClientChange(state) {
    if (state.sent !== page.lastSentCount) {
        page.lastSentCount = state.sent;
        setTimeout(() => {
            refreshContinue();
            // a change of the viewer reached ingest: the history shown is out of date
            if (page.history.stale && state.pending === 0 && $('history-view').open) loadHistory({ reset: true });
        }, 1500); // give the consumer a moment to apply them
    }
    const queue = JSON.stringify(page.client.queued());
    if (queue !== page.lastQueue) {
        page.lastQueue = queue;
        if (page.catalog.length) mergeContinue(); // show unsent positions at once, no request
    }
    renderStatus();
}

function renderStatus() {
    if (!page.client) return;
    const s = page.client.state();
    const status = $('status');
    let level;
    let text;
    const queued = `${s.pending} ${s.pending === 1 ? 'change' : 'changes'} queued`;
    if (!navigator.onLine) {
        level = 'offline';
        text = `offline — ${queued}, sent when the network is back`;
    } else if (s.lastError) {
        level = 'error';
        const retry = s.retryAt ? `, retry in ${Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000))} s` : '';
        text = `cannot save: ${s.lastError} — ${queued}${retry}`;
    } else if (s.pending > 0) {
        level = 'pending';
        text = `saving — ${queued}`;
    } else {
        level = 'ok';
        text = s.lastSentAt ? `all positions saved · last sent ${fmtAgo(s.lastSentAt)}` : 'all positions saved';
    }
    if (s.lastDrop) text += ` · ${s.lastDrop}`;
    status.dataset.level = level;
    status.dataset.pending = String(s.pending);
    $('status-text').textContent = `${page.userId} · ${text}`;
}

main().catch((e) => {
    console.error(e);
    $('status-text').textContent = `demo failed to start: ${e.message}`;
    document.body.dataset.error = 'start';
});
