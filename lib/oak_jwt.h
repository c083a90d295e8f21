/* JSON Web Tokens (HS256 only), password hashing for stored users and
 * random helpers, all on OpenSSL. Pure functions, thread-safe.
 *
 * Tokens are "<header>.<payload>.<signature>", each part base64url without
 * padding; the header is {"alg":"HS256","typ":"JWT"}. Verification accepts
 * nothing but HS256 ("none", RS256, ... are rejected), compares signatures
 * in constant time and requires an `exp` claim. */
#ifndef OAK_JWT_H
#define OAK_JWT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/oak_err.h"

/* Seconds of clock skew tolerated on exp and nbf. */
#define OAK_JWT_LEEWAY_S 5
/* Longest token oak_jwt_verify looks at. */
#define OAK_JWT_MAX_LEN 16384

/* Signs claims (a JSON object; borrowed, not modified) with HMAC-SHA256
 * under key. The token gets iat = nbf = now, exp = now + ttl_s and a random
 * "jti", replacing any such claims of the input. On success *out is a NUL
 * terminated token owned by the caller (free()). Fails with OAK_E_INVALID
 * when claims is not an object or the key is empty. */
int oak_jwt_sign(const unsigned char *key, size_t key_len, json_t *claims, long ttl_s, char **out,
                 oak_err_t *err);

/* Verifies token: structure, header alg == "HS256", signature, exp (which
 * must be present) and nbf with OAK_JWT_LEEWAY_S seconds of leeway. On
 * success *claims_out is a new reference to the payload object. Every
 * failure is OAK_E_UNAUTH with a message starting with "malformed token",
 * "bad signature", "token expired", "token not yet valid" or "unsupported
 * token algorithm". */
int oak_jwt_verify(const unsigned char *key, size_t key_len, const char *token, json_t **claims_out,
                   oak_err_t *err);

/* Hashes password with PBKDF2-HMAC-SHA256 (16-byte random salt, 100000
 * iterations, 32-byte hash) into "pbkdf2_sha256$<iter>$<salt>$<hash>" with
 * salt and hash in base64url without padding. *out is owned by the caller. */
int oak_password_hash(const char *password, char **out, oak_err_t *err);

/* True when password matches encoded (as produced by oak_password_hash,
 * any iteration count between 1000 and 10000000). Malformed encodings give
 * false. The hash comparison is constant time. */
bool oak_password_verify(const char *password, const char *encoded);

/* Fills buf with n cryptographically random bytes; aborts if the RNG fails. */
void oak_random_bytes(unsigned char *buf, size_t n);

/* base64url (no padding) of nbytes random bytes: ceil(4*nbytes/3) chars of
 * [A-Za-z0-9_-]. Owned by the caller. */
char *oak_random_token(size_t nbytes);

#endif
