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

/* READ: own user, or any user with the `admin` scope. WRITE: own user only. ERASE (erasing a
 * user's data): own user, or any user with the `admin` scope. */
typedef enum { PH_ACCESS_READ, PH_ACCESS_WRITE, PH_ACCESS_ERASE } ph_access_t;

typedef enum { PH_AUTH_JWT = 0, PH_AUTH_DEV } ph_auth_mode_t;

/* How callers are authenticated; one per process, read-only once the loops run. */
typedef struct ph_auth_s {
    ph_auth_mode_t mode;
    unsigned char secret[512]; /* HS256 key */
    size_t secret_len;
    long leeway_s; /* tolerated clock skew for exp */
} ph_auth_t;

/* Sets up `auth` from the options: mode "jwt" or "dev"; the secret from the environment variable
 * PLAYHEAD_JWT_SECRET or from `secret_file` (first line, trailing newline dropped). jwt without a
 * secret is an error ("refuse to start"); dev logs a warning. Returns 0 or -1 with errstr. */
int ph_auth_init(ph_auth_t *auth, const char *mode, const char *secret_file, char *errstr, size_t errstr_size);

/* Checks a bearer token: HS256 only, a valid signature, exp present and not past (with leeway).
 * On success copies `sub` into sub (cap >= PH_ID_MAX+1), sets *admin when `scope` has "admin",
 * and returns 0; -1 otherwise. Thread-safe; no state. */
int ph_auth_verify(const ph_auth_t *auth, const char *token, size_t token_len, int64_t now_s, char *sub, size_t sub_cap,
                   int *admin);

/* May the caller of `req` access `user`? In dev mode, always. With JWT: 401 without a valid
 * bearer token, 403 when `user` is not the token's sub (reads of any user are allowed to a token
 * whose scope has "admin"). On a non-OK result the handler answers with that status
 * (ph_identity_reject does it with the right headers and body) and writes nothing. */
ph_identity_result_t ph_identity_check(h2o_req_t *req, const char *user, size_t user_len, ph_access_t access);
void ph_identity_reject(h2o_req_t *req, ph_identity_result_t result);

/* The user of the reference-compatible cookie routes: the `user_id` cookie. Returns 1 and sets
 * *user, or 0 when there is none (400 on those routes). With JWT and no cookie, the token's user
 * is taken (a cookie that disagrees with the token then fails ph_identity_check with 403). */
int ph_identity_cookie_user(h2o_req_t *req, h2o_iovec_t *user);

#endif
