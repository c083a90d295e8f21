/* `oakctl cluster ...` and `oakctl node ...`: the infrastructure. */
#ifndef CLI_INFRA_H
#define CLI_INFRA_H

#include "cli/cli_client.h"

/* Runs `oakctl cluster <argv...>` (argv[0] is the subcommand). */
int cli_cluster_main(cli_t *c, int argc, char **argv, oak_err_t *err);
/* Runs `oakctl node <argv...>` (argv[0] is the subcommand). */
int cli_node_main(cli_t *c, int argc, char **argv, oak_err_t *err);

#endif
