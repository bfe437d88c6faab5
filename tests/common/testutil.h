/*
 * Helpers shared by the unit tests of common/: a seeded, reproducible random generator. The seed
 * is printed at start; set PH_SEED=<n> to replay a failing run.
 */
#ifndef PLAYHEAD_TESTS_COMMON_TESTUTIL_H
#define PLAYHEAD_TESTS_COMMON_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t ph_test_rng;

/* splitmix64: small, fast, and the same sequence on every platform (unlike rand()). */
static inline uint64_t ph_test_rand(void)
{
    uint64_t z = (ph_test_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0; the modulo bias is irrelevant for tests). */
static inline uint64_t ph_test_below(uint64_t n)
{
    return ph_test_rand() % n;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double ph_test_unit(void)
{
    return (double)(ph_test_rand() >> 11) * 0x1p-53;
}

/* Seeds the generator from PH_SEED or the clock, and logs the seed so a failure can be replayed. */
static inline uint64_t ph_test_seed(const char *test_name)
{
    const char *env = getenv("PH_SEED");
    uint64_t seed;
    if (env != NULL && *env != '\0') {
        seed = strtoull(env, NULL, 10);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
    }
    ph_test_rng = seed;
    printf("%s: seed %llu (replay with PH_SEED=%llu)\n", test_name, (unsigned long long)seed, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

#endif
