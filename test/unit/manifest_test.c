/* Unit tests for node_engine/manifest (image manifests, indexes, configs:
 * kinds from mediaType, Content-Type or shape; descriptor checks; refused
 * schema 1, artifacts, foreign layers, other digest algorithms; limits;
 * platform selection) and for the registry response parsers of
 * node_engine/registry (WWW-Authenticate challenges, token replies, error
 * bodies). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "node_engine/manifest.h"
#include "node_engine/registry.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static manifest_t *parse_ok(const char *doc, const char *ctype)
{
    manifest_t *m = NULL;
    oak_err_t err = OAK_ERR_INIT;
    if (manifest_parse(doc, strlen(doc), ctype, &m, &err) < 0)
        fail_msg("%s: %s", doc, err.msg);
    return m;
}

static void parse_fails(const char *doc, const char *ctype, oak_code_t code, const char *msg)
{
    manifest_t *m = (manifest_t *)1;
    oak_err_t err = OAK_ERR_INIT;
    if (manifest_parse(doc, strlen(doc), ctype, &m, &err) == 0)
        fail_msg("accepted: %s", doc);
    assert_null(m);
    assert_int_equal(err.code, code);
    if (!strstr(err.msg, msg))
        fail_msg("message '%s' lacks '%s'", err.msg, msg);
}

static void test_docker_manifest(void **state)
{
    const char *doc =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" MT_DOCKER_CONFIG "\",\"size\":1469,\"digest\":\"" D1 "\"},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"size\":3401613,\"digest\":\"" D2 "\"},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":32,"
        "\"digest\":\"" D3 "\"}]}";
    manifest_t *m = parse_ok(doc, NULL);
    assert_int_equal(m->kind, MANIFEST_IMAGE);
    assert_string_equal(m->media_type, MT_DOCKER_MANIFEST);
    assert_string_equal(m->config.digest, D1);
    assert_int_equal(m->config.size, 1469);
    assert_int_equal(m->nlayers, 2);
    assert_string_equal(m->layers[0].digest, D2);
    assert_int_equal(m->layers[0].size, 3401613);
    assert_string_equal(m->layers[1].digest, D3);
    manifest_free(m);
}

static void test_oci_kinds(void **state)
{
    /* an OCI manifest without mediaType: from the Content-Type */
    const char *img = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                      "\",\"size\":10,\"digest\":\"" D1 "\"},\"layers\":[]}";
    manifest_t *m = parse_ok(img, MT_OCI_MANIFEST "; charset=utf-8");
    assert_int_equal(m->kind, MANIFEST_IMAGE);
    assert_int_equal(m->nlayers, 0);
    manifest_free(m);
    /* ... or from its shape */
    m = parse_ok(img, "application/octet-stream");
    assert_int_equal(m->kind, MANIFEST_IMAGE);
    manifest_free(m);

    const char *idx =
        "{\"schemaVersion\":2,\"manifests\":["
        "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"size\":500,\"digest\":\"" D1 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"},"
        "\"annotations\":{\"org.opencontainers.image.ref.name\":\"v1\"}},"
        "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"size\":501,\"digest\":\"" D2 "\","
        "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" MT_OCI_MANIFEST "\",\"size\":502,\"digest\":\"" D3 "\","
        "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}}]}";
    m = parse_ok(idx, NULL);
    assert_int_equal(m->kind, MANIFEST_INDEX);
    assert_int_equal(m->nmanifests, 3);
    assert_string_equal(m->manifests[0].ref_name, "v1");
    assert_string_equal(m->manifests[1].variant, "v8");
    assert_null(m->manifests[1].ref_name);
    manifest_free(m);
}

static void test_platform_select(void **state)
{
    const char *idx =
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_DOCKER_LIST "\",\"manifests\":["
        "{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"size\":1,\"digest\":\"" D1 "\","
        "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v6\"}},"
        "{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"size\":1,\"digest\":\"" D2 "\","
        "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
        "{\"mediaType\":\"" MT_DOCKER_MANIFEST "\",\"size\":1,\"digest\":\"" D3 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"application/vnd.in-toto+json\",\"size\":1,\"digest\":\"" D1 "\","
        "\"platform\":{\"architecture\":\"s390x\",\"os\":\"linux\"}}]}";
    manifest_t *m = parse_ok(idx, NULL);
    oak_err_t err = OAK_ERR_INIT;
    const manifest_desc_t *d = manifest_select_platform(m, "linux", "amd64", NULL, &err);
    assert_non_null(d);
    assert_string_equal(d->digest, D3);
    d = manifest_select_platform(m, "linux", "arm", "v7", &err);
    assert_string_equal(d->digest, D2);
    d = manifest_select_platform(m, "linux", "arm", "v5", &err);
    assert_non_null(d); /* another variant, for lack of better */
    d = manifest_select_platform(m, "linux", "amd64", "v3", &err);
    assert_string_equal(d->digest, D3); /* no variant beats another variant */
    /* artifacts are not images */
    assert_null(manifest_select_platform(m, "linux", "s390x", NULL, &err));
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    assert_non_null(strstr(err.msg, "linux/s390x"));
    assert_non_null(strstr(err.msg, "linux/arm/v6, linux/arm/v7, linux/amd64"));
    assert_null(manifest_select_platform(m, "windows", "amd64", NULL, &err));
    manifest_free(m);
}

static void test_refused(void **state)
{
    parse_fails("{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", NULL, OAK_E_INVALID,
                "schema 1");
    parse_fails("{\"schemaVersion\":3}", NULL, OAK_E_INVALID, "schemaVersion 3");
    parse_fails("{\"layers\":[]}", NULL, OAK_E_INVALID, "no schemaVersion");
    parse_fails("[]", NULL, OAK_E_INVALID, "object");
    parse_fails("{\"schemaVersion\":2", NULL, OAK_E_INVALID, "");
    parse_fails("{\"schemaVersion\":2}", NULL, OAK_E_INVALID, "neither");
    parse_fails("{\"schemaVersion\":2,\"mediaType\":\"text/plain\"}", NULL, OAK_E_INVALID,
                "unsupported manifest media type");
    parse_fails("{\"schemaVersion\":2,\"mediaType\":7}", NULL, OAK_E_INVALID, "string");
    /* an artifact (a helm chart) */
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":"
                "\"application/vnd.cncf.helm.config.v1+json\",\"size\":1,\"digest\":\"" D1
                "\"},\"layers\":[]}",
                MT_OCI_MANIFEST, OAK_E_INVALID, "not a container image");
    /* foreign and unknown layers */
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_DOCKER_CONFIG
                "\",\"size\":1,\"digest\":\"" D1 "\"},\"layers\":[{\"mediaType\":"
                "\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\",\"size\":1,"
                "\"digest\":\"" D2 "\"}]}",
                MT_DOCKER_MANIFEST, OAK_E_INVALID, "foreign");
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":1,\"digest\":\"" D1 "\"},\"layers\":[{\"mediaType\":"
                "\"application/x-tar+bzip2\",\"size\":1,\"digest\":\"" D2 "\"}]}",
                NULL, OAK_E_INVALID, "layers[0]: unsupported layer media type");
    /* descriptors */
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":1,\"digest\":\"sha512:abcd\"},\"layers\":[]}",
                NULL, OAK_E_INVALID, "only sha256");
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":-1,\"digest\":\"" D1 "\"},\"layers\":[]}",
                NULL, OAK_E_INVALID, "config.size");
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":99999999,\"digest\":\"" D1 "\"},\"layers\":[]}",
                NULL, OAK_E_INVALID, "over the");
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":1,\"digest\":\"" D1 "\"},\"layers\":[{\"size\":1,\"digest\":\"" D2
                "\"}]}",
                NULL, OAK_E_INVALID, "layers[0].mediaType is missing");
    parse_fails("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                "\",\"size\":1,\"digest\":\"sha256:ABC\"},\"layers\":[]}",
                NULL, OAK_E_INVALID, "not a sha256 digest");
    parse_fails("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"" MT_OCI_MANIFEST
                "\",\"size\":1,\"digest\":\"" D1 "\",\"platform\":\"linux\"}]}",
                NULL, OAK_E_INVALID, "platform must be an object");
    /* index and manifest mixed */
    parse_fails("{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX
                "\",\"manifests\":[],\"layers\":[]}",
                NULL, OAK_E_INVALID, "index has layers");
}

static void test_limits(void **state)
{
    /* MANIFEST_MAX_LAYERS + 1 layers */
    size_t cap = 200 * (MANIFEST_MAX_LAYERS + 2);
    char *doc = xmalloc(cap);
    size_t o = (size_t)snprintf(doc, cap,
                                "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" MT_OCI_CONFIG
                                "\",\"size\":1,\"digest\":\"" D1 "\"},\"layers\":[");
    for (int i = 0; i <= MANIFEST_MAX_LAYERS; i++)
        o += (size_t)snprintf(doc + o, cap - o,
                              "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\","
                              "\"size\":1,\"digest\":\"" D2 "\"}",
                              i ? "," : "");
    snprintf(doc + o, cap - o, "]}");
    parse_fails(doc, NULL, OAK_E_INVALID, "layers (at most");
    free(doc);
    /* documents over 4 MiB */
    size_t big = MANIFEST_MAX_BYTES + 1;
    char *huge = xmalloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = 0;
    manifest_t *m = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(manifest_parse(huge, big, NULL, &m, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    manifest_config_t *c = NULL;
    assert_int_equal(manifest_config_parse(huge, big, &c, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    free(huge);
}

static void test_config(void **state)
{
    const char *doc =
        "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{"
        "\"Env\":[\"PATH=/usr/bin:/bin\",\"FOO=bar=baz\",\"EMPTY=\"],"
        "\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"nginx\",\"-g\",\"daemon off;\"],"
        "\"WorkingDir\":\"/srv\",\"User\":\"101:101\",\"ExposedPorts\":{\"80/tcp\":{}}},"
        "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D1 "\",\"" D2 "\"]}}";
    manifest_config_t *c = NULL;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(manifest_config_parse(doc, strlen(doc), &c, &err), 0);
    assert_int_equal(c->nenv, 3);
    assert_string_equal(c->env[1], "FOO=bar=baz");
    assert_int_equal(c->nentry, 1);
    assert_string_equal(c->entrypoint[0], "/docker-entrypoint.sh");
    assert_int_equal(c->ncmd, 3);
    assert_string_equal(c->cmd[2], "daemon off;");
    assert_null(c->cmd[3]);
    assert_string_equal(c->workdir, "/srv");
    assert_string_equal(c->user, "101:101");
    assert_string_equal(c->os, "linux");
    assert_string_equal(c->arch, "amd64");
    assert_int_equal(c->ndiff_ids, 2);
    manifest_config_free(c);

    /* a scratch image: no config at all; null and empty members */
    const char *bare = "{\"config\":{\"Cmd\":null,\"Env\":null,\"WorkingDir\":\"\",\"User\":\"\"}}";
    assert_int_equal(manifest_config_parse(bare, strlen(bare), &c, &err), 0);
    assert_int_equal(c->ncmd, 0);
    assert_null(c->cmd);
    assert_null(c->workdir);
    assert_null(c->user);
    manifest_config_free(c);

    static const char *const bad[] = {
        "{\"config\":{\"Env\":[\"NOEQUALS\"]}}",
        "{\"config\":{\"Env\":[\"=x\"]}}",
        "{\"config\":{\"Cmd\":\"sh\"}}",
        "{\"config\":{\"Cmd\":[1]}}",
        "{\"config\":[]}",
        "{\"config\":{\"User\":5}}",
        "{\"rootfs\":{\"diff_ids\":{}}}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        c = (manifest_config_t *)1;
        if (manifest_config_parse(bad[i], strlen(bad[i]), &c, &err) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(err.code, OAK_E_INVALID);
        assert_null(c);
    }
}

static void test_challenge(void **state)
{
    registry_challenge_t c;
    assert_int_equal(
        registry_challenge_parse(
            "Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
            "scope=\"repository:library/nginx:pull\"",
            &c),
        0);
    assert_string_equal(c.scheme, "Bearer");
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/nginx:pull");
    assert_null(c.error);
    registry_challenge_clear(&c);

    assert_int_equal(registry_challenge_parse("Basic realm=\"Registry Realm\"", &c), 0);
    assert_string_equal(c.scheme, "Basic");
    assert_string_equal(c.realm, "Registry Realm");
    registry_challenge_clear(&c);

    /* unquoted values, spaces, escapes, unknown and repeated keys */
    assert_int_equal(registry_challenge_parse(" bearer  Realm = https://x/t , foo=\"a,b\", "
                                              "scope=\"a\\\"b\",error=insufficient_scope,realm=y",
                                              &c),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "https://x/t");
    assert_string_equal(c.scope, "a\"b");
    assert_string_equal(c.error, "insufficient_scope");
    registry_challenge_clear(&c);

    assert_int_equal(registry_challenge_parse("", &c), -1);
    assert_int_equal(registry_challenge_parse("realm=x", &c), -1);
    assert_int_equal(registry_challenge_parse(NULL, &c), -1);
    assert_null(c.scheme);
    assert_int_equal(registry_challenge_parse("Bearer realm=\"unterminated", &c), 0);
    assert_string_equal(c.realm, "unterminated");
    registry_challenge_clear(&c);
}

static void test_token_and_errors(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    const char *a = "{\"token\":\"abc.def\",\"expires_in\":300}";
    char *t = registry_token_parse(a, strlen(a), &err);
    assert_string_equal(t, "abc.def");
    free(t);
    const char *b = "{\"access_token\":\"xyz\"}";
    t = registry_token_parse(b, strlen(b), &err);
    assert_string_equal(t, "xyz");
    free(t);
    const char *c = "{\"token\":\"\"}";
    assert_null(registry_token_parse(c, strlen(c), &err));
    assert_int_equal(err.code, OAK_E_INVALID);
    const char *d = "{\"token\":\"a\\r\\nInjected: 1\"}";
    assert_null(registry_token_parse(d, strlen(d), &err));
    assert_null(registry_token_parse("nope", 4, &err));

    const char *e = "{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"manifest "
                    "unknown\",\"detail\":{\"Tag\":\"x\"}},{\"code\":\"DENIED\"}]}";
    char *m = registry_error_message(e, strlen(e));
    assert_string_equal(m, "MANIFEST_UNKNOWN: manifest unknown; DENIED");
    free(m);
    assert_null(registry_error_message("{\"errors\":[]}", 13));
    assert_null(registry_error_message("<html>", 6));
    assert_null(registry_error_message(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_docker_manifest), cmocka_unit_test(test_oci_kinds),
        cmocka_unit_test(test_platform_select), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_limits),          cmocka_unit_test(test_config),
        cmocka_unit_test(test_challenge),       cmocka_unit_test(test_token_and_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
