/* Login and logout: POST /api/auth/login with the user's credentials, the
 * tokens stored in the session file (cli_client.c). The password comes
 * from a file, the command line, or stdin (no echo on a terminal); it is
 * never written anywhere. */
#include "cli/cli_login.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli_args.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"
#include "lib/oak_json.h"

#define PASSWORD_MAX 4096

static const char login_usage[] =
    "usage: oakctl login [--user NAME] [--organization ORG]\n"
    "                    [--password-file FILE | --password PASSWORD]\n"
    "Logs in to the API (--api URL, $OAK_API, default " CLI_DEFAULT_API ") and stores\n"
    "the session in $XDG_CONFIG_HOME/oak/token (default ~/.config/oak/token).\n"
    "Without a password option the password is read from stdin.\n"
    "  --user NAME           user name (default Admin)\n"
    "  --organization ORG    organization (default root)\n"
    "  --password-file FILE  read the password from the first line of FILE\n"
    "  --password PASSWORD   the password (visible to other users in ps)\n";

static void strip_newline(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
}

static int read_line(FILE *f, const char *what, char **out, oak_err_t *err)
{
    char *line = NULL;
    size_t cap = 0;
    errno = 0;
    ssize_t n = getline(&line, &cap, f);
    if (n < 0) {
        free(line);
        if (errno)
            return oak_err_errno(err, errno, "cannot read the password from %s", what);
        return oak_err_set(err, OAK_E_INVALID, "no password given on %s", what);
    }
    if (n > PASSWORD_MAX) {
        free(line);
        return oak_err_set(err, OAK_E_INVALID, "the password on %s is too long", what);
    }
    strip_newline(line);
    *out = line;
    return 0;
}

static int prompt_password(const char *user, const char *api, char **out, oak_err_t *err)
{
    if (!isatty(STDIN_FILENO))
        return read_line(stdin, "stdin", out, err);
    struct termios old, quiet;
    bool echo_off = tcgetattr(STDIN_FILENO, &old) == 0;
    fprintf(stderr, "Password for %s at %s: ", user, api);
    fflush(stderr);
    if (echo_off) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        quiet.c_lflag |= ECHONL;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    int rc = read_line(stdin, "the terminal", out, err);
    if (echo_off)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    return rc;
}

int cli_login_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    const char *user = "Admin", *org = NULL, *pw_file = NULL, *pw_arg = NULL;
    cli_opt_t opts[] = {
        {"user", 'u', "NAME", &user, NULL},
        {"organization", 0, "ORG", &org, NULL},
        {"password-file", 0, "FILE", &pw_file, NULL},
        {"password", 'p', "PASSWORD", &pw_arg, NULL},
        CLI_OPT_END,
    };
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, opts, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs(login_usage, stdout);
        return 0;
    }
    if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "login takes no arguments ('%s')\n%s", pos[0],
                           login_usage);
    if (pw_file && pw_arg)
        return oak_err_set(err, OAK_E_INVALID, "give --password-file or --password, not both");
    if (cli_client_prepare(c, err) < 0)
        return -1;
    _cleanup_free_ char *pw = NULL;
    if (pw_arg) {
        pw = xstrdup(pw_arg);
    } else if (pw_file) {
        _cleanup_fclose_ FILE *f = fopen(pw_file, "re");
        if (!f)
            return oak_err_errno(err, errno, "cannot open the password file %s", pw_file);
        if (read_line(f, pw_file, &pw, err) < 0)
            return -1;
    } else if (prompt_password(user, c->api, &pw, err) < 0) {
        return -1;
    }
    if (!*pw)
        return oak_err_set(err, OAK_E_INVALID, "the password is empty");

    json_auto_t *body = json_pack("{s:s, s:s}", "username", user, "password", pw);
    if (org)
        json_object_set_new(body, "organization_name", json_string(org));
    explicit_bzero(pw, strlen(pw));
    _cleanup_free_ char *payload = oak_json_dump(body);
    json_auto_t *out = NULL;
    int rc =
        cli_request_raw(c, "POST", "/api/auth/login", payload, strlen(payload), true, &out, err);
    explicit_bzero(payload, strlen(payload));
    if (rc < 0) {
        if (err->code == OAK_E_UNAUTH) {
            char msg[sizeof(err->msg)];
            snprintf(msg, sizeof(msg), "login to %s as %s failed: %s", c->api, user, err->msg);
            oak_err_clear(err);
            return oak_err_set(err, OAK_E_UNAUTH, "%s", msg);
        }
        return -1;
    }
    const char *token = oak_json_str(out, "token");
    if (!token)
        return oak_err_set(err, OAK_E_INTERNAL, "the login reply carries no token");
    if (cli_session_save(c, token, oak_json_str(out, "refresh_token"), err) < 0)
        return -1;
    if (c->output == CLI_OUT_JSON) {
        json_auto_t *j =
            json_pack("{s:s, s:s, s:s}", "api", c->api, "user", user, "session", c->session_path);
        cli_print_json(j);
    } else
        printf("logged in to %s as %s (session in %s)\n", c->api, user, c->session_path);
    return 0;
}

int cli_logout_main(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, NULL, argc, argv, false, pos, &npos, err) < 0)
        return -1;
    if (c->help) {
        fputs("usage: oakctl logout\nRemoves the stored session (the token file).\n", stdout);
        return 0;
    }
    if (npos > 0)
        return oak_err_set(err, OAK_E_INVALID, "logout takes no arguments");
    bool removed = false;
    if (cli_session_remove(c, &removed, err) < 0)
        return -1;
    printf("%s\n", removed ? "logged out" : "not logged in");
    return 0;
}
