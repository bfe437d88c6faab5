/*
 * libFuzzer target for common/src/identity.c's ph_auth_verify (libjwt underneath) with a fixed
 * secret. It must never crash, and it must never accept a token that is not signed with the
 * secret by HMAC-SHA256: whenever it returns 0, this file checks independently (OpenSSL HMAC, its
 * own base64url and cJSON) that the token is header.payload.signature with signature ==
 * base64url(HMAC-SHA256(secret, header.payload)), that the header's alg is HS256, that exp is
 * present and not past (30 s leeway), that sub is what was returned, and that admin follows scope.
 *
 * The first byte picks how the rest becomes a token, so that signed tokens (the deep paths of
 * libjwt and of the claim checks) are reached and not only malformed ones:
 *   0: the bytes are the token as is;
 *   1: "<header JSON>\n<payload JSON>", encoded and signed by HS256 with the secret;
 *   2: the same signed with another secret;
 *   3: the same signed by HMAC-SHA512 with the secret (alg confusion);
 *   4: the same with an empty signature;
 *   5: signed like 1, then the rest after a second '\n' appended to the token as is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include "playhead/event.h"
#include "playhead/identity.h"

#define NOW_S INT64_C(1700000000)
#define SECRET "fuzz-secret-0123456789abcdef-0123456789"

#define CHECK(cond)                                                                                                                \
    do {                                                                                                                           \
        if (!(cond)) {                                                                                                             \
            fprintf(stderr, "fuzz_token: check failed at line %d: %s\n", __LINE__, #cond);                                         \
            abort();                                                                                                               \
        }                                                                                                                          \
    } while (0)

static ph_auth_t auth;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char errstr[256];
    (void)argc, (void)argv;
    setenv("PLAYHEAD_JWT_SECRET", SECRET, 1);
    if (ph_auth_init(&auth, "jwt", NULL, errstr, sizeof(errstr)) != 0) {
        fprintf(stderr, "fuzz_token: %s\n", errstr);
        abort();
    }
    CHECK(auth.mode == PH_AUTH_JWT && auth.leeway_s == 30);
    return 0;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding; returns the length written (cap >= 4 * (len + 2) / 3 + 1). */
static size_t b64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t n = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[n++] = b64url[v >> 18], out[n++] = b64url[(v >> 12) & 63], out[n++] = b64url[(v >> 6) & 63], out[n++] = b64url[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[n++] = b64url[v >> 18], out[n++] = b64url[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[n++] = b64url[v >> 18], out[n++] = b64url[(v >> 12) & 63], out[n++] = b64url[(v >> 6) & 63];
    }
    out[n] = '\0';
    return n;
}

/* Strict base64url decoding (no padding, canonical trailing bits). Returns the length or -1. */
static long b64_decode(const char *in, size_t len, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    long n = 0;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; ++i) {
        const char *p = in[i] != '\0' ? strchr(b64url, in[i]) : NULL;
        if (p == NULL)
            return -1;
        acc = acc << 6 | (uint32_t)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (acc & ((1u << bits) - 1)) == 0 ? n : -1;
}

/* The last member named `name` (libjwt's jansson keeps the last of duplicate keys). */
static const cJSON *last_member(const cJSON *obj, const char *name)
{
    const cJSON *found = NULL;
    for (const cJSON *c = obj != NULL ? obj->child : NULL; c != NULL; c = c->next)
        if (c->string != NULL && strcmp(c->string, name) == 0)
            found = c;
    return found;
}

static int scope_admin(const cJSON *scope)
{
    if (!cJSON_IsString(scope))
        return 0;
    for (const char *p = scope->valuestring; *p != '\0';) {
        while (*p == ' ')
            ++p;
        size_t len = strcspn(p, " ");
        if (len == 5 && strncmp(p, "admin", 5) == 0)
            return 1;
        p += len;
    }
    return 0;
}

/* ph_auth_verify accepted `token` as user `sub`: check that it had every right to. */
static void check_accepted(const char *token, size_t len, const char *sub, int admin)
{
    static unsigned char header[8192], payload[8192];
    const char *dot1 = memchr(token, '.', len);
    CHECK(dot1 != NULL);
    const char *dot2 = memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1));
    CHECK(dot2 != NULL);
    const char *sig = dot2 + 1;
    size_t sig_len = (size_t)(token + len - sig);
    CHECK(memchr(sig, '.', sig_len) == NULL);

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    char expect[128];
    CHECK(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)token, (size_t)(dot2 - token), mac, &mac_len) !=
          NULL);
    CHECK(mac_len == 32);
    size_t expect_len = b64_encode(mac, mac_len, expect);
    if (!(sig_len == expect_len && memcmp(sig, expect, expect_len) == 0)) {
        fprintf(stderr, "fuzz_token: accepted a token not signed with the secret by HS256: %.*s\n", (int)len, token);
        abort();
    }

    long hlen = b64_decode(token, (size_t)(dot1 - token), header);
    long plen = b64_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), payload);
    CHECK(hlen >= 0 && plen >= 0);
    cJSON *h = cJSON_ParseWithLength((const char *)header, (size_t)hlen);
    cJSON *p = cJSON_ParseWithLength((const char *)payload, (size_t)plen);
    CHECK(h != NULL && p != NULL);
    const cJSON *alg = last_member(h, "alg");
    if (!(cJSON_IsString(alg) && strcasecmp(alg->valuestring, "HS256") == 0)) {
        fprintf(stderr, "fuzz_token: accepted a token whose alg is not HS256: %.*s\n", (int)hlen, header);
        abort();
    }
    const cJSON *exp = last_member(p, "exp"), *jsub = last_member(p, "sub");
    CHECK(cJSON_IsNumber(exp) && exp->valuedouble >= (double)(NOW_S - 30));
    CHECK(cJSON_IsString(jsub) && strcmp(jsub->valuestring, sub) == 0 && ph_id_valid(sub, strlen(sub)));
    CHECK(admin == scope_admin(last_member(p, "scope")));
    cJSON_Delete(h);
    cJSON_Delete(p);
}

/* Mode 1-5: a token from "<header>\n<payload>[\n<suffix>]". Returns its length. */
static size_t make_token(int mode, const char *s, size_t len, char *out)
{
    static const char other[] = "not-the-secret-0123456789abcdef-0123456789";
    const char *nl = memchr(s, '\n', len);
    const char *head = s, *body = nl ? nl + 1 : s + len, *end = s + len, *suffix = end;
    size_t head_len = nl ? (size_t)(nl - s) : len;
    if (mode == 5 && (nl = memchr(body, '\n', (size_t)(end - body))) != NULL)
        suffix = nl + 1, end = nl;
    size_t n = b64_encode((const unsigned char *)head, head_len, out);
    out[n++] = '.';
    n += b64_encode((const unsigned char *)body, (size_t)(end - body), out + n);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    if (mode == 1 || mode == 5)
        HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)out, n, mac, &mac_len);
    else if (mode == 2)
        HMAC(EVP_sha256(), other, (int)strlen(other), (const unsigned char *)out, n, mac, &mac_len);
    else if (mode == 3)
        HMAC(EVP_sha512(), SECRET, (int)strlen(SECRET), (const unsigned char *)out, n, mac, &mac_len);
    out[n++] = '.';
    n += b64_encode(mac, mac_len, out + n);
    memcpy(out + n, suffix, (size_t)(s + len - suffix));
    n += (size_t)(s + len - suffix);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char built[4 * 8192 + 256];
    char sub[PH_ID_MAX + 1];
    if (size < 1 || size > 6000)
        return 0;
    int mode = data[0] % 6;
    const char *token = (const char *)data + 1;
    size_t len = size - 1;
    if (mode != 0) {
        len = make_token(mode, token, len, built);
        token = built;
    }
    memset(sub, 0x5A, sizeof(sub));
    int admin = -1;
    if (ph_auth_verify(&auth, token, len, NOW_S, sub, sizeof(sub), &admin) == 0) {
        CHECK(memchr(sub, '\0', sizeof(sub)) != NULL && (admin == 0 || admin == 1));
        check_accepted(token, len, sub, admin);
        CHECK(mode != 2 && mode != 3 && mode != 4);
    }
    return 0;
}
