/* What a worker tells its cluster about itself (the "information" payload
 * of docs/worker-protocol.md and the registration body): cpu cores and
 * utilisation from /proc/stat deltas, load from /proc/loadavg, memory from
 * /proc/meminfo, disk usage of the state directory's filesystem, the
 * machine architecture as a GOARCH name, the kernel version and the
 * virtualizations this worker supports. The parsers take text so they can
 * be tested without /proc. Not thread-safe per sampler; pure otherwise. */
#ifndef NODEINFO_H
#define NODEINFO_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/oak_err.h"

/* Relative change of a numeric value that makes it worth reporting. */
#define NODEINFO_CHANGE 0.05

typedef struct {
    int cpu_cores;
    double cpu_percent; /* summed over cores: 0 .. 100 x cpu_cores */
    double load1;
    long long memory_mb; /* available */
    long long memory_total_mb;
    double disk_percent; /* used, of the state directory's filesystem */
    int gpus;
    char architecture[32];    /* "amd64", "arm64", ... */
    char kernel_version[129]; /* uname -r */
    char os_version[129];     /* PRETTY_NAME of /etc/os-release, or "" */
    bool container;           /* runc was found: "container" is supported */
} nodeinfo_t;

/* Remembers the previous /proc/stat sample so cpu_percent is the average
 * since the last call. Zero-initialise. */
typedef struct {
    uint64_t busy, total;
    bool have;
    /* the operator's share of the machine (0: all of it); see nodeinfo_limit */
    int max_cores;
    long long max_memory_mb;
} nodeinfo_sampler_t;

/* Parses the aggregate "cpu" line of /proc/stat text into busy and total
 * jiffies (busy excludes idle and iowait). -1 when there is no such line. */
int nodeinfo_parse_stat(const char *text, uint64_t *busy, uint64_t *total);
/* Parses MemAvailable (falling back to MemFree+Buffers+Cached) and MemTotal
 * of /proc/meminfo text, in MB. -1 when MemTotal is missing. */
int nodeinfo_parse_meminfo(const char *text, long long *avail_mb, long long *total_mb);
/* The GOARCH name of a uname machine string ("x86_64" -> "amd64",
 * "aarch64" -> "arm64", "armv7l" -> "arm", ...); unknown machines are
 * lowercased with characters outside [a-z0-9_] turned into '_'. Writes at
 * most len bytes including the NUL. */
void nodeinfo_arch(const char *machine, char *out, size_t len);

/* Samples the machine: disk_path names a directory on the filesystem to
 * report (the state directory), runc_path the runtime binary ("runc" is
 * looked up in PATH). cpu_percent is the average since the sampler's
 * previous call (0 on the first). Errors: OAK_E_IO when /proc cannot be
 * read. */
int nodeinfo_read(nodeinfo_sampler_t *s, const char *disk_path, const char *runc_path,
                  nodeinfo_t *out, oak_err_t *err);

/* Limits i to max_cores cores (cpu_percent scaled by the same share, so the
 * busy fraction is kept) and max_memory_mb MB (the total, and the available
 * memory at most that); 0 leaves a figure alone. nodeinfo_read applies the
 * sampler's limits. */
void nodeinfo_limit(nodeinfo_t *i, int max_cores, long long max_memory_mb);

/* The full information report of i (wp_build_information); new reference. */
json_t *nodeinfo_json(const nodeinfo_t *i);
/* The members of cur that differ from prev: numbers by more than
 * NODEINFO_CHANGE relative to prev (any change when `all`), strings and
 * counts on any change. Returns a new object, empty when nothing changed. */
json_t *nodeinfo_diff(const nodeinfo_t *prev, const nodeinfo_t *cur, bool all);

#endif
