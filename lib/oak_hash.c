/* SHA-256 helpers over OpenSSL's EVP interface. */
#include "lib/oak_hash.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>

void oak_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32)
        abort();
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
