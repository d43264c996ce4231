/* Fool the network: adversarial examples by FGSM (Goodfellow et al. 2015), iterative FGSM
 * (Kurakin et al. 2017) and PGD (Madry et al. 2018).
 *
 * Everything happens in the IMAGE domain: the perturbation is added to the RGB tensor at the
 * photo's resolution, and the network's input gradient is mapped back through the
 * preprocessing (including the resize of fixed-size classifiers) with cnnfx_net_grad_to_rgb.
 * Pixel units: o = the original's 8-bit values (0..255), eps and step in the same units.
 *
 *   untargeted: y = top class of o;  ascend  L = CE(logits, y)          x += step * sign(dL/dx)
 *   targeted:   y = target;          descend L = CE(logits, target)     x -= step * sign(dL/dx)
 *   FGSM: one step of size eps from o.  I-FGSM: `iterations` steps from o.  PGD: the same from
 *   a uniform random start in the eps-ball (seeded by run->seed).  After every step x is
 *   projected onto [o - eps, o + eps] and [0, 255].
 *
 * The result must survive an 8-bit save: x is rounded to integers, clipped to the integer
 * ball [o - floor(eps), o + floor(eps)] and re-evaluated.  If the float result fooled the
 * network but the rounded one does not, sign steps of max(step, 1) levels are taken from the
 * rounded image (re-projected and re-rounded each time) for at most max(10, iterations)
 * extra rounds.  If nothing fools, the attempt with the best objective is returned and the
 * report says fooled = FALSE. */
#include "imgops.h"
#include "netutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const CnnfxNet *net;
  const CnnfxRun *run;
  CnnfxSession *s;
  int K;          /* classes */
  double *prob;   /* [K] probabilities of the last evaluation */
  int n_labels;
  /* progress */
  int done, total;
} Fool;

static void progress(Fool *f, const char *what)
{
  if (!f->run->progress) return;
  char buf[160];
  /* TRANSLATORS: fool progress: "<what> <done>/<total>" */
  g_snprintf(buf, sizeof buf, _("%s %d/%d"), _(what), MIN(f->done, f->total), f->total);
  f->run->progress(f->total ? MIN(1.0, (double)f->done / f->total) : 0.0, buf, f->run->user);
}

static const char *label_of(const Fool *f, int i)
{
  return i >= 0 && i < f->n_labels ? f->net->labels[i] : NULL;
}

/* One forward pass of `rgb`; fills f->prob.  With grgb != NULL also backward from the
 * cross-entropy of class `cls` and writes d CE / d rgb into grgb. */
static gboolean evaluate(Fool *f, const CnnfxTensor *rgb, int cls, CnnfxTensor *grgb, GError **error)
{
  const CnnfxNet *net = f->net;
  if (cnnfx_run_cancelled(f->run, error)) return FALSE;
  if (!cnnfx_net_forward(net, f->s, rgb, error)) return FALSE;
  CnnfxTensor *out = cnnfx_session_get(f->s, net->output, error);
  if (!out) return FALSE;
  int big = 0; /* a row of class scores: [K], [1,K], [1,K,1,1] */
  for (int i = 0; i < out->ndim; i++) big += out->dims[i] > 1;
  if (out->dtype != CNNFX_F32 || out->numel < 2 || big != 1) {
    g_autofree char *sh = cnnfx_shape_string(out);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE,
                "fool: output '%s' of model %s has shape %s; a classifier with one row of class scores is needed",
                net->output, net->name ? net->name : "", sh);
    return FALSE;
  }
  if (f->K == 0) {
    f->K = (int)out->numel;
    if (!(f->prob = g_try_new(double, f->K))) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (fool)");
      return FALSE;
    }
  } else if ((int)out->numel != f->K) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "fool: the number of classes changed (%d -> %zu)", f->K,
                out->numel);
    return FALSE;
  }
  const float *z = cnnfx_f32(out);
  const int K = f->K;
  if (net->output_is_prob) {
    for (int k = 0; k < K; k++) f->prob[k] = z[k];
  } else {
    double m = z[0], sum = 0;
    for (int k = 1; k < K; k++) m = MAX(m, (double)z[k]);
    for (int k = 0; k < K; k++) sum += (f->prob[k] = exp(z[k] - m));
    for (int k = 0; k < K; k++) f->prob[k] /= sum;
  }
  for (int k = 0; k < K; k++)
    if (!isfinite(f->prob[k])) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "fool: model %s gives non-finite scores",
                  net->name ? net->name : "");
      return FALSE;
    }
  if (!grgb) return TRUE;

  /* d CE / d output; for a Softmax output, d CE / d logits (the Softmax's input): seeding the
   * probabilities with -1/p loses the gradient when the class's probability underflows */
  const char *score = cnnfx_net_score_tensor(net);
  CnnfxTensor *logits = strcmp(score, net->output) ? cnnfx_session_get(f->s, score, NULL) : NULL;
  gboolean via_logits = logits && logits->dtype == CNNFX_F32 && (int)logits->numel == K;
  g_autoptr(CnnfxTensor) seed = via_logits ? cnnfx_tensor_new_f32(logits->ndim, logits->dims, error)
                                           : cnnfx_tensor_new_f32(out->ndim, out->dims, error);
  if (!seed) return FALSE;
  float *g = cnnfx_f32(seed);
  if (net->output_is_prob && !via_logits) {
    memset(g, 0, (size_t)K * sizeof(float));
    g[cls] = (float)(-1.0 / MAX(f->prob[cls], 1e-12));
  } else {
    for (int k = 0; k < K; k++) g[k] = (float)f->prob[k];
    g[cls] -= 1.0f;
  }
  const char *names[1] = {via_logits ? score : net->output};
  CnnfxTensor *seeds[1] = {seed};
  if (!cnnfx_session_backward(f->s, 1, names, seeds, error)) return FALSE;
  CnnfxTensor *gx = cnnfx_session_grad(f->s, net->input, error);
  return gx && cnnfx_net_grad_to_rgb(net, gx, grgb, error);
}

static int argmax(const double *p, int K)
{
  int b = 0;
  for (int k = 1; k < K; k++)
    if (p[k] > p[b]) b = k;
  return b;
}

/* "least-likely", an index, or a label (whole label or one of its comma-separated synonyms,
 * case-insensitive). */
static int parse_target(const Fool *f, const char *spec, GError **error)
{
  g_autofree char *t = g_strstrip(g_strdup(spec));
  if (!g_ascii_strcasecmp(t, "least-likely") || !g_ascii_strcasecmp(t, "least_likely") ||
      !g_ascii_strcasecmp(t, "leastlikely") || !g_ascii_strcasecmp(t, "ll")) {
    int b = 0;
    for (int k = 1; k < f->K; k++)
      if (f->prob[k] < f->prob[b]) b = k;
    return b;
  }
  char *end;
  long v = strtol(t, &end, 10);
  if (*t && end != t && *end == 0) {
    if (v < 0 || v >= f->K) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Target: class %ld is out of range (the model has %d classes)"),
                  v, f->K);
      return -1;
    }
    return (int)v;
  }
  for (int k = 0; k < f->n_labels && k < f->K; k++)
    if (!g_ascii_strcasecmp(f->net->labels[k], t)) return k;
  for (int k = 0; k < f->n_labels && k < f->K; k++) {
    g_auto(GStrv) syn = g_strsplit(f->net->labels[k], ",", -1);
    for (char **s = syn; *s; s++)
      if (!g_ascii_strcasecmp(g_strstrip(*s), t)) return k;
  }
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
              f->n_labels ? _("Target: '%s' is not a label of model %s; give a label, a class index 0..%d or "
                              "'least-likely' (or nothing for an untargeted attack)")
                          : _("Target: '%s' is not a label of model %s (it has no labels); give a class index 0..%d "
                              "or 'least-likely' (or nothing for an untargeted attack)"),
              t, f->net->name ? f->net->name : "", f->K - 1);
  return -1;
}

/* x = clamp(x, lo, hi) per pixel, with lo/hi from the original's 8-bit values o and the radius r
 * (all in 0..255 units, x in 0..1). */
static void project(float *x, const guint8 *o, size_t n, double r)
{
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float lo = (float)MAX(0.0, o[i] - r) / 255.f, hi = (float)MIN(255.0, o[i] + r) / 255.f;
    x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
  }
}

/* Round x to 8-bit levels inside the integer eps-ball (r integer); returns the L-inf distance in levels. */
static int quantise(float *x, const guint8 *o, size_t n, int r)
{
  int linf = 0;
#pragma omp parallel for schedule(static) reduction(max : linf)
  for (size_t i = 0; i < n; i++) {
    int q = (int)floorf(x[i] * 255.f + 0.5f);
    int lo = MAX(0, o[i] - r), hi = MIN(255, o[i] + r);
    q = q < lo ? lo : q > hi ? hi : q;
    x[i] = (float)q / 255.f;
    linf = MAX(linf, abs(q - o[i]));
  }
  return linf;
}

/* x += dir * step/255 * sign(g) */
static void sign_step(float *x, const float *g, size_t n, float step)
{
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) x[i] += g[i] > 0 ? step : g[i] < 0 ? -step : 0.f;
}

static gboolean fool_run(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                         CnnfxTensor **noise, CnnfxFoolReport *report, GError **error)
{
  if (noise) *noise = NULL;
  if (image->dtype != CNNFX_F32 || image->ndim < 3 || image->ndim > 4 || image->dims[image->ndim - 3] != 3 ||
      (image->ndim == 4 && image->dims[0] != 1) || image->dims[image->ndim - 1] < 1 ||
      image->dims[image->ndim - 2] < 1) {
    g_autofree char *sh = cnnfx_shape_string(image);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "fool: image must be [3,H,W] RGB, got %s", sh);
    return FALSE;
  }
  const char *method = cnnfx_params_string(p, "method");
  const double eps = cnnfx_params_double(p, "epsilon");
  const double amplify = cnnfx_params_double(p, "amplify");
  const char *target_spec = cnnfx_params_string(p, "target");
  const gboolean fgsm = !g_strcmp0(method, "fgsm"), pgd = !g_strcmp0(method, "pgd");
  const int iters = fgsm ? 1 : cnnfx_params_int(p, "iterations");
  const double step = fgsm ? eps : cnnfx_params_double(p, "step");
  const int eps_i = (int)floor(eps + 1e-9);
  const int max_extra = MAX(10, iters);
  const size_t n = image->numel;

  Fool f = {.net = net, .run = run, .n_labels = net->labels ? (int)g_strv_length(net->labels) : 0};
  gboolean ok = FALSE;
  GRand *rng = NULL;
  guint8 *o = NULL, *best = NULL;
  CnnfxTensor *x = NULL, *g = NULL;
  CnnfxFoolReport rep = {.target = {.index = -1}};

  const char *score = cnnfx_net_score_tensor(net); /* the logits behind a Softmax output */
  const char *targets[] = {net->output, strcmp(score, net->output) ? score : NULL, NULL};
  CnnfxSessionOptions so = {.grad = CNNFX_GRAD_INPUT, .targets = targets, .mem_limit = run->max_memory,
                            .cancel = run->cancel};
  if (!(f.s = cnnfx_session_new(net->model, run->backend, &so, error))) goto out;
  if (!(o = g_try_malloc(n)) || !(x = cnnfx_tensor_new_f32(image->ndim, image->dims, error)) ||
      !(g = cnnfx_tensor_new_f32(image->ndim, image->dims, error)))
    goto nomem;

  /* the original as the 8-bit image it will be saved as */
  float *xs = cnnfx_f32(x), *gs = cnnfx_f32(g);
  const float *img = cnnfx_f32(image);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float v = img[i];
    v = v > 0.f ? (v < 1.f ? v : 1.f) : 0.f; /* also maps NaN to 0 */
    o[i] = (guint8)(v * 255.f + 0.5f);
    xs[i] = o[i] / 255.f;
  }
  f.total = iters + 2;
  progress(&f, N_("classifying"));
  if (!evaluate(&f, x, 0, NULL, error)) goto out;
  const int y0 = argmax(f.prob, f.K);
  rep.before = (CnnfxScore){y0, f.prob[y0], label_of(&f, y0)};
  const gboolean targeted = target_spec && *target_spec;
  int cls = y0;
  if (targeted) {
    if ((cls = parse_target(&f, target_spec, error)) < 0) goto out;
    rep.target = (CnnfxScore){cls, f.prob[cls], label_of(&f, cls)};
  }
  const float dir = targeted ? -1.f : 1.f; /* descend the target's CE, ascend the original's */

  if (pgd && eps > 0) {
    guint32 sd[2] = {(guint32)(run->seed & 0xffffffffu), (guint32)(run->seed >> 32)};
    rng = g_rand_new_with_seed_array(sd, 2);
    for (size_t i = 0; i < n; i++) xs[i] += (float)(g_rand_double_range(rng, -eps, eps) / 255.0);
    project(xs, o, n, eps);
  }
  for (int t = 0; t < iters; t++) {
    if (!evaluate(&f, x, cls, g, error)) goto out;
    sign_step(xs, gs, n, dir * (float)(step / 255.0));
    project(xs, o, n, eps);
    rep.iterations++;
    f.done++;
    progress(&f, fgsm ? "FGSM" : pgd ? N_("PGD step") : N_("I-FGSM step"));
  }

  /* survive the 8-bit save */
  gboolean float_fooled = FALSE;
  if (eps_i > 0) {
    if (!evaluate(&f, x, cls, NULL, error)) goto out;
    int a = argmax(f.prob, f.K);
    float_fooled = targeted ? a == cls : a != y0;
  }
  quantise(xs, o, n, eps_i);
  int rounds_left = float_fooled ? max_extra : 0;
  double best_obj = -INFINITY;
  f.done++;
  progress(&f, N_("checking the 8-bit result"));
  for (;;) {
    if (!evaluate(&f, x, cls, rounds_left > 0 ? g : NULL, error)) goto out;
    int a = argmax(f.prob, f.K);
    rep.fooled = targeted ? a == cls : a != y0;
    if (rep.fooled || rounds_left == 0) break;
    /* objective to keep the best attempt: the target's probability, or 1 - the original's */
    double obj = targeted ? f.prob[cls] : 1.0 - f.prob[y0];
    if (obj > best_obj) {
      if (!best && !(best = g_try_malloc(n))) goto nomem;
      best_obj = obj;
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; i++) best[i] = (guint8)(xs[i] * 255.f + 0.5f);
    }
    sign_step(xs, gs, n, dir * (float)(MAX(step, 1.0) / 255.0));
    quantise(xs, o, n, eps_i);
    rep.iterations++;
    rounds_left--;
    if (f.total < rep.iterations + 2) f.total = rep.iterations + 2;
    f.done++;
    progress(&f, N_("re-projecting after 8-bit rounding, step"));
  }
  if (!rep.fooled && best) {
    double obj = targeted ? f.prob[cls] : 1.0 - f.prob[y0];
    if (best_obj > obj) { /* an earlier rounded attempt was closer: return that one */
#pragma omp parallel for schedule(static)
      for (size_t i = 0; i < n; i++) xs[i] = best[i] / 255.f;
      if (!evaluate(&f, x, cls, NULL, error)) goto out;
    }
  }
  int a = argmax(f.prob, f.K);
  rep.after = (CnnfxScore){a, f.prob[a], label_of(&f, a)};
  if (targeted) rep.target.prob = f.prob[cls];
  int linf = 0;
#pragma omp parallel for schedule(static) reduction(max : linf)
  for (size_t i = 0; i < n; i++) linf = MAX(linf, abs((int)(xs[i] * 255.f + 0.5f) - o[i]));
  rep.linf = linf;

  if (noise) {
    /* 0.5 + amplify * (adv - orig), 3 channels: reuse the gradient buffer */
    const float amp = (float)amplify;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
      float v = 0.5f + amp * (xs[i] - o[i] / 255.f);
      gs[i] = v < 0.f ? 0.f : v > 1.f ? 1.f : v;
    }
    *noise = g;
    g = NULL;
  }
  memcpy(cnnfx_f32(image), xs, n * sizeof(float));
  if (report) *report = rep;
  f.done = f.total;
  progress(&f, N_("done"));
  ok = TRUE;
  goto out;
nomem:
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (fool, %dx%d image)",
              (int)image->dims[image->ndim - 1], (int)image->dims[image->ndim - 2]);
out:
  if (rng) g_rand_free(rng);
  if (f.s) cnnfx_session_free(f.s);
  g_free(f.prob);
  g_free(o);
  g_free(best);
  if (x) cnnfx_tensor_unref(x);
  if (g) cnnfx_tensor_unref(g);
  return ok;
}

gboolean cnnfx_fool(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                    CnnfxTensor **noise, CnnfxFoolReport *report, GError **error)
{
  if (noise) *noise = NULL;
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r && fool_run(net, p, r, image, noise, report, error);
}
