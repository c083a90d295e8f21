/* The OpenAPI 3 document of the system manager's REST API and the routes
 * that serve it (/api/docs/openapi.json, /api/docs). The document is written
 * by hand in openapi.c; a test checks that every route the server answers
 * appears in it. */
#ifndef OPENAPI_H
#define OPENAPI_H

#include "lib/oak_http.h"

/* New reference to the document. */
json_t *openapi_document(void);

extern const oak_http_route_t openapi_routes[];
extern const size_t openapi_nroutes;

#endif
