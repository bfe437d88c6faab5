/*
 * genevents: writes position events as Kafka messages, one "key|value" line each, in exactly the
 * encoding playhead-ingest produces (key "<user>/<video>", value as ph_event_to_json writes it), for
 * `kcat -P -K '|'`. Bench tooling only (bench/run.sh), not product code.
 *
 *   genevents random N [SEED]
 *       N events over 20,000 users x 10 videos, uniformly at random (the producer-limit run).
 *   genevents sessions USERS VIDEOS UPDATES ACTIVE [SEED]
 *       USERS*VIDEOS*UPDATES events in time order: ACTIVE users watch at once; each active user plays
 *       its VIDEOS one after the other and reports UPDATES positions per video, increasing; a user
 *       who is done is replaced by the next one. With ACTIVE = 2000, a consumer batch of 5000
 *       messages sees each playing (user, video) about 2.5 times: the duplicates that a player
 *       reporting every few seconds produces, which the consumer coalesces.
 * Ids look like real ones (user-0001234, video-000042, s-<8 hex>) so values are ~150 bytes.
 * Event times start 40 minutes ago, 1 ms apart: recent for Kafka's retention, but older than a
 * stream lease, so the consumer sends no lease heartbeats for them (only the apply script runs).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t T0; /* ms since the epoch, set in main */

static void emit(unsigned user, unsigned video, double position, int64_t ts, unsigned session)
{
    printf("user-%07u/video-%06u|{\"user_id\":\"user-%07u\",\"video_id\":\"video-%06u\",\"position\":%.1f,"
           "\"duration\":5400,\"ts\":%" PRId64 ",\"received_at\":%" PRId64 ",\"session_id\":\"s-%08x\"}\n",
           user, video, user, video, position, ts, ts + 7, session);
}

int main(int argc, char **argv)
{
    static char buf[1 << 20];
    T0 = ((int64_t)time(NULL) - 40 * 60) * 1000;
    setvbuf(stdout, buf, _IOFBF, sizeof(buf));
    if (argc >= 3 && strcmp(argv[1], "random") == 0) {
        unsigned long n = strtoul(argv[2], NULL, 10);
        if (argc > 3)
            rng ^= strtoull(argv[3], NULL, 10) * 0x9e3779b97f4a7c15ULL;
        for (unsigned long i = 0; i < n; ++i) {
            uint64_t r = next();
            emit((unsigned)(r % 20000), (unsigned)((r >> 20) % 10), (double)((r >> 32) % 54000) / 10, T0 + (int64_t)i,
                 (unsigned)(r >> 40));
        }
        return 0;
    }
    if (argc >= 6 && strcmp(argv[1], "sessions") == 0) {
        unsigned users = (unsigned)strtoul(argv[2], NULL, 10), videos = (unsigned)strtoul(argv[3], NULL, 10);
        unsigned updates = (unsigned)strtoul(argv[4], NULL, 10), active = (unsigned)strtoul(argv[5], NULL, 10);
        if (argc > 6)
            rng ^= strtoull(argv[6], NULL, 10) * 0x9e3779b97f4a7c15ULL;
        if (active == 0 || active > users || videos == 0 || updates == 0)
            return 2;
        typedef struct {
            unsigned user, step; /* step = video * updates + update */
            double start;
        } slot_t;
        slot_t *slots = calloc(active, sizeof(*slots));
        unsigned next_user = 0, live = active;
        for (unsigned i = 0; i < active; ++i)
            slots[i].user = next_user++;
        int64_t ts = T0;
        while (live > 0) {
            unsigned i = (unsigned)(next() % live);
            slot_t *s = &slots[i];
            unsigned video = s->step / updates, update = s->step % updates;
            if (update == 0)
                s->start = (double)(next() % 30000) / 10;
            emit(s->user, video, s->start + 10.0 * update, ts++, s->user * 31u + video);
            if (++s->step == videos * updates) {
                if (next_user < users) {
                    s->user = next_user++;
                    s->step = 0;
                } else {
                    slots[i] = slots[--live];
                }
            }
        }
        free(slots);
        return 0;
    }
    fprintf(stderr, "usage: genevents random N [SEED] | sessions USERS VIDEOS UPDATES ACTIVE [SEED]\n");
    return 2;
}
