/* Node information (see nodeinfo.h): reads /proc/stat, /proc/loadavg,
 * /proc/meminfo, statvfs of the state directory, uname and /etc/os-release.
 * Called on the loop thread (the reads are small procfs files); the
 * sampler holds the previous cpu counters. */
#include "node_engine/nodeinfo.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cluster_orchestrator/worker_proto.h"
#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

int nodeinfo_parse_stat(const char *text, uint64_t *busy, uint64_t *total)
{
    const char *l = text;
    while (l && strncmp(l, "cpu ", 4) != 0) {
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    if (!l)
        return -1;
    /* user nice system idle iowait irq softirq steal (guest counted in user) */
    unsigned long long v[8] = {0};
    int n = sscanf(l + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    if (n < 4)
        return -1;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t += v[i];
    *total = t;
    *busy = t - v[3] - v[4];
    return 0;
}

static bool meminfo_field(const char *text, const char *name, long long *kb)
{
    size_t nl = strlen(name);
    for (const char *l = text; l && *l;) {
        if (strncmp(l, name, nl) == 0 && l[nl] == ':') {
            *kb = strtoll(l + nl + 1, NULL, 10);
            return true;
        }
        l = strchr(l, '\n');
        if (l)
            l++;
    }
    return false;
}

int nodeinfo_parse_meminfo(const char *text, long long *avail_mb, long long *total_mb)
{
    long long total = 0, avail = 0, v = 0;
    if (!meminfo_field(text, "MemTotal", &total))
        return -1;
    if (!meminfo_field(text, "MemAvailable", &avail)) {
        avail = 0;
        if (meminfo_field(text, "MemFree", &v))
            avail += v;
        if (meminfo_field(text, "Buffers", &v))
            avail += v;
        if (meminfo_field(text, "Cached", &v))
            avail += v;
    }
    if (avail > total)
        avail = total;
    *total_mb = total / 1024;
    *avail_mb = avail / 1024;
    return 0;
}

void nodeinfo_arch(const char *machine, char *out, size_t len)
{
    static const struct {
        const char *machine, *goarch;
    } map[] = {
        {"x86_64", "amd64"},    {"amd64", "amd64"},
        {"aarch64", "arm64"},   {"arm64", "arm64"},
        {"armv7l", "arm"},      {"armv6l", "arm"},
        {"armv8l", "arm"},      {"i386", "386"},
        {"i686", "386"},        {"riscv64", "riscv64"},
        {"ppc64le", "ppc64le"}, {"s390x", "s390x"},
        {"mips64", "mips64"},   {"loongarch64", "loong64"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(machine, map[i].machine) == 0) {
            snprintf(out, len, "%s", map[i].goarch);
            return;
        }
    size_t k = 0;
    for (const char *s = machine; *s && k + 1 < len; s++) {
        char c = (char)tolower((unsigned char)*s);
        out[k++] = (isalnum((unsigned char)c) || c == '_') ? c : '_';
    }
    if (k == 0 && len > 1)
        out[k++] = '_';
    out[k] = 0;
}

static char *read_small(const char *path)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    char *buf = xmalloc(65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    return buf;
}

/* True when an executable named prog is found (a path, or in PATH). */
static bool have_binary(const char *prog)
{
    if (!prog || !*prog)
        return false;
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    _cleanup_free_ char *p = xstrdup(path && *path ? path
                                                   : "/usr/local/sbin:/usr/local/bin:"
                                                     "/usr/sbin:/usr/bin:/sbin:/bin");
    char *save = NULL;
    for (char *d = strtok_r(p, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        _cleanup_free_ char *f = xasprintf("%s/%s", d, prog);
        if (access(f, X_OK) == 0)
            return true;
    }
    return false;
}

static void os_version(char *out, size_t len)
{
    _cleanup_free_ char *t = read_small("/etc/os-release");
    out[0] = 0;
    if (!t)
        return;
    char *l = strstr(t, "PRETTY_NAME=");
    if (!l || (l != t && l[-1] != '\n'))
        return;
    l += strlen("PRETTY_NAME=");
    if (*l == '"')
        l++;
    size_t k = 0;
    for (; *l && *l != '"' && *l != '\n' && k + 1 < len; l++)
        if (isprint((unsigned char)*l))
            out[k++] = *l;
    out[k] = 0;
}

int nodeinfo_read(nodeinfo_sampler_t *s, const char *disk_path, const char *runc_path,
                  nodeinfo_t *out, oak_err_t *err)
{
    memset(out, 0, sizeof(*out));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    out->cpu_cores = cores < 1 ? 1 : cores > WP_MAX_CORES ? WP_MAX_CORES : (int)cores;

    _cleanup_free_ char *stat = read_small("/proc/stat");
    uint64_t busy, total;
    if (!stat || nodeinfo_parse_stat(stat, &busy, &total) < 0)
        return oak_err_set(err, OAK_E_IO, "cannot read /proc/stat");
    if (s->have && total > s->total) {
        double b = (double)(busy >= s->busy ? busy - s->busy : 0);
        out->cpu_percent = 100.0 * out->cpu_cores * b / (double)(total - s->total);
        if (out->cpu_percent > 100.0 * out->cpu_cores)
            out->cpu_percent = 100.0 * out->cpu_cores;
    }
    s->busy = busy;
    s->total = total;
    s->have = true;

    _cleanup_free_ char *mem = read_small("/proc/meminfo");
    if (!mem || nodeinfo_parse_meminfo(mem, &out->memory_mb, &out->memory_total_mb) < 0)
        return oak_err_set(err, OAK_E_IO, "cannot read /proc/meminfo");

    _cleanup_free_ char *load = read_small("/proc/loadavg");
    if (load) {
        out->load1 = strtod(load, NULL);
        if (!isfinite(out->load1) || out->load1 < 0)
            out->load1 = 0;
        if (out->load1 > WP_MAX_LOAD)
            out->load1 = WP_MAX_LOAD;
    }

    struct statvfs vfs;
    if (disk_path && statvfs(disk_path, &vfs) == 0 && vfs.f_blocks > 0) {
        double used = (double)(vfs.f_blocks - vfs.f_bfree);
        double avail = used + (double)vfs.f_bavail; /* what non-root users see, as df */
        out->disk_percent = avail > 0 ? 100.0 * used / avail : 0;
        if (out->disk_percent > 100)
            out->disk_percent = 100;
    }

    struct utsname u;
    if (uname(&u) == 0) {
        nodeinfo_arch(u.machine, out->architecture, sizeof(out->architecture));
        size_t k = 0;
        for (const char *c = u.release; *c && k + 1 < sizeof(out->kernel_version); c++)
            if (*c >= 0x20 && *c < 0x7f)
                out->kernel_version[k++] = *c;
        out->kernel_version[k] = 0;
    }
    if (!out->architecture[0])
        snprintf(out->architecture, sizeof(out->architecture), "unknown");
    if (!out->kernel_version[0])
        snprintf(out->kernel_version, sizeof(out->kernel_version), "unknown");
    os_version(out->os_version, sizeof(out->os_version));
    out->gpus = 0;
    out->container = have_binary(runc_path ? runc_path : "runc");
    nodeinfo_limit(out, s->max_cores, s->max_memory_mb);
    return 0;
}

void nodeinfo_limit(nodeinfo_t *i, int max_cores, long long max_memory_mb)
{
    if (max_cores > 0 && max_cores < i->cpu_cores) {
        i->cpu_percent = i->cpu_percent * max_cores / i->cpu_cores;
        i->cpu_cores = max_cores;
    }
    if (max_memory_mb > 0 && max_memory_mb < i->memory_total_mb) {
        i->memory_total_mb = max_memory_mb;
        if (i->memory_mb > max_memory_mb)
            i->memory_mb = max_memory_mb;
    }
}

static const char *const container_virt[] = {"container"};

json_t *nodeinfo_json(const nodeinfo_t *i)
{
    wp_info_t w = {.cpu_cores = i->cpu_cores,
                   .cpu_percent = i->cpu_percent,
                   .memory_mb = i->memory_mb,
                   .memory_total_mb = i->memory_total_mb,
                   .disk_percent = i->disk_percent,
                   .gpus = i->gpus,
                   .load1 = i->load1,
                   .architecture = i->architecture,
                   .virt = i->container ? container_virt : NULL,
                   .nvirt = i->container ? 1 : 0,
                   .kernel_version = i->kernel_version};
    return wp_build_information(&w);
}

/* Whether b differs from a by more than NODEINFO_CHANGE of max(|a|, floor):
 * the floor keeps values near zero from reporting every flicker. */
static bool changed(double a, double b, double floor, bool all)
{
    if (all)
        return a != b;
    double base = fabs(a) > floor ? fabs(a) : floor;
    return fabs(b - a) > NODEINFO_CHANGE * base;
}

json_t *nodeinfo_diff(const nodeinfo_t *prev, const nodeinfo_t *cur, bool all)
{
    json_t *full = nodeinfo_json(cur);
    json_t *d = json_object();
    const struct {
        const char *key;
        double a, b, floor;
    } nums[] = {
        {"cpu_percent", prev->cpu_percent, cur->cpu_percent, 100.0},
        {"load1", prev->load1, cur->load1, 1.0},
        {"memory", (double)prev->memory_mb, (double)cur->memory_mb, 64.0},
        {"disk_percent", prev->disk_percent, cur->disk_percent, 10.0},
    };
    for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
        if (changed(nums[k].a, nums[k].b, nums[k].floor, all))
            json_object_set(d, nums[k].key, json_object_get(full, nums[k].key));
    if (prev->cpu_cores != cur->cpu_cores) {
        json_object_set(d, "cpu_cores", json_object_get(full, "cpu_cores"));
        json_object_set(d, "cpu_percent", json_object_get(full, "cpu_percent"));
    }
    if (prev->memory_total_mb != cur->memory_total_mb) {
        json_object_set(d, "memory_total", json_object_get(full, "memory_total"));
        json_object_set(d, "memory", json_object_get(full, "memory"));
    }
    if (prev->gpus != cur->gpus)
        json_object_set(d, "gpus", json_object_get(full, "gpus"));
    if (strcmp(prev->architecture, cur->architecture) != 0)
        json_object_set(d, "architecture", json_object_get(full, "architecture"));
    if (strcmp(prev->kernel_version, cur->kernel_version) != 0)
        json_object_set(d, "kernel_version", json_object_get(full, "kernel_version"));
    if (prev->container != cur->container)
        json_object_set(d, "virtualization", json_object_get(full, "virtualization"));
    json_decref(full);
    return d;
}
