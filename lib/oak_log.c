/* Logging to stderr. Each line is formatted into a stack buffer and emitted
 * with a single write(2), so lines from library threads never interleave. */
#include "lib/oak_log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

oak_log_level_t oak_log_level = OAK_LOG_INFO;
static char log_daemon[32] = "oak";
static bool log_json;
static const char *level_names[] = {"error", "warn", "info", "debug"};

void oak_log_init(const char *daemon, oak_log_level_t level, bool json)
{
    snprintf(log_daemon, sizeof(log_daemon), "%s", daemon);
    oak_log_level = level;
    log_json = json;
}

int oak_log_level_parse(const char *s, oak_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (oak_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void oak_log_write(oak_log_level_t level, const char *fmt, ...)
{
    char msg[2048], line[4096], ts[40];
    struct timespec now;
    struct tm tm;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    int len;
    if (log_json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "daemon", log_daemon, "level",
                              level_names[level], "msg", msg);
        char *s = json_dumps(o, JSON_COMPACT);
        len = snprintf(line, sizeof(line), "%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        len = snprintf(line, sizeof(line), "%s %s %-5s %s\n", ts, log_daemon, level_names[level],
                       msg);
    }
    if (len > (int)sizeof(line) - 1)
        len = sizeof(line) - 1;
    if (write(STDERR_FILENO, line, (size_t)len) < 0) {
        /* nothing sensible to do */
    }
}
