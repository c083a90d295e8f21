/* SQLite backend of the document store. Owns one sqlite3 connection and its
 * cache of prepared statements. All documents live in one table
 *   docs(coll, id, version, body) WITHOUT ROWID, PRIMARY KEY(coll, id)
 * where body is the compact JSON text of the document without "_version".
 * The database runs in WAL mode with synchronous=FULL (a write is durable
 * when the call returns) and busy_timeout 5000 ms, so several handles and
 * processes can share one file; conditional writes are single statements
 * (UPDATE/DELETE ... WHERE version = ?) and therefore atomic across them.
 * A handle is used by one thread at a time (SQLITE_OPEN_NOMUTEX). */
#define OAK_STORE_BACKEND
#include "lib/oak_store.h"

#include <errno.h>
#include <libgen.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define BUSY_TIMEOUT_MS 5000

enum stmt_id {
    S_INSERT,
    S_GET,
    S_UPDATE_IF,
    S_UPDATE,
    S_UPSERT,
    S_DELETE_IF,
    S_DELETE,
    S_DROP,
    S_BEGIN,
    S_COMMIT,
    S_ROLLBACK,
    S_FIXED_COUNT
};

static const char *const stmt_sql[S_FIXED_COUNT] = {
    [S_INSERT] = "INSERT INTO docs(coll, id, version, body) VALUES(?1, ?2, 1, ?3)",
    [S_GET] = "SELECT version, body FROM docs WHERE coll = ?1 AND id = ?2",
    [S_UPDATE_IF] = "UPDATE docs SET version = version + 1, body = ?3 "
                    "WHERE coll = ?1 AND id = ?2 AND version = ?4 RETURNING version",
    [S_UPDATE] = "UPDATE docs SET version = version + 1, body = ?3 "
                 "WHERE coll = ?1 AND id = ?2 RETURNING version",
    [S_UPSERT] = "INSERT INTO docs(coll, id, version, body) VALUES(?1, ?2, 1, ?3) "
                 "ON CONFLICT(coll, id) DO UPDATE SET version = version + 1, body = excluded.body "
                 "RETURNING version",
    [S_DELETE_IF] = "DELETE FROM docs WHERE coll = ?1 AND id = ?2 AND version = ?3",
    [S_DELETE] = "DELETE FROM docs WHERE coll = ?1 AND id = ?2",
    [S_DROP] = "DELETE FROM docs WHERE coll = ?1",
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
};

/* Match kinds of find/count. ?1 = coll, ?2 = '$.field', ?3 = value. */
enum match_kind { M_ALL, M_TEXT, M_NUM, M_BOOL, M_ID, M_VERSION, M_KINDS };

static const char *const match_where[M_KINDS] = {
    [M_ALL] = "coll = ?1",
    [M_TEXT] = "coll = ?1 AND json_type(body, ?2) = 'text' AND json_extract(body, ?2) = ?3",
    [M_NUM] = "coll = ?1 AND json_type(body, ?2) IN ('integer', 'real') "
              "AND json_extract(body, ?2) = ?3",
    [M_BOOL] = "coll = ?1 AND json_type(body, ?2) = ?3",
    [M_ID] = "coll = ?1 AND id = ?3",
    [M_VERSION] = "coll = ?1 AND version = ?3",
};

typedef struct {
    oak_store_t base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *fixed[S_FIXED_COUNT];
    sqlite3_stmt *find[M_KINDS];
    sqlite3_stmt *count[M_KINDS];
} sqlite_store_t;

/* Cleanup for a borrowed cached statement: reset it and drop bindings, which
 * also ends the implicit read transaction it may hold. */
static void stmt_resetp(sqlite3_stmt **s)
{
    if (*s) {
        sqlite3_reset(*s);
        sqlite3_clear_bindings(*s);
    }
}
#define _cleanup_stmt_reset_ _cleanup_(stmt_resetp)

static void stmt_finalizep(sqlite3_stmt **s)
{
    sqlite3_finalize(*s);
}
#define _cleanup_stmt_finalize_ _cleanup_(stmt_finalizep)

static oak_code_t code_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return OAK_E_CONFLICT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return OAK_E_UNAVAILABLE;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return OAK_E_IO;
    default:
        return OAK_E_INTERNAL;
    }
}

static int fail(sqlite_store_t *s, int rc, const char *what, oak_err_t *err)
{
    const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
    return oak_err_set(err, code_of(rc), "sqlite store %s: %s: %s", s->path, what, msg);
}

static sqlite3_stmt *prepare(sqlite_store_t *s, sqlite3_stmt **slot, const char *sql,
                             oak_err_t *err)
{
    if (!*slot) {
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) {
            fail(s, rc, "prepare", err);
            return NULL;
        }
    }
    return *slot;
}

static sqlite3_stmt *fixed(sqlite_store_t *s, enum stmt_id id, oak_err_t *err)
{
    return prepare(s, &s->fixed[id], stmt_sql[id], err);
}

static sqlite3_stmt *match_stmt(sqlite_store_t *s, bool count, enum match_kind k, oak_err_t *err)
{
    sqlite3_stmt **slot = count ? &s->count[k] : &s->find[k];
    if (*slot)
        return *slot;
    _cleanup_free_ char *sql =
        count
            ? xasprintf("SELECT count(*) FROM docs WHERE %s", match_where[k])
            : xasprintf("SELECT id, version, body FROM docs WHERE %s ORDER BY id", match_where[k]);
    return prepare(s, slot, sql, err);
}

static int bind_key(sqlite3_stmt *q, const char *coll, const char *id)
{
    int rc = sqlite3_bind_text(q, 1, coll, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && id)
        rc = sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
    return rc;
}

static int bind_body(sqlite3_stmt *q, int idx, const json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text)
        return SQLITE_NOMEM;
    return sqlite3_bind_text(q, idx, text, -1, free);
}

/* Parses a stored body and adds "_version". */
static int load_doc(sqlite_store_t *s, const char *id, long long version, const unsigned char *text,
                    int len, json_t **out, oak_err_t *err)
{
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)text, (size_t)len, 0, &jerr);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return oak_err_set(err, OAK_E_INTERNAL, "sqlite store %s: document %s is corrupt: %s",
                           s->path, id, jerr.text);
    }
    json_object_set_new(doc, "_version", json_integer(version));
    *out = doc;
    return 0;
}

static void sq_close(oak_store_t *st)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    for (int i = 0; i < S_FIXED_COUNT; i++)
        sqlite3_finalize(s->fixed[i]);
    for (int i = 0; i < M_KINDS; i++) {
        sqlite3_finalize(s->find[i]);
        sqlite3_finalize(s->count[i]);
    }
    sqlite3_close(s->db); /* rolls back an open transaction */
    free(s->path);
    free(s);
}

static int sq_insert(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, S_INSERT, err);
    if (!q)
        return -1;
    int rc = bind_key(q, coll, id);
    if (rc == SQLITE_OK)
        rc = bind_body(q, 3, body);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return oak_err_set(err, OAK_E_CONFLICT, "%s/%s already exists", coll, id);
    return fail(s, rc, "insert", err);
}

static int sq_get(oak_store_t *st, const char *coll, const char *id, json_t **out, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, S_GET, err);
    if (!q)
        return -1;
    int rc = bind_key(q, coll, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
    if (rc != SQLITE_ROW)
        return fail(s, rc, "get", err);
    return load_doc(s, id, sqlite3_column_int64(q, 0), sqlite3_column_text(q, 1),
                    sqlite3_column_bytes(q, 1), out, err);
}

/* Picks the match kind and binds ?1..?3. Returns 1 when nothing can match
 * (e.g. _id compared with an integer). */
static int bind_match(sqlite3_stmt **q, sqlite_store_t *s, bool count, const char *coll,
                      const char *field, const json_t *value, oak_err_t *err)
{
    enum match_kind k;
    if (!field)
        k = M_ALL;
    else if (strcmp(field, "_id") == 0)
        k = json_is_string(value) ? M_ID : M_KINDS;
    else if (strcmp(field, "_version") == 0)
        k = json_is_integer(value) ? M_VERSION : M_KINDS;
    else if (json_is_string(value))
        k = M_TEXT;
    else if (json_is_integer(value))
        k = M_NUM;
    else
        k = M_BOOL;
    if (k == M_KINDS)
        return 1;
    *q = match_stmt(s, count, k, err);
    if (!*q)
        return -1;
    int rc = sqlite3_bind_text(*q, 1, coll, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK && field && k != M_ID && k != M_VERSION)
        rc = sqlite3_bind_text(*q, 2, xasprintf("$.%s", field), -1, free);
    if (rc == SQLITE_OK && k == M_BOOL)
        rc = sqlite3_bind_text(*q, 3, json_is_true(value) ? "true" : "false", -1, SQLITE_STATIC);
    else if (rc == SQLITE_OK && (k == M_TEXT || k == M_ID))
        rc = sqlite3_bind_text(*q, 3, json_string_value(value), -1, SQLITE_STATIC);
    else if (rc == SQLITE_OK && (k == M_NUM || k == M_VERSION))
        rc = sqlite3_bind_int64(*q, 3, json_integer_value(value));
    if (rc != SQLITE_OK)
        return fail(s, rc, "bind", err);
    return 0;
}

static int sq_find(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                   json_t **out, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = NULL;
    json_auto_t *arr = json_array();
    int r = bind_match(&q, s, false, coll, field, value, err);
    if (r < 0)
        return -1;
    if (r == 0) {
        int rc;
        while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
            json_t *doc;
            const char *id = (const char *)sqlite3_column_text(q, 0);
            if (load_doc(s, id ? id : "?", sqlite3_column_int64(q, 1), sqlite3_column_text(q, 2),
                         sqlite3_column_bytes(q, 2), &doc, err) < 0)
                return -1;
            json_array_append_new(arr, doc);
        }
        if (rc != SQLITE_DONE)
            return fail(s, rc, "find", err);
    }
    *out = oak_steal(&arr);
    return 0;
}

static int sq_count(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                    long long *out, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = NULL;
    int r = bind_match(&q, s, true, coll, field, value, err);
    if (r < 0)
        return -1;
    if (r == 1) {
        *out = 0;
        return 0;
    }
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW)
        return fail(s, rc, "count", err);
    *out = sqlite3_column_int64(q, 0);
    return 0;
}

/* After a conditional write matched no row: NOT_FOUND or CONFLICT. */
static int miss(sqlite_store_t *s, const char *coll, const char *id, long long expected,
                oak_err_t *err)
{
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, S_GET, err);
    if (!q)
        return -1;
    int rc = bind_key(q, coll, id);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc == SQLITE_DONE)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
    if (rc != SQLITE_ROW)
        return fail(s, rc, "get", err);
    return oak_err_set(err, OAK_E_CONFLICT,
                       "%s/%s was modified concurrently: version %lld expected, %lld stored", coll,
                       id, expected, (long long)sqlite3_column_int64(q, 0));
}

static int sq_update(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     long long expected, long long *new_version, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    int rc;
    {
        _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, expected ? S_UPDATE_IF : S_UPDATE, err);
        if (!q)
            return -1;
        rc = bind_key(q, coll, id);
        if (rc == SQLITE_OK)
            rc = bind_body(q, 3, body);
        if (rc == SQLITE_OK && expected)
            rc = sqlite3_bind_int64(q, 4, expected);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(q);
        if (rc == SQLITE_ROW) {
            *new_version = sqlite3_column_int64(q, 0);
            rc = sqlite3_step(q); /* finish the statement: commits in autocommit mode */
            if (rc == SQLITE_DONE)
                return 0;
        }
        if (rc != SQLITE_DONE)
            return fail(s, rc, "update", err);
    }
    return miss(s, coll, id, expected, err);
}

static int sq_upsert(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     long long *new_version, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, S_UPSERT, err);
    if (!q)
        return -1;
    int rc = bind_key(q, coll, id);
    if (rc == SQLITE_OK)
        rc = bind_body(q, 3, body);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *new_version = sqlite3_column_int64(q, 0);
        rc = sqlite3_step(q);
    }
    if (rc != SQLITE_DONE)
        return fail(s, rc, "upsert", err);
    return 0;
}

static int sq_delete(oak_store_t *st, const char *coll, const char *id, long long expected,
                     oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    {
        _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, expected ? S_DELETE_IF : S_DELETE, err);
        if (!q)
            return -1;
        int rc = bind_key(q, coll, id);
        if (rc == SQLITE_OK && expected)
            rc = sqlite3_bind_int64(q, 3, expected);
        if (rc == SQLITE_OK)
            rc = sqlite3_step(q);
        if (rc != SQLITE_DONE)
            return fail(s, rc, "delete", err);
        if (sqlite3_changes(s->db) > 0)
            return 0;
    }
    return miss(s, coll, id, expected, err);
}

static int sq_drop(oak_store_t *st, const char *coll, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, S_DROP, err);
    if (!q)
        return -1;
    int rc = bind_key(q, coll, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc != SQLITE_DONE)
        return fail(s, rc, "drop", err);
    return 0;
}

static int exec_fixed(sqlite_store_t *s, enum stmt_id id, const char *what, oak_err_t *err)
{
    _cleanup_stmt_reset_ sqlite3_stmt *q = fixed(s, id, err);
    if (!q)
        return -1;
    int rc = sqlite3_step(q);
    if (rc != SQLITE_DONE)
        return fail(s, rc, what, err);
    return 0;
}

static int sq_begin(oak_store_t *st, oak_err_t *err)
{
    return exec_fixed((sqlite_store_t *)st, S_BEGIN, "begin", err);
}

static void sq_rollback(oak_store_t *st)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    if (!sqlite3_get_autocommit(s->db))
        exec_fixed(s, S_ROLLBACK, "rollback", NULL);
}

static int sq_commit(oak_store_t *st, oak_err_t *err)
{
    sqlite_store_t *s = (sqlite_store_t *)st;
    if (exec_fixed(s, S_COMMIT, "commit", err) < 0) {
        sq_rollback(st);
        return -1;
    }
    return 0;
}

static const oak_store_ops_t sqlite_ops = {
    .name = "sqlite",
    .transactional = true,
    .close = sq_close,
    .insert = sq_insert,
    .get = sq_get,
    .find = sq_find,
    .count = sq_count,
    .update = sq_update,
    .upsert = sq_upsert,
    .del = sq_delete,
    .drop = sq_drop,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
};

/* Runs one statement; *text (optional) receives the first column of the
 * first row, owned by the caller. */
static int exec_sql(sqlite_store_t *s, const char *sql, char **text, oak_err_t *err)
{
    _cleanup_stmt_finalize_ sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(q)) == SQLITE_ROW)
            if (text && !*text)
                *text = xstrdup(sqlite3_column_text(q, 0) ? (const char *)sqlite3_column_text(q, 0)
                                                          : "");
    }
    if (rc != SQLITE_DONE)
        return fail(s, rc, sql, err);
    return 0;
}

static int check_parent_dir(const char *path, oak_err_t *err)
{
    _cleanup_free_ char *copy = xstrdup(path);
    const char *dir = dirname(copy);
    struct stat sb;
    if (stat(dir, &sb) < 0)
        return oak_err_errno(err, errno, "sqlite store %s: directory %s is not usable", path, dir);
    if (!S_ISDIR(sb.st_mode))
        return oak_err_set(err, OAK_E_IO, "sqlite store %s: %s is not a directory", path, dir);
    return 0;
}

int oak_store_sqlite_open(const char *path, oak_store_t **out, oak_err_t *err)
{
    bool memory = strcmp(path, ":memory:") == 0;
    if (!memory && check_parent_dir(path, err) < 0)
        return -1;
    sqlite_store_t *s = xcalloc(1, sizeof(*s));
    s->base.ops = &sqlite_ops;
    s->path = xstrdup(path);
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK) {
        if (s->db)
            fail(s, rc, "open", err);
        else
            oak_err_set(err, code_of(rc), "sqlite store %s: open: %s", path, sqlite3_errstr(rc));
        sq_close(&s->base);
        return -1;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    _cleanup_free_ char *mode = NULL;
    if (exec_sql(s, "PRAGMA journal_mode=WAL", &mode, err) < 0 ||
        exec_sql(s, "PRAGMA synchronous=FULL", NULL, err) < 0 ||
        exec_sql(s,
                 "CREATE TABLE IF NOT EXISTS docs(coll TEXT NOT NULL, id TEXT NOT NULL, "
                 "version INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY(coll, id)) "
                 "WITHOUT ROWID",
                 NULL, err) < 0) {
        sq_close(&s->base);
        return -1;
    }
    if (!memory && (!mode || strcmp(mode, "wal") != 0)) {
        oak_err_set(err, OAK_E_IO, "sqlite store %s: cannot enable WAL mode (journal mode is %s)",
                    path, mode ? mode : "unknown");
        sq_close(&s->base);
        return -1;
    }
    *out = &s->base;
    return 0;
}
