/* The session of one oakctl run: which API it talks to, the token it sends
 * (from OAK_TOKEN or the session file written by `oakctl login`), the
 * output format, and the requests themselves with the server's error
 * replies turned into oak_err_t. Single-threaded.
 *
 * Errors of the CLI use oak_code_t as an exit class (cli_exit_code):
 *   OAK_E_INVALID, OAK_E_IO        bad usage or local input        -> 1
 *   OAK_E_UNPROCESSABLE, NOT_FOUND, CONFLICT, TOO_LARGE, INTERNAL,
 *   NOT_IMPLEMENTED                the server refused the request  -> 2
 *   OAK_E_UNAUTH, OAK_E_FORBIDDEN  not logged in, expired, no role -> 3
 *   OAK_E_UNAVAILABLE              the API cannot be reached       -> 4
 *   OAK_E_TIMEOUT                  a --wait ended, not all RUNNING -> 5
 * A server reply of 400 becomes OAK_E_UNPROCESSABLE and 5xx becomes
 * OAK_E_INTERNAL (the server answered: exit 2), so codes 1, 4 and 5 only
 * ever come from the client side. */
#ifndef CLI_CLIENT_H
#define CLI_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "lib/oak_err.h"

#define CLI_DEFAULT_API "http://localhost:10000"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_USAGE = 1,
    CLI_EXIT_SERVER = 2,
    CLI_EXIT_AUTH = 3,
    CLI_EXIT_UNREACHABLE = 4,
    CLI_EXIT_NOT_READY = 5,
};

typedef enum { CLI_OUT_TABLE = 0, CLI_OUT_JSON } cli_output_t;

typedef struct {
    /* from the command line (borrowed from argv) */
    const char *api_flag;
    cli_output_t output;
    bool help;
    /* resolved on first use by cli_client_prepare */
    bool prepared;
    char *api;           /* base URL without trailing slash */
    char *token;         /* access token or NULL */
    char *refresh_token; /* or NULL */
    bool token_from_env; /* OAK_TOKEN: never refreshed nor saved */
    char *session_path;  /* $XDG_CONFIG_HOME/oak/token */
} cli_t;

/* Frees what cli_client_prepare resolved. */
void cli_client_free(cli_t *c);

/* Resolves the API URL (--api, OAK_API, the session file's, default) and
 * the token (OAK_TOKEN, or the session file when it names the same API).
 * Idempotent. Errors: OAK_E_INVALID for an unusable URL. */
int cli_client_prepare(cli_t *c, oak_err_t *err);

/* Path of the session file (owned): $XDG_CONFIG_HOME/oak/token, or
 * ~/.config/oak/token. NULL when neither XDG_CONFIG_HOME nor HOME is set. */
char *cli_session_path(void);
/* Writes {api, token, refresh_token?} to the session file (mode 0600, its
 * directory 0700) and keeps them in c. Errors: OAK_E_IO. */
int cli_session_save(cli_t *c, const char *token, const char *refresh_token, oak_err_t *err);
/* Removes the session file; *removed tells whether there was one. */
int cli_session_remove(cli_t *c, bool *removed, oak_err_t *err);

/* Sends method path (relative to the API, "/api/...") with body (may be
 * NULL; body_len bytes, sent as application/json) and the bearer token.
 * A 401 with a session token is answered by refreshing the token once
 * (and saving it) and retrying. On a 2xx reply returns 0 and *out (may be
 * NULL) gets the parsed body (NULL when empty). Otherwise returns -1 with
 * err from the reply (message, and the field errors in err->details) or
 * from the transport; see the exit classes above. With anonymous the
 * request is sent without a token and a 401 is not special. */
int cli_request_raw(cli_t *c, const char *method, const char *path, const char *body,
                    size_t body_len, bool anonymous, json_t **out, oak_err_t *err);
/* As cli_request_raw with a JSON body (may be NULL), authenticated. */
int cli_request(cli_t *c, const char *method, const char *path, const json_t *body, json_t **out,
                oak_err_t *err);
/* As cli_request for GET, failing with OAK_E_INTERNAL when the reply is
 * not JSON of the expected type (JSON_OBJECT or JSON_ARRAY). */
int cli_get(cli_t *c, const char *path, json_type type, json_t **out, oak_err_t *err);

/* s percent-encoded for use as one path segment or query value (owned):
 * everything but letters, digits and "-._~" is escaped. */
char *cli_escape(const char *s);

/* The exit code for an error (see the table above); 0 for OAK_E_OK. */
int cli_exit_code(const oak_err_t *err);
/* Prints err on stderr: "oakctl: <message>" and one indented line per
 * field error ("  <field>: <rule>"). */
void cli_report(const oak_err_t *err);

/* Prints j to stdout as indented JSON (the -o json output). */
void cli_print_json(const json_t *j);
/* The stream for progress messages: stderr with -o json (stdout is then
 * only the JSON document), stdout otherwise. */
FILE *cli_progress(const cli_t *c);

#endif
