/* Waiting for services to run (`app deploy --wait`, `service scale
 * --wait`), with progress, and the summary of instances that are not. */
#ifndef CLI_WAIT_H
#define CLI_WAIT_H

#include <jansson.h>
#include <stdbool.h>

#include "cli/cli_client.h"

/* True when an instance of service svc counts as up: RUNNING, or
 * COMPLETED for a one_shot service. */
bool cli_instance_ready(const json_t *svc, const json_t *instance);

/* Polls the services whose ids are in service_ids (array of strings)
 * until every instance is up, printing each status change on
 * cli_progress(c). Gives up after timeout_s seconds, or earlier when
 * every instance that is not up has been FAILED or DEAD unchanged for
 * 10 s (the cluster gave up restarting it). When it gives up, it prints the
 * instances that are not up with their status and status_detail on stderr
 * and fails with OAK_E_TIMEOUT (exit 5). *final (may be NULL) receives the
 * last service documents (array, new reference), also on that failure.
 * Request errors fail as in cli_client.h. */
int cli_wait_running(cli_t *c, const json_t *service_ids, long long timeout_s, json_t **final,
                     oak_err_t *err);

#endif
