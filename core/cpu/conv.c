/* CPU kernels: Conv and ConvTranspose, forward and backward (X, W and B gradients), writing into
 * tensors the session has allocated.  The geometry and definitions are in core/ops/conv.[ch].
 *
 * Both operators are described by one "geometry": a convolution that maps an *image*
 * tensor img[N, G*Ci, is...] to an *output* tensor out[N, G*Co, os...] with a weight
 * W[G*Co, Ci, k...]:
 *
 *   out[n, g*Co+o, p] = sum_{c, t} W[g*Co+o, c, t] * img[n, g*Ci+c, p*s - pad + t*d]
 *
 * Conv:          img = X, out = Y.   forward = fwd, dX = adj(dY), dW = wgrad(X, dY)
 * ConvTranspose: img = Y, out = X.   forward = adj(X), dX = fwd(dY), dW = wgrad(dY, X)
 *
 * (ONNX lays ConvTranspose weights out as [C, M/G, k...] = [G*Co, Ci, k...], so the
 * same W layout serves both.)  Three primitives implement the geometry:
 *
 *   fwd   out = W * im2col(img)            (+ bias)
 *   adj   img = col2im(W^T * out)
 *   wgrad dW  = sum_n out * im2col(img)^T
 *
 * Spatial ranks 1..3 are handled as 3-D (D, H, W) with the missing leading dims = 1.
 * Special paths: 1x1 stride-1 unpadded kernels are plain GEMMs; single-input-channel
 * groups (depthwise) use direct loops; 3x3 stride-1 layers may use Winograd (fwd, and adj
 * as a convolution with the flipped, transposed kernel).  im2col scratch is processed in
 * bands of output positions (a few MB, never more than SCRATCH_FLOATS).
 */
#include "ops/conv.h"
#include "cpu/convdirect.h"
#include <limits.h>

#define SCRATCH_FLOATS ((size_t)16 << 20) /* hard cap: 64 MB of column buffer per call */
#define BAND_FLOATS ((size_t)1 << 19)     /* preferred column band: 2 MB (cache-resident, no mmap churn) */
#define BAND_MIN_COLS 512                 /* ... but at least this many GEMM columns */
#define PAR_MIN 32768                     /* minimum work (elements) for an OpenMP region */
#define DW_MAX_KK 64                      /* direct depthwise loops for kernels up to 64 taps */

/* ---- row helpers ---------------------------------------------------------------- */

/* ow in [*lo, *hi) iff 0 <= ow*s + off < n_in (and ow < n_out). */
static inline void valid_range(int64_t n_out, int64_t n_in, int64_t s, int64_t off, int64_t *lo, int64_t *hi)
{
  int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
  int64_t h = n_in - off <= 0 ? 0 : (n_in - 1 - off) / s + 1;
  if (h > n_out) h = n_out;
  if (l > h) l = h;
  *lo = l;
  *hi = h;
}

/* dst[ow - a] = src[ow*s + off] for ow in [a, b), zero where ow is outside [lo, hi). */
static inline void gather_seg(float *restrict dst, const float *restrict src, int64_t a, int64_t b, int64_t s,
                              int64_t off, int64_t lo, int64_t hi)
{
  const int64_t l = CLAMP(lo, a, b), h = CLAMP(hi, l, b);
  for (int64_t o = a; o < l; o++) dst[o - a] = 0.f;
  if (s == 1) {
    if (h > l) memcpy(dst + (l - a), src + l + off, (size_t)(h - l) * sizeof(float));
  } else {
    for (int64_t o = l; o < h; o++) dst[o - a] = src[o * s + off];
  }
  for (int64_t o = h; o < b; o++) dst[o - a] = 0.f;
}

/* row[ow*s + off] += src[ow - a] for ow in [a, b) inside [lo, hi). */
static inline void scatter_seg(float *restrict row, const float *restrict src, int64_t a, int64_t b, int64_t s,
                               int64_t off, int64_t lo, int64_t hi)
{
  const int64_t l = MAX(lo, a), h = MIN(hi, b);
  if (s == 1) {
    for (int64_t o = l; o < h; o++) row[o + off] += src[o - a];
  } else {
    for (int64_t o = l; o < h; o++) row[o * s + off] += src[o - a];
  }
}

/* ---- im2col / col2im over bands of output positions ------------------------------- */

/* im2col / col2im alternate with (multithreaded OpenBLAS) sgemm calls band after band.  With
 * libgomp's default wait policy its idle workers keep spinning while OpenBLAS runs, which on a
 * 2-core machine made convolutions 3-7x slower than doing im2col on the calling thread; with
 * OMP_WAIT_POLICY=passive the OpenMP version is the fastest.  So: parallel only when the backend's
 * creator says its OpenMP threads wait passively (cnnfx_backend_set_passive_wait). */
static gboolean band_parallel(const CnnfxExec *x)
{
  return x->passive_wait;
}

/* col[r, p - p0] for rows r = ((c*KD + kd)*KH + kh)*KW + kw and flattened output positions
 * p = (od*OH + oh)*OW + ow in [p0, p1).  img points at the group's first channel. */
static void im2col_row(const CnnfxConvGeo *g, const float *img, int64_t r, int64_t p0, int64_t nb, float *dst)
{
  const int64_t OH = g->os[1], OW = g->os[2], KH = g->k[1], KW = g->k[2], KD = g->k[0];
  const int64_t ID = g->is[0], IH = g->is[1], IW = g->is[2];
  int64_t t = r;
  const int64_t kw = t % KW;
  t /= KW;
  const int64_t kh = t % KH;
  t /= KH;
  const int64_t kd = t % KD, c = t / KD;
  const float *plane = img + c * g->isz;
  const int64_t off = kw * g->d[2] - g->p[2];
  int64_t lo, hi;
  valid_range(OW, IW, g->s[2], off, &lo, &hi);
  int64_t q = p0 / OW, a = p0 % OW, left = nb;
  int64_t od = q / OH, oh = q % OH;
  while (left > 0) {
    const int64_t b = MIN(OW, a + left);
    const int64_t id = od * g->s[0] - g->p[0] + kd * g->d[0];
    const int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];
    if (id < 0 || id >= ID || ih < 0 || ih >= IH)
      memset(dst, 0, (size_t)(b - a) * sizeof(float));
    else
      gather_seg(dst, plane + (id * IH + ih) * IW, a, b, g->s[2], off, lo, hi);
    dst += b - a;
    left -= b - a;
    a = 0;
    if (++oh == OH) {
      oh = 0;
      od++;
    }
  }
}

/* col[r, p - p0] (row stride ld) for all rows r of one image (group). */
static void im2col(const CnnfxConvGeo *g, const float *img, int64_t p0, int64_t p1, float *col, int64_t ld,
                   gboolean par)
{
  const int64_t nb = p1 - p0, rows = g->Ci * g->kk;
#pragma omp parallel for schedule(static) if (par && rows * nb > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) im2col_row(g, img, r, p0, nb, col + r * ld);
}

/* Several whole images side by side: col[r, j*osz + p] for images j < m of img (G == 1), row stride
 * m*osz.  Small planes (CIFAR's 8x8, 4x4) give GEMMs with a few dozen columns per image; batching
 * the images makes one GEMM with hundreds of columns. */
static void im2col_images(const CnnfxConvGeo *g, const float *img, int64_t m, float *col, gboolean par)
{
  const int64_t rows = g->Ci * g->kk, ld = m * g->osz;
#pragma omp parallel for schedule(static) if (par && m * rows * g->osz > PAR_MIN)
  for (int64_t i = 0; i < m * rows; i++) {
    const int64_t j = i / rows, r = i % rows;
    im2col_row(g, img + j * g->Ci * g->isz, r, 0, g->osz, col + r * ld + j * g->osz);
  }
}

/* img += col2im(col) for the same band layout. */
static void col2im_chan(const CnnfxConvGeo *g, const float *col, int64_t ld, int64_t c, int64_t p0, int64_t nb,
                        float *img)
{
  const int64_t OH = g->os[1], OW = g->os[2], KH = g->k[1], KW = g->k[2];
  const int64_t ID = g->is[0], IH = g->is[1], IW = g->is[2];
  float *plane = img + c * g->isz;
  for (int64_t r0 = 0; r0 < g->kk; r0++) {
    int64_t t = r0;
    const int64_t kw = t % KW;
    t /= KW;
    const int64_t kh = t % KH, kd = t / KH;
    const float *src = col + (c * g->kk + r0) * ld;
    const int64_t off = kw * g->d[2] - g->p[2];
    int64_t lo, hi;
    valid_range(OW, IW, g->s[2], off, &lo, &hi);
    int64_t q = p0 / OW, a = p0 % OW, left = nb;
    int64_t od = q / OH, oh = q % OH;
    while (left > 0) {
      const int64_t b = MIN(OW, a + left);
      const int64_t id = od * g->s[0] - g->p[0] + kd * g->d[0];
      const int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];
      if (id >= 0 && id < ID && ih >= 0 && ih < IH)
        scatter_seg(plane + (id * IH + ih) * IW, src, a, b, g->s[2], off, lo, hi);
      src += b - a;
      left -= b - a;
      a = 0;
      if (++oh == OH) {
        oh = 0;
        od++;
      }
    }
  }
}

/* img += col2im(col) for one image (group); col rows have stride ld. */
static void col2im_add(const CnnfxConvGeo *g, const float *col, int64_t p0, int64_t p1, int64_t ld, float *img,
                       gboolean par)
{
#pragma omp parallel for schedule(static) if (par && g->Ci * g->kk * (p1 - p0) > PAR_MIN && g->Ci > 1)
  for (int64_t c = 0; c < g->Ci; c++) col2im_chan(g, col, ld, c, p0, p1 - p0, img);
}

/* The adjoint of im2col_images: images j < m of img (G == 1) += col2im(col[:, j*osz ...]). */
static void col2im_images(const CnnfxConvGeo *g, const float *col, int64_t m, float *img, gboolean par)
{
  const int64_t ld = m * g->osz;
#pragma omp parallel for schedule(static) if (par && m * g->Ci * g->kk * g->osz > PAR_MIN)
  for (int64_t i = 0; i < m * g->Ci; i++) {
    const int64_t j = i / g->Ci, c = i % g->Ci;
    col2im_chan(g, col + j * g->osz, ld, c, 0, g->osz, img + j * g->Ci * g->isz);
  }
}

/* t[o, j*osz + p] <-> a[(n0 + j), o, p] for the m images of a band (Co rows of m*osz).  pack copies
 * from the NCHW tensor into t; unpack copies back, adding the bias and applying ReLU on the way. */
static void pack_images(const CnnfxConvGeo *g, const float *a, int64_t m, float *t, gboolean par)
{
  const int64_t osz = g->osz, Co = g->Co;
#pragma omp parallel for schedule(static) if (par && m * Co * osz > PAR_MIN)
  for (int64_t i = 0; i < m * Co; i++) {
    const int64_t j = i / Co, o = i % Co;
    memcpy(t + o * m * osz + j * osz, a + (j * Co + o) * osz, (size_t)osz * sizeof(float));
  }
}

static void unpack_images(const CnnfxConvGeo *g, const float *t, int64_t m, const float *bias, gboolean relu,
                          float *a, gboolean par)
{
  const int64_t osz = g->osz, Co = g->Co;
#pragma omp parallel for schedule(static) if (par && m * Co * osz > PAR_MIN)
  for (int64_t i = 0; i < m * Co; i++) {
    const int64_t j = i / Co, o = i % Co;
    float *restrict d = a + (j * Co + o) * osz;
    const float *restrict src = t + o * m * osz + j * osz;
    const float b = bias ? bias[o] : 0.f;
    if (relu) {
#pragma omp simd
      for (int64_t q = 0; q < osz; q++) {
        const float v = src[q] + b; /* b = 0 without a bias: the same after the ReLU, -0 included */
        d[q] = v > 0.f ? v : 0.f;
      }
    } else if (bias) {
#pragma omp simd
      for (int64_t q = 0; q < osz; q++) d[q] = src[q] + b;
    } else {
      memcpy(d, src, (size_t)osz * sizeof(float));
    }
  }
}

typedef enum { BATCH_FWD, BATCH_ADJ, BATCH_WGRAD } BatchOp;

/* The multi-image path of the three primitives (band_images(g) > 1, G == 1): m <= mi whole images per
 * GEMM through a column block col [CiKK x m*osz] and an output-side block t [Co x m*osz].
 *   BATCH_FWD    out = W * im2col(img) (+ bias, ReLU)           (dst = out)
 *   BATCH_ADJ    img = col2im(W^T * out)   (img zero-filled)     (dst = img)
 *   BATCH_WGRAD  dW += out * im2col(img)^T                       (dst = dW) */
static gboolean batched_images(const CnnfxExec *x, const CnnfxConvGeo *g, int64_t mi, BatchOp op, const float *img,
                               const float *out, const float *W, const float *bias, gboolean relu, float *dst,
                               GError **error)
{
  const int64_t CiKK = g->Ci * g->kk;
  const size_t ncol = (size_t)(CiKK * mi * g->osz), nt = (size_t)(g->Co * mi * g->osz);
  const gboolean par = band_parallel(x);
  float *col, *t;
  if (!cnnfx_scratch_f32_pair(x->mem, ncol, &col, nt, &t, error)) return FALSE;
  for (int64_t n0 = 0; n0 < g->N; n0 += mi) {
    const int64_t m = MIN(mi, g->N - n0), cols = m * g->osz;
    const float *img_n = img ? img + n0 * g->Ci * g->isz : NULL, *out_n = out ? out + n0 * g->Co * g->osz : NULL;
    switch (op) {
    case BATCH_FWD:
      im2col_images(g, img_n, m, col, par);
      cnnfx_sgemm(FALSE, FALSE, (int)g->Co, (int)cols, (int)CiKK, 1.f, W, (int)CiKK, col, (int)cols, 0.f, t, (int)cols);
      unpack_images(g, t, m, bias, relu, dst + n0 * g->Co * g->osz, par);
      break;
    case BATCH_ADJ:
      pack_images(g, out_n, m, t, par);
      cnnfx_sgemm(TRUE, FALSE, (int)CiKK, (int)cols, (int)g->Co, 1.f, W, (int)CiKK, t, (int)cols, 0.f, col, (int)cols);
      col2im_images(g, col, m, dst + n0 * g->Ci * g->isz, par);
      break;
    case BATCH_WGRAD: /* the sum over the m images is the GEMM's inner dimension */
      pack_images(g, out_n, m, t, par);
      im2col_images(g, img_n, m, col, par);
      cnnfx_sgemm(FALSE, TRUE, (int)g->Co, (int)CiKK, (int)cols, 1.f, t, (int)cols, col, (int)cols, 1.f, dst, (int)CiKK);
      break;
    }
  }
  cnnfx_scratch_free(x->mem, t, nt);
  cnnfx_scratch_free(x->mem, col, ncol);
  return TRUE;
}

static gboolean is_pointwise(const CnnfxConvGeo *g)
{
  for (int j = 0; j < 3; j++)
    if (g->k[j] != 1 || g->s[j] != 1 || g->p[j] != 0 || g->is[j] != g->os[j]) return FALSE;
  return TRUE;
}

static gboolean is_depthwise(const CnnfxConvGeo *g)
{
  return g->Ci == 1 && g->Co <= 4 && g->k[0] == 1 && g->is[0] == 1 && g->os[0] == 1 && g->kk <= DW_MAX_KK;
}

/* Output positions per band (GEMM columns) so that the column buffer stays bounded. */
static int64_t band_cols_unclamped(const CnnfxConvGeo *g)
{
  const size_t CiKK = (size_t)MAX((int64_t)1, g->Ci * g->kk);
  size_t cols = MAX(BAND_FLOATS / CiKK, (size_t)BAND_MIN_COLS);
  return (int64_t)MIN(cols, MAX(SCRATCH_FLOATS / CiKK, (size_t)1));
}

static int64_t band_cols(const CnnfxConvGeo *g)
{
  return CLAMP(band_cols_unclamped(g), 1, g->osz);
}

/* Images per multi-image band: > 1 only when a whole plane is smaller than a band (and G == 1). */
static int64_t band_images(const CnnfxConvGeo *g)
{
  const int64_t cols = band_cols_unclamped(g);
  if (g->G != 1 || g->N < 2 || g->osz * 2 > cols) return 1;
  return MIN(g->N, cols / g->osz);
}

/* ---- fused epilogues: bias and ReLU where the output is still in cache ------------------ */

/* The Relu operator's forward, exactly (x > 0 ? x : 0: NaN and -0 give +0). */
static inline void relu_row(float *restrict p, int64_t n)
{
#pragma omp simd
  for (int64_t i = 0; i < n; i++) p[i] = p[i] > 0.f ? p[i] : 0.f;
}

/* rows x nb block of out (row stride ld): += bias[r] (if bias), then ReLU (if relu).  The same float
 * operations as a separate bias pass followed by the Relu operator. */
static void band_epilogue(float *out, int64_t ld, int64_t rows, int64_t nb, const float *bias, gboolean relu,
                          gboolean par)
{
  if (!bias && !relu) return;
#pragma omp parallel for schedule(static) if (par && rows * nb > PAR_MIN)
  for (int64_t r = 0; r < rows; r++) {
    float *restrict p = out + r * ld;
    if (bias) {
      const float b = bias[r];
      if (relu) {
#pragma omp simd
        for (int64_t t = 0; t < nb; t++) {
          const float v = p[t] + b;
          p[t] = v > 0.f ? v : 0.f;
        }
      } else {
#pragma omp simd
        for (int64_t t = 0; t < nb; t++) p[t] += b;
      }
    } else {
      relu_row(p, nb);
    }
  }
}

/* ---- direct depthwise loops (spatial rank <= 2, one image channel per group) ------ */

/* One output row of a direct (depthwise) convolution:
 *   orow[ow] (=|+=) b + sum_r sum_kw w[r][kw] * rows[r][ow*s + kw*d - p]
 * rows/w: the nr input rows (and kernel rows) that fall inside the image.  The interior
 * columns, where every tap is inside the row, run fused; the edges tap by tap. */
static void dw_out_row(float *restrict orow, const float *const *rows, const float *const *w, int nr, int64_t KW,
                       int64_t OW, int64_t IW, int64_t s, int64_t d, int64_t p, gboolean init, float b)
{
  int64_t lo[DW_MAX_KK], hi[DW_MAX_KK];
  int64_t L = 0, H = OW;
  for (int64_t kw = 0; kw < KW; kw++) {
    valid_range(OW, IW, s, kw * d - p, &lo[kw], &hi[kw]);
    L = MAX(L, lo[kw]);
    H = MIN(H, hi[kw]);
  }
  if (init)
    for (int64_t o = 0; o < OW; o++) orow[o] = b;
  const gboolean fused = L < H && KW == 3;
  /* Edges (or everything when not fused) */
  for (int r = 0; r < nr; r++) {
    const float *restrict irow = rows[r];
    for (int64_t kw = 0; kw < KW; kw++) {
      const int64_t off = kw * d - p;
      const float wk = w[r][kw];
      if (fused) {
        for (int64_t o = lo[kw]; o < L; o++) orow[o] += wk * irow[o * s + off];
        for (int64_t o = H; o < hi[kw]; o++) orow[o] += wk * irow[o * s + off];
      } else if (s == 1) {
        for (int64_t o = lo[kw]; o < hi[kw]; o++) orow[o] += wk * irow[o + off];
      } else {
        for (int64_t o = lo[kw]; o < hi[kw]; o++) orow[o] += wk * irow[o * s + off];
      }
    }
  }
  if (!fused) return;
  const int64_t o0 = -p, o1 = d - p, o2 = 2 * d - p;
  int r = 0;
  if (nr == 3) {
    const float *restrict a = rows[0], *restrict bb = rows[1], *restrict c = rows[2];
    const float a0 = w[0][0], a1 = w[0][1], a2 = w[0][2], b0 = w[1][0], b1 = w[1][1], b2 = w[1][2];
    const float c0 = w[2][0], c1 = w[2][1], c2 = w[2][2];
    if (s == 1) {
      for (int64_t o = L; o < H; o++)
        orow[o] += a0 * a[o + o0] + a1 * a[o + o1] + a2 * a[o + o2] + b0 * bb[o + o0] + b1 * bb[o + o1] +
                   b2 * bb[o + o2] + c0 * c[o + o0] + c1 * c[o + o1] + c2 * c[o + o2];
    } else {
      for (int64_t o = L; o < H; o++) {
        const int64_t i = o * s;
        orow[o] += a0 * a[i + o0] + a1 * a[i + o1] + a2 * a[i + o2] + b0 * bb[i + o0] + b1 * bb[i + o1] +
                   b2 * bb[i + o2] + c0 * c[i + o0] + c1 * c[i + o1] + c2 * c[i + o2];
      }
    }
    r = 3;
  }
  for (; r < nr; r++) {
    const float *restrict a = rows[r];
    const float w0 = w[r][0], w1 = w[r][1], w2 = w[r][2];
    if (s == 1)
      for (int64_t o = L; o < H; o++) orow[o] += w0 * a[o + o0] + w1 * a[o + o1] + w2 * a[o + o2];
    else
      for (int64_t o = L; o < H; o++) orow[o] += w0 * a[o * s + o0] + w1 * a[o * s + o1] + w2 * a[o * s + o2];
  }
}

static void dw_fwd(const CnnfxConvGeo *g, const float *img, const float *W, const float *bias, gboolean relu,
                   float *out)
{
  const int64_t IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2], KH = g->k[1], KW = g->k[2];
  const int64_t GC = g->G * g->Co, planes = g->N * GC;
#pragma omp parallel for schedule(dynamic, 1) if (planes * g->osz * g->kk > PAR_MIN)
  for (int64_t pi = 0; pi < planes; pi++) {
    const int64_t gj = pi % GC, nn = pi / GC, gg = gj / g->Co;
    const float *ip = img + (nn * g->G + gg) * g->isz;
    const float *wk = W + gj * g->kk;
    float *op = out + pi * g->osz;
    const float b = bias ? bias[gj] : 0.f;
    const float *rows[DW_MAX_KK], *wr[DW_MAX_KK];
    for (int64_t oh = 0; oh < OH; oh++) {
      int nr = 0;
      for (int64_t kh = 0; kh < KH; kh++) {
        const int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];
        if (ih < 0 || ih >= IH) continue;
        rows[nr] = ip + ih * IW;
        wr[nr++] = wk + kh * KW;
      }
      float *orow = op + oh * OW;
      dw_out_row(orow, rows, wr, nr, KW, OW, IW, g->s[2], g->d[2], g->p[2], TRUE, b);
      if (relu) relu_row(orow, OW);
    }
  }
}

static void dw_adj(const CnnfxConvGeo *g, const float *out, const float *W, float *img)
{
  const int64_t IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2], KH = g->k[1], KW = g->k[2];
  const int64_t planes = g->N * g->G;
  const int64_t sh = g->s[1], sw = g->s[2], dh = g->d[1], dw = g->d[2], ph = g->p[1], pw = g->p[2];
#pragma omp parallel for schedule(dynamic, 1) if (planes * g->osz * g->kk > PAR_MIN)
  for (int64_t pi = 0; pi < planes; pi++) {
    float *ip = img + pi * g->isz;
    const int64_t gg = pi % g->G;
    if (sh == 1 && sw == 1) {
      /* Stride 1: a gather.  img row ih takes out rows oh = ih + ph - kh*dh with the kernel
       * flipped, i.e. a correlation with pad (KW-1)*dw - pw. */
      float wf[DW_MAX_KK];
      const float *rows[DW_MAX_KK], *wr[DW_MAX_KK];
      const int64_t pf = (KW - 1) * dw - pw;
      for (int64_t ih = 0; ih < IH; ih++) {
        for (int64_t j = 0; j < g->Co; j++) {
          const float *op = out + (pi * g->Co + j) * g->osz;
          const float *wk = W + (gg * g->Co + j) * g->kk;
          int nr = 0;
          for (int64_t kh = 0; kh < KH; kh++) {
            const int64_t oh = ih + ph - kh * dh;
            if (oh < 0 || oh >= OH) continue;
            for (int64_t kw = 0; kw < KW; kw++) wf[nr * KW + kw] = wk[kh * KW + (KW - 1 - kw)];
            rows[nr] = op + oh * OW;
            wr[nr] = wf + nr * KW;
            nr++;
          }
          dw_out_row(ip + ih * IW, rows, wr, nr, KW, IW, OW, 1, dw, pf, j == 0, 0.f);
        }
      }
      continue;
    }
    memset(ip, 0, (size_t)g->isz * sizeof(float));
    for (int64_t j = 0; j < g->Co; j++) {
      const float *op = out + (pi * g->Co + j) * g->osz;
      const float *wk = W + (gg * g->Co + j) * g->kk;
      for (int64_t oh = 0; oh < OH; oh++) {
        const float *restrict orow = op + oh * OW;
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t ih = oh * sh - ph + kh * dh;
          if (ih < 0 || ih >= IH) continue;
          float *restrict irow = ip + ih * IW;
          for (int64_t kw = 0; kw < KW; kw++) {
            const int64_t off = kw * dw - pw;
            const float w = wk[kh * KW + kw];
            int64_t lo, hi;
            valid_range(OW, IW, sw, off, &lo, &hi);
            for (int64_t o = lo; o < hi; o++) irow[o * sw + off] += w * orow[o];
          }
        }
      }
    }
  }
}

static void dw_wgrad(const CnnfxConvGeo *g, const float *img, const float *out, float *dW)
{
  const int64_t IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2], KH = g->k[1], KW = g->k[2];
  const int64_t GC = g->G * g->Co;
#pragma omp parallel for schedule(dynamic, 1) if (GC * g->N * g->osz * g->kk > PAR_MIN)
  for (int64_t gj = 0; gj < GC; gj++) {
    double acc[DW_MAX_KK] = { 0 };
    const int64_t gg = gj / g->Co;
    for (int64_t nn = 0; nn < g->N; nn++) {
      const float *op = out + (nn * GC + gj) * g->osz;
      const float *ip = img + (nn * g->G + gg) * g->isz;
      for (int64_t oh = 0; oh < OH; oh++) {
        const float *orow = op + oh * OW;
        for (int64_t kh = 0; kh < KH; kh++) {
          const int64_t ih = oh * g->s[1] - g->p[1] + kh * g->d[1];
          if (ih < 0 || ih >= IH) continue;
          const float *irow = ip + ih * IW;
          for (int64_t kw = 0; kw < KW; kw++) {
            const int64_t off = kw * g->d[2] - g->p[2];
            int64_t lo, hi;
            valid_range(OW, IW, g->s[2], off, &lo, &hi);
            float sum = 0.f;
            if (g->s[2] == 1) {
#pragma omp simd reduction(+ : sum)
              for (int64_t o = lo; o < hi; o++) sum += orow[o] * irow[o + off];
            } else {
              const int64_t sw = g->s[2];
#pragma omp simd reduction(+ : sum)
              for (int64_t o = lo; o < hi; o++) sum += orow[o] * irow[o * sw + off];
            }
            acc[kh * KW + kw] += sum;
          }
        }
      }
    }
    for (int64_t t = 0; t < g->kk; t++) dW[gj * g->kk + t] = (float)acc[t];
  }
}

/* ---- Winograd (3x3, stride 1, dilation 1, 2-D) ------------------------------------ */

#ifndef CNNFX_NO_WINOGRAD
static gboolean is_3x3_s1(const CnnfxConvGeo *g)
{
  return g->nsp == 2 && g->k[1] == 3 && g->k[2] == 3 && g->s[1] == 1 && g->s[2] == 1 && g->d[1] == 1 &&
         g->d[2] == 1;
}

/* Winograd for this 3x3 stride-1 geometry (forward and weight gradient): pads the tiles' zero fill
 * reproduces, and enough work counted over the whole batch (tiles are batched across images). */
static gboolean winograd_fits(const CnnfxConvGeo *g)
{
  const int64_t IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2];
  const int64_t eb = OH + 2 - IH - g->p[1], er = OW + 2 - IW - g->p[2];
  return g->p[1] >= 0 && g->p[2] >= 0 && eb >= 0 && er >= 0 &&
         cnnfx_winograd_wins((int)g->Ci, (int)g->Co, (int)MIN(g->N * OH, (int64_t)INT_MAX), (int)OW);
}

/* Winograd wrapper: per group (one image at a time when G > 1). */
static gboolean winograd_run(const CnnfxExec *x, const CnnfxConvGeo *g, const float *in, int64_t C, int64_t H, int64_t Wd,
                             const float *w, int64_t K, const float *bias, int64_t pt, int64_t pl, int64_t OH,
                             int64_t OW, float *out, GError **error)
{
  if (g->G == 1)
    return cnnfx_conv3x3_winograd(x, in, (int)g->N, (int)C, (int)H, (int)Wd, w, (int)K, bias, (int)pt, (int)pl,
                                  (int)OH, (int)OW, out, error);
  for (int64_t nn = 0; nn < g->N; nn++)
    for (int64_t gg = 0; gg < g->G; gg++)
      if (!cnnfx_conv3x3_winograd(x, in + (nn * g->G + gg) * C * H * Wd, 1, (int)C, (int)H, (int)Wd,
                                  w + gg * K * C * 9, (int)K, bias ? bias + gg * K : NULL, (int)pt, (int)pl, (int)OH,
                                  (int)OW, out + (nn * g->G + gg) * K * OH * OW, error))
        return FALSE;
  return TRUE;
}
#endif

/* ---- the three primitives ----------------------------------------------------------- */

static void add_bias(const CnnfxConvGeo *g, float *out, int64_t channels, int64_t plane, const float *bias)
{
  const int64_t total = g->N * channels;
#pragma omp parallel for schedule(static) if (total * plane > PAR_MIN)
  for (int64_t i = 0; i < total; i++) {
    float *p = out + i * plane;
    const float b = bias[i % channels];
    for (int64_t t = 0; t < plane; t++) p[t] += b;
  }
}

/* out = W * im2col(img) (+ bias), then max(0, .) if relu (the fused Relu: the same numbers as the
 * Relu operator applied to the unfused output).  Bias and ReLU run per band, on data still in cache. */
static gboolean geo_fwd(const CnnfxExec *x, const CnnfxConvGeo *g, const float *img, const float *W, const float *bias,
                        gboolean relu, float *out, GError **error)
{
  const int64_t CiKK = g->Ci * g->kk;
  if (is_depthwise(g)) {
    dw_fwd(g, img, W, bias, relu, out);
    return TRUE;
  }
#ifndef CNNFX_NO_WINOGRAD
  if (!x->exact && is_3x3_s1(g) && winograd_fits(g)) {
    CnnfxExec xw = *x; /* the output transform applies bias and ReLU */
    xw.fuse_relu = relu;
    return winograd_run(&xw, g, img, g->Ci, g->is[1], g->is[2], W, g->Co, bias, g->p[1], g->p[2], g->os[1], g->os[2],
                        out, error);
  }
#endif
  if (cnnfx_conv_direct_wins(g)) return cnnfx_conv_direct_fwd(x, g, img, W, bias, relu, out, error);
  const gboolean par = band_parallel(x);
  if (is_pointwise(g)) {
    /* One GEMM per image and group, bias and ReLU right after it on the same block.  (Column bands
     * with the epilogue per band measured ~5% slower on a GoogLeNet 1x1 layer: OpenBLAS prefers the
     * whole plane, and the block is mostly still in L2/L3.) */
    for (int64_t nn = 0; nn < g->N; nn++)
      for (int64_t gg = 0; gg < g->G; gg++) {
        float *og = out + (nn * g->G + gg) * g->Co * g->osz;
        cnnfx_sgemm(FALSE, FALSE, (int)g->Co, (int)g->osz, (int)g->Ci, 1.f, W + gg * g->Co * CiKK, (int)CiKK,
                    img + (nn * g->G + gg) * g->Ci * g->isz, (int)g->isz, 0.f, og, (int)g->osz);
        /* threaded like the bias pass it replaces: one region per GEMM, not per band */
        band_epilogue(og, g->osz, g->Co, g->osz, bias ? bias + gg * g->Co : NULL, relu, TRUE);
      }
  } else {
    const int64_t nbmax = band_cols(g), mi = band_images(g);
    if (mi > 1) return batched_images(x, g, mi, BATCH_FWD, img, NULL, W, bias, relu, out, error);
    const size_t ncol = (size_t)(CiKK * nbmax);
    float *col = cnnfx_scratch_f32(x->mem, ncol, error);
    if (!col) return FALSE;
    for (int64_t nn = 0; nn < g->N; nn++)
      for (int64_t gg = 0; gg < g->G; gg++) {
        const float *ig = img + (nn * g->G + gg) * g->Ci * g->isz;
        float *og = out + (nn * g->G + gg) * g->Co * g->osz;
        const float *bg = bias ? bias + gg * g->Co : NULL;
        for (int64_t p0 = 0; p0 < g->osz; p0 += nbmax) {
          const int64_t p1 = MIN(g->osz, p0 + nbmax), nb = p1 - p0;
          im2col(g, ig, p0, p1, col, nb, par);
          cnnfx_sgemm(FALSE, FALSE, (int)g->Co, (int)nb, (int)CiKK, 1.f, W + gg * g->Co * CiKK, (int)CiKK, col,
                      (int)nb, 0.f, og + p0, (int)g->osz);
          band_epilogue(og + p0, g->osz, g->Co, nb, bg, relu, par);
        }
      }
    cnnfx_scratch_free(x->mem, col, ncol);
  }
  return TRUE;
}

/* img = col2im(W^T * out) */
static gboolean geo_adj(const CnnfxExec *x, const CnnfxConvGeo *g, const float *out, const float *W, float *img,
                        GError **error)
{
  const int64_t CiKK = g->Ci * g->kk;
  if (is_depthwise(g)) {
    dw_adj(g, out, W, img);
    return TRUE;
  }
#ifndef CNNFX_NO_WINOGRAD
  if (!x->exact && is_3x3_s1(g)) {
    /* Convolution of out with the flipped kernel, in/out channels swapped, pad 2 - p. */
    const int64_t IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2];
    const int64_t pt = 2 - g->p[1], pl = 2 - g->p[2];
    const int64_t eb = IH + 2 - OH - pt, er = IW + 2 - OW - pl;
    if (pt >= 0 && pl >= 0 && eb >= 0 && er >= 0 &&
        cnnfx_winograd_wins((int)g->Co, (int)g->Ci, (int)MIN(g->N * IH, (int64_t)INT_MAX), (int)IW)) {
      const size_t nw = (size_t)(g->G * g->Co * g->Ci * 9);
      float *wt = cnnfx_scratch_f32(x->mem, nw, error);
      if (!wt) return FALSE;
      for (int64_t gg = 0; gg < g->G; gg++)
        for (int64_t o = 0; o < g->Co; o++)
          for (int64_t c = 0; c < g->Ci; c++)
            for (int t = 0; t < 9; t++)
              wt[((gg * g->Ci + c) * g->Co + o) * 9 + t] = W[((gg * g->Co + o) * g->Ci + c) * 9 + (8 - t)];
      CnnfxConvGeo gt = *g;
      gt.Ci = g->Co;
      gt.Co = g->Ci;
      CnnfxExec xa = *x; /* a gradient: never rectified */
      xa.fuse_relu = FALSE;
      gboolean ok = winograd_run(&xa, &gt, out, g->Co, OH, OW, wt, g->Ci, NULL, pt, pl, IH, IW, img, error);
      cnnfx_scratch_free(x->mem, wt, nw);
      return ok;
    }
  }
#endif
  if (is_pointwise(g)) {
    for (int64_t nn = 0; nn < g->N; nn++)
      for (int64_t gg = 0; gg < g->G; gg++)
        cnnfx_sgemm(TRUE, FALSE, (int)g->Ci, (int)g->isz, (int)g->Co, 1.f, W + gg * g->Co * CiKK, (int)CiKK,
                    out + (nn * g->G + gg) * g->Co * g->osz, (int)g->osz, 0.f,
                    img + (nn * g->G + gg) * g->Ci * g->isz, (int)g->isz);
    return TRUE;
  }
  if (cnnfx_conv_direct_wins(g)) return cnnfx_conv_direct_adj(x, g, out, W, img, error);
  const size_t total = (size_t)(g->N * g->G * g->Ci * g->isz);
#pragma omp parallel for schedule(static) if (total > (size_t)PAR_MIN)
  for (size_t i = 0; i < total; i++) img[i] = 0.f;
  const int64_t nbmax = band_cols(g), mi = band_images(g);
  const gboolean par = band_parallel(x);
  if (mi > 1) return batched_images(x, g, mi, BATCH_ADJ, NULL, out, W, NULL, FALSE, img, error);
  const size_t ncol = (size_t)(CiKK * nbmax);
  float *col = cnnfx_scratch_f32(x->mem, ncol, error);
  if (!col) return FALSE;
  for (int64_t nn = 0; nn < g->N; nn++)
    for (int64_t gg = 0; gg < g->G; gg++) {
      float *ig = img + (nn * g->G + gg) * g->Ci * g->isz;
      const float *og = out + (nn * g->G + gg) * g->Co * g->osz;
      for (int64_t p0 = 0; p0 < g->osz; p0 += nbmax) {
        const int64_t p1 = MIN(g->osz, p0 + nbmax), nb = p1 - p0;
        cnnfx_sgemm(TRUE, FALSE, (int)CiKK, (int)nb, (int)g->Co, 1.f, W + gg * g->Co * CiKK, (int)CiKK, og + p0,
                    (int)g->osz, 0.f, col, (int)nb);
        col2im_add(g, col, p0, p1, nb, ig, par);
      }
    }
  cnnfx_scratch_free(x->mem, col, ncol);
  return TRUE;
}

/* dW = sum_n out * im2col(img)^T */
static gboolean geo_wgrad(const CnnfxExec *x, const CnnfxConvGeo *g, const float *img, const float *out, float *dW,
                          GError **error)
{
  const int64_t CiKK = g->Ci * g->kk;
  if (is_depthwise(g)) {
    dw_wgrad(g, img, out, dW);
    return TRUE;
  }
#ifndef CNNFX_NO_WINOGRAD
  if (!x->exact && is_3x3_s1(g) && g->G == 1 && winograd_fits(g)) /* F(3x3,4x4): summed over all tiles */
    return cnnfx_conv3x3_winograd_wgrad(x, img, (int)g->N, (int)g->Ci, (int)g->is[1], (int)g->is[2], out, (int)g->Co,
                                        (int)g->p[1], (int)g->p[2], (int)g->os[1], (int)g->os[2], dW, error);
#endif
  memset(dW, 0, (size_t)(g->G * g->Co * CiKK) * sizeof(float));
  if (is_pointwise(g)) {
    for (int64_t nn = 0; nn < g->N; nn++)
      for (int64_t gg = 0; gg < g->G; gg++)
        cnnfx_sgemm(FALSE, TRUE, (int)g->Co, (int)g->Ci, (int)g->osz, 1.f, out + (nn * g->G + gg) * g->Co * g->osz,
                    (int)g->osz, img + (nn * g->G + gg) * g->Ci * g->isz, (int)g->isz, 1.f,
                    dW + gg * g->Co * CiKK, (int)CiKK);
    return TRUE;
  }
  const int64_t nbmax = band_cols(g), mi = band_images(g);
  const gboolean par = band_parallel(x);
  if (mi > 1) return batched_images(x, g, mi, BATCH_WGRAD, img, out, NULL, NULL, FALSE, dW, error);
  const size_t ncol = (size_t)(CiKK * nbmax);
  float *col = cnnfx_scratch_f32(x->mem, ncol, error);
  if (!col) return FALSE;
  for (int64_t nn = 0; nn < g->N; nn++)
    for (int64_t gg = 0; gg < g->G; gg++) {
      const float *ig = img + (nn * g->G + gg) * g->Ci * g->isz;
      const float *og = out + (nn * g->G + gg) * g->Co * g->osz;
      for (int64_t p0 = 0; p0 < g->osz; p0 += nbmax) {
        const int64_t p1 = MIN(g->osz, p0 + nbmax), nb = p1 - p0;
        im2col(g, ig, p0, p1, col, nb, par);
        cnnfx_sgemm(FALSE, TRUE, (int)g->Co, (int)CiKK, (int)nb, 1.f, og + p0, (int)g->osz, col, (int)nb, 1.f,
                    dW + gg * g->Co * CiKK, (int)CiKK);
      }
    }
  cnnfx_scratch_free(x->mem, col, ncol);
  return TRUE;
}

/* db[c] = sum over n and the plane of t[n, c, :] */
static void channel_sums(const float *t, int64_t N, int64_t C, int64_t plane, float *db)
{
#pragma omp parallel for schedule(static) if (N * C * plane > PAR_MIN)
  for (int64_t c = 0; c < C; c++) {
    double acc = 0.0;
    for (int64_t nn = 0; nn < N; nn++) {
      const float *p = t + (nn * C + c) * plane;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < plane; i++) s += p[i];
      acc += s;
    }
    db[c] = (float)acc;
  }
}

/* ---- kernels ------------------------------------------------------------------------- */

static gboolean conv_any_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, gboolean transpose, GError **error)
{
  const CnnfxTensor *B = n->n_in > 2 ? in[2] : NULL;
  CnnfxConvGeo g;
  int64_t ydims[CNNFX_MAX_DIMS];
  if (!cnnfx_conv_geometry(n, in[0], in[1], B, transpose, &g, ydims, error)) return FALSE;
  CnnfxTensor *y = out[0];
  if (y->numel > 0 && in[0]->numel > 0) {
    const float *bias = B ? cnnfx_f32(B) : NULL;
    if (!transpose)
      return geo_fwd(x, &g, cnnfx_f32(in[0]), cnnfx_f32(in[1]), bias, x->fuse_relu, cnnfx_f32(y), error);
    if (!geo_adj(x, &g, cnnfx_f32(in[0]), cnnfx_f32(in[1]), cnnfx_f32(y), error)) return FALSE;
    if (bias) add_bias(&g, cnnfx_f32(y), g.G * g.Ci, g.isz, bias);
  } else if (y->numel > 0) {
    memset(y->data, 0, y->numel * sizeof(float)); /* max(0, 0) = 0 too */
  }
  return TRUE;
}

static gboolean conv_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)aux;
  return conv_any_forward(x, n, in, out, FALSE, error);
}

static gboolean convt_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                              void *aux, GError **error)
{
  (void)aux;
  return conv_any_forward(x, n, in, out, TRUE, error);
}

/* dm[i] = y[i] > 0 ? g[i] : 0: the Relu operator's backward, exactly. */
static void relu_mask(const float *restrict gy, const float *restrict y, float *restrict dm, size_t n)
{
#pragma omp parallel for simd schedule(static) if (n > (size_t)PAR_MIN * 8)
  for (size_t i = 0; i < n; i++) dm[i] = y[i] > 0.f ? gy[i] : 0.f;
}

/* gin[i] arrive zero-filled: the primitives overwrite them.  fused (Conv with its Relu fused,
 * x->fuse_relu): gout is the gradient at the ReLU output y = out[0]; the convolution's output
 * gradient gout * (y > 0) goes to kernel scratch, freed before return. */
static gboolean conv_any_backward(const CnnfxExec *xin, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                  CnnfxTensor *const *gin, gboolean transpose, GError **error)
{
  const CnnfxTensor *X = in[0], *W = in[1], *B = n->n_in > 2 ? in[2] : NULL;
  const CnnfxTensor *gy = gout[0];
  CnnfxConvGeo g;
  int64_t ydims[CNNFX_MAX_DIMS];
  if (!cnnfx_conv_geometry(n, X, W, B, transpose, &g, ydims, error)) return FALSE;
  if (!gy || gy->numel == 0 || X->numel == 0) return TRUE;
  CnnfxExec xb = *xin; /* the primitives below compute gradients: nothing is rectified */
  xb.fuse_relu = FALSE;
  const CnnfxExec *x = &xb;
  const gboolean fused = xin->fuse_relu && !transpose;
  const float *dy = cnnfx_f32(gy);
  float *dm = NULL;
  const size_t ndm = gy->numel;
  if (fused) {
    if (!out || !out[0] || !out[0]->data || out[0]->numel != gy->numel) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s: fused Conv+Relu backward needs the saved output",
                      n->name ? n->name : "Conv");
      return FALSE;
    }
    if (!(dm = cnnfx_scratch_f32(x->mem, ndm, error))) return FALSE;
    relu_mask(dy, cnnfx_f32(out[0]), dm, ndm);
    dy = dm;
  }
  gboolean ok = TRUE;
  if (ok && need[0] && gin[0] && gin[0]->numel > 0)
    ok = !transpose ? geo_adj(x, &g, dy, cnnfx_f32(W), cnnfx_f32(gin[0]), error)
                    : geo_fwd(x, &g, dy, cnnfx_f32(W), NULL, FALSE, cnnfx_f32(gin[0]), error);
  if (ok && need[1] && gin[1] && gin[1]->numel > 0)
    ok = !transpose ? geo_wgrad(x, &g, cnnfx_f32(X), dy, cnnfx_f32(gin[1]), error)
                    : geo_wgrad(x, &g, dy, cnnfx_f32(X), cnnfx_f32(gin[1]), error);
  if (!ok) {
    if (dm) cnnfx_scratch_free(x->mem, dm, ndm);
    return FALSE;
  }
  if (n->n_in > 2 && need[2] && gin[2] && gin[2]->numel > 0) {
    if (!transpose)
      channel_sums(dy, g.N, g.G * g.Co, g.osz, cnnfx_f32(gin[2]));
    else
      channel_sums(dy, g.N, g.G * g.Ci, g.isz, cnnfx_f32(gin[2]));
  }
  if (dm) cnnfx_scratch_free(x->mem, dm, ndm);
  return TRUE;
}

static gboolean conv_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)aux;
  return conv_any_backward(x, n, in, out, gout, need, gin, FALSE, error);
}

static gboolean convt_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)aux;
  return conv_any_backward(x, n, in, out, gout, need, gin, TRUE, error);
}

static const CnnfxKernel k_conv = {.name = "Conv", .forward = conv_forward, .backward = conv_backward};
static const CnnfxKernel k_convtranspose = {.name = "ConvTranspose", .forward = convt_forward,
                                            .backward = convt_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_conv[] = {&k_conv, &k_convtranspose, NULL};
