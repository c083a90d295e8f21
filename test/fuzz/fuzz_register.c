/* Fuzz harness for wp_parse_register: arbitrary bytes as the body of POST
 * /api/node/register. Each outcome must be an accepted registration whose
 * members obey the documented rules and survive build -> parse unchanged,
 * or a 400/413/422 error whose details (for 422) are 1..WP_MAX_ERRORS
 * {field, rule} strings, with the output left zeroed. Never a crash or a
 * leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_orchestrator/worker_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_err(oak_err_t *err)
{
    if (err->code == OAK_E_UNPROCESSABLE) {
        size_t n = json_array_size(err->details), i;
        json_t *e;
        if (n == 0 || n > WP_MAX_ERRORS)
            abort();
        json_array_foreach(err->details, i, e)
        {
            if (!json_is_string(json_object_get(e, "field")) ||
                !json_is_string(json_object_get(e, "rule")))
                abort();
        }
    } else if ((err->code != OAK_E_INVALID && err->code != OAK_E_TOO_LARGE) || err->details) {
        abort();
    }
    oak_err_clear(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    wp_register_t r, back;
    if (wp_parse_register((const char *)data, size, &r, &err) < 0) {
        static const wp_register_t zero;
        if (memcmp(&r, &zero, sizeof(r)) != 0)
            abort();
        check_err(&err);
        return 0;
    }
    if (err.details || !r.host || !r.ip || !r.arch || r.nvirt < 1 || r.nvirt > WP_MAX_VIRT ||
        r.port < 1 || r.port > 65535 || r.cpu_cores < 1 || r.memory_mb < 0 ||
        (r.node_id && !wp_node_id_valid(r.node_id)) || (r.token && !*r.token) ||
        (r.system_info && !json_is_object(r.system_info)))
        abort();
    json_t *b = wp_build_register(&r);
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    if (!s || wp_parse_register(s, strlen(s), &back, &err) < 0)
        abort();
    if (!same_str(r.host, back.host) || !same_str(r.ip, back.ip) ||
        !same_str(r.node_id, back.node_id) || !same_str(r.token, back.token) ||
        !same_str(r.arch, back.arch) || r.nvirt != back.nvirt || r.port != back.port ||
        r.cpu_cores != back.cpu_cores || r.memory_mb != back.memory_mb || r.gpus != back.gpus ||
        !(r.system_info ? json_equal(r.system_info, back.system_info) : !back.system_info))
        abort();
    for (size_t i = 0; i < r.nvirt; i++)
        if (strcmp(r.virt[i], back.virt[i]) != 0)
            abort();
    free(s);
    wp_register_clear(&r);
    wp_register_clear(&back);
    return 0;
}
