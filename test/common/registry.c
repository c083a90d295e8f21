/* Real OCI registry for tests, and a bearer-token server for it (see
 * registry.h). The registry's port is found by binding 127.0.0.1:0 and
 * closing it; if another process takes it first the registry exits and the
 * start is retried on a new port. The token server is a small blocking
 * HTTP/1.0 server on its own thread, signing RS256 JWTs with the x5c header
 * the distribution server verifies against its rootcertbundle. */
#include "test/common/registry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test/common/harness.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

/* bcrypt of TH_REGISTRY_PASSWORD (cost 5), what htpasswd -B would write */
#define HTPASSWD_HASH "$2b$05$qKBDNbeoihIDu4OWItYPs.lbiscJbM4mOPTJPKmQk48dGgPCPCL8."
#define TOKEN_SERVICE "th-registry"
#define TOKEN_ISSUER  "th-token-server"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

bool th_registry_available(void)
{
    if (access(TH_REGISTRY_BIN, X_OK) != 0) {
        printf("SKIPPED: %s is not installed (Debian package docker-registry)\n", TH_REGISTRY_BIN);
        return false;
    }
    return true;
}

static void dump_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[1024];
    fprintf(stderr, "---- %s ----\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fprintf(stderr, "----\n");
    fclose(f);
}

static int write_config(const th_registry_t *r, th_registry_auth_t auth, const char *realm,
                        const char *cert, char **conf_out)
{
    char *conf = xasprintf("%s/config.yml", r->dir);
    FILE *f = fopen(conf, "w");
    if (!f) {
        perror(conf);
        free(conf);
        return -1;
    }
    fprintf(f,
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
            "storage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\n"
            "http:\n  addr: %s\n  secret: th-registry-secret\n",
            r->dir, r->addr);
    if (auth == TH_REGISTRY_BASIC) {
        char *pw = xasprintf("%s/htpasswd", r->dir);
        FILE *h = fopen(pw, "w");
        if (h) {
            fprintf(h, "%s:%s\n", TH_REGISTRY_USER, HTPASSWD_HASH);
            fclose(h);
        }
        fprintf(f, "auth:\n  htpasswd:\n    realm: th-registry\n    path: %s\n", pw);
        free(pw);
    } else if (auth == TH_REGISTRY_TOKEN) {
        fprintf(f,
                "auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n"
                "    rootcertbundle: %s\n",
                realm, TOKEN_SERVICE, TOKEN_ISSUER, cert);
    }
    fclose(f);
    *conf_out = conf;
    return 0;
}

/* Runs the registry until it answers: 0, -1 on failure, 1 when it exited
 * early (port taken?). */
static int launch(th_registry_t *r, th_registry_auth_t auth, const char *realm, const char *cert)
{
    _cleanup_free_ char *conf = NULL;
    snprintf(r->addr, sizeof(r->addr), "127.0.0.1:%d", r->port);
    if (write_config(r, auth, realm, cert, &conf) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(r->log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execl(TH_REGISTRY_BIN, TH_REGISTRY_BIN, "serve", conf, (char *)NULL);
        perror(TH_REGISTRY_BIN);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 1000; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r->pid = 0;
            return 1;
        }
        if (th_port_accepts(r->port))
            return 0;
        sleep_ms(10);
    }
    fprintf(stderr, "docker-registry did not listen on port %d within 10 s\n", r->port);
    dump_log(r->log_path);
    th_registry_stop(r);
    return -1;
}

int th_registry_start(th_registry_t *r, const char *dir, th_registry_auth_t auth,
                      const char *token_realm, const char *token_cert)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    mkdir(dir, 0700);
    snprintf(r->log_path, sizeof(r->log_path), "%s/registry.log", dir);
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = th_free_port();
        if (r->port < 0)
            return -1;
        int rc = launch(r, auth, token_realm, token_cert);
        if (rc <= 0)
            return rc;
    }
    fprintf(stderr, "docker-registry exited at start 5 times\n");
    dump_log(r->log_path);
    return -1;
}

void th_registry_stop(th_registry_t *r)
{
    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
            r->pid = 0;
            return;
        }
        sleep_ms(10);
    }
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

char *th_registry_blob_path(const th_registry_t *r, const char *digest)
{
    const char *hex = strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : digest;
    return xasprintf("%s/data/docker/registry/v2/blobs/sha256/%.2s/%s/data", r->dir, hex, hex);
}

/* ---- token server ---- */

struct th_token_server {
    int fd;
    int port;
    atomic_bool require_basic;
    char realm[64];
    char cert_path[300];
    char key_path[300];
    EVP_PKEY *key;
    char *x5c; /* base64 DER of the certificate */
    pthread_t thread;
    atomic_bool stop;
    atomic_int issued, refused;
};

static char *b64(const unsigned char *in, size_t n, bool url)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    if (url) {
        while (len > 0 && out[len - 1] == '=')
            len--;
        out[len] = 0;
        for (char *c = out; *c; c++)
            *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    }
    return out;
}

static int url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && p[1] && p[2]) {
            char h[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(h, NULL, 16);
            p += 2;
        } else {
            *o++ = *p == '+' ? ' ' : *p;
        }
    }
    *o = 0;
    return 0;
}

static char *query_param(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len > n && strncmp(p, name, n) == 0 && p[n] == '=') {
            char *v = xstrndup(p + n + 1, len - n - 1);
            url_decode(v);
            return v;
        }
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

static char *make_token(th_token_server_t *t, const char *scope, const char *subject)
{
    json_t *access = json_array();
    if (scope) {
        /* type:name:actions, the name may hold ':' (host:port) */
        const char *c1 = strchr(scope, ':'), *c2 = strrchr(scope, ':');
        if (c1 && c2 && c2 > c1) {
            json_t *actions = json_array();
            _cleanup_free_ char *acts = xstrdup(c2 + 1);
            for (char *save = NULL, *a = strtok_r(acts, ",", &save); a;
                 a = strtok_r(NULL, ",", &save))
                json_array_append_new(actions, json_string(a));
            _cleanup_free_ char *type = xstrndup(scope, (size_t)(c1 - scope));
            _cleanup_free_ char *name = xstrndup(c1 + 1, (size_t)(c2 - c1 - 1));
            json_array_append_new(access, json_pack("{s:s, s:s, s:o}", "type", type, "name", name,
                                                    "actions", actions));
        }
    }
    time_t now = time(NULL);
    json_t *hdr = json_pack("{s:s, s:s, s:[s]}", "typ", "JWT", "alg", "RS256", "x5c", t->x5c);
    json_t *claims =
        json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:o}", "iss", TOKEN_ISSUER, "sub", subject,
                  "aud", TOKEN_SERVICE, "exp", (json_int_t)now + 300, "nbf", (json_int_t)now - 10,
                  "iat", (json_int_t)now, "jti", "th-token", "access", access);
    char *h = json_dumps(hdr, JSON_COMPACT), *c = json_dumps(claims, JSON_COMPACT);
    json_decref(hdr);
    json_decref(claims);
    _cleanup_free_ char *h64 = b64((unsigned char *)h, strlen(h), true);
    _cleanup_free_ char *c64 = b64((unsigned char *)c, strlen(c), true);
    free(h);
    free(c);
    _cleanup_free_ char *input = xasprintf("%s.%s", h64, c64);
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, t->key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, strlen(input)) != 1) {
        EVP_MD_CTX_free(md);
        return NULL;
    }
    EVP_MD_CTX_free(md);
    _cleanup_free_ char *s64 = b64(sig, siglen, true);
    return xasprintf("%s.%s", input, s64);
}

static void reply(int fd, int status, const char *reason, const char *extra, const char *body)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.0 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n",
                     status, reason, strlen(body), extra ? extra : "");
    if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
        return;
}

static void serve_one(th_token_server_t *t, int fd)
{
    char req[8192];
    size_t len = 0;
    while (len < sizeof(req) - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0)
            return;
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    char *sp = strchr(req, ' ');
    char *sp2 = sp ? strchr(sp + 1, ' ') : NULL;
    if (!sp || !sp2) {
        reply(fd, 400, "Bad Request", NULL, "{}");
        return;
    }
    _cleanup_free_ char *target = xstrndup(sp + 1, (size_t)(sp2 - sp - 1));
    char *q = strchr(target, '?');
    _cleanup_free_ char *scope = q ? query_param(q + 1, "scope") : NULL;
    _cleanup_free_ char *service = q ? query_param(q + 1, "service") : NULL;
    _cleanup_free_ char *basic = NULL;
    {
        _cleanup_free_ char *cred = xasprintf("%s:%s", TH_REGISTRY_USER, TH_REGISTRY_PASSWORD);
        _cleanup_free_ char *enc = b64((unsigned char *)cred, strlen(cred), false);
        basic = xasprintf("Authorization: Basic %s\r\n", enc);
    }
    bool authed = strcasestr(req, basic) != NULL;
    bool has_auth = strcasestr(req, "\r\nAuthorization:") != NULL;
    if ((atomic_load(&t->require_basic) && !authed) || (has_auth && !authed) || !service ||
        strcmp(service, TOKEN_SERVICE) != 0) {
        atomic_fetch_add(&t->refused, 1);
        reply(fd, 401, "Unauthorized", "WWW-Authenticate: Basic realm=\"th-token-server\"\r\n",
              "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad credentials\"}]}");
        return;
    }
    _cleanup_free_ char *token = make_token(t, scope, authed ? TH_REGISTRY_USER : "");
    if (!token) {
        reply(fd, 500, "Internal Server Error", NULL, "{}");
        return;
    }
    atomic_fetch_add(&t->issued, 1);
    _cleanup_free_ char *body = xasprintf("{\"token\":\"%s\",\"expires_in\":300}", token);
    reply(fd, 200, "OK", NULL, body);
}

static void *token_thread(void *arg)
{
    th_token_server_t *t = arg;
    while (!atomic_load(&t->stop)) {
        struct pollfd p = {.fd = t->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept4(t->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_one(t, c);
        close(c);
    }
    return NULL;
}

static int run_openssl(const char *key, const char *cert)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("openssl", "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
               key, "-out", cert, "-days", "2", "-subj", "/CN=" TOKEN_ISSUER, (char *)NULL);
        _exit(127);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    return 0;
}

th_token_server_t *th_token_server_start(const char *dir, bool require_basic)
{
    th_token_server_t *t = xcalloc(1, sizeof(*t));
    t->fd = -1;
    t->require_basic = require_basic;
    mkdir(dir, 0700);
    snprintf(t->key_path, sizeof(t->key_path), "%s/token.key", dir);
    snprintf(t->cert_path, sizeof(t->cert_path), "%s/token.crt", dir);
    if (run_openssl(t->key_path, t->cert_path) < 0) {
        fprintf(stderr, "token server: openssl req failed\n");
        goto fail;
    }
    FILE *f = fopen(t->key_path, "r");
    t->key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(t->cert_path, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!t->key || !x) {
        X509_free(x);
        fprintf(stderr, "token server: cannot load key or certificate\n");
        goto fail;
    }
    unsigned char *der = NULL;
    int dlen = i2d_X509(x, &der);
    X509_free(x);
    if (dlen <= 0)
        goto fail;
    t->x5c = b64(der, (size_t)dlen, false);
    OPENSSL_free(der);

    t->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (t->fd < 0 || bind(t->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(t->fd, 16) < 0 ||
        getsockname(t->fd, (struct sockaddr *)&a, &alen) < 0) {
        perror("token server socket");
        goto fail;
    }
    t->port = ntohs(a.sin_port);
    snprintf(t->realm, sizeof(t->realm), "http://127.0.0.1:%d/token", t->port);
    if (pthread_create(&t->thread, NULL, token_thread, t) != 0)
        goto fail;
    return t;
fail:
    if (t->fd >= 0)
        close(t->fd);
    EVP_PKEY_free(t->key);
    free(t->x5c);
    free(t);
    return NULL;
}

const char *th_token_server_realm(const th_token_server_t *t)
{
    return t->realm;
}

const char *th_token_server_cert(const th_token_server_t *t)
{
    return t->cert_path;
}

int th_token_server_issued(const th_token_server_t *t)
{
    return atomic_load(&((th_token_server_t *)t)->issued);
}

int th_token_server_refused(const th_token_server_t *t)
{
    return atomic_load(&((th_token_server_t *)t)->refused);
}

void th_token_server_require_basic(th_token_server_t *t, bool on)
{
    atomic_store(&t->require_basic, on);
}

void th_token_server_stop(th_token_server_t *t)
{
    if (!t)
        return;
    atomic_store(&t->stop, true);
    pthread_join(t->thread, NULL);
    close(t->fd);
    EVP_PKEY_free(t->key);
    free(t->x5c);
    free(t);
}
