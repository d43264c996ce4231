/* cnnfx report merge OUTDIR: one table from the per-image reports of (sharded) runs.
 *
 * Reads every classify report under OUTDIR (NAME.csv with the header
 * file,rank,index,label,probability, or NAME.json from --format json) and every fool report
 * (NAME.fool.txt), whichever shard or machine wrote it, and writes
 *   OUTDIR/cnnfx-report.csv       classify rows, same columns, sorted by report path and rank;
 *   OUTDIR/cnnfx-fool-report.csv  file,before,before_probability,after,after_probability,linf,iterations,fooled;
 *   OUTDIR/cnnfx-summary.txt      top-1 label counts, fooling success rate, per-shard completeness
 * (each written to a temporary name and renamed), and prints the summary.  The shard lists
 * OUTDIR/.cnnfx-shards/K-of-N.tsv that sharded runs leave say which inputs each shard had; an
 * input without a report or output is listed as missing.  Exit 0; 1 when a report is unreadable
 * or a shard's input has no output; 2 usage error. */
#include "cli.h"
#include "shard.h"
#include <stdio.h>
#include <stdlib.h>

#define CLASSIFY_HEADER "file,rank,index,label,probability"

typedef struct {
  char *report;        /* path relative to OUTDIR */
  char *file;
  int rank, index;
  char *label;
  double prob;
} Row;

typedef struct {
  char *report, *file, *before, *after;
  double before_p, after_p, linf;
  int iterations;
  gboolean fooled;
} FoolRow;

static void row_free(gpointer p)
{
  Row *r = p;
  g_free(r->report);
  g_free(r->file);
  g_free(r->label);
  g_free(r);
}

static void fool_free(gpointer p)
{
  FoolRow *r = p;
  g_free(r->report);
  g_free(r->file);
  g_free(r->before);
  g_free(r->after);
  g_free(r);
}

/* RFC 4180 CSV: rows of fields; quoted fields may hold commas, quotes ("") and newlines. */
static GPtrArray *csv_parse(const char *t)
{
  GPtrArray *rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
  GPtrArray *fields = g_ptr_array_new();
  GString *f = g_string_new(NULL);
  gboolean q = FALSE, any = FALSE;
  for (const char *p = t;; p++) {
    char c = *p;
    if (q) {
      if (!c) break;
      if (c == '"' && p[1] == '"') {
        g_string_append_c(f, '"');
        p++;
      } else if (c == '"') {
        q = FALSE;
      } else {
        g_string_append_c(f, c);
      }
      continue;
    }
    if (c == '"') {
      q = any = TRUE;
    } else if (c == ',') {
      g_ptr_array_add(fields, g_strdup(f->str));
      g_string_truncate(f, 0);
      any = TRUE;
    } else if (c == '\n' || c == '\r' || !c) {
      if (c == '\r' && p[1] == '\n') p++;
      if (any || f->len) {
        g_ptr_array_add(fields, g_strdup(f->str));
        g_ptr_array_add(fields, NULL);
        g_ptr_array_add(rows, g_ptr_array_free(fields, FALSE));
        fields = g_ptr_array_new();
      }
      g_string_truncate(f, 0);
      any = FALSE;
      if (!c) break;
    } else {
      g_string_append_c(f, c);
      any = TRUE;
    }
  }
  g_ptr_array_free(fields, TRUE);
  g_string_free(f, TRUE);
  return rows;
}

static gboolean parse_double(const char *s, double *v)
{
  char *end;
  *v = g_ascii_strtod(s, &end);
  return *s && !*end;
}

static gboolean parse_int(const char *s, int *v)
{
  gint64 x;
  if (!g_ascii_string_to_signed(s, 10, G_MININT32, G_MAXINT32, &x, NULL)) return FALSE;
  *v = (int)x;
  return TRUE;
}

static gboolean read_classify_csv(const char *rel, const char *text, GPtrArray *rows, GError **error)
{
  gsize quotes = 0;
  for (const char *c = text; *c; c++) quotes += *c == '"';
  if (quotes % 2) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "unterminated quoted field");
    return FALSE;
  }
  g_autoptr(GPtrArray) t = csv_parse(text);
  for (guint i = 1; i < t->len; i++) {
    char **f = t->pdata[i];
    Row r = {0};
    if (g_strv_length(f) != 5 || !parse_int(f[1], &r.rank) || !parse_int(f[2], &r.index) ||
        !parse_double(f[4], &r.prob)) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "line %u is not file,rank,index,label,probability", i + 1);
      return FALSE;
    }
    Row *n = g_new(Row, 1);
    *n = r;
    n->report = g_strdup(rel);
    n->file = g_strdup(f[0]);
    n->label = g_strdup(f[3]);
    g_ptr_array_add(rows, n);
  }
  return TRUE;
}

/* The JSON that classify writes: {"file": "...", "model": "...", "top": [{"rank": 1, "index": 3,
 * "label": "...", "prob": 0.5}, ...]} (strings escaped as g_strescape does). */
static gboolean read_classify_json(const char *rel, const char *text, GPtrArray *rows, GError **error)
{
  g_autoptr(GRegex) fre = g_regex_new("\"file\":\\s*\"((?:[^\"\\\\]|\\\\.)*)\"", 0, 0, NULL);
  g_autoptr(GRegex) ere = g_regex_new("\\{\\s*\"rank\":\\s*(\\d+),\\s*\"index\":\\s*(-?\\d+),\\s*\"label\":\\s*"
                                      "\"((?:[^\"\\\\]|\\\\.)*)\",\\s*\"prob\":\\s*([-+0-9.eE]+)\\s*\\}",
                                      0, 0, NULL);
  g_autoptr(GMatchInfo) fm = NULL;
  if (!fre || !ere || !g_regex_match(fre, text, 0, &fm)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "no \"file\" in the JSON report");
    return FALSE;
  }
  g_autofree char *fesc = g_match_info_fetch(fm, 1);
  g_autofree char *file = g_strcompress(fesc);
  g_autoptr(GMatchInfo) m = NULL;
  int n = 0;
  for (g_regex_match(ere, text, 0, &m); g_match_info_matches(m); g_match_info_next(m, NULL)) {
    g_autofree char *rank = g_match_info_fetch(m, 1), *index = g_match_info_fetch(m, 2);
    g_autofree char *lesc = g_match_info_fetch(m, 3), *prob = g_match_info_fetch(m, 4);
    Row r = {0};
    if (!parse_int(rank, &r.rank) || !parse_int(index, &r.index) || !parse_double(prob, &r.prob)) break;
    Row *p = g_new(Row, 1);
    *p = r;
    p->report = g_strdup(rel);
    p->file = g_strdup(file);
    p->label = g_strcompress(lesc);
    g_ptr_array_add(rows, p);
    n++;
  }
  if (!n) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "no top-k entries in the JSON report");
    return FALSE;
  }
  return TRUE;
}

/* "SRC: BEFORE (P%) -> AFTER (P%)[, target ...], L-inf E/255 after 8-bit save, N iterations, fooled" */
static gboolean read_fool(const char *rel, const char *text, GPtrArray *rows, GError **error)
{
  g_autoptr(GRegex) re = g_regex_new("^(.*?): (.*) \\(([0-9.]+)%\\) -> (.*) \\(([0-9.]+)%\\)(?:, target .*)?, "
                                     "L-inf ([0-9.]+)/255 after 8-bit save, (\\d+) iterations, (fooled|not fooled)$",
                                     G_REGEX_MULTILINE, 0, NULL);
  g_autoptr(GMatchInfo) m = NULL;
  if (!re || !g_regex_match(re, text, 0, &m)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "not a fool report line");
    return FALSE;
  }
  g_autofree char *bp = g_match_info_fetch(m, 3), *ap = g_match_info_fetch(m, 5);
  g_autofree char *li = g_match_info_fetch(m, 6), *it = g_match_info_fetch(m, 7), *fo = g_match_info_fetch(m, 8);
  FoolRow *r = g_new0(FoolRow, 1);
  r->report = g_strdup(rel);
  r->file = g_match_info_fetch(m, 1);
  r->before = g_match_info_fetch(m, 2);
  r->after = g_match_info_fetch(m, 4);
  r->before_p = g_ascii_strtod(bp, NULL) / 100;
  r->after_p = g_ascii_strtod(ap, NULL) / 100;
  r->linf = g_ascii_strtod(li, NULL);
  r->iterations = atoi(it);
  r->fooled = !strcmp(fo, "fooled");
  g_ptr_array_add(rows, r);
  return TRUE;
}

static gboolean is_own_output(const char *name)
{
  return g_str_has_prefix(name, "cnnfx-report") || g_str_has_prefix(name, "cnnfx-fool-report") ||
         g_str_has_prefix(name, "cnnfx-summary");
}

/* Relative paths of the report files under dir (hidden entries skipped), recursively. */
static void find_reports(const char *root, const char *dir, GPtrArray *out)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  const char *e;
  while ((e = g_dir_read_name(d))) {
    if (e[0] == '.' || is_own_output(e)) continue;
    g_autofree char *p = g_build_filename(dir, e, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR)) find_reports(root, p, out);
    else if (g_str_has_suffix(e, ".csv") || g_str_has_suffix(e, ".json") || g_str_has_suffix(e, ".fool.txt"))
      g_ptr_array_add(out, g_strdup(p + strlen(root) + (g_str_has_suffix(root, "/") ? 0 : 1)));
  }
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void csv_str(GString *s, const char *t)
{
  g_string_append_c(s, '"');
  for (; *t; t++) {
    if (*t == '"') g_string_append_c(s, '"');
    g_string_append_c(s, *t);
  }
  g_string_append_c(s, '"');
}

static gboolean put(const char *outdir, const char *name, const GString *s, GError **error)
{
  g_autofree char *p = g_build_filename(outdir, name, NULL);
  return g_file_set_contents(p, s->str, (gssize)s->len, error); /* temporary file + rename */
}

typedef struct {
  const char *label;
  int n;
} Count;

static gint count_cmp(gconstpointer a, gconstpointer b)
{
  const Count *x = a, *y = b;
  return x->n != y->n ? y->n - x->n : strcmp(x->label, y->label);
}

/* An input is done when any of its outputs exists: NAME.csv / NAME.json (classify),
 * NAME.fool.txt (fool) or the mirrored image itself (dream, style, visualize, fool). */
static gboolean input_done(const char *outdir, const char *rel)
{
  g_autofree char *stem = g_strdup(rel);
  char *dot = strrchr(stem, '.'), *slash = strrchr(stem, '/');
  if (dot && (!slash || dot > slash)) *dot = 0;
  static const char *const ext[] = {".csv", ".json", ".fool.txt", ".png", NULL};
  g_autofree char *same = g_build_filename(outdir, rel, NULL);
  if (g_file_test(same, G_FILE_TEST_EXISTS)) return TRUE;
  for (int i = 0; ext[i]; i++) {
    g_autofree char *n = g_strconcat(stem, ext[i], NULL);
    g_autofree char *p = g_build_filename(outdir, n, NULL);
    if (g_file_test(p, G_FILE_TEST_EXISTS)) return TRUE;
  }
  return FALSE;
}

/* Per-shard lines from OUTDIR/.cnnfx-shards/K-of-N.tsv; counts missing inputs. */
static int check_shards(const char *outdir, GString *sum, gboolean quiet)
{
  g_autofree char *dir = g_build_filename(outdir, CLI_SHARD_DIR, NULL);
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return 0;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *e;
  while ((e = g_dir_read_name(d)))
    if (g_str_has_suffix(e, ".tsv") && e[0] != '.') g_ptr_array_add(names, g_strdup(e));
  g_ptr_array_sort(names, str_cmp);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  int missing = 0;
  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    int k = 0, n = 0;
    if (sscanf(name, "%d-of-%d.tsv", &k, &n) != 2) continue;
    g_autofree char *p = g_build_filename(dir, name, NULL);
    g_autofree char *text = NULL;
    if (!g_file_get_contents(p, &text, NULL, NULL)) continue;
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    int total = 0, done = 0;
    for (char **l = lines; *l; l++) {
      if (!**l || **l == '#') continue;
      g_autofree char *rel = g_strcompress(*l);
      total++;
      if (input_done(outdir, rel)) done++;
      else {
        missing++;
        if (!quiet) fprintf(stderr, "%s: no output (shard %d/%d)\n", rel, k, n);
      }
      /* the same input in two shards of one split would be processed twice */
      g_autofree char *key = g_strdup_printf("%d\t%s", n, rel);
      const char *other = g_hash_table_lookup(seen, key);
      if (other)
        g_string_append_printf(sum, "warning: %s is in shard %d/%d and in %s\n", rel, k, n, other);
      else
        g_hash_table_insert(seen, g_steal_pointer(&key), g_strdup_printf("%d/%d", k, n));
    }
    g_string_append_printf(sum, "shard %d/%d: %d inputs, %d done, %d missing\n", k, n, total, done, total - done);
  }
  return missing;
}

static int report_merge(const char *outdir, gboolean quiet)
{
  if (!g_file_test(outdir, G_FILE_TEST_IS_DIR)) {
    fprintf(stderr, "cnnfx report merge: %s is not a folder\n", outdir);
    return 2;
  }
  g_autoptr(GPtrArray) files = g_ptr_array_new_with_free_func(g_free);
  find_reports(outdir, outdir, files);
  g_ptr_array_sort(files, str_cmp);
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func(row_free);
  g_autoptr(GPtrArray) fools = g_ptr_array_new_with_free_func(fool_free);
  int bad = 0, n_classify = 0;
  for (guint i = 0; i < files->len; i++) {
    const char *rel = files->pdata[i];
    g_autofree char *p = g_build_filename(outdir, rel, NULL);
    g_autofree char *text = NULL;
    g_autoptr(GError) err = NULL;
    gboolean ok = g_file_get_contents(p, &text, NULL, &err);
    if (ok && g_str_has_suffix(rel, ".fool.txt")) {
      ok = read_fool(rel, text, fools, &err);
    } else if (ok && g_str_has_suffix(rel, ".csv")) {
      if (!g_str_has_prefix(text, CLASSIFY_HEADER "\n") && !g_str_has_prefix(text, CLASSIFY_HEADER "\r\n"))
        continue; /* some other CSV */
      ok = read_classify_csv(rel, text, rows, &err);
      n_classify += ok;
    } else if (ok) { /* .json */
      if (!strstr(text, "\"top\"")) continue;
      ok = read_classify_json(rel, text, rows, &err);
      n_classify += ok;
    }
    if (!ok) {
      bad++;
      fprintf(stderr, "%s: %s\n", p, err ? err->message : "unreadable");
    }
  }
  g_autoptr(GString) sum = g_string_new(NULL);
  g_autoptr(GError) err = NULL;
  if (n_classify) {
    g_autoptr(GString) t = g_string_new(CLASSIFY_HEADER "\n");
    g_autoptr(GHashTable) counts = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < rows->len; i++) {
      const Row *r = rows->pdata[i];
      csv_str(t, r->file);
      g_string_append_printf(t, ",%d,%d,", r->rank, r->index);
      csv_str(t, r->label);
      g_string_append_printf(t, ",%.6f\n", r->prob);
      if (r->rank == 1)
        g_hash_table_insert(counts, r->label, GINT_TO_POINTER(GPOINTER_TO_INT(g_hash_table_lookup(counts, r->label)) + 1));
    }
    if (!put(outdir, "cnnfx-report.csv", t, &err)) goto fail;
    g_autoptr(GArray) c = g_array_new(FALSE, FALSE, sizeof(Count));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, counts);
    while (g_hash_table_iter_next(&it, &k, &v)) {
      Count x = {k, GPOINTER_TO_INT(v)};
      g_array_append_val(c, x);
    }
    g_array_sort(c, count_cmp);
    g_string_append_printf(sum, "classify: %d images, %u rows -> cnnfx-report.csv\ntop-1 label counts:\n", n_classify,
                           rows->len);
    for (guint i = 0; i < c->len; i++) {
      const Count *x = &g_array_index(c, Count, i);
      g_string_append_printf(sum, "  %6d  %s\n", x->n, x->label);
    }
  }
  if (fools->len) {
    g_autoptr(GString) t = g_string_new("file,before,before_probability,after,after_probability,linf,iterations,fooled\n");
    int fooled = 0;
    for (guint i = 0; i < fools->len; i++) {
      const FoolRow *r = fools->pdata[i];
      csv_str(t, r->file);
      g_string_append_c(t, ',');
      csv_str(t, r->before);
      g_string_append_printf(t, ",%.3f,", r->before_p);
      csv_str(t, r->after);
      g_string_append_printf(t, ",%.3f,%g,%d,%s\n", r->after_p, r->linf, r->iterations, r->fooled ? "yes" : "no");
      fooled += r->fooled;
    }
    if (!put(outdir, "cnnfx-fool-report.csv", t, &err)) goto fail;
    g_string_append_printf(sum, "fool: %u images, %d fooled, success rate %.1f%% -> cnnfx-fool-report.csv\n",
                           fools->len, fooled, 100.0 * fooled / fools->len);
  }
  int missing = check_shards(outdir, sum, quiet);
  if (!n_classify && !fools->len) g_string_append(sum, "no classify or fool reports found\n");
  if (bad) g_string_append_printf(sum, "%d unreadable reports\n", bad);
  if (!put(outdir, "cnnfx-summary.txt", sum, &err)) goto fail;
  fputs(sum->str, stdout);
  return bad || missing ? 1 : 0;
fail:
  fprintf(stderr, "cnnfx report merge: %s\n", err->message);
  return 1;
}

int cmd_report(int argc, char **argv)
{
  gboolean quiet = FALSE;
  GOptionEntry entries[] = {
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Do not list inputs without output", NULL},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv,
                 "merge OUTDIR — combine the per-image classify/fool reports (of every shard) into "
                 "cnnfx-report.csv, cnnfx-fool-report.csv and cnnfx-summary.txt",
                 entries))
    return 2;
  if (argc != 3 || strcmp(argv[1], "merge")) return cli_usage_error("usage: cnnfx report merge OUTDIR");
  return report_merge(argv[2], quiet);
}
