/*
 * The Lua scripts that make every Redis decision atomic. Loaded once per connection by
 * ph_redis_new and called with EVALSHA; indices below are their positions in PH_SCRIPTS.
 */
#ifndef PLAYHEAD_SCRIPTS_H
#define PLAYHEAD_SCRIPTS_H

#include <stddef.h>

enum {
    PH_SCRIPT_APPLY = 0, /* consumer: LWW apply of one event */
    PH_SCRIPT_ROW,       /* api: continue-watching row, one round trip */
    PH_SCRIPT_COUNT
};

extern const char *const PH_SCRIPTS[PH_SCRIPT_COUNT];

#endif
