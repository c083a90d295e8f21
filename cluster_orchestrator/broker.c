/* The cluster's mosquitto broker and its dynamic-security plugin: writing
 * the broker's configuration and the plugin's initial JSON (clients, roles,
 * default ACL access, PBKDF2-SHA512 password hashes as the plugin stores
 * them), and an admin connection that sends the plugin's JSON commands on
 * $CONTROL/dynamic-security/v1 and waits for the answers on .../response,
 * matched by correlationData (the plugin broadcasts every answer to all
 * subscribers of that topic).
 *
 * The admin connection is a minimal blocking MQTT 3.1.1 client (CONNECT,
 * SUBSCRIBE, QoS 0 PUBLISH out, PUBLISH in) on a plain socket with poll()
 * deadlines, not paho: paho's MQTTAsync shares one receive thread per
 * process that adds 1-2 s to each connect of a second client, and the
 * cluster manager's own MQTT client lives in the same process. Keepalive
 * is 0 (the link is idle between calls); a connection the broker closed is
 * noticed before the next request and reopened.
 *
 * Threading: no threads of its own. The public calls hold b->call_mu for
 * their whole duration, so a broker_t may be shared between threads. */
#include "cluster_orchestrator/broker.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define CONTROL_TOPIC  "$CONTROL/dynamic-security/v1"
#define RESPONSE_TOPIC "$CONTROL/dynamic-security/v1/response"
#define DYNSEC_FILE    "dynamic-security.json"
#define CONF_FILE      "mosquitto.conf"
#define DYNSEC_MAX     (64u << 20)
#define RESPONSE_MAX   (16u << 20)
/* The plugin's password format: base64 PBKDF2-HMAC-SHA512 (64 bytes) of
 * the password with a 12-byte salt. The plugin itself uses 101 iterations
 * for clients it creates; the admin client written here gets more. */
#define SALT_LEN       12
#define HASH_LEN       64
#define PW_ITERATIONS  10000
#define MAX_ITERATIONS 10000000
#define NAME_MAX_LEN   128
#define PASSWORD_MAX   256

/* ---- validation ---- */

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > NAME_MAX_LEN)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return false;
    return true;
}

static bool valid_password(const char *s)
{
    if (!s || !*s || strlen(s) > PASSWORD_MAX)
        return false;
    json_t *j = json_string(s); /* NULL unless valid UTF-8 */
    json_decref(j);
    return j != NULL;
}

/* ---- passwords in the plugin's format ---- */

static char *b64_encode(const unsigned char *in, int n)
{
    char *out = xmalloc((size_t)(4 * ((n + 2) / 3)) + 1);
    EVP_EncodeBlock((unsigned char *)out, in, n);
    return out;
}

/* Decodes standard base64 into out; returns the decoded length or -1. */
static int b64_decode(const char *in, unsigned char *out, size_t cap)
{
    size_t n = strlen(in);
    if (n == 0 || n % 4 || n / 4 * 3 > cap)
        return -1;
    int len = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -1;
    for (size_t i = n; i > 0 && in[i - 1] == '='; i--)
        len--;
    return len;
}

static int pw_hash(const char *pw, const unsigned char *salt, int iterations,
                   unsigned char out[HASH_LEN])
{
    return PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, SALT_LEN, iterations, EVP_sha512(),
                             HASH_LEN, out) == 1
               ? 0
               : -1;
}

/* True when the client entry c of a dynsec file holds a hash of pw. */
static bool pw_matches(const json_t *c, const char *pw)
{
    const char *salt_b64 = oak_json_str(c, "salt"), *hash_b64 = oak_json_str(c, "password");
    long long it = oak_json_int(c, "iterations", 0);
    unsigned char salt[SALT_LEN + 3], want[HASH_LEN + 3], got[HASH_LEN];
    if (!salt_b64 || !hash_b64 || it < 1 || it > MAX_ITERATIONS ||
        b64_decode(salt_b64, salt, sizeof(salt)) != SALT_LEN ||
        b64_decode(hash_b64, want, sizeof(want)) != HASH_LEN)
        return false;
    if (pw_hash(pw, salt, (int)it, got) < 0)
        return false;
    return CRYPTO_memcmp(got, want, HASH_LEN) == 0;
}

static int pw_set(json_t *c, const char *pw, oak_err_t *err)
{
    unsigned char salt[SALT_LEN], hash[HASH_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1 || pw_hash(pw, salt, PW_ITERATIONS, hash) < 0)
        return oak_err_set(err, OAK_E_INTERNAL, "hashing the admin password failed");
    _cleanup_free_ char *h = b64_encode(hash, HASH_LEN);
    _cleanup_free_ char *sl = b64_encode(salt, SALT_LEN);
    json_object_set_new(c, "password", json_string(h));
    json_object_set_new(c, "salt", json_string(sl));
    json_object_set_new(c, "iterations", json_integer(PW_ITERATIONS));
    return 0;
}

/* ---- roles ---- */

static json_t *acl(const char *type, const char *topic, bool allow, int priority)
{
    return json_pack("{s:s, s:s, s:i, s:b}", "acltype", type, "topic", topic, "priority", priority,
                     "allow", allow);
}

/* The plugin's control topics (and $SYS for monitoring). */
static json_t *admin_acls(void)
{
    const char *ctl = "$CONTROL/dynamic-security/#";
    return json_pack(
        "[o, o, o, o, o]", acl("publishClientSend", ctl, true, 0),
        acl("publishClientReceive", ctl, true, 0), acl("subscribePattern", ctl, true, 0),
        acl("publishClientReceive", "$SYS/#", true, 0), acl("subscribePattern", "$SYS/#", true, 0));
}

/* Everything the workers publish; their control topics. */
static json_t *manager_acls(void)
{
    return json_pack("[o, o, o]", acl("subscribePattern", "nodes/#", true, 0),
                     acl("publishClientReceive", "nodes/#", true, 0),
                     acl("publishClientSend", "nodes/+/control/#", true, 0));
}

/* nodes/<id>/# except control/# out; nodes/<id>/control/# in. The deny has
 * the higher priority, so it is checked first. */
static json_t *node_acls(const char *id)
{
    _cleanup_free_ char *all = xasprintf("nodes/%s/#", id);
    _cleanup_free_ char *ctl = xasprintf("nodes/%s/control/#", id);
    return json_pack("[o, o, o, o]", acl("publishClientSend", ctl, false, 10),
                     acl("publishClientSend", all, true, 0), acl("subscribePattern", ctl, true, 0),
                     acl("publishClientReceive", ctl, true, 0));
}

/* ---- the plugin's JSON file ---- */

static json_t *find_by(json_t *arr, const char *key, const char *value)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *v = oak_json_str(e, key);
        if (v && strcmp(v, value) == 0)
            return e;
    }
    return NULL;
}

/* Borrowed array member key of doc, created when missing. */
static json_t *array_member(json_t *doc, const char *key, const char *path, oak_err_t *err)
{
    json_t *a = json_object_get(doc, key);
    if (!a) {
        a = json_array();
        json_object_set_new(doc, key, a);
    }
    if (!json_is_array(a)) {
        oak_err_set(err, OAK_E_INVALID, "%s: \"%s\" is not an array", path, key);
        return NULL;
    }
    return a;
}

/* Same ACLs in any order (the plugin saves them grouped by type). */
static bool acls_same(const json_t *a, const json_t *b)
{
    if (!json_is_array(a) || !json_is_array(b) || json_array_size(a) != json_array_size(b))
        return false;
    size_t i, j;
    json_t *x, *y;
    json_array_foreach(a, i, x)
    {
        bool found = false;
        json_array_foreach(b, j, y)
        {
            if (json_equal(x, y)) {
                found = true;
                break;
            }
        }
        if (!found)
            return false;
    }
    return true;
}

/* Gives role name exactly acls (steals acls). */
static void put_role(json_t *roles, const char *name, json_t *acls)
{
    json_t *r = find_by(roles, "rolename", name);
    if (!r) {
        r = json_pack("{s:s}", "rolename", name);
        json_array_append_new(roles, r);
    }
    if (acls_same(json_object_get(r, "acls"), acls))
        json_decref(acls);
    else
        json_object_set_new(r, "acls", acls);
}

static void client_add_role(json_t *c, const char *role)
{
    json_t *roles = json_object_get(c, "roles");
    if (!json_is_array(roles)) {
        roles = json_array();
        json_object_set_new(c, "roles", roles);
    }
    if (!find_by(roles, "rolename", role))
        json_array_append_new(roles, json_pack("{s:s}", "rolename", role));
}

static int ensure_dynsec(const char *path, const char *admin_user, const char *admin_password,
                         oak_err_t *err)
{
    json_auto_t *doc = NULL;
    struct stat st;
    if (stat(path, &st) == 0) {
        if (oak_json_load_file(path, DYNSEC_MAX, &doc, err) < 0)
            return -1;
        if (!json_is_object(doc))
            return oak_err_set(err, OAK_E_INVALID, "%s: not a JSON object", path);
    } else if (errno == ENOENT) {
        doc = json_object();
    } else {
        return oak_err_errno(err, errno, "stat %s", path);
    }
    json_auto_t *before = json_deep_copy(doc);

    json_object_set_new(doc, "defaultACLAccess",
                        json_pack("{s:b, s:b, s:b, s:b}", "publishClientSend", false,
                                  "publishClientReceive", false, "subscribe", false, "unsubscribe",
                                  true));
    json_t *roles = array_member(doc, "roles", path, err);
    json_t *clients = roles ? array_member(doc, "clients", path, err) : NULL;
    if (!clients)
        return -1;
    put_role(roles, BROKER_ROLE_ADMIN, admin_acls());
    put_role(roles, BROKER_ROLE_MANAGER, manager_acls());

    json_t *c = find_by(clients, "username", admin_user);
    if (!c) {
        c = json_pack("{s:s, s:s}", "username", admin_user, "textname", "cluster-manager admin");
        json_array_append_new(clients, c);
    }
    if (!pw_matches(c, admin_password) && pw_set(c, admin_password, err) < 0)
        return -1;
    json_object_del(c, "disabled");
    json_object_del(c, "clientid");
    client_add_role(c, BROKER_ROLE_ADMIN);
    client_add_role(c, BROKER_ROLE_MANAGER);

    if (json_equal(before, doc))
        return 0;
    return oak_json_save_file(path, doc, 0600, err);
}

/* ---- mosquitto.conf ---- */

const char *broker_dynsec_plugin_path(void)
{
    static const char *const fixed[] = {
        "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
        "/usr/lib/mosquitto_dynamic_security.so",
        "/usr/local/lib/mosquitto_dynamic_security.so",
    };
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        if (access(fixed[i], R_OK) == 0)
            return fixed[i];
    static char found[PATH_MAX];
    glob_t g = {0};
    bool ok = glob("/usr/lib/*/mosquitto_dynamic_security.so", 0, NULL, &g) == 0 && g.gl_pathc > 0;
    if (ok)
        snprintf(found, sizeof(found), "%s", g.gl_pathv[0]);
    globfree(&g);
    return ok ? found : NULL;
}

static bool config_safe(const char *s)
{
    for (const char *p = s; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '#')
            return false;
    return *s != 0;
}

static int write_text(const char *path, const char *text, oak_err_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return oak_err_errno(err, errno, "open %s", tmp);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            unlink(tmp);
            return oak_err_errno(err, e, "write %s", tmp);
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return oak_err_errno(err, e, "save %s", path);
    }
    return 0;
}

int broker_write_config(const char *dir, const char *bind_addr, int port, const char *admin_user,
                        const char *admin_password, char **conf_path, oak_err_t *err)
{
    if (!dir || !config_safe(dir))
        return oak_err_set(err, OAK_E_INVALID, "broker dir must be a path without blanks or '#'");
    if (bind_addr && !config_safe(bind_addr))
        return oak_err_set(err, OAK_E_INVALID, "invalid bind address \"%s\"", bind_addr);
    if (port < 1 || port > 65535)
        return oak_err_set(err, OAK_E_INVALID, "invalid broker port %d", port);
    if (!valid_name(admin_user))
        return oak_err_set(err, OAK_E_INVALID, "broker admin user must be 1-%d of [A-Za-z0-9._-]",
                           NAME_MAX_LEN);
    if (!valid_password(admin_password))
        return oak_err_set(err, OAK_E_INVALID, "broker admin password must be 1-%d bytes of UTF-8",
                           PASSWORD_MAX);
    const char *plugin = broker_dynsec_plugin_path();
    if (!plugin)
        return oak_err_set(err, OAK_E_UNAVAILABLE,
                           "mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) "
                           "is not installed");
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return oak_err_errno(err, errno, "mkdir %s", dir);
    char abs[PATH_MAX];
    if (!realpath(dir, abs))
        return oak_err_errno(err, errno, "realpath %s", dir);

    _cleanup_free_ char *dynsec = xasprintf("%s/" DYNSEC_FILE, abs);
    if (ensure_dynsec(dynsec, admin_user, admin_password, err) < 0)
        return -1;

    /* Started as root, mosquitto drops to user "mosquitto" unless told to
     * stay: keep the user that owns dir's files. */
    struct passwd *pw = getpwuid(geteuid());
    _cleanup_free_ char *user = pw ? xasprintf("user %s\n", pw->pw_name) : xstrdup("");
    _cleanup_free_ char *text = xasprintf(
        "# Written by cluster-manager at every start; edits are lost.\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        "listener %d%s%s\n"
        "set_tcp_nodelay true\n"
        /* the manager's session may fall behind during bursts: queue, don't drop */
        "max_queued_messages 100000\n"
        "persistence true\n"
        "persistence_location %s/\n"
        "%s"
        "plugin %s\n"
        "plugin_opt_config_file %s\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
        "log_type notice\n"
        "log_type information\n"
        "log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S\n",
        port, bind_addr ? " " : "", bind_addr ? bind_addr : "", abs, user, plugin, dynsec);
    _cleanup_free_ char *path = xasprintf("%s/" CONF_FILE, abs);
    if (write_text(path, text, err) < 0)
        return -1;
    *conf_path = oak_steal(&path);
    return 0;
}

/* ---- a blocking MQTT 3.1.1 client, just enough for the control topic ---- */

struct broker {
    char *uri, *host, *port, *user, *password;
    char client_id[40];
    pthread_mutex_t call_mu; /* held by each public call */
    int fd;                  /* -1 when not connected */
    uint16_t packet_id;
    unsigned long seq;
};

#define MQTT_CONNECT    0x10
#define MQTT_CONNACK    0x20
#define MQTT_PUBLISH    0x30
#define MQTT_PUBACK     0x40
#define MQTT_SUBSCRIBE  0x82
#define MQTT_SUBACK     0x90
#define MQTT_DISCONNECT 0xe0

typedef struct {
    unsigned char *p;
    size_t len, cap;
} wbuf_t;

static void wb_put(wbuf_t *w, const void *src, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->p = xrealloc(w->p, w->cap);
    }
    memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void wb_u8(wbuf_t *w, unsigned v)
{
    unsigned char c = (unsigned char)v;
    wb_put(w, &c, 1);
}

static void wb_u16(wbuf_t *w, unsigned v)
{
    wb_u8(w, (v >> 8) & 0xff);
    wb_u8(w, v & 0xff);
}

static void wb_str(wbuf_t *w, const char *s)
{
    size_t n = strlen(s);
    wb_u16(w, (unsigned)n);
    wb_put(w, s, n);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        return n > 0 ? 1 : 0;
    }
}

/* 0, -1 on a broken connection, -2 on timeout. */
static int write_all(int fd, const void *buf, size_t n, long long deadline)
{
    const unsigned char *p = buf;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(fd, POLLOUT, deadline);
            if (r <= 0)
                return r == 0 ? -2 : -1;
            continue;
        }
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* 0, -1 on a broken or closed connection, -2 on timeout. */
static int read_full(int fd, void *buf, size_t n, long long deadline)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int w = wait_fd(fd, POLLIN, deadline);
            if (w <= 0)
                return w == 0 ? -2 : -1;
            continue;
        }
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Frames body as one packet of type and sends it. */
static int send_packet(int fd, unsigned type, const wbuf_t *body, long long deadline)
{
    wbuf_t w = {0};
    size_t rem = body ? body->len : 0;
    wb_u8(&w, type);
    do {
        unsigned char c = rem % 128;
        rem /= 128;
        wb_u8(&w, rem ? c | 0x80 : c);
    } while (rem);
    if (body)
        wb_put(&w, body->p, body->len);
    int rc = write_all(fd, w.p, w.len, deadline);
    free(w.p);
    return rc;
}

/* Reads one packet: *type gets its first byte, *body (owned, NUL
 * terminated) its remaining bytes. 0, -1 broken, -2 timeout, -3 too
 * large or malformed. */
static int read_packet(int fd, long long deadline, unsigned *type, unsigned char **body,
                       size_t *len)
{
    unsigned char h;
    int rc = read_full(fd, &h, 1, deadline);
    if (rc < 0)
        return rc;
    size_t rem = 0, mult = 1;
    for (int i = 0;; i++) {
        unsigned char c;
        if ((rc = read_full(fd, &c, 1, deadline)) < 0)
            return rc;
        rem += (c & 0x7f) * mult;
        mult *= 128;
        if (!(c & 0x80))
            break;
        if (i == 3)
            return -3;
    }
    if (rem > RESPONSE_MAX)
        return -3;
    unsigned char *b = xmalloc(rem + 1);
    if ((rc = read_full(fd, b, rem, deadline)) < 0) {
        free(b);
        return rc;
    }
    b[rem] = 0;
    *type = h;
    *body = b;
    *len = rem;
    return 0;
}

static int conn_failed(broker_t *b, int rc, const char *what, oak_err_t *err)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    if (rc == -2)
        return oak_err_set(err, OAK_E_TIMEOUT, "broker %s: %s timed out", b->uri, what);
    if (rc == -3)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "broker %s: malformed packet during %s", b->uri,
                           what);
    return oak_err_set(err, OAK_E_UNAVAILABLE, "broker %s: connection lost during %s", b->uri,
                       what);
}

/* Handles one incoming packet that is not awaited: answers a QoS 1
 * PUBLISH with PUBACK and hands out its topic and payload (pointers into
 * body); returns 1 for a PUBLISH, 0 otherwise. */
static int take_publish(broker_t *b, unsigned type, unsigned char *body, size_t len,
                        const char **topic, const char **payload, size_t *plen, long long deadline)
{
    if ((type & 0xf0) != MQTT_PUBLISH || len < 2)
        return 0;
    size_t tlen = ((size_t)body[0] << 8) | body[1];
    unsigned qos = (type >> 1) & 3;
    size_t off = 2 + tlen + (qos ? 2 : 0);
    if (off > len)
        return 0;
    if (qos == 1) {
        wbuf_t ack = {0};
        wb_put(&ack, body + 2 + tlen, 2);
        send_packet(b->fd, MQTT_PUBACK, &ack, deadline);
        free(ack.p);
    }
    /* the topic is not NUL terminated in place: move it behind a NUL */
    memmove(body, body + 2, tlen);
    body[tlen] = 0;
    *topic = (const char *)body;
    *payload = (const char *)body + off;
    *plen = len - off;
    return 1;
}

/* Splits "tcp://host:port" (also mqtt://, [v6]:port, or no scheme). */
static int parse_uri(broker_t *b, oak_err_t *err)
{
    const char *s = b->uri, *sep = strstr(s, "://");
    if (sep) {
        if (strncmp(s, "tcp://", 6) != 0 && strncmp(s, "mqtt://", 7) != 0)
            return oak_err_set(err, OAK_E_INVALID,
                               "broker uri %s: only tcp:// is supported for the admin link", s);
        s = sep + 3;
    }
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || !colon[1])
        return oak_err_set(err, OAK_E_INVALID, "broker uri %s: want tcp://host:port", b->uri);
    if (s[0] == '[' && colon[-1] == ']')
        b->host = xstrndup(s + 1, (size_t)(colon - s - 2));
    else
        b->host = xstrndup(s, (size_t)(colon - s));
    b->port = xstrdup(colon + 1);
    return 0;
}

static int tcp_connect(broker_t *b, long long deadline, oak_err_t *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(b->host, b->port, &hints, &res);
    if (gai != 0)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "broker %s: %s", b->uri, gai_strerror(gai));
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            int e = errno, so = 0;
            socklen_t sl = sizeof(so);
            if (e == EINPROGRESS && wait_fd(fd, POLLOUT, deadline) == 1 &&
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
                break;
            last = e == EINPROGRESS ? (so ? so : ETIMEDOUT) : e;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return oak_err_set(err, OAK_E_UNAVAILABLE, "broker %s: %s", b->uri, strerror(last));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    b->fd = fd;
    return 0;
}

/* Connects as the admin (keepalive 0: the link is idle between calls) and
 * subscribes to the plugin's responses. */
static int session_open(broker_t *b, oak_err_t *err)
{
    long long deadline = now_ms() + BROKER_TIMEOUT_MS;
    if (tcp_connect(b, deadline, err) < 0)
        return -1;
    wbuf_t w = {0};
    wb_str(&w, "MQTT");
    wb_u8(&w, 4);                  /* 3.1.1 */
    wb_u8(&w, 0x80 | 0x40 | 0x02); /* user name, password, clean session */
    wb_u16(&w, 0);                 /* keepalive */
    wb_str(&w, b->client_id);
    wb_str(&w, b->user);
    wb_str(&w, b->password);
    int rc = send_packet(b->fd, MQTT_CONNECT, &w, deadline);
    OPENSSL_cleanse(w.p, w.len);
    free(w.p);
    if (rc < 0)
        return conn_failed(b, rc, "connect", err);
    unsigned type;
    _cleanup_free_ unsigned char *body = NULL;
    size_t len;
    if ((rc = read_packet(b->fd, deadline, &type, &body, &len)) < 0)
        return conn_failed(b, rc, "connect", err);
    if (type != MQTT_CONNACK || len != 2)
        return conn_failed(b, -3, "connect", err);
    if (body[1] != 0) {
        unsigned code = body[1];
        close(b->fd);
        b->fd = -1;
        /* 4 bad user name or password, 5 not authorised */
        if (code == 4 || code == 5)
            return oak_err_set(err, OAK_E_UNAUTH, "broker %s refused user %s", b->uri, b->user);
        return oak_err_set(err, OAK_E_UNAVAILABLE, "broker %s refused the connection (%u)", b->uri,
                           code);
    }

    wbuf_t s = {0};
    uint16_t id = ++b->packet_id ? b->packet_id : ++b->packet_id;
    wb_u16(&s, id);
    wb_str(&s, RESPONSE_TOPIC);
    wb_u8(&s, 1);
    rc = send_packet(b->fd, MQTT_SUBSCRIBE, &s, deadline);
    free(s.p);
    if (rc < 0)
        return conn_failed(b, rc, "subscribe", err);
    for (;;) {
        free(body);
        body = NULL;
        if ((rc = read_packet(b->fd, deadline, &type, &body, &len)) < 0)
            return conn_failed(b, rc, "subscribe", err);
        if (type != MQTT_SUBACK)
            continue;
        if (len != 3 || ((unsigned)body[0] << 8 | body[1]) != id)
            return conn_failed(b, -3, "subscribe", err);
        if (body[2] & 0x80) {
            close(b->fd);
            b->fd = -1;
            return oak_err_set(err, OAK_E_FORBIDDEN,
                               "broker %s: user %s may not use the dynamic-security control topic",
                               b->uri, b->user);
        }
        return 0;
    }
}

/* Reads whatever arrived while idle (other admins' answers) and notices a
 * connection the broker closed; reconnects when there is none. */
static int session_ready(broker_t *b, oak_err_t *err)
{
    while (b->fd >= 0 && wait_fd(b->fd, POLLIN, 0) != 0) {
        unsigned type;
        unsigned char *body = NULL;
        size_t len;
        int rc = read_packet(b->fd, now_ms() + 1000, &type, &body, &len);
        free(body);
        if (rc < 0) {
            close(b->fd);
            b->fd = -1;
        }
    }
    return b->fd >= 0 ? 0 : session_open(b, err);
}

/* True when responses carries a correlationData starting with prefix. */
static bool has_batch(const json_t *responses, const char *prefix)
{
    size_t i, n = strlen(prefix);
    json_t *r;
    json_array_foreach(responses, i, r)
    {
        const char *cd = oak_json_str(r, "correlationData");
        if (cd && strncmp(cd, prefix, n) == 0)
            return true;
    }
    return false;
}

/* Sends commands (an array of command objects, correlationData added) as
 * one message and waits for the plugin's answer. *out gets an array with
 * the response to each command at the command's index (a missing one is
 * {"error": "no response"}). */
static int request(broker_t *b, json_t *commands, json_t **out, oak_err_t *err)
{
    if (session_ready(b, err) < 0)
        return -1;
    char batch[64];
    snprintf(batch, sizeof(batch), "%s-%lu/", b->client_id, ++b->seq);
    size_t i;
    json_t *c;
    json_array_foreach(commands, i, c)
    {
        json_object_set_new(c, "correlationData", json_sprintf("%s%zu", batch, i));
    }
    json_auto_t *doc = json_pack("{s:O}", "commands", commands);
    _cleanup_free_ char *payload = oak_json_dump(doc);

    long long deadline = now_ms() + BROKER_TIMEOUT_MS;
    wbuf_t w = {0};
    wb_str(&w, CONTROL_TOPIC);
    wb_put(&w, payload, strlen(payload));
    int rc = send_packet(b->fd, MQTT_PUBLISH, &w, deadline); /* QoS 0 */
    OPENSSL_cleanse(w.p, w.len);                             /* passwords */
    free(w.p);
    if (rc < 0)
        return conn_failed(b, rc, "publish", err);

    json_t *resp = NULL;
    while (!resp) {
        unsigned type;
        _cleanup_free_ unsigned char *body = NULL;
        size_t len, plen;
        const char *topic, *pl;
        if ((rc = read_packet(b->fd, deadline, &type, &body, &len)) < 0)
            return conn_failed(b, rc, "the dynamic-security answer", err);
        if (!take_publish(b, type, body, len, &topic, &pl, &plen, deadline) ||
            strcmp(topic, RESPONSE_TOPIC) != 0)
            continue;
        json_t *d = NULL;
        if (oak_json_parse(pl, plen, RESPONSE_MAX, &d, NULL) < 0)
            continue;
        json_t *responses = json_object_get(d, "responses");
        if (json_is_array(responses) && has_batch(responses, batch))
            resp = json_incref(responses);
        json_decref(d);
    }

    json_t *ordered = json_array();
    for (i = 0; i < json_array_size(commands); i++) {
        char cd[96];
        snprintf(cd, sizeof(cd), "%s%zu", batch, i);
        json_t *r = find_by(resp, "correlationData", cd);
        json_array_append_new(ordered,
                              r ? json_incref(r) : json_pack("{s:s}", "error", "no response"));
    }
    json_decref(resp);
    *out = ordered;
    return 0;
}

/* Error text of response i, or NULL when the command succeeded. */
static const char *resp_error(const json_t *resps, size_t i)
{
    return oak_json_str(json_array_get(resps, i), "error");
}

static int dynsec_failed(broker_t *b, const json_t *resps, size_t i, oak_err_t *err)
{
    const json_t *r = json_array_get(resps, i);
    return oak_err_set(err, OAK_E_INTERNAL, "broker %s: dynsec %s: %s", b->uri,
                       oak_json_str(r, "command") ? oak_json_str(r, "command") : "command",
                       resp_error(resps, i) ? resp_error(resps, i) : "failed");
}

int broker_open(const char *uri, const char *admin_user, const char *admin_password, broker_t **out,
                oak_err_t *err)
{
    if (!uri || !*uri || !admin_user || !*admin_user || !admin_password || !*admin_password)
        return oak_err_set(err, OAK_E_INVALID, "broker uri, admin user and password are required");
    if (strlen(admin_user) > 65535 || strlen(admin_password) > 65535)
        return oak_err_set(err, OAK_E_INVALID, "broker admin credentials too long");
    broker_t *b = xcalloc(1, sizeof(*b));
    b->fd = -1;
    b->uri = xstrdup(uri);
    b->user = xstrdup(admin_user);
    b->password = xstrdup(admin_password);
    pthread_mutex_init(&b->call_mu, NULL);
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        memset(rnd, 0, sizeof(rnd));
    int n = snprintf(b->client_id, sizeof(b->client_id), "oak-dynsec-");
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += snprintf(b->client_id + n, sizeof(b->client_id) - (size_t)n, "%02x", rnd[i]);
    if (parse_uri(b, err) < 0 || session_open(b, err) < 0) {
        broker_close(b);
        return -1;
    }
    *out = b;
    return 0;
}

void broker_close(broker_t *b)
{
    if (!b)
        return;
    if (b->fd >= 0) {
        send_packet(b->fd, MQTT_DISCONNECT, NULL, now_ms() + 100);
        close(b->fd);
    }
    pthread_mutex_destroy(&b->call_mu);
    free(b->uri);
    free(b->host);
    free(b->port);
    free(b->user);
    if (b->password)
        OPENSSL_cleanse(b->password, strlen(b->password));
    free(b->password);
    free(b);
}

/* ---- clients ---- */

/* Whether a client of getClient's answer r only has role (or no role). */
static bool only_role(const json_t *r, const char *role)
{
    json_t *roles = json_object_get(json_object_get(json_object_get(r, "data"), "client"), "roles");
    size_t i;
    json_t *e;
    json_array_foreach(roles, i, e)
    {
        const char *n = oak_json_str(e, "rolename");
        if (!n || strcmp(n, role) != 0)
            return false;
    }
    return true;
}

/* Creates or updates client username with password, the client id
 * clientid (NULL: any) and exactly the role role; when acls is given the
 * role is created or its ACLs replaced first. Steals acls. */
static int put_client(broker_t *b, const char *username, const char *password, const char *clientid,
                      const char *role, json_t *acls_in, oak_err_t *err)
{
    json_auto_t *acls = acls_in;
    json_auto_t *cmds = json_array();
    if (acls)
        json_array_append_new(cmds, json_pack("{s:s, s:s, s:O}", "command", "createRole",
                                              "rolename", role, "acls", acls));
    json_array_append_new(cmds,
                          json_pack("{s:s, s:s}", "command", "getClient", "username", username));
    json_auto_t *r1 = NULL;
    if (request(b, cmds, &r1, err) < 0)
        return -1;
    size_t gi = acls ? 1 : 0;
    bool role_exists = false;
    if (acls && resp_error(r1, 0)) {
        if (strcmp(resp_error(r1, 0), "Role already exists") != 0)
            return dynsec_failed(b, r1, 0, err);
        role_exists = true;
    }
    bool exists = true, disabled = false;
    if (resp_error(r1, gi)) {
        if (strcmp(resp_error(r1, gi), "Client not found") != 0)
            return dynsec_failed(b, r1, gi, err);
        exists = false;
    } else {
        if (!only_role(json_array_get(r1, gi), role))
            return oak_err_set(err, OAK_E_CONFLICT,
                               "broker client %s exists with roles other than %s", username, role);
        disabled = json_is_true(json_object_get(
            json_object_get(json_object_get(json_array_get(r1, gi), "data"), "client"),
            "disabled"));
    }

    json_auto_t *cmds2 = json_array();
    if (role_exists)
        json_array_append_new(cmds2, json_pack("{s:s, s:s, s:O}", "command", "modifyRole",
                                               "rolename", role, "acls", acls));
    json_t *c =
        json_pack("{s:s, s:s, s:s, s:[{s:s}]}", "command", exists ? "modifyClient" : "createClient",
                  "username", username, "password", password, "roles", "rolename", role);
    if (clientid || exists)
        json_object_set_new(c, "clientid", json_string(clientid ? clientid : ""));
    json_array_append_new(cmds2, c);
    if (disabled)
        json_array_append_new(
            cmds2, json_pack("{s:s, s:s}", "command", "enableClient", "username", username));
    json_auto_t *r2 = NULL;
    if (request(b, cmds2, &r2, err) < 0)
        return -1;
    for (size_t i = 0; i < json_array_size(r2); i++)
        if (resp_error(r2, i))
            return dynsec_failed(b, r2, i, err);
    return 0;
}

int broker_add_worker(broker_t *b, const char *node_id, const char *password, oak_err_t *err)
{
    if (!valid_name(node_id))
        return oak_err_set(err, OAK_E_INVALID, "node id must be 1-%d of [A-Za-z0-9._-]",
                           NAME_MAX_LEN);
    if (!valid_password(password))
        return oak_err_set(err, OAK_E_INVALID, "worker password must be 1-%d bytes of UTF-8",
                           PASSWORD_MAX);
    _cleanup_free_ char *role = xasprintf(BROKER_ROLE_NODE_PREFIX "%s", node_id);
    pthread_mutex_lock(&b->call_mu);
    int rc = put_client(b, node_id, password, node_id, role, node_acls(node_id), err);
    pthread_mutex_unlock(&b->call_mu);
    return rc;
}

int broker_add_manager(broker_t *b, const char *username, const char *password, oak_err_t *err)
{
    if (!valid_name(username))
        return oak_err_set(err, OAK_E_INVALID, "manager user must be 1-%d of [A-Za-z0-9._-]",
                           NAME_MAX_LEN);
    if (!valid_password(password))
        return oak_err_set(err, OAK_E_INVALID, "manager password must be 1-%d bytes of UTF-8",
                           PASSWORD_MAX);
    pthread_mutex_lock(&b->call_mu);
    int rc = put_client(b, username, password, NULL, BROKER_ROLE_MANAGER, NULL, err);
    pthread_mutex_unlock(&b->call_mu);
    return rc;
}

static int remove_worker(broker_t *b, const char *node_id, const char *role, oak_err_t *err)
{
    json_auto_t *cmds = json_pack("[{s:s, s:s}]", "command", "getClient", "username", node_id);
    json_auto_t *r1 = NULL;
    if (request(b, cmds, &r1, err) < 0)
        return -1;
    if (resp_error(r1, 0) && strcmp(resp_error(r1, 0), "Client not found") != 0)
        return dynsec_failed(b, r1, 0, err);
    if (!resp_error(r1, 0) && !only_role(json_array_get(r1, 0), role))
        return oak_err_set(err, OAK_E_CONFLICT, "broker client %s is not a worker's", node_id);

    json_auto_t *cmds2 = json_pack("[{s:s, s:s}, {s:s, s:s}]", "command", "deleteClient",
                                   "username", node_id, "command", "deleteRole", "rolename", role);
    json_auto_t *r2 = NULL;
    if (request(b, cmds2, &r2, err) < 0)
        return -1;
    if (resp_error(r2, 0) && strcmp(resp_error(r2, 0), "Client not found") != 0)
        return dynsec_failed(b, r2, 0, err);
    if (resp_error(r2, 1) && strcmp(resp_error(r2, 1), "Role not found") != 0)
        return dynsec_failed(b, r2, 1, err);
    return 0;
}

int broker_remove_worker(broker_t *b, const char *node_id, oak_err_t *err)
{
    if (!valid_name(node_id))
        return oak_err_set(err, OAK_E_INVALID, "node id must be 1-%d of [A-Za-z0-9._-]",
                           NAME_MAX_LEN);
    _cleanup_free_ char *role = xasprintf(BROKER_ROLE_NODE_PREFIX "%s", node_id);
    pthread_mutex_lock(&b->call_mu);
    int rc = remove_worker(b, node_id, role, err);
    pthread_mutex_unlock(&b->call_mu);
    return rc;
}
