/* Allocation helpers that abort on out-of-memory, so callers carry no NULL
 * checks for it. Thread-safe (thin wrappers over libc). */
#ifndef OAK_ALLOC_H
#define OAK_ALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string owned by the caller. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
