/* Users, organizations, roles and tokens of the system manager: the
 * first-start bootstrap of the Admin account and the REST handlers under
 * /api/auth, /api/user(s), /api/permission and /api/organization.
 * Loop thread only. */
#ifndef AUTH_H
#define AUTH_H

#include "lib/oak_http.h"
#include "root_orchestrator/root.h"

/* Creates organization "root" and user "Admin" when missing. The password
 * is admin_password when given, else generated, printed once on stdout and
 * written 0600 to <state_dir>/admin-password. */
int auth_bootstrap(root_t *r, const char *admin_password, oak_err_t *err);
/* Loads or creates the token signing key <state_dir>/jwt.key (0600). */
int auth_load_key(root_t *r, oak_err_t *err);

extern const oak_http_route_t auth_routes[];
extern const size_t auth_nroutes;

#endif
