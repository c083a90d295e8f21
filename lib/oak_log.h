/* One logging module: timestamp + daemon + level on each line, optional JSON
 * lines. The level is tested before formatting. Thread-safe: each line is
 * written with one write(2). */
#ifndef OAK_LOG_H
#define OAK_LOG_H

#include <stdbool.h>

typedef enum { OAK_LOG_ERROR = 0, OAK_LOG_WARN, OAK_LOG_INFO, OAK_LOG_DEBUG } oak_log_level_t;

extern oak_log_level_t oak_log_level;

/* Sets the daemon name shown on each line, the level and the format. */
void oak_log_init(const char *daemon, oak_log_level_t level, bool json);
/* Parses "error|warn|info|debug"; returns -1 if unknown. */
int oak_log_level_parse(const char *s, oak_log_level_t *out);
void oak_log_write(oak_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define OAK_LOG(lvl, ...)                                                                          \
    do {                                                                                           \
        if ((lvl) <= oak_log_level)                                                                \
            oak_log_write((lvl), __VA_ARGS__);                                                     \
    } while (0)
#define log_error(...) OAK_LOG(OAK_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  OAK_LOG(OAK_LOG_WARN, __VA_ARGS__)
#define log_info(...)  OAK_LOG(OAK_LOG_INFO, __VA_ARGS__)
#define log_debug(...) OAK_LOG(OAK_LOG_DEBUG, __VA_ARGS__)

#endif
