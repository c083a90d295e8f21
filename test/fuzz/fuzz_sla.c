/* Fuzz harness for sla_parse: arbitrary bytes as the body of POST
 * /api/application/ and POST /api/service/ (1 MiB limit). Each outcome must
 * be an accepted object or a 400/413/422 error whose details (for 422) are
 * a non-empty array of {field, rule} strings; never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "root_orchestrator/sla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const uint8_t *data, size_t size, bool for_service)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *doc = NULL;
    if (sla_parse((const char *)data, size, 1u << 20, for_service, &doc, &err) == 0) {
        if (!json_is_object(doc) || err.details)
            abort();
        json_decref(doc);
        return;
    }
    if (doc)
        abort();
    if (err.code == OAK_E_UNPROCESSABLE) {
        size_t n = json_array_size(err.details), i;
        json_t *e;
        if (n == 0 || n > SLA_MAX_ERRORS)
            abort();
        json_array_foreach(err.details, i, e)
        {
            if (!json_is_string(json_object_get(e, "field")) ||
                !json_is_string(json_object_get(e, "rule")))
                abort();
        }
    } else if (err.code != OAK_E_INVALID && err.code != OAK_E_TOO_LARGE) {
        abort();
    }
    oak_err_clear(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, false);
    check(data, size, true);
    return 0;
}
