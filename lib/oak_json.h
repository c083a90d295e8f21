/* JSON helpers over jansson: bounded parsing with clear errors, typed
 * getters that tolerate missing keys, compact dumping. */
#ifndef OAK_JSON_H
#define OAK_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/oak_err.h"

/* Parses len bytes of buf. Fails with OAK_E_TOO_LARGE when len > max (if
 * max > 0) and OAK_E_INVALID naming line/column on a syntax error. On success
 * *out is a new reference. */
int oak_json_parse(const char *buf, size_t len, size_t max, json_t **out, oak_err_t *err);
/* Reads and parses a file (at most max bytes). */
int oak_json_load_file(const char *path, size_t max, json_t **out, oak_err_t *err);
/* As oak_json_parse, and additionally requires a JSON object. */
int oak_json_parse_object(const char *buf, size_t len, size_t max, json_t **out, oak_err_t *err);

/* Borrowed string value of key, or NULL when missing or not a string. */
const char *oak_json_str(const json_t *o, const char *key);
/* Integer value of key (integers, or reals with no fraction), else def. */
long long oak_json_int(const json_t *o, const char *key, long long def);
/* Number value of key (integer or real), else def. */
double oak_json_num(const json_t *o, const char *key, double def);
/* Boolean value of key, else def. */
bool oak_json_bool(const json_t *o, const char *key, bool def);
/* Compact serialisation owned by the caller (never NULL). */
char *oak_json_dump(const json_t *o);
/* Writes a JSON document to path atomically (temp file + fsync + rename),
 * with the given mode. */
int oak_json_save_file(const char *path, const json_t *o, int mode, oak_err_t *err);

/* A JSON string from arbitrary bytes (len of them, NULs allowed): valid
 * UTF-8 is kept, every invalid byte becomes U+FFFD. Never NULL. */
json_t *oak_json_string_lossy(const char *data, size_t len);

#endif
