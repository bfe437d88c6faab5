/*
 * Response and request helpers for the h2o handlers (see http_.h).
 */
#include <stdio.h>
#include <string.h>
#include "playhead/http_.h"
#include "playhead/json_.h"

const char *ph_http_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

void ph_http_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = ph_http_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    /* h2o_send_inline leaves the length unset; h2o 2.2.5 then answers non-200 statuses chunked and
     * closes the connection after them, which costs every 202 a new TCP connection */
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void ph_http_send_error(h2o_req_t *req, int status, const char *message)
{
    ph_buf_t b = {0};
    ph_buf_lit(&b, "{\"error\":");
    ph_buf_json_str(&b, message, strlen(message));
    ph_buf_lit(&b, "}");
    ph_http_send_json(req, status, b.data, b.len);
    ph_buf_free(&b);
}

void ph_http_send_unavailable(h2o_req_t *req, unsigned retry_after_s, const char *message)
{
    char secs[16];
    int n = snprintf(secs, sizeof(secs), "%u", retry_after_s);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, secs, (size_t)n).base,
                   (size_t)n);
    ph_http_send_error(req, 503, message);
}

void ph_http_send_empty(h2o_req_t *req, int status)
{
    req->res.status = status;
    req->res.reason = ph_http_reason(status);
    req->res.content_length = 0;
    h2o_send_inline(req, "", 0);
}

int ph_http_find_pair(const char *s, size_t len, char sep, const char *name, h2o_iovec_t *value)
{
    size_t name_len = strlen(name), i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ')
            ++i;
        size_t start = i;
        while (i < len && s[i] != sep)
            ++i;
        size_t end = i;
        if (i < len)
            ++i;
        const char *eq = memchr(s + start, '=', end - start);
        if (eq == NULL)
            continue;
        size_t klen = (size_t)(eq - (s + start));
        if (klen == name_len && memcmp(s + start, name, name_len) == 0) {
            size_t vstart = (size_t)(eq - s) + 1, vend = end;
            while (vend > vstart && s[vend - 1] == ' ')
                --vend;
            *value = h2o_iovec_init(s + vstart, vend - vstart);
            return 1;
        }
    }
    return 0;
}

int ph_http_cookie(h2o_req_t *req, const char *name, h2o_iovec_t *value)
{
    ssize_t cursor = -1;
    while ((cursor = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, cursor)) != -1) {
        const h2o_iovec_t *v = &req->headers.entries[cursor].value;
        if (ph_http_find_pair(v->base, v->len, ';', name, value))
            return 1;
    }
    return 0;
}

int ph_http_query(h2o_req_t *req, const char *name, h2o_iovec_t *value)
{
    if (req->query_at == SIZE_MAX)
        return 0;
    const char *q = req->path.base + req->query_at + 1;
    size_t len = req->path.len - req->query_at - 1;
    return ph_http_find_pair(q, len, '&', name, value);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ph_http_pct_decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; ++i) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hex_value(s[i + 1])) < 0 || (lo = hex_value(s[i + 2])) < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (n == cap)
            return -1;
        out[n++] = c;
    }
    *out_len = n;
    return 0;
}

int ph_http_query_decoded(h2o_req_t *req, const char *name, char *out, size_t cap, size_t *out_len)
{
    h2o_iovec_t raw;
    if (!ph_http_query(req, name, &raw))
        return 0;
    return ph_http_pct_decode(raw.base, raw.len, out, cap, out_len) == 0 ? 1 : -1;
}

struct ph_req_guard_s {
    ph_req_link_t *link;
};

static void guard_dispose(void *p)
{
    struct ph_req_guard_s *guard = p;
    if (guard->link != NULL) {
        guard->link->req = NULL;
        guard->link->_guard = NULL;
    }
}

void ph_req_link(ph_req_link_t *link, h2o_req_t *req)
{
    struct ph_req_guard_s *guard = h2o_mem_alloc_shared(&req->pool, sizeof(*guard), guard_dispose);
    guard->link = link;
    link->req = req;
    link->_guard = guard;
}

void ph_req_unlink(ph_req_link_t *link)
{
    if (link->_guard != NULL)
        link->_guard->link = NULL;
    link->_guard = NULL;
    link->req = NULL;
}
