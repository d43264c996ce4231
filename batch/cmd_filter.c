/* cnnfx dream|style|classify|fool|visualize [OPTIONS] INPUT... -o OUTDIR
 *
 * One driver for all filters: the flags come from the filter's parameter table
 * (core/filters/params.c) plus the flags every filter has; inputs are files or folders
 * (-r recurses); outputs mirror the input tree under OUTDIR; exit 0 all done, 1 some
 * failed (each printed as "<path>: <reason>"), 2 usage error. */
#include "cli.h"
#include "cnnfx-filters.h"
#include "image.h"
#include "netload.h"
#include "shard.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile int cancel_flag;

static void on_sigint(int sig)
{
  (void)sig;
  if (cancel_flag) _exit(130); /* second Ctrl-C: temporary files are already unlinked or never renamed */
  cancel_flag = 1;
}

typedef struct {
  char *src;      /* input file */
  char *rel;      /* path relative to its input root, for mirroring */
} Job;

static void job_free(gpointer p)
{
  Job *j = p;
  g_free(j->src);
  g_free(j->rel);
  g_free(j);
}

static gint job_cmp(gconstpointer a, gconstpointer b)
{
  return g_strcmp0((*(Job *const *)a)->rel, (*(Job *const *)b)->rel);
}

/* Collect files; folders give every non-hidden file (recursively with -r): a file that is not a
 * PNG or JPEG is reported as such, never silently dropped. */
static void collect(const char *root, const char *dir, gboolean recurse, GPtrArray *jobs)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  const char *e;
  while ((e = g_dir_read_name(d))) {
    if (e[0] == '.') continue;
    g_autofree char *p = g_build_filename(dir, e, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR)) {
      if (recurse) collect(root, p, recurse, jobs);
    } else if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) {
      Job *j = g_new0(Job, 1);
      j->src = g_strdup(p);
      j->rel = g_strdup(p + strlen(root) + (root[strlen(root) - 1] == '/' ? 0 : 1));
      g_ptr_array_add(jobs, j);
    }
  }
}

/* Output name: OUTDIR/rel with the suffix inserted before the extension ("" = same name),
 * and ext replacing the extension when given (fool writes PNG). */
char *cli_output_path(const char *outdir, const char *rel, const char *suffix, const char *ext)
{
  g_autofree char *r = g_strdup(rel);
  char *dot = strrchr(r, '.');
  char *slash = strrchr(r, '/');
  g_autofree char *old_ext = NULL;
  if (dot && (!slash || dot > slash)) {
    old_ext = g_strdup(dot);
    *dot = 0;
  } else {
    old_ext = g_strdup(".png");
  }
  g_autofree char *name = g_strconcat(r, suffix ? suffix : "", ext ? ext : old_ext, NULL);
  return g_build_filename(outdir, name, NULL);
}

static gboolean ensure_parent(const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create %s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* ---- progress ----------------------------------------------------------------------- */

typedef struct {
  gboolean tty;
  int file_i, n_files;
  const char *name;
  gint64 last;
} Progress;

static void progress_cb(double frac, const char *what, gpointer user)
{
  Progress *p = user;
  if (!p->tty) return;
  gint64 now = g_get_monotonic_time();
  if (now - p->last < 100000 && frac < 1) return;
  p->last = now;
  int w = 30, fill = (int)(CLAMP(frac, 0, 1) * w);
  char bar[64];
  for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
  bar[w] = 0;
  fprintf(stderr, "\r\033[K[%d/%d] %s [%s] %3.0f%% %s", p->file_i, p->n_files, p->name, bar, frac * 100,
          what ? what : "");
  fflush(stderr);
}

/* ---- GOption entries from the parameter table ---------------------------------------- */

typedef struct {
  CnnfxParams *params;
  const CnnfxFilterInfo *info;
} OptCtx;

static gboolean opt_cb(const char *name, const char *value, gpointer data, GError **error)
{
  OptCtx *c = data;
  const char *n = name + 2; /* "--name" */
  const CnnfxParam *d = NULL;
  for (const CnnfxParam *q = c->info->params; q->name; q++)
    if (!strcmp(q->name, n)) d = q;
  if (d && d->type == CNNFX_P_BOOL && !value) value = "1";
  g_autoptr(GError) e = NULL;
  if (!cnnfx_params_set(c->params, n, value, &e)) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s", e->message);
    return FALSE;
  }
  return TRUE;
}

static gboolean is_bool_word(const char *s)
{
  static const char *const w[] = {"yes", "no", "true", "false", "on", "off", "1", "0", NULL};
  for (int i = 0; w[i]; i++)
    if (!g_ascii_strcasecmp(s, w[i])) return TRUE;
  return FALSE;
}

/* GOption gives an optional argument the next word even when that is an input file
 * ("--preserve-colors photo.jpg").  Rewrite yes/no flags first: "--flag" -> "--flag=yes",
 * "--flag no" -> "--flag=no".  Returns a new argv (g_strfreev). */
static char **normalise_bool_flags(const CnnfxFilterInfo *info, int argc, char **argv, int *argc_out)
{
  GPtrArray *a = g_ptr_array_new();
  for (int i = 0; i < argc; i++) {
    const CnnfxParam *d = NULL;
    if (g_str_has_prefix(argv[i], "--") && !strchr(argv[i], '='))
      for (const CnnfxParam *q = info->params; q->name; q++)
        if (q->type == CNNFX_P_BOOL && !strcmp(q->name, argv[i] + 2)) d = q;
    if (!d) {
      g_ptr_array_add(a, g_strdup(argv[i]));
    } else if (i + 1 < argc && is_bool_word(argv[i + 1])) {
      g_ptr_array_add(a, g_strconcat(argv[i], "=", argv[i + 1], NULL));
      i++;
    } else {
      g_ptr_array_add(a, g_strconcat(argv[i], "=yes", NULL));
    }
  }
  *argc_out = (int)a->len;
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}

static GOptionGroup *param_group(OptCtx *c, GPtrArray *keep)
{
  GOptionGroup *g = g_option_group_new(c->info->name, c->info->title, c->info->help, c, NULL);
  GArray *es = g_array_new(TRUE, TRUE, sizeof(GOptionEntry));
  for (const CnnfxParam *q = c->info->params; q->name; q++) {
    GOptionEntry e = {0};
    e.long_name = q->name;
    e.arg = G_OPTION_ARG_CALLBACK;
    e.arg_data = (gpointer)opt_cb;
    if (q->type == CNNFX_P_BOOL) e.flags = G_OPTION_FLAG_OPTIONAL_ARG;
    char *desc;
    switch (q->type) {
    case CNNFX_P_INT:
    case CNNFX_P_DOUBLE:
      desc = g_strdup_printf("%s (%g..%g, default %g)", q->help, q->min, q->max, q->def);
      break;
    case CNNFX_P_CHOICE:
      desc = g_strdup_printf("%s: %s (default %s)", q->help, q->choices, q->def_str);
      break;
    case CNNFX_P_BOOL:
      desc = g_strdup_printf("%s (default %s)", q->help, q->def ? "yes" : "no");
      break;
    default:
      desc = g_strdup(q->help);
    }
    g_ptr_array_add(keep, desc);
    e.description = desc;
    e.arg_description = q->type == CNNFX_P_BOOL ? "[yes|no]" : q->type == CNNFX_P_FILE || q->type == CNNFX_P_FILES
                                                                   ? "FILE" : "VALUE";
    g_array_append_val(es, e);
  }
  g_option_group_add_entries(g, (GOptionEntry *)es->data);
  g_ptr_array_add(keep, g_array_free(es, FALSE));
  return g;
}

/* ---- the command ---------------------------------------------------------------------- */

int cmd_filter(int argc, char **argv)
{
  const CnnfxFilterInfo *info = cnnfx_filter_info(argv[0]);
  g_autoptr(CnnfxParams) params = cnnfx_params_new(info);
  char *model = NULL, *device = NULL, *outdir = NULL, *labels = NULL;
  gint64 seed = 0, max_mem_mb = 0;
  gboolean overwrite = FALSE, recurse = FALSE, quiet = FALSE, depth16 = FALSE, offline = FALSE;
  int quality = 92, shard_count = 0;
  g_autofree char *shard = NULL;
  GOptionEntry common[] = {
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &outdir, "Output folder (required; mirrors the input tree)", "OUTDIR"},
    {"model", 'm', 0, G_OPTION_ARG_STRING, &model, "Model name (see `cnnfx models list`) or ONNX file; default: the offline default", "NAME|PATH"},
    {"labels", 0, 0, G_OPTION_ARG_FILENAME, &labels, "Labels file (one per line) for a model given as a path", "FILE"},
    {"offline", 0, 0, G_OPTION_ARG_NONE, &offline, "Never download the filter's preferred model on first use (also CNNFX_OFFLINE=1)", NULL},
    {"device", 0, 0, G_OPTION_ARG_STRING, &device, "auto, cpu or cuda (default auto)", "DEV"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (default 0)", "N"},
    {"overwrite", 0, 0, G_OPTION_ARG_NONE, &overwrite, "Replace existing outputs (default: skip them, so a run can resume)", NULL},
    {"recursive", 'r', 0, G_OPTION_ARG_NONE, &recurse, "Recurse into sub-folders", NULL},
    {"max-memory", 0, 0, G_OPTION_ARG_INT64, &max_mem_mb, "Tensor memory bound in MiB; big images are tiled to fit (default: 2048)", "MB"},
    {"jpeg-quality", 0, 0, G_OPTION_ARG_INT, &quality, "JPEG output quality (default 92)", "Q"},
    {"16bit", 0, 0, G_OPTION_ARG_NONE, &depth16, "Write 16-bit PNG (default: the input's depth)", NULL},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress bar", NULL},
    {"shard", 0, 0, G_OPTION_ARG_STRING, &shard, "Process only shard K of N (1-based; by path hash; default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)", "K/N"},
    {"shard-count", 0, 0, G_OPTION_ARG_INT, &shard_count, "Number of shards N with JOB_COMPLETION_INDEX (default: CNNFX_SHARD_COUNT)", "N"},
    G_OPTION_ENTRY_NULL};
  g_autofree char *summary = g_strdup_printf("INPUT... -o OUTDIR — %s", info->help);
  g_autoptr(GOptionContext) ctx = g_option_context_new(summary);
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_free);
  OptCtx oc = {params, info};
  /* one group for the common flags and the filter's own, so `--help` lists them all */
  GOptionGroup *main_group = param_group(&oc, keep);
  g_option_group_add_entries(main_group, common);
  g_option_context_set_main_group(ctx, main_group);
  g_autoptr(GError) err = NULL;
  g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func(job_free);
  g_autoptr(CnnfxBackend) be = NULL;
  g_autoptr(CnnfxNet) net = NULL;
  int rc = 2;
  g_auto(GStrv) args = normalise_bool_flags(info, argc, argv, &argc);
  g_autofree char **argv_owned = g_memdup2(args, sizeof(char *) * (argc + 1)); /* GOption reorders argv */
  argv = argv_owned;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  if (argc < 2 || !outdir) {
    fprintf(stderr, "cnnfx %s: need INPUT... and -o OUTDIR (see cnnfx %s --help)\n", info->name, info->name);
    goto out;
  }
  if (max_mem_mb < 0 || quality < 1 || quality > 100) {
    fprintf(stderr, "cnnfx %s: bad --max-memory or --jpeg-quality\n", info->name);
    goto out;
  }
  /* Inputs */
  for (int i = 1; i < argc; i++) {
    if (g_file_test(argv[i], G_FILE_TEST_IS_DIR)) {
      collect(argv[i], argv[i], recurse, jobs);
    } else {
      Job *j = g_new0(Job, 1);
      j->src = g_strdup(argv[i]);
      j->rel = g_path_get_basename(argv[i]);
      g_ptr_array_add(jobs, j);
    }
  }
  g_ptr_array_sort(jobs, job_cmp);
  /* Two inputs mapping to the same output is a usage error: nothing would be deterministic. */
  for (guint i = 1; i < jobs->len; i++)
    if (!strcmp(((Job *)jobs->pdata[i])->rel, ((Job *)jobs->pdata[i - 1])->rel)) {
      fprintf(stderr, "cnnfx %s: two inputs would write the same output '%s'\n", info->name,
              ((Job *)jobs->pdata[i])->rel);
      goto out;
    }
  if (!cli_shard_filter(jobs, G_STRUCT_OFFSET(Job, rel), shard, shard_count, outdir, quiet, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  be = cnnfx_backend_new(device ? device : "auto", &err);
  if (!be) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  rc = 1;
  if (offline) g_setenv("CNNFX_OFFLINE", "1", TRUE);
  net = cli_load_net(model, labels, info->name, &err);
  if (!net) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  FilterApp app = {
    .info = info, .params = params, .net = net, .outdir = outdir, .overwrite = overwrite,
    .depth16 = depth16, .jpeg_quality = quality,
  };
  Progress prog = {.tty = !quiet && isatty(2), .n_files = (int)jobs->len};
  app.run = (CnnfxRun){.backend = be, .seed = (guint64)seed, .cancel = &cancel_flag,
                       .max_memory = (size_t)(max_mem_mb ? max_mem_mb : 2048) << 20,
                       .progress = progress_cb, .user = &prog};
  if (!cli_filter_prepare(&app, &err)) { /* bad style / guide images, missing options: nothing processed */
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    cli_filter_finish(&app, NULL);
    rc = 2;
    goto out;
  }
  struct sigaction sa = {0}, old_int, old_term;
  sa.sa_handler = on_sigint;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  int failed = 0, done = 0, skipped = 0;
  for (guint i = 0; i < jobs->len && !cancel_flag; i++) {
    Job *j = jobs->pdata[i];
    prog.file_i = (int)i + 1;
    prog.name = j->rel;
    g_autoptr(GError) e = NULL;
    g_autofree char *main_out = cli_filter_main_output(&app, j->rel);
    if (!overwrite && g_file_test(main_out, G_FILE_TEST_EXISTS)) {
      skipped++;
      continue; /* resume: finished before */
    }
    g_autoptr(CnnfxImage) img = cnnfx_image_load(j->src, &e);
    gboolean ok = img && ensure_parent(main_out, &e) && cli_filter_apply(&app, img, j->src, j->rel, &e);
    if (prog.tty) fprintf(stderr, "\r\033[K");
    if (ok) {
      done++;
      if (!quiet) fprintf(stderr, "%s -> %s\n", j->src, main_out);
    } else if (e && g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_CANCELLED)) {
      break;
    } else {
      failed++;
      fprintf(stderr, "%s: %s\n", j->src, e ? e->message : "failed");
    }
  }
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  cli_filter_finish(&app, &err);
  if (err) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    failed++;
  }
  if (cancel_flag) {
    fprintf(stderr, "cnnfx %s: interrupted; %d done, no partial files left\n", info->name, done);
    rc = 130;
    goto out;
  }
  if (!quiet && skipped) fprintf(stderr, "%d already done (skipped; --overwrite redoes them)\n", skipped);
  rc = failed ? 1 : 0;
out:
  g_free(model);
  g_free(device);
  g_free(outdir);
  g_free(labels);
  return rc;
}
