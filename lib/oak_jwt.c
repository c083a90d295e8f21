/* HS256 JSON Web Tokens, PBKDF2 password hashes and random tokens. Owns the
 * base64url codec they share (strict: no padding, no stray characters, no
 * non-zero trailing bits, so each byte string has exactly one encoding).
 * No state: every function is thread-safe (OpenSSL 3 needs no locking
 * callbacks). Secrets held in temporary buffers are wiped with
 * OPENSSL_cleanse before they are released. */
#include "lib/oak_jwt.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_log.h"

#define PW_SCHEME     "pbkdf2_sha256"
#define PW_ITERATIONS 100000
#define PW_SALT_LEN   16
#define PW_HASH_LEN   32
#define PW_ITER_MIN   1000
#define PW_ITER_MAX   10000000
#define JWT_HEADER    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define JWT_SIG_LEN   32

static const char b64url_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *b64url_encode(const unsigned char *in, size_t n)
{
    size_t olen = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    char *out = xmalloc(olen + 1);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url_alphabet[(acc >> bits) & 0x3f];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = b64url_alphabet[(acc << (6 - bits)) & 0x3f];
    out[o] = '\0';
    return out;
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Decodes len characters of in into a fresh buffer (NUL-terminated for
 * convenience, *outlen excludes it); NULL if in is not canonical base64url
 * without padding. */
static unsigned char *b64url_decode(const char *in, size_t len, size_t *outlen)
{
    if (len % 4 == 1)
        return NULL;
    _cleanup_free_ unsigned char *out = xmalloc(len / 4 * 3 + 3);
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return NULL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    if (acc != 0)
        return NULL;
    out[o] = '\0';
    *outlen = o;
    return oak_steal(&out);
}

void oak_random_bytes(unsigned char *buf, size_t n)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(buf, chunk) != 1) {
            log_error("RAND_bytes failed: the system random number generator is unusable");
            abort();
        }
        buf += chunk;
        n -= (size_t)chunk;
    }
}

char *oak_random_token(size_t nbytes)
{
    _cleanup_free_ unsigned char *buf = xmalloc(nbytes);
    oak_random_bytes(buf, nbytes);
    char *s = b64url_encode(buf, nbytes);
    OPENSSL_cleanse(buf, nbytes);
    return s;
}

static int hmac_sha256(const unsigned char *key, size_t key_len, const char *data, size_t len,
                       unsigned char mac[JWT_SIG_LEN])
{
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, len, mac, &mac_len) ||
        mac_len != JWT_SIG_LEN)
        return -1;
    return 0;
}

int oak_jwt_sign(const unsigned char *key, size_t key_len, json_t *claims, long ttl_s, char **out,
                 oak_err_t *err)
{
    if (!key || key_len == 0 || key_len > INT_MAX)
        return oak_err_set(err, OAK_E_INVALID, "JWT signing key is empty or too long");
    if (!json_is_object(claims))
        return oak_err_set(err, OAK_E_INVALID, "JWT claims must be a JSON object");
    long now = (long)time(NULL), exp;
    if (__builtin_add_overflow(now, ttl_s, &exp))
        return oak_err_set(err, OAK_E_INVALID, "JWT lifetime of %ld s is out of range", ttl_s);

    json_auto_t *c = json_copy(claims);
    _cleanup_free_ char *jti = oak_random_token(16);
    json_object_set_new(c, "iat", json_integer(now));
    json_object_set_new(c, "nbf", json_integer(now));
    json_object_set_new(c, "exp", json_integer(exp));
    json_object_set_new(c, "jti", json_string(jti));
    _cleanup_free_ char *payload = json_dumps(c, JSON_COMPACT);
    if (!payload)
        return oak_err_set(err, OAK_E_INVALID, "JWT claims cannot be serialised");

    _cleanup_free_ char *h64 =
        b64url_encode((const unsigned char *)JWT_HEADER, sizeof(JWT_HEADER) - 1);
    _cleanup_free_ char *p64 = b64url_encode((const unsigned char *)payload, strlen(payload));
    _cleanup_free_ char *input = xasprintf("%s.%s", h64, p64);
    unsigned char mac[JWT_SIG_LEN];
    if (hmac_sha256(key, key_len, input, strlen(input), mac) < 0)
        return oak_err_set(err, OAK_E_INTERNAL, "HMAC-SHA256 failed");
    _cleanup_free_ char *s64 = b64url_encode(mac, sizeof(mac));
    *out = xasprintf("%s.%s", input, s64);
    return 0;
}

/* Parses a decoded token part as a JSON object; NULL if it is not one. */
static json_t *part_object(const unsigned char *buf, size_t len)
{
    json_t *j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int oak_jwt_verify(const unsigned char *key, size_t key_len, const char *token, json_t **claims_out,
                   oak_err_t *err)
{
    if (!key || key_len == 0 || key_len > INT_MAX)
        return oak_err_set(err, OAK_E_INTERNAL, "JWT verification key is empty or too long");
    if (!token || !*token)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: empty");
    size_t len = strnlen(token, OAK_JWT_MAX_LEN + 1);
    if (len > OAK_JWT_MAX_LEN)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: longer than %d bytes",
                           OAK_JWT_MAX_LEN);
    const char *d1 = memchr(token, '.', len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return oak_err_set(err, OAK_E_UNAUTH,
                           "malformed token: expected three dot-separated parts");
    size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
    size_t slen = len - (size_t)(d2 + 1 - token);
    if (hlen == 0 || plen == 0 || slen == 0)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: empty part");

    size_t hn = 0, pn = 0, sn = 0;
    _cleanup_free_ unsigned char *hdr = b64url_decode(token, hlen, &hn);
    _cleanup_free_ unsigned char *pay = b64url_decode(d1 + 1, plen, &pn);
    _cleanup_free_ unsigned char *sig = b64url_decode(d2 + 1, slen, &sn);
    if (!hdr || !pay || !sig)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: bad base64url encoding");

    json_auto_t *h = part_object(hdr, hn);
    if (!h)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: header is not a JSON object");
    const char *alg = json_string_value(json_object_get(h, "alg"));
    if (!alg)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: header has no alg");
    if (strcmp(alg, "HS256") != 0)
        return oak_err_set(err, OAK_E_UNAUTH,
                           "unsupported token algorithm '%.32s': only HS256 is accepted", alg);
    if (json_object_get(h, "crit"))
        return oak_err_set(err, OAK_E_UNAUTH,
                           "malformed token: critical header extensions are not supported");

    unsigned char mac[JWT_SIG_LEN];
    if (hmac_sha256(key, key_len, token, (size_t)(d2 - token), mac) < 0)
        return oak_err_set(err, OAK_E_INTERNAL, "HMAC-SHA256 failed");
    if (sn != JWT_SIG_LEN || CRYPTO_memcmp(mac, sig, JWT_SIG_LEN) != 0)
        return oak_err_set(err, OAK_E_UNAUTH, "bad signature");

    json_auto_t *claims = part_object(pay, pn);
    if (!claims)
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: payload is not a JSON object");
    double now = (double)time(NULL);
    json_t *exp = json_object_get(claims, "exp");
    json_t *nbf = json_object_get(claims, "nbf");
    if (!json_is_number(exp))
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: numeric exp claim missing");
    if (nbf && !json_is_number(nbf))
        return oak_err_set(err, OAK_E_UNAUTH, "malformed token: nbf claim is not a number");
    if (now > json_number_value(exp) + OAK_JWT_LEEWAY_S)
        return oak_err_set(err, OAK_E_UNAUTH, "token expired");
    if (nbf && now + OAK_JWT_LEEWAY_S < json_number_value(nbf))
        return oak_err_set(err, OAK_E_UNAUTH, "token not yet valid");
    *claims_out = oak_steal(&claims);
    return 0;
}

static int pbkdf2(const char *password, const unsigned char *salt, size_t salt_len, long iter,
                  unsigned char *out, size_t out_len)
{
    size_t pw_len = strlen(password);
    if (pw_len > INT_MAX)
        return -1;
    return PKCS5_PBKDF2_HMAC(password, (int)pw_len, salt, (int)salt_len, (int)iter, EVP_sha256(),
                             (int)out_len, out) == 1
               ? 0
               : -1;
}

int oak_password_hash(const char *password, char **out, oak_err_t *err)
{
    if (!password)
        return oak_err_set(err, OAK_E_INVALID, "password is missing");
    unsigned char salt[PW_SALT_LEN], hash[PW_HASH_LEN];
    oak_random_bytes(salt, sizeof(salt));
    if (pbkdf2(password, salt, sizeof(salt), PW_ITERATIONS, hash, sizeof(hash)) < 0)
        return oak_err_set(err, OAK_E_INTERNAL, "PBKDF2 failed (password too long?)");
    _cleanup_free_ char *s64 = b64url_encode(salt, sizeof(salt));
    _cleanup_free_ char *h64 = b64url_encode(hash, sizeof(hash));
    OPENSSL_cleanse(hash, sizeof(hash));
    *out = xasprintf(PW_SCHEME "$%d$%s$%s", PW_ITERATIONS, s64, h64);
    return 0;
}

bool oak_password_verify(const char *password, const char *encoded)
{
    static const char prefix[] = PW_SCHEME "$";
    if (!password || !encoded || strncmp(encoded, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *p = encoded + sizeof(prefix) - 1;
    if (*p < '1' || *p > '9')
        return false;
    char *end = NULL;
    errno = 0;
    long iter = strtol(p, &end, 10);
    if (errno || *end != '$' || iter < PW_ITER_MIN || iter > PW_ITER_MAX)
        return false;
    const char *salt64 = end + 1;
    const char *hash64 = strchr(salt64, '$');
    if (!hash64)
        return false;
    size_t salt_n = 0, hash_n = 0;
    _cleanup_free_ unsigned char *salt = b64url_decode(salt64, (size_t)(hash64 - salt64), &salt_n);
    hash64++;
    _cleanup_free_ unsigned char *want = b64url_decode(hash64, strlen(hash64), &hash_n);
    if (!salt || !want || salt_n < 8 || salt_n > 64 || hash_n < 16 || hash_n > 64)
        return false;
    unsigned char got[64];
    if (pbkdf2(password, salt, salt_n, iter, got, hash_n) < 0)
        return false;
    bool ok = CRYPTO_memcmp(got, want, hash_n) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return ok;
}
