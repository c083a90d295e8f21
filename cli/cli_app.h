/* `oakctl app ...`: deploy, list, show, delete applications. */
#ifndef CLI_APP_H
#define CLI_APP_H

#include "cli/cli_client.h"

/* Runs `oakctl app <argv...>` (argv[0] is the subcommand). Errors as in
 * cli_client.h. */
int cli_app_main(cli_t *c, int argc, char **argv, oak_err_t *err);

#endif
