/* Unit tests for node_engine/image_ref: normalisation of the references
 * users write (Docker Hub names, registries with ports, IPv6, digests,
 * tags with digests, oci: layouts), the canonical form and its round trip,
 * the Docker Hub endpoint, and the errors for malformed references. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "node_engine/image_ref.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

typedef struct {
    const char *in;
    const char *registry, *repository, *tag, *digest;
    const char *canonical;
} case_t;

static void check_str(const char *got, const char *want, const char *what, const char *in)
{
    if (!want && !got)
        return;
    if (!want || !got || strcmp(want, got) != 0)
        fail_msg("%s: %s is '%s', expected '%s'", in, what, got ? got : "(null)",
                 want ? want : "(null)");
}

static void test_valid(void **state)
{
    static const case_t cases[] = {
        {"nginx", "docker.io", "library/nginx", "latest", NULL, "docker.io/library/nginx:latest"},
        {"nginx:1.25", "docker.io", "library/nginx", "1.25", NULL, "docker.io/library/nginx:1.25"},
        {"docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", NULL,
         "docker.io/library/nginx:latest"},
        {"index.docker.io/nginx", "docker.io", "library/nginx", "latest", NULL,
         "docker.io/library/nginx:latest"},
        {"user/app", "docker.io", "user/app", "latest", NULL, "docker.io/user/app:latest"},
        {"docker.io/user/app:v1.0_rc-2", "docker.io", "user/app", "v1.0_rc-2", NULL,
         "docker.io/user/app:v1.0_rc-2"},
        {"registry.local:5000/team/app:1", "registry.local:5000", "team/app", "1", NULL,
         "registry.local:5000/team/app:1"},
        {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
        {"localhost:5000/a/b/c", "localhost:5000", "a/b/c", "latest", NULL,
         "localhost:5000/a/b/c:latest"},
        {"127.0.0.1:5000/test/busybox:v1", "127.0.0.1:5000", "test/busybox", "v1", NULL,
         "127.0.0.1:5000/test/busybox:v1"},
        {"[::1]:5000/app:2", "[::1]:5000", "app", "2", NULL, "[::1]:5000/app:2"},
        {"ghcr.io/org/my.app__x--y:_t", "ghcr.io", "org/my.app__x--y", "_t", NULL,
         "ghcr.io/org/my.app__x--y:_t"},
        {"Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", NULL,
         "Registry.Example.COM/app:latest"},
        {"nginx@sha256:" D64, "docker.io", "library/nginx", NULL, "sha256:" D64,
         "docker.io/library/nginx@sha256:" D64},
        {"host:5000/app:v1@sha256:" D64, "host:5000", "app", "v1", "sha256:" D64,
         "host:5000/app:v1@sha256:" D64},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const case_t *c = &cases[i];
        image_ref_t r;
        oak_err_t err = OAK_ERR_INIT;
        if (image_ref_parse(c->in, &r, &err) < 0)
            fail_msg("%s: %s", c->in, err.msg);
        assert_false(r.oci_layout);
        check_str(r.registry, c->registry, "registry", c->in);
        check_str(r.repository, c->repository, "repository", c->in);
        check_str(r.tag, c->tag, "tag", c->in);
        check_str(r.digest, c->digest, "digest", c->in);
        char *canon = image_ref_format(&r);
        check_str(canon, c->canonical, "canonical form", c->in);
        /* the canonical form parses to the same reference */
        image_ref_t again;
        assert_int_equal(image_ref_parse(canon, &again, &err), 0);
        char *canon2 = image_ref_format(&again);
        assert_string_equal(canon, canon2);
        free(canon);
        free(canon2);
        image_ref_clear(&again);
        image_ref_clear(&r);
        assert_null(r.registry);
    }
}

static void test_endpoint(void **state)
{
    image_ref_t r;
    assert_int_equal(image_ref_parse("nginx", &r, NULL), 0);
    assert_string_equal(image_ref_endpoint(&r), "registry-1.docker.io");
    image_ref_clear(&r);
    assert_int_equal(image_ref_parse("quay.io/x/y", &r, NULL), 0);
    assert_string_equal(image_ref_endpoint(&r), "quay.io");
    image_ref_clear(&r);
}

static void test_oci(void **state)
{
    image_ref_t r;
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(image_ref_parse("oci:/srv/images/app:v1", &r, &err), 0);
    assert_true(r.oci_layout);
    assert_string_equal(r.oci_dir, "/srv/images/app");
    assert_string_equal(r.tag, "v1");
    assert_null(r.registry);
    assert_null(r.repository);
    char *s = image_ref_format(&r);
    assert_string_equal(s, "oci:/srv/images/app:v1");
    free(s);
    image_ref_clear(&r);

    assert_int_equal(image_ref_parse("oci:relative/dir", &r, &err), 0);
    assert_string_equal(r.oci_dir, "relative/dir");
    assert_null(r.tag);
    s = image_ref_format(&r);
    assert_string_equal(s, "oci:relative/dir");
    free(s);
    image_ref_clear(&r);

    assert_int_equal(image_ref_parse("oci:", &r, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(image_ref_parse("oci::v1", &r, &err), -1);
    assert_int_equal(image_ref_parse("oci:/a:b/c", &r, &err), -1);
    assert_non_null(strstr(err.msg, "cannot contain ':'"));
}

static void test_invalid(void **state)
{
    static const struct {
        const char *in, *msg;
    } cases[] = {
        {"", "empty"},
        {"Nginx", "lowercase"},
        {"docker.io/Library/nginx", "lowercase"},
        {"nginx:", "invalid tag"},
        {"nginx:-bad", "invalid tag"},
        {"nginx:.bad", "invalid tag"},
        {"nginx:a/b", "invalid"},
        {"nginx@sha256:abc", "64 lower-case"},
        {"nginx@sha256:" D64 "00", "64 lower-case"},
        {"nginx@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
         "64 lower-case"},
        {"nginx@sha512:" D64, "only sha256"},
        {"nginx@", "64 lower-case"},
        {"nginx@@sha256:" D64, "digest"},
        {"a//b", "invalid repository name component ''"},
        {"a/b/", "component"},
        {"/a", "invalid"},
        {"host:5000/", "names no repository"},
        {"ho_st.com/a", "registry host"},
        {"-host.com/a", "registry host"},
        {"host.com:0/a", "registry host"},
        {"host.com:99999/a", "registry host"},
        {"host.com:12a/a", "registry host"},
        {"[]:5000/a", "registry host"},
        {"[zz::1]/a", "registry host"},
        {"a..b", "component"},
        {"a.-b", "component"},
        {"a___b", "component"},
        {"a-", "component"},
        {"with space", "space"},
        {"tab\there", "control"},
        {":tag", "names no repository"},
        {"@sha256:" D64, "names no repository"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        image_ref_t r;
        oak_err_t err = OAK_ERR_INIT;
        if (image_ref_parse(cases[i].in, &r, &err) == 0)
            fail_msg("'%s' was accepted", cases[i].in);
        assert_int_equal(err.code, OAK_E_INVALID);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("'%s': message '%s' lacks '%s'", cases[i].in, err.msg, cases[i].msg);
        assert_null(r.registry);
        assert_null(r.repository);
        assert_null(r.tag);
        assert_null(r.digest);
    }
}

static void test_lengths(void **state)
{
    image_ref_t r;
    oak_err_t err = OAK_ERR_INIT;
    /* 255 characters of name are fine, 256 are not */
    char name[300];
    size_t n = 255 - strlen("docker.io/");
    memset(name, 'a', n);
    name[3] = '/';
    name[n] = 0;
    assert_int_equal(image_ref_parse(name, &r, &err), 0);
    image_ref_clear(&r);
    name[n] = 'a';
    name[n + 1] = 0;
    assert_int_equal(image_ref_parse(name, &r, &err), -1);
    assert_non_null(strstr(err.msg, "longer than 255"));
    /* a 128-character tag is fine, 129 are not */
    char ref[200] = "app:";
    memset(ref + 4, 't', 128);
    ref[132] = 0;
    assert_int_equal(image_ref_parse(ref, &r, &err), 0);
    image_ref_clear(&r);
    ref[132] = 't';
    ref[133] = 0;
    assert_int_equal(image_ref_parse(ref, &r, &err), -1);
    char *big = xmalloc(IMAGE_REF_MAX + 10);
    memset(big, 'a', IMAGE_REF_MAX + 1);
    big[IMAGE_REF_MAX + 1] = 0;
    assert_int_equal(image_ref_parse(big, &r, &err), -1);
    assert_non_null(strstr(err.msg, "longer than"));
    free(big);
}

static void test_digest_valid(void **state)
{
    assert_true(image_digest_valid("sha256:" D64));
    assert_false(image_digest_valid("sha256:" D64 "a"));
    assert_false(image_digest_valid("sha512:" D64));
    assert_false(image_digest_valid(
        "sha256:0123456789abcdeg0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_false(image_digest_valid(NULL));
    assert_false(image_digest_valid(""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),   cmocka_unit_test(test_endpoint),
        cmocka_unit_test(test_oci),     cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_lengths), cmocka_unit_test(test_digest_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
