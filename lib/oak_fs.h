/* File-system helpers (thread-safe). */
#ifndef OAK_FS_H
#define OAK_FS_H

#include <sys/types.h>

#include "lib/oak_err.h"

/* Creates path and its missing parents with mode (existing directories are
 * left as they are). Errors: OAK_E_IO naming the directory. */
int oak_mkdir_p(const char *path, mode_t mode, oak_err_t *err);

#endif
