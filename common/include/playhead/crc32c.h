/*
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and Kafka record
 * batches. Software, table-driven; thread-safe. Check value: ph_crc32c("123456789", 9) == 0xE3069283.
 */
#ifndef PLAYHEAD_CRC32C_H
#define PLAYHEAD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of `len` bytes at `data` (data may be NULL when len is 0). */
uint32_t ph_crc32c(const void *data, size_t len);

/* Continues a CRC: ph_crc32c_update(ph_crc32c(a, na), b, nb) == CRC of a followed by b.
 * Start from 0 (the CRC of no bytes). */
uint32_t ph_crc32c_update(uint32_t crc, const void *data, size_t len);

#endif
