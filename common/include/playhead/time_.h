/* Clocks: wall time for event timestamps, monotonic time for deadlines. */
#ifndef PLAYHEAD_TIME_H
#define PLAYHEAD_TIME_H

#include <stdint.h>

int64_t ph_now_ms(void);   /* CLOCK_REALTIME, ms since the Unix epoch */
uint64_t ph_mono_ms(void); /* CLOCK_MONOTONIC, ms */

#endif
