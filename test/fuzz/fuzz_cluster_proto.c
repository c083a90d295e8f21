/* Fuzz harness for the root's side of proto/cluster.proto: arbitrary bytes
 * unpacked (protobuf-c) as each message a cluster sends (RegisterRequest,
 * ReportRequest, CommandsRequest) and as the Command a cluster receives.
 * Whatever unpacks must re-pack to a stable encoding, and a reported
 * capacity goes through the root's own conversion
 * (cluster_rpc_capacity_json), clusters_set_capacity on a zeroed cluster,
 * the scheduler's capability check and the REST view, then is freed.
 * Never a crash, a leak, or a capacity the scheduler reads differently
 * from what the cluster sent. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/oak_alloc.h"
#include "lib/oak_json.h"
#include "proto/cluster.pb-c.h"
#include "root_orchestrator/cluster_rpc.h"
#include "root_orchestrator/clusters.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* Unknown fields here or in a submessage. */
static bool has_unknown(const ProtobufCMessage *m)
{
    if (m->n_unknown_fields)
        return true;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *p = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t cnt = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)p;
            for (size_t k = 0; k < cnt; k++)
                if (has_unknown(v[k]))
                    return true;
        } else {
            const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
            if (sub && has_unknown(sub))
                return true;
        }
    }
    return false;
}

/* pack(m) == pack(unpack(pack(m))). protobuf-c keeps unknown fields
 * verbatim, including some it should have refused (tag 0 after a scalar
 * field sent length-delimited), so with unknown fields the re-unpack may
 * fail; the root never re-packs what it received. */
static void check_repack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *a = xmalloc(n + 1);
    CHECK(protobuf_c_message_pack(m, a) == n);
    ProtobufCMessage *again = protobuf_c_message_unpack(m->descriptor, NULL, n, a);
    if (!again) {
        CHECK(has_unknown(m));
        free(a);
        return;
    }
    size_t n2 = protobuf_c_message_get_packed_size(again);
    CHECK(n2 == n);
    uint8_t *b = xmalloc(n2 + 1);
    CHECK(protobuf_c_message_pack(again, b) == n2);
    CHECK(memcmp(a, b, n) == 0);
    protobuf_c_message_free_unpacked(again, NULL);
    free(a);
    free(b);
}

static void check_capacity(const Oak__Cluster__V1__Capacity *cap)
{
    json_t *j = cluster_rpc_capacity_json(cap);
    /* whatever the cluster sends, the root keeps a usable capacity */
    CHECK(json_is_object(j));
    CHECK(oak_json_int(j, "cpu_millis_free", -1) == cap->cpu_millis_free);
    CHECK(oak_json_int(j, "cpu_millis_total", -1) == cap->cpu_millis_total);
    CHECK(oak_json_int(j, "memory_mb_free", -1) == cap->memory_mb_free);
    CHECK(oak_json_int(j, "gpu_free", -1) == cap->gpu_free);
    json_t *pa = json_object_get(j, "per_arch");
    CHECK(json_is_array(pa) && json_array_size(pa) <= cap->n_per_arch);
    CHECK(json_array_size(json_object_get(j, "virtualization")) <= cap->n_virtualization);

    root_t r;
    memset(&r, 0, sizeof(r));
    r.cluster_stale_s = 15;
    clusters_t *cs = xcalloc(1, sizeof(*cs));
    cs->cap = 1;
    cs->v = xcalloc(1, sizeof(cluster_t *));
    cluster_t *c = xcalloc(1, sizeof(*c));
    cs->v[cs->n++] = c;
    clusters_set_capacity(&r, c, j);
    CHECK(c->reported);
    CHECK(c->cpu_free == cap->cpu_millis_free && c->mem_free == cap->memory_mb_free);
    CHECK(c->gpu_free == cap->gpu_free && c->active_workers == cap->active_workers);
    CHECK(isfinite(c->cpu_percent) && isfinite(c->memory_percent));
    CHECK(c->narch == json_array_size(pa));
    CHECK(c->nvirt == json_array_size(json_object_get(j, "virtualization")));
    for (size_t i = 0; i < c->narch; i++) {
        CHECK(c->arch[i].arch);
        (void)cluster_supports(c, "container", c->arch[i].arch);
    }
    (void)cluster_supports(c, NULL, NULL);
    (void)cluster_supports(c, "unikernel", "amd64");
    (void)cluster_free_cpu(c);
    c->name = xstrdup("fuzz");
    json_t *view = cluster_to_json(&r, c);
    CHECK(json_is_object(view));
    /* the stored form reads back the same */
    json_t *stored = json_deep_copy(json_object_get(view, "capacity"));
    cluster_t *c2 = xcalloc(1, sizeof(*c2));
    c2->name = xstrdup("fuzz2");
    cs->v = xrealloc(cs->v, 2 * sizeof(cluster_t *));
    cs->v[cs->n++] = c2;
    clusters_set_capacity(&r, c2, stored);
    CHECK(c2->cpu_free == c->cpu_free && c2->mem_total == c->mem_total && c2->narch == c->narch &&
          c2->nvirt == c->nvirt);
    json_decref(stored);
    json_decref(view);
    json_decref(j);
    clusters_free(cs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Oak__Cluster__V1__RegisterRequest *reg =
        oak__cluster__v1__register_request__unpack(NULL, size, data);
    if (reg) {
        CHECK(reg->join_token && reg->cluster_name && reg->cluster_location && reg->version);
        check_repack(&reg->base);
        oak__cluster__v1__register_request__free_unpacked(reg, NULL);
    }

    Oak__Cluster__V1__ReportRequest *rep =
        oak__cluster__v1__report_request__unpack(NULL, size, data);
    if (rep) {
        check_repack(&rep->base);
        for (size_t i = 0; i < rep->n_instances; i++) {
            const Oak__Cluster__V1__InstanceStatus *s = rep->instances[i];
            CHECK(s && s->service_id && s->status && s->status_detail);
        }
        if (rep->capacity)
            check_capacity(rep->capacity);
        oak__cluster__v1__report_request__free_unpacked(rep, NULL);
    }

    Oak__Cluster__V1__CommandsRequest *cr =
        oak__cluster__v1__commands_request__unpack(NULL, size, data);
    if (cr) {
        CHECK(cr->cluster_id && cr->session_token);
        check_repack(&cr->base);
        oak__cluster__v1__commands_request__free_unpacked(cr, NULL);
    }

    Oak__Cluster__V1__Command *cmd = oak__cluster__v1__command__unpack(NULL, size, data);
    if (cmd) {
        CHECK(cmd->service_id && cmd->service_json);
        check_repack(&cmd->base);
        oak__cluster__v1__command__free_unpacked(cmd, NULL);
    }
    return 0;
}
