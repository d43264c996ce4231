/* "cuda": the CUDA + cuDNN + cuBLAS backend, built as the module libcnnfx-cuda.so and loaded by
 * cnnfx_backend_new("cuda"|"cuda:N") (core/backend.c), so that the CPU path never needs CUDA.
 *
 * Buffers are device memory (cudaMalloc, with a small cache of freed blocks); every copy, fill and
 * kernel is queued on the backend's one stream, so the session's reuse of its arena is ordered by
 * the stream; download waits for the stream.  Kernels (forward and backward of one op together):
 *   Conv        cuDNN forward / backward data / backward filter / backward bias, 2-D, groups,
 *               dilations, symmetric padding; algorithms found by cudnnFind* once per shape and cached;
 *               one growing workspace; TF32 tensor cores unless the backend is exact
 *   Gemm MatMul cuBLAS sgemm (TF32 unless exact)
 *   Relu LeakyRelu Sigmoid Tanh, MaxPool (the CPU's argmax aux layout), AveragePool,
 *   GlobalAveragePool, Add Sub Mul (numpy broadcasting): kernels.cu
 *   Concat Flatten Identity Dropout (inference): copies on the stream
 * Everything else, and every node with non-float32 inputs, falls back to the CPU (supports()).
 *
 * STATUS: compiled in CI (no GPU there); not yet run on a GPU (see docs/design.md). */
#include "cnnfx-private.h"
#include "ops/conv.h"
#include "ops/pool.h"
#include "kernels.h"
#include <cublas_v2.h>
#include <cudnn.h>
#include <gmodule.h>
#include <limits.h>

#define POOL_CACHE_MAX ((size_t)1 << 30) /* freed blocks kept for reuse, bytes */
#define N_FIND 8

typedef struct {
  void *p;
  size_t bytes;
} FreeBlock;

typedef struct {
  int algo;          /* cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t */
  cudnnMathType_t math;
  size_t ws;
} AlgoRec;

typedef struct {
  int device;
  cudaStream_t stream;
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  void *ws;
  size_t ws_bytes;
  GHashTable *algos;  /* shape key -> AlgoRec */
  GArray *cache;      /* FreeBlock */
  size_t cached;
  char *desc;
} Cu;

static Cu *cu_of(const CnnfxExec *x)
{
  return x->backend ? x->backend->priv : NULL;
}

/* ---- errors ----------------------------------------------------------------------------------- */

static gboolean cuda_ok(cudaError_t e, const char *what, GError **error)
{
  if (e == cudaSuccess) return TRUE;
  cnnfx_set_error(error, e == cudaErrorMemoryAllocation ? CNNFX_ERROR_NOMEM : CNNFX_ERROR_BACKEND, "cuda: %s: %s",
                  what, cudaGetErrorString(e));
  return FALSE;
}

static gboolean dnn_ok(cudnnStatus_t e, const char *what, GError **error)
{
  if (e == CUDNN_STATUS_SUCCESS) return TRUE;
  cnnfx_set_error(error, e == CUDNN_STATUS_ALLOC_FAILED ? CNNFX_ERROR_NOMEM : CNNFX_ERROR_BACKEND, "cudnn: %s: %s",
                  what, cudnnGetErrorString(e));
  return FALSE;
}

static gboolean blas_ok(cublasStatus_t e, const char *what, GError **error)
{
  if (e == CUBLAS_STATUS_SUCCESS) return TRUE;
  cnnfx_set_error(error, e == CUBLAS_STATUS_ALLOC_FAILED ? CNNFX_ERROR_NOMEM : CNNFX_ERROR_BACKEND,
                  "cublas: %s: status %d", what, (int)e);
  return FALSE;
}

static gboolean no_ctx(GError **error)
{
  cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "cuda: kernel called without its backend (CnnfxExec.backend)");
  return FALSE;
}

/* ---- buffers ---------------------------------------------------------------------------------- */

static void cache_drop(Cu *cu)
{
  if (cu->cache->len) cudaStreamSynchronize(cu->stream); /* queued kernels may still use them */
  for (guint i = 0; i < cu->cache->len; i++) cudaFree(g_array_index(cu->cache, FreeBlock, i).p);
  g_array_set_size(cu->cache, 0);
  cu->cached = 0;
}

static void *cu_buf_alloc(CnnfxBackend *b, size_t bytes, GError **error)
{
  Cu *cu = b->priv;
  bytes = MAX(bytes, 256);
  for (guint i = 0; i < cu->cache->len; i++) {
    FreeBlock *f = &g_array_index(cu->cache, FreeBlock, i);
    if (f->bytes == bytes) {
      void *p = f->p;
      cu->cached -= bytes;
      g_array_remove_index_fast(cu->cache, i);
      return p;
    }
  }
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation && cu->cached) { /* give the cache back and try again */
    cudaGetLastError();
    cache_drop(cu);
    e = cudaMalloc(&p, bytes);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "cuda: out of device memory (%zu MiB requested: %s)", bytes >> 20,
                    cudaGetErrorString(e));
    return NULL;
  }
  return p;
}

static void cu_buf_free(CnnfxBackend *b, void *p, size_t bytes)
{
  Cu *cu = b->priv;
  if (!p) return;
  bytes = MAX(bytes, 256);
  if (cu->cached + bytes <= POOL_CACHE_MAX) { /* stream order keeps later users after earlier ones */
    FreeBlock f = {p, bytes};
    g_array_append_val(cu->cache, f);
    cu->cached += bytes;
    return;
  }
  cudaStreamSynchronize(cu->stream); /* queued kernels may still use it */
  cudaFree(p);
}

static gboolean cu_upload(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error)
{
  Cu *cu = b->priv;
  /* from pageable memory the call returns once the source is staged: the caller may reuse it */
  return !bytes || cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cu->stream), "upload", error);
}

static gboolean cu_download(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error)
{
  Cu *cu = b->priv;
  if (!bytes) return TRUE;
  return cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cu->stream), "download", error) &&
         cuda_ok(cudaStreamSynchronize(cu->stream), "download (synchronize)", error);
}

static gboolean cu_copy(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error)
{
  Cu *cu = b->priv;
  return !bytes || cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream), "copy", error);
}

static gboolean cu_fill_zero(CnnfxBackend *b, void *dst, size_t bytes, GError **error)
{
  Cu *cu = b->priv;
  return !bytes || cuda_ok(cudaMemsetAsync(dst, 0, bytes, cu->stream), "fill_zero", error);
}

static gboolean cu_accumulate(CnnfxBackend *b, float *dst, const float *src, size_t n, GError **error)
{
  Cu *cu = b->priv;
  return cuda_ok(cnnfx_cu_accumulate(dst, src, n, cu->stream), "accumulate", error);
}

static gboolean cu_sync(CnnfxBackend *b, GError **error)
{
  Cu *cu = b->priv;
  return cuda_ok(cudaStreamSynchronize(cu->stream), "synchronize", error);
}

static gboolean dcopy(Cu *cu, void *dst, const void *src, size_t bytes, GError **error)
{
  return !bytes || cuda_ok(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cu->stream), "copy", error);
}

/* ---- cuBLAS: row-major C[M,N] = alpha op(A) op(B) + beta C ------------------------------------ */

static gboolean rm_sgemm(Cu *cu, const CnnfxExec *x, gboolean ta, gboolean tb, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                         int64_t ldc, GError **error)
{
  if (M <= 0 || N <= 0) return TRUE;
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX || lda > INT_MAX || ldb > INT_MAX || ldc > INT_MAX) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "cuda: matrix too large for cublasSgemm");
    return FALSE;
  }
  if (!blas_ok(cublasSetMathMode(cu->blas, x->exact ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH),
               "cublasSetMathMode", error))
    return FALSE;
  /* row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T */
  return blas_ok(cublasSgemm(cu->blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N,
                             (int)M, (int)K, &alpha, B, (int)ldb, A, (int)lda, &beta, C, (int)ldc),
                 "cublasSgemm", error);
}

/* ---- broadcasting ------------------------------------------------------------------------------ */

static void bcast_strides(const CnnfxTensor *t, int nd, const int64_t *od, int64_t *s, int *plain)
{
  int64_t st = 1;
  *plain = t->ndim == nd;
  for (int j = nd - 1; j >= 0; j--) {
    int jj = j - (nd - t->ndim);
    if (jj < 0 || t->dims[jj] == 1) s[j] = 0;
    else s[j] = st;
    if (jj >= 0) st *= t->dims[jj];
    if (jj < 0 || t->dims[jj] != od[j]) *plain = FALSE;
  }
}

static void bcast_make(CuBcast *bc, const CnnfxTensor *y, const CnnfxTensor *a, const CnnfxTensor *b)
{
  memset(bc, 0, sizeof *bc);
  bc->nd = y->ndim;
  for (int j = 0; j < y->ndim; j++) bc->out[j] = y->dims[j];
  bcast_strides(a, y->ndim, y->dims, bc->sa, &bc->plain_a);
  if (b) bcast_strides(b, y->ndim, y->dims, bc->sb, &bc->plain_b);
  else bc->plain_b = TRUE;
}

/* ---- elementwise: Add Sub Mul ----------------------------------------------------------------- */

static int binary_kind(const char *op)
{
  return !strcmp(op, "Add") ? CU_ADD : !strcmp(op, "Sub") ? CU_SUB : CU_MUL;
}

static gboolean binary_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  CuBcast bc;
  bcast_make(&bc, out[0], in[0], in[1]);
  return cuda_ok(cnnfx_cu_binary_fwd(binary_kind(n->op_type), &bc, 1.f, in[0]->data, in[1]->data, out[0]->data,
                                     out[0]->numel, cu->stream),
                 n->op_type, error);
}

static gboolean binary_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                           GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0]) return TRUE;
  CuBcast bc;
  bcast_make(&bc, out[0], in[0], in[1]);
  int op = binary_kind(n->op_type);
  for (int w = 0; w < 2; w++) {
    if (!need[w] || !gin[w]) continue;
    const float *other = op == CU_MUL ? in[1 - w]->data : NULL;
    if (!cuda_ok(cnnfx_cu_binary_bwd(op, &bc, 1.f, w, gout[0]->data, other, gin[w]->data, out[0]->numel, cu->stream),
                 n->op_type, error))
      return FALSE;
  }
  return TRUE;
}

/* ---- activations ------------------------------------------------------------------------------ */

static int act_kind(const CnnfxNode *n, float *alpha)
{
  *alpha = 0.f;
  if (!strcmp(n->op_type, "Relu")) return CU_RELU;
  if (!strcmp(n->op_type, "LeakyRelu")) {
    *alpha = cnnfx_attr_float(n, "alpha", 0.01f);
    return CU_LEAKY;
  }
  return !strcmp(n->op_type, "Sigmoid") ? CU_SIGMOID : CU_TANH;
}

static gboolean act_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                        void *aux, GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  float alpha;
  int k = act_kind(n, &alpha);
  return cuda_ok(cnnfx_cu_act_fwd(k, alpha, in[0]->data, out[0]->data, out[0]->numel, cu->stream), n->op_type, error);
}

static gboolean act_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                        CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                        GError **error)
{
  (void)aux;
  (void)in;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0] || !need[0]) return TRUE;
  float alpha;
  int k = act_kind(n, &alpha);
  /* all four read the output (CnnfxOpDef.saves; LeakyRelu only when alpha >= 0: supports()) */
  return cuda_ok(cnnfx_cu_act_bwd(k, alpha, out[0]->data, gout[0]->data, gin[0]->data, out[0]->numel, cu->stream),
                 n->op_type, error);
}

/* ---- copies: Flatten Identity Dropout, Concat -------------------------------------------------- */

static gboolean same_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         void *aux, GError **error)
{
  (void)aux;
  (void)n;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  return dcopy(cu, out[0]->data, in[0]->data, in[0]->numel * sizeof(float), error);
}

static gboolean same_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                         GError **error)
{
  (void)aux;
  (void)n;
  (void)out;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0] || !need[0]) return TRUE;
  return cuda_ok(cnnfx_cu_accumulate(gin[0]->data, gout[0]->data, in[0]->numel, cu->stream), n->op_type, error);
}

static gboolean concat_geom(const CnnfxNode *n, const CnnfxTensor *y, int64_t *outer, int64_t *inner, int *axis)
{
  if (!cnnfx_norm_axis(cnnfx_attr_int(n, "axis", 0), y->ndim, axis)) return FALSE;
  *outer = *inner = 1;
  for (int j = 0; j < *axis; j++) *outer *= y->dims[j];
  for (int j = *axis + 1; j < y->ndim; j++) *inner *= y->dims[j];
  return TRUE;
}

static gboolean concat_run(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, const CnnfxTensor *y,
                           CnnfxTensor *const *gin, const gboolean *need, GError **error)
{
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  int64_t outer, inner;
  int axis;
  if (!concat_geom(n, y, &outer, &inner, &axis)) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "Concat: axis out of range");
    return FALSE;
  }
  const size_t orow = (size_t)(y->dims[axis] * inner) * sizeof(float);
  size_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) continue;
    const size_t row = (size_t)(in[i]->dims[axis] * inner) * sizeof(float);
    if (row && outer) {
      cudaError_t e = gin ? (need[i] && gin[i] ? cudaMemcpy2DAsync(gin[i]->data, row, (const char *)y->data + off,
                                                                    orow, row, (size_t)outer, cudaMemcpyDeviceToDevice,
                                                                    cu->stream)
                                               : cudaSuccess)
                          : cudaMemcpy2DAsync((char *)y->data + off, orow, in[i]->data, row, row, (size_t)outer,
                                              cudaMemcpyDeviceToDevice, cu->stream);
      if (!cuda_ok(e, "Concat", error)) return FALSE;
    }
    off += row;
  }
  return TRUE;
}

static gboolean concat_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  return concat_run(x, n, in, out[0], NULL, NULL, error);
}

static gboolean concat_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                           GError **error)
{
  (void)aux;
  (void)out;
  if (!gout[0]) return TRUE;
  /* gin[i] is zero-filled and not shared: the slice is written, not added */
  return concat_run(x, n, in, gout[0], gin, need, error);
}

/* ---- Gemm, MatMul ----------------------------------------------------------------------------- */

static gboolean gemm_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         void *aux, GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  const gboolean ta = cnnfx_attr_int(n, "transA", 0) != 0, tb = cnnfx_attr_int(n, "transB", 0) != 0;
  const float alpha = cnnfx_attr_float(n, "alpha", 1.f), beta = cnnfx_attr_float(n, "beta", 1.f);
  const int64_t M = out[0]->dims[0], N = out[0]->dims[1], K = ta ? in[0]->dims[0] : in[0]->dims[1];
  const CnnfxTensor *C = n->n_in > 2 ? in[2] : NULL;
  float b1 = 0.f;
  if (C && beta != 0.f) {
    CuBcast bc;
    bcast_make(&bc, out[0], C, NULL);
    if (!cuda_ok(cnnfx_cu_binary_fwd(CU_BCAST, &bc, beta, C->data, NULL, out[0]->data, out[0]->numel, cu->stream),
                 "Gemm (C)", error))
      return FALSE;
    b1 = 1.f;
  }
  return rm_sgemm(cu, x, ta, tb, M, N, K, alpha, in[0]->data, ta ? M : K, in[1]->data, tb ? K : N, b1, out[0]->data,
                  N, error);
}

static gboolean gemm_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                         GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0]) return TRUE;
  const gboolean ta = cnnfx_attr_int(n, "transA", 0) != 0, tb = cnnfx_attr_int(n, "transB", 0) != 0;
  const float alpha = cnnfx_attr_float(n, "alpha", 1.f), beta = cnnfx_attr_float(n, "beta", 1.f);
  const int64_t M = out[0]->dims[0], N = out[0]->dims[1], K = ta ? in[0]->dims[0] : in[0]->dims[1];
  const float *g = gout[0]->data, *A = in[0]->data, *B = in[1]->data;
  if (need[0] && gin[0]) { /* dA' = alpha gY B'^T */
    float *gA = gin[0]->data;
    gboolean ok = !ta ? rm_sgemm(cu, x, FALSE, !tb, M, K, N, alpha, g, N, B, tb ? K : N, 1.f, gA, K, error)
                      : rm_sgemm(cu, x, tb, TRUE, K, M, N, alpha, B, tb ? K : N, g, N, 1.f, gA, M, error);
    if (!ok) return FALSE;
  }
  if (need[1] && gin[1]) { /* dB' = alpha A'^T gY */
    float *gB = gin[1]->data;
    gboolean ok = !tb ? rm_sgemm(cu, x, !ta, FALSE, K, N, M, alpha, A, ta ? M : K, g, N, 1.f, gB, N, error)
                      : rm_sgemm(cu, x, TRUE, ta, N, K, M, alpha, g, N, A, ta ? M : K, 1.f, gB, K, error);
    if (!ok) return FALSE;
  }
  if (n->n_in > 2 && in[2] && need[2] && gin[2]) {
    CuBcast bc;
    bcast_make(&bc, out[0], in[2], NULL);
    if (!cuda_ok(cnnfx_cu_binary_bwd(CU_ADD, &bc, beta, 0, g, NULL, gin[2]->data, out[0]->numel, cu->stream),
                 "Gemm (dC)", error))
      return FALSE;
  }
  return TRUE;
}

/* MatMul A[..., M, K] x B[K, N] (leading dims of A folded into M) */
static gboolean matmul_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           void *aux, GError **error)
{
  (void)aux;
  (void)n;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  const int64_t K = in[1]->dims[0], N = in[1]->dims[1], M = K ? (int64_t)(in[0]->numel / (size_t)K) : 0;
  if (K == 0) return cuda_ok(cudaMemsetAsync(out[0]->data, 0, out[0]->numel * sizeof(float), cu->stream), "MatMul", error);
  return rm_sgemm(cu, x, FALSE, FALSE, M, N, K, 1.f, in[0]->data, K, in[1]->data, N, 0.f, out[0]->data, N, error);
}

static gboolean matmul_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                           CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                           GError **error)
{
  (void)aux;
  (void)n;
  (void)out;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  const int64_t K = in[1]->dims[0], N = in[1]->dims[1], M = K ? (int64_t)(in[0]->numel / (size_t)K) : 0;
  if (!gout[0] || K == 0) return TRUE;
  if (need[0] && gin[0] &&
      !rm_sgemm(cu, x, FALSE, TRUE, M, K, N, 1.f, gout[0]->data, N, in[1]->data, N, 1.f, gin[0]->data, K, error))
    return FALSE;
  if (need[1] && gin[1] &&
      !rm_sgemm(cu, x, TRUE, FALSE, K, N, M, 1.f, in[0]->data, K, gout[0]->data, N, 1.f, gin[1]->data, N, error))
    return FALSE;
  return TRUE;
}

/* ---- pooling ---------------------------------------------------------------------------------- */

static gboolean pool_make(const CnnfxNode *n, const CnnfxTensor *X, CuPool *p, GError **error)
{
  CnnfxPoolGeom g;
  if (!cnnfx_pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  memset(p, 0, sizeof *p);
  p->planes = g.planes;
  for (int j = 0; j < 3; j++) {
    p->I[j] = g.I[j];
    p->O[j] = g.O[j];
    p->k[j] = g.k[j];
    p->s[j] = g.s[j];
    p->d[j] = g.d[j];
    p->pb[j] = g.pb[j];
    p->pe[j] = g.pe[j];
  }
  p->wide = cnnfx_maxpool_aux_wide(&g);
  p->include_pad = cnnfx_attr_int(n, "count_include_pad", 0) != 0;
  return TRUE;
}

static gboolean pool_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         void *aux, GError **error)
{
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  CuPool p;
  if (!pool_make(n, in[0], &p, error)) return FALSE;
  cudaError_t e = !strcmp(n->op_type, "MaxPool") ? cnnfx_cu_maxpool_fwd(&p, in[0]->data, out[0]->data, aux, cu->stream)
                                                 : cnnfx_cu_avgpool_fwd(&p, in[0]->data, out[0]->data, cu->stream);
  return cuda_ok(e, n->op_type, error);
}

static gboolean pool_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                         GError **error)
{
  (void)out;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0] || !need[0]) return TRUE;
  CuPool p;
  if (!pool_make(n, in[0], &p, error)) return FALSE;
  if (!strcmp(n->op_type, "MaxPool")) {
    if (!aux) {
      if (!out[0]->numel) return TRUE;
      cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "MaxPool backward without its forward's argmax");
      return FALSE;
    }
    return cuda_ok(cnnfx_cu_maxpool_bwd(&p, gout[0]->data, aux, gin[0]->data, cu->stream), n->op_type, error);
  }
  return cuda_ok(cnnfx_cu_avgpool_bwd(&p, gout[0]->data, gin[0]->data, cu->stream), n->op_type, error);
}

static void gap_dims(const CnnfxTensor *X, int64_t *planes, int64_t *S)
{
  *planes = X->dims[0] * X->dims[1];
  *S = 1;
  for (int j = 2; j < X->ndim; j++) *S *= X->dims[j];
}

static gboolean gap_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                        void *aux, GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  int64_t planes, S;
  gap_dims(in[0], &planes, &S);
  return cuda_ok(cnnfx_cu_gap_fwd(in[0]->data, out[0]->data, planes, S, cu->stream), n->op_type, error);
}

static gboolean gap_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                        CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                        GError **error)
{
  (void)aux;
  (void)out;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0] || !need[0]) return TRUE;
  int64_t planes, S;
  gap_dims(in[0], &planes, &S);
  return cuda_ok(cnnfx_cu_gap_bwd(gout[0]->data, gin[0]->data, planes, S, cu->stream), n->op_type, error);
}

/* ---- Conv (cuDNN) ----------------------------------------------------------------------------- */

typedef struct {
  cudnnTensorDescriptor_t x, y, b;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
  char key[256];
} ConvDesc;

static void conv_desc_free(ConvDesc *d)
{
  if (d->x) cudnnDestroyTensorDescriptor(d->x);
  if (d->y) cudnnDestroyTensorDescriptor(d->y);
  if (d->b) cudnnDestroyTensorDescriptor(d->b);
  if (d->w) cudnnDestroyFilterDescriptor(d->w);
  if (d->c) cudnnDestroyConvolutionDescriptor(d->c);
}

/* cuDNN runs the node: 2-D, symmetric padding (or an end pad the output never reaches), int sizes. */
static gboolean conv_geo_ok(const CnnfxConvGeo *g)
{
  if (g->nsp != 2) return FALSE;
  for (int j = 1; j < 3; j++) {
    int64_t dk = (g->k[j] - 1) * g->d[j] + 1;
    if (g->is[j] + 2 * g->p[j] < dk || (g->is[j] + 2 * g->p[j] - dk) / g->s[j] + 1 != g->os[j]) return FALSE;
    if (g->p[j] > INT_MAX || g->s[j] > INT_MAX || g->d[j] > INT_MAX || g->is[j] > INT_MAX) return FALSE;
  }
  return g->N <= INT_MAX && g->G * g->Ci <= INT_MAX && g->G * g->Co <= INT_MAX && g->G <= INT_MAX;
}

static gboolean conv_desc_make(const CnnfxNode *n, CnnfxTensor *const *in, gboolean exact, ConvDesc *d,
                               GError **error)
{
  memset(d, 0, sizeof *d);
  CnnfxConvGeo g;
  int64_t yd[CNNFX_MAX_DIMS];
  if (!cnnfx_conv_geometry(n, in[0], in[1], n->n_in > 2 ? in[2] : NULL, FALSE, &g, yd, error)) return FALSE;
  if (!conv_geo_ok(&g)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "cuda: this Conv geometry is not supported by cuDNN");
    return FALSE;
  }
  const int N = (int)g.N, C = (int)(g.G * g.Ci), K = (int)(g.G * g.Co);
  const int H = (int)g.is[1], W = (int)g.is[2], OH = (int)g.os[1], OW = (int)g.os[2];
  const int kh = (int)g.k[1], kw = (int)g.k[2];
  gboolean ok =
    dnn_ok(cudnnCreateTensorDescriptor(&d->x), "descriptor", error) &&
    dnn_ok(cudnnCreateTensorDescriptor(&d->y), "descriptor", error) &&
    dnn_ok(cudnnCreateTensorDescriptor(&d->b), "descriptor", error) &&
    dnn_ok(cudnnCreateFilterDescriptor(&d->w), "descriptor", error) &&
    dnn_ok(cudnnCreateConvolutionDescriptor(&d->c), "descriptor", error) &&
    dnn_ok(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, C, H, W), "x descriptor", error) &&
    dnn_ok(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, N, K, OH, OW), "y descriptor", error) &&
    dnn_ok(cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, K, 1, 1), "b descriptor", error) &&
    dnn_ok(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, K, (int)g.Ci, kh, kw), "w descriptor",
           error) &&
    dnn_ok(cudnnSetConvolution2dDescriptor(d->c, (int)g.p[1], (int)g.p[2], (int)g.s[1], (int)g.s[2], (int)g.d[1],
                                           (int)g.d[2], CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
           "conv descriptor", error) &&
    dnn_ok(cudnnSetConvolutionGroupCount(d->c, (int)g.G), "group count", error) &&
    dnn_ok(cudnnSetConvolutionMathType(d->c, exact ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH), "math type", error);
  if (!ok) {
    conv_desc_free(d);
    return FALSE;
  }
  g_snprintf(d->key, sizeof d->key, "%d %d %d %d %d %d %d %d %d %d %lld %lld %lld %lld %lld %lld %lld %d", N, C, H,
             W, K, OH, OW, kh, kw, (int)g.Ci, (long long)g.p[1], (long long)g.p[2], (long long)g.s[1],
             (long long)g.s[2], (long long)g.d[1], (long long)g.d[2], (long long)g.G, exact);
  return TRUE;
}

static gboolean ws_ensure(Cu *cu, size_t bytes, GError **error)
{
  if (bytes <= cu->ws_bytes) return TRUE;
  if (cu->ws) { /* queued users of the old one finish first */
    cudaStreamSynchronize(cu->stream);
    cudaFree(cu->ws);
  }
  cu->ws = NULL;
  cu->ws_bytes = 0;
  cudaError_t e = cudaMalloc(&cu->ws, bytes);
  if (e == cudaErrorMemoryAllocation && cu->cached) {
    cudaGetLastError();
    cache_drop(cu);
    e = cudaMalloc(&cu->ws, bytes);
  }
  if (!cuda_ok(e, "workspace", error)) return FALSE;
  cu->ws_bytes = bytes;
  return TRUE;
}

enum { FIND_FWD, FIND_BWD_DATA, FIND_BWD_FILTER };

/* The fastest algorithm for this shape and direction, measured by cuDNN once and cached. */
static gboolean conv_algo(Cu *cu, ConvDesc *d, int dir, AlgoRec *out, GError **error)
{
  g_autofree char *key = g_strdup_printf("%d %s", dir, d->key);
  AlgoRec *r = g_hash_table_lookup(cu->algos, key);
  if (r) {
    *out = *r;
    return TRUE;
  }
  int got = 0, best = -1;
  cudnnStatus_t st;
  AlgoRec rec = {0};
  /* the fastest whose workspace fits in half the free memory (or the cached blocks it could take) */
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    free_b = (size_t)1 << 30;
  }
  const size_t lim = (free_b + cu->cached + cu->ws_bytes) / 2;
#define OK_ALGO(p) ((p).status == CUDNN_STATUS_SUCCESS && (p).memory <= lim)
  if (dir == FIND_FWD) {
    cudnnConvolutionFwdAlgoPerf_t p[N_FIND];
    st = cudnnFindConvolutionForwardAlgorithm(cu->dnn, d->x, d->w, d->c, d->y, N_FIND, &got, p);
    for (int i = 0; i < got && best < 0; i++)
      if (OK_ALGO(p[i])) best = i;
    if (best >= 0) rec = (AlgoRec){p[best].algo, p[best].mathType, p[best].memory};
  } else if (dir == FIND_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t p[N_FIND];
    st = cudnnFindConvolutionBackwardDataAlgorithm(cu->dnn, d->w, d->y, d->c, d->x, N_FIND, &got, p);
    for (int i = 0; i < got && best < 0; i++)
      if (OK_ALGO(p[i])) best = i;
    if (best >= 0) rec = (AlgoRec){p[best].algo, p[best].mathType, p[best].memory};
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t p[N_FIND];
    st = cudnnFindConvolutionBackwardFilterAlgorithm(cu->dnn, d->x, d->y, d->c, d->w, N_FIND, &got, p);
    for (int i = 0; i < got && best < 0; i++)
      if (OK_ALGO(p[i])) best = i;
    if (best >= 0) rec = (AlgoRec){p[best].algo, p[best].mathType, p[best].memory};
  }
#undef OK_ALGO
  if (!dnn_ok(st, "cudnnFind*Algorithm", error)) return FALSE;
  if (best < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "cudnn: no convolution algorithm runs this shape within %zu MiB of workspace (%s)",
                    lim >> 20, d->key);
    return FALSE;
  }
  g_hash_table_insert(cu->algos, g_steal_pointer(&key), g_memdup2(&rec, sizeof rec));
  *out = rec;
  return TRUE;
}

static gboolean conv_fwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         void *aux, GError **error)
{
  (void)aux;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (x->fuse_relu) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "cuda Conv: fused ReLU not implemented");
    return FALSE;
  }
  ConvDesc d;
  if (!conv_desc_make(n, in, x->exact, &d, error)) return FALSE;
  AlgoRec a;
  const float one = 1.f, zero = 0.f;
  gboolean ok = conv_algo(cu, &d, FIND_FWD, &a, error) && ws_ensure(cu, a.ws, error) &&
                dnn_ok(cudnnSetConvolutionMathType(d.c, a.math), "math type", error) &&
                dnn_ok(cudnnConvolutionForward(cu->dnn, &one, d.x, in[0]->data, d.w, in[1]->data, d.c,
                                               (cudnnConvolutionFwdAlgo_t)a.algo, cu->ws, a.ws, &zero, d.y,
                                               out[0]->data),
                       "cudnnConvolutionForward", error);
  if (ok && n->n_in > 2 && in[2])
    ok = dnn_ok(cudnnAddTensor(cu->dnn, &one, d.b, in[2]->data, &one, d.y, out[0]->data), "cudnnAddTensor (bias)",
                error);
  conv_desc_free(&d);
  return ok;
}

static gboolean conv_bwd(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                         CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                         GError **error)
{
  (void)aux;
  (void)out;
  Cu *cu = cu_of(x);
  if (!cu) return no_ctx(error);
  if (!gout[0]) return TRUE;
  ConvDesc d;
  if (!conv_desc_make(n, in, x->exact, &d, error)) return FALSE;
  const float one = 1.f, zero = 0.f;
  AlgoRec a;
  gboolean ok = TRUE;
  if (need[0] && gin[0])
    ok = conv_algo(cu, &d, FIND_BWD_DATA, &a, error) && ws_ensure(cu, a.ws, error) &&
         dnn_ok(cudnnSetConvolutionMathType(d.c, a.math), "math type", error) &&
         dnn_ok(cudnnConvolutionBackwardData(cu->dnn, &one, d.w, in[1]->data, d.y, gout[0]->data, d.c,
                                             (cudnnConvolutionBwdDataAlgo_t)a.algo, cu->ws, a.ws, &zero, d.x,
                                             gin[0]->data),
                "cudnnConvolutionBackwardData", error);
  if (ok && need[1] && gin[1])
    ok = conv_algo(cu, &d, FIND_BWD_FILTER, &a, error) && ws_ensure(cu, a.ws, error) &&
         dnn_ok(cudnnSetConvolutionMathType(d.c, a.math), "math type", error) &&
         dnn_ok(cudnnConvolutionBackwardFilter(cu->dnn, &one, d.x, in[0]->data, d.y, gout[0]->data, d.c,
                                               (cudnnConvolutionBwdFilterAlgo_t)a.algo, cu->ws, a.ws, &zero, d.w,
                                               gin[1]->data),
                "cudnnConvolutionBackwardFilter", error);
  if (ok && n->n_in > 2 && in[2] && need[2] && gin[2])
    ok = dnn_ok(cudnnConvolutionBackwardBias(cu->dnn, &one, d.y, gout[0]->data, &zero, d.b, gin[2]->data),
                "cudnnConvolutionBackwardBias", error);
  conv_desc_free(&d);
  return ok;
}

/* ---- the op table, supports() ---------------------------------------------------------------- */

#define K(nm, f, b) static const CnnfxKernel k_##f = {.name = nm, .forward = f##_fwd, .backward = b##_bwd};
K("Conv", conv, conv)
K("Gemm", gemm, gemm)
K("MatMul", matmul, matmul)
K("Relu", act, act)
K("Add", binary, binary)
K("MaxPool", pool, pool)
K("GlobalAveragePool", gap, gap)
K("Concat", concat, concat)
K("Identity", same, same)
static const CnnfxKernel k_leaky = {.name = "LeakyRelu", .forward = act_fwd, .backward = act_bwd};
static const CnnfxKernel k_sigmoid = {.name = "Sigmoid", .forward = act_fwd, .backward = act_bwd};
static const CnnfxKernel k_tanh = {.name = "Tanh", .forward = act_fwd, .backward = act_bwd};
static const CnnfxKernel k_sub = {.name = "Sub", .forward = binary_fwd, .backward = binary_bwd};
static const CnnfxKernel k_mul = {.name = "Mul", .forward = binary_fwd, .backward = binary_bwd};
static const CnnfxKernel k_avgpool = {.name = "AveragePool", .forward = pool_fwd, .backward = pool_bwd};
static const CnnfxKernel k_flatten = {.name = "Flatten", .forward = same_fwd, .backward = same_bwd};
static const CnnfxKernel k_dropout = {.name = "Dropout", .forward = same_fwd, .backward = same_bwd};

static const CnnfxKernel *const cuda_kernels[] = {
  &k_conv, &k_gemm, &k_matmul, &k_act, &k_leaky, &k_sigmoid, &k_tanh, &k_binary, &k_sub, &k_mul, &k_pool,
  &k_avgpool, &k_gap, &k_concat, &k_same, &k_flatten, &k_dropout, NULL,
};

static const CnnfxKernel *cu_kernel(const CnnfxBackend *b, const char *op_type)
{
  (void)b;
  for (const CnnfxKernel *const *k = cuda_kernels; *k; k++)
    if (!strcmp((*k)->name, op_type)) return *k;
  return NULL;
}

static gboolean cu_supports(const CnnfxBackend *b, const CnnfxNode *n, CnnfxTensor *const *in)
{
  if (!cu_kernel(b, n->op_type) || (n->domain && *n->domain)) return FALSE;
  for (int i = 0; i < n->n_in; i++)
    if (in[i] && in[i]->dtype != CNNFX_F32) return FALSE;
  if (n->n_in < 1 || !in[0]) return FALSE;
  const char *op = n->op_type;
  g_autoptr(GError) err = NULL;
  if (!strcmp(op, "Conv")) {
    CnnfxConvGeo g;
    int64_t yd[CNNFX_MAX_DIMS];
    return n->n_in >= 2 && in[1] && in[0]->ndim == 4 &&
           cnnfx_conv_geometry(n, in[0], in[1], n->n_in > 2 ? in[2] : NULL, FALSE, &g, yd, &err) && conv_geo_ok(&g);
  }
  if (!strcmp(op, "Gemm"))
    return n->n_in >= 2 && in[1] && in[0]->ndim == 2 && in[1]->ndim == 2 && (n->n_in < 3 || !in[2] || in[2]->ndim <= 2);
  if (!strcmp(op, "MatMul"))
    return n->n_in == 2 && in[1] && in[0]->ndim >= 2 && in[1]->ndim == 2 && in[0]->dims[in[0]->ndim - 1] == in[1]->dims[0];
  if (!strcmp(op, "LeakyRelu")) return cnnfx_attr_float(n, "alpha", 0.01f) >= 0.f;
  if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul"))
    return n->n_in == 2 && in[1] && in[0]->ndim <= CU_MAX_DIMS && in[1]->ndim <= CU_MAX_DIMS;
  if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
    CnnfxPoolGeom g;
    if (n->n_out > 1 || in[0]->ndim < 3 || !cnnfx_pool_geom(n, in[0]->ndim, in[0]->dims, &g, &err)) return FALSE;
    return !strcmp(op, "AveragePool") || cnnfx_attr_int(n, "storage_order", 0) == 0;
  }
  if (!strcmp(op, "GlobalAveragePool")) return in[0]->ndim >= 3 && in[0]->dims[0] * in[0]->dims[1] <= INT_MAX;
  if (!strcmp(op, "Dropout")) return n->n_out == 1 && (n->n_in < 3 || !in[2]);
  if (!strcmp(op, "Concat")) {
    int axis;
    return cnnfx_norm_axis(cnnfx_attr_int(n, "axis", 0), in[0]->ndim, &axis);
  }
  return n->n_out == 1; /* Relu Sigmoid Tanh Flatten Identity */
}

/* ---- the backend ------------------------------------------------------------------------------ */

static char *cu_describe(const CnnfxBackend *b)
{
  Cu *cu = b->priv;
  return g_strdup_printf("%s%s", cu->desc, b->exact ? ", exact (no TF32)" : ", TF32 allowed");
}

static void cu_destroy(CnnfxBackend *b)
{
  Cu *cu = b->priv;
  if (!cu) return;
  cudaSetDevice(cu->device);
  if (cu->stream) cudaStreamSynchronize(cu->stream);
  if (cu->cache) {
    cache_drop(cu);
    g_array_free(cu->cache, TRUE);
  }
  if (cu->ws) cudaFree(cu->ws);
  if (cu->algos) g_hash_table_destroy(cu->algos);
  if (cu->dnn) cudnnDestroy(cu->dnn);
  if (cu->blas) cublasDestroy(cu->blas);
  if (cu->stream) cudaStreamDestroy(cu->stream);
  g_free(cu->desc);
  g_free(cu);
  b->priv = NULL;
}

static void cu_enter(CnnfxBackend *b)
{
  Cu *cu = b->priv;
  cudaSetDevice(cu->device); /* kernels of one backend run on its device whatever the thread */
}

static const CnnfxBackendIface cuda_iface = {
  .name = "cuda",
  .is_host = FALSE,
  .buf_alloc = cu_buf_alloc,
  .buf_free = cu_buf_free,
  .upload = cu_upload,
  .download = cu_download,
  .copy = cu_copy,
  .fill_zero = cu_fill_zero,
  .accumulate = cu_accumulate,
  .supports = cu_supports,
  .kernel = cu_kernel,
  .enter = cu_enter,
  .synchronize = cu_sync,
  .describe = cu_describe,
  .destroy = cu_destroy,
};

/* The module's entry (looked up by core/backend.c).  Fails with CNNFX_ERROR_BACKEND when there is
 * no driver, no such device, or a library cannot start. */
G_MODULE_EXPORT CnnfxBackend *cnnfx_cuda_backend_new(int device, GError **error);

CnnfxBackend *cnnfx_cuda_backend_new(int device, GError **error)
{
  int count = 0, drv = 0, rt = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "no CUDA device (%s)",
                    e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    return NULL;
  }
  if (device < 0 || device >= count) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "no CUDA device cuda:%d (this machine has %d)", device, count);
    return NULL;
  }
  struct cudaDeviceProp prop;
  if (!cuda_ok(cudaSetDevice(device), "cudaSetDevice", error) ||
      !cuda_ok(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties", error))
    return NULL;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  Cu *cu = g_new0(Cu, 1);
  CnnfxBackend *b = g_new0(CnnfxBackend, 1);
  b->iface = &cuda_iface;
  b->priv = cu;
  b->device = device;
  cu->device = device;
  cu->cache = g_array_new(FALSE, FALSE, sizeof(FreeBlock));
  cu->algos = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  int blas_ver = 0;
  gboolean ok = cuda_ok(cudaStreamCreateWithFlags(&cu->stream, cudaStreamNonBlocking), "cudaStreamCreate", error) &&
                blas_ok(cublasCreate(&cu->blas), "cublasCreate", error) &&
                blas_ok(cublasSetStream(cu->blas, cu->stream), "cublasSetStream", error) &&
                blas_ok(cublasGetVersion(cu->blas, &blas_ver), "cublasGetVersion", error) &&
                dnn_ok(cudnnCreate(&cu->dnn), "cudnnCreate", error) &&
                dnn_ok(cudnnSetStream(cu->dnn, cu->stream), "cudnnSetStream", error);
  if (!ok) {
    cu_destroy(b);
    g_free(b);
    return NULL;
  }
  size_t dnn = cudnnGetVersion();
  cu->desc = g_strdup_printf("cuda:%d: %s (sm_%d%d, %.1f GiB), CUDA runtime %d.%d, driver %d.%d, cuDNN %zu.%zu.%zu "
                             "(built with %d.%d.%d), cuBLAS %d.%d.%d",
                             device, prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30),
                             rt / 1000, rt % 1000 / 10, drv / 1000, drv % 1000 / 10, dnn / 10000, dnn % 10000 / 100,
                             dnn % 100, CUDNN_MAJOR, CUDNN_MINOR, CUDNN_PATCHLEVEL, blas_ver / 10000,
                             blas_ver % 10000 / 100, blas_ver % 100);
  if (dnn / 10000 != 9) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "cuDNN 9 needed, found %zu (%s)", dnn, cu->desc);
    cu_destroy(b);
    g_free(b);
    return NULL;
  }
  return b;
}
