/* Unit tests for lib/oak_err: code -> HTTP status and name mapping, field
 * details, errno messages, truncation, clearing and the JSON error body. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/oak_err.h"

static void test_http_status(void **state)
{
    static const struct {
        oak_code_t code;
        int status;
        const char *name;
    } map[] = {
        {OAK_E_OK, 200, "ok"},
        {OAK_E_INVALID, 400, "invalid_request"},
        {OAK_E_UNPROCESSABLE, 422, "validation_failed"},
        {OAK_E_UNAUTH, 401, "unauthenticated"},
        {OAK_E_FORBIDDEN, 403, "forbidden"},
        {OAK_E_NOT_FOUND, 404, "not_found"},
        {OAK_E_CONFLICT, 409, "conflict"},
        {OAK_E_TOO_LARGE, 413, "too_large"},
        {OAK_E_UNAVAILABLE, 503, "unavailable"},
        {OAK_E_TIMEOUT, 504, "timeout"},
        {OAK_E_IO, 500, "io_error"},
        {OAK_E_INTERNAL, 500, "internal"},
        {OAK_E_NOT_IMPLEMENTED, 501, "not_implemented"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        assert_int_equal(oak_err_http_status(map[i].code), map[i].status);
        assert_string_equal(oak_err_code_name(map[i].code), map[i].name);
    }
    /* out-of-range codes degrade to a 500 "internal" */
    assert_int_equal(oak_err_http_status((oak_code_t)999), 500);
    assert_string_equal(oak_err_code_name((oak_code_t)999), "internal");
    assert_string_equal(oak_err_code_name((oak_code_t)-1), "internal");
    (void)state;
}

static void test_set(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_err_set(&err, OAK_E_NOT_FOUND, "service %s not found (%d)", "abc", 7), -1);
    assert_int_equal(err.code, OAK_E_NOT_FOUND);
    assert_int_equal(err.errnum, 0);
    assert_string_equal(err.msg, "service abc not found (7)");
    /* a later set overwrites code, errno and message */
    err.errnum = 5;
    oak_err_set(&err, OAK_E_CONFLICT, "dup");
    assert_int_equal(err.code, OAK_E_CONFLICT);
    assert_int_equal(err.errnum, 0);
    assert_string_equal(err.msg, "dup");
    /* NULL err is allowed */
    assert_int_equal(oak_err_set(NULL, OAK_E_INTERNAL, "x"), -1);
    assert_int_equal(oak_err_errno(NULL, EIO, "x"), -1);
    oak_err_add_field(NULL, "f", "r");
    oak_err_clear(NULL);
    /* long messages are truncated, NUL-terminated */
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    oak_err_set(&err, OAK_E_INVALID, "%s", big);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    (void)state;
}

static void test_errno(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    assert_int_equal(oak_err_errno(&err, ENOENT, "cannot open %s", "/x/y"), -1);
    assert_int_equal(err.code, OAK_E_IO);
    assert_int_equal(err.errnum, ENOENT);
    char want[256];
    snprintf(want, sizeof(want), "cannot open /x/y: %s", strerror(ENOENT));
    assert_string_equal(err.msg, want);
    assert_int_equal(oak_err_http_status(err.code), 500);
    /* a message that fills the buffer gets no suffix and no overflow */
    char big[600];
    memset(big, 'y', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    oak_err_errno(&err, EACCES, "%s", big);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_int_equal(err.errnum, EACCES);
    /* a message just short of the buffer gets a truncated suffix */
    char mid[sizeof(err.msg) - 3];
    memset(mid, 'z', sizeof(mid) - 1);
    mid[sizeof(mid) - 1] = '\0';
    oak_err_errno(&err, EACCES, "%s", mid);
    assert_int_equal(strlen(err.msg), sizeof(err.msg) - 1);
    assert_memory_equal(err.msg + sizeof(mid) - 1, ":", 1);
    (void)state;
}

static void test_fields(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    assert_null(err.details);
    oak_err_add_field(&err, "applications[0].memory", "must be an integer >= %d", 0);
    oak_err_add_field(&err, "sla_version", "must be \"v2.0\"");
    oak_err_set(&err, OAK_E_UNPROCESSABLE, "SLA is invalid: 2 errors");
    /* set keeps the details gathered before it */
    assert_int_equal(json_array_size(err.details), 2);
    json_t *e0 = json_array_get(err.details, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "field")), "applications[0].memory");
    assert_string_equal(json_string_value(json_object_get(e0, "rule")), "must be an integer >= 0");
    json_t *e1 = json_array_get(err.details, 1);
    assert_string_equal(json_string_value(json_object_get(e1, "rule")), "must be \"v2.0\"");
    assert_int_equal(json_object_size(e1), 2);

    oak_err_clear(&err);
    assert_null(err.details);
    assert_int_equal(err.code, OAK_E_OK);
    assert_string_equal(err.msg, "");
    oak_err_clear(&err); /* idempotent */
    (void)state;
}

static void test_to_json(void **state)
{
    oak_err_t err = OAK_ERR_INIT;
    oak_err_set(&err, OAK_E_FORBIDDEN, "You have not enough permissions!");
    json_t *j = oak_err_to_json(&err);
    assert_int_equal(json_object_size(j), 2);
    assert_string_equal(json_string_value(json_object_get(j, "message")),
                        "You have not enough permissions!");
    assert_string_equal(json_string_value(json_object_get(j, "error")), "forbidden");
    assert_null(json_object_get(j, "errors"));
    json_decref(j);

    oak_err_add_field(&err, "a.b", "is required");
    oak_err_set(&err, OAK_E_UNPROCESSABLE, "invalid");
    j = oak_err_to_json(&err);
    json_t *errors = json_object_get(j, "errors");
    assert_true(json_is_array(errors));
    assert_int_equal(json_array_size(errors), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(errors, 0), "field")),
                        "a.b");
    /* the body holds its own reference: clearing err keeps it valid */
    oak_err_clear(&err);
    assert_int_equal(json_array_size(errors), 1);
    json_decref(j);

    /* empty message -> a generic one */
    oak_err_t blank = OAK_ERR_INIT;
    blank.code = OAK_E_INTERNAL;
    j = oak_err_to_json(&blank);
    assert_string_equal(json_string_value(json_object_get(j, "message")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "error")), "internal");
    json_decref(j);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_status), cmocka_unit_test(test_set),
        cmocka_unit_test(test_errno),       cmocka_unit_test(test_fields),
        cmocka_unit_test(test_to_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
