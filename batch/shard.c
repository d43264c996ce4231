/* Sharding a batch over many workers: see shard.h. */
#include "shard.h"
#include "cnnfx-i18n.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

#define SHARD_MAX 1000000000

static gboolean parse_int(const char *s, gint64 min, gint64 max, gint64 *v)
{
  return s && g_ascii_string_to_signed(s, 10, min, max, v, NULL);
}

/* A number from the environment: TRUE when absent (v untouched) or valid; FALSE with an error
 * naming the variable when present but not a number in range. */
static gboolean env_int(const char *const *env, const char *name, gint64 min, gint64 *v, gboolean *present,
                        GError **error)
{
  const char *s = g_environ_getenv((char **)env, name);
  *present = s && *s;
  if (!*present) return TRUE;
  if (!parse_int(s, min, G_MAXINT32, v)) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s=%s is not a number >= %" G_GINT64_FORMAT,
                name, s, min);
    return FALSE;
  }
  return TRUE;
}

static gboolean set_shard(CliShard *out, gint64 k, gint64 n, const char *source, GError **error)
{
  if (n < 1 || n > SHARD_MAX || k < 1 || k > n) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "shard %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " (from %s) is not one of 1/N..N/N", k, n, source);
    return FALSE;
  }
  out->k = (int)k;
  out->n = (int)n;
  g_strlcpy(out->source, source, sizeof out->source);
  return TRUE;
}

gboolean cli_shard_resolve(const char *spec, int count, const char *const *env, CliShard *out, GError **error)
{
  memset(out, 0, sizeof *out);
  if (spec) {
    const char *slash = strchr(spec, '/');
    g_autofree char *ks = slash ? g_strndup(spec, (gsize)(slash - spec)) : NULL;
    gint64 k = 0, n = 0;
    if (!slash || !parse_int(ks, 1, SHARD_MAX, &k) || !parse_int(slash + 1, 1, SHARD_MAX, &n)) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                  "--shard '%s': want K/N with 1 <= K <= N (e.g. --shard 2/8)", spec);
      return FALSE;
    }
    if (count > 0 && count != n) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--shard %s contradicts --shard-count %d", spec,
                  count);
      return FALSE;
    }
    return set_shard(out, k, n, "--shard", error);
  }
  if (count < 0) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--shard-count %d: want a positive number", count);
    return FALSE;
  }
  gboolean have_id, have_min, have_max, have_count, have_step;
  gint64 id = 0, min = 0, max = 0, n = 0, step = 1;
  if (!env_int(env, "SLURM_ARRAY_TASK_ID", 0, &id, &have_id, error)) return FALSE;
  if (have_id) {
    if (!env_int(env, "SLURM_ARRAY_TASK_MIN", 0, &min, &have_min, error) ||
        !env_int(env, "SLURM_ARRAY_TASK_MAX", 0, &max, &have_max, error) ||
        !env_int(env, "SLURM_ARRAY_TASK_COUNT", 1, &n, &have_count, error) ||
        !env_int(env, "SLURM_ARRAY_TASK_STEP", 1, &step, &have_step, error))
      return FALSE;
    if (count > 0) n = count;
    else if (!have_count && have_min && have_max && max >= min) n = (max - min) / step + 1;
    else if (!have_count) {
      g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                  "SLURM_ARRAY_TASK_ID is set but not SLURM_ARRAY_TASK_COUNT: give --shard-count N");
      return FALSE;
    }
    gint64 k;
    if (have_min) {
      if (id < min || (id - min) % step) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "SLURM_ARRAY_TASK_ID=%" G_GINT64_FORMAT " is not MIN %" G_GINT64_FORMAT " + a multiple of STEP %"
                    G_GINT64_FORMAT " (irregular arrays like 1,4,9 need --shard K/N)", id, min, step);
        return FALSE;
      }
      k = (id - min) / step + 1;
    } else {
      k = ((id - 1) % n + n) % n + 1; /* ids 1..N give K = id; any N consecutive ids map onto 1..N */
    }
    return set_shard(out, k, n, "SLURM_ARRAY_TASK_ID", error);
  }
  gboolean have_index;
  gint64 index = 0;
  if (!env_int(env, "JOB_COMPLETION_INDEX", 0, &index, &have_index, error)) return FALSE;
  if (have_index) {
    gboolean have_env_count;
    n = count;
    if (n <= 0) {
      if (!env_int(env, "CNNFX_SHARD_COUNT", 1, &n, &have_env_count, error)) return FALSE;
      if (!have_env_count) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "JOB_COMPLETION_INDEX is set but the shard count is not: give --shard-count N or "
                    "CNNFX_SHARD_COUNT=N (the Job's completions), or --shard 1/1 for every input");
        return FALSE;
      }
    }
    return set_shard(out, index + 1, n, "JOB_COMPLETION_INDEX", error);
  }
  if (count > 0) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "--shard-count without a shard index (--shard K/N, SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)");
    return FALSE;
  }
  return TRUE; /* no sharding */
}

int cli_shard_of(const char *rel, int n)
{
  guint8 d[20];
  gsize len = sizeof d;
  GChecksum *c = g_checksum_new(G_CHECKSUM_SHA1);
  g_checksum_update(c, (const guchar *)rel, (gssize)strlen(rel));
  g_checksum_get_digest(c, d, &len);
  g_checksum_free(c);
  guint64 h = 0;
  for (int i = 0; i < 8; i++) h = h << 8 | d[i];
  return (int)(h % (guint64)n) + 1;
}

static const char *item_rel(gconstpointer item, gsize off)
{
  return *(char *const *)((const char *)item + off);
}

static void write_list(const CliShard *s, GPtrArray *items, gsize off, guint total, const char *outdir)
{
  g_autofree char *dir = g_build_filename(outdir, CLI_SHARD_DIR, NULL);
  g_autofree char *name = g_strdup_printf("%d-of-%d.tsv", s->k, s->n);
  g_autofree char *path = g_build_filename(dir, name, NULL);
  g_autoptr(GString) t = g_string_new(NULL);
  g_string_append_printf(t, "# cnnfx shard %d/%d (%s): %u of %u inputs; one relative path a line\n", s->k, s->n,
                         s->source, items->len, total);
  for (guint i = 0; i < items->len; i++) {
    g_autofree char *e = g_strescape(item_rel(items->pdata[i], off), NULL);
    g_string_append_printf(t, "%s\n", e);
  }
  g_autoptr(GError) err = NULL;
  if (g_mkdir_with_parents(dir, 0755) != 0)
    fprintf(stderr, _("cnnfx: warning: cannot create %s: %s\n"), dir, g_strerror(errno));
  else if (!g_file_set_contents(path, t->str, (gssize)t->len, &err)) /* temporary file + rename */
    fprintf(stderr, _("cnnfx: warning: %s\n"), err->message);
}

gboolean cli_shard_filter(GPtrArray *items, gsize rel_offset, const char *spec, int count, const char *outdir,
                          gboolean quiet, GError **error)
{
  g_auto(GStrv) env = g_get_environ();
  CliShard s;
  if (!cli_shard_resolve(spec, count, (const char *const *)env, &s, error)) return FALSE;
  if (!s.n) return TRUE;
  guint total = items->len, kept = 0;
  /* stable partition: this shard's items first (in order), the others after, then drop those */
  g_autofree gpointer *other = g_new(gpointer, total ? total : 1);
  guint n_other = 0;
  for (guint i = 0; i < total; i++) {
    gpointer it = items->pdata[i];
    if (cli_shard_of(item_rel(it, rel_offset), s.n) == s.k) items->pdata[kept++] = it;
    else other[n_other++] = it;
  }
  memcpy(items->pdata + kept, other, n_other * sizeof(gpointer));
  g_ptr_array_remove_range(items, kept, n_other);
  if (!quiet) fprintf(stderr, _("shard %d/%d: %u of %u inputs\n"), s.k, s.n, kept, total);
  if (outdir) write_list(&s, items, rel_offset, total, outdir);
  return TRUE;
}
