/* oakctl: the command-line client of the root's REST API. Parses the
 * global options, dispatches to the command group, and turns the error a
 * command returns into one message on stderr and the documented exit code
 * (cli_client.h, docs/oakctl.md). */
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_app.h"
#include "cli/cli_args.h"
#include "cli/cli_client.h"
#include "cli/cli_infra.h"
#include "cli/cli_login.h"
#include "cli/cli_service.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

static const char usage[] =
    "usage: oakctl [--api URL] [-o table|json] COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  login [--user NAME] [--password-file F | --password P]   log in, store the session\n"
    "  logout                                                   forget the session\n"
    "  app deploy -f SLA.json [--wait] [--timeout S]            register and start an SLA\n"
    "  app list | show ID | delete ID\n"
    "  service list [--app ID] | scale ID N [--wait] | delete ID\n"
    "  instance list [--service ID] | logs SERVICE_ID N [--tail N] [-f]\n"
    "  cluster list | token [--name NAME] [--ttl S]\n"
    "  node list [--cluster ID]\n"
    "\n"
    "Global options (anywhere on the line):\n"
    "  --api URL       the root API (env OAK_API; default: the logged-in API, else\n"
    "                  " CLI_DEFAULT_API ")\n"
    "  -o, --output    table (default) or json (the server's JSON)\n"
    "  -h, --help      help of a command\n"
    "Environment: OAK_TOKEN overrides the stored session token.\n"
    "Exit codes: 0 ok, 1 usage or bad input, 2 the server refused (invalid, not\n"
    "found, conflict, server error), 3 not logged in / session expired / not\n"
    "allowed, 4 cannot reach the API, 5 --wait ended without everything running.\n";

typedef int (*cmd_fn)(cli_t *c, int argc, char **argv, oak_err_t *err);

static const struct {
    const char *name;
    cmd_fn fn;
} commands[] = {
    {"login", cli_login_main},     {"logout", cli_logout_main},   {"app", cli_app_main},
    {"application", cli_app_main}, {"service", cli_service_main}, {"instance", cli_instance_main},
    {"cluster", cli_cluster_main}, {"node", cli_node_main},
};

static int run(cli_t *c, int argc, char **argv, oak_err_t *err)
{
    _cleanup_free_ char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
    int npos = 0;
    if (cli_args_parse(c, NULL, argc, argv, true, pos, &npos, err) < 0)
        return -1;
    if (npos == 0 || !strcmp(pos[0], "help")) {
        if (c->help || npos > 0) {
            fputs(usage, stdout);
            return 0;
        }
        return oak_err_set(err, OAK_E_INVALID, "no command given (oakctl --help lists them)");
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(pos[0], commands[i].name))
            return commands[i].fn(c, npos - 1, pos + 1, err);
    return oak_err_set(err, OAK_E_INVALID, "unknown command '%s' (oakctl --help lists them)",
                       pos[0]);
}

int main(int argc, char **argv)
{
    setlocale(LC_CTYPE, "");
    cli_t c = {0};
    oak_err_t err = OAK_ERR_INIT;
    int rc = run(&c, argc - 1, argv + 1, &err);
    fflush(stdout);
    int code = CLI_EXIT_OK;
    if (rc < 0) {
        cli_report(&err);
        code = cli_exit_code(&err);
    }
    oak_err_clear(&err);
    cli_client_free(&c);
    return code;
}
