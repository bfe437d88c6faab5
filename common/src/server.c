/*
 * The HTTP server of ingest and api (see server.h): one thread per loop, each with its own libuv
 * loop, h2o context and SO_REUSEPORT listener, so requests never cross threads or take a lock.
 * Also the router (method + path pattern -> handler, patterns matched by route.c, 404/405 with
 * Allow) and the graceful stop. SIGTERM/SIGINT first stops new connections without closing the
 * listeners (closing a listener resets the connections in its accept queue, whose clients may have
 * sent their request already): a socket filter drops new SYNs, so a client retries its SYN and is
 * refused once the listener is gone, before it could send a byte. What is queued is still accepted
 * and answered with Connection: close; a listener closes once its accept queue is empty and
 * PH_ACCEPT_SETTLE_MS have passed. Then the stop waits for in-flight requests (ph_loop_t.inflight)
 * and the program's own flush, then for client connections to close, each bounded by
 * shutdown_grace_ms.
 */
#include <errno.h>
#include <stdatomic.h>
#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <unistd.h>
#include "playhead/server.h"
#include "playhead/http_.h"
#include "playhead/json_.h"
#include "playhead/log.h"
#include "playhead/time_.h"

#define PH_LISTEN_BACKLOG 1024

#if defined(__SANITIZE_ADDRESS__)
/* h2o keeps freed chunks in thread-local recyclers; once a loop thread exits they look leaked. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:h2o_mem_alloc_recycle\n";
}
#endif

typedef enum { STOP_NONE, STOP_ACCEPT, STOP_REQUESTS, STOP_PROGRAM, STOP_CONNECTIONS, STOP_DONE } stop_phase_t;

typedef struct loop_priv_s {
    uv_signal_t sigterm, sigint; /* loop 0 only */
    int listen_fd;
    uint64_t connections;
    stop_phase_t phase;
    uint64_t phase_deadline;
    uint64_t settle_until; /* STOP_ACCEPT: the listener stays open at least until then */
    int forced;
} loop_priv_t;

typedef struct ph_loop_slot_s {
    ph_loop_t loop;
    loop_priv_t priv;
} loop_slot_t;

static loop_priv_t *priv_of(ph_loop_t *loop)
{
    return &H2O_STRUCT_FROM_MEMBER(loop_slot_t, loop, loop)->priv;
}

/* ---------------------------------------------------------------- routing */

/* 1 when `origin` is in the comma-separated allow-list; *wildcard set when it matched "*". */
static int cors_allowed(const char *list, h2o_iovec_t origin, int *wildcard)
{
    *wildcard = 0;
    for (const char *p = list; p != NULL && *p != '\0';) {
        while (*p == ' ' || *p == ',')
            ++p;
        const char *end = p + strcspn(p, ", ");
        size_t len = (size_t)(end - p);
        if (len == 1 && *p == '*') {
            *wildcard = 1;
            return 1;
        }
        if (len != 0 && h2o_memis(p, len, origin.base, origin.len))
            return 1;
        p = end;
    }
    return 0;
}

/* Adds the CORS response headers for an allowed Origin. Returns 1 when the origin is allowed. */
static int add_cors_headers(ph_server_t *server, h2o_req_t *req)
{
    ssize_t i;
    int wildcard;
    if (server->cors_origins == NULL || (i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1)) == -1)
        return 0;
    h2o_iovec_t origin = req->headers.entries[i].value;
    if (!cors_allowed(server->cors_origins, origin, &wildcard))
        return 0;
    if (wildcard) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    } else {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-credentials"), 0, NULL,
                              H2O_STRLIT("true"));
    }
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-expose-headers"), 0, NULL,
                          H2O_STRLIT("Retry-After"));
    return 1;
}

#define PH_QUERY_MAX 2048

/* Bodies of POST, PUT, PATCH and DELETE must be JSON: application/json or any +json type. */
static int body_is_json(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i == -1)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t len = 0;
    while (len < v.len && v.base[len] != ';' && v.base[len] != ' ')
        ++len;
    if (h2o_lcstris(v.base, len, H2O_STRLIT("application/json")))
        return 1;
    return len > 5 && h2o_lcstris(v.base + len - 5, 5, H2O_STRLIT("+json")) && h2o_lcstris(v.base, 12, H2O_STRLIT("application/"));
}

/* Request-wide limits checked before routing. Returns 1 after answering. */
static int reject_request(h2o_req_t *req)
{
    if (req->query_at != SIZE_MAX && req->path.len - req->query_at > PH_QUERY_MAX) {
        ph_http_send_error(req, 414, "query string longer than 2048 bytes");
        return 1;
    }
    if (req->entity.base != NULL && req->entity.len > 0 && !body_is_json(req)) {
        ph_http_send_error(req, 415, "the body must be JSON (Content-Type: application/json)");
        return 1;
    }
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    ph_loop_t *loop = ph_loop_of(req);
    const ph_route_t *routes = loop->server->routes;
    ph_params_t params;
    char allow[128];
    size_t allow_len = 0;
    int cors = add_cors_headers(loop->server, req);
    int preflight = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS"));

    for (const ph_route_t *r = routes; r->method != NULL; ++r) {
        if (!ph_route_match(r->pattern, req->path_normalized.base, req->path_normalized.len, &params))
            continue;
        if (!preflight && h2o_memis(req->method.base, req->method.len, r->method, strlen(r->method)))
            return reject_request(req) ? 0 : r->fn(loop, req, &params);
        size_t mlen = strlen(r->method);
        if (allow_len + mlen + 2 < sizeof(allow) && !(allow_len && strstr(allow, r->method))) {
            if (allow_len) {
                memcpy(allow + allow_len, ", ", 2);
                allow_len += 2;
            }
            memcpy(allow + allow_len, r->method, mlen);
            allow_len += mlen;
            allow[allow_len] = '\0';
        }
    }
    if (allow_len != 0 && preflight) {
        /* CORS preflight: answered for allowed origins only, with the methods of this path */
        if (cors) {
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                                  h2o_strdup(&req->pool, allow, allow_len).base, allow_len);
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                                  H2O_STRLIT("Content-Type, Authorization"));
            h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL, H2O_STRLIT("600"));
            ph_http_send_empty(req, 204);
        } else {
            ph_http_send_error(req, 403, "origin not allowed");
        }
    } else if (allow_len != 0) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, h2o_strdup(&req->pool, allow, allow_len).base,
                       allow_len);
        ph_http_send_error(req, 405, "method not allowed");
    } else {
        ph_http_send_error(req, 404, "not found");
    }
    return 0;
}

/* ---------------------------------------------------------------- errors h2o answers itself */

/* h2o answers a few errors before any handler runs (413 for a body over max_body, by Content-Length
 * or while reading a chunked body; 400 for a broken body encoding; 417) with a text/plain body, on
 * the host's fallback path. This filter, registered there, gives them the {"error": ...} body that
 * every other answer of the API has. h2o sends such a body in one piece. */
static void json_error_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt, h2o_send_state_t state)
{
    if (bufcnt == 0) { /* HEAD */
        h2o_ostream_send_next(self, req, bufs, bufcnt, state);
        return;
    }
    h2o_iovec_t text = h2o_concat_list(&req->pool, bufs, bufcnt);
    ph_buf_t b = {0};
    ph_buf_lit(&b, "{\"error\":");
    ph_buf_json_str(&b, text.base, text.len);
    ph_buf_lit(&b, "}");
    h2o_iovec_t body = h2o_strdup(&req->pool, b.data, b.len);
    ph_buf_free(&b);
    req->res.content_length = body.len; /* the headers are not written yet */
    h2o_ostream_send_next(self, req, &body, 1, state);
}

static void on_setup_json_errors(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (req->res.status >= 400 && i != -1 &&
        h2o_memis(req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len,
                  H2O_STRLIT("text/plain; charset=utf-8"))) {
        req->res.headers.entries[i].value = h2o_iovec_init(H2O_STRLIT("application/json"));
        h2o_ostream_t *ostr = h2o_add_ostream(req, sizeof(*ostr), slot);
        ostr->do_send = json_error_send;
        slot = &ostr->next;
    }
    h2o_setup_next_ostream(req, slot);
}

/* ---------------------------------------------------------------- metrics */

static const int tracked_statuses[] = {200, 201, 202, 204, 302, 304, 400, 401, 403, 404, 405, 408, 413, 414, 415, 429, 500, 503};
#define NSTATUS (sizeof(tracked_statuses) / sizeof(tracked_statuses[0]))

typedef struct ph_route_metrics_s {
    ph_histogram_t *latency;
    ph_counter_t *requests[NSTATUS + 1]; /* the last: any other status */
} route_metrics_t;

static void register_route_metrics(ph_server_t *server)
{
    size_t n = 0;
    while (server->routes[n].method != NULL)
        ++n;
    if ((server->_route_metrics = calloc(n + 1, sizeof(*server->_route_metrics))) == NULL)
        abort();
    for (size_t r = 0; r <= n; ++r) {
        char route[256], labels[384];
        if (r < n)
            ph_metrics_escape(route, sizeof(route), server->routes[r].pattern);
        snprintf(labels, sizeof(labels), "method=\"%s\",route=\"%s\"", r < n ? server->routes[r].method : "other",
                 r < n ? route : "other");
        route_metrics_t *rm = &server->_route_metrics[r];
        rm->latency = ph_metrics_histogram(server->metrics, "playhead_http_request_duration_seconds",
                                           "Time from the start of a request to the end of its response.", labels,
                                           PH_LATENCY_BOUNDS, PH_LATENCY_NBOUNDS);
        for (size_t i = 0; i <= NSTATUS; ++i) {
            char series[448], status[8];
            snprintf(status, sizeof(status), i < NSTATUS ? "%d" : "other", i < NSTATUS ? tracked_statuses[i] : 0);
            snprintf(series, sizeof(series), "%s,status=\"%s\"", labels, status);
            rm->requests[i] =
                ph_metrics_counter(server->metrics, "playhead_http_requests_total", "HTTP requests answered.", series);
        }
    }
}

static void on_log_access(h2o_logger_t *self, h2o_req_t *req)
{
    (void)self;
    ph_server_t *server = ph_loop_of(req)->server;
    if (server->_route_metrics == NULL)
        return;
    const ph_route_t *r = server->routes;
    ph_params_t params;
    size_t i = 0;
    for (; r[i].method != NULL; ++i)
        if (h2o_memis(req->method.base, req->method.len, r[i].method, strlen(r[i].method)) &&
            ph_route_match(r[i].pattern, req->path_normalized.base, req->path_normalized.len, &params))
            break;
    route_metrics_t *rm = &server->_route_metrics[i];
    size_t s = 0;
    while (s < NSTATUS && tracked_statuses[s] != req->res.status)
        ++s;
    ph_counter_add(rm->requests[s], 1);
    int64_t usec;
    if (h2o_time_compute_duration(req, &usec))
        ph_histogram_observe(rm->latency, (double)usec / 1e6);
}

int ph_server_handle_healthz(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)loop, (void)params;
    static const char body[] = "{\"status\":\"ok\"}";
    ph_http_send_json(req, 200, body, sizeof(body) - 1);
    return 0;
}

int ph_server_handle_metrics(ph_loop_t *loop, h2o_req_t *req, const ph_params_t *params)
{
    (void)params;
    ph_buf_t b = {0};
    if (loop->server->metrics != NULL)
        ph_metrics_render(loop->server->metrics, &b);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; version=0.0.4"));
    h2o_send_inline(req, b.data ? b.data : "", b.len);
    ph_buf_free(&b);
    return 0;
}

/* ---------------------------------------------------------------- accepting */

static void on_conn_close(uv_handle_t *handle)
{
    ph_loop_t *loop = H2O_STRUCT_FROM_MEMBER(ph_loop_t, uv, handle->loop);
    priv_of(loop)->connections--;
    free(handle);
}

static void on_accept(uv_stream_t *listener, int status)
{
    ph_loop_t *loop = listener->data;
    if (status != 0) /* while stopping too: what is in the accept queue is accepted and answered */
        return;
    uv_tcp_t *conn = malloc(sizeof(*conn));
    if (conn == NULL)
        return;
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, (uv_close_cb)free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    priv_of(loop)->connections++;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_conn_close);
    h2o_accept(&loop->accept_ctx, sock);
}

static int open_listener(const char *addr, int probe, char *errstr, size_t errstr_size)
{
    char host[256], port[16];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host) || strlen(colon + 1) >= sizeof(port)) {
        snprintf(errstr, errstr_size, "option listen: '%s' is not host:port", addr);
        return -1;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    strcpy(port, colon + 1);
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        snprintf(errstr, errstr_size, "option listen: cannot resolve '%s': %s", addr, gai_strerror(gai));
        return -1;
    }
    int fd, on = 1;
    if (probe) {
        /* SO_REUSEPORT would let this process share a port with a stale instance and split the
         * traffic between them: first make sure nobody holds the port */
        fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int busy = fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
                   bind(fd, res->ai_addr, res->ai_addrlen) != 0;
        if (busy)
            snprintf(errstr, errstr_size, "option listen: cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        if (busy) {
            freeaddrinfo(res);
            return -1;
        }
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(fd, PH_LISTEN_BACKLOG) != 0) {
        snprintf(errstr, errstr_size, "option listen: cannot listen on %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* ---------------------------------------------------------------- stopping */

static void close_if_open(uv_handle_t *h)
{
    if (h->loop != NULL && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_loop(ph_loop_t *loop)
{
    loop_priv_t *priv = priv_of(loop);
    priv->phase = STOP_DONE;
    if (priv->forced) {
        /* connections still open after the grace period: leave them to the process exit */
        uv_stop(&loop->uv);
        return;
    }
    if (loop->server->on_loop_dispose != NULL)
        loop->server->on_loop_dispose(loop);
    h2o_context_dispose(&loop->h2o);
    close_if_open((uv_handle_t *)&loop->_drain_timer);
    close_if_open((uv_handle_t *)&loop->stop_async);
    if (loop->index == 0) {
        close_if_open((uv_handle_t *)&priv->sigterm);
        close_if_open((uv_handle_t *)&priv->sigint);
    }
}

/* Drops every TCP segment that opens a connection (SYN without ACK) and lets all others through,
 * so handshakes already under way still complete into the accept queue. A dropped SYN is retried
 * by the client (after 1 s, then 3 s...), by which time the listener is closed and the client is
 * refused before it could send anything. On a TCP socket's receive path the filter sees the
 * segment from its TCP header on: byte 13 holds the flags. */
static int stop_new_connections(int fd)
{
    static struct sock_filter drop_syn[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 13),           /* the TCP flags */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x10, 2, 0), /* ACK: accept */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x02, 0, 1), /* SYN: drop */
        BPF_STMT(BPF_RET | BPF_K, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
    };
    struct sock_fprog prog = {.len = sizeof(drop_syn) / sizeof(drop_syn[0]), .filter = drop_syn};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

/* Connections in a listener's accept queue (Linux: TCP_INFO's tcpi_unacked on a listening socket),
 * or -1 when unknown. */
static long accept_queue_len(uv_tcp_t *listener)
{
    uv_os_fd_t fd;
    struct tcp_info info;
    socklen_t len = sizeof(info);
    if (uv_fileno((uv_handle_t *)listener, &fd) != 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        return -1;
    return (long)info.tcpi_unacked;
}

/* Requests already read but not answered yet are told Connection: close too (h2o reads the flag
 * when it writes the response headers; those parsed from now on get it from shutdown_requested). */
static int close_after_response(h2o_req_t *req, void *cbdata)
{
    (void)cbdata;
    if (req->res.status == 0)
        req->http1_is_persistent = 0;
    return 0;
}

static void on_drain_timer(uv_timer_t *timer)
{
    ph_loop_t *loop = H2O_STRUCT_FROM_MEMBER(ph_loop_t, _drain_timer, timer);
    loop_priv_t *priv = priv_of(loop);
    uint64_t now = ph_mono_ms();
    int expired = now >= priv->phase_deadline;

    switch (priv->phase) {
    case STOP_ACCEPT: {
        if (now < priv->settle_until)
            return;
        long queued = accept_queue_len(&loop->listener);
        if (queued > 0 && !expired)
            return; /* libuv accepts them on this loop's next turn */
        if (queued > 0)
            ph_log_warn("shutdown: connections still queued when the listener closed (reset)", "\"queued\":%ld", queued);
        close_if_open((uv_handle_t *)&loop->listener);
        priv->phase = STOP_REQUESTS;
        priv->phase_deadline = now + loop->server->shutdown_grace_ms;
        return;
    }
    case STOP_REQUESTS:
        if (loop->inflight != 0 && !expired)
            return;
        if (loop->inflight != 0)
            ph_log_warn("shutdown: in-flight requests did not finish in time", "\"inflight\":%llu",
                        (unsigned long long)loop->inflight);
        priv->phase = STOP_PROGRAM;
        priv->phase_deadline = now + loop->server->shutdown_grace_ms;
        if (loop->server->on_loop_stop != NULL)
            loop->server->on_loop_stop(loop);
        return;
    case STOP_PROGRAM:
        if (loop->inflight != 0 && !expired)
            return;
        priv->phase = STOP_CONNECTIONS;
        priv->phase_deadline = now + loop->server->shutdown_grace_ms;
        return;
    case STOP_CONNECTIONS:
        if (priv->connections != 0 && !expired)
            return;
        if (priv->connections != 0 || loop->inflight != 0)
            priv->forced = 1;
        uv_timer_stop(timer);
        finish_loop(loop);
        return;
    default:
        return;
    }
}

static void on_stop_async(uv_async_t *async)
{
    ph_loop_t *loop = H2O_STRUCT_FROM_MEMBER(ph_loop_t, stop_async, async);
    loop_priv_t *priv = priv_of(loop);
    if (loop->stopping)
        return;
    loop->stopping = 1;
    uint64_t now = ph_mono_ms();
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&loop->listener, &fd) != 0 || stop_new_connections(fd) != 0)
        ph_log_warn("shutdown: cannot filter new connections; they are accepted until the listener closes", "\"error\":\"%s\"",
                    strerror(errno));
    /* what h2o_context_request_shutdown does for HTTP/1 (the rest of it arms HTTP/2 timers, which
     * h2o_context_dispose would find linked): requests parsed from now on get Connection: close */
    loop->h2o.shutdown_requested = 1;
    loop->h2o.globalconf->http1.callbacks.foreach_request(&loop->h2o, close_after_response, NULL);
    priv->phase = STOP_ACCEPT;
    priv->settle_until = now + PH_ACCEPT_SETTLE_MS;
    priv->phase_deadline = now + loop->server->shutdown_grace_ms;
    uv_timer_start(&loop->_drain_timer, on_drain_timer, 0, 10);
}

static void stop_all(ph_server_t *server)
{
    for (unsigned i = 0; i < server->threads; ++i)
        uv_async_send(&server->_slots[i].loop.stop_async);
}

void ph_server_stop(ph_server_t *server)
{
    atomic_store(&server->_stop_requested, 1);
    if (atomic_load(&server->_running))
        stop_all(server);
}

static void on_signal(uv_signal_t *sig, int signum)
{
    ph_server_t *server = sig->data;
    static int signalled;
    if (signalled++) {
        ph_log_warn("second signal: exiting at once", "\"signal\":%d", signum);
        _exit(1);
    }
    ph_log_info("shutting down", "\"signal\":%d", signum);
    stop_all(server);
}

/* ---------------------------------------------------------------- loops */

/* Sets up a loop's handles; done on the main thread before any loop runs, so that stop_all may
 * signal any loop from the moment the first one runs. */
static int init_loop(ph_loop_t *loop, char *errstr, size_t errstr_size)
{
    ph_server_t *server = loop->server;
    loop_priv_t *priv = priv_of(loop);

    uv_loop_init(&loop->uv);
    h2o_context_init(&loop->h2o, &loop->uv, &server->_h2o);
    loop->accept_ctx.ctx = &loop->h2o;
    loop->accept_ctx.hosts = server->_h2o.hosts;
    uv_async_init(&loop->uv, &loop->stop_async, on_stop_async);
    uv_timer_init(&loop->uv, &loop->_drain_timer);
    uv_tcp_init(&loop->uv, &loop->listener);
    loop->listener.data = loop;
    if (loop->index == 0) {
        uv_signal_init(&loop->uv, &priv->sigterm);
        uv_signal_init(&loop->uv, &priv->sigint);
        priv->sigterm.data = priv->sigint.data = server;
        uv_signal_start(&priv->sigterm, on_signal, SIGTERM);
        uv_signal_start(&priv->sigint, on_signal, SIGINT);
    }
    int err = uv_tcp_open(&loop->listener, priv->listen_fd);
    if (err == 0)
        err = uv_listen((uv_stream_t *)&loop->listener, PH_LISTEN_BACKLOG, on_accept);
    if (err != 0) {
        snprintf(errstr, errstr_size, "option listen: %s: %s", server->listen, uv_strerror(err));
        return -1;
    }
    return 0;
}

static void run_loop(ph_loop_t *loop)
{
    ph_server_t *server = loop->server;
    if (server->on_loop_init != NULL && server->on_loop_init(loop) != 0) {
        server->_exit_code = 1;
        stop_all(server);
    }
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    if (!priv_of(loop)->forced)
        uv_loop_close(&loop->uv);
}

static void *thread_main(void *arg)
{
    run_loop(arg);
    return NULL;
}

int ph_server_run(ph_server_t *server, char *errstr, size_t errstr_size)
{
    int ret = 1;
    unsigned i, opened = 0;
    pthread_t *threads = NULL;

    signal(SIGPIPE, SIG_IGN);
    if (server->threads == 0)
        server->threads = 1;
    h2o_config_init(&server->_h2o);
    server->_h2o.max_request_entity_size = server->max_body;
    server->_h2o.http1.req_timeout = 10000; /* idle and slow clients get 10 s for a whole request */
    server->_h2o.http2.idle_timeout = 10000;
    server->_h2o.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *hostconf = h2o_config_register_host(&server->_h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_create_filter(&hostconf->fallback_path, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_json_errors;
    /* h2o takes the first registered path that matches: the static prefix goes before "/" */
    if (server->static_dir != NULL && server->static_dir[0] != '\0')
        h2o_file_register(h2o_config_register_path(hostconf, server->static_prefix, 0), server->static_dir, NULL, NULL, 0);
    h2o_pathconf_t *root = h2o_config_register_path(hostconf, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(root, sizeof(*handler));
    handler->on_req = on_req;
    if (server->metrics != NULL) {
        register_route_metrics(server);
        h2o_create_logger(root, sizeof(h2o_logger_t))->log_access = on_log_access;
    }

    if ((server->_slots = calloc(server->threads, sizeof(*server->_slots))) == NULL ||
        (threads = calloc(server->threads, sizeof(*threads))) == NULL)
        abort();
    for (i = 0; i < server->threads; ++i) {
        loop_slot_t *slot = &server->_slots[i];
        slot->loop.server = server;
        slot->loop.index = i;
        if ((slot->priv.listen_fd = open_listener(server->listen, i == 0, errstr, errstr_size)) < 0)
            goto Exit;
        ++opened;
    }
    for (i = 0; i < server->threads; ++i) {
        if (init_loop(&server->_slots[i].loop, errstr, errstr_size) != 0)
            abort(); /* the fd was just opened and bound: only a libuv bug gets here */
    }
    ph_log_info("listening", "\"listen\":\"%s\",\"threads\":%u", server->listen, server->threads);
    atomic_store(&server->_running, 1);
    if (atomic_load(&server->_stop_requested))
        stop_all(server);
    /* loop 0 runs on this thread (it owns the signal handlers); the others get their own */
    for (i = 1; i < server->threads; ++i)
        if (pthread_create(&threads[i], NULL, thread_main, &server->_slots[i].loop) != 0)
            abort();
    run_loop(&server->_slots[0].loop);
    for (i = 1; i < server->threads; ++i)
        pthread_join(threads[i], NULL);
    atomic_store(&server->_running, 0);
    ret = server->_exit_code;
    for (i = 0; i < server->threads; ++i)
        if (server->_slots[i].priv.forced)
            goto Forced;
    opened = 0; /* uv_tcp_open took the fds; closing the handles closed them */
Exit:
    for (i = 0; i < opened; ++i)
        close(server->_slots[i].priv.listen_fd);
    free(server->_slots);
    server->_slots = NULL;
    free(threads);
    h2o_config_dispose(&server->_h2o);
    free(server->_route_metrics);
    server->_route_metrics = NULL;
    return ret;
Forced:
    /* some loop still had open connections or work: its memory is left to the process exit; what
     * no loop references any more is freed */
    free(threads);
    free(server->_route_metrics);
    server->_route_metrics = NULL;
    return ret;
}
