/*
 * Numbers as text (number.h). Below event.c and json_.c, which both format positions and
 * durations with it, so that neither needs the other for it.
 *
 * Positions and durations are mostly whole seconds or a few decimals (players report
 * currentTime rounded, or at millisecond steps), so the common case is a short decimal m / 10^k.
 * That case is formatted without printf: when m / 10^k, divided in double arithmetic (correctly
 * rounded, m and 10^k being exact), is `v`, then `v` is the double nearest that decimal, and so
 * the decimal is what strtod reads back as `v`. With at most 15 significant digits and
 * 1e-4 <= |v| < 1e15 it is also exactly what "%.15g" prints (the slow path's first try): a double
 * is within 2^-53 relative of the decimal it is nearest to, far less than half a unit of the 15th
 * digit, and %g uses fixed notation for those exponents. Anything else takes the printf path.
 *
 * Reading is the mirror image (Clinger's fast path): a decimal of at most 15 digits without an
 * exponent is m / 10^k with m and 10^k exact, so one correctly rounded division gives what strtod
 * gives. Anything else is read by strtod.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "playhead/number.h"

#define FAST_MAX_DECIMALS 6

static size_t format_slow(char *buf, size_t cap, double v)
{
    int n = 0;
    for (int prec = 15; prec <= 17; ++prec) {
        n = snprintf(buf, cap, "%.*g", prec, v);
        if (n < 0 || (size_t)n >= cap)
            return 0;
        if (strtod(buf, NULL) == v)
            break;
    }
    return (size_t)n;
}

/* Writes m / 10^k (m > 0, at most 15 digits, k decimals of which the last is not 0 unless k is
 * 0) with a sign, or returns 0 when it does not fit. */
static size_t write_decimal(char *buf, size_t cap, int negative, uint64_t m, int k)
{
    char digits[24];
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + m % 10);
        m /= 10;
    } while (m != 0);
    int int_digits = nd > k ? nd - k : 0;
    size_t len = (size_t)negative + (int_digits ? (size_t)int_digits : 1) + (k ? 1 + (size_t)k : 0);
    if (len >= cap)
        return 0;
    char *o = buf;
    if (negative)
        *o++ = '-';
    if (int_digits == 0)
        *o++ = '0';
    for (int i = nd - 1; i >= k; --i)
        *o++ = digits[i];
    if (k) {
        *o++ = '.';
        for (int i = k - 1; i >= 0; --i)
            *o++ = i < nd ? digits[i] : '0';
    }
    *o = '\0';
    return len;
}

size_t ph_format_double(char *buf, size_t cap, double v)
{
    static const double pow10[FAST_MAX_DECIMALS + 1] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    if (v == 0) {
        const char *text = signbit(v) ? "-0" : "0";
        size_t len = strlen(text);
        if (len >= cap)
            return 0;
        memcpy(buf, text, len + 1);
        return len;
    }
    double a = fabs(v);
    if (a >= 1e-4 && a < 1e15) {
        for (int k = 0; k <= FAST_MAX_DECIMALS; ++k) {
            double scaled = a * pow10[k];
            if (scaled >= 1e15)
                break;
            double m = nearbyint(scaled);
            if (m != 0 && m / pow10[k] == a)
                return write_decimal(buf, cap, v < 0, (uint64_t)m, k);
        }
    }
    return format_slow(buf, cap, v);
}

double ph_parse_double(const char *s, char **end)
{
    static const double pow10[16] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const char *p = s;
    int negative = *p == '-';
    p += negative;
    uint64_t m = 0;
    int digits = 0, decimals = 0;
    for (; *p >= '0' && *p <= '9'; ++p, ++digits)
        m = m * 10 + (uint64_t)(*p - '0');
    if (digits > 0 && *p == '.' && p[1] >= '0' && p[1] <= '9')
        for (++p; *p >= '0' && *p <= '9'; ++p, ++digits, ++decimals)
            m = m * 10 + (uint64_t)(*p - '0');
    if (digits == 0 || digits > 15 || *p == 'e' || *p == 'E' || *p == '.' || *p == 'x' || *p == 'X')
        return strtod(s, end);
    if (end != NULL)
        *end = (char *)(uintptr_t)p;
    double v = (double)m / pow10[decimals];
    return negative ? -v : v;
}

size_t ph_format_i64(char *buf, int64_t v)
{
    char digits[20];
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    size_t len = 0;
    if (v < 0)
        buf[len++] = '-';
    while (nd > 0)
        buf[len++] = digits[--nd];
    buf[len] = '\0';
    return len;
}

long long ph_parse_i64(const char *s, char **end)
{
    const char *p = s;
    int negative = *p == '-';
    p += negative;
    long long v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 18; ++p, ++digits)
        v = v * 10 + (*p - '0');
    if (digits == 0 || (*p >= '0' && *p <= '9'))
        return strtoll(s, end, 10); /* no digits (strtoll's own answer), or 19+: its overflow rules */
    if (end != NULL)
        *end = (char *)(uintptr_t)p;
    return negative ? -v : v;
}
