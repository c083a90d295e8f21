/* Fuzz harness for node_engine/image_ref: the input, as a string, is
 * parsed as an image reference. An accepted reference must be complete
 * (registry, repository and a tag or a valid digest; or an oci directory
 * without ':'), have an endpoint, and survive format -> parse -> format
 * unchanged; a refused one must fail with OAK_E_INVALID and leave the
 * output zeroed. Never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "node_engine/image_ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * IMAGE_REF_MAX)
        size = 2 * IMAGE_REF_MAX;
    char *s = xstrndup((const char *)data, size);
    image_ref_t r;
    oak_err_t err = OAK_ERR_INIT;
    if (image_ref_parse(s, &r, &err) < 0) {
        if (err.code != OAK_E_INVALID || !err.msg[0] || r.registry || r.repository || r.tag ||
            r.digest || r.oci_dir || r.oci_layout)
            abort();
        free(s);
        return 0;
    }
    if (r.oci_layout) {
        if (!r.oci_dir || !*r.oci_dir || strchr(r.oci_dir, ':') || r.registry || r.repository)
            abort();
    } else {
        if (!r.registry || !r.repository || !*r.repository || (!r.tag && !r.digest))
            abort();
        if (r.digest && !image_digest_valid(r.digest))
            abort();
        if (strlen(r.registry) + 1 + strlen(r.repository) > IMAGE_REF_NAME_MAX)
            abort();
        if (!image_ref_endpoint(&r))
            abort();
    }
    char *canon = image_ref_format(&r);
    image_ref_t again;
    if (image_ref_parse(canon, &again, &err) < 0)
        abort();
    char *canon2 = image_ref_format(&again);
    if (strcmp(canon, canon2) != 0)
        abort();
    free(canon);
    free(canon2);
    image_ref_clear(&again);
    image_ref_clear(&r);
    free(s);
    return 0;
}
