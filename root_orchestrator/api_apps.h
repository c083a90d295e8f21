/* REST handlers for applications, services (Oakestra "jobs"), instances,
 * clusters and health. Loop thread only. */
#ifndef API_APPS_H
#define API_APPS_H

#include "lib/oak_http.h"

extern const oak_http_route_t apps_routes[];
extern const size_t apps_nroutes;

#endif
