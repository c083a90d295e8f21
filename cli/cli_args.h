/* Command-line parsing for oakctl: each command declares its options in a
 * table; the global options (--api URL, -o/--output table|json, -h/--help)
 * are accepted by every command, before or after its words. */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

#include <stdbool.h>

#include "cli/cli_client.h"
#include "lib/oak_err.h"

typedef struct {
    const char *name;   /* long name without "--" */
    char short_name;    /* 0 for none */
    const char *arg;    /* name of the value in help ("S"); NULL for a flag */
    const char **value; /* receives the value (borrowed from argv) */
    bool *flag;         /* set to true for a flag */
} cli_opt_t;

#define CLI_OPT_END                                                                                \
    {                                                                                              \
        NULL, 0, NULL, NULL, NULL                                                                  \
    }

/* Parses argv[0..argc) against opts (terminated by CLI_OPT_END; may be
 * NULL) and the global options, which are stored in c. "--name value",
 * "--name=value", "-x value" and "-xvalue" are accepted; "--" ends the
 * options. The positional arguments are stored in pos (an array of at
 * least argc entries, borrowed from argv) and counted in *npos. With
 * stop_at_positional the parsing stops at the first positional argument,
 * which and everything after it are left as positional. Errors:
 * OAK_E_INVALID naming the unknown option or missing value. */
int cli_args_parse(cli_t *c, const cli_opt_t *opts, int argc, char **argv, bool stop_at_positional,
                   char **pos, int *npos, oak_err_t *err);

/* For commands without options of their own: parses argv and requires
 * exactly want positional words (in pos). Returns 0; 1 when -h/--help
 * asked for usage (printed on stdout); -1 with OAK_E_INVALID whose message
 * is usage when the word count is wrong. */
int cli_args_words(cli_t *c, int argc, char **argv, int want, const char *usage, char **pos,
                   oak_err_t *err);

/* Parses a decimal integer in [min, max]; what names it in the error
 * (OAK_E_INVALID). */
int cli_args_int(const char *s, const char *what, long long min, long long max, long long *out,
                 oak_err_t *err);

/* `oakctl <noun> delete ID`: one word (usage as for cli_args_words), then
 * DELETE <prefix><escaped ID>; prints the reply (-o json) or "<what> ID
 * deleted". Returns 0, or -1 with err set. */
int cli_args_delete(cli_t *c, int argc, char **argv, const char *usage, const char *prefix,
                    const char *what, oak_err_t *err);

#endif
