/* Operators: linear algebra — Gemm and MatMul, forward and backward (both operands and bias).
 *
 * Everything goes through cnnfx_sgemm (row-major BLAS).  A "logical" matrix op(X) of size R x C
 * is stored as [R, C] (t = FALSE, leading dimension C) or as [C, R] (t = TRUE, leading dimension R).
 */
#include "cnnfx-private.h"

#define MAXD CNNFX_MAX_DIMS

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, with the leading dimensions implied by the storage. */
static void mm(gboolean ta, gboolean tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               const float *B, float beta, float *C)
{
  cnnfx_sgemm(ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)(ta ? M : K), B, (int)(tb ? K : N), beta, C, (int)N);
}

static gboolean fits_int(int64_t v) { return v >= 0 && v <= G_MAXINT / 2; }

static gboolean need_f32(const CnnfxNode *n, const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->dtype == CNNFX_F32) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': %s must be a float tensor", n->op_type, n->name, what);
  return FALSE;
}

/* ---- Gemm ------------------------------------------------------------------------------ */

typedef struct {
  gboolean ta, tb;
  float alpha, beta;
  int64_t M, N, K;
  int64_t cs_m, cs_n; /* strides of C along M and N (0 = broadcast) */
} GemmGeo;

static gboolean gemm_geo(const CnnfxNode *n, CnnfxTensor *const *in, GemmGeo *g, GError **error)
{
  const CnnfxTensor *A = in[0], *B = in[1], *C = n->n_in > 2 ? in[2] : NULL;
  if (!need_f32(n, A, "A", error) || !need_f32(n, B, "B", error)) return FALSE;
  if (A->ndim != 2 || B->ndim != 2) {
    g_autofree char *a = cnnfx_shape_string(A), *b = cnnfx_shape_string(B);
    return cnnfx_fail_shape(error, n, "A and B must be matrices, got %s and %s", a, b);
  }
  g->ta = cnnfx_attr_int(n, "transA", 0) != 0;
  g->tb = cnnfx_attr_int(n, "transB", 0) != 0;
  g->alpha = cnnfx_attr_float(n, "alpha", 1.f);
  g->beta = cnnfx_attr_float(n, "beta", 1.f);
  g->M = g->ta ? A->dims[1] : A->dims[0];
  g->K = g->ta ? A->dims[0] : A->dims[1];
  int64_t kb = g->tb ? B->dims[1] : B->dims[0];
  g->N = g->tb ? B->dims[0] : B->dims[1];
  if (kb != g->K) {
    g_autofree char *a = cnnfx_shape_string(A), *b = cnnfx_shape_string(B);
    return cnnfx_fail_shape(error, n, "inner dimensions differ: A %s%s, B %s%s", a, g->ta ? " (transposed)" : "", b,
                            g->tb ? " (transposed)" : "");
  }
  if (!fits_int(g->M) || !fits_int(g->N) || !fits_int(g->K))
    return cnnfx_fail_shape(error, n, "matrix too large for BLAS");
  g->cs_m = g->cs_n = 0;
  if (C) {
    if (!need_f32(n, C, "C", error)) return FALSE;
    int r = C->ndim;
    int64_t cm = r == 2 ? C->dims[0] : 1, cn = r >= 1 ? C->dims[r - 1] : 1;
    if (r > 2 || (cm != 1 && cm != g->M) || (cn != 1 && cn != g->N)) {
      g_autofree char *c = cnnfx_shape_string(C);
      return cnnfx_fail_shape(error, n, "C of shape %s does not broadcast to %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT, c,
                              g->M, g->N);
    }
    g->cs_n = cn == 1 ? 0 : 1;
    g->cs_m = cm == 1 ? 0 : cn;
  }
  return TRUE;
}

static gboolean gemm_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             GError **error)
{
  GemmGeo g;
  if (!gemm_geo(n, in, &g, error)) return FALSE;
  const CnnfxTensor *C = n->n_in > 2 ? in[2] : NULL;
  int64_t dims[2] = {g.M, g.N};
  CnnfxTensor *Y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, 2, dims, error);
  if (!Y) return FALSE;
  float *y = Y->data;
  float beta = 0.f;
  if (C && g.beta != 0.f && Y->numel) {
    const float *c = C->data;
    const int64_t M = g.M, N = g.N, sm = g.cs_m, sn = g.cs_n;
#pragma omp parallel for if (M * N > 65536) schedule(static)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) y[i * N + j] = c[i * sm + j * sn];
    beta = g.beta;
  }
  if (Y->numel) mm(g.ta, g.tb, g.M, g.N, g.K, g.alpha, in[0]->data, in[1]->data, beta, y);
  out[0] = Y;
  return TRUE;
}

static gboolean gemm_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor **gin, GError **error)
{
  (void)out;
  GemmGeo g;
  if (!gemm_geo(n, in, &g, error)) return FALSE;
  const CnnfxTensor *G = gout[0] && gout[0]->data && gout[0]->dtype == CNNFX_F32 ? gout[0] : NULL;
  const CnnfxTensor *A = in[0], *B = in[1], *C = n->n_in > 2 ? in[2] : NULL;
  for (int i = 0; i < 3 && i < n->n_in; i++) {
    if (!need[i] || !in[i]) continue;
    if (!(gin[i] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, in[i]->ndim, in[i]->dims, error))) return FALSE;
    memset(gin[i]->data, 0, gin[i]->numel * sizeof(float));
  }
  if (!G) return TRUE;
  const float *gy = G->data;
  if (need[0] && gin[0] && gin[0]->numel) {
    if (!B->data) goto missing;
    if (!g.ta) mm(FALSE, !g.tb, g.M, g.K, g.N, g.alpha, gy, B->data, 0.f, gin[0]->data);
    else mm(g.tb, TRUE, g.K, g.M, g.N, g.alpha, B->data, gy, 0.f, gin[0]->data);
  }
  if (n->n_in > 1 && need[1] && gin[1] && gin[1]->numel) {
    if (!A->data) goto missing;
    if (!g.tb) mm(!g.ta, FALSE, g.K, g.N, g.M, g.alpha, A->data, gy, 0.f, gin[1]->data);
    else mm(TRUE, g.ta, g.N, g.K, g.M, g.alpha, gy, A->data, 0.f, gin[1]->data);
  }
  if (C && n->n_in > 2 && need[2] && gin[2] && gin[2]->numel) {
    float *gc = gin[2]->data;
    const int64_t M = g.M, N = g.N, sm = g.cs_m, sn = g.cs_n;
    const float beta = g.beta;
    if (sm == N && sn == 1) {
      for (int64_t i = 0; i < M * N; i++) gc[i] = beta * gy[i];
    } else if (sm == 0 && sn == 1) {
      /* row vector bias [N]: column sums */
      for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) gc[j] += gy[i * N + j];
      for (int64_t j = 0; j < N; j++) gc[j] *= beta;
    } else {
      for (int64_t i = 0; i < M; i++) {
        double s = 0;
        if (sn == 0) {
          for (int64_t j = 0; j < N; j++) s += gy[i * N + j];
          gc[i * sm] += (float)s;
        } else {
          for (int64_t j = 0; j < N; j++) gc[i * sm + j] += gy[i * N + j];
        }
      }
      for (size_t k = 0; k < gin[2]->numel; k++) gc[k] *= beta;
    }
  }
  return TRUE;
missing:
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "Gemm '%s': operands were not kept for backward", n->name);
  return FALSE;
}

/* ---- MatMul -------------------------------------------------------------------------------- */

typedef struct {
  int64_t M, N, K;
  int nb;                   /* batch rank of the output */
  int64_t bdims[MAXD];      /* output batch dims */
  int64_t sa[MAXD], sb[MAXD]; /* batch strides (in matrices) of A and B, 0 = broadcast */
  int64_t nbatch, na, nbb;  /* batch counts of out, A, B */
  int ndim;
  int64_t dims[MAXD];       /* output dims */
} MMGeo;

static gboolean matmul_geo(const CnnfxNode *n, const CnnfxTensor *A, const CnnfxTensor *B, MMGeo *g, GError **error)
{
  if (!need_f32(n, A, "A", error) || !need_f32(n, B, "B", error)) return FALSE;
  int ra = A->ndim, rb = B->ndim;
  if (ra < 1 || rb < 1) return cnnfx_fail_shape(error, n, "operands must have rank >= 1");
  int64_t ka;
  if (ra == 1) {
    g->M = 1;
    ka = A->dims[0];
  } else {
    g->M = A->dims[ra - 2];
    ka = A->dims[ra - 1];
  }
  if (rb == 1) {
    g->K = B->dims[0];
    g->N = 1;
  } else {
    g->K = B->dims[rb - 2];
    g->N = B->dims[rb - 1];
  }
  if (ka != g->K) {
    g_autofree char *a = cnnfx_shape_string(A), *b = cnnfx_shape_string(B);
    return cnnfx_fail_shape(error, n, "cannot multiply %s by %s", a, b);
  }
  if (!fits_int(g->M) || !fits_int(g->N) || !fits_int(g->K))
    return cnnfx_fail_shape(error, n, "matrix too large for BLAS");
  int ba = MAX(ra - 2, 0), bb = MAX(rb - 2, 0), nb = MAX(ba, bb);
  int64_t ast[MAXD], bst[MAXD];
  int64_t s = 1;
  for (int k = ba - 1; k >= 0; k--) {
    ast[k] = s;
    s *= A->dims[k];
  }
  g->na = s;
  s = 1;
  for (int k = bb - 1; k >= 0; k--) {
    bst[k] = s;
    s *= B->dims[k];
  }
  g->nbb = s;
  g->nb = nb;
  g->nbatch = 1;
  for (int k = 0; k < nb; k++) {
    int ia = k - (nb - ba), ib = k - (nb - bb);
    int64_t da = ia >= 0 ? A->dims[ia] : 1, db = ib >= 0 ? B->dims[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      g_autofree char *a = cnnfx_shape_string(A), *b = cnnfx_shape_string(B);
      return cnnfx_fail_shape(error, n, "batch dimensions of %s and %s do not broadcast", a, b);
    }
    g->bdims[k] = da == 1 ? db : da;
    g->sa[k] = (ia >= 0 && da != 1) ? ast[ia] : 0;
    g->sb[k] = (ib >= 0 && db != 1) ? bst[ib] : 0;
    g->nbatch *= g->bdims[k];
  }
  int nd = 0;
  for (int k = 0; k < nb; k++) g->dims[nd++] = g->bdims[k];
  if (ra > 1) g->dims[nd++] = g->M;
  if (rb > 1) g->dims[nd++] = g->N;
  if (nd > MAXD) return cnnfx_fail_shape(error, n, "result rank too large");
  g->ndim = nd;
  return TRUE;
}

/* Matrix offsets of batch b in A and B. */
static void batch_offsets(const MMGeo *g, int64_t b, int64_t *oa, int64_t *ob)
{
  int64_t a = 0, c = 0;
  for (int k = g->nb - 1; k >= 0; k--) {
    int64_t i = b % g->bdims[k];
    b /= g->bdims[k];
    a += i * g->sa[k];
    c += i * g->sb[k];
  }
  *oa = a;
  *ob = c;
}

static gboolean matmul_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               GError **error)
{
  const CnnfxTensor *A = in[0], *B = in[1];
  MMGeo g;
  if (!matmul_geo(n, A, B, &g, error)) return FALSE;
  CnnfxTensor *Y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, g.ndim, g.dims, error);
  if (!Y) return FALSE;
  out[0] = Y;
  if (!Y->numel) return TRUE;
  const float *a = A->data, *b = B->data;
  float *y = Y->data;
  const int64_t M = g.M, N = g.N, K = g.K;
  if (g.nbb == 1 && g.na == g.nbatch && fits_int(g.nbatch * M)) {
    /* shared right operand: one GEMM over all rows */
    mm(FALSE, FALSE, g.nbatch * M, N, K, 1.f, a, b, 0.f, y);
    return TRUE;
  }
  for (int64_t bi = 0; bi < g.nbatch; bi++) {
    int64_t oa, ob;
    batch_offsets(&g, bi, &oa, &ob);
    mm(FALSE, FALSE, M, N, K, 1.f, a + oa * M * K, b + ob * K * N, 0.f, y + bi * M * N);
  }
  return TRUE;
}

static gboolean matmul_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor **gin, GError **error)
{
  (void)out;
  const CnnfxTensor *A = in[0], *B = in[1];
  MMGeo g;
  if (!matmul_geo(n, A, B, &g, error)) return FALSE;
  const CnnfxTensor *G = gout[0] && gout[0]->data && gout[0]->dtype == CNNFX_F32 ? gout[0] : NULL;
  for (int i = 0; i < 2; i++) {
    if (!need[i]) continue;
    if (!(gin[i] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, in[i]->ndim, in[i]->dims, error))) return FALSE;
    memset(gin[i]->data, 0, gin[i]->numel * sizeof(float));
  }
  if (!G || !G->numel) return TRUE;
  const int64_t M = g.M, N = g.N, K = g.K;
  const float *gy = G->data;
  const gboolean flat = g.nbb == 1 && g.na == g.nbatch && fits_int(g.nbatch * M);
  if (need[0] && gin[0]->numel) {
    if (!B->data) goto missing;
    float *ga = gin[0]->data;
    const float *b = B->data;
    if (flat) {
      mm(FALSE, TRUE, g.nbatch * M, K, N, 1.f, gy, b, 0.f, ga);
    } else {
      for (int64_t bi = 0; bi < g.nbatch; bi++) {
        int64_t oa, ob;
        batch_offsets(&g, bi, &oa, &ob);
        mm(FALSE, TRUE, M, K, N, 1.f, gy + bi * M * N, b + ob * K * N, 1.f, ga + oa * M * K);
      }
    }
  }
  if (need[1] && gin[1]->numel) {
    if (!A->data) goto missing;
    float *gb = gin[1]->data;
    const float *a = A->data;
    if (flat) {
      mm(TRUE, FALSE, K, N, g.nbatch * M, 1.f, a, gy, 0.f, gb);
    } else {
      for (int64_t bi = 0; bi < g.nbatch; bi++) {
        int64_t oa, ob;
        batch_offsets(&g, bi, &oa, &ob);
        mm(TRUE, FALSE, K, N, M, 1.f, a + oa * M * K, gy + bi * M * N, 1.f, gb + ob * K * N);
      }
    }
  }
  return TRUE;
missing:
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "MatMul '%s': operands were not kept for backward", n->name);
  return FALSE;
}

static const CnnfxOp op_gemm = {.name = "Gemm", .forward = gemm_forward, .backward = gemm_backward,
                                .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1)};
static const CnnfxOp op_matmul = {.name = "MatMul", .forward = matmul_forward, .backward = matmul_backward,
                                  .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1)};

const CnnfxOp *const cnnfx_ops_linalg[] = {&op_gemm, &op_matmul, NULL};
