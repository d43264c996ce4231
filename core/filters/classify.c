/* Classify: top-k labels with probabilities, and heat maps of what drove the decision.
 *
 * Scores.  The class scores are the entries of net->output (any shape with batch 1:
 * [1,N], [1,N,1,1], [N]).  Probabilities are softmax(scores) unless net->output_is_prob.
 * Gradients are taken of the class SCORE: for a probability output produced by a Softmax
 * (possibly followed by Reshape / Flatten / Squeeze / Unsqueeze / Identity), the Softmax
 * input (the logit) is used instead, as in the Grad-CAM paper; otherwise the output itself.
 *
 * Input size.  Networks with a fixed input size (net->pre.fixed_h) get the whole image
 * resized to it (cnnfx_net_preprocess).  A network without one whose graph input declares a
 * static H x W (the model zoo's classifiers: [1,3,224,224]) is treated the same way: a
 * classifier is trained at that size, and those ending in Flatten+Gemm run at no other.
 * Networks with a dynamic input size run at the image's own size.
 *
 * Heat maps ([1,h,w], 0..1, at the resolution where they are computed; the front-end
 * upsamples them to the image):
 *   gradcam     Selvaraju et al. 2017.  A = the feature map of the CAM layer (net->cam_layer,
 *               an OpType#N spec or a tensor name; if unset, the LAST node output of the
 *               forward pass, in graph order, that is 4-D [1,C,h,w] with h > 1 or w > 1: the
 *               last convolutional feature map before global pooling / flatten).
 *               g = dS_c/dA;  alpha_k = mean_ij g_kij;  map = ReLU(sum_k alpha_k A_k),
 *               divided by its maximum.
 *   gradcam++   Chattopadhyay et al. 2018 with the exponential score exp(S_c), whose
 *               derivatives are powers of the first-order gradient g:
 *               a_kij = g^2 / (2 g^2 + sum_ab A_kab * g^3)   (0 where the denominator is 0),
 *               w_k = sum_ij a_kij * ReLU(g_kij)  (the common factor exp(S_c) cancels in the
 *               normalisation);  map = ReLU(sum_k w_k A_k) / max.
 *   saliency    Simonyan et al. 2014: max over RGB channels of |dS_c / d pixel| at the network
 *               input resolution (the resized image for fixed-size networks), divided by its
 *               99th percentile and clipped to 1 (a few pixels have huge gradients; the
 *               percentile keeps the map readable).
 *   smoothgrad  Smilkov et al. 2017: the mean of `smooth-samples` saliency maps of noisy copies
 *               (Gaussian noise, sigma = smooth-noise * (max - min of the image), seeded with
 *               run->seed), normalised like saliency.
 * The class explained is `class` (a label, case-insensitive, or one of its comma-separated
 * synonyms, or an index) or the top one.
 *
 * The gradient at the CAM layer: the core gives gradients at graph inputs only, so Grad-CAM
 * runs a derived model that shares every node, attribute and weight with the net's model but
 * has one extra node A' = Add(A, Z) with a new graph input Z (zeros, A's shape) and every
 * consumer of A reading A' instead: dS/dZ = dS/dA.  The derived model is a few arrays built
 * here (no copy of the weights) and lives only for the call.
 */
#include "imgops.h"
#include "netutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { M_NONE, M_GRADCAM, M_GRADCAMPP, M_SALIENCY, M_SMOOTHGRAD } Method;

typedef struct {
  CnnfxNet eff;            /* shallow copy of the caller's net with the effective input size */
  const CnnfxRun *run;
  const char *score;       /* tensor holding the class scores (logits) */
  int n_classes;
  double prog0, prog1;     /* progress span of the current stage */
} Ctx;


int cnnfx_tta_views(int level, const CnnfxTtaView **views)
{
  static const CnnfxTtaView none[] = {{0, 0, FALSE, 1.0f}};
  static const CnnfxTtaView flip[] = {{0, 0, FALSE, 0.5f}, {0, 0, TRUE, 0.5f}};
  static const CnnfxTtaView shift[] = {{0, 0, FALSE, 0.25f},  {0, 0, TRUE, 0.25f},  {-1, -1, FALSE, 0.125f},
                                       {-1, -1, TRUE, 0.125f}, {1, 1, FALSE, 0.125f}, {1, 1, TRUE, 0.125f}};
  if (level >= 2) {
    *views = shift;
    return (int)G_N_ELEMENTS(shift);
  }
  *views = level == 1 ? flip : none;
  return level == 1 ? 2 : 1;
}

static int64_t reflect_at(int64_t i, int64_t n)
{
  if (n < 2) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

/* One test-time view of x [N,C,H,W] (cnnfx_tta_views) as a new tensor. */
static CnnfxTensor *tta_view(const CnnfxTensor *x, const CnnfxTtaView *v, GError **error)
{
  CnnfxTensor *t = cnnfx_tensor_copy(x, error);
  if (!t) return NULL;
  const int64_t H = x->dims[2], W = x->dims[3], planes = x->dims[0] * x->dims[1];
  const float *src = cnnfx_f32(x);
  float *d = cnnfx_f32(t);
  for (int64_t p = 0; p < planes; p++)
    for (int64_t y = 0; y < H; y++) {
      const float *row = src + (p * H + reflect_at(y + v->dy, H)) * W;
      for (int64_t i = 0; i < W; i++) d[(p * H + y) * W + i] = row[reflect_at((v->flip ? W - 1 - i : i) + v->dx, W)];
    }
  return t;
}

static void progress(const Ctx *c, double f, const char *what)
{
  if (c->run && c->run->progress) c->run->progress(c->prog0 + (c->prog1 - c->prog0) * f, _(what), c->run->user);
}

static CnnfxSession *new_session_keep(const Ctx *c, const CnnfxModel *m, CnnfxGradMode grad,
                                      const char *const *targets, const char *const *keep_grads, GError **error)
{
  CnnfxSessionOptions o = {.grad = grad,
                           .targets = targets,
                           .keep_grads = keep_grads,
                           .mem_limit = c->run ? c->run->max_memory : 0,
                           .cancel = c->run ? c->run->cancel : NULL};
  return cnnfx_session_new(m, c->run ? c->run->backend : NULL, &o, error);
}

static CnnfxSession *new_session(const Ctx *c, const CnnfxModel *m, CnnfxGradMode grad, const char *const *targets,
                                 GError **error)
{
  return new_session_keep(c, m, grad, targets, NULL, error);
}

/* ---- helpers ----------------------------------------------------------------------------- */

static CnnfxTensor *one_hot(const CnnfxTensor *like, int idx, GError **error)
{
  CnnfxTensor *g = cnnfx_tensor_new_f32(like->ndim, like->dims, error);
  if (!g) return NULL;
  memset(g->data, 0, g->numel * sizeof(float));
  cnnfx_f32(g)[idx] = 1.0f;
  return g;
}

static int cmp_float(const void *a, const void *b)
{
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* map /= its q-quantile (q = 1: the maximum), clipped to 0..1.  All-zero maps stay zero. */
static gboolean normalise(float *map, size_t n, double q, GError **error)
{
  float top = 0;
  if (q >= 1) {
    for (size_t i = 0; i < n; i++) top = MAX(top, map[i]);
  } else {
    float *tmp = g_try_new(float, n);
    if (!tmp) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (heat map)");
      return FALSE;
    }
    memcpy(tmp, map, n * sizeof(float));
    qsort(tmp, n, sizeof(float), cmp_float);
    top = tmp[(size_t)(q * (double)(n - 1))];
    if (!(top > 0)) top = tmp[n - 1];
    g_free(tmp);
  }
  if (!(top > 0) || !isfinite(top)) {
    memset(map, 0, n * sizeof(float));
    return TRUE;
  }
  float inv = 1.0f / top;
  for (size_t i = 0; i < n; i++) map[i] = isfinite(map[i]) ? CLAMP(map[i] * inv, 0.f, 1.f) : 0.f;
  return TRUE;
}

static double gauss(GRand *r)
{
  double u1 = g_rand_double(r), u2 = g_rand_double(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
}

/* Last 4-D node output with spatial size > 1 computed by session s. */
static char *auto_cam_layer(const CnnfxModel *m, CnnfxSession *s)
{
  for (int k = cnnfx_model_n_nodes(m) - 1; k >= 0; k--)
    for (int o = cnnfx_model_node_n_outputs(m, k) - 1; o >= 0; o--) {
      const char *v = cnnfx_model_node_output(m, k, o);
      int nd;
      int64_t d[CNNFX_MAX_DIMS];
      if (!v || !*v || !cnnfx_session_shape(s, v, &nd, d)) continue;
      if (nd == 4 && d[0] == 1 && (d[2] > 1 || d[3] > 1)) return g_strdup(v);
    }
  return NULL;
}

/* ---- heat maps ------------------------------------------------------------------------- */

static CnnfxTensor *gradcam(Ctx *c, const CnnfxTensor *x, int cls, gboolean plus_plus, CnnfxSession *probe,
                            GError **error)
{
  const CnnfxNet *net = &c->eff;
  g_autofree char *layer = NULL;
  if (net->cam_layer && *net->cam_layer) {
    if (!(layer = cnnfx_net_resolve_layer(net, net->cam_layer, error))) return NULL;
  } else if (!(layer = auto_cam_layer(net->model, probe))) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                "Grad-CAM: the model has no 4-D feature map with a spatial size above 1x1 (give cam_layer)");
    return NULL;
  }
  int nd = 0;
  int64_t d[CNNFX_MAX_DIMS];
  if (!cnnfx_session_shape(probe, layer, &nd, d)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                "Grad-CAM: layer '%s' is not computed on the way to the output '%s'", layer, c->score);
    return NULL;
  }
  if (nd != 4 || d[0] != 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "Grad-CAM: layer '%s' has %d dimensions; a feature map "
                "[1,C,H,W] is needed", layer, nd);
    return NULL;
  }
  CnnfxTensor *map = NULL;
  CnnfxSession *s = NULL;
  g_autoptr(CnnfxTensor) seed = NULL;
  const char *targets[] = {c->score, layer, NULL};
  const char *keep[] = {layer, NULL}; /* backward keeps dS/dA at the feature map (public session option) */
  progress(c, 0.1, "Grad-CAM");
  if (!(s = new_session_keep(c, net->model, CNNFX_GRAD_INPUT, targets, keep, error))) goto out;
  if (!cnnfx_session_set_input(s, net->input, (CnnfxTensor *)x, error) || !cnnfx_session_forward(s, error))
    goto out;
  CnnfxTensor *sc = cnnfx_session_get(s, c->score, error);
  if (!sc || !(seed = one_hot(sc, cls, error))) goto out;
  progress(c, 0.5, "Grad-CAM");
  if (!cnnfx_session_backward(s, 1, &c->score, &seed, error)) goto out;
  CnnfxTensor *A = cnnfx_session_get(s, layer, error);
  CnnfxTensor *G = A ? cnnfx_session_grad(s, layer, error) : NULL;
  if (!G) goto out;
  if (!cnnfx_same_shape(A, G)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "Grad-CAM: gradient and feature map differ in shape");
    goto out;
  }
  int C = (int)d[1], h = (int)d[2], w = (int)d[3];
  size_t hw = (size_t)h * w;
  const float *a = cnnfx_f32(A), *g = cnnfx_f32(G);
  double *wk = g_try_new0(double, C);
  int64_t md[3] = {1, h, w};
  if (!wk || !(map = cnnfx_tensor_new_f32(3, md, error))) {
    if (!wk) g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (Grad-CAM)");
    g_free(wk);
    goto out;
  }
#pragma omp parallel for schedule(static)
  for (int k = 0; k < C; k++) {
    const float *ak = a + k * hw, *gk = g + k * hw;
    double acc = 0;
    if (!plus_plus) {
      for (size_t i = 0; i < hw; i++) acc += gk[i];
      acc /= (double)hw;
    } else {
      double sum_a = 0;
      for (size_t i = 0; i < hw; i++) sum_a += ak[i];
      for (size_t i = 0; i < hw; i++) {
        double g1 = gk[i], g2 = g1 * g1, g3 = g2 * g1;
        double den = 2 * g2 + sum_a * g3;
        double alpha = (g1 != 0 && den != 0) ? g2 / den : 0;
        acc += alpha * MAX(g1, 0.0);
      }
    }
    wk[k] = acc;
  }
  float *o = cnnfx_f32(map);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < hw; i++) {
    double acc = 0;
    for (int k = 0; k < C; k++) acc += wk[k] * a[k * hw + i];
    o[i] = (float)MAX(acc, 0.0);
  }
  g_free(wk);
  if (!normalise(o, hw, 1.0, error)) g_clear_pointer(&map, cnnfx_tensor_unref);
out:
  cnnfx_session_free(s);
  return map;
}

/* max_c |dS/d rgb| at the network input resolution, accumulated into acc [h*w] */
static gboolean saliency_once(Ctx *c, CnnfxSession *s, CnnfxTensor *x, gboolean forward_done, int cls, float *acc,
                              GError **error)
{
  const CnnfxNet *net = &c->eff;
  if (!forward_done && (!cnnfx_session_set_input(s, net->input, x, error) || !cnnfx_session_forward(s, error)))
    return FALSE;
  CnnfxTensor *sc = cnnfx_session_get(s, c->score, error);
  if (!sc) return FALSE;
  g_autoptr(CnnfxTensor) seed = one_hot(sc, cls, error);
  if (!seed || !cnnfx_session_backward(s, 1, &c->score, &seed, error)) return FALSE;
  CnnfxTensor *gx = cnnfx_session_grad(s, net->input, error);
  if (!gx) return FALSE;
  int h = (int)x->dims[2], w = (int)x->dims[3];
  int64_t d[3] = {3, h, w};
  g_autoptr(CnnfxTensor) grgb = cnnfx_tensor_new_f32(3, d, error);
  if (!grgb || !cnnfx_net_grad_to_rgb(net, gx, grgb, error)) return FALSE;
  size_t hw = (size_t)h * w;
  const float *g = cnnfx_f32(grgb);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < hw; i++) {
    float m = fabsf(g[i]);
    m = MAX(m, fabsf(g[hw + i]));
    m = MAX(m, fabsf(g[2 * hw + i]));
    acc[i] += m;
  }
  return TRUE;
}

static CnnfxTensor *saliency(Ctx *c, const CnnfxParams *p, const CnnfxTensor *image, CnnfxTensor *x, int cls,
                             gboolean smooth, CnnfxSession *s, GError **error)
{
  int h = (int)x->dims[2], w = (int)x->dims[3];
  size_t hw = (size_t)h * w;
  int64_t md[3] = {1, h, w};
  g_autoptr(CnnfxTensor) map = cnnfx_tensor_new_f32(3, md, error);
  if (!map) return NULL;
  float *acc = cnnfx_f32(map);
  memset(acc, 0, hw * sizeof(float));
  if (!smooth) {
    progress(c, 0.5, N_("saliency"));
    if (!saliency_once(c, s, x, TRUE, cls, acc, error)) return NULL;
  } else {
    int n = MAX(1, cnnfx_params_int(p, "smooth-samples"));
    double level = cnnfx_params_double(p, "smooth-noise");
    /* the image at the network's input size (the noise is added to what the network sees) */
    int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
    g_autoptr(CnnfxTensor) base = (H == h && W == w) ? cnnfx_tensor_copy(image, error)
                                                      : cnnfx_tensor_resized(image, h, w, error);
    if (!base) return NULL;
    g_autoptr(CnnfxTensor) noisy = cnnfx_tensor_copy(base, error);
    if (!noisy) return NULL;
    const float *b = cnnfx_f32(base);
    float *nz = cnnfx_f32(noisy);
    float lo = b[0], hi = b[0];
    for (size_t i = 0; i < base->numel; i++) {
      lo = MIN(lo, b[i]);
      hi = MAX(hi, b[i]);
    }
    double sigma = level * (hi > lo ? hi - lo : 1.0);
    guint32 seed[2] = {(guint32)(c->run ? c->run->seed : 0), (guint32)((c->run ? c->run->seed : 0) >> 32)};
    g_autoptr(GRand) rng = g_rand_new_with_seed_array(seed, 2);
    for (int t = 0; t < n; t++) {
      if (cnnfx_run_cancelled(c->run, error)) return NULL;
      g_autofree char *what = g_strdup_printf(_("SmoothGrad sample %d/%d"), t + 1, n);
      progress(c, (double)t / n, what);
      for (size_t i = 0; i < base->numel; i++) nz[i] = b[i] + (float)(sigma * gauss(rng));
      g_autoptr(CnnfxTensor) xn = cnnfx_net_preprocess(&c->eff, noisy, error);
      if (!xn || !saliency_once(c, s, xn, FALSE, cls, acc, error)) return NULL;
    }
    for (size_t i = 0; i < hw; i++) acc[i] /= (float)n;
  }
  if (!normalise(acc, hw, 0.99, error)) return NULL;
  return g_steal_pointer(&map);
}

/* ---- entry point ----------------------------------------------------------------------- */

static gboolean classify_run(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, const CnnfxTensor *image,
                             CnnfxScore *top, int k, CnnfxTensor **heatmap, GError **error)
{
  if (heatmap) *heatmap = NULL;
  if (!net || !net->model || !net->input || !net->output || !p || !image || !top || k < 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "classify: missing argument");
    return FALSE;
  }
  if (!((image->ndim == 3 && image->dims[0] == 3) || (image->ndim == 4 && image->dims[0] == 1 && image->dims[1] == 3)) ||
      image->dtype != CNNFX_F32 || image->dims[image->ndim - 1] < 1 || image->dims[image->ndim - 2] < 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "classify: the image must be an RGB tensor [3,H,W]");
    return FALSE;
  }
  const char *ov = cnnfx_params_string(p, "overlay");
  Method method = M_NONE;
  if (heatmap && ov) {
    if (!strcmp(ov, "gradcam")) method = M_GRADCAM;
    else if (!strcmp(ov, "gradcam++")) method = M_GRADCAMPP;
    else if (!strcmp(ov, "saliency")) method = M_SALIENCY;
    else if (!strcmp(ov, "smoothgrad")) method = M_SMOOTHGRAD;
    else if (strcmp(ov, "none")) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "classify: unknown overlay '%s'", ov);
      return FALSE;
    }
  }

  Ctx c = {.eff = *net, .run = run, .prog0 = 0, .prog1 = 0.3};
  cnnfx_net_pin_input_size(&c.eff);
  c.score = cnnfx_net_score_tensor(net);

  progress(&c, 0, N_("classifying"));
  g_autoptr(CnnfxTensor) x = cnnfx_net_preprocess(&c.eff, image, error);
  if (!x) return FALSE;
  gboolean input_grads = method == M_SALIENCY || method == M_SMOOTHGRAD;
  const char *targets[] = {net->output, c.score, NULL};
  if (c.score == net->output) targets[1] = NULL;
  g_autoptr(CnnfxSession) s = new_session(&c, net->model, input_grads ? CNNFX_GRAD_INPUT : CNNFX_GRAD_NONE, targets,
                                          error);
  if (!s) return FALSE;
  /* test-time augmentation: the other views' weighted scores first (the session then holds the
   * image's own forward for the heat maps) */
  g_autofree float *mirror = NULL;
  int64_t n_mirror = 0;
  const CnnfxTtaView *views;
  int nv = x->ndim == 4 ? cnnfx_tta_views(net->tta, &views) : 1;
  for (int vi = 1; vi < nv; vi++) {
    g_autoptr(CnnfxTensor) xv = tta_view(x, &views[vi], error);
    if (!xv) return FALSE;
    if (!cnnfx_session_set_input(s, net->input, xv, error) || !cnnfx_session_forward(s, error)) return FALSE;
    CnnfxTensor *of = cnnfx_session_get(s, net->output, error);
    if (!of) return FALSE;
    if (of->dtype != CNNFX_F32 || of->numel < 1 || of->numel > G_MAXINT || (mirror && n_mirror != (int64_t)of->numel))
      break; /* not one row of scores: reported below */
    if (!mirror) {
      n_mirror = (int64_t)of->numel;
      if (!(mirror = g_try_new0(float, of->numel))) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (classify)");
        return FALSE;
      }
    }
    const float *ov = cnnfx_f32(of);
    for (int64_t i = 0; i < n_mirror; i++) mirror[i] += views[vi].weight * ov[i];
  }
  if (!cnnfx_session_set_input(s, net->input, x, error) || !cnnfx_session_forward(s, error)) return FALSE;
  CnnfxTensor *out = cnnfx_session_get(s, net->output, error);
  CnnfxTensor *sc = out ? cnnfx_session_get(s, c.score, error) : NULL;
  if (!sc) return FALSE;
  int big_dims = 0; /* dims above 1: one row of scores has exactly one ([1,N], [1,N,1,1], [N]) */
  for (int i = 0; i < out->ndim; i++) big_dims += out->dims[i] > 1;
  if (out->dtype != CNNFX_F32 || out->numel < 1 || out->numel > G_MAXINT || big_dims > 1) {
    g_autofree char *shp = cnnfx_shape_string(out);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "classify: output '%s' (%s) is not one row of class scores",
                net->output, shp);
    return FALSE;
  }
  if (sc->numel != out->numel || sc->dtype != CNNFX_F32) c.score = net->output;
  int n = c.n_classes = (int)out->numel;

  /* probabilities */
  g_autofree double *prob = g_try_new(double, n);
  g_autofree int *order = g_try_new(int, n);
  if (!prob || !order) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (classify)");
    return FALSE;
  }
  const float *o = cnnfx_f32(out);
  if (mirror && n_mirror == n) { /* weighted mean of the views' scores (logits, or probabilities) */
    for (int i = 0; i < n; i++) mirror[i] += views[0].weight * o[i];
    o = mirror;
  }
  if (net->output_is_prob) {
    for (int i = 0; i < n; i++) prob[i] = isfinite(o[i]) ? CLAMP(o[i], 0.f, 1.f) : 0;
  } else {
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
      if (isfinite(o[i])) mx = MAX(mx, o[i]);
    for (int i = 0; i < n; i++) sum += prob[i] = isfinite(o[i]) ? exp(o[i] - mx) : 0;
    for (int i = 0; i < n; i++) prob[i] = sum > 0 ? prob[i] / sum : 1.0 / n;
  }
  if (k > n) {
    /* an explicit --top above the class count is an error; the table's default (5) on a model
     * with fewer classes reports them all (the entries past n get index -1) */
    int def = -1;
    const CnnfxFilterInfo *fi = p ? cnnfx_params_filter(p) : NULL;
    for (const CnnfxParam *q = fi ? fi->params : NULL; q && q->name; q++)
      if (!strcmp(q->name, "top")) def = (int)q->def;
    if (!p || k != def) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "--top %d: model %s has only %d classes (give --top %d or less)",
                  k, net->name ? net->name : "", n, n);
      return FALSE;
    }
  }
  /* top-k by partial selection (k is small) */
  for (int i = 0; i < n; i++) order[i] = i;
  int n_labels = net->labels ? (int)g_strv_length(net->labels) : 0;
  for (int r = 0; r < k; r++) {
    if (r >= n) {
      top[r] = (CnnfxScore){.index = -1, .prob = 0, .label = NULL};
      continue;
    }
    int best = r;
    for (int i = r + 1; i < n; i++)
      if (prob[order[i]] > prob[order[best]] || (prob[order[i]] == prob[order[best]] && order[i] < order[best]))
        best = i;
    int t = order[r];
    order[r] = order[best];
    order[best] = t;
    int idx = order[r];
    top[r] = (CnnfxScore){.index = idx, .prob = prob[idx], .label = idx < n_labels ? net->labels[idx] : NULL};
  }
  if (method == M_NONE) {
    progress(&c, 1.0, N_("done"));
    return TRUE;
  }

  int cls = order[0];
  const char *cs = cnnfx_params_string(p, "class");
  if (cs && *cs && !cnnfx_net_parse_class(net, cs, n, &cls, error)) return FALSE;
  if (cnnfx_run_cancelled(c.run, error)) return FALSE;

  c.prog0 = 0.3;
  c.prog1 = 1.0;
  CnnfxTensor *map = NULL;
  if (method == M_GRADCAM || method == M_GRADCAMPP) {
    map = gradcam(&c, x, cls, method == M_GRADCAMPP, s, error);
  } else {
    map = saliency(&c, p, image, x, cls, method == M_SMOOTHGRAD, s, error);
  }
  if (!map) return FALSE;
  progress(&c, 1.0, N_("done"));
  *heatmap = map;
  return TRUE;
}

gboolean cnnfx_classify(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, const CnnfxTensor *image,
                        CnnfxScore *top, int k, CnnfxTensor **heatmap, GError **error)
{
  if (heatmap) *heatmap = NULL;
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r && classify_run(net, p, r, image, top, k, heatmap, error);
}
