/* Fuzz harness for REST request bodies of the system manager: arbitrary
 * bytes through oak_json_parse_object with the 1 MiB limit the handlers use
 * for small bodies, the role list check (roles_from_json on "roles", as in
 * POST /api/auth/register and PUT /api/user/<name>) and sla_parse on the
 * same bytes (POST /api/application/). Every outcome must be a value or a
 * well-formed error; roles must round-trip through roles_to_json. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_json.h"
#include "root_orchestrator/api_util.h"
#include "root_orchestrator/sla.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define ALL_ROLES 0xfu

static void check_field_errors(const json_t *details)
{
    size_t i;
    json_t *e;
    CHECK(json_is_array(details) && json_array_size(details) > 0);
    json_array_foreach(details, i, e)
    {
        CHECK(json_is_string(json_object_get(e, "field")));
        CHECK(json_is_string(json_object_get(e, "rule")));
    }
}

static void check_roles(const json_t *v)
{
    oak_err_t err = OAK_ERR_INIT;
    unsigned roles = roles_from_json(v, &err, "roles");
    CHECK((roles & ~ALL_ROLES) == 0);
    bool all_valid = json_is_array(v);
    size_t i;
    json_t *x;
    if (json_is_array(v)) {
        json_array_foreach(v, i, x)
        {
            const char *s = json_string_value(x);
            if (!s || (strcmp(s, "Admin") && strcmp(s, "Organization_Admin") &&
                       strcmp(s, "Application_Provider") && strcmp(s, "Infrastructure_Provider")))
                all_valid = false;
        }
    }
    /* an error exactly when something is not a role name, each named by path */
    CHECK(all_valid == (err.details == NULL));
    if (err.details) {
        check_field_errors(err.details);
        CHECK(!strncmp(oak_json_str(json_array_get(err.details, 0), "field"), "roles", 5));
    }
    oak_err_clear(&err);
    /* the names of the bits read back as the same bits, without errors */
    json_t *names = roles_to_json(roles);
    CHECK(json_array_size(names) <= 4);
    unsigned again = roles_from_json(names, &err, "roles");
    CHECK(again == roles && err.details == NULL);
    json_decref(names);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    oak_err_t err = OAK_ERR_INIT;
    json_t *obj = NULL;
    if (oak_json_parse_object((const char *)data, size, 1u << 20, &obj, &err) == 0) {
        CHECK(json_is_object(obj) && err.code == OAK_E_OK);
        check_roles(json_object_get(obj, "roles"));
        json_t *m;
        size_t i;
        /* organization bodies carry roles per member */
        json_array_foreach(json_object_get(obj, "member"), i, m)
            check_roles(json_object_get(m, "roles"));
        json_decref(obj);
    } else {
        CHECK(obj == NULL);
        CHECK(err.code == OAK_E_INVALID || err.code == OAK_E_TOO_LARGE);
        CHECK(err.msg[0] != 0);
        oak_err_clear(&err);
    }

    json_t *sla = NULL;
    if (sla_parse((const char *)data, size, 1u << 20, false, &sla, &err) == 0) {
        CHECK(json_is_object(sla) && err.details == NULL);
        json_decref(sla);
    } else {
        CHECK(sla == NULL);
        if (err.code == OAK_E_UNPROCESSABLE)
            check_field_errors(err.details);
        else
            CHECK(err.code == OAK_E_INVALID || err.code == OAK_E_TOO_LARGE);
        oak_err_clear(&err);
    }
    return 0;
}
