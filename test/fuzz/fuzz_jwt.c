/* Fuzz harness for oak_jwt_verify: the input, NUL-terminated, is a bearer
 * token as a client would send it. Every outcome must be a clean accept or
 * an OAK_E_UNAUTH error, never a crash, leak or sanitizer report. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const unsigned char key[] = "fuzz-key-0123456789abcdef-fuzz-key";
    char *token = malloc(size + 1);
    if (!token)
        return 0;
    memcpy(token, data, size);
    token[size] = '\0';
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    if (oak_jwt_verify(key, sizeof(key) - 1, token, &claims, &err) == 0) {
        if (!json_is_object(claims))
            abort();
        json_decref(claims);
    } else if (err.code != OAK_E_UNAUTH) {
        abort();
    }
    oak_err_clear(&err);
    free(token);
    return 0;
}
