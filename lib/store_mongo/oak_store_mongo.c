/* MongoDB backend of the document store. Owns one mongoc_client_t (single
 * threaded, connects lazily) and maps each collection of the store to the
 * collection of the same name in the URI's database (default "oak").
 * Documents cross the jansson/BSON boundary as JSON text (relaxed extended
 * JSON on the way back, so integers stay plain numbers). Conditional writes
 * use a filter {_id, _version}; unconditional update and upsert are
 * read-version-then-conditional-write loops, so "_version" still increases
 * by exactly one per write. Writes use write concern {w: majority, j: true}
 * unless the URI sets one. begin/commit only delimit a group of individually
 * durable writes: rollback cannot undo them (oak_store_transactional() is
 * false). A handle is used by one thread at a time; mongoc_init() runs once
 * per process.
 *
 * Built as a plugin (oak-store-mongo.so, loaded by lib/oak_store.c when a
 * mongodb:// URI is configured) so that the daemons do not map libmongoc
 * and its dependencies (ICU, SASL, Berkeley DB, libmongocrypt, ...) unless
 * they use MongoDB. It calls back into the host only for the symbols the
 * Makefile exports from every executable (OAK_EXPORTS). */
#define OAK_STORE_BACKEND
#include "lib/oak_store.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_log.h"

#define DEFAULT_DB         "oak"
#define DEFAULT_TIMEOUT_MS 2000
#define WTIMEOUT_MS        10000
#define WRITE_RETRIES      100

typedef struct {
    oak_store_t base;
    mongoc_client_t *client;
    char *db;
    char *where; /* "host:port/db" for messages, no credentials */
} mongo_store_t;

static void bson_destroyp(bson_t **b)
{
    if (*b)
        bson_destroy(*b);
}
static void bson_freep(char **s)
{
    bson_free(*s);
}
static void collection_destroyp(mongoc_collection_t **c)
{
    if (*c)
        mongoc_collection_destroy(*c);
}
static void cursor_destroyp(mongoc_cursor_t **c)
{
    if (*c)
        mongoc_cursor_destroy(*c);
}
static void uri_destroyp(mongoc_uri_t **u)
{
    if (*u)
        mongoc_uri_destroy(*u);
}
#define _cleanup_bson_       _cleanup_(bson_destroyp)
#define _cleanup_bson_reply_ _cleanup_(bson_destroy) /* stack bson_t */
#define _cleanup_bson_str_   _cleanup_(bson_freep)
#define _cleanup_collection_ _cleanup_(collection_destroyp)
#define _cleanup_cursor_     _cleanup_(cursor_destroyp)
#define _cleanup_uri_        _cleanup_(uri_destroyp)

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void log_handler(mongoc_log_level_t level, const char *domain, const char *msg, void *data)
{
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        log_error("mongoc %s: %s", domain, msg);
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        log_warn("mongoc %s: %s", domain, msg);
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        log_debug("mongoc %s: %s", domain, msg);
        break;
    default:
        break;
    }
}

static void init_mongoc(void)
{
    mongoc_init();
    mongoc_log_set_handler(log_handler, NULL);
}

static bool is_unavailable_server_code(uint32_t code)
{
    switch (code) {
    case 6:     /* HostUnreachable */
    case 7:     /* HostNotFound */
    case 89:    /* NetworkTimeout */
    case 91:    /* ShutdownInProgress */
    case 189:   /* PrimarySteppedDown */
    case 262:   /* ExceededTimeLimit */
    case 9001:  /* SocketException */
    case 10107: /* NotWritablePrimary */
    case 11600: /* InterruptedAtShutdown */
    case 11602: /* InterruptedDueToReplStateChange */
    case 13435: /* NotPrimaryNoSecondaryOk */
    case 13436: /* NotPrimaryOrSecondary */
        return true;
    default:
        return false;
    }
}

static int mfail(mongo_store_t *m, const bson_error_t *e, const char *what, oak_err_t *err)
{
    oak_code_t code = OAK_E_INTERNAL;
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
        e->domain == MONGOC_ERROR_WRITE_CONCERN ||
        (e->domain == MONGOC_ERROR_SERVER && is_unavailable_server_code(e->code)))
        code = OAK_E_UNAVAILABLE;
    else if (e->code == MONGOC_ERROR_DUPLICATE_KEY)
        code = OAK_E_CONFLICT;
    return oak_err_set(err, code, "mongodb store %s: %s: %s", m->where, what, e->message);
}

static mongoc_collection_t *coll_of(mongo_store_t *m, const char *coll)
{
    return mongoc_client_get_collection(m->client, m->db, coll);
}

/* BSON of body with "_version" appended (body has none). */
static int to_bson(mongo_store_t *m, const json_t *body, long long version, bson_t **out,
                   oak_err_t *err)
{
    _cleanup_free_ char *text = json_dumps(body, JSON_COMPACT);
    bson_error_t e;
    if (!text)
        return oak_err_set(err, OAK_E_INTERNAL, "cannot serialise document");
    bson_t *b = bson_new_from_json((const uint8_t *)text, -1, &e);
    if (!b)
        return oak_err_set(err, OAK_E_INVALID, "mongodb store %s: document not storable: %s",
                           m->where, e.message);
    BSON_APPEND_INT64(b, "_version", version);
    *out = b;
    return 0;
}

static int from_bson(mongo_store_t *m, const bson_t *b, json_t **out, oak_err_t *err)
{
    size_t len = 0;
    _cleanup_bson_str_ char *text = bson_as_relaxed_extended_json(b, &len);
    json_error_t jerr;
    json_t *doc = text ? json_loadb(text, len, 0, &jerr) : NULL;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return oak_err_set(err, OAK_E_INTERNAL, "mongodb store %s: cannot convert document",
                           m->where);
    }
    *out = doc;
    return 0;
}

static bson_t *id_filter(const char *id, long long version)
{
    bson_t *f = bson_new();
    BSON_APPEND_UTF8(f, "_id", id);
    if (version > 0)
        BSON_APPEND_INT64(f, "_version", version);
    return f;
}

/* Filter {field: {$eq: value, $not: {$type: "array"}}}: strict scalar
 * equality, like the SQLite backend (no element-wise array match). */
static bson_t *match_filter(const char *field, const json_t *value)
{
    bson_t *f = bson_new();
    if (!field)
        return f;
    bson_t op, neg;
    bson_append_document_begin(f, field, -1, &op);
    if (json_is_string(value))
        bson_append_utf8(&op, "$eq", -1, json_string_value(value), (int)json_string_length(value));
    else if (json_is_integer(value))
        BSON_APPEND_INT64(&op, "$eq", json_integer_value(value));
    else
        BSON_APPEND_BOOL(&op, "$eq", json_is_true(value));
    bson_append_document_begin(&op, "$not", -1, &neg);
    BSON_APPEND_UTF8(&neg, "$type", "array");
    bson_append_document_end(&op, &neg);
    bson_append_document_end(f, &op);
    return f;
}

static int64_t reply_count(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

/* Reads one document: 0 found (*out set), 1 missing, -1 error. */
static int read_one(mongo_store_t *m, const char *coll, const char *id, json_t **out,
                    long long *version, oak_err_t *err)
{
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *filter = id_filter(id, 0);
    _cleanup_bson_ bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    _cleanup_cursor_ mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    if (mongoc_cursor_next(cur, &doc)) {
        if (version) {
            bson_iter_t it;
            *version = bson_iter_init_find(&it, doc, "_version") && BSON_ITER_HOLDS_NUMBER(&it)
                           ? bson_iter_as_int64(&it)
                           : 0;
        }
        return out ? from_bson(m, doc, out, err) : 0;
    }
    if (mongoc_cursor_error(cur, &e))
        return mfail(m, &e, "get", err);
    return 1;
}

/* After a conditional write matched nothing: NOT_FOUND or CONFLICT. */
static int miss(mongo_store_t *m, const char *coll, const char *id, long long expected,
                oak_err_t *err)
{
    long long v = 0;
    int r = read_one(m, coll, id, NULL, &v, err);
    if (r < 0)
        return -1;
    if (r == 1)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
    return oak_err_set(err, OAK_E_CONFLICT,
                       "%s/%s was modified concurrently: version %lld expected, %lld stored", coll,
                       id, expected, v);
}

static void mg_close(oak_store_t *st)
{
    mongo_store_t *m = (mongo_store_t *)st;
    if (m->client)
        mongoc_client_destroy(m->client);
    free(m->db);
    free(m->where);
    free(m);
}

static int mg_insert(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *b = NULL;
    _cleanup_bson_reply_ bson_t reply = BSON_INITIALIZER;
    bson_error_t e;
    if (to_bson(m, body, 1, &b, err) < 0)
        return -1;
    if (!mongoc_collection_insert_one(c, b, NULL, &reply, &e)) {
        if (e.code == MONGOC_ERROR_DUPLICATE_KEY)
            return oak_err_set(err, OAK_E_CONFLICT, "%s/%s already exists", coll, id);
        return mfail(m, &e, "insert", err);
    }
    return 0;
}

static int mg_get(oak_store_t *st, const char *coll, const char *id, json_t **out, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    int r = read_one(m, coll, id, out, NULL, err);
    if (r == 1)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
    return r;
}

static int mg_find(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                   json_t **out, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *filter = match_filter(field, value);
    _cleanup_bson_ bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    _cleanup_cursor_ mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, opts, NULL);
    json_auto_t *arr = json_array();
    const bson_t *doc;
    bson_error_t e;
    while (mongoc_cursor_next(cur, &doc)) {
        json_t *j;
        if (from_bson(m, doc, &j, err) < 0)
            return -1;
        json_array_append_new(arr, j);
    }
    if (mongoc_cursor_error(cur, &e))
        return mfail(m, &e, "find", err);
    *out = oak_steal(&arr);
    return 0;
}

static int mg_count(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                    long long *out, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *filter = match_filter(field, value);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(c, filter, NULL, NULL, NULL, &e);
    if (n < 0)
        return mfail(m, &e, "count", err);
    *out = n;
    return 0;
}

/* Replaces the document if its version is still `version`: 0 replaced,
 * 1 not matched, -1 error. */
static int replace_if(mongo_store_t *m, const char *coll, const char *id, const json_t *body,
                      long long version, oak_err_t *err)
{
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *filter = id_filter(id, version);
    _cleanup_bson_ bson_t *b = NULL;
    _cleanup_bson_reply_ bson_t reply = BSON_INITIALIZER;
    bson_error_t e;
    if (to_bson(m, body, version + 1, &b, err) < 0)
        return -1;
    if (!mongoc_collection_replace_one(c, filter, b, NULL, &reply, &e))
        return mfail(m, &e, "update", err);
    return reply_count(&reply, "matchedCount") > 0 ? 0 : 1;
}

static int mg_update(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     long long expected, long long *new_version, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    if (expected > 0) {
        int r = replace_if(m, coll, id, body, expected, err);
        if (r < 0)
            return -1;
        if (r == 1)
            return miss(m, coll, id, expected, err);
        *new_version = expected + 1;
        return 0;
    }
    for (int i = 0; i < WRITE_RETRIES; i++) {
        long long v = 0;
        int r = read_one(m, coll, id, NULL, &v, err);
        if (r < 0)
            return -1;
        if (r == 1)
            return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
        r = replace_if(m, coll, id, body, v, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            *new_version = v + 1;
            return 0;
        }
    }
    return oak_err_set(err, OAK_E_CONFLICT, "%s/%s: too many concurrent writers", coll, id);
}

static int mg_upsert(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                     long long *new_version, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    for (int i = 0; i < WRITE_RETRIES; i++) {
        long long v = 0;
        int r = read_one(m, coll, id, NULL, &v, err);
        if (r < 0)
            return -1;
        if (r == 1) {
            oak_err_t e2 = OAK_ERR_INIT;
            if (mg_insert(st, coll, id, body, &e2) == 0) {
                *new_version = 1;
                return 0;
            }
            if (e2.code != OAK_E_CONFLICT) {
                if (err)
                    *err = e2;
                else
                    oak_err_clear(&e2);
                return -1;
            }
            oak_err_clear(&e2);
            continue;
        }
        r = replace_if(m, coll, id, body, v, err);
        if (r < 0)
            return -1;
        if (r == 0) {
            *new_version = v + 1;
            return 0;
        }
    }
    return oak_err_set(err, OAK_E_CONFLICT, "%s/%s: too many concurrent writers", coll, id);
}

static int mg_delete(oak_store_t *st, const char *coll, const char *id, long long expected,
                     oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    {
        _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
        _cleanup_bson_ bson_t *filter = id_filter(id, expected);
        _cleanup_bson_reply_ bson_t reply = BSON_INITIALIZER;
        bson_error_t e;
        if (!mongoc_collection_delete_one(c, filter, NULL, &reply, &e))
            return mfail(m, &e, "delete", err);
        if (reply_count(&reply, "deletedCount") > 0)
            return 0;
    }
    if (expected == 0)
        return oak_err_set(err, OAK_E_NOT_FOUND, "%s/%s not found", coll, id);
    return miss(m, coll, id, expected, err);
}

static int mg_drop(oak_store_t *st, const char *coll, oak_err_t *err)
{
    mongo_store_t *m = (mongo_store_t *)st;
    _cleanup_collection_ mongoc_collection_t *c = coll_of(m, coll);
    _cleanup_bson_ bson_t *filter = bson_new();
    _cleanup_bson_reply_ bson_t reply = BSON_INITIALIZER;
    bson_error_t e;
    if (!mongoc_collection_delete_many(c, filter, NULL, &reply, &e))
        return mfail(m, &e, "drop", err);
    return 0;
}

static int mg_begin(oak_store_t *st, oak_err_t *err)
{
    return 0;
}

static int mg_commit(oak_store_t *st, oak_err_t *err)
{
    return 0;
}

static void mg_rollback(oak_store_t *st)
{
    log_warn("mongodb store %s: rollback requested, but writes since begin are already durable "
             "and are not undone",
             ((mongo_store_t *)st)->where);
}

static const oak_store_ops_t mongo_ops = {
    .name = "mongodb",
    .transactional = false,
    .close = mg_close,
    .insert = mg_insert,
    .get = mg_get,
    .find = mg_find,
    .count = mg_count,
    .update = mg_update,
    .upsert = mg_upsert,
    .del = mg_delete,
    .drop = mg_drop,
    .begin = mg_begin,
    .commit = mg_commit,
    .rollback = mg_rollback,
};

/* "host:port[,host:port...]/db" or "srv-host/db". */
static char *describe(const mongoc_uri_t *uri, const char *db)
{
    size_t cap = 256, len = 0;
    char *s = xmalloc(cap);
    s[0] = '\0';
    const mongoc_host_list_t *h = mongoc_uri_get_hosts(uri);
    const char *srv = mongoc_uri_get_srv_hostname(uri);
    if (!h && srv)
        len = (size_t)snprintf(s, cap, "%s", srv);
    for (; h; h = h->next) {
        size_t need = len + strlen(h->host_and_port) + 2;
        if (need > cap) {
            cap = need * 2;
            s = xrealloc(s, cap);
        }
        len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? "," : "", h->host_and_port);
    }
    char *out = xasprintf("%s/%s", s, db);
    free(s);
    return out;
}

int oak_store_mongo_open(const char *uri_str, oak_store_t **out, oak_err_t *err)
{
    pthread_once(&init_once, init_mongoc);
    bson_error_t e;
    _cleanup_uri_ mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &e);
    if (!uri)
        return oak_err_set(err, OAK_E_INVALID, "invalid MongoDB URI: %s", e.message);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       DEFAULT_TIMEOUT_MS);
    if (!mongoc_uri_has_option(uri, MONGOC_URI_CONNECTTIMEOUTMS))
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, DEFAULT_TIMEOUT_MS);
    const char *db = mongoc_uri_get_database(uri);
    if (!db || !db[0])
        db = DEFAULT_DB;

    mongoc_client_t *client = mongoc_client_new_from_uri_with_error(uri, &e);
    if (!client)
        return oak_err_set(err, OAK_E_INVALID, "cannot create MongoDB client: %s", e.message);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    if (!mongoc_uri_get_appname(uri))
        mongoc_client_set_appname(client, "oak");
    if (mongoc_write_concern_is_default(mongoc_uri_get_write_concern(uri))) {
        mongoc_write_concern_t *wc = mongoc_write_concern_new();
        mongoc_write_concern_set_wmajority(wc, WTIMEOUT_MS);
        mongoc_write_concern_set_journal(wc, true);
        mongoc_client_set_write_concern(client, wc);
        mongoc_write_concern_destroy(wc);
    }
    mongo_store_t *m = xcalloc(1, sizeof(*m));
    m->base.ops = &mongo_ops;
    m->client = client;
    m->db = xstrdup(db);
    m->where = describe(uri, db);
    *out = &m->base;
    return 0;
}
