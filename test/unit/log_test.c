/* Unit tests of the logging module, allocation helpers and SHA-256 helper.
 * Log lines are captured by pointing stderr at a pipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_hash.h"
#include "lib/oak_log.h"

/* Runs fn with stderr redirected and returns what was written (owned). */
static char *capture(void (*fn)(void))
{
    int p[2], saved = dup(STDERR_FILENO);
    assert_int_equal(pipe(p), 0);
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *buf = xcalloc(1, 8192);
    ssize_t n = read(p[0], buf, 8191);
    close(p[0]);
    assert_true(n >= 0);
    return buf;
}

static void emit_levels(void)
{
    log_error("e %d", 1);
    log_warn("w %s", "two");
    log_info("i");
    log_debug("d");
}

static void test_level_filter_and_format(void **state)
{
    oak_log_init("unit", OAK_LOG_WARN, false);
    char *out = capture(emit_levels);
    assert_non_null(strstr(out, " unit error e 1\n"));
    assert_non_null(strstr(out, " unit warn  w two\n"));
    assert_null(strstr(out, " i\n"));
    assert_null(strstr(out, " d\n"));
    /* ISO-8601 UTC timestamp with milliseconds first */
    assert_int_equal(out[4], '-');
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[23], 'Z');
    free(out);
    oak_log_init("unit", OAK_LOG_DEBUG, false);
    out = capture(emit_levels);
    assert_non_null(strstr(out, " d\n"));
    free(out);
}

static int side_effects;
static int bump(void)
{
    return ++side_effects;
}
static void emit_debug_with_side_effect(void)
{
    log_debug("%d", bump());
}

static void test_level_tested_before_formatting(void **state)
{
    oak_log_init("unit", OAK_LOG_INFO, false);
    side_effects = 0;
    char *out = capture(emit_debug_with_side_effect);
    assert_int_equal(side_effects, 0);
    assert_string_equal(out, "");
    free(out);
}

static void emit_json(void)
{
    log_info("quote \" and newline\n inside");
}

static void test_json_lines(void **state)
{
    oak_log_init("unit", OAK_LOG_INFO, true);
    char *out = capture(emit_json);
    json_error_t e;
    json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, &e);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "daemon")), "unit");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "quote \" and newline\n inside");
    assert_non_null(json_object_get(j, "ts"));
    json_decref(j);
    free(out);
    oak_log_init("unit", OAK_LOG_INFO, false);
}

static void test_level_parse(void **state)
{
    oak_log_level_t l;
    assert_int_equal(oak_log_level_parse("DEBUG", &l), 0);
    assert_int_equal(l, OAK_LOG_DEBUG);
    assert_int_equal(oak_log_level_parse("warn", &l), 0);
    assert_int_equal(l, OAK_LOG_WARN);
    assert_int_equal(oak_log_level_parse("verbose", &l), -1);
}

static void emit_long(void)
{
    char big[6000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    log_error("%s", big);
}

static void test_long_line_truncated_not_overflowed(void **state)
{
    oak_log_init("unit", OAK_LOG_INFO, false);
    char *out = capture(emit_long);
    size_t n = strlen(out);
    assert_true(n > 1000 && n < 4200);
    free(out);
}

static void test_alloc(void **state)
{
    char *s = xasprintf("%s-%d", "a", 42);
    assert_string_equal(s, "a-42");
    free(s);
    s = xstrndup("abcdef", 3);
    assert_string_equal(s, "abc");
    free(s);
    s = xstrdup(NULL); /* NULL duplicates as "" */
    assert_string_equal(s, "");
    free(s);
    int *v = xcalloc(4, sizeof(int));
    assert_int_equal(v[3], 0);
    v = xrealloc(v, 1000 * sizeof(int));
    v[999] = 7;
    assert_int_equal(v[999], 7);
    free(v);
}

static void test_sha256(void **state)
{
    char hex[65];
    oak_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    oak_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_level_filter_and_format),
        cmocka_unit_test(test_level_tested_before_formatting),
        cmocka_unit_test(test_json_lines),
        cmocka_unit_test(test_level_parse),
        cmocka_unit_test(test_long_line_truncated_not_overflowed),
        cmocka_unit_test(test_alloc),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
