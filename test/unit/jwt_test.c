/* Unit tests for lib/oak_jwt: HS256 sign/verify, rejection of tampered,
 * expired, foreign-algorithm and malformed tokens, PBKDF2 password hashes
 * and random tokens. Tokens with chosen headers/claims are built here with
 * OpenSSL's own base64 and HMAC, independently of the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_jwt.h"

static const unsigned char KEY[] = "0123456789abcdef0123456789abcdef";
#define KEY_LEN (sizeof(KEY) - 1)

/* base64url without padding, via EVP_EncodeBlock. */
static char *b64url(const void *data, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

/* A token with the given raw header and payload text, signed with key. */
static char *craft(const unsigned char *key, size_t key_len, const char *header,
                   const char *payload)
{
    _cleanup_free_ char *h = b64url(header, strlen(header));
    _cleanup_free_ char *p = b64url(payload, strlen(payload));
    _cleanup_free_ char *input = xasprintf("%s.%s", h, p);
    unsigned char mac[32];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), key, (int)key_len, (unsigned char *)input, strlen(input), mac, &mac_len);
    _cleanup_free_ char *s = b64url(mac, mac_len);
    return xasprintf("%s.%s", input, s);
}

static void expect_unauth(const char *token, const char *msg_part)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN, token, &claims, &err), -1);
    assert_null(claims);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    if (!strstr(err.msg, msg_part))
        fail_msg("token '%.80s': message '%s' does not contain '%s'", token ? token : "(null)",
                 err.msg, msg_part);
    oak_err_clear(&err);
}

static char *sign_default(long ttl)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *c =
        json_pack("{s:s, s:s, s:[s,s], s:s}", "sub", "alice", "user", "alice", "roles", "Admin",
                  "Application_Provider", "organization", "64f0c0ffee0000000000abcd");
    char *tok = NULL;
    assert_int_equal(oak_jwt_sign(KEY, KEY_LEN, c, ttl, &tok, &err), 0);
    assert_non_null(tok);
    return tok;
}

static void test_roundtrip(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_auto_t *in = json_pack("{s:s, s:[s,s], s:s, s:b}", "sub", "alice", "roles", "Admin",
                                "Organization_Admin", "organization", "root", "fresh", 1);
    json_object_set_new(in, "exp", json_integer(1)); /* replaced by the signer */
    _cleanup_free_ char *tok = NULL;
    time_t before = time(NULL);
    assert_int_equal(oak_jwt_sign(KEY, KEY_LEN, in, 600, &tok, &err), 0);
    /* input claims untouched */
    assert_int_equal(json_integer_value(json_object_get(in, "exp")), 1);
    assert_null(json_object_get(in, "jti"));
    /* three parts of base64url characters */
    int dots = 0;
    for (const char *p = tok; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p))
            fail_msg("unexpected character '%c' in token", *p);
    }
    assert_int_equal(dots, 2);
    /* header is exactly HS256 JWT */
    _cleanup_free_ char *hdr = b64url("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", 27);
    assert_int_equal(strncmp(tok, hdr, strlen(hdr)), 0);

    json_t *out = NULL;
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN, tok, &out, &err), 0);
    json_auto_t *claims = out;
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "alice");
    assert_string_equal(json_string_value(json_object_get(claims, "organization")), "root");
    json_t *roles = json_object_get(claims, "roles");
    assert_true(json_is_array(roles));
    assert_int_equal(json_array_size(roles), 2);
    assert_string_equal(json_string_value(json_array_get(roles, 0)), "Admin");
    assert_string_equal(json_string_value(json_array_get(roles, 1)), "Organization_Admin");
    assert_true(json_is_true(json_object_get(claims, "fresh")));
    json_int_t iat = json_integer_value(json_object_get(claims, "iat"));
    assert_true(iat >= before && iat <= time(NULL));
    assert_int_equal(json_integer_value(json_object_get(claims, "nbf")), iat);
    assert_int_equal(json_integer_value(json_object_get(claims, "exp")), iat + 600);
    const char *jti = json_string_value(json_object_get(claims, "jti"));
    assert_non_null(jti);
    assert_true(strlen(jti) >= 16);
    (void)state;
}

static void test_jti_unique(void **state)
{
    _cleanup_free_ char *a = sign_default(60);
    _cleanup_free_ char *b = sign_default(60);
    assert_string_not_equal(a, b);
    (void)state;
}

static void test_sign_errors(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    char *tok = NULL;
    json_auto_t *arr = json_array();
    assert_int_equal(oak_jwt_sign(KEY, KEY_LEN, arr, 60, &tok, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    json_auto_t *obj = json_object();
    assert_int_equal(oak_jwt_sign(KEY, 0, obj, 60, &tok, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_null(tok);
    (void)state;
}

static void test_tampered(void **state)
{
    _cleanup_free_ char *tok = sign_default(600);
    char *d1 = strchr(tok, '.');
    char *d2 = strchr(d1 + 1, '.');

    /* payload swapped for another that claims more roles */
    _cleanup_free_ char *evil_payload = b64url("{\"sub\":\"alice\",\"roles\":[\"Admin\"],"
                                               "\"exp\":99999999999}",
                                               strlen("{\"sub\":\"alice\",\"roles\":[\"Admin\"],"
                                                      "\"exp\":99999999999}"));
    _cleanup_free_ char *forged = xasprintf("%.*s.%s%s", (int)(d1 - tok), tok, evil_payload, d2);
    expect_unauth(forged, "bad signature");

    /* one character of the payload changed */
    _cleanup_free_ char *t1 = xstrdup(tok);
    t1[d1 - tok + 5] = t1[d1 - tok + 5] == 'A' ? 'B' : 'A';
    expect_unauth(t1, "bad signature");

    /* one character of the signature changed (first char: all 6 bits used) */
    _cleanup_free_ char *t2 = xstrdup(tok);
    t2[d2 - tok + 1] = t2[d2 - tok + 1] == 'A' ? 'B' : 'A';
    expect_unauth(t2, "bad signature");

    /* signature truncated / extended */
    _cleanup_free_ char *t3 = xstrndup(tok, strlen(tok) - 4);
    expect_unauth(t3, ""); /* "bad signature" or, with stray trailing bits, "malformed" */
    _cleanup_free_ char *t4 = xasprintf("%sAAAA", tok);
    expect_unauth(t4, "bad signature");

    /* non-canonical final character of the signature (trailing bits set) */
    _cleanup_free_ char *t5 = xstrdup(tok);
    char *last = t5 + strlen(t5) - 1;
    *last = *last == 'B' ? 'C' : 'B'; /* 43 chars: the last one carries 4 data bits */
    expect_unauth(t5, "");
    (void)state;
}

static void test_wrong_key(void **state)
{
    _cleanup_free_ char *tok = sign_default(600);
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    static const unsigned char other[] = "another key entirely, 32 bytes!!";
    assert_int_equal(oak_jwt_verify(other, sizeof(other) - 1, tok, &claims, &err), -1);
    assert_int_equal(err.code, OAK_E_UNAUTH);
    assert_string_equal(err.msg, "bad signature");
    assert_null(claims);
    /* a key that is a prefix of the real one */
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN - 1, tok, &claims, &err), -1);
    assert_string_equal(err.msg, "bad signature");
    (void)state;
}

static void test_alg_none_and_others(void **state)
{
    const char *payload = "{\"sub\":\"mallory\",\"roles\":[\"Admin\"],\"exp\":99999999999}";
    _cleanup_free_ char *h = b64url("{\"alg\":\"none\",\"typ\":\"JWT\"}", 27);
    _cleanup_free_ char *p = b64url(payload, strlen(payload));
    /* unsecured JWT: empty signature */
    _cleanup_free_ char *none1 = xasprintf("%s.%s.", h, p);
    expect_unauth(none1, "malformed token");
    /* alg none with some signature */
    _cleanup_free_ char *none2 = craft(KEY, KEY_LEN, "{\"alg\":\"none\"}", payload);
    expect_unauth(none2, "unsupported token algorithm 'none'");
    _cleanup_free_ char *none3 = craft(KEY, KEY_LEN, "{\"alg\":\"None\"}", payload);
    expect_unauth(none3, "unsupported token algorithm");
    _cleanup_free_ char *rs = craft(KEY, KEY_LEN, "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", payload);
    expect_unauth(rs, "unsupported token algorithm 'RS256'");
    _cleanup_free_ char *hs512 = craft(KEY, KEY_LEN, "{\"alg\":\"HS512\"}", payload);
    expect_unauth(hs512, "unsupported token algorithm");
    _cleanup_free_ char *noalg = craft(KEY, KEY_LEN, "{\"typ\":\"JWT\"}", payload);
    expect_unauth(noalg, "malformed token");
    _cleanup_free_ char *numalg = craft(KEY, KEY_LEN, "{\"alg\":256}", payload);
    expect_unauth(numalg, "malformed token");
    _cleanup_free_ char *crit =
        craft(KEY, KEY_LEN, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", payload);
    expect_unauth(crit, "malformed token");
    _cleanup_free_ char *dup = craft(KEY, KEY_LEN, "{\"alg\":\"none\",\"alg\":\"HS256\"}", payload);
    expect_unauth(dup, "malformed token");

    /* a correctly crafted HS256 token with the same key is accepted */
    _cleanup_free_ char *ok = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", payload);
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN, ok, &claims, &err), 0);
    assert_string_equal(json_string_value(json_object_get(claims, "sub")), "mallory");
    json_decref(claims);
    (void)state;
}

static void test_expiry(void **state)
{
    _cleanup_free_ char *old = sign_default(-60);
    expect_unauth(old, "token expired");
    /* within the 5 s leeway */
    _cleanup_free_ char *recent = sign_default(-2);
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN, recent, &claims, &err), 0);
    json_decref(claims);

    long now = (long)time(NULL);
    char payload[256];
    snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"exp\":%ld,\"nbf\":%ld}", now + 600,
             now + 120);
    _cleanup_free_ char *future = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", payload);
    expect_unauth(future, "token not yet valid");
    snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"exp\":%ld,\"nbf\":%ld}", now + 600,
             now + 2);
    _cleanup_free_ char *soon = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", payload);
    claims = NULL;
    assert_int_equal(oak_jwt_verify(KEY, KEY_LEN, soon, &claims, &err), 0);
    json_decref(claims);
    /* exp missing or not a number */
    _cleanup_free_ char *noexp = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\"}");
    expect_unauth(noexp, "exp");
    _cleanup_free_ char *strexp =
        craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":\"never\"}");
    expect_unauth(strexp, "exp");
    _cleanup_free_ char *real_exp =
        craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1.5}");
    expect_unauth(real_exp, "token expired");
    _cleanup_free_ char *bad_nbf = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}",
                                         "{\"sub\":\"a\",\"exp\":99999999999,\"nbf\":\"x\"}");
    expect_unauth(bad_nbf, "nbf");
    (void)state;
}

static void test_malformed(void **state)
{
    expect_unauth(NULL, "malformed token");
    expect_unauth("", "malformed token");
    expect_unauth("nodots", "malformed token");
    expect_unauth("one.dot", "malformed token");
    expect_unauth("a.b.c.d", "malformed token");
    expect_unauth("..", "malformed token");
    expect_unauth(".eyJleHAiOjF9.c2ln", "malformed token");
    expect_unauth("eyJhbGciOiJIUzI1NiJ9..c2ln", "malformed token");
    /* bad base64: forbidden characters, padding, impossible length */
    expect_unauth("eyJhbGciOiJIUzI1NiJ9.eyJ!eHAiOjF9.c2ln", "malformed token");
    expect_unauth("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln+/", "malformed token");
    expect_unauth("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lu==", "malformed token");
    expect_unauth("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnA", "malformed token");
    expect_unauth("eyJhbGc iOiJIUzI1NiJ9.eyJleHAiOjF9.c2ln", "malformed token");
    /* header not JSON / not an object */
    _cleanup_free_ char *t1 = craft(KEY, KEY_LEN, "not json", "{\"exp\":99999999999}");
    expect_unauth(t1, "malformed token: header");
    _cleanup_free_ char *t2 = craft(KEY, KEY_LEN, "[\"HS256\"]", "{\"exp\":99999999999}");
    expect_unauth(t2, "malformed token: header");
    /* correctly signed but the payload is not an object */
    _cleanup_free_ char *t3 = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", "{\"exp\":");
    expect_unauth(t3, "malformed token: payload");
    _cleanup_free_ char *t4 = craft(KEY, KEY_LEN, "{\"alg\":\"HS256\"}", "[1,2]");
    expect_unauth(t4, "malformed token: payload");
    /* oversized */
    _cleanup_free_ char *big = xmalloc(OAK_JWT_MAX_LEN + 10);
    memset(big, 'A', OAK_JWT_MAX_LEN + 9);
    big[OAK_JWT_MAX_LEN + 9] = '\0';
    big[10] = '.';
    big[20] = '.';
    expect_unauth(big, "longer than");
    /* an empty verification key is a server error, not the client's */
    oak_err_t err = OAK_ERR_INIT;
    json_t *claims = NULL;
    assert_int_equal(oak_jwt_verify(KEY, 0, "a.b.c", &claims, &err), -1);
    assert_int_equal(err.code, OAK_E_INTERNAL);
    (void)state;
}

static void test_password(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_free_ char *h1 = NULL;
    _cleanup_free_ char *h2 = NULL;
    assert_int_equal(oak_password_hash("s3cret pass", &h1, &err), 0);
    assert_int_equal(oak_password_hash("s3cret pass", &h2, &err), 0);
    assert_int_equal(strncmp(h1, "pbkdf2_sha256$100000$", 21), 0);
    /* salt 16 bytes -> 22 chars, hash 32 bytes -> 43 chars */
    const char *salt = h1 + 21;
    const char *d = strchr(salt, '$');
    assert_non_null(d);
    assert_int_equal(d - salt, 22);
    assert_int_equal(strlen(d + 1), 43);
    assert_string_not_equal(h1, h2);

    assert_true(oak_password_verify("s3cret pass", h1));
    assert_true(oak_password_verify("s3cret pass", h2));
    assert_false(oak_password_verify("s3cret pas", h1));
    assert_false(oak_password_verify("s3cret pass ", h1));
    assert_false(oak_password_verify("", h1));
    assert_false(oak_password_verify(NULL, h1));
    assert_false(oak_password_verify("s3cret pass", NULL));

    _cleanup_free_ char *he = NULL;
    assert_int_equal(oak_password_hash("", &he, &err), 0);
    assert_true(oak_password_verify("", he));
    assert_false(oak_password_verify("x", he));
    assert_int_equal(oak_password_hash(NULL, &he, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    /* known answer (Python hashlib.pbkdf2_hmac, salt "0123456789abcdef") */
    static const char kat[] =
        "pbkdf2_sha256$100000$MDEyMzQ1Njc4OWFiY2RlZg$t9gU63kQhTLkUZA7f8peN5LsQLft4SrcHNA9Fs-60To";
    assert_true(oak_password_verify("pw", kat));
    assert_false(oak_password_verify("pW", kat));

    /* tampered or malformed encodings are false, never a crash */
    _cleanup_free_ char *t = xstrdup(h1);
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    assert_false(oak_password_verify("s3cret pass", t));
    _cleanup_free_ char *other_iter = xstrdup(h1);
    memcpy(other_iter + 14, "100001", 6);
    assert_false(oak_password_verify("s3cret pass", other_iter));
    static const char *bad[] = {
        "",
        "plain",
        "pbkdf2_sha256",
        "pbkdf2_sha256$",
        "pbkdf2_sha256$100000",
        "pbkdf2_sha256$100000$",
        "pbkdf2_sha256$100000$$",
        "pbkdf2_sha256$0$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2_sha256$-5$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2_sha256$999999999999$AAAAAAAAAAAAAAAAAAAAAA$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2_sha256$1000$!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2_sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$",
        "pbkdf2_sha1$100000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "pbkdf2:sha256:600000$abc$def",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (oak_password_verify("s3cret pass", bad[i]))
            fail_msg("accepted malformed encoding '%s'", bad[i]);
    (void)state;
}

static void test_random(void **state)
{
    static const size_t sizes[] = {0, 1, 2, 3, 16, 31, 32, 33, 100};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        _cleanup_free_ char *t = oak_random_token(n);
        assert_int_equal(strlen(t), (4 * n + 2) / 3);
        assert_int_equal(strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_"),
                         strlen(t));
    }
    _cleanup_free_ char *a = oak_random_token(32);
    _cleanup_free_ char *b = oak_random_token(32);
    assert_string_not_equal(a, b);

    unsigned char buf[64] = {0}, zero[64] = {0};
    oak_random_bytes(buf, sizeof(buf));
    assert_memory_not_equal(buf, zero, sizeof(buf));
    oak_random_bytes(buf, 0);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),   cmocka_unit_test(test_jti_unique),
        cmocka_unit_test(test_sign_errors), cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_wrong_key),   cmocka_unit_test(test_alg_none_and_others),
        cmocka_unit_test(test_expiry),      cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_password),    cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
