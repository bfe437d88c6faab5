/*
 * The Lua scripts that make every Redis decision atomic. Loaded once per connection by
 * ph_redis_new and called with EVALSHA; indices below are their positions in PH_SCRIPTS.
 */
#ifndef PLAYHEAD_SCRIPTS_H
#define PLAYHEAD_SCRIPTS_H

#include <stddef.h>

enum {
    PH_SCRIPT_APPLY = 0, /* consumer: LWW apply of one event */
    /* concurrent-stream leases (keys.h ph:{U}:s and ph:{U}:d); "now" is Redis's clock (TIME) so that
     * every instance, whatever its own clock, takes the same decision */
    PH_SCRIPT_STREAM_START,       /* api: take or refresh a lease, or refuse at the limit */
    PH_SCRIPT_STREAM_STOP,        /* api: end one lease */
    PH_SCRIPT_STREAM_STOP_OLDEST, /* api, reference routes: end the oldest anonymous lease */
    PH_SCRIPT_STREAM_LIST,        /* api: the live leases */
    PH_SCRIPT_HEARTBEAT,          /* consumer: a position event with a session_id extends its live lease */
    PH_SCRIPT_HISTORY,            /* api: a page of the history, one round trip */
    PH_SCRIPT_EXPORT,             /* api: everything stored about a user (titles and live leases) */
    PH_SCRIPT_COUNT
};

extern const char *const PH_SCRIPTS[PH_SCRIPT_COUNT];

#endif
