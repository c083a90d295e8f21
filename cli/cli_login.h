/* `oakctl login` and `oakctl logout`. */
#ifndef CLI_LOGIN_H
#define CLI_LOGIN_H

#include "cli/cli_client.h"

/* oakctl login [--user U] [--organization O] [--password-file F |
 * --password P]; without a password option it is read from stdin (without
 * echo on a terminal). argv holds the words after "login". Errors as in
 * cli_client.h; a refused login is OAK_E_UNAUTH. */
int cli_login_main(cli_t *c, int argc, char **argv, oak_err_t *err);
/* oakctl logout: removes the session file. */
int cli_logout_main(cli_t *c, int argc, char **argv, oak_err_t *err);

#endif
