/* The filters' command-line flags, built from the parameter tables (the shared table
 * cnnfx_common_params() and the filter's own): GOption entries for parsing and --help, and
 * the one-line descriptions the man page and docs/filters.md print. */
#include "cli.h"
#include "filter_options.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

char *cli_param_metavar(const CnnfxParam *d)
{
  if (d->metavar) return g_strdup(d->metavar);
  switch (d->type) {
  case CNNFX_P_INT: return g_strdup("N");
  case CNNFX_P_DOUBLE: return g_strdup("X");
  case CNNFX_P_BOOL: return g_strdup("[yes|no]");
  case CNNFX_P_CHOICE: return g_strdup("NAME");
  case CNNFX_P_FILE:
  case CNNFX_P_FILES:
  case CNNFX_P_LAYER: return g_strdup("FILE");
  case CNNFX_P_COLOR: return g_strdup("#RRGGBB");
  case CNNFX_P_CLASS: return g_strdup("LABEL");
  case CNNFX_P_MODEL_LAYER:
  case CNNFX_P_STRINGS:
  case CNNFX_P_STRING: return g_strdup(strstr(d->name, "layer") ? "NAME" : "VALUE");
  }
  return g_strdup("VALUE");
}

/* 2048, 0.5, 1e-04: whole numbers in full, others short */
char *cli_format_number(double x)
{
  if (x == (double)(gint64)x && fabs(x) < 1e15) return g_strdup_printf("%" G_GINT64_FORMAT, (gint64)x);
  return g_strdup_printf("%g", x);
}

/* "help (range, default)" in the current language */
char *cli_param_description(const CnnfxParam *d)
{
  const char *help = cnnfx_param_text(d->help);
  switch (d->type) {
  case CNNFX_P_INT:
  case CNNFX_P_DOUBLE: {
    g_autofree char *lo = cli_format_number(d->min), *hi = cli_format_number(d->max), *def = cli_format_number(d->def);
    /* TRANSLATORS: option help: "<help> (<min>..<max>, default <default>)" */
    return g_strdup_printf(_("%s (%s..%s, default %s)"), help, lo, hi, def);
  }
  case CNNFX_P_BOOL:
    /* TRANSLATORS: option help: "<help> (default yes)" / "(default no)" */
    return g_strdup_printf(_("%s (default %s)"), help, d->def ? _("yes") : _("no"));
  case CNNFX_P_CHOICE: {
    g_autofree char *mv = d->choice_index ? g_strconcat(d->choices, "|cuda:N", NULL) : g_strdup(d->choices);
    /* TRANSLATORS: option help: "<help>: <choice|choice> (default <choice>)" */
    return g_strdup_printf(_("%s: %s (default %s)"), help, mv, d->def_str);
  }
  default:
    if (d->def_str) return g_strdup_printf(_("%s (default %s)"), help, d->def_str);
    return g_strdup(help);
  }
}

/* ---- parsing ------------------------------------------------------------------------ */

typedef struct {
  CnnfxParams *params;
} OptCtx;

static const CnnfxParam *by_flag(const CnnfxParams *p, const char *opt)
{
  for (int i = 0; i < cnnfx_params_count(p); i++) {
    const CnnfxParam *d = cnnfx_params_nth(p, i);
    if (d->scope == CNNFX_SCOPE_GUI) continue;
    if (opt[0] == '-' && opt[1] == '-' ? !strcmp(cnnfx_param_flag(d), opt + 2)
                                       : (opt[0] == '-' && opt[1] == d->short_name && !opt[2]))
      return d;
  }
  return NULL;
}

static gboolean opt_cb(const char *name, const char *value, gpointer data, GError **error)
{
  OptCtx *c = data;
  const CnnfxParam *d = by_flag(c->params, name);
  if (!d) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION, _("unknown option %s"), name);
    return FALSE;
  }
  if (d->type == CNNFX_P_BOOL && !value) value = "yes";
  g_autoptr(GError) e = NULL;
  if (!cnnfx_params_set(c->params, d->name, value, &e)) {
    /* the core names the parameter by its label; the CLI adds the flag */
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--%s: %s", cnnfx_param_flag(d), e->message);
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
 * "--flag no" -> "--flag=no", "-rq" -> "--recursive=yes --quiet=yes" ("-qo DIR" -> "--quiet=yes -o DIR").
 * Returns a new argv (g_strfreev). */
char **cli_normalise_bool_flags(const CnnfxParams *p, int argc, char **argv, int *argc_out)
{
  GPtrArray *a = g_ptr_array_new();
  gboolean rest = FALSE;
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    if (rest || i == 0 || s[0] != '-' || !s[1]) {
      g_ptr_array_add(a, g_strdup(s));
      continue;
    }
    if (!strcmp(s, "--")) {
      rest = TRUE;
      g_ptr_array_add(a, g_strdup(s));
      continue;
    }
    if (s[1] != '-') { /* short flags, possibly grouped */
      GPtrArray *exp = g_ptr_array_new_with_free_func(g_free);
      const char *c = s + 1;
      for (; *c; c++) {
        char one[3] = {'-', *c, 0};
        const CnnfxParam *d = by_flag(p, one);
        if (!d || d->type != CNNFX_P_BOOL) break;
        g_ptr_array_add(exp, g_strconcat("--", cnnfx_param_flag(d), "=yes", NULL));
      }
      if (exp->len) {
        for (guint k = 0; k < exp->len; k++) g_ptr_array_add(a, g_strdup(exp->pdata[k]));
        if (*c) g_ptr_array_add(a, g_strconcat("-", c, NULL));
      } else {
        g_ptr_array_add(a, g_strdup(s));
      }
      g_ptr_array_free(exp, TRUE);
      continue;
    }
    const CnnfxParam *d = strchr(s, '=') ? NULL : by_flag(p, s);
    if (!d || d->type != CNNFX_P_BOOL) {
      g_ptr_array_add(a, g_strdup(s));
    } else if (i + 1 < argc && is_bool_word(argv[i + 1])) {
      g_ptr_array_add(a, g_strconcat(s, "=", argv[i + 1], NULL));
      i++;
    } else {
      g_ptr_array_add(a, g_strconcat(s, "=yes", NULL));
    }
  }
  *argc_out = (int)a->len;
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}

static const char *no_translate(const char *s, gpointer data)
{
  (void)data;
  return s;
}

static void ctx_free(gpointer data)
{
  g_free(data);
}

/* One group: the filter's own flags, then the shared ones, so `--help` lists them all. */
GOptionContext *cli_filter_option_context(const CnnfxFilterInfo *info, CnnfxParams *params)
{
  g_autofree char *summary =
    /* TRANSLATORS: `cnnfx FILTER --help` first line after "Usage: cnnfx FILTER [OPTION…]" */
    g_strdup_printf(_("INPUT... -o OUTDIR — %s"), cnnfx_param_text(info->help));
  GOptionContext *ctx = g_option_context_new(summary);
  g_autofree char *prg = g_strconcat("cnnfx ", info->name, NULL);
  g_set_prgname(prg); /* "Usage: cnnfx dream [OPTION…]" */
  OptCtx *oc = g_new0(OptCtx, 1);
  oc->params = params;
  GOptionGroup *g = g_option_group_new(info->name, cnnfx_param_text(info->title), cnnfx_param_text(info->help), oc,
                                       ctx_free);
  int n = cnnfx_params_count(params), nc = 0;
  while (cnnfx_common_params()[nc].name) nc++;
  GOptionEntry *es = g_new0(GOptionEntry, n + 1);
  GPtrArray *keep = g_ptr_array_new_with_free_func(g_free);
  int k = 0;
  for (int j = 0; j < n; j++) {
    /* filter's own first, then the common ones */
    int i = j < n - nc ? nc + j : j - (n - nc);
    const CnnfxParam *d = cnnfx_params_nth(params, i);
    if (d->scope == CNNFX_SCOPE_GUI) continue;
    GOptionEntry *e = &es[k++];
    e->long_name = cnnfx_param_flag(d);
    e->short_name = d->short_name;
    e->arg = G_OPTION_ARG_CALLBACK;
    e->arg_data = (gpointer)opt_cb;
    if (d->type == CNNFX_P_BOOL) e->flags = G_OPTION_FLAG_OPTIONAL_ARG;
    if (d->type == CNNFX_P_FILE || d->type == CNNFX_P_FILES || d->type == CNNFX_P_LAYER)
      e->flags |= G_OPTION_FLAG_FILENAME;
    char *desc = cli_param_description(d), *mv = cli_param_metavar(d);
    g_ptr_array_add(keep, desc);
    g_ptr_array_add(keep, mv);
    e->description = desc;
    e->arg_description = mv;
  }
  g_option_group_add_entries(g, es);
  g_ptr_array_add(keep, es);
  /* descriptions are translated already; the strings live as long as the group */
  g_option_group_set_translate_func(g, no_translate, keep, (GDestroyNotify)g_ptr_array_unref);
  g_option_context_set_main_group(ctx, g);
  return ctx;
}
