/* CPU kernels (norm family): forward and backward into preallocated tensors.
 * BatchNormalization (inference and training form), InstanceNormalization, LRN, LpNormalization,
 * MeanVarianceNormalization.  The definitions (shapes, attributes) are in core/ops/norm.c.
 *
 * Reductions accumulate in double (with a per-plane shift for the variance) so that planes of
 * tens of millions of pixels keep float accuracy.  Big planes are split into chunks so that a
 * few channels still keep every thread busy.  Compiled once per SIMD level: keep functions static. */
#include "ops/norm.h"
#include <math.h>
#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#define NORM_CHUNK ((int64_t)1 << 15)

static int thread_count(const CnnfxExec *x)
{
  int nt = x && x->n_threads > 0 ? x->n_threads : omp_get_max_threads();
  return nt > 0 ? nt : 1;
}

/* ==== BatchNormalization ================================================================== */

/* ---- training form (training_mode=1, opset >= 14) ----------------------------------------
 * Y = (X - mean_B) / sqrt(var_B + eps) * scale + B with the batch's biased mean and variance
 * per channel; running_mean = input_mean * momentum + mean_B * (1 - momentum) and the same for
 * the variance (biased, as the ONNX reference).  Sums are taken per (n, c, chunk) in double and
 * then added in a fixed order, so results do not depend on the thread count. */

/* mean[c], var[c] (double) of X over N and the spatial positions. */
static gboolean bn_batch_stats(const CnnfxExec *x, const CnnfxBnGeom *g, const float *xp, double *mean, double *var,
                               GError **error)
{
  int nt = thread_count(x);
  int64_t nch = (g->inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g->N * g->Cp * nch;
  size_t pb = (size_t)(items + 1) * sizeof(double);
  double *part = cnnfx_mem_alloc(x->mem, pb, error);
  if (!part) return FALSE;
  double M = (double)g->N * (double)g->inner;
  for (int pass = 0; pass < 2; pass++) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t pc = it / nch, ch = it % nch, c = pc % g->Cp;
      int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g->inner, s0 + NORM_CHUNK);
      const float *xi = xp + pc * g->inner;
      double acc = 0.0;
      if (pass == 0) {
#pragma omp simd reduction(+ : acc)
        for (int64_t s = s0; s < s1; s++) acc += xi[s];
      } else {
        double m = mean[c];
#pragma omp simd reduction(+ : acc)
        for (int64_t s = s0; s < s1; s++) {
          double d = (double)xi[s] - m;
          acc += d * d;
        }
      }
      part[it] = acc;
    }
    for (int64_t c = 0; c < g->Cp; c++) {
      double t = 0.0;
      for (int64_t b = 0; b < g->N; b++)
        for (int64_t ch = 0; ch < nch; ch++) t += part[(b * g->Cp + c) * nch + ch];
      if (pass == 0) mean[c] = M > 0 ? t / M : 0.0;
      else var[c] = M > 0 ? t / M : 0.0;
    }
  }
  cnnfx_mem_free(x->mem, part, pb);
  return TRUE;
}

static gboolean bn_train_forward(const CnnfxExec *x, const CnnfxNode *n, const CnnfxBnGeom *g, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (g->N * g->inner == 0) return cnnfx_fail_shape(error, n, "training needs a non-empty batch");
  size_t sb = 2 * (size_t)g->Cp * sizeof(double), ab = 2 * (size_t)g->Cp * sizeof(float);
  double *mean = cnnfx_mem_alloc(x->mem, sb, error);
  if (!mean) return FALSE;
  double *var = mean + g->Cp;
  float *a = cnnfx_mem_alloc(x->mem, ab, error);
  if (!a) {
    cnnfx_mem_free(x->mem, mean, sb);
    return FALSE;
  }
  float *b = a + g->Cp;
  const float *xp = cnnfx_f32(X);
  if (!bn_batch_stats(x, g, xp, mean, var, error)) {
    cnnfx_mem_free(x->mem, a, ab);
    cnnfx_mem_free(x->mem, mean, sb);
    return FALSE;
  }
  const float *sc = cnnfx_f32(in[1]), *bi = cnnfx_f32(in[2]);
  for (int64_t c = 0; c < g->Cp; c++) {
    double inv = 1.0 / sqrt(var[c] + (double)g->eps);
    a[c] = (float)(sc[c] * inv);
    b[c] = (float)(bi[c] - mean[c] * sc[c] * inv);
  }
  double mom = cnnfx_attr_float(n, "momentum", 0.9f);
  if (n->n_out > 1) {
    const float *rm = cnnfx_f32(in[3]);
    float *o = cnnfx_f32(out[1]);
    for (int64_t c = 0; c < g->Cp; c++) o[c] = (float)(rm[c] * mom + mean[c] * (1.0 - mom));
  }
  if (n->n_out > 2) {
    const float *rv = cnnfx_f32(in[4]);
    float *o = cnnfx_f32(out[2]);
    for (int64_t c = 0; c < g->Cp; c++) o[c] = (float)(rv[c] * mom + var[c] * (1.0 - mom));
  }
  float *y = cnnfx_f32(out[0]);
  int64_t nch = (g->inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g->N * g->Cp * nch;
  int nt = thread_count(x);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t pc = it / nch, ch = it % nch, c = pc % g->Cp;
    int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g->inner, s0 + NORM_CHUNK);
    const float *xi = xp + pc * g->inner;
    float *yi = y + pc * g->inner;
    float ac = a[c], bc = b[c];
    for (int64_t s = s0; s < s1; s++) yi[s] = xi[s] * ac + bc;
  }
  cnnfx_mem_free(x->mem, a, ab);
  cnnfx_mem_free(x->mem, mean, sb);
  return TRUE;
}

static gboolean bn_train_backward(const CnnfxExec *x, const CnnfxNode *n, const CnnfxBnGeom *g,
                                  CnnfxTensor *const *in, const CnnfxTensor *G, const gboolean *need,
                                  CnnfxTensor *const *gin, GError **error)
{
  int nt = thread_count(x);
  const CnnfxTensor *X = in[0];
  if (!G || !(need[0] || need[1] || need[2])) return TRUE;
  if (G->numel != X->numel) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  const float *xp = cnnfx_f32(X), *sc = cnnfx_f32(in[1]);
  if (!xp || !sc) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "BatchNormalization '%s': input X was not kept for backward", n->name);
    return FALSE;
  }
  const float *gp = cnnfx_f32(G);
  int64_t nch = (g->inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g->N * g->Cp * nch;
  size_t sb = 5 * (size_t)g->Cp * sizeof(double), pb = (size_t)(2 * items + 1) * sizeof(double);
  double *mean = cnnfx_mem_alloc(x->mem, sb, error);
  if (!mean) return FALSE;
  double *var = mean + g->Cp, *k1 = var + g->Cp, *k2 = k1 + g->Cp, *k3 = k2 + g->Cp;
  double *part = cnnfx_mem_alloc(x->mem, pb, error);
  if (!part) {
    cnnfx_mem_free(x->mem, mean, sb);
    return FALSE;
  }
  if (!bn_batch_stats(x, g, xp, mean, var, error)) {
    cnnfx_mem_free(x->mem, part, pb);
    cnnfx_mem_free(x->mem, mean, sb);
    return FALSE;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t pc = it / nch, ch = it % nch, c = pc % g->Cp;
    int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g->inner, s0 + NORM_CHUNK);
    const float *gi = gp + pc * g->inner, *xi = xp + pc * g->inner;
    double sg = 0.0, sgx = 0.0, m = mean[c];
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t s = s0; s < s1; s++) {
      sg += gi[s];
      sgx += (double)gi[s] * ((double)xi[s] - m);
    }
    part[2 * it] = sg;
    part[2 * it + 1] = sgx;
  }
  double M = (double)g->N * (double)g->inner;
  for (int64_t c = 0; c < g->Cp; c++) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t b = 0; b < g->N; b++)
      for (int64_t ch = 0; ch < nch; ch++) {
        int64_t it = (b * g->Cp + c) * nch + ch;
        sg += part[2 * it];
        sgx += part[2 * it + 1];
      }
    double inv = 1.0 / sqrt(var[c] + (double)g->eps);
    if (need[1]) cnnfx_f32(gin[1])[c] = (float)(sgx * inv);
    if (need[2]) cnnfx_f32(gin[2])[c] = (float)sg;
    /* dX = scale * inv * (g - sg/M - (x - mean) * inv^2 * sgx / M) = k1 * g + k2 * (x - mean) + k3 */
    k1[c] = sc[c] * inv;
    k2[c] = -sc[c] * inv * inv * inv * sgx / M;
    k3[c] = -sc[c] * inv * sg / M;
  }
  if (need[0]) {
    float *gx = cnnfx_f32(gin[0]);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t pc = it / nch, ch = it % nch, c = pc % g->Cp;
      int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g->inner, s0 + NORM_CHUNK);
      const float *gi = gp + pc * g->inner, *xi = xp + pc * g->inner;
      float *o = gx + pc * g->inner;
      float a1 = (float)k1[c], a2 = (float)k2[c], m = (float)mean[c];
      float a3 = (float)k3[c];
      for (int64_t s = s0; s < s1; s++) o[s] = a1 * gi[s] + a2 * (xi[s] - m) + a3;
    }
  }
  cnnfx_mem_free(x->mem, part, pb);
  cnnfx_mem_free(x->mem, mean, sb);
  return TRUE;
}

static gboolean bn_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  CnnfxBnGeom g;
  if (!cnnfx_norm_bn_geom(n, in, TRUE, &g, error)) return FALSE;
  if (cnnfx_norm_bn_training(n)) return bn_train_forward(x, n, &g, in, out, error);
  /* Outputs the inference form leaves out (never read): the running statistics as given. */
  for (int o = 1; o < n->n_out; o++)
    memcpy(out[o]->data, in[o < 2 ? 3 : 4]->data, out[o]->numel * sizeof(float));
  const CnnfxTensor *X = in[0];
  if (X->numel == 0) return TRUE;
  size_t ab_bytes = 2 * (size_t)g.Cp * sizeof(float);
  float *a = cnnfx_mem_alloc(x->mem, ab_bytes, error);
  if (!a) return FALSE;
  float *b = a + g.Cp;
  const float *sc = cnnfx_f32(in[1]), *bi = cnnfx_f32(in[2]), *mu = cnnfx_f32(in[3]), *var = cnnfx_f32(in[4]);
  for (int64_t c = 0; c < g.Cp; c++) {
    a[c] = (float)(sc[c] / sqrt((double)var[c] + (double)g.eps));
    b[c] = bi[c] - mu[c] * a[c];
  }
  const float *xp = cnnfx_f32(X);
  float *y = cnnfx_f32(out[0]);
  int64_t nch = (g.inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g.N * g.Cp * nch;
  int nt = thread_count(x);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t pc = it / nch, ch = it % nch, c = pc % g.Cp;
    int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g.inner, s0 + NORM_CHUNK);
    const float *xi = xp + pc * g.inner;
    float *yi = y + pc * g.inner;
    float ac = a[c], bc = b[c];
    for (int64_t s = s0; s < s1; s++) yi[s] = xi[s] * ac + bc;
  }
  cnnfx_mem_free(x->mem, a, ab_bytes);
  return TRUE;
}

static gboolean bn_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                            GError **error)
{
  (void)out;
  (void)aux;
  CnnfxBnGeom g;
  if (!cnnfx_norm_bn_geom(n, in, FALSE, &g, error)) return FALSE;
  if (cnnfx_norm_bn_training(n)) return bn_train_backward(x, n, &g, in, gout[0], need, gin, error);
  int nt = thread_count(x);
  const CnnfxTensor *X = in[0];
  const CnnfxTensor *G = gout[0];
  gboolean want_stats = need[1] || need[2] || need[3] || need[4];
  gboolean want_gx = need[1] || need[4]; /* sums of g * (x - mean) */
  if (!G) return TRUE;
  if (G->numel != X->numel) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  if (X->numel == 0) return TRUE;
  const float *sc = (need[0] || need[3] || need[4]) ? cnnfx_f32(in[1]) : NULL;
  const float *mu = want_gx ? cnnfx_f32(in[3]) : NULL;
  const float *var = (need[0] || need[1] || need[3] || need[4]) ? cnnfx_f32(in[4]) : NULL;
  const float *gp = cnnfx_f32(G);
  const float *xp = want_gx ? cnnfx_f32(X) : NULL;
  if (want_gx && !xp) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "BatchNormalization '%s': input X was not kept for backward", n->name);
    return FALSE;
  }
  if (need[0]) {
    size_t ab = (size_t)g.Cp * sizeof(float);
    float *a = cnnfx_mem_alloc(x->mem, ab, error);
    if (!a) return FALSE;
    for (int64_t c = 0; c < g.Cp; c++) a[c] = (float)(sc[c] / sqrt((double)var[c] + (double)g.eps));
    float *gx = cnnfx_f32(gin[0]);
    int64_t nch = (g.inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g.N * g.Cp * nch;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t pc = it / nch, ch = it % nch, c = pc % g.Cp;
      int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g.inner, s0 + NORM_CHUNK);
      const float *gi = gp + pc * g.inner;
      float *o = gx + pc * g.inner;
      float ac = a[c];
      for (int64_t s = s0; s < s1; s++) o[s] = gi[s] * ac;
    }
    cnnfx_mem_free(x->mem, a, ab);
  }
  if (!want_stats) return TRUE;
  /* Per (n, c, chunk): sum g and sum g * (x - mean). */
  int64_t nch = (g.inner + NORM_CHUNK - 1) / NORM_CHUNK, items = g.N * g.Cp * nch;
  size_t pb = (size_t)items * 2 * sizeof(double);
  double *part = cnnfx_mem_alloc(x->mem, pb, error);
  if (!part) return FALSE;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t pc = it / nch, ch = it % nch, c = pc % g.Cp;
    int64_t s0 = ch * NORM_CHUNK, s1 = MIN(g.inner, s0 + NORM_CHUNK);
    const float *gi = gp + pc * g.inner;
    double sg = 0.0, sgx = 0.0;
    if (want_gx) {
      const float *xi = xp + pc * g.inner;
      float m = mu[c];
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t s = s0; s < s1; s++) {
        sg += gi[s];
        sgx += (double)gi[s] * (double)(xi[s] - m);
      }
    } else {
#pragma omp simd reduction(+ : sg)
      for (int64_t s = s0; s < s1; s++) sg += gi[s];
    }
    part[2 * it] = sg;
    part[2 * it + 1] = sgx;
  }
  for (int64_t c = 0; c < g.Cp; c++) {
    double sg = 0.0, sgx = 0.0;
    for (int64_t b = 0; b < g.N; b++)
      for (int64_t ch = 0; ch < nch; ch++) {
        int64_t it = (b * g.Cp + c) * nch + ch;
        sg += part[2 * it];
        sgx += part[2 * it + 1];
      }
    double ve = var ? (double)var[c] + (double)g.eps : 1.0;
    double inv = 1.0 / sqrt(ve);
    if (need[1]) cnnfx_f32(gin[1])[c] = (float)(sgx * inv);
    if (need[2]) cnnfx_f32(gin[2])[c] = (float)sg;
    if (need[3]) cnnfx_f32(gin[3])[c] = (float)(-sg * sc[c] * inv);
    if (need[4]) cnnfx_f32(gin[4])[c] = (float)(sgx * sc[c] * -0.5 * inv / ve);
  }
  cnnfx_mem_free(x->mem, part, pb);
  return TRUE;
}

/* ==== InstanceNormalization =============================================================== */

typedef struct {
  int64_t N, C, S, nch, csz;
  float eps;
} InRun;

/* The geometry plus its split into chunks (few planes: split them finer so every thread gets work). */
static gboolean in_run(const CnnfxNode *n, CnnfxTensor *const *in, gboolean check_x, InRun *r, int nt,
                       GError **error)
{
  CnnfxInGeom g;
  if (!cnnfx_norm_in_geom(n, in, check_x, &g, error)) return FALSE;
  r->N = g.N;
  r->C = g.C;
  r->S = g.S;
  r->eps = g.eps;
  int64_t planes = r->N * r->C;
  r->nch = (r->S + NORM_CHUNK - 1) / NORM_CHUNK;
  if (planes < 4 * nt && r->S > 4096) {
    int64_t want = (4 * nt + planes - 1) / MAX(planes, 1);
    r->nch = MAX(r->nch, MIN(want, (r->S + 4095) / 4096));
  }
  if (r->nch < 1) r->nch = 1;
  r->csz = (r->S + r->nch - 1) / r->nch;
  return TRUE;
}

/* Shifted per-chunk sums: k = first value of the plane. */
static gboolean in_stats(const CnnfxExec *x, const InRun *g, const float *xp, const float *gp, double **stats_out,
                         size_t *bytes, int nt, GError **error)
{
  int64_t planes = g->N * g->C, items = planes * g->nch;
  int nv = gp ? 4 : 2;
  *bytes = (size_t)items * nv * sizeof(double);
  double *part = cnnfx_mem_alloc(x->mem, *bytes, error);
  if (!part) return FALSE;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / g->nch, ch = it % g->nch;
    int64_t s0 = ch * g->csz, s1 = MIN(g->S, s0 + g->csz);
    const float *xi = xp + p * g->S;
    float k = xi[0];
    double sx = 0.0, sxx = 0.0, sg = 0.0, sgx = 0.0;
    if (gp) {
      const float *gi = gp + p * g->S;
#pragma omp simd reduction(+ : sx, sxx, sg, sgx)
      for (int64_t s = s0; s < s1; s++) {
        double v = (double)(xi[s] - k), gv = gi[s];
        sx += v;
        sxx += v * v;
        sg += gv;
        sgx += gv * v;
      }
    } else {
#pragma omp simd reduction(+ : sx, sxx)
      for (int64_t s = s0; s < s1; s++) {
        double v = (double)(xi[s] - k);
        sx += v;
        sxx += v * v;
      }
    }
    double *o = part + it * nv;
    o[0] = sx;
    o[1] = sxx;
    if (gp) {
      o[2] = sg;
      o[3] = sgx;
    }
  }
  /* fold the chunks into the first slot of each plane */
  for (int64_t p = 0; p < planes; p++) {
    double *o = part + p * g->nch * nv;
    for (int64_t ch = 1; ch < g->nch; ch++)
      for (int v = 0; v < nv; v++) o[v] += o[ch * nv + v];
  }
  *stats_out = part;
  return TRUE;
}

static gboolean in_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  int nt = thread_count(x);
  InRun g;
  if (!in_run(n, in, TRUE, &g, nt, error)) return FALSE;
  const CnnfxTensor *X = in[0];
  if (X->numel == 0) return TRUE;
  const float *xp = cnnfx_f32(X), *sc = cnnfx_f32(in[1]), *bi = cnnfx_f32(in[2]);
  double *st;
  size_t sb;
  if (!in_stats(x, &g, xp, NULL, &st, &sb, nt, error)) return FALSE;
  float *y = cnnfx_f32(out[0]);
  int64_t items = g.N * g.C * g.nch;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / g.nch, ch = it % g.nch, c = p % g.C;
    int64_t s0 = ch * g.csz, s1 = MIN(g.S, s0 + g.csz);
    const double *o = st + p * g.nch * 2;
    const float *xi = xp + p * g.S;
    double m = o[0] / (double)g.S, var = o[1] / (double)g.S - m * m;
    if (var < 0) var = 0;
    double inv = 1.0 / sqrt(var + (double)g.eps);
    float a = (float)(sc[c] * inv);
    float b = (float)(bi[c] - (m + (double)xi[0]) * sc[c] * inv);
    float *yi = y + p * g.S;
    for (int64_t s = s0; s < s1; s++) yi[s] = xi[s] * a + b;
  }
  cnnfx_mem_free(x->mem, st, sb);
  return TRUE;
}

static gboolean in_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                            GError **error)
{
  (void)out;
  (void)aux;
  int nt = thread_count(x);
  InRun g;
  if (!in_run(n, in, FALSE, &g, nt, error)) return FALSE;
  const CnnfxTensor *X = in[0], *G = gout[0];
  if (!G) return TRUE;
  if (G->numel != X->numel) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  if (X->numel == 0) return TRUE;
  const float *gp = cnnfx_f32(G);
  if (!need[0] && !need[1]) {
    if (!need[2]) return TRUE;
    /* only dB: plain sums of g */
    float *db = cnnfx_f32(gin[2]);
    for (int64_t c = 0; c < g.C; c++) {
      double acc = 0.0;
      for (int64_t b = 0; b < g.N; b++) {
        const float *gi = gp + (b * g.C + c) * g.S;
        double t = 0.0;
#pragma omp parallel for num_threads(nt) reduction(+ : t) schedule(static) if (g.S > NORM_CHUNK)
        for (int64_t s = 0; s < g.S; s++) t += gi[s];
        acc += t;
      }
      db[c] = (float)acc;
    }
    return TRUE;
  }
  const float *xp = cnnfx_f32(X);
  if (!xp) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "InstanceNormalization '%s': input was not kept for backward", n->name);
    return FALSE;
  }
  double *st;
  size_t sb;
  if (!in_stats(x, &g, xp, gp, &st, &sb, nt, error)) return FALSE;
  const float *sc = need[0] ? cnnfx_f32(in[1]) : NULL;
  /* per-plane coefficients: dx = A * g + Bc * x + Cc */
  for (int64_t p = 0; p < g.N * g.C; p++) {
    int64_t c = p % g.C;
    double *o = st + p * g.nch * 4;
    double S = (double)g.S;
    double m = o[0] / S, var = o[1] / S - m * m;
    if (var < 0) var = 0;
    double inv = 1.0 / sqrt(var + (double)g.eps);
    double sg = o[2], sgxh = inv * (o[3] - m * o[2]); /* sum g * xhat */
    if (need[1]) cnnfx_f32(gin[1])[c] += (float)sgxh;
    if (need[2]) cnnfx_f32(gin[2])[c] += (float)sg;
    if (need[0]) {
      /* dx = s*inv*(g - sg/S - xhat * sgxh/S), xhat = (x - k - m) * inv */
      double si = sc[c] * inv;
      double kk = (double)xp[p * g.S];
      double bx = -si * inv * sgxh / S;
      o[0] = si;                                   /* coefficient of g */
      o[1] = bx;                                   /* coefficient of x */
      o[2] = -si * sg / S - bx * (kk + m);         /* constant */
    }
  }
  if (need[0]) {
    float *gx = cnnfx_f32(gin[0]);
    int64_t items = g.N * g.C * g.nch;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t p = it / g.nch, ch = it % g.nch;
      int64_t s0 = ch * g.csz, s1 = MIN(g.S, s0 + g.csz);
      const double *o = st + p * g.nch * 4;
      float A = (float)o[0], B = (float)o[1], Cc = (float)o[2];
      const float *xi = xp + p * g.S, *gi = gp + p * g.S;
      float *d = gx + p * g.S;
      for (int64_t s = s0; s < s1; s++) d[s] = A * gi[s] + B * xi[s] + Cc;
    }
  }
  cnnfx_mem_free(x->mem, st, sb);
  return TRUE;
}

/* ==== LRN ================================================================================= */

#define LRN_CH 256
typedef CnnfxLrnGeom LrnGeom;

/* dst = sqrt(src) for a run of values.  Plain sqrtf does not vectorise unless errno handling is
 * off for the whole build, so use the SIMD square root the target has. */
static void sqrt_run(const float *src, float *dst, int64_t n)
{
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_sqrt_ps(_mm512_loadu_ps(src + i)));
#endif
#if defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_sqrt_ps(_mm256_loadu_ps(src + i)));
#endif
#if defined(__SSE2__)
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(dst + i, _mm_sqrt_ps(_mm_loadu_ps(src + i)));
#endif
  for (; i < n; i++) dst[i] = sqrtf(src[i]);
}

/* d^-beta for a run of at most LRN_CH values, in place. */
static void pow_neg(float *v, int64_t n, float beta)
{
  if (beta == 0.75f || beta == 0.5f) {
    float t[LRN_CH];
    sqrt_run(v, v, n);
    for (int64_t i = 0; i < n; i++) v[i] = 1.f / v[i];
    if (beta == 0.75f) {
      sqrt_run(v, t, n);
      for (int64_t i = 0; i < n; i++) v[i] *= t[i];
    }
  } else if (beta == 1.f) {
    for (int64_t i = 0; i < n; i++) v[i] = 1.f / v[i];
  } else {
    for (int64_t i = 0; i < n; i++) v[i] = powf(v[i], -beta);
  }
}

/* d[i] = bias + alpha/size * sum of squares over the channel window of channel c. */
static void lrn_denom(const LrnGeom *g, const float *xn, int64_t c, int64_t s0, int64_t len, float *d)
{
  int64_t c0 = MAX(0, c - g->lo), c1 = MIN(g->C - 1, c + g->hi);
  for (int64_t i = 0; i < len; i++) d[i] = 0.f;
  for (int64_t cc = c0; cc <= c1; cc++) {
    const float *xc = xn + cc * g->S + s0;
    for (int64_t i = 0; i < len; i++) d[i] += xc[i] * xc[i];
  }
  for (int64_t i = 0; i < len; i++) d[i] = g->bias + g->alpha_n * d[i];
}

static gboolean lrn_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            void *aux, GError **error)
{
  (void)aux;
  LrnGeom g;
  const CnnfxTensor *X = in[0];
  if (!cnnfx_norm_lrn_geom(n, X, TRUE, &g, error)) return FALSE;
  if (X->numel == 0) return TRUE;
  const float *xp = cnnfx_f32(X);
  float *y = cnnfx_f32(out[0]);
  int nt = thread_count(x);
  int64_t nch = (g.S + LRN_CH - 1) / LRN_CH, items = g.N * g.C * nch;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    float d[LRN_CH];
    int64_t nc = it / nch, ch = it % nch, b = nc / g.C, c = nc % g.C;
    int64_t s0 = ch * LRN_CH, len = MIN(g.S - s0, LRN_CH);
    const float *xn = xp + b * g.C * g.S;
    lrn_denom(&g, xn, c, s0, len, d);
    pow_neg(d, len, g.beta);
    const float *xi = xn + c * g.S + s0;
    float *yi = y + nc * g.S + s0;
    for (int64_t i = 0; i < len; i++) yi[i] = xi[i] * d[i];
  }
  return TRUE;
}

static gboolean lrn_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)out;
  (void)aux;
  if (!need[0]) return TRUE;
  LrnGeom g;
  const CnnfxTensor *X = in[0], *G = gout[0];
  if (!cnnfx_norm_lrn_geom(n, X, FALSE, &g, error)) return FALSE;
  int nt = thread_count(x);
  if (!G) return TRUE;
  if (G->numel != X->numel) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  if (X->numel == 0) return TRUE;
  /* dx_k = g_k d_k^-b - 2 a b / n * x_k * sum_{i in [k-hi, k+lo]} g_i x_i d_i^(-b-1) */
  size_t per = (size_t)g.C * LRN_CH;
  float *scratch = cnnfx_scratch_f32(x->mem, per * (size_t)nt, error);
  if (!scratch) return FALSE;
  const float *xp = cnnfx_f32(X), *gp = cnnfx_f32(G);
  float *gx = cnnfx_f32(gin[0]);
  float coef = 2.f * g.alpha_n * g.beta;
  int64_t nch = (g.S + LRN_CH - 1) / LRN_CH, items = g.N * nch;
#pragma omp parallel num_threads(nt)
  {
    float *T = scratch + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      float d[LRN_CH], p[LRN_CH];
      int64_t b = it / nch, ch = it % nch;
      int64_t s0 = ch * LRN_CH, len = MIN(g.S - s0, LRN_CH);
      const float *xn = xp + b * g.C * g.S, *gn = gp + b * g.C * g.S;
      float *on = gx + b * g.C * g.S;
      for (int64_t c = 0; c < g.C; c++) {
        lrn_denom(&g, xn, c, s0, len, d);
        for (int64_t i = 0; i < len; i++) p[i] = d[i];
        pow_neg(p, len, g.beta);
        const float *xi = xn + c * g.S + s0, *gi = gn + c * g.S + s0;
        float *oi = on + c * g.S + s0, *ti = T + c * LRN_CH;
        for (int64_t i = 0; i < len; i++) {
          oi[i] = gi[i] * p[i];
          ti[i] = gi[i] * xi[i] * p[i] / d[i];
        }
      }
      for (int64_t k = 0; k < g.C; k++) {
        int64_t i0 = MAX(0, k - g.hi), i1 = MIN(g.C - 1, k + g.lo);
        for (int64_t i = 0; i < len; i++) d[i] = 0.f;
        for (int64_t c = i0; c <= i1; c++) {
          const float *tc = T + c * LRN_CH;
          for (int64_t i = 0; i < len; i++) d[i] += tc[i];
        }
        const float *xi = xn + k * g.S + s0;
        float *oi = on + k * g.S + s0;
        for (int64_t i = 0; i < len; i++) oi[i] -= coef * xi[i] * d[i];
      }
    }
  }
  cnnfx_scratch_free(x->mem, scratch, per * (size_t)nt);
  return TRUE;
}

/* ==== LpNormalization ===================================================================== */

static double lp_norm(const float *v, int64_t L, int64_t st, int p)
{
  double acc = 0.0;
  for (int64_t j = 0; j < L; j++) acc += p == 1 ? fabs((double)v[j * st]) : (double)v[j * st] * v[j * st];
  return p == 1 ? acc : sqrt(acc);
}

static gboolean lp_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  int64_t outer = 1, L = 1, inner = 1;
  int p;
  const CnnfxTensor *X = in[0];
  if (!cnnfx_norm_lp_geom(n, X, TRUE, &outer, &L, &inner, &p, error)) return FALSE;
  const float *xp = cnnfx_f32(X);
  float *y = cnnfx_f32(out[0]);
  int64_t items = outer * inner;
#pragma omp parallel for num_threads(thread_count(x)) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t o = it / inner, i = it % inner;
    const float *v = xp + o * L * inner + i;
    float *w = y + o * L * inner + i;
    double nrm = lp_norm(v, L, inner, p);
    float r = nrm > 0 ? (float)(1.0 / nrm) : 0.f;
    for (int64_t j = 0; j < L; j++) w[j * inner] = v[j * inner] * r;
  }
  return TRUE;
}

static gboolean lp_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                            GError **error)
{
  (void)out;
  (void)aux;
  if (!need[0]) return TRUE;
  int64_t outer = 1, L = 1, inner = 1;
  int p;
  const CnnfxTensor *X = in[0], *G = gout[0];
  if (!cnnfx_norm_lp_geom(n, X, FALSE, &outer, &L, &inner, &p, error)) return FALSE;
  if (!G) return TRUE;
  const float *xp = cnnfx_f32(X), *gp = cnnfx_f32(G);
  float *gx = cnnfx_f32(gin[0]);
  int64_t items = outer * inner;
#pragma omp parallel for num_threads(thread_count(x)) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t o = it / inner, i = it % inner, base = o * L * inner + i;
    const float *v = xp + base, *gv = gp + base;
    float *w = gx + base;
    double nrm = lp_norm(v, L, inner, p);
    if (!(nrm > 0)) {
      for (int64_t j = 0; j < L; j++) w[j * inner] = 0.f;
      continue;
    }
    double dot = 0.0;
    for (int64_t j = 0; j < L; j++) dot += (double)gv[j * inner] * v[j * inner];
    double r = 1.0 / nrm;
    for (int64_t j = 0; j < L; j++) {
      double xv = v[j * inner];
      double t = p == 2 ? xv * dot * r * r * r : (xv > 0 ? 1.0 : xv < 0 ? -1.0 : 0.0) * dot * r * r;
      w[j * inner] = (float)(gv[j * inner] * r - t);
    }
  }
  return TRUE;
}

/* ==== MeanVarianceNormalization =========================================================== */
/* y = (x - mean) / (sqrt(E[x^2] - mean^2) + 1e-9), statistics over `axes` (default 0,2,3). */

#define MVN_EPS 1e-9
/* Calls body(flat index, group) for every element in row-major order. */
#define MVN_FOREACH(g, IDX, GRP, ...)                                                                  \
  do {                                                                                                 \
    int64_t ix_[CNNFX_MAX_DIMS] = {0};                                                                 \
    int64_t GRP = 0, total_ = 1;                                                                       \
    for (int d_ = 0; d_ < (g)->ndim; d_++) total_ *= (g)->dims[d_];                                    \
    for (int64_t IDX = 0; IDX < total_; IDX++) {                                                       \
      __VA_ARGS__;                                                                                     \
      for (int d_ = (g)->ndim - 1; d_ >= 0; d_--) {                                                    \
        GRP += (g)->gstride[d_];                                                                       \
        if (++ix_[d_] < (g)->dims[d_]) break;                                                          \
        GRP -= (g)->gstride[d_] * (g)->dims[d_];                                                       \
        ix_[d_] = 0;                                                                                   \
      }                                                                                                \
    }                                                                                                  \
  } while (0)

static gboolean mvn_stats(const CnnfxExec *x, const CnnfxMvnGeom *g, const float *xp, const float *gp, double **st,
                          size_t *bytes, GError **error)
{
  *bytes = (size_t)g->groups * 4 * sizeof(double);
  double *s = cnnfx_mem_alloc(x->mem, *bytes, error);
  if (!s) return FALSE;
  memset(s, 0, *bytes);
  MVN_FOREACH(g, i, grp, {
    double v = xp[i];
    double *o = s + 4 * grp;
    o[0] += v;
    o[1] += v * v;
    if (gp) {
      o[2] += gp[i];
      o[3] += gp[i] * v;
    }
  });
  for (int64_t k = 0; k < g->groups; k++) {
    double *o = s + 4 * k;
    double m = o[0] / (double)g->M, var = o[1] / (double)g->M - m * m;
    o[0] = m;
    o[1] = sqrt(var > 0 ? var : 0); /* sigma */
    if (gp) {
      o[2] /= (double)g->M;                  /* mean g */
      o[3] = o[3] / (double)g->M - m * o[2]; /* mean g*(x-m) */
    }
  }
  *st = s;
  return TRUE;
}

static gboolean mvn_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            void *aux, GError **error)
{
  (void)aux;
  CnnfxMvnGeom g;
  const CnnfxTensor *X = in[0];
  if (!cnnfx_norm_mvn_geom(n, X, TRUE, &g, error)) return FALSE;
  if (X->numel == 0) return TRUE;
  double *st;
  size_t sb;
  const float *xp = cnnfx_f32(X);
  if (!mvn_stats(x, &g, xp, NULL, &st, &sb, error)) return FALSE;
  float *y = cnnfx_f32(out[0]);
  MVN_FOREACH(&g, i, grp, { y[i] = (float)((xp[i] - st[4 * grp]) / (st[4 * grp + 1] + MVN_EPS)); });
  cnnfx_mem_free(x->mem, st, sb);
  return TRUE;
}

static gboolean mvn_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)out;
  (void)aux;
  if (!need[0]) return TRUE;
  CnnfxMvnGeom g;
  const CnnfxTensor *X = in[0], *G = gout[0];
  if (!cnnfx_norm_mvn_geom(n, X, FALSE, &g, error)) return FALSE;
  if (!G || X->numel == 0) return TRUE;
  const float *xp = cnnfx_f32(X), *gp = cnnfx_f32(G);
  double *st;
  size_t sb;
  if (!mvn_stats(x, &g, xp, gp, &st, &sb, error)) return FALSE;
  float *gx = cnnfx_f32(gin[0]);
  /* dx = (g - mean g)/(s+e) - u * mean(g u) / (s (s+e)^2), u = x - mean */
  MVN_FOREACH(&g, i, grp, {
    const double *o = st + 4 * grp;
    double se = o[1] + MVN_EPS, u = xp[i] - o[0];
    double t = o[1] > 0 ? u * o[3] / (o[1] * se * se) : 0.0;
    gx[i] = (float)((gp[i] - o[2]) / se - t);
  });
  cnnfx_mem_free(x->mem, st, sb);
  return TRUE;
}

static const CnnfxKernel k_bn = {.name = "BatchNormalization", .forward = bn_forward, .backward = bn_backward};
static const CnnfxKernel k_in = {.name = "InstanceNormalization", .forward = in_forward, .backward = in_backward};
static const CnnfxKernel k_lrn = {.name = "LRN", .forward = lrn_forward, .backward = lrn_backward};
static const CnnfxKernel k_lp = {.name = "LpNormalization", .forward = lp_forward, .backward = lp_backward};
static const CnnfxKernel k_mvn = {.name = "MeanVarianceNormalization", .forward = mvn_forward,
                                  .backward = mvn_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_norm[] = {&k_bn, &k_in, &k_lrn, &k_lp, &k_mvn, NULL};
