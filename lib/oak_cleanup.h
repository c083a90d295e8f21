/* __attribute__((cleanup)) helpers for owned resources. Transfer ownership
 * out of a cleanup variable with `*out = p; p = NULL;`. jansson's own
 * `json_auto_t` is used for json_t. */
#ifndef OAK_CLEANUP_H
#define OAK_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

static inline void oak_freep(void *p)
{
    free(*(void **)p);
}
static inline void oak_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void oak_fclosep(FILE **f)
{
    if (*f)
        fclose(*f);
}

#define _cleanup_(f)     __attribute__((cleanup(f)))
#define _cleanup_free_   _cleanup_(oak_freep)
#define _cleanup_close_  _cleanup_(oak_closep)
#define _cleanup_fclose_ _cleanup_(oak_fclosep)

/* Steal a pointer from a cleanup variable. */
#define oak_steal(pp)                                                                              \
    ({                                                                                             \
        __typeof__(*(pp)) _p = *(pp);                                                              \
        *(pp) = NULL;                                                                              \
        _p;                                                                                        \
    })

#endif
