/* CUDA kernels of the cnnfx CUDA backend: activations, broadcasting elementwise ops, pooling,
 * gradient accumulation.  Forward and backward of one op side by side.  Grid-stride loops over
 * 64-bit indices; backward kernels that scatter (broadcast reduction, pooling) use atomicAdd. */
#include "kernels.h"

#define GS_LOOP(i, n) for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
                           i += (size_t)blockDim.x * gridDim.x)

static unsigned grid_for(size_t n)
{
  size_t b = (n + 255) / 256;
  return (unsigned)(b < 1 ? 1 : b > 65535u * 8 ? 65535u * 8 : b);
}

#define LAUNCH(kern, n, st, ...)                                      \
  do {                                                                \
    if ((n) > 0) kern<<<grid_for(n), 256, 0, (st)>>>(__VA_ARGS__);    \
    return cudaGetLastError();                                        \
  } while (0)

/* ---- accumulate ------------------------------------------------------------------------------- */

__global__ void k_accumulate(float *dst, const float *src, size_t n)
{
  GS_LOOP(i, n) dst[i] += src[i];
}

extern "C" cudaError_t cnnfx_cu_accumulate(float *dst, const float *src, size_t n, cudaStream_t st)
{
  LAUNCH(k_accumulate, n, st, dst, src, n);
}

/* ---- activations ------------------------------------------------------------------------------ */

__global__ void k_act_fwd(int kind, float alpha, const float *x, float *y, size_t n)
{
  GS_LOOP(i, n) {
    float v = x[i];
    switch (kind) {
    case CU_RELU: y[i] = v > 0.f ? v : 0.f; break;
    case CU_LEAKY: y[i] = v > 0.f ? v : alpha * v; break;
    case CU_SIGMOID: y[i] = 1.f / (1.f + expf(-v)); break;
    default: y[i] = tanhf(v); break;
    }
  }
}

__global__ void k_act_bwd(int kind, float alpha, const float *y, const float *g, float *gin, size_t n)
{
  GS_LOOP(i, n) {
    float v = y[i], d;
    switch (kind) {
    case CU_RELU: d = v > 0.f ? g[i] : 0.f; break;
    case CU_LEAKY: d = v > 0.f ? g[i] : alpha * g[i]; break;
    case CU_SIGMOID: d = g[i] * v * (1.f - v); break;
    default: d = g[i] * (1.f - v * v); break;
    }
    gin[i] += d;
  }
}

extern "C" cudaError_t cnnfx_cu_act_fwd(int kind, float alpha, const float *x, float *y, size_t n, cudaStream_t st)
{
  LAUNCH(k_act_fwd, n, st, kind, alpha, x, y, n);
}

extern "C" cudaError_t cnnfx_cu_act_bwd(int kind, float alpha, const float *y, const float *g, float *gin, size_t n,
                                        cudaStream_t st)
{
  LAUNCH(k_act_bwd, n, st, kind, alpha, y, g, gin, n);
}

/* ---- broadcasting binary ops ------------------------------------------------------------------ */

__device__ static void bc_index(const CuBcast &bc, size_t i, size_t *ia, size_t *ib)
{
  size_t a = 0, b = 0, r = i;
  for (int j = bc.nd - 1; j >= 0; j--) {
    size_t c = r % (size_t)bc.out[j];
    r /= (size_t)bc.out[j];
    a += c * (size_t)bc.sa[j];
    b += c * (size_t)bc.sb[j];
  }
  *ia = bc.plain_a ? i : a;
  *ib = bc.plain_b ? i : b;
}

__global__ void k_binary_fwd(int op, CuBcast bc, float scale, const float *a, const float *b, float *y, size_t n)
{
  GS_LOOP(i, n) {
    size_t ia, ib;
    bc_index(bc, i, &ia, &ib);
    float va = a[ia];
    switch (op) {
    case CU_ADD: y[i] = va + b[ib]; break;
    case CU_SUB: y[i] = va - b[ib]; break;
    case CU_MUL: y[i] = va * b[ib]; break;
    default: y[i] = scale * va; break;
    }
  }
}

__global__ void k_binary_bwd(int op, CuBcast bc, float scale, int which, const float *g, const float *other,
                             float *gin, size_t n)
{
  const int plain = which ? bc.plain_b : bc.plain_a;
  GS_LOOP(i, n) {
    size_t ia, ib;
    bc_index(bc, i, &ia, &ib);
    float v = scale * g[i];
    if (op == CU_MUL) v *= other[which ? ia : ib];
    else if (op == CU_SUB && which) v = -v;
    if (plain) gin[i] += v;
    else atomicAdd(gin + (which ? ib : ia), v);
  }
}

extern "C" cudaError_t cnnfx_cu_binary_fwd(int op, const CuBcast *bc, float scale, const float *a, const float *b,
                                           float *y, size_t n, cudaStream_t st)
{
  LAUNCH(k_binary_fwd, n, st, op, *bc, scale, a, b, y, n);
}

extern "C" cudaError_t cnnfx_cu_binary_bwd(int op, const CuBcast *bc, float scale, int which, const float *g,
                                           const float *other, float *gin, size_t n, cudaStream_t st)
{
  LAUNCH(k_binary_bwd, n, st, op, *bc, scale, which, g, other, gin, n);
}

/* ---- pooling ---------------------------------------------------------------------------------- */

/* Output element i -> plane, output coordinates and window start. */
__device__ static void pool_pos(const CuPool &p, size_t i, size_t *plane, int64_t st[3])
{
  size_t r = i;
  int64_t o[3];
  for (int j = 2; j >= 0; j--) {
    o[j] = (int64_t)(r % (size_t)p.O[j]);
    r /= (size_t)p.O[j];
  }
  *plane = r;
  for (int j = 0; j < 3; j++) st[j] = o[j] * p.s[j] - p.pb[j];
}

/* Valid taps [j0, j1) of dim j for a window starting at s. */
__device__ static void pool_taps(const CuPool &p, int j, int64_t s, int64_t *j0, int64_t *j1)
{
  int64_t d = p.d[j], a = s >= 0 ? 0 : (-s + d - 1) / d, b = p.I[j] - s <= 0 ? 0 : (p.I[j] - s + d - 1) / d;
  if (b > p.k[j]) b = p.k[j];
  if (a > b) a = b;
  *j0 = a;
  *j1 = b;
}

/* MaxPool: the first maximum in scan order (D, H, W); its tap goes to aux (the CPU kernel's layout,
 * core/ops/pool.h); an empty window gives 0 and the empty tap. */
__global__ void k_maxpool_fwd(CuPool p, const float *x, float *y, void *aux, size_t n)
{
  const size_t in_plane = (size_t)(p.I[0] * p.I[1] * p.I[2]);
  GS_LOOP(i, n) {
    size_t plane;
    int64_t s[3], a[3], b[3];
    pool_pos(p, i, &plane, s);
    for (int j = 0; j < 3; j++) pool_taps(p, j, s[j], &a[j], &b[j]);
    const float *xp = x + plane * in_plane;
    int32_t best = -1;
    float m = 0.f;
    for (int64_t jd = a[0]; jd < b[0]; jd++)
      for (int64_t jh = a[1]; jh < b[1]; jh++) {
        const float *row = xp + ((s[0] + jd * p.d[0]) * p.I[1] + s[1] + jh * p.d[1]) * p.I[2] + s[2];
        for (int64_t jw = a[2]; jw < b[2]; jw++) {
          float v = row[jw * p.d[2]];
          if (best < 0 || v > m) {
            m = v;
            best = (int32_t)((jd * p.k[1] + jh) * p.k[2] + jw);
          }
        }
      }
    y[i] = best >= 0 ? m : 0.f;
    if (aux) {
      if (p.wide) ((int32_t *)aux)[i] = best;
      else ((uint8_t *)aux)[i] = (uint8_t)(best & 0xff);
    }
  }
}

__global__ void k_maxpool_bwd(CuPool p, const float *g, const void *aux, float *gin, size_t n)
{
  const size_t in_plane = (size_t)(p.I[0] * p.I[1] * p.I[2]);
  GS_LOOP(i, n) {
    int64_t t = p.wide ? (int64_t)((const int32_t *)aux)[i] : (int64_t)((const uint8_t *)aux)[i];
    if (t < 0 || (!p.wide && t == 255)) continue;
    size_t plane;
    int64_t s[3];
    pool_pos(p, i, &plane, s);
    int64_t jw = t % p.k[2], jh = t / p.k[2] % p.k[1], jd = t / (p.k[1] * p.k[2]);
    int64_t off = ((s[0] + jd * p.d[0]) * p.I[1] + s[1] + jh * p.d[1]) * p.I[2] + s[2] + jw * p.d[2];
    atomicAdd(gin + plane * in_plane + off, g[i]);
  }
}

/* AveragePool: 1 / count per dim (count_include_pad: taps before the end of the padded range). */
__device__ static float avg_inv(const CuPool &p, const int64_t s[3], const int64_t a[3], const int64_t b[3])
{
  float inv = 1.f;
  for (int j = 0; j < 3; j++) {
    int64_t cnt;
    if (p.include_pad) {
      int64_t e = p.I[j] + p.pe[j] - s[j], jp = e <= 0 ? 0 : (e + p.d[j] - 1) / p.d[j];
      cnt = jp > p.k[j] ? p.k[j] : jp;
    } else {
      cnt = b[j] - a[j];
    }
    inv *= cnt > 0 ? 1.f / (float)cnt : 0.f;
  }
  return inv;
}

__global__ void k_avgpool(CuPool p, const float *x, float *y, const float *g, float *gin, size_t n)
{
  const size_t in_plane = (size_t)(p.I[0] * p.I[1] * p.I[2]);
  GS_LOOP(i, n) {
    size_t plane;
    int64_t s[3], a[3], b[3];
    pool_pos(p, i, &plane, s);
    for (int j = 0; j < 3; j++) pool_taps(p, j, s[j], &a[j], &b[j]);
    const float inv = avg_inv(p, s, a, b);
    float acc = 0.f, gv = g ? g[i] * inv : 0.f;
    for (int64_t jd = a[0]; jd < b[0]; jd++)
      for (int64_t jh = a[1]; jh < b[1]; jh++) {
        size_t row = plane * in_plane + (size_t)(((s[0] + jd * p.d[0]) * p.I[1] + s[1] + jh * p.d[1]) * p.I[2] + s[2]);
        for (int64_t jw = a[2]; jw < b[2]; jw++) {
          if (g) atomicAdd(gin + row + jw * p.d[2], gv);
          else acc += x[row + jw * p.d[2]];
        }
      }
    if (!g) y[i] = acc * inv;
  }
}

static size_t pool_out(const CuPool *p)
{
  return (size_t)(p->planes * p->O[0] * p->O[1] * p->O[2]);
}

extern "C" cudaError_t cnnfx_cu_maxpool_fwd(const CuPool *p, const float *x, float *y, void *aux, cudaStream_t st)
{
  LAUNCH(k_maxpool_fwd, pool_out(p), st, *p, x, y, aux, pool_out(p));
}

extern "C" cudaError_t cnnfx_cu_maxpool_bwd(const CuPool *p, const float *g, const void *aux, float *gin,
                                            cudaStream_t st)
{
  LAUNCH(k_maxpool_bwd, pool_out(p), st, *p, g, aux, gin, pool_out(p));
}

extern "C" cudaError_t cnnfx_cu_avgpool_fwd(const CuPool *p, const float *x, float *y, cudaStream_t st)
{
  LAUNCH(k_avgpool, pool_out(p), st, *p, x, y, (const float *)0, (float *)0, pool_out(p));
}

extern "C" cudaError_t cnnfx_cu_avgpool_bwd(const CuPool *p, const float *g, float *gin, cudaStream_t st)
{
  LAUNCH(k_avgpool, pool_out(p), st, *p, (const float *)0, (float *)0, g, gin, pool_out(p));
}

/* GlobalAveragePool: one block per plane, tree reduction in shared memory. */
__global__ void k_gap_fwd(const float *x, float *y, int64_t S)
{
  __shared__ float red[256];
  const float *xp = x + (size_t)blockIdx.x * (size_t)S;
  float acc = 0.f;
  for (int64_t j = threadIdx.x; j < S; j += blockDim.x) acc += xp[j];
  red[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) y[blockIdx.x] = red[0] / (float)S;
}

__global__ void k_gap_bwd(const float *g, float *gin, int64_t S, size_t n)
{
  GS_LOOP(i, n) gin[i] += g[i / (size_t)S] / (float)S;
}

extern "C" cudaError_t cnnfx_cu_gap_fwd(const float *x, float *y, int64_t planes, int64_t S, cudaStream_t st)
{
  /* planes <= INT_MAX is checked by the caller (supports) */
  if (planes > 0 && S > 0) k_gap_fwd<<<(unsigned)planes, 256, 0, st>>>(x, y, S);
  return cudaGetLastError();
}

extern "C" cudaError_t cnnfx_cu_gap_bwd(const float *g, float *gin, int64_t planes, int64_t S, cudaStream_t st)
{
  size_t n = (size_t)planes * (size_t)S;
  LAUNCH(k_gap_bwd, n, st, g, gin, S, n);
}
