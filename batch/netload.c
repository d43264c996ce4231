/* Finding a model, its preprocessing and labels: offline defaults (weights/offline.ini),
 * downloaded models (weights/models.ini + the user data dir), or a path. */
#include "netload.h"
#include "fetch.h"
#include "autofetch.h"
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
  if (g_key_file_has_key(kf, g, "labels", NULL) && !n->labels) {
    g_autofree char *lp = g_key_file_get_string(kf, g, "labels", NULL);
    g_autofree char *full = g_path_is_absolute(lp) ? g_strdup(lp) : g_build_filename(base_dir, lp, NULL);
    if (!(n->labels = load_labels(full, error))) return FALSE;
  }
  return TRUE;
}

CnnfxNet *cli_load_net(const char *model, const char *labels, const char *filter, GError **error)
{
  g_autoptr(CnnfxNet) n = g_new0(CnnfxNet, 1);
  g_autofree char *wdir = cli_weights_dir();
  g_autofree char *offline_path = g_build_filename(wdir, "offline.ini", NULL);
  g_autoptr(GKeyFile) off = g_key_file_new();
  gboolean have_off = g_key_file_load_from_file(off, offline_path, G_KEY_FILE_NONE, NULL);
  g_autofree char *section = NULL;
  g_autofree char *path = NULL;
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
        g_set_error(error, NL_ERROR, 1, "no offline default model for %s (missing %s); give --model", filter,
                    offline_path);
        return NULL;
      }
      name = section;
    }
    if (have_off && g_key_file_has_group(off, name) && g_key_file_has_key(off, name, "file", NULL)) {
      g_autofree char *f = g_key_file_get_string(off, name, "file", NULL);
      path = g_build_filename(wdir, f, NULL);
      kf = off;
    } else {
      man = cnnfx_manifest_load(NULL, error);
      if (!man) return NULL;
      const CnnfxModelEntry *e = cnnfx_manifest_find(man, name, error);
      if (!e) return NULL;
      path = cnnfx_model_present(e, error);
      if (!path) {
        g_prefix_error(error, "model '%s' is not downloaded yet (run `cnnfx models fetch %s`): ", name, name);
        return NULL;
      }
      kf = man->kf;
    }
    if (!section) section = g_strdup(name);
  }
  if (!(n->model = load_onnx(path, error))) return NULL;
  n->name = g_strdup(section ? section : path);
  n->input = g_strdup(cnnfx_model_input_name(n->model, 0));
  n->output = g_strdup(cnnfx_model_output_name(n->model, 0));
  set_default_preproc(n, filter);
  if (kf && !apply_section(n, kf, section, wdir, error)) return NULL;
  if (!kf) {
    /* A model given as a path may have a sidecar MODEL.ini with the same keys. */
    g_autofree char *base = g_str_has_suffix(path, ".onnx") ? g_strndup(path, strlen(path) - 5) : g_strdup(path);
    g_autofree char *side = g_strconcat(base, ".ini", NULL);
    g_autoptr(GKeyFile) sk = g_key_file_new();
    if (g_key_file_load_from_file(sk, side, G_KEY_FILE_NONE, NULL)) {
      g_autofree char *grp = g_key_file_get_start_group(sk);
      g_autofree char *dir = g_path_get_dirname(path);
      if (grp && !apply_section(n, sk, grp, dir, error)) return NULL;
    }
  }
  if (!cnnfx_model_has_value(n->model, n->input) || !cnnfx_model_has_value(n->model, n->output)) {
    g_set_error(error, NL_ERROR, 2, "%s: input '%s' or output '%s' not in the model", path, n->input, n->output);
    return NULL;
  }
  return g_steal_pointer(&n);
}

CnnfxTensor *cli_image_to_tensor(const CnnfxImage *img, GError **error)
{
  int64_t d[3] = {3, img->height, img->width};
  CnnfxTensor *t = cnnfx_tensor_new_f32(3, d, error);
  if (!t) return NULL;
  size_t hw = (size_t)img->width * img->height;
  float *o = cnnfx_f32(t);
  int c = img->channels;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < 3; k++) o[k * hw + i] = img->px[i * c + k];
  return t;
}

void cli_tensor_to_image(const CnnfxTensor *t, CnnfxImage *img)
{
  size_t hw = (size_t)img->width * img->height;
  const float *s = cnnfx_f32(t);
  int c = img->channels;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < 3; k++) img->px[i * c + k] = CLAMP(s[k * hw + i], 0.f, 1.f);
}
