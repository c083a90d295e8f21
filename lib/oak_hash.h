/* SHA-256 helpers over OpenSSL (thread-safe). */
#ifndef OAK_HASH_H
#define OAK_HASH_H

#include <stddef.h>

/* Lower-case hex SHA-256 of data into out[65]. */
void oak_sha256_hex(const void *data, size_t len, char out[65]);

#endif
