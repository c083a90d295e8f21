/* Aligned text tables for oakctl's human-readable output, and the small
 * value formatters the tables use. */
#ifndef CLI_TABLE_H
#define CLI_TABLE_H

#include <jansson.h>
#include <stdio.h>

typedef struct cli_table cli_table_t;

/* A table with the given column headers (NULL-terminated, copied). */
cli_table_t *cli_table_new(const char *const *headers);
/* Appends a row; cells are copied, NULL prints as "-". Extra cells beyond
 * the columns are ignored, missing ones print as "-". */
void cli_table_add(cli_table_t *t, const char *const *cells, size_t ncells);
/* Prints the header and the rows with columns padded to their widest
 * cell, separated by three spaces; the last column is not padded. */
void cli_table_print(const cli_table_t *t, FILE *out);
void cli_table_free(cli_table_t *t);

/* Text of a JSON scalar member of o (string, integer, real with up to one
 * decimal, boolean) in buf; "-" when missing or null. Returns buf. */
const char *cli_fmt(const json_t *o, const char *key, char *buf, size_t len);
/* "5s ago", "3m ago", "2h ago", "4d ago" for a wall-clock time in seconds
 * since the epoch (number member key of o); "-" when missing or 0. */
const char *cli_fmt_ago(const json_t *o, const char *key, char *buf, size_t len);

#endif
