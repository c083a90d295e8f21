/* Running the runc binary: one child process per command, in a session of
 * its own, stdin from /dev/null, stdout captured (or sent to a given file
 * descriptor that the container then inherits), errors taken from runc's
 * JSON log lines. Synchronous: the caller waits for runc to exit (bounded
 * by RUNC_TIMEOUT_MS, then runc is killed). Thread-safe; reaps only the
 * pid it started. */
#ifndef RUNC_H
#define RUNC_H

#include <jansson.h>

#include "lib/oak_err.h"

#define RUNC_TIMEOUT_MS 30000
#define RUNC_OUT_MAX    (16u << 20)

typedef struct {
    const char *path; /* the binary; NULL: "runc" from PATH */
    const char *root; /* --root */
} runc_t;

/* Runs `runc --root <root> --log-format json [--log <log_path>] <argv...>`
 * (argv NULL-terminated). With out_fd >= 0 runc's stdout and stderr are
 * that descriptor (for `create`, whose container inherits them) and the
 * error message is read from log_path; otherwise stdout is captured into
 * *out (owned, NUL-terminated; when out is not NULL) and stderr parsed for
 * the error. Errors: OAK_E_NOT_FOUND when runc says the container does not
 * exist, OAK_E_CONFLICT when it exists already, OAK_E_TIMEOUT, OAK_E_IO
 * when runc cannot be run, OAK_E_INTERNAL with runc's message otherwise. */
int runc_run(const runc_t *r, const char *log_path, int out_fd, const char *const *argv, char **out,
             oak_err_t *err);

/* `runc state <id>` parsed (new reference in *out). Errors as runc_run,
 * OAK_E_INTERNAL for output that is not a JSON object. */
int runc_state(const runc_t *r, const char *id, json_t **out, oak_err_t *err);

/* `runc list --format json` as an array (empty when runc prints null);
 * new reference in *out. Errors as runc_state. */
int runc_list(const runc_t *r, json_t **out, oak_err_t *err);

#endif
