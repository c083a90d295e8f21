/* Document store front end: parses the store URI and picks the backend,
 * validates every argument once (collection names, ids, field names, match
 * values, documents) so backends can trust their inputs, maintains the
 * caller-visible "_version" of documents and the transaction flag, and
 * generates ObjectId-like ids. A handle is used by one thread at a time;
 * oak_store_new_id() is thread-safe. */
#define OAK_STORE_BACKEND
#include "lib/oak_store.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

static bool valid_coll(const char *c)
{
    if (!c || !(c[0] >= 'a' && c[0] <= 'z'))
        return false;
    size_t n = 1;
    for (; c[n]; n++) {
        char ch = c[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_') || n >= 63)
            return false;
    }
    return true;
}

static bool valid_field(const char *f)
{
    if (!f || !((f[0] >= 'A' && f[0] <= 'Z') || (f[0] >= 'a' && f[0] <= 'z') || f[0] == '_'))
        return false;
    for (size_t n = 1; f[n]; n++) {
        char ch = f[n];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return false;
    }
    return true;
}

static int check_coll(const char *coll, oak_err_t *err)
{
    if (!valid_coll(coll))
        return oak_err_set(err, OAK_E_INVALID,
                           "invalid collection name \"%.80s\": expected ^[a-z][a-z0-9_]{0,62}$",
                           coll ? coll : "(null)");
    return 0;
}

static int check_id(const char *id, oak_err_t *err)
{
    if (!id || !id[0])
        return oak_err_set(err, OAK_E_INVALID, "document _id must be a non-empty string");
    if (strlen(id) > OAK_STORE_ID_MAX)
        return oak_err_set(err, OAK_E_INVALID, "document _id is longer than %d bytes",
                           OAK_STORE_ID_MAX);
    return 0;
}

static int check_st(const oak_store_t *st, oak_err_t *err)
{
    if (!st)
        return oak_err_set(err, OAK_E_INVALID, "store handle is NULL");
    return 0;
}

/* Validates doc and builds the body handed to backends: a shallow copy
 * without "_version". *id borrows from doc. */
static int doc_body(const json_t *doc, const char **id, json_t **body, oak_err_t *err)
{
    if (!json_is_object(doc))
        return oak_err_set(err, OAK_E_INVALID, "document must be a JSON object");
    json_t *jid = json_object_get(doc, "_id");
    if (!json_is_string(jid))
        return oak_err_set(err, OAK_E_INVALID, "document must have a string _id");
    if (check_id(json_string_value(jid), err) < 0)
        return -1;
    json_t *b = json_copy((json_t *)doc);
    if (!b)
        return oak_err_set(err, OAK_E_INTERNAL, "cannot copy document");
    json_object_del(b, "_version");
    *id = json_string_value(jid);
    *body = b;
    return 0;
}

static int check_match(const char *field, const json_t *value, oak_err_t *err)
{
    if (!field)
        return 0;
    if (!valid_field(field))
        return oak_err_set(err, OAK_E_INVALID,
                           "invalid field name \"%.80s\": expected ^[A-Za-z_][A-Za-z0-9_]*$",
                           field);
    if (!json_is_string(value) && !json_is_integer(value) && !json_is_boolean(value))
        return oak_err_set(err, OAK_E_INVALID,
                           "match value for field %s must be a string, integer or boolean", field);
    return 0;
}

static void set_version(json_t *doc, long long v)
{
    json_object_set_new(doc, "_version", json_integer(v));
}

/* Where the MongoDB backend plugin is: $OAK_STORE_MONGO_PLUGIN, else
 * <directory of the executable>/../lib/oak/oak-store-mongo.so (build/bin ->
 * build/lib/oak, /usr/local/bin -> /usr/local/lib/oak). */
static char *mongo_plugin_path(void)
{
    const char *env = getenv("OAK_STORE_MONGO_PLUGIN");
    if (env && *env)
        return xstrdup(env);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (!slash)
        return xstrdup("oak-store-mongo.so");
    *slash = '\0';
    return xasprintf("%s/../lib/oak/oak-store-mongo.so", exe);
}

static int mongo_open(const char *uri, oak_store_t **out, oak_err_t *err)
{
    _cleanup_free_ char *path = mongo_plugin_path();
    /* never closed: libmongoc keeps process-wide state once initialised */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return oak_err_set(err, OAK_E_UNAVAILABLE,
                           "MongoDB support is not installed: cannot load %s (%s); install "
                           "oak-store-mongo.so with the binaries or set OAK_STORE_MONGO_PLUGIN",
                           path, dlerror());
    int (*open_fn)(const char *, oak_store_t **, oak_err_t *) = NULL;
    *(void **)&open_fn = dlsym(h, "oak_store_mongo_open");
    if (!open_fn)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "%s is not an oak store plugin: %s", path,
                           dlerror());
    return open_fn(uri, out, err);
}

int oak_store_open(const char *uri, oak_store_t **out, oak_err_t *err)
{
    if (!uri || !out)
        return oak_err_set(err, OAK_E_INVALID, "store URI is missing");
    if (strncmp(uri, "sqlite:", 7) == 0) {
        if (!uri[7])
            return oak_err_set(err, OAK_E_INVALID,
                               "store URI \"%s\" has no path: expected sqlite:<path>", uri);
        return oak_store_sqlite_open(uri + 7, out, err);
    }
    if (strncmp(uri, "mongodb://", 10) == 0 || strncmp(uri, "mongodb+srv://", 14) == 0)
        return mongo_open(uri, out, err);
    return oak_err_set(err, OAK_E_INVALID,
                       "unsupported store URI \"%.200s\": expected sqlite:<path> or mongodb://...",
                       uri);
}

void oak_store_close(oak_store_t *st)
{
    if (st)
        st->ops->close(st);
}

const char *oak_store_backend(const oak_store_t *st)
{
    return st->ops->name;
}

bool oak_store_transactional(const oak_store_t *st)
{
    return st->ops->transactional;
}

int oak_store_insert(oak_store_t *st, const char *coll, json_t *doc, oak_err_t *err)
{
    json_auto_t *body = NULL;
    const char *id;
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || doc_body(doc, &id, &body, err) < 0)
        return -1;
    if (st->ops->insert(st, coll, id, body, err) < 0)
        return -1;
    set_version(doc, 1);
    return 0;
}

int oak_store_get(oak_store_t *st, const char *coll, const char *id, json_t **out, oak_err_t *err)
{
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || check_id(id, err) < 0)
        return -1;
    return st->ops->get(st, coll, id, out, err);
}

int oak_store_find(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                   json_t **out, oak_err_t *err)
{
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || check_match(field, value, err) < 0)
        return -1;
    return st->ops->find(st, coll, field, value, out, err);
}

int oak_store_count(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                    long long *out, oak_err_t *err)
{
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || check_match(field, value, err) < 0)
        return -1;
    return st->ops->count(st, coll, field, value, out, err);
}

int oak_store_update(oak_store_t *st, const char *coll, json_t *doc, long long expected_version,
                     oak_err_t *err)
{
    json_auto_t *body = NULL;
    const char *id;
    long long v = 0;
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || doc_body(doc, &id, &body, err) < 0)
        return -1;
    if (expected_version < 0)
        return oak_err_set(err, OAK_E_INVALID, "expected version %lld is negative",
                           expected_version);
    if (st->ops->update(st, coll, id, body, expected_version, &v, err) < 0)
        return -1;
    set_version(doc, v);
    return 0;
}

int oak_store_upsert(oak_store_t *st, const char *coll, json_t *doc, oak_err_t *err)
{
    json_auto_t *body = NULL;
    const char *id;
    long long v = 0;
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || doc_body(doc, &id, &body, err) < 0)
        return -1;
    if (st->ops->upsert(st, coll, id, body, &v, err) < 0)
        return -1;
    set_version(doc, v);
    return 0;
}

int oak_store_delete(oak_store_t *st, const char *coll, const char *id, long long expected_version,
                     oak_err_t *err)
{
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0 || check_id(id, err) < 0)
        return -1;
    if (expected_version < 0)
        return oak_err_set(err, OAK_E_INVALID, "expected version %lld is negative",
                           expected_version);
    return st->ops->del(st, coll, id, expected_version, err);
}

int oak_store_drop(oak_store_t *st, const char *coll, oak_err_t *err)
{
    if (check_st(st, err) < 0 || check_coll(coll, err) < 0)
        return -1;
    return st->ops->drop(st, coll, err);
}

int oak_store_begin(oak_store_t *st, oak_err_t *err)
{
    if (check_st(st, err) < 0)
        return -1;
    if (st->in_txn)
        return oak_err_set(err, OAK_E_INVALID, "a transaction is already open on this handle");
    if (st->ops->begin(st, err) < 0)
        return -1;
    st->in_txn = true;
    return 0;
}

int oak_store_commit(oak_store_t *st, oak_err_t *err)
{
    if (check_st(st, err) < 0)
        return -1;
    if (!st->in_txn)
        return oak_err_set(err, OAK_E_INVALID, "commit without an open transaction");
    st->in_txn = false;
    return st->ops->commit(st, err);
}

void oak_store_rollback(oak_store_t *st)
{
    if (!st || !st->in_txn)
        return;
    st->in_txn = false;
    st->ops->rollback(st);
}

/* ObjectId state: 5 random bytes drawn per process (redrawn after fork) and
 * a 24-bit counter starting at a random value. */
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t id_pid;
static uint8_t id_rand[5];
static atomic_uint id_counter;

static void fill_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got < n) {
        /* getrandom unavailable: weak but unique enough per process */
        uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)buf;
        for (; got < n; got++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            p[got] = (uint8_t)(x >> 56);
        }
    }
}

void oak_store_new_id(char buf[25])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[12];
    uint32_t t = (uint32_t)time(NULL);
    raw[0] = (uint8_t)(t >> 24);
    raw[1] = (uint8_t)(t >> 16);
    raw[2] = (uint8_t)(t >> 8);
    raw[3] = (uint8_t)t;
    pthread_mutex_lock(&id_lock);
    pid_t pid = getpid();
    if (pid != id_pid) {
        uint32_t start;
        fill_random(id_rand, sizeof(id_rand));
        fill_random(&start, sizeof(start));
        atomic_store(&id_counter, start);
        id_pid = pid;
    }
    memcpy(raw + 4, id_rand, 5);
    pthread_mutex_unlock(&id_lock);
    unsigned c = atomic_fetch_add(&id_counter, 1);
    raw[9] = (uint8_t)(c >> 16);
    raw[10] = (uint8_t)(c >> 8);
    raw[11] = (uint8_t)c;
    for (int i = 0; i < 12; i++) {
        buf[2 * i] = hex[raw[i] >> 4];
        buf[2 * i + 1] = hex[raw[i] & 0xf];
    }
    buf[24] = '\0';
}
