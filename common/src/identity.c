/*
 * Identity (see identity.h): who is calling, and may they touch this user's data. JWT (HS256,
 * verified by libjwt) in production; in development mode the user named in the request is trusted.
 * Handlers only call ph_identity_check / ph_identity_cookie_user, so this file is the whole policy.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jwt.h>
#include "playhead/event.h"
#include "playhead/http_.h"
#include "playhead/identity.h"
#include "playhead/log.h"
#include "playhead/server.h"
#include "playhead/time_.h"

#define PH_TOKEN_MAX 4096

int ph_auth_init(ph_auth_t *auth, const char *mode, const char *secret_file, char *errstr, size_t errstr_size)
{
    memset(auth, 0, sizeof(*auth));
    auth->leeway_s = 30;
    if (strcmp(mode, "dev") == 0) {
        auth->mode = PH_AUTH_DEV;
        ph_log_warn("development mode (--auth=dev): requests are trusted to name their own user; never expose this", NULL);
        return 0;
    }
    if (strcmp(mode, "jwt") != 0) {
        snprintf(errstr, errstr_size, "option auth: '%s' is not jwt or dev", mode);
        return -1;
    }
    auth->mode = PH_AUTH_JWT;
    const char *env = getenv("PLAYHEAD_JWT_SECRET");
    if (env != NULL && env[0] != '\0') {
        auth->secret_len = strlen(env);
        if (auth->secret_len > sizeof(auth->secret)) {
            snprintf(errstr, errstr_size, "PLAYHEAD_JWT_SECRET: longer than %zu bytes", sizeof(auth->secret));
            return -1;
        }
        memcpy(auth->secret, env, auth->secret_len);
    } else if (secret_file != NULL && secret_file[0] != '\0') {
        FILE *f = fopen(secret_file, "r");
        if (f == NULL) {
            snprintf(errstr, errstr_size, "option jwt-secret-file: cannot open %s: %s", secret_file, strerror(errno));
            return -1;
        }
        char line[sizeof(auth->secret) + 2];
        size_t n = fgets(line, sizeof(line), f) ? strcspn(line, "\r\n") : 0;
        fclose(f);
        if (n > sizeof(auth->secret)) {
            snprintf(errstr, errstr_size, "option jwt-secret-file: %s: longer than %zu bytes", secret_file, sizeof(auth->secret));
            return -1;
        }
        memcpy(auth->secret, line, n);
        auth->secret_len = n;
    }
    if (auth->secret_len == 0) {
        snprintf(errstr, errstr_size,
                 "option auth: jwt needs a secret (PLAYHEAD_JWT_SECRET or --jwt-secret-file); use --auth=dev for development");
        return -1;
    }
    if (auth->secret_len < 32)
        ph_log_warn("the JWT secret is shorter than 32 bytes", NULL);
    return 0;
}

/* 1 when the space-separated scope string holds "admin". */
static int scope_has_admin(const char *scope)
{
    for (const char *p = scope; p != NULL && *p != '\0';) {
        p += strspn(p, " ");
        size_t len = strcspn(p, " ");
        if (len == 5 && memcmp(p, "admin", 5) == 0)
            return 1;
        p += len;
    }
    return 0;
}

/* 1 when [s, s+len) has the compact form: three non-empty base64url parts joined by dots. libjwt
 * reads the token as a C string and decodes base64 leniently, so anything else (a NUL would hide
 * the bytes after it from the signature check) is refused before it. */
static int token_well_formed(const char *s, size_t len)
{
    size_t dots = 0, part = 0;
    for (size_t i = 0; i < len; ++i) {
        char c = s[i];
        if (c == '.') {
            if (part == 0 || ++dots > 2)
                return 0;
            part = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            ++part;
        } else {
            return 0;
        }
    }
    return dots == 2 && part != 0;
}

int ph_auth_verify(const ph_auth_t *auth, const char *token, size_t token_len, int64_t now_s, char *sub, size_t sub_cap, int *admin)
{
    char buf[PH_TOKEN_MAX + 1];
    jwt_t *jwt = NULL;
    int ret = -1;
    if (token_len == 0 || token_len > PH_TOKEN_MAX || !token_well_formed(token, token_len))
        return -1;
    memcpy(buf, token, token_len);
    buf[token_len] = '\0';
    if (jwt_decode(&jwt, buf, auth->secret, (int)auth->secret_len) != 0 || jwt == NULL)
        goto Exit;
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) /* never "none", nor any algorithm we did not choose */
        goto Exit;
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0 || exp < now_s - auth->leeway_s) /* not exp + leeway: exp is the token's, it may be LONG_MAX */
        goto Exit;
    const char *s = jwt_get_grant(jwt, "sub");
    if (s == NULL || !ph_id_valid(s, strlen(s)) || strlen(s) >= sub_cap)
        goto Exit;
    strcpy(sub, s);
    *admin = scope_has_admin(jwt_get_grant(jwt, "scope"));
    ret = 0;
Exit:
    if (jwt != NULL)
        jwt_free(jwt);
    return ret;
}

static const ph_auth_t *auth_of(h2o_req_t *req)
{
    const ph_auth_t *auth = ph_loop_of(req)->server->auth;
    return auth != NULL && auth->mode == PH_AUTH_JWT ? auth : NULL;
}

/* The caller's user from the Authorization header. Returns 0, or -1 without a valid token. */
static int bearer_user(h2o_req_t *req, const ph_auth_t *auth, char *sub, size_t cap, int *admin)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i == -1)
        return -1;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
        return -1;
    return ph_auth_verify(auth, v.base + 7, v.len - 7, ph_now_ms() / 1000, sub, cap, admin);
}

ph_identity_result_t ph_identity_check(h2o_req_t *req, const char *user, size_t user_len, ph_access_t access)
{
    const ph_auth_t *auth = auth_of(req);
    char sub[PH_ID_MAX + 1];
    int admin = 0;
    if (auth == NULL)
        return PH_ID_OK;
    if (bearer_user(req, auth, sub, sizeof(sub), &admin) != 0)
        return PH_ID_UNAUTHENTICATED;
    if (strlen(sub) == user_len && memcmp(sub, user, user_len) == 0)
        return PH_ID_OK;
    return admin && access != PH_ACCESS_WRITE ? PH_ID_OK : PH_ID_FORBIDDEN;
}

void ph_identity_reject(h2o_req_t *req, ph_identity_result_t result)
{
    if (result == PH_ID_UNAUTHENTICATED) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        ph_http_send_error(req, 401, "a valid bearer token is required");
    } else {
        ph_http_send_error(req, 403, "forbidden: the token's user may not access this user");
    }
}

int ph_identity_cookie_user(h2o_req_t *req, h2o_iovec_t *user)
{
    if (ph_http_cookie(req, "user_id", user) && user->len > 0)
        return 1;
    const ph_auth_t *auth = auth_of(req);
    char sub[PH_ID_MAX + 1];
    int admin;
    if (auth == NULL)
        return 0;
    if (bearer_user(req, auth, sub, sizeof(sub), &admin) != 0) {
        /* no user to name: let ph_identity_check answer 401 rather than a 400 for the cookie */
        *user = h2o_iovec_init(H2O_STRLIT("-"));
        return 1;
    }
    *user = h2o_strdup(&req->pool, sub, strlen(sub));
    return 1;
}
