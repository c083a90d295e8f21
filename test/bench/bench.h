/* Helpers shared by the benchmark programs of test/bench/ (header only:
 * the Makefile builds every test/bench/<name>.c into its own binary): the
 * machine-readable result lines that test/bench/run.sh collects into
 * docs/benchmarks.md, per-process CPU time and RSS from /proc, and
 * quantiles of sorted samples. Single-threaded use. */
#ifndef TEST_BENCH_BENCH_H
#define TEST_BENCH_BENCH_H

#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* Prints "RESULT <key> <value> <unit>" on stdout and flushes it. key is
 * [a-z0-9_], unique in a whole `make bench` run (run.sh looks results up
 * by key); unit one word (us, ms, s, kB, percent, count, per_s, B). The
 * value is printed with up to 3 decimals, trailing zeros dropped. */
static inline void bench_result(const char *key, double value, const char *unit)
{
    char v[64];
    snprintf(v, sizeof(v), "%.3f", value);
    char *e = v + strlen(v);
    while (e > v && e[-1] == '0')
        *--e = 0;
    if (e > v && e[-1] == '.')
        *--e = 0;
    printf("RESULT %s %s %s\n", key, v, unit);
    fflush(stdout);
}

/* utime + stime of process pid (all its threads) in clock ticks
 * (sysconf(_SC_CLK_TCK) per second), or -1 when it cannot be read. */
static inline long long bench_cpu_ticks(pid_t pid)
{
    char path[64], s[1024] = "";
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *got = fgets(s, sizeof(s), f);
    fclose(f);
    /* the command name may hold spaces: fields count from the last ')' */
    const char *p = got ? strrchr(s, ')') : NULL;
    unsigned long long ut, st;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* VmRSS of process pid in kB (-1 when unknown); *anon and *file (either
 * may be NULL) get its anonymous and file-backed parts (RssAnon, RssFile;
 * shared libraries are most of the latter), -1 when unknown. */
static inline long bench_rss_kb(pid_t pid, long *anon, long *file)
{
    char path[64], line[256];
    long kb = -1, a = -1, fl = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) != 1 && sscanf(line, "RssAnon: %ld kB", &a) != 1)
            sscanf(line, "RssFile: %ld kB", &fl);
    if (f)
        fclose(f);
    if (anon)
        *anon = a;
    if (file)
        *file = fl;
    return kb;
}

/* qsort comparator for doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile (nearest rank: the smallest value with at least q * n
 * values at or below it) of the n >= 1 ascending values v. */
static inline double bench_quantile(const double *v, int n, double q)
{
    int k = (int)(q * n + 0.999999) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

#endif
