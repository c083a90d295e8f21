/* Table-driven configuration. A daemon declares its options once (name,
 * type, default, range, environment variables, help); parsing of a JSON
 * config file, environment variables and command-line flags, `--help`,
 * validation and `--dump-config` all derive from the table.
 * Precedence: flag > environment > file > default. */
#ifndef OAK_CONFIG_H
#define OAK_CONFIG_H

#include <stdbool.h>
#include <stdio.h>

#include "lib/oak_err.h"

typedef enum { OAK_CFG_STR, OAK_CFG_INT, OAK_CFG_BOOL } oak_cfg_type_t;

typedef struct {
    const char *name; /* "api_port": JSON key; flag is --api-port */
    oak_cfg_type_t type;
    const char *def;    /* default as text, NULL for none (string options) */
    long long min, max; /* inclusive range for OAK_CFG_INT (ignored if min > max) */
    const char *env;    /* environment variable names, '|'-separated, first wins */
    const char *help;
    /* filled by oak_config_load */
    char *str;
    long long num;
    bool flag;
    const char *source;
} oak_cfg_opt_t;

#define OAK_CFG_END                                                                                \
    {                                                                                              \
        NULL, OAK_CFG_STR, NULL, 0, 0, NULL, NULL, NULL, 0, false, NULL                            \
    }

typedef enum { OAK_CFG_RUN = 0, OAK_CFG_EXIT_OK = 1 } oak_cfg_result_t;

/* Loads opts from defaults, the JSON file named by --config (or by the
 * environment variable cfg_env), the environment and argv. `--help` and
 * `--dump-config` print to out and return OAK_CFG_EXIT_OK. Unknown flags,
 * unknown file keys, bad types and out-of-range values fail with an error
 * naming the option and its source. Positional arguments are left in
 * rest_argc and rest_argv (may be NULL to reject them). */
int oak_config_load(oak_cfg_opt_t *opts, const char *prog, const char *cfg_env, int argc,
                    char **argv, FILE *out, int *rest_argc, char ***rest_argv, oak_err_t *err);
const char *oak_config_str(const oak_cfg_opt_t *opts, const char *name);
long long oak_config_int(const oak_cfg_opt_t *opts, const char *name);
bool oak_config_bool(const oak_cfg_opt_t *opts, const char *name);
/* Prints the effective configuration as JSON (secrets are not special-cased:
 * options whose name contains "password", "secret" or "token" are masked). */
void oak_config_dump(const oak_cfg_opt_t *opts, FILE *out);
/* Frees the strings held by opts. */
void oak_config_free(oak_cfg_opt_t *opts);

#endif
