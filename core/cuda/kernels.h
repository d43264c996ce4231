/* CUDA kernels of the cnnfx CUDA backend (kernels.cu), callable from C (backend.c).
 * Plain C types only: no GLib here, so nvcc never sees the core headers.
 * Every launcher queues work on `st` and returns cudaGetLastError(). */
#ifndef CNNFX_CUDA_KERNELS_H
#define CNNFX_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>
#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CU_MAX_DIMS 8

/* activations (forward y = f(x); backward gin += g * f'(y), all read the output) */
enum { CU_RELU, CU_LEAKY, CU_SIGMOID, CU_TANH };
/* binary ops with numpy broadcasting; CU_BCAST: y = scale * a broadcast (b unused) */
enum { CU_ADD, CU_SUB, CU_MUL, CU_BCAST };

typedef struct {
  int nd;                       /* rank of the output */
  int64_t out[CU_MAX_DIMS];     /* output dims */
  int64_t sa[CU_MAX_DIMS];      /* strides of a (0: broadcast) */
  int64_t sb[CU_MAX_DIMS];      /* strides of b (0: broadcast) */
  int plain_a, plain_b;         /* a (b) has the output's shape */
} CuBcast;

/* Pooling geometry (a copy of CnnfxPoolGeom, core/ops/pool.h), 3 spatial dims with leading 1s. */
typedef struct {
  int64_t planes;
  int64_t I[3], O[3], k[3], s[3], d[3], pb[3], pe[3];
  int include_pad;  /* AveragePool count_include_pad */
  int wide;         /* MaxPool aux: int32 taps (else uint8, 255 = empty window) */
} CuPool;

cudaError_t cnnfx_cu_accumulate(float *dst, const float *src, size_t n, cudaStream_t st);
cudaError_t cnnfx_cu_act_fwd(int kind, float alpha, const float *x, float *y, size_t n, cudaStream_t st);
cudaError_t cnnfx_cu_act_bwd(int kind, float alpha, const float *y, const float *g, float *gin, size_t n,
                             cudaStream_t st);
cudaError_t cnnfx_cu_binary_fwd(int op, const CuBcast *bc, float scale, const float *a, const float *b, float *y,
                                size_t n, cudaStream_t st);
/* Gradient at input `which` (0 = a, 1 = b): gin[idx(which)] += scale * g * (MUL ? other : SUB&&which ? -1 : 1);
 * n = numel of the output. */
cudaError_t cnnfx_cu_binary_bwd(int op, const CuBcast *bc, float scale, int which, const float *g,
                                const float *other, float *gin, size_t n, cudaStream_t st);
cudaError_t cnnfx_cu_maxpool_fwd(const CuPool *p, const float *x, float *y, void *aux, cudaStream_t st);
cudaError_t cnnfx_cu_maxpool_bwd(const CuPool *p, const float *g, const void *aux, float *gin, cudaStream_t st);
cudaError_t cnnfx_cu_avgpool_fwd(const CuPool *p, const float *x, float *y, cudaStream_t st);
cudaError_t cnnfx_cu_avgpool_bwd(const CuPool *p, const float *g, float *gin, cudaStream_t st);
cudaError_t cnnfx_cu_gap_fwd(const float *x, float *y, int64_t planes, int64_t S, cudaStream_t st);
cudaError_t cnnfx_cu_gap_bwd(const float *g, float *gin, int64_t planes, int64_t S, cudaStream_t st);

#ifdef __cplusplus
}
#endif
#endif
