/* Aligned text tables (see cli_table.h). Widths are counted in code
 * points of the UTF-8 text, which is what a terminal shows for the names
 * and statuses oak uses. Control characters in cells (newlines of a
 * status_detail) are shown as spaces so a row stays one line. */
#include "cli/cli_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/oak_alloc.h"

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows+1 rows (the header first) of ncols cells */
};

static char *clean_copy(const char *s)
{
    char *c = xstrdup(s ? s : "-");
    for (char *p = c; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return c;
}

static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            w++;
    return w;
}

cli_table_t *cli_table_new(const char *const *headers)
{
    cli_table_t *t = xcalloc(1, sizeof(*t));
    while (headers[t->ncols])
        t->ncols++;
    t->cap = 8;
    t->cells = xcalloc(t->cap * t->ncols, sizeof(char *));
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[i] = xstrdup(headers[i]);
    return t;
}

void cli_table_add(cli_table_t *t, const char *const *cells, size_t ncells)
{
    size_t rows = t->nrows + 1;
    if (rows + 1 > t->cap) {
        t->cap *= 2;
        t->cells = xrealloc(t->cells, t->cap * t->ncols * sizeof(char *));
    }
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[rows * t->ncols + i] = clean_copy(i < ncells ? cells[i] : NULL);
    t->nrows++;
}

void cli_table_print(const cli_table_t *t, FILE *out)
{
    size_t *w = xcalloc(t->ncols, sizeof(size_t));
    for (size_t r = 0; r <= t->nrows; r++)
        for (size_t i = 0; i < t->ncols; i++) {
            size_t n = width(t->cells[r * t->ncols + i]);
            if (n > w[i])
                w[i] = n;
        }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t i = 0; i < t->ncols; i++) {
            const char *s = t->cells[r * t->ncols + i];
            fputs(s, out);
            if (i + 1 < t->ncols)
                fprintf(out, "%*s", (int)(w[i] - width(s) + 3), "");
        }
        fputc('\n', out);
    }
    free(w);
}

void cli_table_free(cli_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

const char *cli_fmt(const json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(o, key);
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_STRING:
        snprintf(buf, len, "%s", *json_string_value(v) ? json_string_value(v) : "-");
        break;
    case JSON_INTEGER:
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(buf, len, "%.0f", d);
        else
            snprintf(buf, len, "%.1f", d);
        break;
    }
    case JSON_TRUE:
        snprintf(buf, len, "yes");
        break;
    case JSON_FALSE:
        snprintf(buf, len, "no");
        break;
    default:
        snprintf(buf, len, "-");
    }
    return buf;
}

const char *cli_fmt_ago(const json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(o, key);
    double t = json_is_number(v) ? json_number_value(v) : 0;
    if (t <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    double d = (double)time(NULL) - t;
    if (d < 0)
        d = 0;
    if (d < 120)
        snprintf(buf, len, "%.0fs ago", d);
    else if (d < 7200)
        snprintf(buf, len, "%.0fm ago", d / 60);
    else if (d < 172800)
        snprintf(buf, len, "%.0fh ago", d / 3600);
    else
        snprintf(buf, len, "%.0fd ago", d / 86400);
    return buf;
}
