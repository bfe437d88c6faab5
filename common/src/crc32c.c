/*
 * CRC-32C (see crc32c.h), byte-at-a-time with one 256-entry table. The spool checks every record
 * with it; at tens of MB/s of ingest that is a small cost next to the fsync, so the simplest
 * correct form wins over slicing-by-8 or the SSE4.2 instruction.
 *
 * The table is built once, on first use, under pthread_once: any thread may compute a CRC.
 */
#include <pthread.h>
#include "playhead/crc32c.h"

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_table_once = PTHREAD_ONCE_INIT;

static void crc32c_table_build(void)
{
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
        crc32c_table[i] = c;
    }
}

uint32_t ph_crc32c_update(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    pthread_once(&crc32c_table_once, crc32c_table_build);
    /* the register is kept inverted between calls' boundaries so that chaining equals one pass */
    crc = ~crc;
    for (size_t i = 0; i < len; ++i)
        crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

uint32_t ph_crc32c(const void *data, size_t len)
{
    return ph_crc32c_update(0, data, len);
}
