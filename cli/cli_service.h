/* `oakctl service ...` and `oakctl instance ...`: services (Oakestra's
 * jobs) and their instances, scaling and logs. */
#ifndef CLI_SERVICE_H
#define CLI_SERVICE_H

#include <stdio.h>

#include "cli/cli_client.h"

/* Runs `oakctl service <argv...>` (argv[0] is the subcommand). */
int cli_service_main(cli_t *c, int argc, char **argv, oak_err_t *err);
/* Runs `oakctl instance <argv...>` (argv[0] is the subcommand). */
int cli_instance_main(cli_t *c, int argc, char **argv, oak_err_t *err);

/* Prints service documents (array) as a table: ID, NAME, APPLICATION,
 * STATUS, INSTANCES (up/total), IMAGE. */
void cli_service_table(const json_t *services, FILE *out);

#endif
