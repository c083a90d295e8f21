/* Document store: JSON objects keyed by a string "_id" in named collections,
 * with an integer "_version" maintained by the store for optimistic
 * concurrency (lost-update protection). Two backends behind one interface:
 * SQLite ("sqlite:<path>", durable single file, shared by processes) and
 * MongoDB ("mongodb://..."). See docs/store.md.
 *
 * A store handle is used by one thread at a time (it may move between
 * threads). Open one handle per thread or process that needs one. */
#ifndef OAK_STORE_H
#define OAK_STORE_H

#include <jansson.h>
#include <stdbool.h>

#include "lib/oak_err.h"

typedef struct oak_store oak_store_t;

/* Longest accepted "_id", in bytes. */
#define OAK_STORE_ID_MAX 128

/* Opens a store. uri: "sqlite:<path>" (path ":memory:" allowed; the parent
 * directory of path must exist) or "mongodb://..." / "mongodb+srv://..."
 * (database from the URI path, default "oak"; serverSelectionTimeoutMS
 * defaults to 2000). The MongoDB backend connects lazily: an unreachable
 * server is reported by the first operation as OAK_E_UNAVAILABLE.
 * Errors: OAK_E_INVALID (bad URI), OAK_E_IO (cannot open/create the file),
 * OAK_E_UNAVAILABLE (database locked). On success *out is owned by the
 * caller and released with oak_store_close(). */
int oak_store_open(const char *uri, oak_store_t **out, oak_err_t *err);
/* Closes the handle; an open transaction is rolled back. NULL is a no-op. */
void oak_store_close(oak_store_t *st);
/* "sqlite" or "mongodb". */
const char *oak_store_backend(const oak_store_t *st);
/* True when begin/commit/rollback are real transactions (SQLite); false when
 * they only delimit a group of individually durable writes (MongoDB). */
bool oak_store_transactional(const oak_store_t *st);

/* Documents are JSON objects with a string "_id" (1..OAK_STORE_ID_MAX bytes).
 * The store maintains an integer "_version": insert sets it to 1, every
 * update increments it; a "_version" in a document passed in is ignored.
 * Collection names match ^[a-z][a-z0-9_]{0,62}$, else OAK_E_INVALID.
 * Backend failures: OAK_E_UNAVAILABLE (server down, database locked),
 * OAK_E_IO, OAK_E_INTERNAL. */

/* Inserts doc (borrowed). OAK_E_CONFLICT if the id exists; on success doc's
 * "_version" is set to 1. */
int oak_store_insert(oak_store_t *st, const char *coll, json_t *doc, oak_err_t *err);
/* Reads one document. OAK_E_NOT_FOUND if missing; *out is a new reference
 * including "_id" and "_version". */
int oak_store_get(oak_store_t *st, const char *coll, const char *id, json_t **out, oak_err_t *err);
/* Equality match on a top-level field (name ^[A-Za-z_][A-Za-z0-9_]*$) with a
 * string, integer or boolean value; field NULL = all documents. Types are
 * strict: "1" does not match 1, true does not match 1, arrays are not
 * searched element-wise; an integer matches an equal real. *out is a new
 * JSON array ordered by "_id" (byte order). */
int oak_store_find(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                   json_t **out, oak_err_t *err);
/* Number of documents oak_store_find would return. */
int oak_store_count(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                    long long *out, oak_err_t *err);
/* Replaces the document with doc's "_id" by doc (borrowed). expected_version
 * >= 1: only if the stored "_version" equals it, else OAK_E_CONFLICT and the
 * stored document is unchanged; 0: unconditional. OAK_E_NOT_FOUND if
 * missing. On success doc's "_version" is set to the new version. */
int oak_store_update(oak_store_t *st, const char *coll, json_t *doc, long long expected_version,
                     oak_err_t *err);
/* Insert-or-replace without version check; sets doc's "_version" (1 when
 * inserted, previous + 1 when replaced). */
int oak_store_upsert(oak_store_t *st, const char *coll, json_t *doc, oak_err_t *err);
/* Deletes one document; expected_version as in oak_store_update.
 * OAK_E_NOT_FOUND if missing, OAK_E_CONFLICT on a version mismatch. */
int oak_store_delete(oak_store_t *st, const char *coll, const char *id, long long expected_version,
                     oak_err_t *err);
/* Deletes every document of a collection (no error if it is empty). */
int oak_store_drop(oak_store_t *st, const char *coll, oak_err_t *err);

/* Groups writes into one durable transaction (SQLite: BEGIN IMMEDIATE ...
 * COMMIT; MongoDB: no-op grouping, see oak_store_transactional()). A nested
 * begin, or commit without begin, is OAK_E_INVALID. If commit fails the
 * transaction is rolled back and no longer open. */
int oak_store_begin(oak_store_t *st, oak_err_t *err);
int oak_store_commit(oak_store_t *st, oak_err_t *err);
/* Abandons the open transaction (no-op if none). */
void oak_store_rollback(oak_store_t *st);

/* Writes a new 24-lowercase-hex-char id (MongoDB ObjectId layout: 4-byte
 * big-endian seconds, 5 random bytes per process, 3-byte counter) and a NUL
 * into buf. Thread-safe and fork-safe. */
void oak_store_new_id(char buf[25]);

#ifdef OAK_STORE_BACKEND
/* Backend interface, for lib/oak_store_*.c only. The dispatcher validates
 * collection names, ids, field names and values before calling a backend,
 * and passes documents as "body": a copy of the caller's document with
 * "_id" and without "_version". */
typedef struct {
    const char *name;
    bool transactional;
    void (*close)(oak_store_t *st);
    int (*insert)(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                  oak_err_t *err);
    int (*get)(oak_store_t *st, const char *coll, const char *id, json_t **out, oak_err_t *err);
    int (*find)(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                json_t **out, oak_err_t *err);
    int (*count)(oak_store_t *st, const char *coll, const char *field, const json_t *value,
                 long long *out, oak_err_t *err);
    int (*update)(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                  long long expected_version, long long *new_version, oak_err_t *err);
    int (*upsert)(oak_store_t *st, const char *coll, const char *id, const json_t *body,
                  long long *new_version, oak_err_t *err);
    int (*del)(oak_store_t *st, const char *coll, const char *id, long long expected_version,
               oak_err_t *err);
    int (*drop)(oak_store_t *st, const char *coll, oak_err_t *err);
    int (*begin)(oak_store_t *st, oak_err_t *err);
    int (*commit)(oak_store_t *st, oak_err_t *err);
    void (*rollback)(oak_store_t *st);
} oak_store_ops_t;

/* Common head of every backend's handle (first member). */
struct oak_store {
    const oak_store_ops_t *ops;
    bool in_txn;
};

/* Backend constructors, called by oak_store_open() with the URI split. The
 * MongoDB one lives in the plugin oak-store-mongo.so (lib/store_mongo/). */
int oak_store_sqlite_open(const char *path, oak_store_t **out, oak_err_t *err);
int oak_store_mongo_open(const char *uri, oak_store_t **out, oak_err_t *err);
#endif

#endif
