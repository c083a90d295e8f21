/* Unit tests for lib/oak_json: bounded parsing and its errors, typed
 * getters, dumping, loading files and atomic saves with an exact mode.
 * Files are written under a fresh mkdtemp directory that is removed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

static char tmpdir[64];

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/oak-json-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        _cleanup_free_ char *p = xasprintf("%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    return rmdir(tmpdir);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_parse_ok(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    const char *doc = "{\"a\": [1, 2], \"b\": {\"c\": null}}";
    assert_int_equal(oak_json_parse(doc, strlen(doc), 1024, &j, &err), 0);
    assert_true(json_is_object(j));
    assert_int_equal(json_array_size(json_object_get(j, "a")), 2);
    json_decref(j);
    /* max 0: no limit */
    assert_int_equal(oak_json_parse(doc, strlen(doc), 0, &j, &err), 0);
    json_decref(j);
    /* exactly max bytes is fine */
    assert_int_equal(oak_json_parse(doc, strlen(doc), strlen(doc), &j, &err), 0);
    json_decref(j);
    /* len bounds the input: the rest of the buffer is not read */
    const char *two = "[1][2]";
    assert_int_equal(oak_json_parse(two, 3, 0, &j, &err), 0);
    assert_int_equal(json_array_size(j), 1);
    json_decref(j);
    /* any JSON value is a document */
    assert_int_equal(oak_json_parse("42", 2, 0, &j, &err), 0);
    assert_int_equal(json_integer_value(j), 42);
    json_decref(j);
    assert_int_equal(oak_json_parse("\"s\"", 3, 0, &j, &err), 0);
    assert_string_equal(json_string_value(j), "s");
    json_decref(j);
    assert_null(err.details);
    (void)state;
}

static void test_parse_errors(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    const char *doc = "{\"a\": 1}";
    assert_int_equal(oak_json_parse(doc, strlen(doc), 3, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, "8 bytes"));
    assert_non_null(strstr(err.msg, "3 bytes"));

    assert_int_equal(oak_json_parse("", 0, 10, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, "empty"));
    assert_int_equal(oak_json_parse(NULL, 0, 10, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    const char *bad = "{\n  \"a\": 1,\n  \"b\": tru\n}";
    assert_int_equal(oak_json_parse(bad, strlen(bad), 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, "line 3"));
    assert_non_null(strstr(err.msg, "column"));

    static const char *invalid[] = {
        "{\"a\": 1, \"a\": 2}", /* duplicate key */
        "{\"a\": 1} x",         /* trailing garbage */
        "{\"a\": 1",            /* truncated */
        "{'a': 1}",             /* not JSON quotes */
        "[1,]",                 /* trailing comma */
        "{\"a\": NaN}",         /* not JSON numbers */
        "\"\\u0000\"",          /* NUL in a string */
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        oak_err_clear(&err);
        if (oak_json_parse(invalid[i], strlen(invalid[i]), 0, &j, &err) != -1)
            fail_msg("accepted %s", invalid[i]);
        assert_int_equal(err.code, OAK_E_INVALID);
    }
    /* a NUL byte inside the buffer */
    assert_int_equal(oak_json_parse("[1,\0 2]", 7, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    /* deep nesting is refused, not a stack overflow */
    size_t depth = 100000;
    char *deep = xmalloc(depth + 1);
    memset(deep, '[', depth);
    deep[depth] = '\0';
    assert_int_equal(oak_json_parse(deep, depth, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    free(deep);
    /* err may be NULL */
    assert_int_equal(oak_json_parse("{", 1, 0, &j, NULL), -1);
    (void)state;
}

static void test_parse_object(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    assert_int_equal(oak_json_parse_object("{}", 2, 0, &j, &err), 0);
    assert_true(json_is_object(j));
    json_decref(j);
    j = NULL;
    assert_int_equal(oak_json_parse_object("[]", 2, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_non_null(strstr(err.msg, "object"));
    assert_null(j);
    assert_int_equal(oak_json_parse_object("true", 4, 0, &j, &err), -1);
    assert_non_null(strstr(err.msg, "object"));
    assert_int_equal(oak_json_parse_object("{}", 2, 1, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    (void)state;
}

static void test_getters(void **state)
{
    json_auto_t *o =
        json_pack("{s:s, s:i, s:f, s:f, s:f, s:f, s:b, s:n, s:I, s:f}", "str", "v", "int", 7,
                  "real_int", 3.0, "real_frac", 3.5, "huge", 1e300, "neg_huge", -1e300, "bool", 1,
                  "null", "big", (json_int_t)LLONG_MAX, "min", -0x1p63);
    assert_string_equal(oak_json_str(o, "str"), "v");
    assert_null(oak_json_str(o, "int"));
    assert_null(oak_json_str(o, "missing"));
    assert_null(oak_json_str(NULL, "str"));

    assert_int_equal(oak_json_int(o, "int", -1), 7);
    assert_int_equal(oak_json_int(o, "real_int", -1), 3);
    assert_int_equal(oak_json_int(o, "real_frac", -1), -1);
    assert_int_equal(oak_json_int(o, "huge", -1), -1);
    assert_int_equal(oak_json_int(o, "neg_huge", -1), -1);
    assert_true(oak_json_int(o, "min", -1) == LLONG_MIN);
    assert_true(oak_json_int(o, "big", -1) == LLONG_MAX);
    assert_int_equal(oak_json_int(o, "str", -1), -1);
    assert_int_equal(oak_json_int(o, "bool", -1), -1);
    assert_int_equal(oak_json_int(o, "missing", 42), 42);
    assert_int_equal(oak_json_int(NULL, "int", 42), 42);

    assert_true(oak_json_num(o, "int", 0) == 7.0);
    assert_true(oak_json_num(o, "real_frac", 0) == 3.5);
    assert_true(oak_json_num(o, "str", -2.5) == -2.5);
    assert_true(oak_json_num(o, "null", 1.5) == 1.5);

    assert_true(oak_json_bool(o, "bool", false));
    assert_false(oak_json_bool(o, "int", false));
    assert_true(oak_json_bool(o, "int", true));
    assert_true(oak_json_bool(o, "missing", true));
    (void)state;
}

static void test_dump(void **state)
{
    json_auto_t *o = json_pack("{s:[i,i]}", "a", 1, 2);
    char *s = oak_json_dump(o);
    assert_string_equal(s, "{\"a\":[1,2]}");
    free(s);
    s = oak_json_dump(NULL);
    assert_string_equal(s, "null");
    free(s);
    json_auto_t *str = json_string("x\"y");
    s = oak_json_dump(str);
    assert_string_equal(s, "\"x\\\"y\"");
    free(s);
    (void)state;
}

static void test_load_file(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *j = NULL;
    _cleanup_free_ char *good = xasprintf("%s/good.json", tmpdir);
    write_file(good, "{\"port\": 10000}\n");
    assert_int_equal(oak_json_load_file(good, 0, &j, &err), 0);
    assert_int_equal(oak_json_int(j, "port", 0), 10000);
    json_decref(j);

    assert_int_equal(oak_json_load_file(good, 5, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_TOO_LARGE);
    assert_non_null(strstr(err.msg, good));

    _cleanup_free_ char *missing = xasprintf("%s/missing.json", tmpdir);
    assert_int_equal(oak_json_load_file(missing, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(err.errnum, ENOENT);
    assert_non_null(strstr(err.msg, missing));

    _cleanup_free_ char *bad = xasprintf("%s/bad.json", tmpdir);
    write_file(bad, "{\n\"a\": }\n");
    assert_int_equal(oak_json_load_file(bad, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);
    assert_int_equal(strncmp(err.msg, bad, strlen(bad)), 0);
    assert_non_null(strstr(err.msg, "line 2"));
    /* err may be NULL */
    assert_int_equal(oak_json_load_file(bad, 0, &j, NULL), -1);

    _cleanup_free_ char *empty = xasprintf("%s/empty.json", tmpdir);
    write_file(empty, "");
    assert_int_equal(oak_json_load_file(empty, 0, &j, &err), -1);
    assert_int_equal(err.code, OAK_E_INVALID);

    assert_int_equal(oak_json_load_file(tmpdir, 0, &j, &err), -1);
    (void)state;
}

static int count_entries(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    if (d)
        closedir(d);
    return n;
}

static void test_save_file(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    _cleanup_free_ char *path = xasprintf("%s/state.json", tmpdir);
    _cleanup_free_ char *hard = xasprintf("%s/old-link.json", tmpdir);
    int before = count_entries(tmpdir);
    json_auto_t *v1 = json_pack("{s:s, s:i}", "secret", "abc", "version", 1);
    assert_int_equal(oak_json_save_file(path, v1, 0600, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    json_t *back = NULL;
    assert_int_equal(oak_json_load_file(path, 0, &back, &err), 0);
    assert_true(json_equal(back, v1));
    json_decref(back);
    assert_int_equal(count_entries(tmpdir), before + 1); /* no temp file left behind */

    /* replaced by rename, never rewritten in place: a hard link to the old
     * file still sees the old content */
    assert_int_equal(link(path, hard), 0);
    json_auto_t *v2 = json_pack("{s:i}", "version", 2);
    assert_int_equal(oak_json_save_file(path, v2, 0600, &err), 0);
    assert_int_equal(oak_json_load_file(path, 0, &back, &err), 0);
    assert_int_equal(oak_json_int(back, "version", 0), 2);
    json_decref(back);
    assert_int_equal(oak_json_load_file(hard, 0, &back, &err), 0);
    assert_int_equal(oak_json_int(back, "version", 0), 1);
    json_decref(back);
    unlink(hard);

    /* a temp file left by a crashed writer does not lend its mode */
    _cleanup_free_ char *stale = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(stale, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    assert_true(fd >= 0);
    fchmod(fd, 0666);
    close(fd);
    assert_int_equal(oak_json_save_file(path, v1, 0600, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(access(stale, F_OK), -1);

    /* the given mode is exact, whatever the umask */
    mode_t old = umask(077);
    assert_int_equal(oak_json_save_file(path, v1, 0644, &err), 0);
    umask(old);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);

    /* errors: missing directory */
    _cleanup_free_ char *nodir = xasprintf("%s/no/such/dir.json", tmpdir);
    assert_int_equal(oak_json_save_file(nodir, v1, 0600, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(err.errnum, ENOENT);
    /* the target is a directory: rename fails, the temp file is removed */
    _cleanup_free_ char *sub = xasprintf("%s/sub", tmpdir);
    assert_int_equal(mkdir(sub, 0700), 0);
    int n = count_entries(tmpdir);
    assert_int_equal(oak_json_save_file(sub, v1, 0600, &err), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(count_entries(tmpdir), n);
    rmdir(sub);
    (void)state;
}

static void test_string_lossy(void **state)
{
    /* valid UTF-8 (ASCII, 2-, 3-, 4-byte sequences, NUL) is kept */
    const char ok[] = "a\0b \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
    json_t *j = oak_json_string_lossy(ok, sizeof(ok) - 1);
    assert_int_equal(json_string_length(j), sizeof(ok) - 1);
    assert_memory_equal(json_string_value(j), ok, sizeof(ok) - 1);
    json_decref(j);
    /* invalid bytes: a lone continuation, a cut sequence, an overlong form,
     * a surrogate, 0xff -> one U+FFFD each */
    const char bad[] = "x\x80y\xe2\x82z\xc0\xafw\xed\xa0\x80v\xff";
    j = oak_json_string_lossy(bad, sizeof(bad) - 1);
    assert_non_null(j);
    const char *v = json_string_value(j);
    assert_non_null(strstr(v, "x\xef\xbf\xbdy"));
    assert_non_null(strstr(v, "z\xef\xbf\xbd\xef\xbf\xbdw"));
    assert_true(strlen(v) > 0 && v[strlen(v) - 1] == (char)0xbd);
    char *dumped = json_dumps(j, JSON_ENCODE_ANY); /* valid JSON */
    assert_non_null(dumped);
    free(dumped);
    json_decref(j);
    j = oak_json_string_lossy(NULL, 0);
    assert_string_equal(json_string_value(j), "");
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),     cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_object), cmocka_unit_test(test_getters),
        cmocka_unit_test(test_dump),         cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_save_file),
        cmocka_unit_test(test_string_lossy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
