/*
 * Numbers as text: the one formatting of a double that every output shares (Kafka values, JSON
 * bodies, Redis script arguments), so a position written anywhere reads back as the same double.
 * Pure, any thread.
 */
#ifndef PLAYHEAD_NUMBER_H
#define PLAYHEAD_NUMBER_H

#include <stddef.h>
#include <stdint.h>

/* Shortest decimal text that reads back as exactly `v` (finite), NUL-terminated in buf. Returns
 * the length, or 0 when cap is too small (32 always suffices). */
size_t ph_format_double(char *buf, size_t cap, double v);

/* strtod, faster for the short decimals ph_format_double writes (same result, same `end`). */
double ph_parse_double(const char *s, char **end);

/* strtoll(s, end, 10), faster for up to 18 digits (same result, same `end`). */
long long ph_parse_i64(const char *s, char **end);

/* Decimal text of v, NUL-terminated; buf holds at least 21 bytes. Returns the length. */
size_t ph_format_i64(char *buf, int64_t v);

#endif
