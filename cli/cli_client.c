/* The oakctl session (see cli_client.h): API URL and token resolution, the
 * session file, authenticated requests with one refresh on 401, and the
 * translation of the server's error body (docs/errors.md) into an oak_err_t
 * whose code is the exit class. Single-threaded: one request at a time. */
#include "cli/cli_client.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_fs.h"
#include "lib/oak_httpc.h"
#include "lib/oak_json.h"

/* One request may take this long (the server bounds its own waits, e.g.
 * fetching logs from a worker, well below). */
#define REQUEST_TIMEOUT_MS 60000L
#define SESSION_MAX        (64 * 1024)

void cli_client_free(cli_t *c)
{
    free(c->api);
    free(c->token);
    free(c->refresh_token);
    free(c->session_path);
    c->api = c->token = c->refresh_token = c->session_path = NULL;
    c->prepared = false;
}

/* "host:port" -> "http://host:port"; trailing slashes dropped. */
static char *normalize_api(const char *s)
{
    char *u = strstr(s, "://") ? xstrdup(s) : xasprintf("http://%s", s);
    size_t n = strlen(u);
    while (n > 0 && u[n - 1] == '/')
        u[--n] = 0;
    return u;
}

char *cli_session_path(void)
{
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        return xasprintf("%s/oak/token", xdg);
    const char *home = getenv("HOME");
    if (home && *home)
        return xasprintf("%s/.config/oak/token", home);
    return NULL;
}

int cli_client_prepare(cli_t *c, oak_err_t *err)
{
    if (c->prepared)
        return 0;
    c->session_path = cli_session_path();
    json_auto_t *session = NULL;
    if (c->session_path && access(c->session_path, F_OK) == 0) {
        oak_err_t e = OAK_ERR_INIT;
        if (oak_json_load_file(c->session_path, SESSION_MAX, &session, &e) < 0) {
            fprintf(stderr, "oakctl: ignoring unreadable session file %s: %s\n", c->session_path,
                    e.msg);
            oak_err_clear(&e);
        }
    }
    const char *api = c->api_flag;
    if (!api || !*api)
        api = getenv("OAK_API");
    if (!api || !*api)
        api = oak_json_str(session, "api");
    if (!api || !*api)
        api = CLI_DEFAULT_API;
    c->api = normalize_api(api);
    if (strncmp(c->api, "http://", 7) != 0 && strncmp(c->api, "https://", 8) != 0)
        return oak_err_set(err, OAK_E_INVALID, "API URL '%s' must start with http:// or https://",
                           api);
    const char *env = getenv("OAK_TOKEN");
    if (env && *env) {
        c->token = xstrdup(env);
        c->token_from_env = true;
    } else if (session) {
        /* a token is only ever sent to the API it was issued by */
        const char *sapi = oak_json_str(session, "api");
        _cleanup_free_ char *norm = sapi ? normalize_api(sapi) : NULL;
        const char *tok = oak_json_str(session, "token");
        const char *ref = oak_json_str(session, "refresh_token");
        if (norm && tok && strcmp(norm, c->api) == 0) {
            c->token = xstrdup(tok);
            c->refresh_token = ref ? xstrdup(ref) : NULL;
        }
    }
    c->prepared = true;
    return 0;
}

int cli_session_save(cli_t *c, const char *token, const char *refresh_token, oak_err_t *err)
{
    if (cli_client_prepare(c, err) < 0)
        return -1;
    if (!c->session_path)
        return oak_err_set(err, OAK_E_IO,
                           "cannot store the session: neither XDG_CONFIG_HOME nor HOME is set");
    _cleanup_free_ char *dir = xstrdup(c->session_path);
    *strrchr(dir, '/') = 0;
    if (oak_mkdir_p(dir, 0700, err) < 0)
        return -1;
    /* the oak directory is ours: nobody else may list it */
    if (chmod(dir, 0700) < 0)
        return oak_err_errno(err, errno, "cannot chmod %s", dir);
    json_auto_t *s = json_pack("{s:s, s:s}", "api", c->api, "token", token);
    if (refresh_token)
        json_object_set_new(s, "refresh_token", json_string(refresh_token));
    if (oak_json_save_file(c->session_path, s, 0600, err) < 0)
        return -1;
    free(c->token);
    free(c->refresh_token);
    c->token = xstrdup(token);
    c->refresh_token = refresh_token ? xstrdup(refresh_token) : NULL;
    c->token_from_env = false;
    return 0;
}

int cli_session_remove(cli_t *c, bool *removed, oak_err_t *err)
{
    *removed = false;
    if (cli_client_prepare(c, err) < 0)
        return -1;
    if (!c->session_path)
        return 0;
    if (unlink(c->session_path) == 0)
        *removed = true;
    else if (errno != ENOENT)
        return oak_err_errno(err, errno, "cannot remove %s", c->session_path);
    free(c->token);
    free(c->refresh_token);
    c->token = c->refresh_token = NULL;
    return 0;
}

/* err from a non-2xx reply: the server's message and field errors, the
 * status mapped onto an exit class. */
static int reply_error(long status, const json_t *body, const char *method, const char *path,
                       oak_err_t *err)
{
    oak_code_t code;
    switch (status) {
    case 401:
        code = OAK_E_UNAUTH;
        break;
    case 403:
        code = OAK_E_FORBIDDEN;
        break;
    case 404:
        code = OAK_E_NOT_FOUND;
        break;
    case 409:
        code = OAK_E_CONFLICT;
        break;
    case 413:
        code = OAK_E_TOO_LARGE;
        break;
    case 400:
    case 422:
        code = OAK_E_UNPROCESSABLE;
        break;
    default:
        code = status >= 300 && status < 500 ? OAK_E_UNPROCESSABLE : OAK_E_INTERNAL;
    }
    const char *msg = oak_json_str(body, "message");
    const char *name = oak_json_str(body, "error");
    if (msg)
        oak_err_set(err, code, "%s (HTTP %ld%s%s)", msg, status, name ? ", " : "",
                    name ? name : "");
    else
        oak_err_set(err, code, "%s %s: the server answered HTTP %ld", method, path, status);
    json_t *fields = json_object_get(body, "errors");
    if (json_is_array(fields) && json_array_size(fields) > 0)
        err->details = json_deep_copy(fields);
    return -1;
}

/* One round trip; *status and *out (parsed JSON or NULL) on success. */
static int send_once(cli_t *c, const char *method, const char *path, const char *body,
                     size_t body_len, const char *token, long *status, json_t **out, oak_err_t *err)
{
    _cleanup_free_ char *url = xasprintf("%s%s", c->api, path);
    _cleanup_free_ char *auth = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
    const char *headers[4];
    size_t n = 0;
    headers[n++] = "Accept: application/json";
    if (body)
        headers[n++] = "Content-Type: application/json";
    if (auth)
        headers[n++] = auth;
    headers[n] = NULL;
    oak_httpc_resp_t r;
    oak_err_t e = OAK_ERR_INIT;
    *out = NULL;
    if (oak_httpc_request(method, url, headers, body, body_len, REQUEST_TIMEOUT_MS, &r, &e) < 0) {
        if (e.code == OAK_E_INVALID)
            oak_err_set(err, OAK_E_INVALID, "%s", e.msg);
        else if (e.code == OAK_E_TOO_LARGE)
            oak_err_set(err, OAK_E_TOO_LARGE, "%s", e.msg);
        else
            oak_err_set(err, OAK_E_UNAVAILABLE, "cannot reach the API at %s: %s", c->api, e.msg);
        oak_err_clear(&e);
        return -1;
    }
    *status = r.status;
    if (r.body_len > 0)
        oak_json_parse(r.body, r.body_len, 0, out, NULL);
    oak_httpc_resp_free(&r);
    return 0;
}

/* Exchanges the refresh token for a new access token and saves it.
 * Returns 0 when that worked. */
static int refresh(cli_t *c)
{
    long status = 0;
    json_auto_t *out = NULL;
    oak_err_t e = OAK_ERR_INIT;
    if (send_once(c, "POST", "/api/auth/refresh", NULL, 0, c->refresh_token, &status, &out, &e) <
            0 ||
        status != 200 || !oak_json_str(out, "token")) {
        oak_err_clear(&e);
        return -1;
    }
    _cleanup_free_ char *ref = xstrdup(c->refresh_token);
    if (cli_session_save(c, oak_json_str(out, "token"), ref, &e) < 0) {
        fprintf(stderr, "oakctl: warning: cannot save the refreshed token: %s\n", e.msg);
        oak_err_clear(&e);
    }
    return 0;
}

int cli_request_raw(cli_t *c, const char *method, const char *path, const char *body,
                    size_t body_len, bool anonymous, json_t **out, oak_err_t *err)
{
    if (out)
        *out = NULL;
    if (cli_client_prepare(c, err) < 0)
        return -1;
    /* without a token the request is still sent: an unreachable API is
     * the more useful diagnosis, and the 401 says "not logged in" */
    long status = 0;
    json_t *reply = NULL;
    if (send_once(c, method, path, body, body_len, anonymous ? NULL : c->token, &status, &reply,
                  err) < 0)
        return -1;
    if (status == 401 && !anonymous && !c->token_from_env && c->refresh_token && refresh(c) == 0) {
        json_decref(reply);
        reply = NULL;
        if (send_once(c, method, path, body, body_len, c->token, &status, &reply, err) < 0)
            return -1;
    }
    json_auto_t *r = reply;
    if (status >= 200 && status < 300) {
        if (out)
            *out = oak_steal(&r);
        return 0;
    }
    if (status == 401 && !anonymous) {
        if (!c->token)
            return oak_err_set(err, OAK_E_UNAUTH, "not logged in to %s: run oakctl login", c->api);
        if (c->token_from_env)
            return oak_err_set(err, OAK_E_UNAUTH,
                               "the token in OAK_TOKEN was refused (%s): set a valid one, or "
                               "unset OAK_TOKEN and run oakctl login",
                               oak_json_str(r, "message") ? oak_json_str(r, "message") : "401");
        return oak_err_set(err, OAK_E_UNAUTH, "not logged in or session expired: run oakctl login");
    }
    return reply_error(status, r, method, path, err);
}

int cli_request(cli_t *c, const char *method, const char *path, const json_t *body, json_t **out,
                oak_err_t *err)
{
    _cleanup_free_ char *payload = body ? oak_json_dump(body) : NULL;
    return cli_request_raw(c, method, path, payload, payload ? strlen(payload) : 0, false, out,
                           err);
}

int cli_get(cli_t *c, const char *path, json_type type, json_t **out, oak_err_t *err)
{
    json_t *j = NULL;
    if (cli_request(c, "GET", path, NULL, &j, err) < 0)
        return -1;
    if (!j || json_typeof(j) != type) {
        json_decref(j);
        return oak_err_set(err, OAK_E_INTERNAL, "GET %s: the server's reply is not a JSON %s", path,
                           type == JSON_ARRAY ? "array" : "object");
    }
    *out = j;
    return 0;
}

char *cli_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = xmalloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = 0;
    return out;
}

int cli_exit_code(const oak_err_t *err)
{
    switch (err->code) {
    case OAK_E_OK:
        return CLI_EXIT_OK;
    case OAK_E_INVALID:
    case OAK_E_IO:
        return CLI_EXIT_USAGE;
    case OAK_E_UNAUTH:
    case OAK_E_FORBIDDEN:
        return CLI_EXIT_AUTH;
    case OAK_E_UNAVAILABLE:
        return CLI_EXIT_UNREACHABLE;
    case OAK_E_TIMEOUT:
        return CLI_EXIT_NOT_READY;
    default:
        return CLI_EXIT_SERVER;
    }
}

void cli_report(const oak_err_t *err)
{
    const char *msg = err->msg[0] ? err->msg : "failed";
    size_t n = strlen(msg);
    fprintf(stderr, "oakctl: %.*s\n", (int)(n > 0 && msg[n - 1] == '\n' ? n - 1 : n), msg);
    size_t i;
    json_t *f;
    json_array_foreach(err->details, i, f)
    {
        const char *field = oak_json_str(f, "field"), *rule = oak_json_str(f, "rule");
        fprintf(stderr, "  %s: %s\n", field ? field : "?", rule ? rule : "");
    }
}

void cli_print_json(const json_t *j)
{
    _cleanup_free_ char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    printf("%s\n", s ? s : "null");
}

FILE *cli_progress(const cli_t *c)
{
    return c->output == CLI_OUT_JSON ? stderr : stdout;
}
