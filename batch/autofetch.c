/* First use of a filter: fetch its preferred ImageNet model once, as torchvision and rembg do;
 * offline (--offline, CNNFX_OFFLINE=1) or unreachable: the offline default, with one line. */
#include "autofetch.h"
#include "fetch.h"
#include "cnnfx-i18n.h"
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const struct {
  const char *filter, *model;
} preferred[] = {
  {"dream", "googlenet"},
  {"style", "vgg19"},
  {"classify", "squeezenet1.1"},
};

const char *cli_autofetch_preferred(const char *filter)
{
  const char *env = g_getenv("CNNFX_PREFERRED_MODEL"); /* tests: "FILTER=NAME" */
  if (env && filter) {
    size_t l = strlen(filter);
    if (!strncmp(env, filter, l) && env[l] == '=') return env[l + 1] ? env + l + 1 : NULL;
  }
  for (size_t i = 0; filter && i < G_N_ELEMENTS(preferred); i++)
    if (!strcmp(filter, preferred[i].filter)) return preferred[i].model;
  return NULL;
}

static gboolean env_on(const char *name)
{
  const char *v = g_getenv(name);
  return v && *v && strcmp(v, "0") && g_ascii_strcasecmp(v, "false") && g_ascii_strcasecmp(v, "no");
}

gboolean cli_autofetch_disabled(gboolean *explicit_offline)
{
  if (explicit_offline) *explicit_offline = FALSE;
  if (env_on("CNNFX_OFFLINE")) {
    if (explicit_offline) *explicit_offline = TRUE;
    return TRUE;
  }
  /* On by default (the offline default, the CIFAR-10 network of weights/README.md, is what runs
   * when the download is impossible).  CNNFX_AUTOFETCH=0 turns it off silently: the test suite
   * does (tests never touch the network), and so can a site whose machines have no route out. */
  const char *af = g_getenv("CNNFX_AUTOFETCH");
  return af && *af && (!strcmp(af, "0") || !g_ascii_strcasecmp(af, "false") || !g_ascii_strcasecmp(af, "no"));
}

char *cli_autofetch(const char *filter)
{
  const char *name = cli_autofetch_preferred(filter);
  if (!name) return NULL;
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxManifest) man = cnnfx_manifest_load(NULL, &err);
  if (!man) return NULL; /* no manifest: nothing to prefer */
  const CnnfxModelEntry *e = cnnfx_manifest_find(man, name, NULL);
  if (!e) return NULL;
  g_autofree char *present = cnnfx_model_present(e, NULL);
  if (present) return g_strdup(name);
  gboolean explicit_offline = FALSE;
  if (cli_autofetch_disabled(&explicit_offline)) {
    if (explicit_offline)
      fprintf(stderr,
              _("cnnfx %s: offline: using the offline default model (`cnnfx models fetch %s` gets the ImageNet "
                "model, %.0f MB)\n"),
              filter, name, (double)e->size / 1e6);
    return NULL;
  }
  g_autofree char *dest = cnnfx_model_file(name);
  g_autofree char *dir = g_path_get_dirname(dest);
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    fprintf(stderr, _("cnnfx %s: cannot create %s: using the offline default model\n"), filter, dir);
    return NULL;
  }
  fprintf(stderr, _("cnnfx %s: first use: downloading %s (%s, %.1f MB, sha256 %.16s...) to %s\n"), filter, name,
          e->title ? e->title : name, (double)e->size / 1e6, e->sha256, dest);
  CnnfxFetchRequest req = {
    .urls = (const char *const *)e->urls,
    .dest = dest,
    .size = e->size,
    .sha256 = e->sha256,
    .progress = isatty(2),
    .label = e->name,
  };
  if (!cnnfx_fetch(&req, &err)) {
    fprintf(stderr, _("cnnfx %s: could not download %s (%s): using the offline default model\n"), filter, name,
            err ? err->message : _("failed"));
    return NULL;
  }
  return g_strdup(name);
}
