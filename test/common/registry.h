/* Test helper: a real OCI registry (Debian's docker-registry, the CNCF
 * distribution server) on a free port of 127.0.0.1, plain HTTP, its
 * storage in a directory of the caller's; optionally with htpasswd basic
 * authentication or bearer-token authentication. Single-threaded use. */
#ifndef TEST_REGISTRY_H
#define TEST_REGISTRY_H

#include <stdbool.h>
#include <sys/types.h>

#define TH_REGISTRY_BIN "/usr/bin/docker-registry"
/* The only credentials an authenticated test registry accepts. */
#define TH_REGISTRY_USER     "tester"
#define TH_REGISTRY_PASSWORD "test-pass-1"

typedef enum {
    TH_REGISTRY_OPEN = 0, /* anonymous pull and push */
    TH_REGISTRY_BASIC,    /* htpasswd: TH_REGISTRY_USER / TH_REGISTRY_PASSWORD */
    TH_REGISTRY_TOKEN,    /* bearer tokens from a token server (th_token_server) */
} th_registry_auth_t;

typedef struct {
    pid_t pid;
    int port;
    char dir[256];
    char addr[64]; /* "127.0.0.1:<port>" */
    char log_path[300];
} th_registry_t;

/* True when docker-registry is installed; otherwise prints a line with
 * SKIPPED and the reason. */
bool th_registry_available(void);

/* Writes <dir>/config.yml and starts the registry with its storage in
 * <dir>/data. For TH_REGISTRY_TOKEN, token_realm is the token server's URL
 * and token_cert the PEM certificate whose key signs the tokens (service
 * "th-registry", issuer "th-token-server"). Waits up to 10 s until it
 * answers. Returns 0 or -1 with a message (and its log) on stderr. */
int th_registry_start(th_registry_t *r, const char *dir, th_registry_auth_t auth,
                      const char *token_realm, const char *token_cert);
/* Stops it (SIGTERM, SIGKILL after 5 s). Keeps dir. */
void th_registry_stop(th_registry_t *r);
/* Path of a blob's data file in the registry's storage (owned). */
char *th_registry_blob_path(const th_registry_t *r, const char *digest);

/* A bearer-token server for a TH_REGISTRY_TOKEN registry, in a thread of
 * the test: GET /token?scope=...&service=... answers {"token": JWT} signed
 * (RS256, x5c header) by a key generated with openssl, granting what the
 * scope asks. With require_basic it demands TH_REGISTRY_USER /
 * TH_REGISTRY_PASSWORD as basic credentials (401 otherwise), else it
 * serves anonymous requests too. */
typedef struct th_token_server th_token_server_t;

/* Generates key and certificate into dir and starts serving on a free
 * port. Returns NULL (message on stderr) on failure. */
th_token_server_t *th_token_server_start(const char *dir, bool require_basic);
/* "http://127.0.0.1:<port>/token" (borrowed). */
const char *th_token_server_realm(const th_token_server_t *t);
/* Path of the PEM certificate the registry must trust (borrowed). */
const char *th_token_server_cert(const th_token_server_t *t);
/* Switches whether basic credentials are required. */
void th_token_server_require_basic(th_token_server_t *t, bool on);
/* Tokens issued so far, and requests refused. */
int th_token_server_issued(const th_token_server_t *t);
int th_token_server_refused(const th_token_server_t *t);
void th_token_server_stop(th_token_server_t *t);

#endif
