/* JSON helpers. Pure functions, thread-safe. */
#include "lib/oak_json.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/oak_alloc.h"
#include "lib/oak_cleanup.h"

int oak_json_parse(const char *buf, size_t len, size_t max, json_t **out, oak_err_t *err)
{
    json_error_t jerr;
    if (max > 0 && len > max)
        return oak_err_set(err, OAK_E_TOO_LARGE, "body of %zu bytes exceeds the limit of %zu bytes",
                           len, max);
    if (!buf || len == 0)
        return oak_err_set(err, OAK_E_INVALID, "body is empty: a JSON document is expected");
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!j)
        return oak_err_set(err, OAK_E_INVALID, "invalid JSON at line %d column %d: %s", jerr.line,
                           jerr.column, jerr.text);
    *out = j;
    return 0;
}

int oak_json_parse_object(const char *buf, size_t len, size_t max, json_t **out, oak_err_t *err)
{
    json_t *j = NULL;
    if (oak_json_parse(buf, len, max, &j, err) < 0)
        return -1;
    if (!json_is_object(j)) {
        json_decref(j);
        return oak_err_set(err, OAK_E_INVALID, "a JSON object is expected");
    }
    *out = j;
    return 0;
}

int oak_json_load_file(const char *path, size_t max, json_t **out, oak_err_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return oak_err_errno(err, errno, "cannot open %s", path);
    if (fstat(fd, &st) < 0)
        return oak_err_errno(err, errno, "cannot stat %s", path);
    if (max > 0 && (size_t)st.st_size > max)
        return oak_err_set(err, OAK_E_TOO_LARGE, "%s: %lld bytes exceeds the limit of %zu", path,
                           (long long)st.st_size, max);
    _cleanup_free_ char *buf = xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return oak_err_errno(err, errno, "cannot read %s", path);
        if (r == 0)
            break;
        got += (size_t)r;
    }
    if (oak_json_parse(buf, got, max, out, err) < 0) {
        if (!err)
            return -1;
        char m[sizeof(err->msg)];
        snprintf(m, sizeof(m), "%s: %s", path, err->msg);
        snprintf(err->msg, sizeof(err->msg), "%s", m);
        return -1;
    }
    return 0;
}

const char *oak_json_str(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

long long oak_json_int(const json_t *o, const char *key, long long def)
{
    json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        /* range check first: converting an out-of-range double is undefined */
        if (d >= -0x1p63 && d < 0x1p63 && d == (double)(long long)d)
            return (long long)d;
    }
    return def;
}

double oak_json_num(const json_t *o, const char *key, double def)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

bool oak_json_bool(const json_t *o, const char *key, bool def)
{
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

char *oak_json_dump(const json_t *o)
{
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    return s ? s : xstrdup("null");
}

int oak_json_save_file(const char *path, const json_t *o, int mode, oak_err_t *err)
{
    _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    _cleanup_free_ char *s = json_dumps(o, JSON_INDENT(2));
    if (!s)
        return oak_err_set(err, OAK_E_INTERNAL, "cannot serialise JSON for %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return oak_err_errno(err, errno, "cannot create %s", tmp);
    /* exactly mode: not narrowed by the umask, not the mode of a stale temp file */
    if (fchmod(fd, (mode_t)mode) < 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return oak_err_errno(err, e, "cannot chmod %s", tmp);
    }
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t w = write(fd, s + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return oak_err_errno(err, e, "cannot write %s", tmp);
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        int e = errno;
        unlink(tmp);
        return oak_err_errno(err, e, "cannot sync %s", tmp);
    }
    if (rename(tmp, path) < 0) {
        int e = errno;
        unlink(tmp);
        return oak_err_errno(err, e, "cannot rename %s to %s", tmp, path);
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if ((c & 0xE0) == 0xC0)
        len = 2, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0)
        len = 3, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0)
        len = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return len;
}

json_t *oak_json_string_lossy(const char *data, size_t len)
{
    const unsigned char *s = (const unsigned char *)(data ? data : "");
    char *out = xmalloc(len * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (k == 0) { /* U+FFFD */
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
            i++;
        } else {
            memcpy(out + o, s + i, k);
            o += k;
            i += k;
        }
    }
    json_t *j = json_stringn(out, o);
    free(out);
    return j;
}
