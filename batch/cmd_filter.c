/* cnnfx dream|style|classify|fool|visualize [OPTIONS] INPUT... -o OUTDIR
 *
 * One driver for all filters: the flags come from the filter's parameter table
 * (core/filters/params.c) plus the flags every filter has; inputs are files or folders
 * (-r recurses); outputs mirror the input tree under OUTDIR; exit 0 all done, 1 some
 * failed (each printed as "<path>: <reason>"), 2 usage error. */
#include "cli.h"
#include "cnnfx-filters.h"
#include "image.h"
#include "jobs.h"
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
    if (!strcmp(argv[i], "--")) { /* end of options: the rest are inputs, verbatim */
      for (; i < argc; i++) g_ptr_array_add(a, g_strdup(argv[i]));
      break;
    }
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
  gint64 seed = 0, max_mem_mb = 0, max_pixels = 0;
  gboolean overwrite = FALSE, recurse = FALSE, quiet = FALSE, depth16 = FALSE;
  int quality = 92, shard_count = 0;
  g_autofree char *shard = NULL;
  GOptionEntry common[] = {
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &outdir, "Output folder (required; mirrors the input tree)", "OUTDIR"},
    {"model", 'm', 0, G_OPTION_ARG_STRING, &model, "Model name (see `cnnfx models list`) or ONNX file; default: the offline default", "NAME|PATH"},
    {"labels", 0, 0, G_OPTION_ARG_FILENAME, &labels, "Labels file (one per line) for a model given as a path", "FILE"},
    {"device", 0, 0, G_OPTION_ARG_STRING, &device, "auto, cpu or cuda (default auto)", "DEV"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Random seed (default 0)", "N"},
    {"overwrite", 0, 0, G_OPTION_ARG_NONE, &overwrite, "Replace existing outputs (default: skip them, so a run can resume)", NULL},
    {"recursive", 'r', 0, G_OPTION_ARG_NONE, &recurse, "Recurse into sub-folders", NULL},
    {"max-memory", 0, 0, G_OPTION_ARG_INT64, &max_mem_mb, "Tensor memory bound in MiB; big images are tiled to fit (default: 2048); decoding an image may use up to the larger of this and 2048", "MB"},
    /* batch safety (jobs.c / image.c): declared image sizes above this are refused before decoding */
    {"max-pixels", 0, 0, G_OPTION_ARG_INT64, &max_pixels, "Refuse images declaring more pixels than this (default 178956970, like Pillow; decompression-bomb guard)", "N"},
    {"jpeg-quality", 0, 0, G_OPTION_ARG_INT, &quality, "JPEG output quality (default 92)", "Q"},
    {"16bit", 0, 0, G_OPTION_ARG_NONE, &depth16, "Write 16-bit PNG (default: the input's depth); JPEG inputs then give PNG outputs (NAME.png)", NULL},
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
  g_autoptr(CliJobList) jobs = NULL;
  g_autoptr(CnnfxBackend) be = NULL;
  g_autoptr(CnnfxNet) net = NULL;
  g_autofree char *net_summary = NULL; /* one line naming the model and its preprocessing */
  int rc = 2;
  g_auto(GStrv) args = normalise_bool_flags(info, argc, argv, &argc);
  g_autofree char **argv_owned = g_memdup2(args, sizeof(char *) * (argc + 1)); /* GOption reorders argv */
  argv = argv_owned;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  if (argc < 2 || !outdir || (argc == 2 && !strcmp(argv[1], "--"))) {
    fprintf(stderr, "cnnfx %s: need INPUT... and -o OUTDIR (see cnnfx %s --help)\n", info->name, info->name);
    goto out;
  }
  if (max_mem_mb < 0 || quality < 1 || quality > 100 || max_pixels < 0) {
    fprintf(stderr, "cnnfx %s: bad --max-memory, --max-pixels or --jpeg-quality\n", info->name);
    goto out;
  }
  /* Inputs and their outputs (jobs.c) */
  FilterApp app = {
    .info = info, .params = params, .outdir = outdir, .overwrite = overwrite, .depth16 = depth16,
    .jpeg_quality = quality,
  };
  jobs = cli_jobs_collect(argv + 1, argc - 1, recurse, outdir);
  cli_jobs_plan(jobs, &app);
  /* this worker's shard of the planned list (planning sees every input, so renamed twins are
   * the same on every shard) */
  if (!cli_shard_filter(jobs->jobs, G_STRUCT_OFFSET(CliJob, rel), shard, shard_count, outdir, quiet, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  be = cli_backend_new(device ? device : "auto", FALSE, &err);
  if (!be) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  rc = 1;
  NetOverrides ov = {0}; /* --mean/--std/--scale/--bgr/--input-size/--output-is-prob */
  if (cli_net_overrides_from_params(&ov, params, &err))
    net = cli_load_net(model, labels, info->name, &ov, &net_summary, &err);
  if (!net) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  if (!quiet && !strcmp(info->name, "style") && cnnfx_params_string(params, "fast-model"))
    fprintf(stderr, "model %s (fast-style network: RGB 0..255 in and out, any size)\n",
            cnnfx_params_string(params, "fast-model"));
  else if (!quiet)
    fprintf(stderr, "%s\n", net_summary);
  app.net = net;
  app.run = (CnnfxRun){.backend = be, .seed = (guint64)seed, .cancel = &cancel_flag,
                       .max_memory = (size_t)(max_mem_mb ? max_mem_mb : 2048) << 20};
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
  CliJobsOptions jo = {.quiet = quiet, .max_pixels = max_pixels, .cancel = &cancel_flag};
  CliJobsResult res;
  cli_jobs_run(jobs, &app, &jo, &res);
  int failed = res.failed, done = res.done;
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
  if (!quiet) cli_jobs_summary(jobs, &res, info->name);
  rc = failed ? 1 : 0;
out:
  g_free(model);
  g_free(device);
  g_free(outdir);
  g_free(labels);
  return rc;
}
