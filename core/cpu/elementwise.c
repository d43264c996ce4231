/* CPU kernels (elementwise family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/elementwise.c.
 *
 *   Add Sub Mul Div Pow PRelu Sum Identity Dropout Cast CastLike
 *
 * plus the CPU helper cnnfx_reduce_to() (sum a gradient down to a broadcast operand's shape).
 *
 * Broadcasting: the output shape and every operand are folded into as few dimensions as
 * possible (adjacent dimensions in which every operand is either contiguous or broadcast
 * alike are merged), so that the common cases - same shape, scalar, per-channel bias
 * [1,C,1,1] against [N,C,H,W] - become one or a few long contiguous inner loops with
 * stride 0 or 1 per operand.  Work is split over threads in (row, block) units.
 *
 * Compiled once per SIMD level (core/meson.build): keep new functions static.
 */
#include "cnnfx-private.h"
#include "ops/elementwise.h"
#include <math.h>
#include <omp.h>

#define EW_MAXOP 3
#define EW_BLOCK 16384            /* inner elements per work item */
#define EW_PAR_MIN 32768          /* below this many elements, stay on one thread */

/* ---- reduction helpers ---------------------------------------------------------- */
static size_t dims_prod(int nd, const int64_t *d)
{
  size_t n = 1;
  for (int i = 0; i < nd; i++) n *= (size_t)d[i];
  return n;
}

/* What is summed: g alone, g*h, or the PRelu slope term (h > 0 ? 0 : g*h); h is shaped like g. */
typedef enum { RED_PLAIN, RED_PROD, RED_PRELU } RedMode;

static inline float red_term(RedMode mode, float g, float h)
{
  return mode == RED_PLAIN ? g : mode == RED_PROD ? g * h : (h > 0.f ? 0.f : g * h);
}

/* Sum of n contiguous terms: vectorised float partial sums, double across blocks. */
#ifdef __clang__ /* the simd hints are hints: at -O1 (fuzz builds) clang may not vectorise */
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wpass-failed"
#endif
static double sum_row(RedMode mode, const float *g, const float *h, size_t n)
{
  double acc = 0;
  for (size_t b = 0; b < n; b += 4096) {
    size_t e = MIN(n, b + 4096);
    float s = 0.f;
    if (mode == RED_PLAIN) {
#pragma omp simd reduction(+ : s)
      for (size_t i = b; i < e; i++) s += g[i];
    } else if (mode == RED_PROD) {
#pragma omp simd reduction(+ : s)
      for (size_t i = b; i < e; i++) s += g[i] * h[i];
    } else {
#pragma omp simd reduction(+ : s)
      for (size_t i = b; i < e; i++) s += h[i] > 0.f ? 0.f : g[i] * h[i];
    }
    acc += s;
  }
  return acc;
}
#ifdef __clang__
#pragma clang diagnostic pop
#endif

static void add_row(RedMode mode, float *t, const float *g, const float *h, int64_t lo, int64_t hi)
{
  if (mode == RED_PLAIN)
    for (int64_t i = lo; i < hi; i++) t[i] += g[i];
  else if (mode == RED_PROD)
    for (int64_t i = lo; i < hi; i++) t[i] += g[i] * h[i];
  else
    for (int64_t i = lo; i < hi; i++) t[i] += h[i] > 0.f ? 0.f : g[i] * h[i];
}

/* Reduction plan: merged dims of g, each either kept (t has it) or reduced (t has 1). */
typedef struct {
  int m;
  int64_t d[CNNFX_MAX_DIMS];
  int64_t gs[CNNFX_MAX_DIMS]; /* strides in g */
  int64_t ts[CNNFX_MAX_DIMS]; /* strides in t (0 for reduced dims) */
  gboolean red[CNNFX_MAX_DIMS];
  RedMode mode;
} RedPlan;

/* Walk g over dims with dim p restricted to [lo, hi), accumulating into t. */
static void reduce_range(const RedPlan *P, int p, int64_t lo, int64_t hi, const float *g, const float *h, float *t)
{
  int m = P->m, last = m - 1;
  int64_t c[CNNFX_MAX_DIMS] = {0};
  int64_t go = 0, to = 0;
  int64_t ilo = 0, ihi = P->d[last];
  if (p == last) {
    ilo = lo;
    ihi = hi;
  } else {
    c[p] = lo;
    go = lo * P->gs[p];
    to = lo * P->ts[p];
  }
  for (;;) {
    if (P->red[last])
      t[to] += (float)sum_row(P->mode, g + go, h ? h + go : NULL, (size_t)P->d[last]);
    else
      add_row(P->mode, t + to, g + go, h ? h + go : NULL, ilo, ihi);
    /* advance the odometer over dims 0..last-1 */
    int j = last - 1;
    for (; j >= 0; j--) {
      int64_t end = j == p ? hi : P->d[j];
      int64_t start = j == p ? lo : 0;
      c[j]++;
      go += P->gs[j];
      to += P->ts[j];
      if (c[j] < end) break;
      go -= (end - start) * P->gs[j];
      to -= (end - start) * P->ts[j];
      c[j] = start;
    }
    if (j < 0) break;
  }
}

/* t (tdims) = sum over the broadcast dims of term(g, h), g and h shaped gdims. */
static void reduce_terms(RedMode mode, const float *g, const float *h, int gndim, const int64_t *gdims, float *t,
                         int tndim, const int64_t *tdims, int nthreads)
{
  size_t tn = dims_prod(tndim, tdims), gn = dims_prod(gndim, gdims);
  int nt = gn < EW_PAR_MIN ? 1 : MAX(nthreads, 1);
  if (tn == gn) { /* same data: shapes differ at most by 1s */
    if (mode == RED_PLAIN) {
      if (t != g && tn) memcpy(t, g, tn * sizeof(float));
      return;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < tn; i++) t[i] = red_term(mode, g[i], h[i]);
    return;
  }
  memset(t, 0, tn * sizeof(float));
  if (!gn || !tn) return;
  int r = MAX(gndim, tndim);
  if (r > CNNFX_MAX_DIMS) return;
  int64_t gd[CNNFX_MAX_DIMS], td[CNNFX_MAX_DIMS], gst[CNNFX_MAX_DIMS], tst[CNNFX_MAX_DIMS];
  for (int i = 0; i < r; i++) {
    int ig = i - (r - gndim), it = i - (r - tndim);
    gd[i] = ig >= 0 ? gdims[ig] : 1;
    td[i] = it >= 0 ? tdims[it] : 1;
  }
  int64_t sg = 1, stt = 1;
  for (int i = r - 1; i >= 0; i--) {
    gst[i] = sg;
    tst[i] = td[i] == 1 ? 0 : stt;
    sg *= gd[i];
    stt *= td[i];
  }
  RedPlan P = {.mode = mode};
  for (int i = 0; i < r; i++) {
    if (gd[i] == 1) continue;
    gboolean red = td[i] == 1;
    if (!red && td[i] != gd[i]) return; /* not a broadcast of t: leave zeros */
    if (P.m > 0 && P.red[P.m - 1] == red) {
      P.d[P.m - 1] *= gd[i];
      P.gs[P.m - 1] = gst[i];
      P.ts[P.m - 1] = tst[i];
      continue;
    }
    P.d[P.m] = gd[i];
    P.gs[P.m] = gst[i];
    P.ts[P.m] = tst[i];
    P.red[P.m] = red;
    P.m++;
  }
  if (P.m == 1 && P.red[0]) { /* everything into one scalar */
    double acc = 0;
    size_t nb = (gn + 65535) / 65536;
#pragma omp parallel for num_threads(nt) reduction(+ : acc) schedule(static)
    for (size_t b = 0; b < nb; b++)
      acc += sum_row(mode, g + b * 65536, h ? h + b * 65536 : NULL, MIN(gn - b * 65536, (size_t)65536));
    t[0] = (float)acc;
    return;
  }
  /* Parallel over the largest kept dim: different indices there touch disjoint parts of t. */
  int p = -1;
  for (int i = 0; i < P.m; i++)
    if (!P.red[i] && (p < 0 || P.d[i] > P.d[p])) p = i;
  if (p < 0) return;
  int64_t D = P.d[p];
  if (nt > D) nt = (int)D;
#pragma omp parallel num_threads(nt)
  {
    int k = omp_get_thread_num(), K = omp_get_num_threads();
    int64_t lo = D * k / K, hi = D * (k + 1) / K;
    if (lo < hi) reduce_range(&P, p, lo, hi, g, h, t);
  }
}

void cnnfx_reduce_to(const float *g, int gndim, const int64_t *gdims, float *t, int tndim, const int64_t *tdims)
{
  reduce_terms(RED_PLAIN, g, NULL, gndim, gdims, t, tndim, tdims, omp_get_max_threads());
}

/* ---- broadcast iteration ------------------------------------------------------- */

typedef struct {
  int m, nop;
  int64_t d[CNNFX_MAX_DIMS];
  int64_t st[EW_MAXOP][CNNFX_MAX_DIMS];
} EwIter;

/* Inner kernel: n outputs; p[k] operand pointers, s[k] their inner stride (0 or 1). */
typedef void (*EwFn)(size_t n, float *o, const float *const *p, const int64_t *s, const float *prm);

static void ew_setup(EwIter *it, int nd, const int64_t *od, int nop, const int *ndims, const int64_t *const *dims)
{
  int64_t cst[EW_MAXOP][CNNFX_MAX_DIMS];
  it->nop = nop;
  for (int k = 0; k < nop; k++) {
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
      int j = i - (nd - ndims[k]);
      int64_t dk = j >= 0 ? dims[k][j] : 1;
      cst[k][i] = dk == 1 ? 0 : s;
      s *= dk;
    }
  }
  it->m = 0;
  for (int i = 0; i < nd; i++) {
    if (od[i] == 1) continue;
    if (it->m > 0) {
      int q = it->m - 1;
      gboolean ok = TRUE;
      for (int k = 0; k < nop; k++)
        if (it->st[k][q] != cst[k][i] * od[i]) ok = FALSE;
      if (ok) {
        it->d[q] *= od[i];
        for (int k = 0; k < nop; k++) it->st[k][q] = cst[k][i];
        continue;
      }
    }
    it->d[it->m] = od[i];
    for (int k = 0; k < nop; k++) it->st[k][it->m] = cst[k][i];
    it->m++;
  }
  if (it->m == 0) {
    it->m = 1;
    it->d[0] = 1;
    for (int k = 0; k < nop; k++) it->st[k][0] = 0;
  }
}

static void ew_run(const EwIter *it, int nthreads, float *out, const float *const *ops, EwFn fn, const float *prm)
{
  int m = it->m, nop = it->nop;
  size_t inner = (size_t)it->d[m - 1];
  size_t total = dims_prod(m, it->d);
  if (!total) return;
  size_t outer = total / inner;
  size_t bl = MIN(inner, (size_t)EW_BLOCK);
  size_t nb = (inner + bl - 1) / bl;
  size_t work = outer * nb;
  int nt = total < EW_PAR_MIN ? 1 : MAX(1, nthreads);
  if ((size_t)nt > work) nt = (int)work;
  int64_t is[EW_MAXOP];
  for (int k = 0; k < nop; k++) is[k] = it->st[k][m - 1];
#pragma omp parallel num_threads(nt)
  {
    size_t T = (size_t)omp_get_num_threads(), th = (size_t)omp_get_thread_num();
    size_t w0 = work * th / T, w1 = work * (th + 1) / T;
    if (w0 < w1) {
      size_t o = w0 / nb, b = w0 % nb;
      int64_t c[CNNFX_MAX_DIMS] = {0};
      int64_t off[EW_MAXOP] = {0};
      size_t rem = o;
      for (int j = m - 2; j >= 0; j--) {
        c[j] = (int64_t)(rem % (size_t)it->d[j]);
        rem /= (size_t)it->d[j];
        for (int k = 0; k < nop; k++) off[k] += c[j] * it->st[k][j];
      }
      const float *pp[EW_MAXOP];
      for (size_t w = w0; w < w1; w++) {
        size_t i0 = b * bl, n = MIN(bl, inner - i0);
        for (int k = 0; k < nop; k++) pp[k] = ops[k] + off[k] + (int64_t)i0 * is[k];
        fn(n, out + o * inner + i0, pp, is, prm);
        if (++b == nb) {
          b = 0;
          o++;
          for (int j = m - 2; j >= 0; j--) {
            c[j]++;
            for (int k = 0; k < nop; k++) off[k] += it->st[k][j];
            if (c[j] < it->d[j]) break;
            for (int k = 0; k < nop; k++) off[k] -= c[j] * it->st[k][j];
            c[j] = 0;
          }
        }
      }
    }
  }
}

/* Binary kernels specialised on the operand strides (a,b each contiguous or broadcast). */
#define EW_BIN(NAME, EXPR)                                                                       \
  static void NAME(size_t n, float *o, const float *const *p, const int64_t *s, const float *prm) \
  {                                                                                              \
    const float *A = p[0], *B = p[1];                                                            \
    (void)prm;                                                                                   \
    if (s[0] && s[1]) {                                                                          \
      for (size_t i = 0; i < n; i++) {                                                           \
        float a = A[i], b = B[i];                                                                \
        o[i] = (EXPR);                                                                           \
      }                                                                                          \
    } else if (s[0]) {                                                                           \
      float b = B[0];                                                                            \
      for (size_t i = 0; i < n; i++) {                                                           \
        float a = A[i];                                                                          \
        o[i] = (EXPR);                                                                           \
      }                                                                                          \
    } else if (s[1]) {                                                                           \
      float a = A[0];                                                                            \
      for (size_t i = 0; i < n; i++) {                                                           \
        float b = B[i];                                                                          \
        o[i] = (EXPR);                                                                           \
      }                                                                                          \
    } else {                                                                                     \
      float a = A[0], b = B[0];                                                                  \
      float v = (EXPR);                                                                          \
      for (size_t i = 0; i < n; i++) o[i] = v;                                                   \
    }                                                                                            \
  }

/* Ternary kernels (backward only): generic strides. */
#define EW_TER(NAME, EXPR)                                                                       \
  static void NAME(size_t n, float *o, const float *const *p, const int64_t *s, const float *prm) \
  {                                                                                              \
    const float *A = p[0], *B = p[1], *C = p[2];                                                 \
    int64_t sa = s[0], sb = s[1], sc = s[2];                                                     \
    (void)prm;                                                                                   \
    if (sa && sb && sc) {                                                                        \
      for (size_t i = 0; i < n; i++) {                                                           \
        float a = A[i], b = B[i], c = C[i];                                                      \
        o[i] = (EXPR);                                                                           \
      }                                                                                          \
    } else {                                                                                     \
      for (size_t i = 0; i < n; i++) {                                                           \
        float a = A[i * sa], b = B[i * sb], c = C[i * sc];                                       \
        o[i] = (EXPR);                                                                           \
      }                                                                                          \
    }                                                                                            \
  }

/* o = broadcast of p[1] (p[0] is not read). */
static void k_copy_b(size_t n, float *o, const float *const *p, const int64_t *s, const float *prm)
{
  const float *B = p[1];
  if (s[1]) memcpy(o, B, n * sizeof(float));
  else
    for (size_t i = 0; i < n; i++) o[i] = B[0];
}

static inline float pow_fast(float a, float b)
{
  if (b == 2.f) return a * a;
  if (b == 1.f) return a;
  if (b == 0.5f) return sqrtf(a);
  return powf(a, b);
}

EW_BIN(k_add, a + b)
EW_BIN(k_sub, a - b)
EW_BIN(k_mul, a * b)
EW_BIN(k_div, a / b)
EW_BIN(k_pow, pow_fast(a, b))
EW_BIN(k_prelu, a > 0.f ? a : a * b)
EW_TER(k_div_gb, -a * b / (c * c))                             /* a = g, b = A, c = B */
EW_TER(k_pow_ga, a * c * (c == 2.f ? b : c == 1.f ? 1.f : powf(b, c - 1.f))) /* g, base, exp */
EW_TER(k_prelu_gx, b > 0.f ? a : a * c)                        /* g, x, slope */

/* out (nd, od) = fn(operands) with broadcasting. */
static void ew_apply(const CnnfxExec *x, float *out, int nd, const int64_t *od, EwFn fn, int nop,
                     const float *const *ptr, const int *ndims, const int64_t *const *dims, const float *prm)
{
  EwIter it;
  ew_setup(&it, nd, od, nop, ndims, dims);
  ew_run(&it, x ? x->n_threads : omp_get_max_threads(), out, ptr, fn, prm);
}

/* Gradient of an operand (dst, preallocated): reduce_to(fn(operands over out dims)). */
static gboolean ew_grad(const CnnfxExec *x, CnnfxTensor *dst, int nd, const int64_t *od, EwFn fn, int nop,
                        const float *const *ptr, const int *ndims, const int64_t *const *dims, const float *prm,
                        GError **error)
{
  size_t on = dims_prod(nd, od);
  if (dst->numel == on) {
    ew_apply(x, cnnfx_f32(dst), nd, od, fn, nop, ptr, ndims, dims, prm);
    return TRUE;
  }
  float *tmp = cnnfx_scratch_f32(x->mem, on, error);
  if (!tmp) return FALSE;
  ew_apply(x, tmp, nd, od, fn, nop, ptr, ndims, dims, prm);
  cnnfx_reduce_to(tmp, nd, od, cnnfx_f32(dst), dst->ndim, dst->dims);
  cnnfx_scratch_free(x->mem, tmp, on);
  return TRUE;
}

/* Gradient of a broadcast operand (dst) from g (out-shaped), optionally negated. */
static void grad_reduce(const CnnfxExec *x, CnnfxTensor *dst, const CnnfxTensor *g, gboolean neg)
{
  if (!g) return; /* dst is zero-filled */
  float *d = cnnfx_f32(dst);
  cnnfx_reduce_to(cnnfx_f32(g), g->ndim, g->dims, d, dst->ndim, dst->dims);
  if (neg) {
    size_t n = dst->numel;
#pragma omp parallel for num_threads(x->n_threads) if (n > EW_PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) d[i] = -d[i];
  }
}

/* Gradient of operand dst = reduce(term(g, h)) with g and h both out-shaped: no temporary. */
static void grad_fused(const CnnfxExec *x, CnnfxTensor *dst, RedMode mode, const CnnfxTensor *g, const float *h)
{
  reduce_terms(mode, cnnfx_f32(g), h, g->ndim, g->dims, cnnfx_f32(dst), dst->ndim, dst->dims, x->n_threads);
}

/* ---- int64 arithmetic (shape computations: small tensors, one thread) -------- */

typedef enum { I_ADD, I_SUB, I_MUL, I_DIV, I_POW } IntOp;

static inline double val_d(const CnnfxTensor *t, int64_t i)
{
  return t->dtype == CNNFX_F32 ? (double)cnnfx_f32(t)[i] : (double)cnnfx_i64(t)[i];
}

static gboolean int_binary(const CnnfxNode *n, IntOp op, const CnnfxTensor *a, const CnnfxTensor *b,
                           CnnfxTensor *out, GError **error)
{
  EwIter it;
  int nds[2] = {a->ndim, b->ndim};
  const int64_t *dms[2] = {a->dims, b->dims};
  ew_setup(&it, out->ndim, out->dims, 2, nds, dms);
  int64_t c[CNNFX_MAX_DIMS] = {0}, oa = 0, ob = 0;
  int64_t *o = cnnfx_i64(out);
  const int64_t *A = cnnfx_i64(a);
  const int64_t *B = b->dtype == CNNFX_I64 ? cnnfx_i64(b) : NULL;
  int m = it.m;
  for (size_t i = 0; i < out->numel; i++) {
    int64_t x = A[oa];
    switch (op) {
    case I_ADD: o[i] = (int64_t)((uint64_t)x + (uint64_t)B[ob]); break;
    case I_SUB: o[i] = (int64_t)((uint64_t)x - (uint64_t)B[ob]); break;
    case I_MUL: o[i] = (int64_t)((uint64_t)x * (uint64_t)B[ob]); break;
    case I_DIV:
      if (B[ob] == 0) {
        cnnfx_set_error(error, CNNFX_ERROR_ARG, "%s '%s': integer division by zero", n->op_type, n->name);
        return FALSE;
      }
      o[i] = (B[ob] == -1) ? (int64_t)(0 - (uint64_t)x) : x / B[ob];
      break;
    case I_POW: {
      double v = pow((double)x, val_d(b, ob));
      o[i] = cnnfx_f2i64(v);
      break;
    }
    }
    for (int j = m - 1; j >= 0; j--) {
      c[j]++;
      oa += it.st[0][j];
      ob += it.st[1][j];
      if (c[j] < it.d[j]) break;
      oa -= c[j] * it.st[0][j];
      ob -= c[j] * it.st[1][j];
      c[j] = 0;
    }
  }
  return TRUE;
}

/* ---- Add / Sub / Mul / Div / Pow ---------------------------------------------- */

/* The output's dtype (inferred) says which arithmetic runs: int64 or float. */
static gboolean binary_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, EwFn fn, IntOp iop, GError **error)
{
  const CnnfxTensor *a = in[0], *b = in[1];
  CnnfxTensor *y = out[0];
  if (y->dtype == CNNFX_I64) return int_binary(n, iop, a, b, y, error);
  const float *bp = cnnfx_f32(b);
  float *conv = NULL;
  if (b->dtype != CNNFX_F32) { /* Pow with an integer exponent */
    if (!(conv = cnnfx_scratch_f32(x->mem, b->numel, error))) return FALSE;
    for (size_t i = 0; i < b->numel; i++) conv[i] = (float)cnnfx_i64(b)[i];
    bp = conv;
  }
  const float *ptr[2] = {cnnfx_f32(a), bp};
  int nds[2] = {a->ndim, b->ndim};
  const int64_t *dms[2] = {a->dims, b->dims};
  ew_apply(x, cnnfx_f32(y), y->ndim, y->dims, fn, 2, ptr, nds, dms, NULL);
  if (conv) cnnfx_scratch_free(x->mem, conv, b->numel);
  return TRUE;
}

#define BINARY_FORWARD(NAME, FN, IOP)                                                                         \
  static gboolean NAME(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, \
                       void *aux, GError **error)                                                             \
  {                                                                                                          \
    (void)aux;                                                                                               \
    return binary_forward(x, n, in, out, FN, IOP, error);                                                    \
  }

BINARY_FORWARD(add_forward, k_add, I_ADD)
BINARY_FORWARD(sub_forward, k_sub, I_SUB)
BINARY_FORWARD(mul_forward, k_mul, I_MUL)
BINARY_FORWARD(div_forward, k_div, I_DIV)
BINARY_FORWARD(pow_forward, k_pow, I_POW)

/* A float op whose output is int64 carries no gradient (the gradients stay zero). */
static gboolean float_binary(CnnfxTensor *const *in)
{
  return in[0]->dtype == CNNFX_F32 && in[1]->dtype == CNNFX_F32;
}

static gboolean addsub_backward(const CnnfxExec *x, CnnfxTensor *const *in, CnnfxTensor *const *gout,
                                const gboolean *need, CnnfxTensor *const *gin, gboolean sub)
{
  if (!float_binary(in)) return TRUE;
  for (int i = 0; i < 2; i++)
    if (need[i]) grad_reduce(x, gin[i], gout[0], sub && i == 1);
  return TRUE;
}

static gboolean add_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)n, (void)out, (void)aux, (void)error;
  return addsub_backward(x, in, gout, need, gin, FALSE);
}

static gboolean sub_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)n, (void)out, (void)aux, (void)error;
  return addsub_backward(x, in, gout, need, gin, TRUE);
}

static gboolean mul_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)n, (void)out, (void)aux;
  if (!float_binary(in)) return TRUE;
  const CnnfxTensor *g = gout[0];
  if (!g) return TRUE;
  for (int i = 0; i < 2; i++) {
    if (!need[i]) continue;
    const CnnfxTensor *o = in[1 - i];
    if (o->numel == g->numel && in[i]->numel != g->numel) { /* broadcast operand: fused multiply-reduce */
      grad_fused(x, gin[i], RED_PROD, g, cnnfx_f32(o));
      continue;
    }
    const float *ptr[2] = {cnnfx_f32(g), cnnfx_f32(o)};
    int nds[2] = {g->ndim, o->ndim};
    const int64_t *dms[2] = {g->dims, o->dims};
    if (!ew_grad(x, gin[i], g->ndim, g->dims, k_mul, 2, ptr, nds, dms, NULL, error)) return FALSE;
  }
  return TRUE;
}

static gboolean div_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)n, (void)out, (void)aux;
  if (!float_binary(in)) return TRUE;
  const CnnfxTensor *g = gout[0], *a = in[0], *b = in[1];
  if (!g) return TRUE;
  for (int i = 0; i < 2; i++) {
    if (!need[i]) continue;
    if (i == 1 && a->numel == g->numel && b->numel != g->numel) {
      /* dB = -reduce(g * A) / B^2, fused */
      grad_fused(x, gin[1], RED_PROD, g, cnnfx_f32(a));
      float *d = cnnfx_f32(gin[1]);
      const float *bb = cnnfx_f32(b);
      for (size_t k = 0; k < b->numel; k++) d[k] = -d[k] / (bb[k] * bb[k]);
      continue;
    }
    const float *ptr[3] = {cnnfx_f32(g), i == 0 ? cnnfx_f32(b) : cnnfx_f32(a), cnnfx_f32(b)};
    int nds[3] = {g->ndim, i == 0 ? b->ndim : a->ndim, b->ndim};
    const int64_t *dms[3] = {g->dims, i == 0 ? b->dims : a->dims, b->dims};
    if (!ew_grad(x, gin[i], g->ndim, g->dims, i == 0 ? k_div : k_div_gb, i == 0 ? 2 : 3, ptr, nds, dms, NULL, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean pow_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)n, (void)out, (void)aux;
  const CnnfxTensor *g = gout[0], *a = in[0], *b = in[1];
  if (!need[0] || a->dtype != CNNFX_F32 || !g) return TRUE;
  const float *bp = cnnfx_f32(b);
  float *conv = NULL;
  if (b->dtype != CNNFX_F32) {
    if (!(conv = cnnfx_scratch_f32(x->mem, b->numel, error))) return FALSE;
    for (size_t i = 0; i < b->numel; i++) conv[i] = (float)cnnfx_i64(b)[i];
    bp = conv;
  }
  const float *ptr[3] = {cnnfx_f32(g), cnnfx_f32(a), bp};
  int nds[3] = {g->ndim, a->ndim, b->ndim};
  const int64_t *dms[3] = {g->dims, a->dims, b->dims};
  gboolean ok = ew_grad(x, gin[0], g->ndim, g->dims, k_pow_ga, 3, ptr, nds, dms, NULL, error);
  if (conv) cnnfx_scratch_free(x->mem, conv, b->numel);
  return ok;
}

/* ---- PRelu ---------------------------------------------------------------------- */

static gboolean prelu_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)aux;
  const CnnfxTensor *a = in[0], *s = in[1];
  int snd;
  int64_t sd[CNNFX_MAX_DIMS];
  if (!cnnfx_prelu_slope_dims(n, a, s, &snd, sd, error)) return FALSE;
  const float *ptr[2] = {cnnfx_f32(a), cnnfx_f32(s)};
  int nds[2] = {a->ndim, snd};
  const int64_t *dms[2] = {a->dims, sd};
  ew_apply(x, cnnfx_f32(out[0]), a->ndim, a->dims, k_prelu, 2, ptr, nds, dms, NULL);
  return TRUE;
}

static gboolean prelu_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out, (void)aux;
  const CnnfxTensor *a = in[0], *s = in[1], *g = gout[0];
  int snd;
  int64_t sd[CNNFX_MAX_DIMS];
  if (a->dtype != CNNFX_F32 || s->dtype != CNNFX_F32) return TRUE;
  if (!cnnfx_prelu_slope_dims(n, a, s, &snd, sd, error)) return FALSE;
  if (!g) return TRUE;
  if (need[0]) {
    const float *ptr[3] = {cnnfx_f32(g), cnnfx_f32(a), cnnfx_f32(s)};
    int nds[3] = {g->ndim, a->ndim, snd};
    const int64_t *dms[3] = {g->dims, a->dims, sd};
    if (!ew_grad(x, gin[0], a->ndim, a->dims, k_prelu_gx, 3, ptr, nds, dms, NULL, error)) return FALSE;
  }
  if (need[1]) /* reduce into the effective slope shape (same data layout as the slope's own) */
    reduce_terms(RED_PRELU, cnnfx_f32(g), cnnfx_f32(a), a->ndim, a->dims, cnnfx_f32(gin[1]), snd, sd, x->n_threads);
  return TRUE;
}

/* ---- Sum ------------------------------------------------------------------------ */

static gboolean sum_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            void *aux, GError **error)
{
  (void)aux, (void)error;
  CnnfxTensor *y = out[0];
  float *o = cnnfx_f32(y);
  for (int i = 0; i < n->n_in; i++) {
    const float *ptr[2] = {o, cnnfx_f32(in[i])};
    int nds[2] = {y->ndim, in[i]->ndim};
    const int64_t *dms[2] = {y->dims, in[i]->dims};
    ew_apply(x, o, y->ndim, y->dims, i == 0 ? k_copy_b : k_add, 2, ptr, nds, dms, NULL);
  }
  return TRUE;
}

static gboolean sum_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                             GError **error)
{
  (void)out, (void)aux, (void)error;
  for (int i = 0; i < n->n_in; i++)
    if (need[i] && in[i]) grad_reduce(x, gin[i], gout[0], FALSE);
  return TRUE;
}

/* ---- Identity / Dropout --------------------------------------------------------- */

static void copy_data(CnnfxTensor *dst, const CnnfxTensor *src)
{
  if (dst->numel) memcpy(dst->data, src->data, dst->numel * cnnfx_dtype_size(src->dtype));
}

static gboolean identity_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x, (void)n, (void)aux, (void)error;
  copy_data(out[0], in[0]);
  return TRUE;
}

static gboolean pass_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x, (void)n, (void)out, (void)aux, (void)error;
  if (!need[0] || in[0]->dtype != CNNFX_F32 || !gout[0]) return TRUE;
  copy_data(gin[0], gout[0]);
  return TRUE;
}

static gboolean dropout_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x, (void)aux;
  if (n->opset >= 12 && n->n_in >= 3 && in[2] && in[2]->numel) {
    const CnnfxTensor *tm = in[2];
    gboolean training = tm->dtype == CNNFX_F32 ? cnnfx_f32(tm)[0] != 0.f : cnnfx_i64(tm)[0] != 0;
    if (training) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                      "Dropout '%s': training_mode=true is not supported (inference only)", n->name);
      return FALSE;
    }
  }
  copy_data(out[0], in[0]);
  for (int k = 1; k < n->n_out; k++) { /* mask: all true in inference */
    int64_t *mk = cnnfx_i64(out[k]);
    for (size_t i = 0; i < out[k]->numel; i++) mk[i] = 1;
  }
  return TRUE;
}

/* ---- Cast ------------------------------------------------------------------------ */

static void cast_data(const CnnfxTensor *a, CnnfxTensor *y)
{
  if (a->dtype == y->dtype) {
    copy_data(y, a);
    return;
  }
  size_t nn = a->numel;
  if (y->dtype == CNNFX_F32) {
    const int64_t *s = cnnfx_i64(a);
    float *d = cnnfx_f32(y);
    for (size_t i = 0; i < nn; i++) d[i] = (float)s[i];
  } else {
    const float *s = cnnfx_f32(a);
    int64_t *d = cnnfx_i64(y);
    for (size_t i = 0; i < nn; i++) d[i] = cnnfx_f2i64(s[i]);
  }
}

/* Cast and CastLike: the target type is the inferred output dtype. */
static gboolean cast_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)x, (void)n, (void)aux, (void)error;
  cast_data(in[0], out[0]);
  return TRUE;
}

static gboolean castlike_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                  CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x, (void)n, (void)out, (void)aux, (void)error;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  if (in[1]->dtype != CNNFX_F32 || !gout[0]) return TRUE; /* through int64: zero gradient */
  copy_data(gin[0], gout[0]);
  return TRUE;
}

static gboolean cast_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x, (void)out, (void)aux, (void)error;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  if (cnnfx_attr_int(n, "to", 1) != 1 || !gout[0]) return TRUE; /* through int64: zero gradient */
  copy_data(gin[0], gout[0]);
  return TRUE;
}

/* ---- table ------------------------------------------------------------------------ */

static const CnnfxKernel k_add_op = {.name = "Add", .forward = add_forward, .backward = add_backward};
static const CnnfxKernel k_sub_op = {.name = "Sub", .forward = sub_forward, .backward = sub_backward};
static const CnnfxKernel k_mul_op = {.name = "Mul", .forward = mul_forward, .backward = mul_backward};
static const CnnfxKernel k_div_op = {.name = "Div", .forward = div_forward, .backward = div_backward};
static const CnnfxKernel k_pow_op = {.name = "Pow", .forward = pow_forward, .backward = pow_backward};
static const CnnfxKernel k_prelu_op = {.name = "PRelu", .forward = prelu_forward, .backward = prelu_backward};
static const CnnfxKernel k_sum_op = {.name = "Sum", .forward = sum_forward, .backward = sum_backward};
static const CnnfxKernel k_identity_op = {.name = "Identity", .forward = identity_forward, .backward = pass_backward};
static const CnnfxKernel k_dropout_op = {.name = "Dropout", .forward = dropout_forward, .backward = pass_backward};
static const CnnfxKernel k_cast_op = {.name = "Cast", .forward = cast_forward, .backward = cast_backward};
static const CnnfxKernel k_castlike_op = {.name = "CastLike", .forward = cast_forward, .backward = castlike_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_elementwise[] = {
  &k_add_op, &k_sub_op, &k_mul_op, &k_div_op, &k_pow_op, &k_prelu_op, &k_sum_op, &k_identity_op, &k_dropout_op,
  &k_cast_op, &k_castlike_op, NULL,
};
