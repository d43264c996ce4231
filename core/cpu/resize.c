/* CPU kernels (resize family): Resize and Upsample forward and backward to X, into preallocated
 * tensors.  The attributes and output geometry are in core/ops/resize.c (see the overview there).
 *
 * Every mode is separable: along each resized axis an output index j reads the contiguous input run
 * lo[j] .. lo[j]+cnt[j]-1 with weights w[j][0..cnt-1] (per-axis tables built in double precision).
 * Forward applies the axes one after the other (downscaling axes first, then an upscaled last axis,
 * then the other upscaled axes) on a view [outer][I][inner] -> [outer][O][inner]; intermediate
 * results live in counted scratch buffers.  Backward is the exact adjoint: the same tables applied in
 * reverse order as scatter-adds; every work item owns its (outer, chunk) block of the input gradient,
 * so no atomics are needed. */
#include "ops/resize.h"
#include <math.h>
#include <omp.h>

#define MAXD CNNFX_MAX_DIMS
#define PAR_MIN 32768 /* elements below which loops stay single-threaded */

typedef struct {
  int64_t I, O;
  int K;            /* row stride of w */
  int64_t *lo;      /* [O] first input index */
  int *cnt;         /* [O] taps; -1 = extrapolation value */
  float *w;         /* [O * K] */
  void *block;
  size_t bytes;
  gboolean identity, gather;
} AxisTab;

typedef struct {
  int nact;
  int order[MAXD];  /* active axes in forward order */
  AxisTab tab[MAXD];
} ResizePlan;

static int thread_count(const CnnfxExec *x)
{
  int nt = x && x->n_threads > 0 ? x->n_threads : omp_get_max_threads();
  return nt > 0 ? nt : 1;
}

static double cubic_kernel(double x, double A)
{
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0.0;
}

static void tab_free(const CnnfxExec *x, AxisTab *t)
{
  if (t->block) cnnfx_mem_free(x->mem, t->block, t->bytes);
  t->block = NULL;
}

static gboolean tab_make(const CnnfxExec *x, const CnnfxNode *n, const CnnfxResizeAttrs *a, const CnnfxResizeGeom *g, int d,
                         AxisTab *t, GError **error)
{
  memset(t, 0, sizeof *t);
  const int64_t I = g->I[d], O = g->O[d];
  const double s = g->scale[d];
  t->I = I;
  t->O = O;
  /* taps i in [i0, i1) around the base index; kernel argument se * (i - ratio) */
  const gboolean aa = a->antialias && a->mode != CNNFX_RS_M_NEAREST && s < 1;
  const double se = aa ? s : 1.0;
  const double R = a->mode == CNNFX_RS_M_CUBIC ? 2.0 : 1.0;
  int64_t i0 = 0, i1 = 1;
  if (a->mode != CNNFX_RS_M_NEAREST) {
    double f = floor(-R / se) + 1;
    if (!(f > -(double)(8 * I + 64)))
      return cnnfx_fail_shape(error, n, "axis %d: antialiasing filter for scale %g is wider than the input", d, s);
    i0 = (int64_t)f;
    i1 = 2 - i0;
  }
  const int64_t Kraw = i1 - i0;
  t->K = (int)MAX(1, MIN(Kraw, I));
  size_t no = (size_t)O;
  if (no && (size_t)t->K + 4 > (SIZE_MAX / 16) / no) return cnnfx_fail_shape(error, n, "resize tables overflow");
  t->bytes = no * (sizeof(int64_t) + sizeof(int) + (size_t)t->K * sizeof(float)) + 64;
  t->block = cnnfx_mem_alloc(x->mem, t->bytes, error);
  if (!t->block) return FALSE;
  t->lo = t->block;
  t->w = (float *)(t->lo + no);
  t->cnt = (int *)(t->w + no * (size_t)t->K);
  double *raw = NULL, *acc = NULL;
  if (a->mode != CNNFX_RS_M_NEAREST) {
    raw = g_try_new(double, (gsize)(Kraw + t->K));
    if (!raw) {
      tab_free(x, t);
      cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory (resize filter)");
      return FALSE;
    }
    acc = raw + Kraw;
  }
  gboolean identity = I == O, gather = TRUE;
  for (int64_t j = 0; j < O; j++) {
    double xo = cnnfx_resize_source_coord(a, g, d, (double)j);
    float *wj = t->w + (size_t)j * t->K;
    if (a->ctm == CNNFX_RS_CT_TF_CROP && (xo < 0 || xo > (double)(I - 1))) {
      t->cnt[j] = -1;
      t->lo[j] = 0;
      identity = gather = FALSE;
      continue;
    }
    /* Coordinates of the other modes stay within about [-1, I]; keep int64 conversion defined. */
    xo = CLAMP(xo, -4.0 * (double)CNNFX_RESIZE_MAX_OUT_DIM, 4.0 * (double)CNNFX_RESIZE_MAX_OUT_DIM);
    double fl = floor(xo), ratio;
    int64_t b;
    if (xo == fl) {
      ratio = 1.0;
      b = (int64_t)fl - 1;
    } else {
      ratio = xo - fl;
      b = (int64_t)fl;
    }
    if (a->mode == CNNFX_RS_M_NEAREST) {
      int64_t p;
      int nm = a->nearest;
      if (nm == CNNFX_RS_NM_SIMPLE) nm = s < 1 ? CNNFX_RS_NM_CEIL : CNNFX_RS_NM_FLOOR;
      if (ratio == 1.0) p = b + 1;
      else if (nm == CNNFX_RS_NM_ROUND_PREFER_FLOOR) p = ratio <= 0.5 ? b : b + 1;
      else if (nm == CNNFX_RS_NM_ROUND_PREFER_CEIL) p = ratio < 0.5 ? b : b + 1;
      else if (nm == CNNFX_RS_NM_FLOOR) p = b;
      else p = b + 1;
      p = CLAMP(p, 0, I - 1);
      t->lo[j] = p;
      t->cnt[j] = 1;
      wj[0] = 1.f;
      if (p != j) identity = FALSE;
      continue;
    }
    double sum = 0;
    for (int64_t i = i0; i < i1; i++) {
      double arg = se * ((double)i - ratio);
      double v = a->mode == CNNFX_RS_M_CUBIC ? cubic_kernel(arg, a->cubic_a) : MAX(0.0, 1.0 - fabs(arg));
      raw[i - i0] = v;
      sum += v;
    }
    if (aa && sum != 0)
      for (int64_t k = 0; k < Kraw; k++) raw[k] /= sum;
    if (a->exclude_outside) {
      double s2 = 0;
      for (int64_t i = i0; i < i1; i++) {
        int64_t p = b + i;
        if (p < 0 || p >= I) raw[i - i0] = 0;
        s2 += raw[i - i0];
      }
      if (s2 != 0)
        for (int64_t k = 0; k < Kraw; k++) raw[k] /= s2;
    }
    /* clamp taps to the edge, merging weights: the clamped run is contiguous */
    int64_t lo = CLAMP(b + i0, 0, I - 1), hi = CLAMP(b + i1 - 1, 0, I - 1);
    int64_t c = hi - lo + 1;
    for (int64_t k = 0; k < c; k++) acc[k] = 0;
    for (int64_t i = i0; i < i1; i++) acc[CLAMP(b + i, 0, I - 1) - lo] += raw[i - i0];
    int64_t first = 0, last = c - 1;
    while (first <= last && acc[first] == 0) first++;
    while (last >= first && acc[last] == 0) last--;
    t->lo[j] = lo + (first <= last ? first : 0);
    t->cnt[j] = (int)(last - first + 1 > 0 ? last - first + 1 : 0);
    for (int k = 0; k < t->cnt[j]; k++) wj[k] = (float)acc[first + k];
    if (t->cnt[j] != 1 || wj[0] != 1.f) gather = identity = FALSE;
    else if (t->lo[j] != j) identity = FALSE;
  }
  g_free(raw);
  t->identity = identity;
  t->gather = gather;
  return TRUE;
}

static void plan_free(const CnnfxExec *x, ResizePlan *p)
{
  for (int d = 0; d < CNNFX_MAX_DIMS; d++) tab_free(x, &p->tab[d]);
}

static gboolean plan_make(const CnnfxExec *x, const CnnfxNode *n, const CnnfxResizeAttrs *a, const CnnfxResizeGeom *g,
                          ResizePlan *p, GError **error)
{
  memset(p, 0, sizeof *p);
  for (int d = 0; d < g->r; d++) {
    if (!tab_make(x, n, a, g, d, &p->tab[d], error)) {
      plan_free(x, p);
      return FALSE;
    }
    if (p->tab[d].identity) tab_free(x, &p->tab[d]);
    else p->order[p->nact++] = d;
  }
  /* Order: downscaling axes first (smallest ratio first) keeps the intermediates small; then the
   * last axis if it is upscaled (its per-row gather is the costly step, best done while the
   * tensor is still small); then the other upscaled axes.  Insertion sort on a key, stable. */
  double key[CNNFX_MAX_DIMS];
  for (int i = 0; i < p->nact; i++) {
    int d = p->order[i];
    double q = (double)g->O[d] / (double)MAX(g->I[d], 1);
    key[i] = q > 1 && d == g->r - 1 ? 1.0 : q;
  }
  for (int i = 1; i < p->nact; i++) {
    int d = p->order[i], k = i;
    double q = key[i];
    while (k > 0 && key[k - 1] > q) {
      p->order[k] = p->order[k - 1];
      key[k] = key[k - 1];
      k--;
    }
    p->order[k] = d;
    key[k] = q;
  }
  return TRUE;
}

/* ---- kernels ----------------------------------------------------------------------------------- */

/* One row (inner == 1): dst[j] = sum_k w[j][k] src[lo[j] + k]. */
static void fwd_row(const AxisTab *t, const float *restrict src, float *restrict dst, float ext)
{
  const int K = t->K;
  if (t->gather) {
    for (int64_t j = 0; j < t->O; j++) dst[j] = src[t->lo[j]];
    return;
  }
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    if (c < 0) {
      dst[j] = ext;
      continue;
    }
    const float *s = src + t->lo[j], *w = t->w + (size_t)j * K;
    float acc = 0.f;
    for (int k = 0; k < c; k++) acc += w[k] * s[k];
    dst[j] = acc;
  }
}

/* Adjoint of fwd_row: gsrc = sum_j w[j][k] g[j] at lo[j] + k (gsrc is overwritten). */
static void bwd_row(const AxisTab *t, const float *restrict g, float *restrict gsrc)
{
  const int K = t->K;
  memset(gsrc, 0, (size_t)t->I * sizeof(float));
  if (t->gather) {
    for (int64_t j = 0; j < t->O; j++) gsrc[t->lo[j]] += g[j];
    return;
  }
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    float gj = g[j];
    float *s = gsrc + t->lo[j];
    const float *w = t->w + (size_t)j * K;
    for (int k = 0; k < c; k++) s[k] += w[k] * gj;
  }
}

/* Block (inner > 1): plane p, columns [c0, c1) of [I][inner] -> [O][inner]. */
static void fwd_block(const AxisTab *t, const float *src, float *dst, int64_t inner, int64_t c0, int64_t c1,
                      float ext)
{
  const int K = t->K;
  const int64_t L = c1 - c0;
  for (int64_t j = 0; j < t->O; j++) {
    float *restrict d = dst + j * inner + c0;
    int c = t->cnt[j];
    if (c < 0) {
      for (int64_t i = 0; i < L; i++) d[i] = ext;
      continue;
    }
    if (c == 0) {
      memset(d, 0, (size_t)L * sizeof(float));
      continue;
    }
    const float *restrict s0 = src + t->lo[j] * inner + c0;
    const float *w = t->w + (size_t)j * K;
    if (t->gather) {
      memcpy(d, s0, (size_t)L * sizeof(float));
      continue;
    }
    const float w0 = w[0];
    if (c == 2) {
      const float w1 = w[1];
      const float *restrict s1 = s0 + inner;
      for (int64_t i = 0; i < L; i++) d[i] = w0 * s0[i] + w1 * s1[i];
      continue;
    }
    for (int64_t i = 0; i < L; i++) d[i] = w0 * s0[i];
    for (int k = 1; k < c; k++) {
      const float wk = w[k];
      const float *restrict sk = s0 + (int64_t)k * inner;
      for (int64_t i = 0; i < L; i++) d[i] += wk * sk[i];
    }
  }
}

static void bwd_block(const AxisTab *t, const float *g, float *gsrc, int64_t inner, int64_t c0, int64_t c1)
{
  const int K = t->K;
  const int64_t L = c1 - c0;
  for (int64_t i = 0; i < t->I; i++) memset(gsrc + i * inner + c0, 0, (size_t)L * sizeof(float));
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    if (c <= 0) continue;
    const float *restrict gj = g + j * inner + c0;
    const float *w = t->w + (size_t)j * K;
    for (int k = 0; k < c; k++) {
      const float wk = w[k];
      float *restrict s = gsrc + (t->lo[j] + k) * inner + c0;
      for (int64_t i = 0; i < L; i++) s[i] += wk * gj[i];
    }
  }
}

/* Apply one axis table (forward: src [outer][I][inner] -> dst [outer][O][inner]; backward: the
 * adjoint, src = gradient [outer][O][inner] -> dst [outer][I][inner]). */
static void run_axis(const AxisTab *t, gboolean fwd, const float *src, float *dst, int64_t outer, int64_t inner,
                     float ext, int nt)
{
  const int64_t in_len = fwd ? t->I : t->O, out_len = fwd ? t->O : t->I;
  const double work = (double)outer * (double)MAX(t->I, t->O) * (double)inner * (t->gather ? 1 : MAX(1, t->K));
  const int use_nt = work > PAR_MIN ? nt : 1;
  if (inner == 1) {
#pragma omp parallel for num_threads(use_nt) schedule(static)
    for (int64_t p = 0; p < outer; p++) {
      if (fwd) fwd_row(t, src + p * in_len, dst + p * out_len, ext);
      else bwd_row(t, src + p * in_len, dst + p * out_len);
    }
    return;
  }
  /* chunks of inner so that there are enough work items; at least 64 columns each */
  int64_t nch = 1;
  if (use_nt > 1 && outer < 4 * use_nt) {
    nch = (4 * use_nt + outer - 1) / outer;
    nch = MIN(nch, MAX(1, inner / 64));
  }
  const int64_t ch = (inner + nch - 1) / nch;
  nch = (inner + ch - 1) / ch;
  const int64_t items = outer * nch;
#pragma omp parallel for num_threads(use_nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / nch, c0 = (it % nch) * ch, c1 = MIN(inner, c0 + ch);
    const float *s = src + p * in_len * inner;
    float *d = dst + p * out_len * inner;
    if (fwd) fwd_block(t, s, d, inner, c0, c1, ext);
    else bwd_block(t, s, d, inner, c0, c1);
  }
}

static int64_t prod(const int64_t *d, int a, int b)
{
  int64_t p = 1;
  for (int k = a; k < b; k++) p *= d[k];
  return p;
}

/* Run the plan forward (X -> Y) or backward (gY -> gX). */
static gboolean plan_run(const CnnfxExec *x, const ResizePlan *p, const CnnfxResizeGeom *g, gboolean fwd, float ext,
                         const float *src, float *dst, GError **error)
{
  const int nt = thread_count(x);
  int64_t cur[CNNFX_MAX_DIMS];
  for (int d = 0; d < g->r; d++) cur[d] = fwd ? g->I[d] : g->O[d];
  if (p->nact == 0) {
    size_t n = (size_t)prod(cur, 0, g->r);
    if (n) memcpy(dst, src, n * sizeof(float));
    return TRUE;
  }
  const float *s = src;
  float *scratch = NULL;
  size_t scratch_n = 0;
  for (int k = 0; k < p->nact; k++) {
    int d = fwd ? p->order[k] : p->order[p->nact - 1 - k];
    const AxisTab *t = &p->tab[d];
    int64_t outer = prod(cur, 0, d), inner = prod(cur, d + 1, g->r);
    cur[d] = fwd ? g->O[d] : g->I[d];
    float *o;
    size_t on = 0;
    if (k == p->nact - 1) {
      o = dst;
    } else {
      on = (size_t)prod(cur, 0, g->r);
      if (!(o = cnnfx_scratch_f32(x->mem, on, error))) {
        if (scratch) cnnfx_scratch_free(x->mem, scratch, scratch_n);
        return FALSE;
      }
    }
    run_axis(t, fwd, s, o, outer, inner, ext, nt);
    if (scratch) cnnfx_scratch_free(x->mem, scratch, scratch_n);
    scratch = k == p->nact - 1 ? NULL : o;
    scratch_n = on;
    s = o;
  }
  return TRUE;
}

/* ---- operator ---------------------------------------------------------------------------------- */

static gboolean resize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)aux;
  CnnfxResizeAttrs a;
  CnnfxResizeGeom g;
  if (!cnnfx_resize_attrs(n, &a, error) || !cnnfx_resize_geom(n, in, &a, &g, error)) return FALSE;
  CnnfxTensor *y = out[0];
  if (!y->numel) return TRUE;
  ResizePlan p;
  if (!plan_make(x, n, &a, &g, &p, error)) return FALSE;
  gboolean ok = plan_run(x, &p, &g, TRUE, a.extrapolation, cnnfx_f32(in[0]), cnnfx_f32(y), error);
  plan_free(x, &p);
  return ok;
}

static gboolean resize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  if (!need[0]) return TRUE;
  CnnfxResizeAttrs a;
  CnnfxResizeGeom g;
  if (!cnnfx_resize_attrs(n, &a, error) || !cnnfx_resize_geom(n, in, &a, &g, error)) return FALSE;
  const CnnfxTensor *gy = gout[0] && gout[0]->dtype == CNNFX_F32 && gout[0]->data ? gout[0] : NULL;
  if (gy) {
    gboolean same = gy->ndim == g.r;
    for (int d = 0; same && d < g.r; d++) same = gy->dims[d] == g.O[d];
    if (!same) return cnnfx_fail_shape(error, n, "output gradient has the wrong shape");
  }
  CnnfxTensor *gx = gin[0];
  /* gx is zero-filled: nothing to do without an output gradient */
  if (!gx->numel || !gy || gy->numel == 0) return TRUE;
  ResizePlan p;
  if (!plan_make(x, n, &a, &g, &p, error)) return FALSE;
  /* the adjoint overwrites gx (it is the only contribution) */
  gboolean ok = plan_run(x, &p, &g, FALSE, 0.f, cnnfx_f32(gy), cnnfx_f32(gx), error);
  plan_free(x, &p);
  return ok;
}

static const CnnfxKernel k_resize = {.name = "Resize", .forward = resize_forward, .backward = resize_backward};
static const CnnfxKernel k_upsample = {.name = "Upsample", .forward = resize_forward, .backward = resize_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_resize[] = {&k_resize, &k_upsample, NULL};
