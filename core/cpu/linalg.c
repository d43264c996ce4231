/* CPU kernels (linalg family): Gemm and MatMul, forward and backward (both operands and bias), into
 * preallocated tensors.  The geometry and shape inference are in core/ops/linalg.c.
 *
 * Everything goes through cnnfx_sgemm (row-major BLAS).  A "logical" matrix op(X) of size R x C
 * is stored as [R, C] (t = FALSE, leading dimension C) or as [C, R] (t = TRUE, leading dimension R).
 */
#include "cnnfx-private.h"
#include "ops/linalg.h"

/* C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C, with the leading dimensions implied by the storage. */
static void mm(gboolean ta, gboolean tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               const float *B, float beta, float *C)
{
  cnnfx_sgemm(ta, tb, (int)M, (int)N, (int)K, alpha, A, (int)(ta ? M : K), B, (int)(tb ? K : N), beta, C, (int)N);
}

static gboolean gemm_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                             CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x, (void)aux;
  CnnfxGemmGeo g;
  if (!cnnfx_gemm_geo(n, in, &g, error)) return FALSE;
  const CnnfxTensor *C = n->n_in > 2 ? in[2] : NULL;
  CnnfxTensor *Y = out[0];
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
  return TRUE;
}

static gboolean gemm_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x, (void)out, (void)aux;
  CnnfxGemmGeo g;
  if (!cnnfx_gemm_geo(n, in, &g, error)) return FALSE;
  const CnnfxTensor *G = gout[0] && gout[0]->data && gout[0]->dtype == CNNFX_F32 ? gout[0] : NULL;
  const CnnfxTensor *A = in[0], *B = in[1], *C = n->n_in > 2 ? in[2] : NULL;
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

/* Matrix offsets of batch b in A and B. */
static void batch_offsets(const CnnfxMatMulGeo *g, int64_t b, int64_t *oa, int64_t *ob)
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

static gboolean matmul_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x, (void)aux;
  const CnnfxTensor *A = in[0], *B = in[1];
  CnnfxMatMulGeo g;
  if (!cnnfx_matmul_geo(n, A, B, &g, error)) return FALSE;
  CnnfxTensor *Y = out[0];
  if (!Y->numel) return TRUE;
  const float *a = A->data, *b = B->data;
  float *y = Y->data;
  const int64_t M = g.M, N = g.N, K = g.K;
  if (g.nbb == 1 && g.na == g.nbatch && cnnfx_blas_fits(g.nbatch * M)) {
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
                                CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x, (void)out, (void)aux;
  const CnnfxTensor *A = in[0], *B = in[1];
  CnnfxMatMulGeo g;
  if (!cnnfx_matmul_geo(n, A, B, &g, error)) return FALSE;
  const CnnfxTensor *G = gout[0] && gout[0]->data && gout[0]->dtype == CNNFX_F32 ? gout[0] : NULL;
  if (!G || !G->numel) return TRUE;
  const int64_t M = g.M, N = g.N, K = g.K;
  const float *gy = G->data;
  const gboolean flat = g.nbb == 1 && g.na == g.nbatch && cnnfx_blas_fits(g.nbatch * M);
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

static const CnnfxKernel k_gemm = {.name = "Gemm", .forward = gemm_forward, .backward = gemm_backward};
static const CnnfxKernel k_matmul = {.name = "MatMul", .forward = matmul_forward, .backward = matmul_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_linalg[] = {&k_gemm, &k_matmul, NULL};
