/* cnnfx dream|style|classify|fool|visualize [OPTIONS] INPUT... -o OUTDIR
 *
 * One driver for all filters: the flags come from the filter's parameter table
 * (core/filters/params.c) plus the flags every filter has; inputs are files or folders
 * (-r recurses); outputs mirror the input tree under OUTDIR; exit 0 all done, 1 some
 * failed (each printed as "<path>: <reason>"), 2 usage error. */
#include "cli.h"
#include "cnnfx-filters.h"
#include "image.h"
#include "filter_options.h"
#include "jobs.h"
#include "netload.h"
#include "shard.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile gint cancel_flag; /* the run's cancel token (atomic) */

static void on_sigint(int sig)
{
  (void)sig;
  if (cancel_flag) _exit(130); /* second Ctrl-C: temporary files are already unlinked or never renamed */
  g_atomic_int_set(&cancel_flag, 1);
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

/* ---- the command ---------------------------------------------------------------------- */

int cmd_filter(int argc, char **argv)
{
  const CnnfxFilterInfo *info = cnnfx_filter_info(argv[0]);
  g_autoptr(CnnfxParams) params = cnnfx_params_new(info);
  char *model = NULL, *device = NULL, *outdir = NULL, *labels = NULL;
  gint64 seed = 0, max_mem_mb = 0, max_pixels = 0;
  gboolean overwrite = FALSE, recurse = FALSE, quiet = FALSE, depth16 = FALSE, offline = FALSE;
  int quality = 92, shard_count = 0;
  g_autofree char *shard = NULL;
  /* every flag (the filter's and the shared ones) comes from the parameter tables */
  g_autoptr(GOptionContext) ctx = cli_filter_option_context(info, params);
  g_autoptr(GError) err = NULL;
  g_autoptr(CliJobList) jobs = NULL;
  g_autoptr(CnnfxBackend) be = NULL;
  g_autoptr(CnnfxNet) net = NULL;
  g_autofree char *net_summary = NULL; /* one line naming the model and its preprocessing */
  int rc = 2;
  g_auto(GStrv) args = cli_normalise_bool_flags(params, argc, argv, &argc);
  g_autofree char **argv_owned = g_memdup2(args, sizeof(char *) * (argc + 1)); /* GOption reorders argv */
  argv = argv_owned;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  model = g_strdup(cnnfx_params_string(params, "model"));
  device = g_strdup(cnnfx_params_string(params, "device"));
  outdir = g_strdup(cnnfx_params_string(params, "output"));
  labels = g_strdup(cnnfx_params_string(params, "labels"));
  seed = cnnfx_params_int(params, "seed");
  max_mem_mb = cnnfx_params_int(params, "max-memory");
  overwrite = cnnfx_params_bool(params, "overwrite");
  recurse = cnnfx_params_bool(params, "recursive");
  quiet = cnnfx_params_bool(params, "quiet");
  depth16 = cnnfx_params_bool(params, "depth16");
  quality = cnnfx_params_int(params, "jpeg-quality");
  offline = cnnfx_params_bool(params, "offline");
  max_pixels = (gint64)cnnfx_params_double(params, "max-pixels");
  shard = g_strdup(cnnfx_params_string(params, "shard"));
  shard_count = cnnfx_params_int(params, "shard-count");
  if (argc < 2 || !outdir || (argc == 2 && !strcmp(argv[1], "--"))) {
    fprintf(stderr, _("cnnfx %s: need INPUT... and -o OUTDIR (see cnnfx %s --help)\n"), info->name, info->name);
    goto out;
  }
  if (max_mem_mb < 0 || quality < 1 || quality > 100 || max_pixels < 0) {
    fprintf(stderr, _("cnnfx %s: bad --max-memory, --max-pixels or --jpeg-quality\n"), info->name);
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
  be = cli_backend_new(device ? device : "auto", cnnfx_params_bool(params, "exact"), &err);
  if (!be) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  rc = 1;
  if (offline) g_setenv("CNNFX_OFFLINE", "1", TRUE); /* autofetch.c: no first-use download */
  NetOverrides ov = {0}; /* --mean/--std/--scale/--bgr/--input-size/--output-is-prob */
  if (cli_net_overrides_from_params(&ov, params, &err))
    net = cli_load_net(model, labels, info->name, &ov, &net_summary, &err);
  if (!net) {
    fprintf(stderr, "cnnfx %s: %s\n", info->name, err->message);
    goto out;
  }
  if (!quiet && !strcmp(info->name, "style") && cnnfx_params_string(params, "fast-model"))
    fprintf(stderr, _("model %s (fast-style network: RGB 0..255 in and out, any size)\n"),
            cnnfx_params_string(params, "fast-model"));
  else if (!quiet)
    fprintf(stderr, "%s\n", net_summary);
  app.net = net;
  app.run = (CnnfxRun){.backend = be, .seed = (guint64)seed, .cancel = &cancel_flag,
                       .max_memory = (size_t)max_mem_mb << 20, .exact = cnnfx_params_bool(params, "exact")};
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
    fprintf(stderr, _("cnnfx %s: interrupted; %d done, no partial files left\n"), info->name, done);
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
