/* File-system helpers. */
#include "lib/oak_fs.h"

#include <errno.h>
#include <sys/stat.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

int oak_mkdir_p(const char *path, mode_t mode, oak_err_t *err)
{
    _cleanup_free_ char *p = xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return oak_err_errno(err, errno, "cannot create %s", p);
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return oak_err_errno(err, errno, "cannot create %s", p);
    return 0;
}
