/*
 * Request and response helpers shared by the HTTP handlers: JSON responses and errors (503 always
 * with Retry-After), cookies and query parameters, and ph_req_link_t, the weak reference that an
 * asynchronous operation keeps to its request so that a late reply for a client that went away is
 * dropped safely.
 */
#ifndef PLAYHEAD_HTTP_H
#define PLAYHEAD_HTTP_H

#include <stddef.h>
#include <h2o.h>

/* Sends `body` (JSON) with `status`. The body is copied into the request's pool. */
void ph_http_send_json(h2o_req_t *req, int status, const char *body, size_t len);
/* Sends {"error": message} with `status`. */
void ph_http_send_error(h2o_req_t *req, int status, const char *message);
/* Sends 503 {"error": message} with Retry-After: retry_after_s. */
void ph_http_send_unavailable(h2o_req_t *req, unsigned retry_after_s, const char *message);
/* Sends a status with an empty body. */
void ph_http_send_empty(h2o_req_t *req, int status);
/* Reason phrase of a status code. */
const char *ph_http_reason(int status);

/* Finds `name` in the list [s, s+len) of "k=v" items separated by `sep`, trimming spaces before an
 * item and after its value; an item without '=' is skipped. Returns 1 and sets *value (pointing
 * into s, not decoded) for the first match, or 0. Pure; any thread. */
int ph_http_find_pair(const char *s, size_t len, char sep, const char *name, h2o_iovec_t *value);
/* Finds cookie `name` in the Cookie headers. Returns 1 and sets *value, or 0. */
int ph_http_cookie(h2o_req_t *req, const char *name, h2o_iovec_t *value);
/* Finds query parameter `name` (not percent-decoded). Returns 1 and sets *value, or 0. */
int ph_http_query(h2o_req_t *req, const char *name, h2o_iovec_t *value);
/* Decodes a query value the way a form is encoded (URLSearchParams): "%XX" is the byte XX and '+'
 * a space. Writes at most `cap` bytes to out and sets *out_len. Returns 0, or -1 for a broken
 * escape ('%' not followed by two hex digits) or a result over `cap`. Pure; any thread. */
int ph_http_pct_decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len);
/* Finds query parameter `name` and decodes it (ph_http_pct_decode) into out. Returns 1 when found
 * and decoded, 0 when absent, -1 when present but not decodable into `cap` bytes. */
int ph_http_query_decoded(h2o_req_t *req, const char *name, char *out, size_t cap, size_t *out_len);

/* A weak reference to a request: `req` becomes NULL when h2o disposes the request (client gone).
 * Call ph_req_link before going asynchronous and ph_req_unlink before freeing the owner of the
 * link (after responding or after the request went away). */
typedef struct ph_req_link_s {
    h2o_req_t *req;
    struct ph_req_guard_s *_guard;
} ph_req_link_t;

void ph_req_link(ph_req_link_t *link, h2o_req_t *req);
void ph_req_unlink(ph_req_link_t *link);

#endif
