/* Session semantics: targets/taps, backward from several tensors, memory planning,
 * memory limit, cancellation, argument errors, weight gradients. */
#include "cnnfx.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

static CnnfxModel *load(const char *path)
{
  gchar *data;
  gsize len;
  GError *err = NULL;
  if (!g_file_get_contents(path, &data, &len, &err)) {
    printf("cannot read %s: %s\n", path, err->message);
    exit(1);
  }
  CnnfxModel *m = cnnfx_model_load(data, len, &err);
  g_free(data);
  if (!m) {
    printf("cannot load %s: %s\n", path, err->message);
    exit(1);
  }
  return m;
}

static CnnfxTensor *input(void)
{
  int64_t d[4] = {1, 3, 16, 16};
  CnnfxTensor *t = cnnfx_tensor_new_f32(4, d, NULL);
  GRand *r = g_rand_new_with_seed(7);
  for (size_t i = 0; i < t->numel; i++) cnnfx_f32(t)[i] = (float)g_rand_double_range(r, -1, 1);
  g_rand_free(r);
  return t;
}

/* gradient at x of 0.5*sum ||tap||^2 over the given taps */
static CnnfxTensor *grad_of(CnnfxModel *m, CnnfxBackend *be, const char *const *taps, int n)
{
  const char *tg[8] = {0};
  for (int i = 0; i < n; i++) tg[i] = taps[i];
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = tg};
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
  g_autoptr(CnnfxTensor) x = input();
  if (!s || !cnnfx_session_set_input(s, "x", x, &err) || !cnnfx_session_forward(s, &err)) goto fail;
  CnnfxTensor *seeds[8];
  for (int i = 0; i < n; i++)
    if (!(seeds[i] = cnnfx_session_get(s, taps[i], &err))) goto fail;
  if (!cnnfx_session_backward(s, n, taps, seeds, &err)) goto fail;
  CnnfxTensor *g = cnnfx_session_grad(s, "x", &err);
  if (!g) goto fail;
  return cnnfx_tensor_copy(g, NULL);
fail:
  printf("grad_of failed: %s\n", err ? err->message : "?");
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    printf("usage: test_session MODEL.onnx\n");
    return 2;
  }
  g_autoptr(CnnfxModel) m = load(argv[1]);
  g_autoptr(CnnfxBackend) be = cnnfx_backend_new("cpu", NULL);
  g_autoptr(CnnfxTensor) x = input();
  GError *err = NULL;

  /* 1. targets: only r1 is computed; y is not available */
  {
    const char *tg[] = {"r1", NULL};
    CnnfxSessionOptions o = {.targets = tg};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    CHECK(s && cnnfx_session_set_input(s, "x", x, NULL) && cnnfx_session_forward(s, NULL), "forward to r1");
    CHECK(s && cnnfx_session_get(s, "r1", NULL) != NULL, "r1 readable");
    CHECK(s && cnnfx_session_get(s, "y", NULL) == NULL, "y must not be computed");
    int nd;
    int64_t d[8];
    CHECK(s && !cnnfx_session_shape(s, "c2", &nd, d), "conv2 must not run for target r1");
  }
  /* 2. unknown target name -> error */
  {
    const char *tg[] = {"nope", NULL};
    CnnfxSessionOptions o = {.targets = tg};
    CnnfxSession *s = cnnfx_session_new(m, be, &o, &err);
    CHECK(!s && err && err->code == CNNFX_ERROR_ARG, "unknown target rejected");
    g_clear_error(&err);
  }
  /* 3. backward from two taps == sum of the two single-tap gradients */
  {
    const char *a[] = {"r1"}, *b[] = {"y"}, *ab[] = {"r1", "y"};
    g_autoptr(CnnfxTensor) ga = grad_of(m, be, a, 1);
    g_autoptr(CnnfxTensor) gb = grad_of(m, be, b, 1);
    g_autoptr(CnnfxTensor) gab = grad_of(m, be, ab, 2);
    CHECK(ga && gb && gab, "gradients computed");
    if (ga && gb && gab) {
      double worst = 0, norm = 0;
      for (size_t i = 0; i < ga->numel; i++) {
        worst = fmax(worst, fabs(cnnfx_f32(ga)[i] + cnnfx_f32(gb)[i] - cnnfx_f32(gab)[i]));
        norm = fmax(norm, fabs(cnnfx_f32(gab)[i]));
      }
      CHECK(norm > 0 && worst <= 1e-5 * norm, "multi-tap backward is additive (err %g of %g)", worst, norm);
    }
  }
  /* 4. memory planning: forward-only keeps less than forward-for-backward */
  {
    size_t peak[2];
    for (int gmode = 0; gmode < 2; gmode++) {
      CnnfxSessionOptions o = {.grad = gmode ? CNNFX_GRAD_INPUT : CNNFX_GRAD_NONE};
      g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, NULL);
      cnnfx_session_set_input(s, "x", x, NULL);
      cnnfx_session_forward(s, NULL);
      peak[gmode] = cnnfx_session_current_bytes(s);
    }
    CHECK(peak[0] < peak[1], "forward-only holds less after forward (%zu vs %zu bytes)", peak[0], peak[1]);
    CHECK(peak[0] < 1024, "forward-only keeps only the output (%zu bytes)", peak[0]);
  }
  /* 5. memory limit -> clean NOMEM error; session usable after */
  {
    CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .mem_limit = 4096};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    gboolean ok = s && cnnfx_session_set_input(s, "x", x, NULL) && cnnfx_session_forward(s, &err);
    CHECK(!ok && err && err->code == CNNFX_ERROR_NOMEM, "memory limit reported as NOMEM (%s)", err ? err->message : "no error");
    g_clear_error(&err);
    CHECK(s && cnnfx_session_current_bytes(s) <= 4096, "no memory leaked past the limit");
  }
  /* 6. cancellation */
  {
    volatile int cancel = 1;
    CnnfxSessionOptions o = {.cancel = &cancel};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, NULL);
    cnnfx_session_set_input(s, "x", x, NULL);
    gboolean ok = cnnfx_session_forward(s, &err);
    CHECK(!ok && err && err->code == CNNFX_ERROR_CANCELLED, "cancel flag stops forward");
    g_clear_error(&err);
  }
  /* 7. argument errors */
  {
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &(CnnfxSessionOptions){.grad = CNNFX_GRAD_INPUT}, NULL);
    int64_t d[2] = {3, 16};
    g_autoptr(CnnfxTensor) bad = cnnfx_tensor_new_f32(2, d, NULL);
    CHECK(!cnnfx_session_set_input(s, "x", bad, &err) && err && err->code == CNNFX_ERROR_SHAPE, "wrong rank rejected");
    g_clear_error(&err);
    CHECK(!cnnfx_session_set_input(s, "w1", x, &err), "weights are not inputs");
    g_clear_error(&err);
    const char *nm = "y";
    CHECK(!cnnfx_session_backward(s, 1, &nm, &x, &err), "backward before forward rejected");
    g_clear_error(&err);
    CHECK(!cnnfx_session_forward(s, &err) && err && err->code == CNNFX_ERROR_ARG, "unset input rejected");
    g_clear_error(&err);
  }
  /* 8. weight gradients (training mode) against a central difference */
  {
    const char *out = "y";
    CnnfxSessionOptions o = {.grad = CNNFX_GRAD_WEIGHTS};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    cnnfx_session_set_input(s, "x", x, NULL);
    cnnfx_session_forward(s, NULL);
    CnnfxTensor *y = cnnfx_session_get(s, out, NULL);
    CHECK(y != NULL && cnnfx_session_backward(s, 1, &out, &y, &err), "weight backward");
    g_clear_error(&err);
    CnnfxTensor *gw = cnnfx_session_grad(s, "w1", NULL);
    CHECK(gw != NULL, "gradient for w1");
    const CnnfxTensor *w1 = cnnfx_model_initializer(m, "w1");
    g_autoptr(CnnfxTensor) w = cnnfx_tensor_copy(w1, NULL);
    double ana = gw ? cnnfx_f32(gw)[5] : 0, lv[2];
    g_autoptr(CnnfxSession) f = cnnfx_session_new(m, be, NULL, NULL);
    cnnfx_session_set_input(f, "x", x, NULL);
    for (int k = 0; k < 2; k++) {
      float orig = cnnfx_f32(w1)[5];
      cnnfx_f32(w)[5] = orig + (k ? -1e-2f : 1e-2f);
      cnnfx_session_set_weight(f, "w1", w, NULL);
      cnnfx_session_forward(f, NULL);
      CnnfxTensor *yy = cnnfx_session_get(f, "y", NULL);
      double L = 0;
      for (size_t i = 0; i < yy->numel; i++) L += 0.5 * cnnfx_f32(yy)[i] * cnnfx_f32(yy)[i];
      lv[k] = L;
      cnnfx_f32(w)[5] = orig;
    }
    double num = (lv[0] - lv[1]) / 2e-2;
    CHECK(fabs(ana - num) <= 1e-2 * fmax(fabs(num), 1e-2), "dL/dw1[5] analytic %g numeric %g", ana, num);
  }
  /* 9. keep_grads: the gradient at an inner tensor, re-seeded there, gives the same input gradient */
  {
    const char *tg[] = {"y", NULL}, *kg[] = {"r1", NULL}, *out = "y", *r1 = "r1";
    CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = tg, .keep_grads = kg};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    CHECK(s && cnnfx_session_set_input(s, "x", x, NULL) && cnnfx_session_forward(s, NULL), "forward with keep_grads");
    CnnfxTensor *y = s ? cnnfx_session_get(s, out, NULL) : NULL;
    CHECK(y && cnnfx_session_backward(s, 1, &out, &y, NULL), "backward with keep_grads");
    CnnfxTensor *gr1 = s ? cnnfx_session_grad(s, "r1", &err) : NULL;
    CHECK(gr1 && gr1->ndim == 4 && gr1->dims[1] == 8, "gradient at r1 kept (%s)", err ? err->message : "");
    g_clear_error(&err);
    CnnfxTensor *gx = s ? cnnfx_session_grad(s, "x", NULL) : NULL;
    g_autoptr(CnnfxTensor) gx_copy = gx ? cnnfx_tensor_copy(gx, NULL) : NULL;
    g_autoptr(CnnfxTensor) gr1_copy = gr1 ? cnnfx_tensor_copy(gr1, NULL) : NULL;
    const char *tg2[] = {"r1", NULL};
    CnnfxSessionOptions o2 = {.grad = CNNFX_GRAD_INPUT, .targets = tg2};
    g_autoptr(CnnfxSession) s2 = cnnfx_session_new(m, be, &o2, NULL);
    cnnfx_session_set_input(s2, "x", x, NULL);
    cnnfx_session_forward(s2, NULL);
    gboolean ok = gr1_copy && cnnfx_session_backward(s2, 1, &r1, &gr1_copy, NULL);
    CnnfxTensor *gx2 = ok ? cnnfx_session_grad(s2, "x", NULL) : NULL;
    double worst = 0, norm = 0;
    for (size_t i = 0; gx2 && gx_copy && i < gx2->numel; i++) {
      worst = fmax(worst, fabs(cnnfx_f32(gx2)[i] - cnnfx_f32(gx_copy)[i]));
      norm = fmax(norm, fabs(cnnfx_f32(gx_copy)[i]));
    }
    CHECK(gx2 && norm > 0 && worst <= 1e-5 * norm, "chain rule through the kept gradient (%g of %g)", worst, norm);
    CHECK(s && !cnnfx_session_grad(s, "c2", NULL), "gradients not asked for are not kept");
  }
  /* 10. cnnfx_session_want_grads: only w2 and fc_w wanted (conv1 frozen, no input gradient): their
   * gradients are bit for bit those of a full backward, the others read zero, less is kept for
   * backward; NULL restores all (one session, planned again each time); a bad name is refused */
  {
    const char *tg[] = {"y", NULL}, *out = "y";
    static const char *const want[] = {"w2", "fc_w", NULL};
    CnnfxSessionOptions o = {.grad = CNNFX_GRAD_WEIGHTS, .targets = tg};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    const char *names[] = {"w2", "fc_w", "x", "w1", "b1", "fc_b"};
    CnnfxTensor *full[6] = {0};
    for (int pass = 0; s && pass < 3; pass++) {
      CHECK(cnnfx_session_want_grads(s, pass == 1 ? want : NULL, &err), "want_grads (%s)", err ? err->message : "");
      g_clear_error(&err);
      CnnfxTensor *y = cnnfx_session_set_input(s, "x", x, NULL) && cnnfx_session_forward(s, NULL)
                         ? cnnfx_session_get(s, out, NULL) : NULL;
      CHECK(y && cnnfx_session_backward(s, 1, &out, &y, NULL), "forward and backward, pass %d", pass);
      for (int i = 0; i < 6; i++) {
        CnnfxTensor *g = cnnfx_session_grad(s, names[i], NULL);
        if (pass == 0) {
          full[i] = g ? cnnfx_tensor_copy(g, NULL) : NULL;
          continue;
        }
        gboolean same = g && full[i] && g->numel == full[i]->numel, zero = g != NULL, nonzero = FALSE;
        for (size_t e = 0; g && full[i] && e < g->numel && e < full[i]->numel; e++) {
          same = same && cnnfx_f32(g)[e] == cnnfx_f32(full[i])[e];
          zero = zero && cnnfx_f32(g)[e] == 0.f;
          nonzero = nonzero || cnnfx_f32(full[i])[e] != 0.f;
        }
        if (pass == 2 || i < 2) CHECK(same && nonzero, "pass %d: gradient of %s equals the full backward's", pass, names[i]);
        else CHECK(zero, "only w2, fc_w wanted: the gradient of %s reads zero", names[i]);
      }
    }
    size_t peak[2] = {0, 0}; /* one step each in fresh sessions: all gradients, then the two */
    for (int k = 0; k < 2; k++) {
      g_autoptr(CnnfxSession) f = cnnfx_session_new(m, be, &o, NULL);
      CnnfxTensor *y = f && (!k || cnnfx_session_want_grads(f, want, NULL)) && cnnfx_session_set_input(f, "x", x, NULL) &&
                           cnnfx_session_forward(f, NULL) ? cnnfx_session_get(f, out, NULL) : NULL;
      if (y && cnnfx_session_backward(f, 1, &out, &y, NULL)) peak[k] = cnnfx_session_peak_bytes(f);
    }
    CHECK(peak[1] > 0 && peak[1] < peak[0], "fewer bytes for a step (%zu < %zu)", peak[1], peak[0]);
    static const char *const bad[] = {"r1", NULL};
    CHECK(s && !cnnfx_session_want_grads(s, bad, &err) && err && strstr(err->message, "'r1'"),
          "an inner tensor is refused (%s)", err ? err->message : "");
    g_clear_error(&err);
    for (int i = 0; i < 6; i++)
      if (full[i]) cnnfx_tensor_unref(full[i]);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
