/*
 * Numbers as text: the one formatting of a double that every output shares (Kafka values, JSON
 * bodies, Redis script arguments), so a position written anywhere reads back as the same double.
 * Pure, any thread.
 */
#ifndef PLAYHEAD_NUMBER_H
#define PLAYHEAD_NUMBER_H

#include <stddef.h>

/* Shortest decimal text that reads back as exactly `v` (finite), NUL-terminated in buf. Returns
 * the length, or 0 when cap is too small (32 always suffices). */
size_t ph_format_double(char *buf, size_t cap, double v);

#endif
