/* The filter layer as a front-end (the GIMP plug-in) drives it, without the CLI:
 *  - one CnnfxParams holds the shared table's entries and the filter's; values are range-checked
 *    and errors name the parameter by its label, never a "--flag";
 *  - sensitivity rules (fool's step only for iterative methods, SmoothGrad's samples only for
 *    SmoothGrad), CLI-only scope, device "cuda:N";
 *  - classify and visualize run with no backend (NULL = CPU) on the offline LeNet;
 *  - a cancel token raised from another thread stops a run with CNNFX_ERROR_CANCELLED;
 *  - progress reports fractions in 0..1 and a text;
 *  - render: pixels <-> tensor round trip (RGB, RGBA, grey), masks, heat map, labels box.
 * Argument: the weights/ folder. */
#include "cnnfx-filters.h"
#include "render.h"
#include <libintl.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

static CnnfxNet *lenet(const char *weights, GError **error)
{
  g_autofree char *path = g_build_filename(weights, "fashion_lenet.onnx", NULL);
  g_autofree char *lpath = g_build_filename(weights, "fashion.labels", NULL);
  gchar *data = NULL, *ltext = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &data, &len, error) || !g_file_get_contents(lpath, &ltext, NULL, error)) {
    g_free(data);
    return NULL;
  }
  CnnfxNet *n = g_new0(CnnfxNet, 1);
  n->model = cnnfx_model_load(data, len, error);
  g_free(data);
  if (!n->model) {
    g_free(ltext);
    g_free(n);
    return NULL;
  }
  n->name = g_strdup("fashion_lenet");
  n->input = g_strdup("input");
  n->output = g_strdup("logits");
  n->pre = (CnnfxPreproc){.scale = -1, .mean = {-1, -1, -1}, .std = {1, 1, 1}, .gray = TRUE, .fixed_h = 28,
                          .fixed_w = 28};
  g_strchomp(ltext);
  n->labels = g_strsplit(ltext, "\n", -1);
  g_free(ltext);
  n->cam_layer = g_strdup("relu2");
  return n;
}

typedef struct {
  int calls;
  double last, min, max;
  gboolean text_ok;
  gint *cancel_after; /* raise this token from the progress callback's thread after N calls */
} Prog;

static void on_progress(double f, const char *what, gpointer user)
{
  Prog *p = user;
  p->calls++;
  p->last = f;
  p->min = MIN(p->min, f);
  p->max = MAX(p->max, f);
  if (!what || !*what) p->text_ok = FALSE;
}

static gpointer raise_later(gpointer data)
{
  g_usleep(20000);
  g_atomic_int_set((gint *)data, 1);
  return NULL;
}

static void test_params(void)
{
  const CnnfxFilterInfo *fool = cnnfx_filter_info("fool");
  g_autoptr(CnnfxParams) p = cnnfx_params_new(fool);
  /* common entries and the filter's in one set of values */
  CHECK(cnnfx_params_find(p, "device") && cnnfx_params_find(p, "epsilon") && cnnfx_params_find(p, "seed"),
        "common + filter parameters in one CnnfxParams");
  CHECK(!g_strcmp0(cnnfx_params_string(p, "device"), "auto"), "device defaults to auto");
  CHECK(cnnfx_params_int(p, "max-memory") == 2048, "max-memory default");
  int nc = 0;
  while (cnnfx_common_params()[nc].name) nc++;
  int nf = 0;
  while (fool->params[nf].name) nf++;
  CHECK(cnnfx_params_count(p) == nc + nf, "count %d = %d + %d", cnnfx_params_count(p), nc, nf);
  /* errors name the label, never a flag */
  g_autoptr(GError) e = NULL;
  CHECK(!cnnfx_params_set(p, "epsilon", "300", &e) && e && strstr(e->message, "Epsilon") &&
          !strstr(e->message, "--"),
        "range error names the label: %s", e ? e->message : "(none)");
  g_clear_error(&e);
  CHECK(!cnnfx_params_set(p, "iterations", "2.5", &e) && e && strstr(e->message, "Iterations"), "whole number");
  g_clear_error(&e);
  CHECK(!cnnfx_params_set(p, "method", "bim", &e) && e && strstr(e->message, "Method"), "bad choice");
  g_clear_error(&e);
  CHECK(cnnfx_params_set(p, "device", "cuda:1", NULL) && !g_strcmp0(cnnfx_params_string(p, "device"), "cuda:1"),
        "device cuda:1 accepted");
  CHECK(!cnnfx_params_set(p, "device", "cpu:x", &e), "device cpu:x refused");
  g_clear_error(&e);
  CHECK(!cnnfx_params_set(p, "device", "auto:1", &e), "device auto:1 refused");
  g_clear_error(&e);
  CHECK(!cnnfx_params_is_set(p, "bgr") && cnnfx_params_set(p, "bgr", "yes", NULL) && cnnfx_params_is_set(p, "bgr") &&
          cnnfx_params_bool(p, "bgr"),
        "is_set tracks overrides");
  CHECK(cnnfx_params_set(p, "target", "3", NULL) && cnnfx_params_set(p, "target", "", NULL) &&
          cnnfx_params_string(p, "target") == NULL && !cnnfx_params_is_set(p, "target"),
        "an empty text field means the default");
  /* sensitivity */
  CHECK(cnnfx_params_sensitive(p, "step"), "pgd: step matters");
  cnnfx_params_set(p, "method", "fgsm", NULL);
  CHECK(!cnnfx_params_sensitive(p, "step") && !cnnfx_params_sensitive(p, "iterations"), "fgsm: step/iterations off");
  CHECK(cnnfx_params_sensitive(p, "epsilon"), "epsilon always");
  g_autoptr(CnnfxParams) c = cnnfx_params_new(cnnfx_filter_info("classify"));
  CHECK(!cnnfx_params_sensitive(c, "smooth-samples"), "gradcam: no SmoothGrad samples");
  cnnfx_params_set(c, "overlay", "smoothgrad", NULL);
  CHECK(cnnfx_params_sensitive(c, "smooth-samples"), "smoothgrad: samples");
  cnnfx_params_set(c, "overlay", "none", NULL);
  CHECK(!cnnfx_params_sensitive(c, "class") && !cnnfx_params_sensitive(c, "opacity"), "no overlay: no class/opacity");
  CHECK(cnnfx_params_find(c, "format")->scope == CNNFX_SCOPE_CLI, "classify format is CLI only");
  CHECK(cnnfx_params_find(c, "class")->type == CNNFX_P_CLASS, "class is a CLASS parameter");
  g_autoptr(CnnfxParams) s = cnnfx_params_new(cnnfx_filter_info("style"));
  CHECK(!cnnfx_params_sensitive(s, "learning-rate"), "lbfgs: no learning rate");
  g_autofree char *lab = cnnfx_param_choice_label(cnnfx_params_find(s, "optimizer"), "adam");
  CHECK(!g_strcmp0(lab, "Adam"), "choice label %s", lab);
  const char *const two[] = {"a.png", "b.png", NULL};
  CHECK(cnnfx_params_set_strings(s, "style", two, NULL) && g_strv_length((char **)cnnfx_params_strings(s, "style")) == 2,
        "set_strings");
  /* every table entry: choice labels match the choices, defaults are in range */
  for (const CnnfxFilterInfo *const *f = cnnfx_filter_infos(); *f; f++)
    for (int pass = 0; pass < 2; pass++)
      for (const CnnfxParam *d = pass ? (*f)->params : cnnfx_common_params(); d->name; d++) {
        CHECK(d->label && d->help, "%s: label and help", d->name);
        if (d->type == CNNFX_P_CHOICE) {
          g_auto(GStrv) ch = g_strsplit(d->choices, "|", -1), cl = g_strsplit(d->choice_labels, "|", -1);
          CHECK(d->choice_labels && g_strv_length(ch) == g_strv_length(cl), "%s: one label per choice", d->name);
          CHECK(g_strv_contains((const char *const *)ch, d->def_str), "%s: default is a choice", d->name);
        }
        if (d->type <= CNNFX_P_BOOL) CHECK(d->def >= d->min && d->def <= d->max, "%s: default in range", d->name);
        if (d->sensitive_if) {
          g_autoptr(CnnfxParams) v = cnnfx_params_new(*f);
          char name[64];
          g_strlcpy(name, d->sensitive_if, sizeof name);
          name[strcspn(name, "!=")] = 0;
          CHECK(cnnfx_params_find(v, name) != NULL, "%s: sensitive_if names a parameter (%s)", d->name, name);
        }
      }
}

static void test_render(void)
{
  int w = 5, h = 4;
  for (int c = 1; c <= 4; c++) {
    float *px = g_new(float, w * h * c), *back = g_new(float, w * h * c);
    for (int i = 0; i < w * h * c; i++) px[i] = (float)((i * 37) % 101) / 100.f;
    memcpy(back, px, sizeof(float) * w * h * c);
    g_autoptr(CnnfxTensor) t = cnnfx_pixels_to_tensor(px, w, h, c, NULL);
    CHECK(t && t->dims[0] == 3 && t->dims[1] == h && t->dims[2] == w, "%d channels -> [3,H,W]", c);
    if (t) cnnfx_tensor_to_pixels(t, back, w, h, c);
    double md = 0;
    for (int i = 0; i < w * h * c; i++) md = fmax(md, fabs(back[i] - px[i]));
    CHECK(md < 1e-5, "%d channels: round trip (%g)", c, md);
    /* mask 0 keeps the original, mask 1 the result */
    float *res = g_new(float, w * h * c), *mask = g_new0(float, w * h);
    for (int i = 0; i < w * h * c; i++) res[i] = 1 - px[i];
    for (int i = 0; i < w * h; i++) mask[i] = (i % 2) ? 1.f : 0.f;
    cnnfx_pixels_apply_mask(res, px, mask, w, h, c);
    gboolean ok = TRUE;
    for (int i = 0; i < w * h; i++)
      for (int k = 0; k < c; k++)
        ok &= fabsf(res[i * c + k] - ((i % 2) ? 1 - px[i * c + k] : px[i * c + k])) < 1e-6f;
    CHECK(ok, "%d channels: mask blends", c);
    g_free(px);
    g_free(back);
    g_free(res);
    g_free(mask);
  }
  /* heat map at opacity 1 with the gray map is the map itself */
  int64_t md[3] = {1, 2, 2};
  g_autoptr(CnnfxTensor) map = cnnfx_tensor_new_f32(3, md, NULL);
  float *m = cnnfx_f32(map);
  m[0] = m[1] = m[2] = m[3] = 0.25f;
  float px[4 * 4 * 4] = {0}, out[4 * 4 * 4];
  for (int i = 0; i < 16; i++) px[i * 4 + 3] = 0.5f;
  CHECK(cnnfx_render_heatmap(px, 4, 4, 4, map, "gray", 1.0, out, NULL) && fabsf(out[0] - 0.25f) < 1e-6f &&
          out[3] == 0.5f,
        "gray heat map, alpha kept");
  /* labels box darkens the corner and leaves the far corner alone */
  int W = 200, H = 120;
  float *img = g_new(float, W * H * 3);
  for (int i = 0; i < W * H * 3; i++) img[i] = 1.f;
  CnnfxScore top[2] = {{1, 0.8, "Trouser"}, {4, 0.1, NULL}};
  cnnfx_render_labels(img, W, H, 3, top, 2);
  CHECK(img[(3 * W + 3) * 3] < 0.6f && img[((H - 1) * W + W - 1) * 3] == 1.f, "labels box drawn top-left only");
  float *grey = g_new(float, W * H);
  for (int i = 0; i < W * H; i++) grey[i] = 1.f;
  cnnfx_render_labels(grey, W, H, 1, top, 2);
  CHECK(grey[3 * W + 3] < 0.6f && grey[W * H - 1] == 1.f, "labels on a grey buffer");
  g_free(img);
  g_free(grey);
}

static void test_runs(const char *weights)
{
  g_autoptr(GError) e = NULL;
  g_autoptr(CnnfxNet) net = lenet(weights, &e);
  if (!net) {
    CHECK(FALSE, "load LeNet: %s", e ? e->message : "?");
    return;
  }
  int64_t d[3] = {3, 40, 32};
  g_autoptr(CnnfxTensor) img = cnnfx_tensor_new_f32(3, d, NULL);
  float *x = cnnfx_f32(img);
  for (size_t i = 0; i < img->numel; i++) x[i] = (float)((i * 7919) % 255) / 255.f;
  /* classify with no backend (NULL = CPU), Grad-CAM through the public keep_grads option */
  g_autoptr(CnnfxParams) p = cnnfx_params_new(cnnfx_filter_info("classify"));
  Prog pr = {.min = 2, .max = -1, .text_ok = TRUE};
  CnnfxRun run = {.backend = NULL, .progress = on_progress, .user = &pr};
  CnnfxScore top[3];
  CnnfxTensor *heat = NULL;
  gboolean ok = cnnfx_classify(net, p, &run, img, top, 3, &heat, &e);
  CHECK(ok && heat && top[0].index >= 0 && top[0].prob > top[1].prob && top[0].label, "classify, NULL backend: %s",
        e ? e->message : "ok");
  CHECK(pr.calls > 0 && pr.min >= 0 && pr.max <= 1 && pr.last == 1.0 && pr.text_ok,
        "progress: %d calls in [%g,%g], last %g", pr.calls, pr.min, pr.max, pr.last);
  if (heat) {
    float mx = 0;
    for (size_t i = 0; i < heat->numel; i++) mx = MAX(mx, cnnfx_f32(heat)[i]);
    CHECK(mx > 0.99f && mx <= 1.0f, "Grad-CAM map normalised (max %g)", mx);
    cnnfx_tensor_unref(heat);
  }
  g_clear_error(&e);
  /* dynamic choices from the loaded model */
  g_auto(GStrv) classes = cnnfx_param_dynamic_choices(cnnfx_params_find(p, "class"), net);
  CHECK(classes && g_strv_length(classes) == 10 && !strcmp(classes[1], "Trouser"), "class choices = the labels");
  g_autoptr(CnnfxParams) fp = cnnfx_params_new(cnnfx_filter_info("fool"));
  g_auto(GStrv) targets = cnnfx_param_dynamic_choices(cnnfx_params_find(fp, "target"), net);
  CHECK(targets && g_strv_contains((const char *const *)targets, "least-likely"), "target offers least-likely");
  g_autoptr(CnnfxParams) vp = cnnfx_params_new(cnnfx_filter_info("visualize"));
  g_auto(GStrv) layers = cnnfx_param_dynamic_choices(cnnfx_params_find(vp, "layer"), net);
  CHECK(layers && g_strv_contains((const char *const *)layers, "relu2"), "layer choices include relu2");
  CHECK(!cnnfx_param_dynamic_choices(cnnfx_params_find(vp, "size"), net), "no dynamic choices for a number");
  /* a bad class is reported by its label */
  cnnfx_params_set(p, "class", "giraffe", NULL);
  ok = cnnfx_classify(net, p, &run, img, top, 3, &heat, &e);
  CHECK(!ok && e && strstr(e->message, "Class") && !strstr(e->message, "--"), "bad class: %s",
        e ? e->message : "(none)");
  g_clear_error(&e);
  /* visualize with no backend */
  g_autoptr(CnnfxParams) v = cnnfx_params_new(cnnfx_filter_info("visualize"));
  cnnfx_params_set(v, "mode", "filters", NULL);
  CnnfxRun vrun = {0};
  g_autoptr(CnnfxTensor) grid = cnnfx_visualize(net, v, &vrun, img, &e);
  CHECK(grid && grid->ndim == 3 && grid->dims[0] == 3, "visualize filters, NULL backend: %s", e ? e->message : "ok");
  g_clear_error(&e);
  /* cancel from another thread: class visualisation with many steps stops early */
  cnnfx_params_set(v, "mode", "class", NULL);
  cnnfx_params_set(v, "iterations", "5000", NULL);
  gint cancel = 0;
  CnnfxRun crun = {.cancel = &cancel};
  GThread *t = g_thread_new("cancel", raise_later, &cancel);
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(CnnfxTensor) cv = cnnfx_visualize(net, v, &crun, img, &e);
  g_thread_join(t);
  CHECK(!cv && e && g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_CANCELLED), "cancel token stops the run: %s",
        e ? e->message : "finished");
  CHECK(g_get_monotonic_time() - t0 < 20 * G_USEC_PER_SEC, "cancel is prompt");
  g_clear_error(&e);
  /* fool: a raised token before the start */
  g_autoptr(CnnfxParams) f = cnnfx_params_new(cnnfx_filter_info("fool"));
  gint raised = 1;
  CnnfxRun frun = {.cancel = &raised};
  CnnfxFoolReport rep;
  ok = cnnfx_fool(net, f, &frun, img, NULL, &rep, &e);
  CHECK(!ok && e && g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_CANCELLED), "fool honours a raised token");
}

typedef struct {
  gboolean cyrillic;
} RuProg;

static void ru_progress(double f, const char *what, gpointer user)
{
  (void)f;
  RuProg *r = user;
  if (what && g_utf8_validate(what, -1, NULL))
    for (const char *c = what; *c; c = g_utf8_next_char(c)) {
      gunichar u = g_utf8_get_char(c);
      if (u >= 0x0400 && u <= 0x04FF) r->cyrillic = TRUE;
    }
}

/* With the catalogues of the build tree and LANGUAGE=ru: the filter layer's progress texts and
 * errors arrive in Russian, and labels are translated at display time. */
static void test_russian(const char *weights, const char *localedir)
{
  g_autofree char *mo = g_build_filename(localedir, "ru", "LC_MESSAGES", "cnnfx.mo", NULL);
  if (!g_file_test(mo, G_FILE_TEST_EXISTS)) {
    printf("skipped: Russian part (no %s; gettext not installed?)\n", mo);
    return;
  }
  g_setenv("LANGUAGE", "ru", TRUE);
  setlocale(LC_ALL, "");
  if (!setlocale(LC_MESSAGES, "C.UTF-8")) setlocale(LC_MESSAGES, "C.utf8");
  bindtextdomain(CNNFX_GETTEXT_DOMAIN, localedir);
  bind_textdomain_codeset(CNNFX_GETTEXT_DOMAIN, "UTF-8");
  const CnnfxFilterInfo *fool = cnnfx_filter_info("fool");
  CHECK(!strcmp(cnnfx_param_text(fool->title), "Обмануть сеть"), "title in Russian: %s", cnnfx_param_text(fool->title));
  g_autoptr(CnnfxParams) p = cnnfx_params_new(fool);
  g_autoptr(GError) e = NULL;
  CHECK(!cnnfx_params_set(p, "epsilon", "300", &e) && e && g_str_has_prefix(e->message, "Эпсилон: "),
        "error names the Russian label: %s", e ? e->message : "(none)");
  g_autofree char *lab = cnnfx_param_choice_label(cnnfx_params_find(p, "method"), "ifgsm");
  CHECK(!strcmp(lab, "Итеративный FGSM"), "choice label in Russian: %s", lab);
  g_autoptr(CnnfxNet) net = lenet(weights, NULL);
  if (!net) return;
  int64_t d[3] = {3, 28, 28};
  g_autoptr(CnnfxTensor) img = cnnfx_tensor_new_f32(3, d, NULL);
  memset(img->data, 0, img->numel * sizeof(float));
  g_autoptr(CnnfxParams) c = cnnfx_params_new(cnnfx_filter_info("classify"));
  RuProg rp = {FALSE};
  CnnfxRun run = {.progress = ru_progress, .user = &rp};
  CnnfxScore top[2];
  CHECK(cnnfx_classify(net, c, &run, img, top, 2, NULL, NULL) && rp.cyrillic, "progress texts in Russian");
  g_unsetenv("LANGUAGE");
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: test_filter_api WEIGHTS_DIR [BUILD_LOCALEDIR]\n");
    return 2;
  }
  test_params();
  test_render();
  test_runs(argv[1]);
  if (argc > 2) test_russian(argv[1], argv[2]);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
