/* Operator definitions (linalg family): Gemm and MatMul geometry and shape inference.
 * Backend-neutral; the CPU kernels are in core/cpu/linalg.c. */
#include "cnnfx-private.h"
#include "ops/linalg.h"

#define MAXD CNNFX_MAX_DIMS

gboolean cnnfx_blas_fits(int64_t v) { return v >= 0 && v <= G_MAXINT / 2; }

static gboolean need_f32(const CnnfxNode *n, const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->dtype == CNNFX_F32) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': %s must be a float tensor", n->op_type, n->name, what);
  return FALSE;
}

gboolean cnnfx_gemm_geo(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxGemmGeo *g, GError **error)
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
  if (!cnnfx_blas_fits(g->M) || !cnnfx_blas_fits(g->N) || !cnnfx_blas_fits(g->K))
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

gboolean cnnfx_matmul_geo(const CnnfxNode *n, const CnnfxTensor *A, const CnnfxTensor *B, CnnfxMatMulGeo *g,
                          GError **error)
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
  if (!cnnfx_blas_fits(g->M) || !cnnfx_blas_fits(g->N) || !cnnfx_blas_fits(g->K))
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

static gboolean gemm_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxGemmGeo g;
  if (!cnnfx_gemm_geo(n, in, &g, error)) return FALSE;
  int64_t dims[2] = {g.M, g.N};
  cnnfx_meta_set(out[0], CNNFX_F32, 2, dims);
  return TRUE;
}

static gboolean matmul_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxMatMulGeo g;
  if (!cnnfx_matmul_geo(n, in[0], in[1], &g, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, g.ndim, g.dims);
  return TRUE;
}

static const CnnfxOpDef def_gemm = {.name = "Gemm", .infer = gemm_infer, .differentiable = TRUE,
                                    .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1)};
static const CnnfxOpDef def_matmul = {.name = "MatMul", .infer = matmul_infer, .differentiable = TRUE,
                                      .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1)};

const CnnfxOpDef *const cnnfx_opdefs_linalg[] = {&def_gemm, &def_matmul, NULL};
