/* cnnfx-gimp: the GIMP 3 plug-in.  Filters ▸ Neural ▸ Deep Dream…, Style Transfer…, Classify…,
 * Fool the Network…, Visualize….
 *
 * The procedures' arguments and dialogs are built from the filters' parameter tables
 * (cnnfx_common_params() + cnnfx_filter_infos()); the filters themselves are the shared filter
 * layer (core/filters) and the front-end library (batch/netload.h: models, label drawing).
 * Pixels travel as "R'G'B'A float" in the drawable's colour space; the filter runs in a worker
 * thread while the main thread keeps the progress bar alive; the result goes through the shadow
 * buffer in one undo group, so Cancel or an error leaves the image as it was. */
#include "plugin-pixels.h"
#include "fetch.h"
#include <glib/gi18n-lib.h>
#include <libgimp/gimp.h>
#include <libgimp/gimpui.h>
#include <math.h>
#include <string.h>

#define PLUG_IN_BINARY "cnnfx-gimp"
#define PROC_PREFIX "plug-in-cnnfx-"
#define MENU_PATH "<Image>/Filters/Neural"

typedef struct _CnnfxPlugIn {
  GimpPlugIn parent_instance;
} CnnfxPlugIn;
typedef struct _CnnfxPlugInClass {
  GimpPlugInClass parent_class;
} CnnfxPlugInClass;

#define CNNFX_TYPE_PLUG_IN (cnnfx_plug_in_get_type())
GType cnnfx_plug_in_get_type(void) G_GNUC_CONST;
G_DEFINE_TYPE(CnnfxPlugIn, cnnfx_plug_in, GIMP_TYPE_PLUG_IN)

/* ---- table entries -> argument names ------------------------------------------------------ */

/* The names the plug-in adds itself (not from the tables). */
static gboolean is_reserved(const char *name)
{
  static const char *const r[] = {"run-mode", "image", "drawables", "model-source", "model-file", "new-layer",
                                  "style-drawable", "style-file", "heatmap-layer", NULL};
  return g_strv_contains(r, name);
}

/* A valid GParamSpec name (lowercase letters, digits, '-'; starts with a letter), or NULL. */
static char *arg_name(const char *name)
{
  if (!name || !*name) return NULL;
  GString *s = g_string_new(NULL);
  if (!g_ascii_isalpha(name[0])) g_string_append(s, "opt-");
  for (const char *c = name; *c; c++)
    g_string_append_c(s, g_ascii_isalnum(*c) ? g_ascii_tolower(*c) : '-');
  return g_string_free(s, FALSE);
}

/* Table entries of a filter that become arguments: the shared ones first, then the filter's. */
typedef struct {
  const CnnfxParam *p;
  char *arg;
  gboolean common;
} Arg;

static void arg_clear(gpointer a)
{
  g_free(((Arg *)a)->arg);
}

static GArray *filter_args(const CnnfxFilterInfo *info)
{
  GArray *a = g_array_new(FALSE, TRUE, sizeof(Arg));
  g_array_set_clear_func(a, arg_clear);
  for (int pass = 0; pass < 2; pass++) {
    const CnnfxParam *t = pass == 0 ? cnnfx_common_params() : info->params;
    for (; t && t->name; t++) {
      if (t->scope == CNNFX_SCOPE_CLI) continue;
      char *n = arg_name(t->name);
      gboolean dup = is_reserved(n);
      for (guint i = 0; i < a->len && !dup; i++) dup = !strcmp(g_array_index(a, Arg, i).arg, n);
      if (dup) {
        g_free(n);
        continue;
      }
      Arg e = {t, n, pass == 0};
      g_array_append_val(a, e);
    }
  }
  return a;
}

static const Arg *find_arg(GArray *args, const char *name)
{
  for (guint i = 0; i < args->len; i++)
    if (!strcmp(g_array_index(args, Arg, i).p->name, name)) return &g_array_index(args, Arg, i);
  return NULL;
}

static const char *tr(const char *s)
{
  return s && *s ? _(s) : "";
}

/* ---- models ------------------------------------------------------------------------------ */

static void setup_weights_dir(void)
{
  /* cli_weights_dir() looks next to the executable and in the source tree; the plug-in sits in
   * GIMP's plug-in folder, so point it at the installed weights. */
  if (!g_getenv("CNNFX_WEIGHTS_DIR") && g_file_test(CNNFX_PLUGIN_WEIGHTS_DIR, G_FILE_TEST_IS_DIR))
    g_setenv("CNNFX_WEIGHTS_DIR", CNNFX_PLUGIN_WEIGHTS_DIR, TRUE);
}

static gboolean use_contains(const char *use, const char *what)
{
  g_auto(GStrv) u = g_strsplit_set(use ? use : "", ",; ", -1);
  return g_strv_contains((const char *const *)u, what);
}

/* The model chooser: the offline default, other offline models, downloaded models, a file. */
static GimpChoice *model_choice(const char *filter, char **default_nick)
{
  GimpChoice *ch = gimp_choice_new();
  int id = 0;
  g_autofree char *wdir = cli_weights_dir();
  g_autofree char *off_path = g_build_filename(wdir, "offline.ini", NULL);
  g_autoptr(GKeyFile) off = g_key_file_new();
  g_autofree char *def = NULL;
  if (g_key_file_load_from_file(off, off_path, G_KEY_FILE_NONE, NULL))
    def = g_key_file_get_string(off, "defaults", filter, NULL);
  g_autofree char *def_label = def ? g_strdup_printf(_("Offline default (%s)"), def) : g_strdup(_("Offline default"));
  gimp_choice_add(ch, "default", id++, def_label, _("The small model shipped with cnnfx; works without a download"));
  g_auto(GStrv) groups = g_key_file_get_groups(off, NULL);
  for (char **g = groups; g && *g; g++) {
    if (!g_key_file_has_key(off, *g, "file", NULL) || !g_strcmp0(*g, def)) continue;
    g_autofree char *lab = g_strdup_printf(_("%s (offline)"), *g);
    gimp_choice_add(ch, *g, id++, lab, NULL);
  }
  g_autoptr(CnnfxManifest) man = cnnfx_manifest_load(NULL, NULL);
  for (guint i = 0; man && i < man->models->len; i++) {
    const CnnfxModelEntry *e = man->models->pdata[i];
    gboolean fits = use_contains(e->use, filter) || (!strcmp(filter, "style") && use_contains(e->use, "fast-style")) ||
                    (!strcmp(filter, "fool") && use_contains(e->use, "classify")) ||
                    (!strcmp(filter, "visualize") && use_contains(e->use, "classify"));
    if (!fits || g_key_file_has_group(off, e->name)) continue;
    g_autofree char *path = cnnfx_model_present(e, NULL);
    if (!path) continue; /* not downloaded: `cnnfx models fetch NAME` */
    g_autofree char *lab = g_strdup_printf(_("%s (downloaded)"), e->title ? e->title : e->name);
    gimp_choice_add(ch, e->name, id++, lab, NULL);
  }
  gimp_choice_add(ch, "file", id++, _("ONNX file…"), _("A model file chosen below"));
  *default_nick = g_strdup("default");
  return ch;
}

/* ---- procedures --------------------------------------------------------------------------- */

static GimpChoice *table_choice(const CnnfxParam *p)
{
  GimpChoice *ch = gimp_choice_new();
  g_auto(GStrv) nicks = g_strsplit(p->choices ? p->choices : "", "|", -1);
  g_auto(GStrv) labels = p->choice_labels ? g_strsplit(p->choice_labels, "|", -1) : NULL;
  for (int i = 0; nicks[i]; i++) {
    const char *lab = labels && i < (int)g_strv_length(labels) ? tr(labels[i]) : nicks[i];
    gimp_choice_add(ch, nicks[i], i, lab, NULL);
  }
  return ch;
}

static void add_table_arg(GimpProcedure *proc, const Arg *a, const char *filter)
{
  const CnnfxParam *p = a->p;
  const char *nick = tr(p->label), *blurb = tr(p->help);
  GParamFlags fl = G_PARAM_READWRITE;
  if (!strcmp(p->name, "model")) {
    /* scripts give a name or a path ("" = the offline default); the dialog shows a chooser */
    gimp_procedure_add_string_argument(proc, a->arg, _("Model"),
                                       _("Model name or ONNX file (empty: the offline default)"), "", fl);
    return;
  }
  if (!strcmp(p->name, "device") && p->type != CNNFX_P_CHOICE) {
    GimpChoice *ch = gimp_choice_new_with_values("auto", 0, _("Automatic"), NULL, "cpu", 1, _("CPU"), NULL, "cuda", 2,
                                                 _("CUDA GPU"), NULL, NULL);
    gimp_procedure_add_choice_argument(proc, a->arg, _("Device"), _("Where the network runs"), ch,
                                       p->def_str && *p->def_str ? p->def_str : "auto", fl);
    return;
  }
  switch (p->type) {
  case CNNFX_P_INT:
    gimp_procedure_add_int_argument(proc, a->arg, nick, blurb, (int)MAX(p->min, G_MININT), (int)MIN(p->max, G_MAXINT),
                                    (int)p->def, fl);
    break;
  case CNNFX_P_DOUBLE:
    gimp_procedure_add_double_argument(proc, a->arg, nick, blurb, p->min, p->max, p->def, fl);
    break;
  case CNNFX_P_BOOL:
    gimp_procedure_add_boolean_argument(proc, a->arg, nick, blurb, p->def != 0, fl);
    break;
  case CNNFX_P_CHOICE: {
    GimpChoice *ch = table_choice(p);
    gimp_procedure_add_choice_argument(proc, a->arg, nick, blurb, ch, p->def_str, fl);
    break;
  }
  case CNNFX_P_FILE:
    gimp_procedure_add_file_argument(proc, a->arg, nick, blurb, GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL, fl);
    break;
  case CNNFX_P_COLOR:
    gimp_procedure_add_color_from_string_argument(proc, a->arg, nick, blurb, FALSE,
                                                  p->def_str ? p->def_str : "#000000", fl);
    break;
  case CNNFX_P_LAYER:
    gimp_procedure_add_drawable_argument(proc, a->arg, nick, blurb, TRUE, fl);
    break;
  case CNNFX_P_FILES:
  case CNNFX_P_STRINGS:
  case CNNFX_P_STRING:
  case CNNFX_P_CLASS:
  case CNNFX_P_MODEL_LAYER:
  default:
    gimp_procedure_add_string_argument(proc, a->arg, nick, blurb, p->def_str ? p->def_str : "", fl);
    break;
  }
  (void)filter;
}

static GimpValueArray *run_filter(GimpProcedure *proc, GimpRunMode mode, GimpImage *image, GimpDrawable **drawables,
                                  GimpProcedureConfig *config, gpointer data);

static GimpProcedure *create_procedure(GimpPlugIn *plug_in, const gchar *name)
{
  setup_weights_dir();
  const CnnfxFilterInfo *info = NULL;
  for (const CnnfxFilterInfo *const *f = cnnfx_filter_infos(); *f; f++) {
    g_autofree char *pn = g_strconcat(PROC_PREFIX, (*f)->name, NULL);
    if (!strcmp(pn, name)) info = *f;
  }
  if (!info) return NULL;
  GimpProcedure *proc = gimp_image_procedure_new(plug_in, name, GIMP_PDB_PROC_TYPE_PLUGIN, run_filter,
                                                 (gpointer)info, NULL);
  gimp_procedure_set_image_types(proc, "RGB*, GRAY*");
  gimp_procedure_set_sensitivity_mask(proc, GIMP_PROCEDURE_SENSITIVE_DRAWABLE);
  g_autofree char *menu = g_strconcat(tr(info->title), "…", NULL);
  gimp_procedure_set_menu_label(proc, menu);
  gimp_procedure_add_menu_path(proc, MENU_PATH);
  gimp_procedure_set_documentation(proc, tr(info->help), tr(info->help), name);
  gimp_procedure_set_attribution(proc, "cnnfx authors", "cnnfx authors", "2026");

  g_autoptr(GArray) args = filter_args(info);
  gboolean have_model = FALSE, have_device = FALSE, have_seed = FALSE, have_mem = FALSE;
  for (guint i = 0; i < args->len; i++) {
    const Arg *a = &g_array_index(args, Arg, i);
    add_table_arg(proc, a, info->name);
    have_model |= !strcmp(a->p->name, "model");
    have_device |= !strcmp(a->p->name, "device");
    have_seed |= !strcmp(a->p->name, "seed");
    have_mem |= !strcmp(a->p->name, "max-memory");
  }
  /* The shared arguments the CLI has as its own flags, while the shared table does not list them. */
  GParamFlags fl = G_PARAM_READWRITE;
  if (!have_model)
    gimp_procedure_add_string_argument(proc, "model", _("Model"),
                                       _("Model name or ONNX file (empty: the offline default)"), "", fl);
  if (!have_device) {
    GimpChoice *ch = gimp_choice_new_with_values("auto", 0, _("Automatic"), NULL, "cpu", 1, _("CPU"), NULL, "cuda", 2,
                                                 _("CUDA GPU"), NULL, NULL);
    gimp_procedure_add_choice_argument(proc, "device", _("Device"), _("Where the network runs"), ch, "auto", fl);
  }
  if (!have_seed) gimp_procedure_add_int_argument(proc, "seed", _("Random seed"), _("Seed of the random numbers"),
                                                  0, G_MAXINT, 0, fl);
  if (!have_mem)
    gimp_procedure_add_int_argument(proc, "max-memory", _("Memory bound (MiB)"),
                                    _("Tensor memory bound; big images are processed in tiles to fit"), 64, 1 << 20,
                                    2048, fl);
  /* GUI and script arguments of the plug-in itself */
  if (!strcmp(info->name, "dream"))
    gimp_procedure_add_boolean_argument(proc, "new-layer", _("As new layer"),
                                        _("Put the dream on a new layer above instead of changing this one"), FALSE, fl);
  if (!strcmp(info->name, "style")) {
    gimp_procedure_add_drawable_argument(proc, "style-drawable", _("Style layer"),
                                         _("Take the style from this layer (of any open image)"), TRUE, fl);
    gimp_procedure_add_file_argument(proc, "style-file", _("Style image file"),
                                     _("Take the style from this image file"), GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE,
                                     NULL, fl);
  }
  if (!strcmp(info->name, "classify")) {
    gimp_procedure_add_boolean_argument(proc, "heatmap-layer", _("Add heat-map layer"),
                                        _("Non-interactive runs add the heat map as a new layer"), TRUE, fl);
  }
  /* The model chooser of the dialog (config only: the list is read afresh at each run). */
  g_autofree char *def_nick = NULL;
  GimpChoice *mc = model_choice(info->name, &def_nick);
  gimp_procedure_add_choice_aux_argument(proc, "model-source", _("Model"), _("Which network to use"), mc, def_nick,
                                         fl);
  gimp_procedure_add_file_aux_argument(proc, "model-file", _("Model file"), _("An ONNX model file"),
                                       GIMP_FILE_CHOOSER_ACTION_OPEN, TRUE, NULL, fl);

  /* return values */
  if (!strcmp(info->name, "classify")) {
    gimp_procedure_add_string_array_return_value(proc, "labels", _("Labels"), _("Top labels, most probable first"),
                                                 fl);
    gimp_procedure_add_double_array_return_value(proc, "probabilities", _("Probabilities"),
                                                 _("Probability of each label"), fl);
    gimp_procedure_add_layer_return_value(proc, "heatmap", _("Heat-map layer"), _("The heat-map layer, if added"),
                                          TRUE, fl);
    gimp_procedure_add_layer_return_value(proc, "labels-layer", _("Labels layer"), _("The labels layer, if added"),
                                          TRUE, fl);
  } else if (!strcmp(info->name, "fool")) {
    gimp_procedure_add_string_return_value(proc, "original-label", _("Original label"), _("Top label before"), "", fl);
    gimp_procedure_add_double_return_value(proc, "original-probability", _("Original probability"),
                                           _("Its probability"), 0, 1, 0, fl);
    gimp_procedure_add_string_return_value(proc, "new-label", _("New label"), _("Top label after"), "", fl);
    gimp_procedure_add_double_return_value(proc, "new-probability", _("New probability"), _("Its probability"), 0, 1,
                                           0, fl);
    gimp_procedure_add_layer_return_value(proc, "adversarial-layer", _("Adversarial layer"),
                                          _("The adversarial image"), TRUE, fl);
    gimp_procedure_add_layer_return_value(proc, "noise-layer", _("Noise layer"), _("The amplified noise"), TRUE, fl);
  } else if (!strcmp(info->name, "visualize")) {
    gimp_procedure_add_image_return_value(proc, "new-image", _("New image"), _("The visualisation"), FALSE, fl);
  } else if (!strcmp(info->name, "dream")) {
    gimp_procedure_add_layer_return_value(proc, "layer", _("Layer"), _("The layer holding the dream"), TRUE, fl);
  }
  return proc;
}

static GList *query_procedures(GimpPlugIn *plug_in)
{
  GList *l = NULL;
  for (const CnnfxFilterInfo *const *f = cnnfx_filter_infos(); *f; f++)
    l = g_list_append(l, g_strconcat(PROC_PREFIX, (*f)->name, NULL));
  return l;
}

/* Does DIR hold any LANG/LC_MESSAGES/cnnfx-gimp.mo? */
static gboolean has_catalog(const char *dir)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *e;
  while (d && (e = g_dir_read_name(d))) {
    g_autofree char *mo = g_build_filename(dir, e, "LC_MESSAGES", GETTEXT_PACKAGE ".mo", NULL);
    if (g_file_test(mo, G_FILE_TEST_IS_REGULAR)) return TRUE;
  }
  return FALSE;
}

/* Path of `to` relative to the folder `from` (both absolute). */
static char *relative_path(const char *from, const char *to)
{
  g_auto(GStrv) a = g_strsplit(from, "/", -1), b = g_strsplit(to, "/", -1);
  int i = 0;
  while (a[i] && b[i] && !strcmp(a[i], b[i])) i++;
  GString *s = g_string_new(NULL);
  for (int k = i; a[k]; k++)
    if (*a[k]) g_string_append(s, "../");
  for (int k = i; b[k]; k++)
    if (*b[k]) g_string_append_printf(s, "%s/", b[k]);
  if (s->len) g_string_truncate(s, s->len - 1);
  return g_string_free(s, FALSE);
}

/* Catalogs of the domain "cnnfx-gimp": the plug-in folder's locale/ when installed there,
 * else the system locale folder (GIMP wants a path relative to the plug-in folder). */
static gboolean set_i18n(GimpPlugIn *plug_in, const gchar *name, gchar **domain, gchar **catalog_dir)
{
  g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
  g_autofree char *dir = exe ? g_path_get_dirname(exe) : NULL;
  g_autofree char *local = dir ? g_build_filename(dir, "locale", NULL) : NULL;
  if (local && has_catalog(local)) {
    *domain = g_strdup(GETTEXT_PACKAGE);
    *catalog_dir = g_strdup("locale");
    return TRUE;
  }
  if (dir && has_catalog(CNNFX_PLUGIN_LOCALEDIR)) {
    *domain = g_strdup(GETTEXT_PACKAGE);
    *catalog_dir = relative_path(dir, CNNFX_PLUGIN_LOCALEDIR);
    return TRUE;
  }
  return FALSE; /* no catalogs installed: English */
}

static void cnnfx_plug_in_class_init(CnnfxPlugInClass *klass)
{
  GimpPlugInClass *pc = GIMP_PLUG_IN_CLASS(klass);
  pc->query_procedures = query_procedures;
  pc->create_procedure = create_procedure;
  pc->set_i18n = set_i18n;
}

static void cnnfx_plug_in_init(CnnfxPlugIn *p)
{
}

/* ---- dialog ------------------------------------------------------------------------------ */

static void set_sensitivity(GimpProcedureDialog *dlg, GimpProcedureConfig *config, GArray *args, const Arg *a)
{
  const char *cond = a->p->sensitive_if;
  if (!cond || !*cond) return;
  const char *ne = strstr(cond, "!="), *eq = strchr(cond, '=');
  g_autofree char *other = g_strndup(cond, ne ? (gsize)(ne - cond) : eq ? (gsize)(eq - cond) : strlen(cond));
  const Arg *o = find_arg(args, other);
  if (!o) return;
  if (!eq) {
    if (o->p->type == CNNFX_P_BOOL)
      gimp_procedure_dialog_set_sensitive(dlg, a->arg, TRUE, G_OBJECT(config), o->arg, FALSE);
    return;
  }
  if (o->p->type != CNNFX_P_CHOICE) return;
  g_auto(GStrv) vals = g_strsplit(ne ? ne + 2 : eq + 1, "|", -1);
  GimpValueArray *va = gimp_value_array_new(0);
  for (char **v = vals; *v; v++) {
    GValue gv = G_VALUE_INIT;
    g_value_init(&gv, G_TYPE_STRING);
    g_value_set_string(&gv, *v);
    gimp_value_array_append(va, &gv);
    g_value_unset(&gv);
  }
  /* takes ownership of va */
  gimp_procedure_dialog_set_sensitive_if_in(dlg, a->arg, G_OBJECT(config), o->arg, va, ne == NULL);
}

static void tune_widget(GimpProcedureDialog *dlg, const Arg *a)
{
  const CnnfxParam *p = a->p;
  if (p->type != CNNFX_P_INT && p->type != CNNFX_P_DOUBLE) return;
  if (p->log_scale && p->min > 0) {
    GtkWidget *w = gimp_procedure_dialog_get_scale_entry(dlg, a->arg, 1.0);
    if (w) gimp_scale_entry_set_logarithmic(GIMP_SCALE_ENTRY(w), TRUE);
    return;
  }
  GtkWidget *w = gimp_procedure_dialog_get_spin_scale(dlg, a->arg, 1.0);
  if (!w || !GIMP_IS_SPIN_SCALE(w)) return;
  if (p->step > 0) gtk_spin_button_set_increments(GTK_SPIN_BUTTON(w), p->step, p->page > 0 ? p->page : 10 * p->step);
  if (p->type == CNNFX_P_DOUBLE) {
    /* enough digits for the step or the default (tv-weight 0.01, l2 1e-4) */
    double ref = p->step > 0 ? p->step : fabs(p->def) > 0 ? fabs(p->def) / 10 : 0.01;
    int digits = (int)ceil(-log10(ref));
    gtk_spin_button_set_digits(GTK_SPIN_BUTTON(w), CLAMP(digits, 1, 6));
  }
  /* very wide ranges (weights up to 1e9): keep the slider on the useful part */
  double span = p->max - p->min;
  if (span > 1000 * (fabs(p->def) + 1)) {
    double hi = MIN(p->max, MAX(10 * fabs(p->def), p->min + 10));
    gimp_spin_scale_set_scale_limits(GIMP_SPIN_SCALE(w), p->min, hi);
  }
}

/* The table's main group: no group or "Basic" (compared untranslated). */
static gboolean is_basic(const char *group)
{
  return !group || !*group || !strcmp(group, "Basic");
}

static gboolean show_dialog(GimpProcedure *proc, GimpProcedureConfig *config, const CnnfxFilterInfo *info)
{
  gimp_ui_init(PLUG_IN_BINARY);
  GtkWidget *dlg = gimp_procedure_dialog_new(proc, config, tr(info->title));
  GimpProcedureDialog *pd = GIMP_PROCEDURE_DIALOG(dlg);
  g_autoptr(GArray) args = filter_args(info);

  /* widgets that differ from the defaults must exist before the boxes are filled */
  for (guint i = 0; i < args->len; i++) tune_widget(pd, &g_array_index(args, Arg, i));
  /* group table entries: Basic (no group) and the named groups, in table order */
  GPtrArray *groups = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(groups, g_strdup(""));
  for (guint i = 0; i < args->len; i++) {
    const Arg *a = &g_array_index(args, Arg, i);
    if (a->common || !strcmp(a->p->name, "model") || !strcmp(a->p->name, "device")) continue;
    const char *g = is_basic(a->p->group) ? "" : a->p->group;
    gboolean seen = FALSE;
    for (guint k = 0; k < groups->len; k++) seen |= !strcmp(groups->pdata[k], g);
    if (!seen) g_ptr_array_add(groups, g_strdup(g));
  }
  GList *top = NULL;
  for (guint k = 0; k < groups->len; k++) {
    const char *g = groups->pdata[k];
    GList *props = NULL;
    if (k == 0 && !strcmp(info->name, "style"))
      props = g_list_append(g_list_append(props, (gpointer) "style-drawable"), (gpointer) "style-file");
    for (guint i = 0; i < args->len; i++) {
      const Arg *a = &g_array_index(args, Arg, i);
      if (a->common || !strcmp(a->p->name, "model") || !strcmp(a->p->name, "device")) continue;
      if (!strcmp(is_basic(a->p->group) ? "" : a->p->group, g)) props = g_list_append(props, a->arg);
    }
    if (k == 0 && !strcmp(info->name, "dream")) props = g_list_append(props, (gpointer) "new-layer");
    if (!props) continue;
    g_autofree char *box = g_strdup_printf("group-box-%u", k);
    gimp_procedure_dialog_fill_box_list(pd, box, props);
    g_list_free(props);
    if (k == 0) {
      top = g_list_append(top, g_strdup(box));
    } else {
      g_autofree char *lab = g_strdup_printf("group-label-%u", k);
      g_autofree char *exp = g_strdup_printf("group-expander-%u", k);
      gimp_procedure_dialog_get_label(pd, lab, tr(g), FALSE, FALSE);
      gimp_procedure_dialog_fill_expander(pd, exp, lab, FALSE, box);
      top = g_list_append(top, g_strdup(exp));
    }
  }
  /* model, device and the other shared settings in their own frame */
  GList *mprops = NULL;
  mprops = g_list_append(mprops, (gpointer) "model-source");
  mprops = g_list_append(mprops, (gpointer) "model-file");
  mprops = g_list_append(mprops, (gpointer) "device");
  GList *adv = NULL;
  const char *adv_group = NULL;
  for (guint i = 0; i < args->len; i++) {
    const Arg *a = &g_array_index(args, Arg, i);
    if (!a->common || !strcmp(a->p->name, "model") || !strcmp(a->p->name, "device")) continue;
    if (is_basic(a->p->group)) {
      mprops = g_list_append(mprops, a->arg);
    } else {
      adv = g_list_append(adv, a->arg);
      if (!adv_group) adv_group = a->p->group;
    }
  }
  if (!find_arg(args, "seed")) mprops = g_list_append(mprops, (gpointer) "seed");
  if (!find_arg(args, "max-memory")) mprops = g_list_append(mprops, (gpointer) "max-memory");
  if (adv) {
    /* the shared table's advanced entries (preprocessing of a model given as a file...) fold away */
    gimp_procedure_dialog_fill_box_list(pd, "model-adv-box", adv);
    g_list_free(adv);
    gimp_procedure_dialog_get_label(pd, "model-adv-label", tr(adv_group), FALSE, FALSE);
    gimp_procedure_dialog_fill_expander(pd, "model-adv-expander", "model-adv-label", FALSE, "model-adv-box");
    mprops = g_list_append(mprops, (gpointer) "model-adv-expander");
  }
  gimp_procedure_dialog_fill_box_list(pd, "model-box", mprops);
  g_list_free(mprops);
  gimp_procedure_dialog_get_label(pd, "model-label", _("Network"), FALSE, FALSE);
  gimp_procedure_dialog_fill_frame(pd, "model-frame", "model-label", FALSE, "model-box");
  top = g_list_append(top, g_strdup("model-frame"));

  gimp_procedure_dialog_fill_list(pd, top);
  g_list_free_full(top, g_free);
  for (guint i = 0; i < args->len; i++) set_sensitivity(pd, config, args, &g_array_index(args, Arg, i));
  GimpValueArray *va = gimp_value_array_new(1);
  GValue gv = G_VALUE_INIT;
  g_value_init(&gv, G_TYPE_STRING);
  g_value_set_string(&gv, "file");
  gimp_value_array_append(va, &gv);
  g_value_unset(&gv);
  gimp_procedure_dialog_set_sensitive_if_in(pd, "model-file", G_OBJECT(config), "model-source", va, TRUE); /* owns va */
  g_ptr_array_free(groups, TRUE);

  gboolean ok = gimp_procedure_dialog_run(pd);
  gtk_widget_destroy(dlg);
  if (ok) {
    /* the chooser decides the script-visible "model" argument (remembered as last value) */
    g_autofree char *src = NULL;
    GFile *mf = NULL;
    g_object_get(config, "model-source", &src, "model-file", &mf, NULL);
    g_autofree char *model = NULL;
    if (!g_strcmp0(src, "file")) model = mf ? g_file_get_path(mf) : g_strdup("");
    else if (g_strcmp0(src, "default")) model = g_strdup(src);
    else model = g_strdup("");
    g_object_set(config, "model", model ? model : "", NULL);
    g_clear_object(&mf);
  }
  return ok;
}

/* ---- the worker ---------------------------------------------------------------------------- */

typedef struct {
  const CnnfxFilterInfo *info;
  CnnfxParams *params;
  char *model, *device, *labels;
  guint64 seed;
  size_t max_memory;
  CnnfxTensor *image;           /* [3,h,w]; dream/style/fool replace it */
  CnnfxTensor **styles;
  int n_styles;
  CnnfxTensor *guide;
  char *fast_model;
  gboolean want_heat;
  /* results */
  int k;
  CnnfxScore *top;
  char **top_labels;            /* owned copies (the net is freed in the worker) */
  CnnfxTensor *heat, *noise, *vis;
  CnnfxFoolReport rep;
  char *before_label, *after_label;
  gboolean ok;
  GError *error;
  /* progress */
  GMutex lock;
  double frac;
  char *what;
  volatile int cancel;
  gint done;
} Work;

static void work_clear(Work *w)
{
  if (w->params) cnnfx_params_free(w->params);
  g_free(w->model);
  g_free(w->device);
  g_free(w->labels);
  if (w->image) cnnfx_tensor_unref(w->image);
  for (int i = 0; i < w->n_styles; i++)
    if (w->styles[i]) cnnfx_tensor_unref(w->styles[i]);
  g_free(w->styles);
  if (w->guide) cnnfx_tensor_unref(w->guide);
  g_free(w->fast_model);
  g_free(w->top);
  g_strfreev(w->top_labels);
  if (w->heat) cnnfx_tensor_unref(w->heat);
  if (w->noise) cnnfx_tensor_unref(w->noise);
  if (w->vis) cnnfx_tensor_unref(w->vis);
  g_free(w->before_label);
  g_free(w->after_label);
  g_clear_error(&w->error);
  g_free(w->what);
  g_mutex_clear(&w->lock);
}

static void on_progress(double frac, const char *what, gpointer user)
{
  Work *w = user;
  g_mutex_lock(&w->lock);
  w->frac = frac;
  if (g_strcmp0(w->what, what)) {
    g_free(w->what);
    w->what = g_strdup(what);
  }
  g_mutex_unlock(&w->lock);
}

static char *score_label(const CnnfxScore *s, char **labels)
{
  if (s->label) return g_strdup(s->label);
  (void)labels;
  return g_strdup_printf(_("class %d"), s->index);
}

static gpointer worker(gpointer data)
{
  Work *w = data;
  GError **err = &w->error;
  g_autoptr(CnnfxBackend) be = cnnfx_backend_new(w->device && *w->device ? w->device : "auto", err);
  g_autoptr(CnnfxNet) net = NULL;
  const char *f = w->info->name;
  NetOverrides ov = {0}; /* preprocessing of a model given as a path (mean, std, scale...) */
  if (be && cli_net_overrides_from_params(&ov, w->params, err))
    net = cli_load_net(w->model && *w->model ? w->model : NULL, w->labels, f, &ov, NULL, err);
  if (!net) goto out;
  CnnfxRun run = {.backend = be, .seed = w->seed, .max_memory = w->max_memory, .cancel = &w->cancel,
                  .progress = on_progress, .user = w};
  if (!strcmp(f, "dream")) {
    w->ok = cnnfx_dream(net, w->params, &run, w->image, w->guide, err);
  } else if (!strcmp(f, "style")) {
    if (w->fast_model) {
      g_autoptr(GMappedFile) mf = g_mapped_file_new(w->fast_model, FALSE, err);
      g_autoptr(CnnfxModel) m = mf ? cnnfx_model_load(g_mapped_file_get_contents(mf), g_mapped_file_get_length(mf), err)
                                   : NULL;
      w->ok = m && cnnfx_fast_style(m, &run, w->image, err);
    } else if (!net->style_layers) {
      w->ok = cnnfx_fast_style(net->model, &run, w->image, err); /* a feed-forward style network */
    } else {
      w->ok = cnnfx_style(net, w->params, &run, w->image, w->styles, w->n_styles, err);
    }
  } else if (!strcmp(f, "classify")) {
    w->k = MAX(1, cnnfx_params_int(w->params, "top"));
    w->top = g_new0(CnnfxScore, w->k);
    w->ok = cnnfx_classify(net, w->params, &run, w->image, w->top, w->k, w->want_heat ? &w->heat : NULL, err);
    if (w->ok) {
      w->top_labels = g_new0(char *, w->k + 1);
      for (int i = 0; i < w->k; i++) {
        w->top_labels[i] = w->top[i].index >= 0 ? score_label(&w->top[i], net->labels) : g_strdup("");
        w->top[i].label = w->top_labels[i];
      }
    }
  } else if (!strcmp(f, "fool")) {
    w->ok = cnnfx_fool(net, w->params, &run, w->image, &w->noise, &w->rep, err);
    if (w->ok) {
      w->before_label = score_label(&w->rep.before, net->labels);
      w->after_label = score_label(&w->rep.after, net->labels);
      w->rep.before.label = w->rep.after.label = w->rep.target.label = NULL;
    }
  } else {
    w->vis = cnnfx_visualize(net, w->params, &run, w->image, err);
    w->ok = w->vis != NULL;
  }
out:
  g_atomic_int_set(&w->done, 1);
  return NULL;
}

typedef struct {
  Work *w;
  GMainLoop *loop;
  const char *title;
  char *shown;
} Poll;

static gboolean poll_cb(gpointer data)
{
  Poll *p = data;
  if (g_atomic_int_get(&p->w->done)) {
    g_main_loop_quit(p->loop);
    return G_SOURCE_REMOVE;
  }
  g_mutex_lock(&p->w->lock);
  double frac = p->w->frac;
  g_autofree char *what = g_strdup(p->w->what);
  g_mutex_unlock(&p->w->lock);
  if (what && g_strcmp0(what, p->shown)) {
    g_free(p->shown);
    p->shown = g_strdup(what);
    g_autofree char *t = g_strdup_printf("%s: %s", p->title, what);
    gimp_progress_set_text(t);
  }
  /* GIMP gone or the progress cancelled: stop the filter (the image is not touched yet) */
  if (!gimp_progress_update(CLAMP(frac, 0.0, 1.0))) p->w->cancel = 1;
  return G_SOURCE_CONTINUE;
}

/* Runs the filter in a thread; the main thread keeps the progress bar (libgimp calls) alive. */
static void run_work(Work *w, const char *title)
{
  g_mutex_init(&w->lock);
  gimp_progress_init(title);
  GThread *t = g_thread_new("cnnfx-filter", worker, w);
  Poll p = {w, g_main_loop_new(NULL, FALSE), title, NULL};
  g_timeout_add(100, poll_cb, &p);
  g_main_loop_run(p.loop);
  g_thread_join(t);
  g_main_loop_unref(p.loop);
  g_free(p.shown);
  gimp_progress_update(1.0);
  gimp_progress_end();
}

/* ---- pixels -------------------------------------------------------------------------------- */

static const Babl *rgba_format(GimpDrawable *d)
{
  return babl_format_with_space("R'G'B'A float", gimp_drawable_get_format(d));
}

static float *read_rgba(GimpDrawable *d, int x, int y, int w, int h, GError **error)
{
  float *px = g_try_malloc((size_t)w * h * 4 * sizeof(float));
  if (!px) {
    g_set_error(error, GIMP_PLUG_IN_ERROR, 0, _("Not enough memory for a %d×%d image"), w, h);
    return NULL;
  }
  GeglBuffer *buf = gimp_drawable_get_buffer(d);
  gegl_buffer_get(buf, GEGL_RECTANGLE(x, y, w, h), 1.0, rgba_format(d), px, GEGL_AUTO_ROWSTRIDE, GEGL_ABYSS_NONE);
  g_object_unref(buf);
  return px;
}

/* Whole drawable as a tensor (style / guide sources). */
static CnnfxTensor *drawable_tensor(GimpDrawable *d, GError **error)
{
  int w = gimp_drawable_get_width(d), h = gimp_drawable_get_height(d);
  g_autofree float *px = read_rgba(d, 0, 0, w, h, error);
  return px ? px_rgba_to_tensor(px, w, h, error) : NULL;
}

static CnnfxTensor *file_tensor(const char *path, GError **error)
{
  g_autoptr(CnnfxImage) img = cnnfx_image_load(path, error);
  if (!img) {
    g_prefix_error(error, "%s: ", path);
    return NULL;
  }
  return cli_image_to_tensor(img, error);
}

/* Write w x h RGBA through the shadow buffer; merge_shadow applies the selection (feathered
 * edges blend) and pushes one undo step. */
static void write_shadow(GimpDrawable *d, int x, int y, int w, int h, const float *px)
{
  GeglBuffer *sh = gimp_drawable_get_shadow_buffer(d);
  gegl_buffer_set(sh, GEGL_RECTANGLE(x, y, w, h), 0, rgba_format(d), px, GEGL_AUTO_ROWSTRIDE);
  gegl_buffer_flush(sh);
  g_object_unref(sh);
  gimp_drawable_merge_shadow(d, TRUE);
  gimp_drawable_update(d, x, y, w, h);
}

static GimpLayer *new_layer(GimpImage *image, GimpDrawable *ref, const char *name, int x, int y, int w, int h,
                            const float *px, double opacity)
{
  gboolean gray = gimp_image_get_base_type(image) == GIMP_GRAY;
  GimpLayer *l = gimp_layer_new(image, name, w, h, gray ? GIMP_GRAYA_IMAGE : GIMP_RGBA_IMAGE, opacity,
                                GIMP_LAYER_MODE_NORMAL);
  if (!l) return NULL;
  int ox = 0, oy = 0;
  if (ref) gimp_drawable_get_offsets(ref, &ox, &oy);
  GimpLayer *parent = ref ? GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(ref))) : NULL;
  int pos = ref && GIMP_IS_LAYER(ref) ? gimp_image_get_item_position(image, GIMP_ITEM(ref)) : 0;
  gimp_image_insert_layer(image, l, parent, pos);
  gimp_layer_set_offsets(l, ox + x, oy + y);
  GeglBuffer *buf = gimp_drawable_get_buffer(GIMP_DRAWABLE(l));
  gegl_buffer_set(buf, GEGL_RECTANGLE(0, 0, w, h), 0, rgba_format(GIMP_DRAWABLE(l)), px, GEGL_AUTO_ROWSTRIDE);
  gegl_buffer_flush(buf);
  g_object_unref(buf);
  gimp_drawable_update(GIMP_DRAWABLE(l), 0, 0, w, h);
  return l;
}

/* ---- parameters from the config ------------------------------------------------------------ */

static gboolean params_from_config(GimpProcedureConfig *config, GArray *args, CnnfxParams *params, GError **error)
{
  for (guint i = 0; i < args->len; i++) {
    const Arg *a = &g_array_index(args, Arg, i);
    const CnnfxParam *p = a->p;
    g_autofree char *val = NULL;
    if (!strcmp(p->name, "model") || !strcmp(p->name, "device")) continue; /* read by the caller */
    switch (p->type) {
    case CNNFX_P_INT: {
      int v;
      g_object_get(config, a->arg, &v, NULL);
      val = g_strdup_printf("%d", v);
      break;
    }
    case CNNFX_P_DOUBLE: {
      double v;
      g_object_get(config, a->arg, &v, NULL);
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      val = g_strdup(g_ascii_dtostr(buf, sizeof buf, v));
      break;
    }
    case CNNFX_P_BOOL: {
      gboolean v;
      g_object_get(config, a->arg, &v, NULL);
      val = g_strdup(v ? "yes" : "no");
      break;
    }
    case CNNFX_P_FILE: {
      GFile *f = NULL;
      g_object_get(config, a->arg, &f, NULL);
      if (f) val = g_file_get_path(f);
      g_clear_object(&f);
      break;
    }
    case CNNFX_P_COLOR: {
      GeglColor *c = NULL;
      g_object_get(config, a->arg, &c, NULL);
      if (c) {
        double rgba[4];
        gegl_color_get_rgba(c, &rgba[0], &rgba[1], &rgba[2], &rgba[3]);
        val = g_strdup_printf("#%02x%02x%02x", (int)(CLAMP(rgba[0], 0, 1) * 255 + .5),
                              (int)(CLAMP(rgba[1], 0, 1) * 255 + .5), (int)(CLAMP(rgba[2], 0, 1) * 255 + .5));
        g_object_unref(c);
      }
      break;
    }
    case CNNFX_P_LAYER:
      continue; /* handled by the filter-specific code */
    default:
      g_object_get(config, a->arg, &val, NULL);
      break;
    }
    if (!val || (!*val && p->type != CNNFX_P_CHOICE)) continue; /* unset: the table's default */
    if (p->type == CNNFX_P_FILES || p->type == CNNFX_P_STRINGS) {
      g_auto(GStrv) parts = g_strsplit_set(val, p->type == CNNFX_P_FILES ? "\n,;" : "\n", -1);
      for (char **s = parts; *s; s++) {
        g_strstrip(*s);
        if (**s && !cnnfx_params_set(params, p->name, *s, error)) return FALSE;
      }
      continue;
    }
    GError *e = NULL;
    if (!cnnfx_params_set(params, p->name, val, &e)) {
      /* a shared entry the filter's value set does not hold is read by the plug-in itself */
      if (a->common) {
        g_error_free(e);
        continue;
      }
      g_set_error(error, GIMP_PLUG_IN_ERROR, 0, "%s: %s", tr(p->label), e->message);
      g_error_free(e);
      return FALSE;
    }
  }
  return TRUE;
}

static char *config_string(GimpProcedureConfig *config, const char *name)
{
  GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(config), name);
  if (!ps) return NULL;
  char *s = NULL;
  if (G_PARAM_SPEC_VALUE_TYPE(ps) == G_TYPE_STRING) g_object_get(config, name, &s, NULL);
  return s;
}

static int config_int(GimpProcedureConfig *config, const char *name, int def)
{
  GParamSpec *ps = g_object_class_find_property(G_OBJECT_GET_CLASS(config), name);
  if (!ps) return def;
  int v = def;
  if (G_PARAM_SPEC_VALUE_TYPE(ps) == G_TYPE_INT) g_object_get(config, name, &v, NULL);
  return v;
}

/* ---- classify result dialog ----------------------------------------------------------------- */

typedef struct {
  GimpImage *image;
  GimpDrawable *drawable;
  Work *w;
  int x, y, width, height;
  const char *cmap;
  double opacity;
  GimpLayer *heat_layer, *labels_layer;
} Outputs;

static GimpLayer *add_heat_layer(Outputs *o)
{
  if (!o->w->heat) return NULL;
  g_autofree float *px = px_heatmap_rgba(o->w->heat, o->cmap, o->width, o->height);
  if (!px) return NULL;
  return new_layer(o->image, o->drawable, _("Heat map"), o->x, o->y, o->width, o->height, px, 100 * o->opacity);
}

static GimpLayer *add_labels_layer(Outputs *o)
{
  g_autofree float *px = px_labels_rgba(o->w->top, o->w->k, o->width, o->height, NULL);
  if (!px) return NULL;
  return new_layer(o->image, o->drawable, _("Labels"), o->x, o->y, o->width, o->height, px, 100);
}

static void classify_dialog(Outputs *o)
{
  enum { RESP_HEAT = 1, RESP_LABELS = 2 };
  GtkWidget *dlg = gimp_dialog_new(_("Classify"), PLUG_IN_BINARY, NULL, 0, gimp_standard_help_func,
                                   PROC_PREFIX "classify", _("Add _heat-map layer"), RESP_HEAT,
                                   _("Add _labels layer"), RESP_LABELS, _("_Close"), GTK_RESPONSE_CLOSE, NULL);
  GtkWidget *grid = gtk_grid_new();
  gtk_grid_set_row_spacing(GTK_GRID(grid), 6);
  gtk_grid_set_column_spacing(GTK_GRID(grid), 12);
  gtk_container_set_border_width(GTK_CONTAINER(grid), 12);
  gtk_box_pack_start(GTK_BOX(gtk_dialog_get_content_area(GTK_DIALOG(dlg))), grid, TRUE, TRUE, 0);
  for (int i = 0; i < o->w->k; i++) {
    if (o->w->top[i].index < 0) continue;
    GtkWidget *l = gtk_label_new(o->w->top_labels[i]);
    gtk_label_set_xalign(GTK_LABEL(l), 0);
    GtkWidget *bar = gtk_progress_bar_new();
    gtk_progress_bar_set_fraction(GTK_PROGRESS_BAR(bar), CLAMP(o->w->top[i].prob, 0, 1));
    g_autofree char *pct = g_strdup_printf("%.1f %%", 100 * o->w->top[i].prob);
    gtk_progress_bar_set_text(GTK_PROGRESS_BAR(bar), pct);
    gtk_progress_bar_set_show_text(GTK_PROGRESS_BAR(bar), TRUE);
    gtk_widget_set_hexpand(bar, TRUE);
    gtk_widget_set_size_request(bar, 240, -1);
    gtk_grid_attach(GTK_GRID(grid), l, 0, i, 1, 1);
    gtk_grid_attach(GTK_GRID(grid), bar, 1, i, 1, 1);
  }
  gtk_dialog_set_response_sensitive(GTK_DIALOG(dlg), RESP_HEAT, o->w->heat != NULL);
  gtk_widget_show_all(dlg);
  for (;;) {
    int r = gtk_dialog_run(GTK_DIALOG(dlg));
    if (r != RESP_HEAT && r != RESP_LABELS) break;
    gimp_image_undo_group_start(o->image);
    if (r == RESP_HEAT) o->heat_layer = add_heat_layer(o);
    else o->labels_layer = add_labels_layer(o);
    gimp_image_undo_group_end(o->image);
    gimp_displays_flush();
    gtk_dialog_set_response_sensitive(GTK_DIALOG(dlg), r, FALSE);
  }
  gtk_widget_destroy(dlg);
}

/* ---- run ------------------------------------------------------------------------------------ */

static GimpValueArray *fail(GimpProcedure *proc, GimpPDBStatusType st, GError *e)
{
  return gimp_procedure_new_return_values(proc, st, e);
}

static GimpValueArray *run_filter(GimpProcedure *proc, GimpRunMode mode, GimpImage *image, GimpDrawable **drawables,
                                  GimpProcedureConfig *config, gpointer data)
{
  const CnnfxFilterInfo *info = data;
  const char *f = info->name;
  gegl_init(NULL, NULL);
  setup_weights_dir();
  GError *error = NULL;
  int nd = drawables ? (int)gimp_core_object_array_get_length((GObject **)drawables) : 0;
  if (nd != 1) {
    g_set_error(&error, GIMP_PLUG_IN_ERROR, 0, _("%s works on exactly one layer (%d selected)"), tr(info->title), nd);
    return fail(proc, GIMP_PDB_CALLING_ERROR, error);
  }
  GimpDrawable *d = drawables[0];
  if (mode == GIMP_RUN_INTERACTIVE && !show_dialog(proc, config, info))
    return fail(proc, GIMP_PDB_CANCEL, NULL);

  g_autoptr(GArray) args = filter_args(info);
  Work w = {.info = info, .params = cnnfx_params_new(info)};
  GimpValueArray *ret = NULL;
  if (!w.params || !params_from_config(config, args, w.params, &error)) {
    work_clear(&w);
    return fail(proc, GIMP_PDB_CALLING_ERROR, error);
  }
  w.model = config_string(config, "model");
  w.device = config_string(config, "device");
  {
    /* a labels file for a model given as a path, when the shared table has one */
    const Arg *la = find_arg(args, "labels");
    if (la && la->p->type == CNNFX_P_FILE) {
      GFile *lf = NULL;
      g_object_get(config, la->arg, &lf, NULL);
      if (lf) w.labels = g_file_get_path(lf);
      g_clear_object(&lf);
    } else if (la) {
      w.labels = config_string(config, la->arg);
    }
    if (w.labels && !*w.labels) g_clear_pointer(&w.labels, g_free);
  }
  w.seed = (guint64)config_int(config, "seed", 0);
  w.max_memory = (size_t)config_int(config, "max-memory", 2048) << 20;

  int x, y, width, height;
  if (!gimp_drawable_mask_intersect(d, &x, &y, &width, &height) || width <= 0 || height <= 0) {
    g_set_error(&error, GIMP_PLUG_IN_ERROR, 0, _("The selection does not touch this layer"));
    work_clear(&w);
    return fail(proc, GIMP_PDB_EXECUTION_ERROR, error);
  }
  g_autofree float *px = read_rgba(d, x, y, width, height, &error);
  if (!px || !(w.image = px_rgba_to_tensor(px, width, height, &error))) goto error;

  if (!strcmp(f, "dream")) {
    const char *g = cnnfx_params_string(w.params, "guide");
    if (g && *g && !(w.guide = file_tensor(g, &error))) goto error;
  } else if (!strcmp(f, "style")) {
    const char *fm = cnnfx_params_string(w.params, "fast-model");
    if (fm && *fm) w.fast_model = g_strdup(fm);
    GPtrArray *st = g_ptr_array_new();
    GimpDrawable *sd = NULL;
    GFile *sf = NULL;
    g_object_get(config, "style-drawable", &sd, "style-file", &sf, NULL);
    CnnfxTensor *t;
    if (sd) {
      if (!(t = drawable_tensor(sd, &error))) goto style_err;
      g_ptr_array_add(st, t);
    }
    if (sf) {
      g_autofree char *path = g_file_get_path(sf);
      if (!(t = file_tensor(path, &error))) goto style_err;
      g_ptr_array_add(st, t);
    }
    const char *const *files = cnnfx_params_strings(w.params, "style");
    for (; files && *files; files++) {
      if (!(t = file_tensor(*files, &error))) goto style_err;
      g_ptr_array_add(st, t);
    }
    if (!st->len && !(t = px_builtin_style(256, &error))) goto style_err;
    if (!st->len) g_ptr_array_add(st, t); /* no style given: the built-in pattern */
  style_err:
    g_clear_object(&sd);
    g_clear_object(&sf);
    w.n_styles = (int)st->len;
    w.styles = (CnnfxTensor **)g_ptr_array_free(st, FALSE);
    if (error) goto error;
    const char *const *bl = cnnfx_params_strings(w.params, "style-blend");
    if (bl && *bl && (int)g_strv_length((char **)bl) != w.n_styles) {
      g_set_error(&error, GIMP_PLUG_IN_ERROR, 0, _("%s has %u weights for %d style images"), tr("Style blend"),
                  g_strv_length((char **)bl), w.n_styles);
      goto error;
    }
  } else if (!strcmp(f, "classify")) {
    gboolean hl = TRUE;
    g_object_get(config, "heatmap-layer", &hl, NULL);
    w.want_heat = g_strcmp0(cnnfx_params_string(w.params, "overlay"), "none") != 0 &&
                  (hl || mode == GIMP_RUN_INTERACTIVE);
  }

  run_work(&w, tr(info->title));
  if (!w.ok) {
    if (w.error && g_error_matches(w.error, CNNFX_ERROR, CNNFX_ERROR_CANCELLED)) {
      work_clear(&w);
      return fail(proc, GIMP_PDB_CANCEL, NULL);
    }
    error = w.error ? g_steal_pointer(&w.error) : g_error_new(GIMP_PLUG_IN_ERROR, 0, _("The filter failed"));
    goto error;
  }

  ret = gimp_procedure_new_return_values(proc, GIMP_PDB_SUCCESS, NULL);
  if (!strcmp(f, "dream") || !strcmp(f, "style")) {
    px_tensor_to_rgba(w.image, px, width, height);
    gboolean as_new = FALSE;
    if (!strcmp(f, "dream")) g_object_get(config, "new-layer", &as_new, NULL);
    gimp_image_undo_group_start(image);
    GimpDrawable *target = d;
    if (as_new && GIMP_IS_LAYER(d)) {
      GimpLayer *copy = gimp_layer_copy(GIMP_LAYER(d));
      GimpLayer *parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(d)));
      gimp_image_insert_layer(image, copy, parent, gimp_image_get_item_position(image, GIMP_ITEM(d)));
      gimp_item_set_name(GIMP_ITEM(copy), tr(info->title));
      target = GIMP_DRAWABLE(copy);
    }
    write_shadow(target, x, y, width, height, px);
    gimp_image_undo_group_end(image);
    if (!strcmp(f, "dream")) GIMP_VALUES_SET_LAYER(ret, 1, GIMP_IS_LAYER(target) ? GIMP_LAYER(target) : NULL);
  } else if (!strcmp(f, "classify")) {
    Outputs o = {image, d, &w, x, y, width, height, cnnfx_params_string(w.params, "colormap"),
                 cnnfx_params_double(w.params, "opacity"), NULL, NULL};
    if (mode == GIMP_RUN_INTERACTIVE) {
      classify_dialog(&o);
    } else {
      gimp_image_undo_group_start(image);
      if (w.heat) o.heat_layer = add_heat_layer(&o);
      if (cnnfx_params_bool(w.params, "labels-image")) o.labels_layer = add_labels_layer(&o);
      gimp_image_undo_group_end(image);
    }
    int n = 0;
    while (n < w.k && w.top[n].index >= 0) n++;
    g_autofree double *probs = g_new0(double, MAX(n, 1));
    for (int i = 0; i < n; i++) probs[i] = w.top[i].prob;
    char **labels = g_new0(char *, n + 1);
    for (int i = 0; i < n; i++) labels[i] = w.top_labels[i];
    GIMP_VALUES_SET_STRV(ret, 1, (const char **)labels);
    g_free(labels);
    GIMP_VALUES_SET_DOUBLE_ARRAY(ret, 2, probs, n);
    GIMP_VALUES_SET_LAYER(ret, 3, o.heat_layer);
    GIMP_VALUES_SET_LAYER(ret, 4, o.labels_layer);
  } else if (!strcmp(f, "fool")) {
    px_tensor_to_rgba(w.image, px, width, height);
    gimp_image_undo_group_start(image);
    GimpLayer *adv = NULL, *noise = NULL;
    if (GIMP_IS_LAYER(d)) {
      adv = gimp_layer_copy(GIMP_LAYER(d));
      GimpLayer *parent = GIMP_LAYER(gimp_item_get_parent(GIMP_ITEM(d)));
      gimp_image_insert_layer(image, adv, parent, gimp_image_get_item_position(image, GIMP_ITEM(d)));
      gimp_item_set_name(GIMP_ITEM(adv), _("Adversarial"));
      write_shadow(GIMP_DRAWABLE(adv), x, y, width, height, px);
    } else {
      write_shadow(d, x, y, width, height, px);
    }
    if (w.noise) {
      g_autofree float *npx = g_try_malloc((size_t)width * height * 4 * sizeof(float));
      if (npx) {
        for (size_t i = 0; i < (size_t)width * height; i++) npx[i * 4 + 3] = 1;
        px_tensor_to_rgba(w.noise, npx, width, height);
        noise = new_layer(image, adv ? GIMP_DRAWABLE(adv) : d, _("Noise (amplified)"), x, y, width, height, npx, 100);
        if (noise) gimp_item_set_visible(GIMP_ITEM(noise), FALSE);
      }
    }
    gimp_image_undo_group_end(image);
    g_autofree char *msg = g_strdup_printf("%s (%.1f %%) → %s (%.1f %%)%s", w.before_label, 100 * w.rep.before.prob,
                                           w.after_label, 100 * w.rep.after.prob,
                                           w.rep.fooled ? "" : _(" — not fooled"));
    gimp_message(msg);
    GIMP_VALUES_SET_STRING(ret, 1, w.before_label);
    GIMP_VALUES_SET_DOUBLE(ret, 2, CLAMP(w.rep.before.prob, 0, 1));
    GIMP_VALUES_SET_STRING(ret, 3, w.after_label);
    GIMP_VALUES_SET_DOUBLE(ret, 4, CLAMP(w.rep.after.prob, 0, 1));
    GIMP_VALUES_SET_LAYER(ret, 5, adv);
    GIMP_VALUES_SET_LAYER(ret, 6, noise);
  } else {
    int vw = (int)w.vis->dims[2], vh = (int)w.vis->dims[1];
    g_autofree float *vpx = g_try_malloc((size_t)vw * vh * 4 * sizeof(float));
    if (!vpx) {
      g_set_error(&error, GIMP_PLUG_IN_ERROR, 0, _("Not enough memory for a %d×%d image"), vw, vh);
      gimp_value_array_unref(ret);
      ret = NULL;
      goto error;
    }
    for (size_t i = 0; i < (size_t)vw * vh; i++) vpx[i * 4 + 3] = 1;
    px_tensor_to_rgba(w.vis, vpx, vw, vh);
    GimpImage *img = gimp_image_new(vw, vh, GIMP_RGB);
    gimp_image_undo_disable(img);
    GimpLayer *l = new_layer(img, NULL, tr(info->title), 0, 0, vw, vh, vpx, 100);
    (void)l;
    gimp_image_undo_enable(img);
    if (mode == GIMP_RUN_INTERACTIVE) gimp_display_new(img);
    GIMP_VALUES_SET_IMAGE(ret, 1, img);
  }
  work_clear(&w);
  if (mode != GIMP_RUN_NONINTERACTIVE) gimp_displays_flush();
  return ret;

error:
  work_clear(&w);
  return fail(proc, GIMP_PDB_EXECUTION_ERROR, error);
}

GIMP_MAIN(CNNFX_TYPE_PLUG_IN)
