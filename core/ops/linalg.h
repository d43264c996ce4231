/* Linear-algebra family: geometry shared by the definitions (core/ops/linalg.c) and the kernels of
 * every backend.  Backend-neutral. */
#ifndef CNNFX_OPS_LINALG_H
#define CNNFX_OPS_LINALG_H

#include "cnnfx-private.h"

/* Gemm: Y[M,N] = alpha op(A) op(B) + beta C. */
typedef struct {
  gboolean ta, tb;
  float alpha, beta;
  int64_t M, N, K;
  int64_t cs_m, cs_n; /* strides of C along M and N (0 = broadcast) */
} CnnfxGemmGeo;

/* MatMul with numpy batch broadcasting. */
typedef struct {
  int64_t M, N, K;
  int nb;                               /* batch rank of the output */
  int64_t bdims[CNNFX_MAX_DIMS];        /* output batch dims */
  int64_t sa[CNNFX_MAX_DIMS], sb[CNNFX_MAX_DIMS]; /* batch strides (in matrices) of A and B, 0 = broadcast */
  int64_t nbatch, na, nbb;              /* batch counts of out, A, B */
  int ndim;
  int64_t dims[CNNFX_MAX_DIMS];         /* output dims */
} CnnfxMatMulGeo;

/* Check the operands (dtype, shapes, attributes) and fill the geometry; FALSE + error otherwise. */
gboolean cnnfx_gemm_geo(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxGemmGeo *g, GError **error);
gboolean cnnfx_matmul_geo(const CnnfxNode *n, const CnnfxTensor *A, const CnnfxTensor *B, CnnfxMatMulGeo *g,
                          GError **error);
/* Does v fit the int dimensions BLAS takes (with room for products of two)? */
gboolean cnnfx_blas_fits(int64_t v);

#endif
