/*
 * Numbers as text (number.h). Below event.c and json_.c, which both format positions and
 * durations with it, so that neither needs the other for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include "playhead/number.h"

size_t ph_format_double(char *buf, size_t cap, double v)
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
