/*
 * Who is asking. Today (dev mode) the user named in the request is trusted; authentication plugs
 * in here without touching handlers. Handlers never compare user ids themselves: they ask
 * ph_identity_check for each user they are about to read or write.
 */
#ifndef PLAYHEAD_IDENTITY_H
#define PLAYHEAD_IDENTITY_H

#include <stddef.h>
#include <h2o.h>

typedef enum { PH_ID_OK = 0, PH_ID_UNAUTHENTICATED = 401, PH_ID_FORBIDDEN = 403 } ph_identity_result_t;

typedef enum { PH_ACCESS_READ, PH_ACCESS_WRITE } ph_access_t;

/* May the caller of `req` access `user`? On a non-OK result the handler answers with that status
 * (ph_identity_reject does it with the right headers and body) and writes nothing. */
ph_identity_result_t ph_identity_check(h2o_req_t *req, const char *user, size_t user_len, ph_access_t access);
void ph_identity_reject(h2o_req_t *req, ph_identity_result_t result);

/* The user of the reference-compatible cookie routes: the `user_id` cookie. Returns 1 and sets
 * *user, or 0 when there is none (400 on those routes). */
int ph_identity_cookie_user(h2o_req_t *req, h2o_iovec_t *user);

#endif
