/*
 * e2e: an open-loop, paced load generator for playhead's end-to-end latency. It offers RATE single
 * events per second to ingest (POST /v1/positions) over a pool of keep-alive connections, sending
 * on a fixed schedule whatever the answers do (an event whose connection is not free yet is sent as
 * soon as one is: its delay behind the schedule is reported, and it counts as late beyond 5 ms). Every PROBE_EVERY-th event is a
 * probe: a (user, video) that nothing else writes. When its 202 arrives, the api is polled (GET /v1/users/U/positions/V every
 * POLL_MS) until the position is readable; e2e latency = readable - 202. Bench tooling only.
 *
 *   e2e -i INGEST_PORT -a API_PORT [-r RATE] [-d SECONDS] [-c CONNS] [-p PROBE_EVERY] [-P POLL_MS]
 *       [-t PROBE_TIMEOUT_MS] [-u USERS]
 *
 * Prints one JSON object. Responses may be Content-Length, chunked or close-delimited (h2o 2.2.5
 * closes a connection after a non-200 response without a length); closed connections are reopened.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { KIND_INGEST, KIND_API };

typedef struct {
    int fd, kind, busy, connecting;
    char out[1024];
    size_t outlen, outoff;
    char in[65536];
    size_t inlen;
    long item; /* ingest: event index; api: probe index */
    double t_sent;
} conn_t;

typedef struct {
    double t_sched, t_202, t_read, next_poll;
    int state; /* 0 not sent, 1 sent, 2 acked (polling), 3 readable, 4 failed */
    int acked; /* got its 202 */
} probe_t;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int ep;
static int ingest_port, api_port;
static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int open_conn(conn_t *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->kind == KIND_INGEST ? ingest_port : api_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->connecting = 1;
    c->inlen = 0;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    return epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
}

static void close_conn(conn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}

static int flush_out(conn_t *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (n < 0)
            return errno == EAGAIN ? 0 : -1;
        c->outoff += (size_t)n;
    }
    return 0;
}

/* Parses a complete response at the start of c->in. Returns the bytes it spans (0: incomplete;
 * -1: malformed), its status and whether the server closes the connection after it. `eof`: the
 * peer closed, which ends a close-delimited body. */
static long parse_response(conn_t *c, int eof, int *status, int *closes)
{
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (end == NULL)
        return eof ? -1 : 0;
    size_t head = (size_t)(end - c->in) + 4;
    if (c->inlen < 12 || memcmp(c->in, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->in + 9);
    long clen = -1;
    int chunked = 0;
    *closes = 0;
    for (char *p = memchr(c->in, '\n', head); p != NULL && p < end; p = memchr(p + 1, '\n', (size_t)(end - p))) {
        char *h = p + 1;
        if (strncasecmp(h, "content-length:", 15) == 0)
            clen = atol(h + 15);
        else if (strncasecmp(h, "transfer-encoding:", 18) == 0 && memmem(h, 40, "chunked", 7) != NULL)
            chunked = 1;
        else if (strncasecmp(h, "connection:", 11) == 0 && memmem(h, 30, "close", 5) != NULL)
            *closes = 1;
    }
    if (clen >= 0)
        return c->inlen >= head + (size_t)clen ? (long)(head + (size_t)clen) : 0;
    if (chunked) {
        size_t at = head;
        for (;;) {
            char *nl = memmem(c->in + at, c->inlen - at, "\r\n", 2);
            if (nl == NULL)
                return 0;
            long sz = strtol(c->in + at, NULL, 16);
            at = (size_t)(nl - c->in) + 2 + (size_t)sz + 2;
            if (at > c->inlen)
                return 0;
            if (sz == 0)
                return (long)at;
        }
    }
    *closes = 1;
    return eof ? (long)c->inlen : 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)n);
    return v[i >= n ? n - 1 : i];
}

int main(int argc, char **argv)
{
    double rate = 10000, secs = 20, poll_ms = 1, probe_timeout = 5000;
    int nconns = 64, napi = 8, opt;
    long probe_every = 100, users = 20000;
    while ((opt = getopt(argc, argv, "i:a:r:d:c:p:P:t:u:")) != -1) {
        switch (opt) {
        case 'i':
            ingest_port = atoi(optarg);
            break;
        case 'a':
            api_port = atoi(optarg);
            break;
        case 'r':
            rate = atof(optarg);
            break;
        case 'd':
            secs = atof(optarg);
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'p':
            probe_every = atol(optarg);
            break;
        case 'P':
            poll_ms = atof(optarg);
            break;
        case 't':
            probe_timeout = atof(optarg);
            break;
        case 'u':
            users = atol(optarg);
            break;
        default:
            return 2;
        }
    }
    if (ingest_port == 0 || api_port == 0) {
        fprintf(stderr, "usage: e2e -i INGEST_PORT -a API_PORT [-r RATE] [-d SECONDS] [-c CONNS] [-p PROBE_EVERY]\n");
        return 2;
    }
    rng ^= (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
    unsigned nonce = (unsigned)(rnd() & 0xffffff);
    long total = (long)(rate * secs), nprobes = total / probe_every + 1;
    probe_t *probes = calloc((size_t)nprobes, sizeof(*probes));
    double *post_lat = malloc(sizeof(double) * (size_t)total), *send_lag = malloc(sizeof(double) * (size_t)total);
    size_t npost = 0, nlag = 0;
    conn_t *conns = calloc((size_t)(nconns + napi), sizeof(*conns));
    ep = epoll_create1(0);
    for (int i = 0; i < nconns + napi; ++i) {
        conns[i].kind = i < nconns ? KIND_INGEST : KIND_API;
        if (open_conn(&conns[i]) != 0) {
            perror("e2e: connect");
            return 1;
        }
    }
    long sent = 0, late = 0, ok202 = 0, non202 = 0, reconnects = 0, polls = 0, poll_fail = 0;
    double t_last_send = 0;
    long poll_head = 0; /* probes before this index are done or not yet acked */
    double t0 = now_ms(), t_end_send = t0 + secs * 1e3, deadline = t_end_send + probe_timeout + 2000;
    struct epoll_event evs[256];

    for (;;) {
        double now = now_ms();
        /* the schedule: event i is due at t0 + i / rate */
        long due = now < t_end_send ? (long)((now - t0) * rate / 1e3) : total;
        if (due > total)
            due = total;
        for (int i = 0; i < nconns && sent < due; ++i) {
            conn_t *c = &conns[i];
            if (c->busy || c->connecting || c->fd < 0)
                continue;
            char body[320];
            int blen;
            if (sent % probe_every == 0) {
                blen =
                    snprintf(body, sizeof(body), "{\"user_id\":\"probe-%06x-%ld\",\"video_id\":\"video-000001\",\"position\":1.5}",
                             nonce, sent / probe_every);
                probes[sent / probe_every].t_sched = t0 + (double)sent * 1e3 / rate;
                probes[sent / probe_every].state = 1;
            } else {
                uint64_t r = rnd();
                blen = snprintf(body, sizeof(body),
                                "{\"user_id\":\"user-%07lu\",\"video_id\":\"video-%06lu\",\"position\":%.1f,\"duration\":5400,"
                                "\"session_id\":\"s-%08lx\"}",
                                (unsigned long)(r % (uint64_t)users), (unsigned long)((r >> 24) % 10),
                                (double)((r >> 32) % 51000) / 10, (unsigned long)(r >> 40));
            }
            double slot = t0 + (double)sent * 1e3 / rate;
            send_lag[nlag++] = now > slot ? now - slot : 0;
            if (slot < now - 5)
                late++;
            c->outlen = (size_t)snprintf(c->out, sizeof(c->out),
                                         "POST /v1/positions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                         "Content-Length: %d\r\n\r\n%s",
                                         blen, body);
            c->outoff = 0;
            c->busy = 1;
            c->item = sent++;
            c->t_sent = now;
            t_last_send = now;
            if (flush_out(c) != 0) {
                close_conn(c);
                c->busy = 0;
            }
        }
        /* polls of acked probes */
        for (int i = nconns; i < nconns + napi; ++i) {
            conn_t *c = &conns[i];
            if (c->busy || c->connecting || c->fd < 0)
                continue;
            long pick = -1;
            while (poll_head < nprobes && probes[poll_head].state >= 3)
                poll_head++;
            for (long j = poll_head; j < nprobes && probes[j].state != 0; ++j) {
                if (probes[j].state == 2 && probes[j].next_poll <= now) {
                    pick = j;
                    break;
                }
            }
            if (pick < 0)
                break;
            probes[pick].next_poll = 1e300; /* in flight */
            c->outlen = (size_t)snprintf(c->out, sizeof(c->out),
                                         "GET /v1/users/probe-%06x-%ld/positions/video-000001 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                                         nonce, pick);
            c->outoff = 0;
            c->busy = 1;
            c->item = pick;
            c->t_sent = now;
            polls++;
            if (flush_out(c) != 0) {
                close_conn(c);
                c->busy = 0;
                probes[pick].next_poll = now;
            }
        }
        /* reopen closed connections */
        for (int i = 0; i < nconns + napi; ++i) {
            if (conns[i].fd < 0) {
                reconnects++;
                conns[i].busy = 0;
                if (open_conn(&conns[i]) != 0)
                    conns[i].fd = -1;
            }
        }
        /* done? */
        int pending = 0;
        for (long j = poll_head; j < nprobes; ++j)
            if (probes[j].state == 1 || probes[j].state == 2) {
                if (now - probes[j].t_sched > probe_timeout + 5000) {
                    probes[j].state = 4;
                    continue;
                }
                pending = 1;
            }
        if ((sent >= total && !pending) || now > deadline)
            break;

        int n = epoll_wait(ep, evs, 256, 1);
        for (int k = 0; k < n; ++k) {
            conn_t *c = evs[k].data.ptr;
            if (c->fd < 0)
                continue;
            if (c->connecting) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0) {
                    close_conn(c);
                    continue;
                }
                c->connecting = 0;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (c->outoff < c->outlen && flush_out(c) != 0) {
                close_conn(c);
                continue;
            }
            int eof = 0;
            for (;;) {
                ssize_t r = read(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen);
                if (r > 0) {
                    c->inlen += (size_t)r;
                    if (c->inlen == sizeof(c->in))
                        break;
                    continue;
                }
                if (r == 0 || (errno != EAGAIN && errno != EINTR))
                    eof = 1;
                break;
            }
            if (!c->busy) {
                if (eof)
                    close_conn(c);
                continue;
            }
            int status = 0, closes = 0;
            long used = parse_response(c, eof, &status, &closes);
            if (used == 0 && !eof)
                continue;
            double t = now_ms();
            c->busy = 0;
            if (c->kind == KIND_INGEST) {
                long i = c->item;
                if (used > 0 && status == 202) {
                    ok202++;
                    post_lat[npost++] = t - c->t_sent;
                    if (i % probe_every == 0) {
                        probes[i / probe_every].t_202 = t;
                        probes[i / probe_every].acked = 1;
                        probes[i / probe_every].state = 2;
                        probes[i / probe_every].next_poll = t;
                    }
                } else {
                    non202++;
                    if (i % probe_every == 0)
                        probes[i / probe_every].state = 4;
                }
            } else {
                probe_t *p = &probes[c->item];
                if (used > 0 && status == 200) {
                    p->t_read = t;
                    p->state = 3;
                } else {
                    if (used <= 0 || status != 404)
                        poll_fail++;
                    p->next_poll = t + poll_ms;
                }
            }
            if (used > 0 && (size_t)used < c->inlen) {
                memmove(c->in, c->in + used, c->inlen - (size_t)used);
                c->inlen -= (size_t)used;
            } else {
                c->inlen = 0;
            }
            if (closes || eof || used < 0)
                close_conn(c);
        }
    }
    double elapsed = now_ms() - t0;
    double *e2e = malloc(sizeof(double) * (size_t)nprobes);
    size_t ne = 0;
    long lost = 0, not_acked = 0;
    for (long j = 0; j < nprobes; ++j) {
        if (probes[j].state == 3)
            e2e[ne++] = probes[j].t_read - probes[j].t_202;
        else if (probes[j].acked)
            lost++; /* acknowledged, never readable within the timeout */
        else if (probes[j].state != 0)
            not_acked++;
    }
    qsort(e2e, ne, sizeof(double), cmp_d);
    qsort(post_lat, npost, sizeof(double), cmp_d);
    qsort(send_lag, nlag, sizeof(double), cmp_d);
    printf("{\"offered_rate\":%.0f,\"seconds\":%.1f,\"sent\":%ld,\"achieved_rate\":%.0f,\"accepted\":%ld,\"non_202\":%ld,"
           "\"no_answer\":%ld,\"late\":%ld,\"send_lag_p50_ms\":%.2f,\"send_lag_p99_ms\":%.2f,\"reconnects\":%ld,"
           "\"post_p50_ms\":%.2f,\"post_p99_ms\":%.2f,\"post_p999_ms\":%.2f,"
           "\"probes\":%zu,\"probes_unresolved\":%ld,\"probes_not_acked\":%ld,\"polls\":%ld,\"poll_errors\":%ld,"
           "\"e2e_p50_ms\":%.2f,\"e2e_p90_ms\":%.2f,\"e2e_p99_ms\":%.2f,\"e2e_p999_ms\":%.2f,\"e2e_max_ms\":%.2f}\n",
           rate, secs, sent, sent > 1 ? (double)(sent - 1) * 1e3 / (t_last_send - t0) : 0.0, ok202, non202, sent - ok202 - non202,
           late, pct(send_lag, nlag, 50), pct(send_lag, nlag, 99), reconnects, pct(post_lat, npost, 50), pct(post_lat, npost, 99),
           pct(post_lat, npost, 99.9), ne, lost, not_acked, polls, poll_fail, pct(e2e, ne, 50), pct(e2e, ne, 90), pct(e2e, ne, 99),
           pct(e2e, ne, 99.9), ne ? e2e[ne - 1] : -1.0);
    (void)elapsed;
    return 0;
}
