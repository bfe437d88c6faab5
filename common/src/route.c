/*
 * Path patterns of the router (see server.h): literal bytes, ":name" segments captured as
 * parameters, and a final "*" that matches any rest. Pure and allocation-free, so the server's
 * router and the fuzz target in tests/fuzz/ share it.
 */
#include "playhead/server.h"

int ph_route_match(const char *pattern, const char *path, size_t path_len, ph_params_t *params)
{
    const char *p = pattern, *s = path, *end = path + path_len;
    params->count = 0;
    while (*p != '\0') {
        if (p[0] == '*' && p[1] == '\0')
            return 1;
        if (*p == ':') {
            const char *seg = s;
            while (s < end && *s != '/')
                ++s;
            if (s == seg || params->count == PH_ROUTE_PARAMS_MAX)
                return 0;
            params->values[params->count++] = h2o_iovec_init(seg, (size_t)(s - seg));
            while (*p != '\0' && *p != '/')
                ++p;
            continue;
        }
        if (s == end || *p != *s)
            return 0;
        ++p, ++s;
    }
    return s == end;
}
