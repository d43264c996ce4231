/* cnnfx models: list, fetch, verify and locate the recommended pretrained ONNX models.
 *
 * Exit codes: 0 success, 1 failure (network, checksum, disk, model missing), 2 bad usage
 * (unknown subcommand or model name, unreadable manifest).
 */
#include "cli.h"
#include "fetch.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *models_usage = N_(
  "Usage: cnnfx models [--manifest FILE] SUBCOMMAND ...\n"
  "\n"
  "  list [-v]              show the models in the manifest and whether they are downloaded\n"
  "  fetch NAME... [--url URL] [--all]\n"
  "                         download (resumable), check SHA-256, install atomically\n"
  "  verify [NAME...]       re-check SHA-256 of downloaded models\n"
  "  path NAME              print the local file of a downloaded model (exit 1 if absent)\n"
  "\n"
  "Models are stored in $CNNFX_DATA_DIR/models, default $XDG_DATA_HOME/cnnfx/models.\n"
  "The manifest is --manifest FILE, else $CNNFX_MODELS_MANIFEST, else the installed models.ini.\n"
  "Exit status: 0 ok, 1 failure, 2 usage error.\n");

static int models_usage_error(const char *fmt, const char *arg)
{
  fputs("cnnfx models: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs("\n\n", stderr);
  fputs(_(models_usage), stderr);
  return 2;
}

/* Exit code for an error: bad input (usage) is 2, everything else 1. */
static int error_exit(const GError *err)
{
  fprintf(stderr, "cnnfx models: %s\n", err->message);
  if (err->domain == CNNFX_FETCH_ERROR &&
      (err->code == CNNFX_FETCH_ERROR_UNKNOWN || err->code == CNNFX_FETCH_ERROR_MANIFEST))
    return 2;
  return 1;
}

static const char *status_of(const CnnfxModelEntry *e, gint64 *have)
{
  g_autofree char *path = cnnfx_model_file(e->name);
  g_autofree char *part = g_strconcat(path, ".part", NULL);
  GStatBuf st;
  *have = 0;
  if (g_stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
    *have = st.st_size;
    return (gint64)st.st_size == e->size ? "present" : "wrong size";
  }
  if (g_stat(part, &st) == 0 && S_ISREG(st.st_mode)) {
    *have = st.st_size;
    return "partial";
  }
  return "-";
}

static int do_list(CnnfxManifest *m, gboolean verbose)
{
  g_autofree char *dir = cnnfx_models_dir();
  printf("%-20s %9s  %-10s %-20s %-13s %s\n", "NAME", "SIZE", "STATUS", "USE", "LICENCE", "DESCRIPTION");
  for (guint i = 0; i < m->models->len; i++) {
    const CnnfxModelEntry *e = g_ptr_array_index(m->models, i);
    gint64 have;
    const char *st = status_of(e, &have);
    g_autofree char *stbuf = NULL;
    if (!strcmp(st, "partial")) st = stbuf = g_strdup_printf("%d%%", (int)(100.0 * (double)have / (double)e->size));
    printf("%-20s %7.1fMB  %-10s %-20s %-13s %s\n", e->name, (double)e->size / 1e6, st, e->use, e->license,
           e->title);
    if (verbose) {
      static const char *const keys[] = {"input", "preprocess", "labels", "dream_layer", "style_layers",
                                         "content_layer", "source", "notes"};
      for (size_t k = 0; k < G_N_ELEMENTS(keys); k++) {
        g_autofree char *v = g_key_file_get_string(e->kf, e->name, keys[k], NULL);
        if (v) printf("%22s%s: %s\n", "", keys[k], g_strstrip(v));
      }
      printf("%22ssha256: %s\n", "", e->sha256);
      for (char **u = e->urls; *u; u++) printf("%22surl: %s\n", "", *u);
    }
  }
  printf("\nmodels directory: %s\nmanifest: %s\n", dir, m->path);
  return 0;
}

static int fetch_one(const CnnfxModelEntry *e, const char *url)
{
  g_autofree char *dest = cnnfx_model_file(e->name);
  g_autoptr(GError) err = NULL;
  if (g_file_test(dest, G_FILE_TEST_EXISTS)) {
    if (cnnfx_model_verify_file(e, dest, &err)) {
      printf(_("%s: already present and verified: %s\n"), e->name, dest);
      return 0;
    }
    fprintf(stderr, _("cnnfx models: %s; downloading again (the existing file is kept until a good copy is in)\n"),
            err->message);
    g_clear_error(&err);
  }
  const char *one[2] = {url, NULL};
  CnnfxFetchRequest req = {
    .urls = url ? one : (const char *const *)e->urls,
    .dest = dest,
    .size = e->size,
    .sha256 = e->sha256,
    .progress = isatty(2),
    .label = e->name,
  };
  printf(_("%s: fetching %.1f MB from %s\n"), e->name, (double)e->size / 1e6, req.urls[0]);
  fflush(stdout);
  if (!cnnfx_fetch(&req, &err)) return error_exit(err);
  printf(_("%s: verified (sha256 %s): %s\n"), e->name, e->sha256, dest);
  return 0;
}

static int do_fetch(CnnfxManifest *m, int argc, char **argv, const char *url, gboolean all)
{
  if (all && argc > 0) return models_usage_error("%s", _("fetch: give model names or --all, not both"));
  if (!all && argc == 0) return models_usage_error("%s", _("fetch: which model? (see 'cnnfx models list')"));
  if (url && (all || argc != 1)) return models_usage_error("%s", _("fetch: --url applies to exactly one model"));
  /* Check all names first so a typo does not leave half the work done. */
  for (int i = 0; i < argc; i++) {
    g_autoptr(GError) err = NULL;
    if (!cnnfx_manifest_find(m, argv[i], &err)) return error_exit(err);
  }
  int rc = 0;
  guint n = all ? m->models->len : (guint)argc;
  for (guint i = 0; i < n; i++) {
    const CnnfxModelEntry *e = all ? g_ptr_array_index(m->models, i) : cnnfx_manifest_find(m, argv[i], NULL);
    int r = fetch_one(e, url);
    if (r > rc) rc = r;
  }
  return rc;
}

static int do_verify(CnnfxManifest *m, int argc, char **argv)
{
  for (int i = 0; i < argc; i++) {
    g_autoptr(GError) err = NULL;
    if (!cnnfx_manifest_find(m, argv[i], &err)) return error_exit(err);
  }
  int rc = 0, checked = 0;
  guint n = argc ? (guint)argc : m->models->len;
  for (guint i = 0; i < n; i++) {
    const CnnfxModelEntry *e = argc ? cnnfx_manifest_find(m, argv[i], NULL) : g_ptr_array_index(m->models, i);
    g_autofree char *path = cnnfx_model_file(e->name);
    if (!g_file_test(path, G_FILE_TEST_EXISTS)) {
      if (argc) {
        printf("%-20s MISSING  %s\n", e->name, path);
        rc = 1;
      }
      continue;
    }
    g_autoptr(GError) err = NULL;
    checked++;
    if (cnnfx_model_verify_file(e, path, &err)) {
      printf("%-20s OK       %s\n", e->name, path);
    } else {
      printf("%-20s BAD      %s\n", e->name, err->message);
      rc = 1;
    }
  }
  if (!argc && !checked) {
    g_autofree char *dir = cnnfx_models_dir();
    printf("no models downloaded yet (%s)\n", dir);
  }
  return rc;
}

static int do_path(CnnfxManifest *m, int argc, char **argv)
{
  if (argc != 1) return models_usage_error("%s", _("path: give exactly one model name"));
  g_autoptr(GError) err = NULL;
  const CnnfxModelEntry *e = cnnfx_manifest_find(m, argv[0], &err);
  if (!e) return error_exit(err);
  g_autofree char *path = cnnfx_model_present(e, &err);
  if (!path) {
    fprintf(stderr, "cnnfx models: %s\n", err->message);
    return 1;
  }
  printf("%s\n", path);
  return 0;
}

int cmd_models(int argc, char **argv)
{
  /* argv[0] is "models". Options may appear anywhere; GOption collects them. */
  char *manifest = NULL, *url = NULL;
  gboolean all = FALSE, verbose = FALSE, help = FALSE;
  /* no descriptions: --help prints models_usage, which describes the options */
  GOptionEntry entries[] = {
    {"manifest", 'm', 0, G_OPTION_ARG_FILENAME, &manifest, NULL, "FILE"},
    {"url", 0, 0, G_OPTION_ARG_STRING, &url, NULL, "URL"},
    {"all", 'a', 0, G_OPTION_ARG_NONE, &all, NULL, NULL},
    {"verbose", 'v', 0, G_OPTION_ARG_NONE, &verbose, NULL, NULL},
    {"help", 'h', 0, G_OPTION_ARG_NONE, &help, NULL, NULL},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
  g_option_context_set_help_enabled(ctx, FALSE);
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) perr = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &perr)) {
    int r = models_usage_error("%s", perr->message);
    g_free(manifest);
    g_free(url);
    return r;
  }
  g_autofree char *manifest_path = manifest;
  g_autofree char *url_s = url;
  if (help) {
    fputs(_(models_usage), stdout);
    return 0;
  }
  if (argc < 2) return models_usage_error("%s", _("missing subcommand"));
  const char *sub = argv[1];
  int rest = argc - 2;
  char **rargv = argv + 2;
  if (strcmp(sub, "list") && strcmp(sub, "fetch") && strcmp(sub, "verify") && strcmp(sub, "path"))
    return models_usage_error(_("unknown subcommand '%s'"), sub);
  if (url_s && strcmp(sub, "fetch")) return models_usage_error("%s", _("--url is only for fetch"));
  if (all && strcmp(sub, "fetch")) return models_usage_error("%s", _("--all is only for fetch"));

  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxManifest) m = cnnfx_manifest_load(manifest_path, &err);
  if (!m) return error_exit(err);

  if (!strcmp(sub, "list")) {
    if (rest) return models_usage_error("%s", _("list takes no arguments"));
    return do_list(m, verbose);
  }
  if (!strcmp(sub, "fetch")) return do_fetch(m, rest, rargv, url_s, all);
  if (!strcmp(sub, "verify")) return do_verify(m, rest, rargv);
  return do_path(m, rest, rargv);
}
