/* Validation of SLA v2.0 deployment descriptors (Oakestra's format, see
 * docs and reference §4): every offending field is reported by its path
 * ("applications[0].microservices[1].memory") with the rule it breaks, in
 * err->details, so a client can fix all of them at once. */
#ifndef SLA_H
#define SLA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/oak_err.h"

/* At most this many field errors are listed (the summary counts them all). */
#define SLA_MAX_ERRORS 100

/* Validates a parsed SLA document (borrowed). Returns 0 when valid. On
 * failure returns -1 with err->code = OAK_E_UNPROCESSABLE, err->msg a
 * one-line summary ("SLA is invalid: 3 errors") and err->details an array
 * of {"field": path, "rule": text}, one per offending field (at most
 * SLA_MAX_ERRORS; any previous details of err are replaced). for_service
 * selects the rules of POST /api/service/ (every application needs a
 * non-empty applicationID naming the existing application) rather than
 * those of POST /api/application/ (applicationID empty or absent).
 * Unknown members are allowed everywhere, as in Oakestra. */
int sla_validate(const json_t *sla, bool for_service, oak_err_t *err);

/* Parses and validates a raw request body of len bytes. Fails with
 * OAK_E_TOO_LARGE (413) when len > max, OAK_E_INVALID (400) naming the line
 * and column when the body is not JSON (or repeats a key), and as
 * sla_validate otherwise. On success *out is a new reference. */
int sla_parse(const char *body, size_t len, size_t max, bool for_service, json_t **out,
              oak_err_t *err);

#endif
