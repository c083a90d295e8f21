/* Conformance suite of the document store: one set of tests parameterised by
 * a store URI, run against a SQLite file, SQLite :memory: and, when
 * OAK_TEST_MONGO_URI is set, a MongoDB server (its collections "t" and "u"
 * are emptied: use a scratch database). Tests that need two handles on the
 * same data (persistence, lost update, fork) skip :memory:. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_store.h"

static const char *g_uri;
static oak_err_t E;

#define CHECK_OK(call)                                                                             \
    do {                                                                                           \
        oak_err_clear(&E);                                                                         \
        if ((call) < 0)                                                                            \
            fail_msg("%s failed: [%s] %s", #call, oak_err_code_name(E.code), E.msg);               \
    } while (0)

#define CHECK_ERR(call, want)                                                                      \
    do {                                                                                           \
        oak_err_clear(&E);                                                                         \
        if ((call) == 0)                                                                           \
            fail_msg("%s succeeded, expected %s", #call, oak_err_code_name(want));                 \
        if (E.code != (want))                                                                      \
            fail_msg("%s: got [%s] %s, expected %s", #call, oak_err_code_name(E.code), E.msg,      \
                     oak_err_code_name(want));                                                     \
        assert_true(E.msg[0] != '\0');                                                             \
    } while (0)

/* Parses JSON text; the test aborts on a syntax error. */
static json_t *J(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return j;
}

static void assert_json_equal(const json_t *got, const json_t *want)
{
    if (!json_equal((json_t *)got, (json_t *)want)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("got  %s\nwant %s\n", g, w);
        free(g);
        free(w);
        fail();
    }
}

static long long version_of(const json_t *doc)
{
    json_t *v = json_object_get(doc, "_version");
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static oak_store_t *open_store(void)
{
    oak_store_t *st = NULL;
    CHECK_OK(oak_store_open(g_uri, &st, &E));
    return st;
}

static int setup(void **state)
{
    oak_store_t *st = open_store();
    CHECK_OK(oak_store_drop(st, "t", &E));
    CHECK_OK(oak_store_drop(st, "u", &E));
    *state = st;
    return 0;
}

static int teardown(void **state)
{
    oak_store_close(*state);
    oak_err_clear(&E);
    return 0;
}

static void insert_text(oak_store_t *st, const char *coll, const char *text)
{
    json_auto_t *d = J(text);
    CHECK_OK(oak_store_insert(st, coll, d, &E));
    assert_int_equal(version_of(d), 1);
}

/* Asserts that find(field=value) returns exactly the ids in `ids` (a JSON
 * array text) in that order, and that count agrees. */
static void assert_find(oak_store_t *st, const char *field, const char *value, const char *ids)
{
    json_auto_t *v = value ? J(value) : NULL;
    json_auto_t *want = J(ids);
    json_auto_t *got = NULL;
    json_auto_t *got_ids = json_array();
    long long n = -1;
    CHECK_OK(oak_store_find(st, "t", field, v, &got, &E));
    size_t i;
    json_t *d;
    json_array_foreach(got, i, d)
    {
        json_array_append(got_ids, json_object_get(d, "_id"));
        assert_true(json_is_integer(json_object_get(d, "_version")));
    }
    assert_json_equal(got_ids, want);
    CHECK_OK(oak_store_count(st, "t", field, v, &n, &E));
    assert_int_equal(n, json_array_size(want));
}

static void test_backend(void **state)
{
    const char *b = oak_store_backend(*state);
    assert_string_equal(b, strncmp(g_uri, "sqlite:", 7) == 0 ? "sqlite" : "mongodb");
}

static void test_roundtrip(void **state)
{
    oak_store_t *st = *state;
    json_auto_t *doc =
        J("{\"_id\": \"app-1\", \"name\": \"nginx\", \"replicas\": 3,"
          " \"big\": 9007199254740993, \"ratio\": 0.25, \"on\": true, \"off\": false,"
          " \"none\": null, \"spec\": {\"ports\": [80, 443], \"env\": {\"A\": \"1\"},"
          " \"deep\": [[1, 2], {\"x\": [true, null, \"s\", -7]}]}, \"empty\": {},"
          " \"list\": [], \"utf8\": \"h\\u00e9llo \\u2603\", \"_version\": 42}");
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_insert(st, "t", doc, &E));
    assert_int_equal(version_of(doc), 1);
    CHECK_OK(oak_store_get(st, "t", "app-1", &got, &E));
    assert_json_equal(got, doc);
    assert_true(json_is_integer(json_object_get(got, "replicas")));
    assert_true(json_is_integer(json_object_get(got, "big")));
    assert_int_equal(json_integer_value(json_object_get(got, "big")), 9007199254740993LL);
    assert_true(json_is_real(json_object_get(got, "ratio")));
}

static void test_duplicate_insert(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"a\", \"v\": 1}");
    json_auto_t *dup = J("{\"_id\": \"a\", \"v\": 2}");
    json_auto_t *got = NULL;
    CHECK_ERR(oak_store_insert(st, "t", dup, &E), OAK_E_CONFLICT);
    assert_null(json_object_get(dup, "_version"));
    CHECK_OK(oak_store_get(st, "t", "a", &got, &E));
    assert_int_equal(json_integer_value(json_object_get(got, "v")), 1);
    /* same id in another collection is a different document */
    insert_text(st, "u", "{\"_id\": \"a\", \"v\": 3}");
}

static void test_get_missing(void **state)
{
    oak_store_t *st = *state;
    json_t *got = NULL;
    CHECK_ERR(oak_store_get(st, "t", "nope", &got, &E), OAK_E_NOT_FOUND);
    assert_null(got);
}

static void test_find_count(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"c\", \"kind\": \"x\", \"n\": \"1\", \"on\": 1}");
    insert_text(st, "t", "{\"_id\": \"a\", \"kind\": \"x\", \"n\": 1, \"on\": true}");
    insert_text(st, "t", "{\"_id\": \"e\", \"kind\": [\"x\"], \"n\": [1], \"on\": [true]}");
    insert_text(st, "t", "{\"_id\": \"b\", \"kind\": \"y\", \"n\": 2, \"on\": false}");
    insert_text(st, "t", "{\"_id\": \"d\", \"kind\": {\"x\": 1}, \"n\": 1.0, \"on\": \"true\"}");
    insert_text(st, "u", "{\"_id\": \"z\", \"kind\": \"x\"}");

    assert_find(st, NULL, NULL, "[\"a\", \"b\", \"c\", \"d\", \"e\"]");
    assert_find(st, "kind", "\"x\"", "[\"a\", \"c\"]");
    assert_find(st, "kind", "\"y\"", "[\"b\"]");
    assert_find(st, "kind", "\"X\"", "[]");
    assert_find(st, "n", "1", "[\"a\", \"d\"]");
    assert_find(st, "n", "\"1\"", "[\"c\"]");
    assert_find(st, "n", "2", "[\"b\"]");
    assert_find(st, "on", "true", "[\"a\"]");
    assert_find(st, "on", "false", "[\"b\"]");
    assert_find(st, "on", "\"true\"", "[\"d\"]");
    assert_find(st, "missing", "1", "[]");
    assert_find(st, "_id", "\"b\"", "[\"b\"]");
    assert_find(st, "_id", "1", "[]");
    assert_find(st, "_version", "1", "[\"a\", \"b\", \"c\", \"d\", \"e\"]");
    assert_find(st, "_version", "2", "[]");

    json_auto_t *all = NULL;
    json_auto_t *one = J("1");
    json_auto_t *bad_real = J("1.5");
    json_auto_t *bad_null = J("null");
    json_auto_t *bad_obj = J("{}");
    long long n = 0;
    CHECK_ERR(oak_store_find(st, "t", "a.b", one, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "1a", one, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "", one, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "n", bad_real, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "n", bad_null, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "n", bad_obj, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_find(st, "t", "n", NULL, &all, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_count(st, "t", "n'", one, &n, &E), OAK_E_INVALID);
    assert_null(all);

    /* an empty collection */
    CHECK_OK(oak_store_find(st, "empty_coll", NULL, NULL, &all, &E));
    assert_int_equal(json_array_size(all), 0);
    CHECK_OK(oak_store_count(st, "empty_coll", NULL, NULL, &n, &E));
    assert_int_equal(n, 0);
}

static void test_update_versions(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"a\", \"v\": 1}");
    json_auto_t *cur = NULL;
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(st, "t", "a", &cur, &E));
    assert_int_equal(version_of(cur), 1);
    json_object_set_new(cur, "v", json_integer(2));
    json_object_set_new(cur, "extra", J("[1, {\"k\": \"v\"}]"));
    CHECK_OK(oak_store_update(st, "t", cur, 1, &E));
    assert_int_equal(version_of(cur), 2);
    CHECK_OK(oak_store_get(st, "t", "a", &got, &E));
    assert_json_equal(got, cur);

    /* stale version: conflict, stored document unchanged */
    json_auto_t *stale = J("{\"_id\": \"a\", \"v\": 99}");
    CHECK_ERR(oak_store_update(st, "t", stale, 1, &E), OAK_E_CONFLICT);
    assert_null(json_object_get(stale, "_version"));
    json_decref(got);
    got = NULL;
    CHECK_OK(oak_store_get(st, "t", "a", &got, &E));
    assert_json_equal(got, cur);
    CHECK_ERR(oak_store_update(st, "t", stale, 3, &E), OAK_E_CONFLICT);

    /* unconditional: replaces the whole document, fields not kept */
    CHECK_OK(oak_store_update(st, "t", stale, 0, &E));
    assert_int_equal(version_of(stale), 3);
    json_decref(got);
    got = NULL;
    CHECK_OK(oak_store_get(st, "t", "a", &got, &E));
    assert_json_equal(got, stale);
    assert_null(json_object_get(got, "extra"));

    json_auto_t *missing = J("{\"_id\": \"nope\"}");
    CHECK_ERR(oak_store_update(st, "t", missing, 0, &E), OAK_E_NOT_FOUND);
    CHECK_ERR(oak_store_update(st, "t", missing, 1, &E), OAK_E_NOT_FOUND);
    CHECK_ERR(oak_store_update(st, "t", stale, -1, &E), OAK_E_INVALID);
}

static void test_upsert(void **state)
{
    oak_store_t *st = *state;
    json_auto_t *d = J("{\"_id\": \"u1\", \"v\": \"first\", \"_version\": 10}");
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_upsert(st, "t", d, &E));
    assert_int_equal(version_of(d), 1);
    json_object_set_new(d, "v", json_string("second"));
    CHECK_OK(oak_store_upsert(st, "t", d, &E));
    assert_int_equal(version_of(d), 2);
    CHECK_OK(oak_store_get(st, "t", "u1", &got, &E));
    assert_json_equal(got, d);
    assert_string_equal(json_string_value(json_object_get(got, "v")), "second");
}

static void test_delete(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"a\"}");
    insert_text(st, "t", "{\"_id\": \"b\"}");
    json_auto_t *got = NULL;
    long long n = 0;
    CHECK_ERR(oak_store_delete(st, "t", "a", 2, &E), OAK_E_CONFLICT);
    CHECK_OK(oak_store_get(st, "t", "a", &got, &E));
    CHECK_OK(oak_store_delete(st, "t", "a", 1, &E));
    CHECK_ERR(oak_store_get(st, "t", "a", &got, &E), OAK_E_NOT_FOUND);
    CHECK_ERR(oak_store_delete(st, "t", "a", 1, &E), OAK_E_NOT_FOUND);
    CHECK_ERR(oak_store_delete(st, "t", "a", 0, &E), OAK_E_NOT_FOUND);
    CHECK_OK(oak_store_delete(st, "t", "b", 0, &E));
    CHECK_OK(oak_store_count(st, "t", NULL, NULL, &n, &E));
    assert_int_equal(n, 0);
    CHECK_ERR(oak_store_delete(st, "t", "", 0, &E), OAK_E_INVALID);
}

static void test_txn_commit(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"pre\", \"v\": 0}");
    CHECK_OK(oak_store_begin(st, &E));
    CHECK_ERR(oak_store_begin(st, &E), OAK_E_INVALID);
    insert_text(st, "t", "{\"_id\": \"x\"}");
    insert_text(st, "u", "{\"_id\": \"y\"}");
    json_auto_t *pre = J("{\"_id\": \"pre\", \"v\": 1}");
    CHECK_OK(oak_store_update(st, "t", pre, 1, &E));
    /* errors inside a transaction do not abort it */
    json_auto_t *dup = J("{\"_id\": \"x\"}");
    CHECK_ERR(oak_store_insert(st, "t", dup, &E), OAK_E_CONFLICT);
    CHECK_OK(oak_store_commit(st, &E));
    CHECK_ERR(oak_store_commit(st, &E), OAK_E_INVALID);

    long long n = 0;
    CHECK_OK(oak_store_count(st, "t", NULL, NULL, &n, &E));
    assert_int_equal(n, 2);
    CHECK_OK(oak_store_count(st, "u", NULL, NULL, &n, &E));
    assert_int_equal(n, 1);
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(st, "t", "pre", &got, &E));
    assert_int_equal(version_of(got), 2);
    /* a new transaction can start after commit */
    CHECK_OK(oak_store_begin(st, &E));
    CHECK_OK(oak_store_commit(st, &E));
}

static void test_txn_rollback(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"pre\", \"v\": 0}");
    CHECK_OK(oak_store_begin(st, &E));
    insert_text(st, "t", "{\"_id\": \"x\"}");
    json_auto_t *pre = J("{\"_id\": \"pre\", \"v\": 1}");
    CHECK_OK(oak_store_update(st, "t", pre, 1, &E));
    CHECK_OK(oak_store_delete(st, "t", "pre", 2, &E));
    oak_store_rollback(st);
    oak_store_rollback(st); /* no transaction: no-op */

    json_auto_t *got = NULL;
    long long n = 0;
    CHECK_OK(oak_store_count(st, "t", NULL, NULL, &n, &E));
    if (oak_store_transactional(st)) {
        assert_int_equal(n, 1);
        CHECK_ERR(oak_store_get(st, "t", "x", &got, &E), OAK_E_NOT_FOUND);
        CHECK_OK(oak_store_get(st, "t", "pre", &got, &E));
        assert_int_equal(version_of(got), 1);
        assert_int_equal(json_integer_value(json_object_get(got, "v")), 0);
    } else {
        /* documented: writes are durable one by one and not undone */
        assert_int_equal(n, 1);
        CHECK_OK(oak_store_get(st, "t", "x", &got, &E));
    }
    CHECK_OK(oak_store_begin(st, &E));
    CHECK_OK(oak_store_commit(st, &E));
}

static void test_bad_collection(void **state)
{
    oak_store_t *st = *state;
    json_auto_t *d = J("{\"_id\": \"a\"}");
    json_auto_t *got = NULL;
    long long n;
    const char *bad[] = {
        "",     "A",
        "1abc", "_a",
        "a-b",  "a.b",
        "a b",  "aB",
        "a$",   "a234567890123456789012345678901234567890123456789012345678901234"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_ERR(oak_store_insert(st, bad[i], d, &E), OAK_E_INVALID);
        CHECK_ERR(oak_store_get(st, bad[i], "a", &got, &E), OAK_E_INVALID);
        CHECK_ERR(oak_store_count(st, bad[i], NULL, NULL, &n, &E), OAK_E_INVALID);
        CHECK_ERR(oak_store_delete(st, bad[i], "a", 0, &E), OAK_E_INVALID);
    }
    CHECK_ERR(oak_store_insert(st, NULL, d, &E), OAK_E_INVALID);
    /* 63 characters is the longest valid name */
    const char *longest = "a23456789012345678901234567890123456789012345678901234567890123";
    assert_int_equal(strlen(longest), 63);
    CHECK_OK(oak_store_drop(st, longest, &E));
    CHECK_OK(oak_store_insert(st, longest, d, &E));
    CHECK_OK(oak_store_drop(st, longest, &E));
    CHECK_OK(oak_store_count(st, longest, NULL, NULL, &n, &E));
    assert_int_equal(n, 0);
}

static void test_bad_documents(void **state)
{
    oak_store_t *st = *state;
    const char *bad[] = {
        "{\"name\": \"no id\"}", "{\"_id\": 5}", "{\"_id\": null}", "{\"_id\": \"\"}",
        "{\"_id\": [\"a\"]}",    "[1, 2]",       "\"_id\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_auto_t *d = J(bad[i]);
        CHECK_ERR(oak_store_insert(st, "t", d, &E), OAK_E_INVALID);
        CHECK_ERR(oak_store_upsert(st, "t", d, &E), OAK_E_INVALID);
        CHECK_ERR(oak_store_update(st, "t", d, 0, &E), OAK_E_INVALID);
    }
    CHECK_ERR(oak_store_insert(st, "t", NULL, &E), OAK_E_INVALID);

    char id[OAK_STORE_ID_MAX + 2];
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    json_auto_t *too_long = json_pack("{s:s}", "_id", id);
    CHECK_ERR(oak_store_insert(st, "t", too_long, &E), OAK_E_INVALID);
    id[OAK_STORE_ID_MAX] = '\0';
    json_auto_t *longest = json_pack("{s:s}", "_id", id);
    CHECK_OK(oak_store_insert(st, "t", longest, &E));
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(st, "t", id, &got, &E));
    json_decref(got);
    got = NULL;
    CHECK_ERR(oak_store_get(st, "t", "", &got, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_get(st, "t", NULL, &got, &E), OAK_E_INVALID);
    /* ids are opaque strings: quotes, slashes, unicode */
    insert_text(st, "t", "{\"_id\": \"we'ird/\\\"id\\\" \\u00fc\"}");
    CHECK_OK(oak_store_get(st, "t", "we'ird/\"id\" \xc3\xbc", &got, &E));
}

static void test_persistence(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"keep\", \"spec\": {\"a\": [1, 2, 3]}}");
    json_auto_t *d = J("{\"_id\": \"keep\", \"spec\": {\"a\": [4]}}");
    CHECK_OK(oak_store_update(st, "t", d, 1, &E));
    oak_store_close(st);
    *state = st = open_store();
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(st, "t", "keep", &got, &E));
    assert_json_equal(got, d);
    assert_int_equal(version_of(got), 2);
}

static void test_lost_update(void **state)
{
    oak_store_t *a = *state;
    oak_store_t *b = open_store();
    insert_text(a, "t", "{\"_id\": \"doc\", \"owner\": \"nobody\"}");
    json_auto_t *da = NULL;
    json_auto_t *db = NULL;
    CHECK_OK(oak_store_get(a, "t", "doc", &da, &E));
    CHECK_OK(oak_store_get(b, "t", "doc", &db, &E));
    long long v = version_of(da);
    assert_int_equal(version_of(db), v);
    json_object_set_new(da, "owner", json_string("a"));
    json_object_set_new(db, "owner", json_string("b"));
    CHECK_OK(oak_store_update(a, "t", da, v, &E));
    CHECK_ERR(oak_store_update(b, "t", db, v, &E), OAK_E_CONFLICT);
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(b, "t", "doc", &got, &E));
    assert_string_equal(json_string_value(json_object_get(got, "owner")), "a");
    assert_int_equal(version_of(got), v + 1);
    /* stale delete from the loser is refused too */
    CHECK_ERR(oak_store_delete(b, "t", "doc", v, &E), OAK_E_CONFLICT);
    oak_store_close(b);
}

#define FORK_PROCS 2
#define FORK_INCS  200

/* Child body: FORK_INCS read-modify-conditional-update increments with
 * retry on conflict. Returns an exit status. */
static int child_increments(int start_fd)
{
    long conflicts = 0;
    oak_store_t *st = NULL;
    oak_err_t e = OAK_ERR_INIT;
    char c;
    if (oak_store_open(g_uri, &st, &e) < 0) {
        fprintf(stderr, "child open: %s\n", e.msg);
        return 10;
    }
    /* start together: wait until the parent closes the pipe */
    while (read(start_fd, &c, 1) < 0 && errno == EINTR)
        ;
    for (int i = 0; i < FORK_INCS; i++) {
        for (long tries = 0;; tries++) {
            json_t *d = NULL;
            if (oak_store_get(st, "t", "counter", &d, &e) < 0) {
                fprintf(stderr, "child get: %s\n", e.msg);
                return 11;
            }
            long long v = json_integer_value(json_object_get(d, "_version"));
            long long n = json_integer_value(json_object_get(d, "n"));
            json_object_set_new(d, "n", json_integer(n + 1));
            usleep(100); /* widen the read-modify-write window */
            int r = oak_store_update(st, "t", d, v, &e);
            json_decref(d);
            if (r == 0)
                break;
            if (e.code != OAK_E_CONFLICT || tries > 100000) {
                fprintf(stderr, "child update: %s\n", e.msg);
                return 12;
            }
            oak_err_clear(&e);
            conflicts++;
        }
    }
    oak_store_close(st);
    printf("child %d: %d increments, %ld conflicts retried\n", (int)getpid(), FORK_INCS, conflicts);
    fflush(stdout);
    return 0;
}

static void test_fork_counter(void **state)
{
    oak_store_t *st = *state;
    insert_text(st, "t", "{\"_id\": \"counter\", \"n\": 0}");
    fflush(NULL);
    int start[2];
    assert_int_equal(pipe(start), 0);
    pid_t pids[FORK_PROCS];
    for (int i = 0; i < FORK_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(start[1]);
            _exit(child_increments(start[0]));
        }
    }
    close(start[0]);
    usleep(100 * 1000); /* let the children open their handles */
    close(start[1]);
    for (int i = 0; i < FORK_PROCS; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    json_auto_t *got = NULL;
    CHECK_OK(oak_store_get(st, "t", "counter", &got, &E));
    assert_int_equal(json_integer_value(json_object_get(got, "n")), FORK_PROCS * FORK_INCS);
    assert_int_equal(version_of(got), FORK_PROCS * FORK_INCS + 1);
}

/* Backend-independent tests. */

static void test_new_id(void **state)
{
    enum { N = 2000 };
    char(*ids)[25] = xcalloc(N, 25);
    for (int i = 0; i < N; i++) {
        oak_store_new_id(ids[i]);
        assert_int_equal(strlen(ids[i]), 24);
        assert_int_equal(strspn(ids[i], "0123456789abcdef"), 24);
        if (i > 0)
            assert_string_not_equal(ids[i], ids[i - 1]);
    }
    /* leading 4 bytes are the current time in seconds, big endian */
    char hex[9];
    memcpy(hex, ids[0], 8);
    hex[8] = '\0';
    long long t = strtoll(hex, NULL, 16);
    assert_true(llabs(t - (long long)time(NULL)) < 5);
    /* same process: same random part; counter increments by one */
    assert_memory_equal(ids[0] + 8, ids[1] + 8, 10);
    long c0 = strtol(ids[0] + 18, NULL, 16), c1 = strtol(ids[1] + 18, NULL, 16);
    assert_int_equal((c0 + 1) & 0xffffff, c1);
    free(ids);
}

static void test_open_errors(void **state)
{
    oak_store_t *st = NULL;
    CHECK_ERR(oak_store_open("postgres://x", &st, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_open("sqlite:", &st, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_open(NULL, &st, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_open("mongodb://", &st, &E), OAK_E_INVALID);
    CHECK_ERR(oak_store_open("sqlite:/nonexistent-oak-dir/sub/x.db", &st, &E), OAK_E_IO);
    assert_non_null(strstr(E.msg, "/nonexistent-oak-dir/sub"));
    assert_null(st);
}

static void test_mongo_unavailable(void **state)
{
    oak_store_t *st = NULL;
    CHECK_OK(oak_store_open("mongodb://127.0.0.1:1/x", &st, &E));
    assert_string_equal(oak_store_backend(st), "mongodb");
    assert_false(oak_store_transactional(st));
    json_auto_t *got = NULL;
    json_auto_t *d = J("{\"_id\": \"a\"}");
    time_t t0 = time(NULL);
    CHECK_ERR(oak_store_get(st, "t", "a", &got, &E), OAK_E_UNAVAILABLE);
    assert_non_null(strstr(E.msg, "127.0.0.1:1"));
    print_message("unavailable: %s\n", E.msg);
    CHECK_ERR(oak_store_insert(st, "t", d, &E), OAK_E_UNAVAILABLE);
    assert_null(json_object_get(d, "_version"));
    assert_true(time(NULL) - t0 < 20);
    oak_store_close(st);
}

#define CONFORMANCE_TESTS                                                                          \
    cmocka_unit_test_setup_teardown(test_backend, setup, teardown),                                \
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),                          \
        cmocka_unit_test_setup_teardown(test_duplicate_insert, setup, teardown),                   \
        cmocka_unit_test_setup_teardown(test_get_missing, setup, teardown),                        \
        cmocka_unit_test_setup_teardown(test_find_count, setup, teardown),                         \
        cmocka_unit_test_setup_teardown(test_update_versions, setup, teardown),                    \
        cmocka_unit_test_setup_teardown(test_upsert, setup, teardown),                             \
        cmocka_unit_test_setup_teardown(test_delete, setup, teardown),                             \
        cmocka_unit_test_setup_teardown(test_txn_commit, setup, teardown),                         \
        cmocka_unit_test_setup_teardown(test_txn_rollback, setup, teardown),                       \
        cmocka_unit_test_setup_teardown(test_bad_collection, setup, teardown),                     \
        cmocka_unit_test_setup_teardown(test_bad_documents, setup, teardown)

#define SHARED_TESTS                                                                               \
    cmocka_unit_test_setup_teardown(test_persistence, setup, teardown),                            \
        cmocka_unit_test_setup_teardown(test_lost_update, setup, teardown),                        \
        cmocka_unit_test_setup_teardown(test_fork_counter, setup, teardown)

static void remove_db(const char *path)
{
    const char *suffix[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char *p = xasprintf("%s%s", path, suffix[i]);
        unlink(p);
        free(p);
    }
}

int main(void)
{
    const struct CMUnitTest misc[] = {
        cmocka_unit_test(test_new_id),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_mongo_unavailable),
    };
    const struct CMUnitTest shared[] = {CONFORMANCE_TESTS, SHARED_TESTS};
    const struct CMUnitTest memory[] = {CONFORMANCE_TESTS};
    int failed = 0;

    const char *tmp = getenv("TMPDIR");
    char *dir = xasprintf("%s/oak-store-test.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char *db = xasprintf("%s/test.db", dir);
    char *uri = xasprintf("sqlite:%s", db);

    failed += cmocka_run_group_tests_name("store_misc", misc, NULL, NULL);
    g_uri = uri;
    failed += cmocka_run_group_tests_name("store_sqlite_file", shared, NULL, NULL);
    g_uri = "sqlite::memory:";
    failed += cmocka_run_group_tests_name("store_sqlite_memory", memory, NULL, NULL);

    const char *mongo = getenv("OAK_TEST_MONGO_URI");
    if (mongo && mongo[0]) {
        g_uri = mongo;
        failed += cmocka_run_group_tests_name("store_mongodb", shared, NULL, NULL);
    } else {
        printf("SKIPPED: MongoDB conformance run (set "
               "OAK_TEST_MONGO_URI=mongodb://host:port/db to run it)\n");
    }

    remove_db(db);
    rmdir(dir);
    free(uri);
    free(db);
    free(dir);
    return failed ? 1 : 0;
}
