/* Finding a model, its preprocessing and labels: offline defaults (weights/offline.ini),
 * downloaded models (weights/models.ini + the user data dir), or a path. */
#include "netload.h"
#include "cnnfx-i18n.h"
#include "render.h"
#include "fetch.h"
#include "autofetch.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NL_ERROR g_quark_from_static_string("cnnfx-netload-error")

char *cli_weights_dir(void)
{
  const char *env = g_getenv("CNNFX_WEIGHTS_DIR");
  if (env) return g_strdup(env);
  g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
  if (exe) {
    /* build tree: BUILD/batch/cnnfx -> SRC/weights via the meson-recorded source dir */
    g_autofree char *d = g_path_get_dirname(exe);
    g_autofree char *cand = g_build_filename(d, "..", "share", "cnnfx", "weights", NULL);
    if (g_file_test(cand, G_FILE_TEST_IS_DIR)) return g_steal_pointer(&cand);
  }
  return g_strdup(CNNFX_SOURCE_WEIGHTS_DIR);
}

static gboolean read_floats(GKeyFile *kf, const char *g, const char *k, float *out, int n, GError **error)
{
  if (!g_key_file_has_key(kf, g, k, NULL)) return TRUE;
  gsize len = 0;
  g_autofree double *v = g_key_file_get_double_list(kf, g, k, &len, error);
  if (!v) return FALSE;
  for (int i = 0; i < n; i++) out[i] = (float)v[len == 1 ? 0 : MIN((gsize)i, len - 1)];
  return TRUE;
}

/* Lists may be written with ';' (GKeyFile) or ',' separators. */
static char **read_list(GKeyFile *kf, const char *g, const char *k)
{
  g_autofree char *v = g_key_file_get_string(kf, g, k, NULL);
  if (!v) return NULL;
  g_auto(GStrv) parts = g_strsplit_set(v, ";,", -1);
  GPtrArray *a = g_ptr_array_new();
  for (char **p = parts; *p; p++) {
    g_strstrip(*p);
    if (**p) g_ptr_array_add(a, g_strdup(*p));
  }
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}

static char **load_labels(const char *path, GError **error)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, error)) return NULL;
  g_strchomp(text);
  char **lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l; l++) g_strstrip(*l);
  return lines;
}

static CnnfxModel *load_onnx(const char *path, GError **error)
{
  g_autoptr(GMappedFile) mf = g_mapped_file_new(path, FALSE, error);
  if (!mf) return NULL;
  CnnfxModel *m = cnnfx_model_load(g_mapped_file_get_contents(mf), g_mapped_file_get_length(mf), error);
  if (!m) g_prefix_error(error, "%s: ", path);
  return m;
}

static void set_default_preproc(CnnfxNet *n, const char *filter)
{
  /* Classifiers see the whole photo at the size they were exported with. */
  gboolean classifier = !g_strcmp0(filter, "classify") || !g_strcmp0(filter, "fool") || !g_strcmp0(filter, "visualize");
  int64_t dims[CNNFX_MAX_DIMS];
  int nd = cnnfx_model_input_shape(n->model, 0, dims);
  n->pre.scale = 1;
  if (nd == 4 && dims[1] == 1) {
    n->pre.gray = TRUE;
    for (int c = 0; c < 3; c++) {
      n->pre.mean[c] = 0;
      n->pre.std[c] = 1;
    }
  } else {
    /* torchvision / ONNX zoo convention */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(n->pre.mean, mean, sizeof mean);
    memcpy(n->pre.std, std, sizeof std);
  }
  if (nd == 4 && dims[2] > 0 && dims[3] > 0) {
    /* A declared static size: classifiers with Flatten+Gemm need it; fully convolutional
     * models exported at one size run at any size, so only pin it for small inputs. */
    if (dims[2] <= 64 || classifier) {
      n->pre.fixed_h = (int)dims[2];
      n->pre.fixed_w = (int)dims[3];
    }
  }
}

/* Fill net fields from a manifest/offline section. */
static gboolean apply_section(CnnfxNet *n, GKeyFile *kf, const char *g, const char *base_dir, GError **error)
{
  /* input / output name tensors; in models.ini `input` is a description ("data_0 float[1,3,224,224]
   * (zoo README)"), so a value that is no tensor of the model keeps the model's own first input */
  g_autofree char *in = g_key_file_get_string(kf, g, "input", NULL);
  g_autofree char *out = g_key_file_get_string(kf, g, "output", NULL);
  if (in && cnnfx_model_has_value(n->model, in)) {
    g_free(n->input);
    n->input = g_steal_pointer(&in);
  }
  if (out && (cnnfx_model_has_value(n->model, out) || !strchr(out, ' '))) {
    g_free(n->output);
    n->output = g_steal_pointer(&out);
  }
  if (g_key_file_has_key(kf, g, "output_is_prob", NULL))
    n->output_is_prob = g_key_file_get_boolean(kf, g, "output_is_prob", NULL);
  if (g_key_file_has_key(kf, g, "scale", NULL)) n->pre.scale = (float)g_key_file_get_double(kf, g, "scale", NULL);
  if (!read_floats(kf, g, "mean", n->pre.mean, 3, error) || !read_floats(kf, g, "std", n->pre.std, 3, error))
    return FALSE;
  if (g_key_file_has_key(kf, g, "bgr", NULL)) n->pre.bgr = g_key_file_get_boolean(kf, g, "bgr", NULL);
  if (g_key_file_has_key(kf, g, "gray", NULL)) n->pre.gray = g_key_file_get_boolean(kf, g, "gray", NULL);
  if (g_key_file_has_key(kf, g, "input_size", NULL)) {
    gsize len = 0;
    g_autofree int *v = g_key_file_get_integer_list(kf, g, "input_size", &len, NULL);
    if (v && len >= 1) {
      n->pre.fixed_h = v[0];
      n->pre.fixed_w = len > 1 ? v[1] : v[0];
    } else {
      n->pre.fixed_h = n->pre.fixed_w = 0;
    }
  }
  char **l;
  /* models.ini writes dream_layer / content_layer (one each); plural keys take lists */
  if ((l = read_list(kf, g, "dream_layers")) || (l = read_list(kf, g, "dream_layer"))) {
    g_strfreev(n->dream_layers);
    n->dream_layers = l;
  }
  if ((l = read_list(kf, g, "style_layers"))) { g_strfreev(n->style_layers); n->style_layers = l; }
  if ((l = read_list(kf, g, "content_layers")) || (l = read_list(kf, g, "content_layer"))) {
    g_strfreev(n->content_layers);
    n->content_layers = l;
  }
  if (g_key_file_has_key(kf, g, "cam_layer", NULL)) {
    g_free(n->cam_layer);
    n->cam_layer = g_key_file_get_string(kf, g, "cam_layer", NULL);
  }
  if (g_key_file_has_key(kf, g, "tta", NULL)) {
    g_autofree char *t = g_key_file_get_string(kf, g, "tta", NULL);
    if (!t || (strcmp(t, "flip") && strcmp(t, "flip-translate") && strcmp(t, "none"))) {
      g_set_error(error, NL_ERROR, 4, "[%s] tta=%s: expected flip, flip-translate or none", g, t ? t : "");
      return FALSE;
    }
    n->tta = !strcmp(t, "flip-translate") ? 2 : !strcmp(t, "flip") ? 1 : 0;
  }
  if (g_key_file_has_key(kf, g, "labels", NULL) && !n->labels) {
    g_autofree char *lp = g_key_file_get_string(kf, g, "labels", NULL);
    g_autofree char *full = g_path_is_absolute(lp) ? g_strdup(lp) : g_build_filename(base_dir, lp, NULL);
    if (!(n->labels = load_labels(full, error))) return FALSE;
  }
  return TRUE;
}

static gboolean parse_bool_text(const char *v, gboolean *out)
{
  static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
  for (int i = 0; i < 4; i++) {
    if (!g_ascii_strcasecmp(v, yes[i])) return *out = TRUE, TRUE;
    if (!g_ascii_strcasecmp(v, no[i])) return *out = FALSE, TRUE;
  }
  return FALSE;
}

static gboolean parse_doubles(const char *v, double *out, int n)
{
  g_auto(GStrv) parts = g_strsplit_set(v, ",;", -1);
  int k = 0;
  double tmp[3];
  for (char **p = parts; *p; p++) {
    g_strstrip(*p);
    if (!**p) continue;
    char *end;
    double d = g_ascii_strtod(*p, &end);
    if (*end || k >= n || !isfinite(d)) return FALSE;
    tmp[k++] = d;
  }
  if (k != 1 && k != n) return FALSE;
  for (int i = 0; i < n; i++) out[i] = tmp[k == 1 ? 0 : i];
  return TRUE;
}

gboolean cli_net_overrides_set(NetOverrides *ov, const char *key, const char *value, GError **error)
{
  g_autofree char *k = g_strdelimit(g_strdup(key), "_", '-');
  const char *v = value ? value : "";
  if (!strcmp(k, "mean") || !strcmp(k, "std")) {
    gboolean mean = !strcmp(k, "mean");
    double d[3];
    if (!parse_doubles(v, d, 3) || (!mean && (d[0] == 0 || d[1] == 0 || d[2] == 0))) {
      g_set_error(error, NL_ERROR, 3, "--%s '%s': give one number or three (R,G,B)%s", k, v,
                  mean ? "" : ", none of them 0");
      return FALSE;
    }
    memcpy(mean ? ov->mean : ov->std, d, sizeof d);
    ov->set |= mean ? NET_OV_MEAN : NET_OV_STD;
  } else if (!strcmp(k, "scale")) {
    char *end;
    double d = g_ascii_strtod(v, &end);
    if (!*v || *end || !isfinite(d) || d == 0) {
      g_set_error(error, NL_ERROR, 3, "--scale '%s': give a non-zero number (x = (pixel_0..1 * scale - mean) / std, "
                  "e.g. 255 for models that take 0..255)", v);
      return FALSE;
    }
    ov->scale = (float)d;
    ov->set |= NET_OV_SCALE;
  } else if (!strcmp(k, "bgr") || !strcmp(k, "gray") || !strcmp(k, "output-is-prob")) {
    gboolean b = TRUE;
    if (*v && !parse_bool_text(v, &b)) {
      g_set_error(error, NL_ERROR, 3, "--%s '%s': give yes or no", k, v);
      return FALSE;
    }
    if (!strcmp(k, "bgr")) {
      ov->bgr = b;
      ov->set |= NET_OV_BGR;
    } else if (!strcmp(k, "gray")) {
      ov->gray = b;
      ov->set |= NET_OV_GRAY;
    } else {
      ov->output_is_prob = b;
      ov->set |= NET_OV_OUTPUT_IS_PROB;
    }
  } else if (!strcmp(k, "input-size")) {
    g_auto(GStrv) parts = g_strsplit_set(v, ",;xX", -1);
    guint np = g_strv_length(parts);
    int hw[2] = {0, 0};
    gboolean ok = np == 1 || np == 2;
    for (guint i = 0; ok && i < np; i++) {
      char *end;
      long x = strtol(g_strstrip(parts[i]), &end, 10);
      ok = *parts[i] && !*end && x >= 0 && x <= 65536;
      hw[i] = (int)x;
    }
    if (!ok || (np == 2 && (hw[0] == 0) != (hw[1] == 0))) {
      g_set_error(error, NL_ERROR, 3, "--input-size '%s': give N (square), H,W, or 0 for any size", v);
      return FALSE;
    }
    ov->input_h = hw[0];
    ov->input_w = np == 2 ? hw[1] : hw[0];
    ov->set |= NET_OV_INPUT_SIZE;
  } else {
    g_set_error(error, NL_ERROR, 3, "unknown preprocessing option '%s'", key);
    return FALSE;
  }
  return TRUE;
}

gboolean cli_net_overrides_from_params(NetOverrides *ov, const CnnfxParams *p, GError **error)
{
  static const char *const keys[] = {"mean", "std", "scale", "bgr", "gray", "input-size", "output-is-prob"};
  const CnnfxFilterInfo *info = cnnfx_params_filter(p);
  for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
    const CnnfxParam *d = NULL;
    for (const CnnfxParam *q = info->params; q->name; q++)
      if (!strcmp(q->name, keys[i])) d = q;
    for (const CnnfxParam *q = cnnfx_common_params(); !d && q->name; q++)
      if (!strcmp(q->name, keys[i])) d = q;
    if (!d) continue;
    g_autofree char *text = NULL;
    switch (d->type) {
    case CNNFX_P_INT:
      if (cnnfx_params_int(p, keys[i]) != (int)d->def) text = g_strdup_printf("%d", cnnfx_params_int(p, keys[i]));
      break;
    case CNNFX_P_DOUBLE: {
      double v = cnnfx_params_double(p, keys[i]);
      if (v != d->def) {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        text = g_strdup(g_ascii_dtostr(buf, sizeof buf, v));
      }
      break;
    }
    case CNNFX_P_BOOL:
      if (cnnfx_params_bool(p, keys[i]) != (d->def != 0)) text = g_strdup(cnnfx_params_bool(p, keys[i]) ? "yes" : "no");
      break;
    case CNNFX_P_STRINGS: {
      const char *const *l = cnnfx_params_strings(p, keys[i]);
      if (l && *l) text = g_strjoinv(",", (char **)l);
      break;
    }
    default: {
      const char *v = cnnfx_params_string(p, keys[i]);
      if (v && *v && g_strcmp0(v, d->def_str) && g_ascii_strcasecmp(v, "auto")) text = g_strdup(v);
    }
    }
    if (text && !cli_net_overrides_set(ov, keys[i], text, error)) return FALSE;
  }
  return TRUE;
}

static void apply_overrides(CnnfxNet *n, const NetOverrides *ov)
{
  if (!ov) return;
  for (int c = 0; c < 3; c++) {
    if (ov->set & NET_OV_MEAN) n->pre.mean[c] = (float)ov->mean[c];
    if (ov->set & NET_OV_STD) n->pre.std[c] = (float)ov->std[c];
  }
  if (ov->set & NET_OV_SCALE) n->pre.scale = ov->scale;
  if (ov->set & NET_OV_BGR) n->pre.bgr = ov->bgr;
  if (ov->set & NET_OV_GRAY) n->pre.gray = ov->gray;
  if (ov->set & NET_OV_INPUT_SIZE) {
    n->pre.fixed_h = ov->input_h;
    n->pre.fixed_w = ov->input_w;
  }
  if (ov->set & NET_OV_OUTPUT_IS_PROB) n->output_is_prob = ov->output_is_prob;
}

/* Classes of a classifier's output as declared (last dimension), 0 if unknown. */
static int64_t declared_classes(const CnnfxModel *m)
{
  int64_t d[CNNFX_MAX_DIMS];
  int nd = cnnfx_model_output_shape(m, 0, d);
  if (nd < 1) return 0;
  int64_t k = 0, other = 1;
  for (int i = 0; i < nd; i++) {
    if (d[i] > 1) {
      if (k) other *= d[i];
      else k = d[i];
    }
  }
  return other == 1 ? k : 0;
}

/* A model that runs at any size may still need H and W to be multiples of its total stride
 * (strided convolutions followed by upsampling and skip connections, e.g. fast-style and U-Net
 * networks).  Tried on an odd-sized grey image: the multiple (1 = none) that makes the forward
 * pass work, found by doubling; 0 when none does (or the model fails for another reason: the
 * filter then reports it). */
static int probe_pad_multiple(CnnfxNet *n)
{
  g_autoptr(CnnfxBackend) be = cnnfx_backend_new("cpu", NULL);
  if (!be) return 0;
  const char *targets[] = {n->output, NULL};
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_NONE, .targets = targets, .mem_limit = (size_t)1 << 30};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(n->model, be, &o, NULL);
  int64_t d[3] = {3, 77, 99};
  g_autoptr(CnnfxTensor) rgb = s ? cnnfx_tensor_new_f32(3, d, NULL) : NULL;
  if (!rgb) return 0;
  for (size_t i = 0; i < rgb->numel; i++) cnnfx_f32(rgb)[i] = 0.5f;
  int saved = n->pre.pad_to;
  for (int m = 1; m <= 64; m *= 2) {
    g_autoptr(GError) e = NULL;
    n->pre.pad_to = m;
    gboolean ok = cnnfx_net_forward(n, s, rgb, &e);
    n->pre.pad_to = saved;
    if (ok) return m;
    if (!g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_SHAPE)) return 0;
  }
  return 0;
}

static void fmt_triple(GString *s, const char *what, const float *v)
{
  if (v[0] == v[1] && v[1] == v[2]) g_string_append_printf(s, "%s %g", what, v[0]);
  else g_string_append_printf(s, "%s %g,%g,%g", what, v[0], v[1], v[2]);
}

static char *describe(const CnnfxNet *n, const char *filter, const char *about, const char *source, const char *how)
{
  g_autoptr(GString) s = g_string_new(NULL);
  const CnnfxPreproc *p = &n->pre;
  g_string_append_printf(s, _("model %s"), n->name);
  if (about && *about) g_string_append_printf(s, " (%s)", about); /* the section's about=: what the model is */
  g_string_append_printf(s, _("; preprocessing (%s): x = (%s*%g - mean)/std, "),
                         source, p->gray ? "luma" : p->bgr ? "BGR" : "RGB", p->scale);
  fmt_triple(s, "mean", p->mean);
  g_string_append(s, ", ");
  fmt_triple(s, "std", p->std);
  if (p->fixed_h && p->fixed_w) g_string_append_printf(s, _(", input %dx%d"), p->fixed_w, p->fixed_h);
  else if (p->pad_to > 1) g_string_append_printf(s, _(", any input size padded to multiples of %d"), p->pad_to);
  else g_string_append(s, _(", any input size"));
  /* only the filters that read class scores care what the output is (dream and style read layers) */
  if (!filter || (strcmp(filter, "dream") && strcmp(filter, "style")))
    g_string_append(s, n->output_is_prob ? _(", output probabilities") : _(", output logits"));
  if (how) g_string_append_printf(s, "; %s", how);
  return g_string_free(g_steal_pointer(&s), FALSE);
}

CnnfxNet *cli_load_net(const char *model, const char *labels, const char *filter, const NetOverrides *ov,
                       char **summary, GError **error)
{
  g_autoptr(CnnfxNet) n = g_new0(CnnfxNet, 1);
  g_autofree char *wdir = cli_weights_dir();
  g_autofree char *offline_path = g_build_filename(wdir, "offline.ini", NULL);
  g_autoptr(GKeyFile) off = g_key_file_new();
  gboolean have_off = g_key_file_load_from_file(off, offline_path, G_KEY_FILE_NONE, NULL);
  g_autofree char *section = NULL;
  g_autofree char *path = NULL;
  g_autofree char *source = NULL, *how = NULL, *about = NULL;
  GKeyFile *kf = NULL;
  g_autoptr(CnnfxManifest) man = NULL;

  if (labels && !(n->labels = load_labels(labels, error))) return NULL;
  g_autofree char *fetched = model ? NULL : cli_autofetch(filter); /* first use: the preferred model */
  if (fetched) model = fetched;
  if (model && (g_str_has_suffix(model, ".onnx") || strchr(model, '/')) ) {
    path = g_strdup(model);
  } else {
    const char *name = model;
    if (!name) {
      if (!have_off || !(section = g_key_file_get_string(off, "defaults", filter, NULL))) {
        g_set_error(error, NL_ERROR, 1, _("no offline default model for %s (missing %s); give --model"), filter,
                    offline_path);
        return NULL;
      }
      name = section;
    }
    if (have_off && g_key_file_has_group(off, name) && g_key_file_has_key(off, name, "file", NULL)) {
      g_autofree char *f = g_key_file_get_string(off, name, "file", NULL);
      path = g_build_filename(wdir, f, NULL);
      kf = off;
      source = g_strdup_printf(_("from [%s] of %s"), name, offline_path);
    } else {
      man = cnnfx_manifest_load(NULL, error);
      if (!man) return NULL;
      const CnnfxModelEntry *e = cnnfx_manifest_find(man, name, error);
      if (!e) return NULL;
      path = cnnfx_model_present(e, error);
      if (!path) {
        g_prefix_error(error, _("model '%s' is not downloaded yet (run `cnnfx models fetch %s`): "), name, name);
        return NULL;
      }
      kf = man->kf;
      source = g_strdup_printf(_("from the [%s] section of the model manifest"), name);
    }
    how = g_strdup(_("change with --mean/--std/--scale/--bgr/--input-size/--output-is-prob"));
    if (!section) section = g_strdup(name);
  }
  if (!(n->model = load_onnx(path, error))) return NULL;
  n->name = g_strdup(section ? section : path);
  n->input = g_strdup(cnnfx_model_input_name(n->model, 0));
  n->output = g_strdup(cnnfx_model_output_name(n->model, 0));
  set_default_preproc(n, filter);
  n->output_is_prob = -1; /* not said: from the graph below */
  if (kf && !apply_section(n, kf, section, wdir, error)) return NULL;
  if (kf) about = g_key_file_get_string(kf, section, "about", NULL);
  if (!kf) {
    /* A model given as a path may have a sidecar MODEL.ini with the same keys. */
    g_autofree char *base = g_str_has_suffix(path, ".onnx") ? g_strndup(path, strlen(path) - 5) : g_strdup(path);
    g_autofree char *side = g_strconcat(base, ".ini", NULL);
    g_autoptr(GKeyFile) sk = g_key_file_new();
    g_autoptr(GError) se = NULL;
    if (g_key_file_load_from_file(sk, side, G_KEY_FILE_NONE, &se)) {
      g_autofree char *grp = g_key_file_get_start_group(sk);
      g_autofree char *dir = g_path_get_dirname(path);
      if (grp && !apply_section(n, sk, grp, dir, error)) {
        g_prefix_error(error, "%s: ", side);
        return NULL;
      }
      if (grp) about = g_key_file_get_string(sk, grp, "about", NULL);
      source = g_strdup_printf(_("from %s"), side);
      how = g_strdup_printf(_("change with --mean/--std/--scale/--bgr/--input-size/--output-is-prob or in %s"), side);
    } else if (g_file_test(side, G_FILE_TEST_EXISTS)) {
      g_set_error(error, NL_ERROR, 4, "%s: %s", side, se->message);
      return NULL;
    } else {
      /* Neither manifest nor sidecar: guess, and say so. */
      int64_t dims[CNNFX_MAX_DIMS];
      int nd = cnnfx_model_input_shape(n->model, 0, dims);
      int64_t k = declared_classes(n->model);
      gboolean classifier = !g_strcmp0(filter, "classify") || !g_strcmp0(filter, "fool") ||
                            !g_strcmp0(filter, "visualize");
      if (nd == 4 && dims[1] == 3 && k == 1000) {
        /* an ImageNet classifier: torchvision / ONNX zoo convention, trained at 224 */
        if (classifier && !n->pre.fixed_h) n->pre.fixed_h = n->pre.fixed_w = 224;
        g_autofree char *lp = g_build_filename(wdir, "imagenet1k.labels", NULL);
        gboolean il = !n->labels && g_file_test(lp, G_FILE_TEST_EXISTS) && (n->labels = load_labels(lp, NULL));
        source = g_strdup_printf(_("guessed for a 1000-class RGB model: ImageNet%s, no %s found"),
                                 il ? _(" (and its labels)") : "", side);
      } else if (nd == 4 && dims[1] == 1) {
        source = g_strdup_printf(_("guessed for a 1-channel model, no %s found"), side);
      } else {
        source = g_strdup_printf(_("guessed: ImageNet statistics, no %s found"), side);
      }
      how = g_strdup_printf(_("change with --mean/--std/--scale/--bgr/--input-size/--output-is-prob or write %s with "
                              "the same keys as a weights/offline.ini section"), side);
    }
  }
  apply_overrides(n, ov);
  if (ov && ov->set) {
    g_autofree char *o = source;
    source = g_strdup_printf(_("%s, with command-line settings"), o ? o : _("default"));
  }
  if (n->output_is_prob != FALSE && n->output_is_prob != TRUE)
    n->output_is_prob = cnnfx_net_output_is_softmax(n);
  if (!(n->pre.fixed_h && n->pre.fixed_w) && cnnfx_model_has_value(n->model, n->input) &&
      cnnfx_model_has_value(n->model, n->output)) {
    int m = probe_pad_multiple(n);
    n->pre.pad_to = m > 1 ? m : 0;
  }
  if (!cnnfx_model_has_value(n->model, n->input) || !cnnfx_model_has_value(n->model, n->output)) {
    g_set_error(error, NL_ERROR, 2, _("%s: input '%s' or output '%s' not in the model"), path, n->input, n->output);
    return NULL;
  }
  if (summary && !g_strcmp0(filter, "style") && !n->style_layers)
    *summary = g_strdup_printf(_("model %s (no style layers: run as a feed-forward fast-style network, RGB 0..255 "
                                 "in and out, any size)"), n->name);
  else if (summary)
    *summary = describe(n, filter, about, source ? source : "default", how);
  return g_steal_pointer(&n);
}

CnnfxTensor *cli_image_to_tensor(const CnnfxImage *img, GError **error)
{
  return cnnfx_pixels_to_tensor(img->px, img->width, img->height, img->channels, error); /* render.c */
}

void cli_tensor_to_image(const CnnfxTensor *t, CnnfxImage *img)
{
  cnnfx_tensor_to_pixels(t, img->px, img->width, img->height, img->channels); /* render.c */
}
