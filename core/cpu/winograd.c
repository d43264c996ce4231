/* Winograd F(4x4,3x3) convolution for 3x3, stride-1, dilation-1, ungrouped kernels.
 *
 * Lavin & Gray's F(4,3) with interpolation points 0, ±1, ±2 and ∞ (the matrices ncnn uses):
 *   y = A^T [ (G g G^T) ⊙ (B^T d B) ] A     over 6x6 input tiles that give 4x4 outputs,
 * 36 multiplications per output quad and channel pair instead of 144.
 *
 * Per call:
 *   U[36][K/8][C][8]  filter transform (OpenMP over (k-block, c))
 *   for each block of T tiles (tiles numbered over image, tile row, tile column):
 *     V[36][C][T]     input transform (OpenMP over channels, 16 tiles per vector)
 *     M[36][K][T]     36 products M[p] = U[p] V[p] with a register-blocked 8 x 48 kernel that reads
 *                     V in place (no packing), OpenMP over (p, 48-tile group)
 *     y               output transform + bias (OpenMP over output channels)
 * Blocks keep V and M to ~12 MiB; for very wide layers K is processed in chunks so that U stays
 * under 18 MiB (the input transform is then redone per chunk).  Everything runs in the caller's
 * OpenMP threads; OpenBLAS is not used, which also avoids its threads competing with OpenMP's.
 *
 * The code uses GCC/Clang vector extensions on 16 floats (one AVX-512 register, or two/four
 * narrower ones when built without AVX-512), vectorised across 16 neighbouring tiles.  Tile
 * columns are 4 floats apart in the image, so each 6-row band is first split into 4 phase arrays
 * (ph[r][q] = row[4q + r]) which makes every tile element a contiguous 16-float load; the output
 * transform interleaves back the same way. */
#include "cnnfx-private.h"
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));

/* v > 0 ? v : +0 per lane (the Relu operator exactly: NaN and -0 give +0). */
#define WG_RELU(v) ((v16)((vi16)(v) & ((v) > 0.f)))

/* Without AVX-512, GCC notes that passing v16 by value has a different ABI; these helpers are
 * static inline, so that does not matter. */
#pragma GCC diagnostic ignored "-Wpsabi"

#define WG_SEG 64                       /* tiles per transform segment (one tile row or part of it) */
#define WG_PH (WG_SEG + 16 + 1)         /* phase array length: segment, vector overrun, +1 for j=4,5 */
#define WG_U_BUDGET ((size_t)1 << 17)   /* max K·C per chunk: U of 18 MiB */
#define WG_MR 8                         /* GEMM register block: output channels */
#define WG_NR 48                        /* GEMM register block: tiles (3 vectors) */

#define WG_VM_BUDGET ((size_t)3 << 20)   /* floats for V + M of one block */

static inline v16 ld16(const float *p)
{
  v16 v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* Store the first min(n, 16) lanes of *v. */
static inline void st16(float *p, const v16 *v, int n)
{
  if (n >= 16) {
    memcpy(p, v, sizeof *v);
    return;
  }
#ifdef __AVX512F__
  _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)*v);
#else
  for (int l = 0; l < n; l++) p[l] = (*v)[l];
#endif
}

/* Split 16 quads src[4q + r] into d0..d3[q] (d_r = phase r). */
static inline void wg_deinterleave4(const float *src, float *d0, float *d1, float *d2, float *d3)
{
#ifdef __AVX512F__
  const __m512 a0 = _mm512_loadu_ps(src), a1 = _mm512_loadu_ps(src + 16);
  const __m512 a2 = _mm512_loadu_ps(src + 32), a3 = _mm512_loadu_ps(src + 48);
  /* stage 1: [r0 of q0..7 | r1 of q0..7] and [r2 | r3] from a0,a1 (and a2,a3 for q8..15) */
  const __m512i i01 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i i23 = _mm512_setr_epi32(2, 6, 10, 14, 18, 22, 26, 30, 3, 7, 11, 15, 19, 23, 27, 31);
  const __m512 b01 = _mm512_permutex2var_ps(a0, i01, a1), b23 = _mm512_permutex2var_ps(a0, i23, a1);
  const __m512 c01 = _mm512_permutex2var_ps(a2, i01, a3), c23 = _mm512_permutex2var_ps(a2, i23, a3);
  /* stage 2: low halves -> even phase, high halves -> odd phase */
  const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i hi = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  _mm512_storeu_ps(d0, _mm512_permutex2var_ps(b01, lo, c01));
  _mm512_storeu_ps(d1, _mm512_permutex2var_ps(b01, hi, c01));
  _mm512_storeu_ps(d2, _mm512_permutex2var_ps(b23, lo, c23));
  _mm512_storeu_ps(d3, _mm512_permutex2var_ps(b23, hi, c23));
#else
  for (int q = 0; q < 16; q++) {
    d0[q] = src[4 * q];
    d1[q] = src[4 * q + 1];
    d2[q] = src[4 * q + 2];
    d3[q] = src[4 * q + 3];
  }
#endif
}

/* dst[4l + j] = o_j[l] for 16 tiles l: the inverse of wg_deinterleave4. */
static inline void wg_interleave4(const v16 *o0, const v16 *o1, const v16 *o2, const v16 *o3, float *dst)
{
#ifdef __AVX512F__
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512 a = (__m512)*o0, b = (__m512)*o1, c = (__m512)*o2, d = (__m512)*o3;
  const __m512 ab_lo = _mm512_permutex2var_ps(a, lo, b), ab_hi = _mm512_permutex2var_ps(a, hi, b);
  const __m512 cd_lo = _mm512_permutex2var_ps(c, lo, d), cd_hi = _mm512_permutex2var_ps(c, hi, d);
  /* pairs (a,b) and (c,d) of the same tile -> quads */
  const __m512i q_lo = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
  const __m512i q_hi = _mm512_setr_epi32(8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
  _mm512_storeu_ps(dst, _mm512_permutex2var_ps(ab_lo, q_lo, cd_lo));
  _mm512_storeu_ps(dst + 16, _mm512_permutex2var_ps(ab_lo, q_hi, cd_lo));
  _mm512_storeu_ps(dst + 32, _mm512_permutex2var_ps(ab_hi, q_lo, cd_hi));
  _mm512_storeu_ps(dst + 48, _mm512_permutex2var_ps(ab_hi, q_hi, cd_hi));
#else
  for (int l = 0; l < 16; l++) {
    dst[4 * l] = (*o0)[l];
    dst[4 * l + 1] = (*o1)[l];
    dst[4 * l + 2] = (*o2)[l];
    dst[4 * l + 3] = (*o3)[l];
  }
#endif
}

/* 1-D input transform B^T d (6 -> 6). */
#define WG_BT(d0, d1, d2, d3, d4, d5, r0, r1, r2, r3, r4, r5)                                             \
  do {                                                                                                     \
    const v16 a_ = (d4) - 4.f * (d2), b_ = (d3) - 4.f * (d1);                                              \
    const v16 c_ = (d4) - (d2), e_ = 2.f * ((d3) - (d1));                                                  \
    r0 = 4.f * (d0) - 5.f * (d2) + (d4);                                                                   \
    r1 = a_ + b_;                                                                                          \
    r2 = a_ - b_;                                                                                          \
    r3 = c_ + e_;                                                                                          \
    r4 = c_ - e_;                                                                                          \
    r5 = 4.f * (d1) - 5.f * (d3) + (d5);                                                                   \
  } while (0)

/* 1-D output transform A^T m (6 -> 4). */
#define WG_AT(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3)                                                      \
  do {                                                                                                     \
    const v16 s12_ = (m1) + (m2), d12_ = (m1) - (m2);                                                      \
    const v16 s34_ = (m3) + (m4), d34_ = (m3) - (m4);                                                      \
    o0 = (m0) + s12_ + s34_;                                                                               \
    o1 = d12_ + 2.f * d34_;                                                                                \
    o2 = s12_ + 4.f * s34_;                                                                                \
    o3 = d12_ + 8.f * d34_ + (m5);                                                                         \
  } while (0)

typedef struct {
  int N, C, H, W, K, pt, pl, OH, OW;
  int TY, TX;       /* tile grid per image */
} WgGeo;

/* Runs of tiles of the block [t0, t0 + T) that lie in one tile row, cut to WG_SEG tiles. */
typedef struct {
  int64_t t, end, t0;     /* iterator state */
  int n, ty, tx0, cnt;    /* current segment: image, tile row, first tile column, length */
  int64_t off;            /* position of the segment inside the block */
} WgSeg;

static inline void wg_seg_init(WgSeg *s, int64_t t0, int64_t T)
{
  s->t = s->t0 = t0;
  s->end = t0 + T;
}

static inline gboolean wg_seg_next(const WgGeo *g, WgSeg *s)
{
  if (s->t >= s->end) return FALSE;
  const int64_t row = s->t / g->TX;
  s->tx0 = (int)(s->t - row * g->TX);
  s->n = (int)(row / g->TY);
  s->ty = (int)(row - (int64_t)s->n * g->TY);
  s->cnt = (int)MIN((int64_t)MIN(g->TX - s->tx0, WG_SEG), s->end - s->t);
  s->off = s->t - s->t0;
  s->t += s->cnt;
  return TRUE;
}

/* Split the six input rows of one segment into phase arrays ph[i][r][q] = padded_row_i[4q + r]. */
static void wg_load_band(const WgGeo *g, const float *plane, int ty, int tx0, int cnt,
                         float ph[6][4][WG_PH])
{
  const int nq = ((cnt + 15) & ~15) + 1; /* quads read by the vector loop */
  const int x0 = 4 * tx0 - g->pl;        /* image column of quad 0, phase 0 */
  for (int i = 0; i < 6; i++) {
    const int iy = 4 * ty - g->pt + i;
    float (*p)[WG_PH] = ph[i];
    if (iy < 0 || iy >= g->H) {
      for (int r = 0; r < 4; r++) memset(p[r], 0, (size_t)nq * sizeof(float));
      continue;
    }
    const float *row = plane + (size_t)iy * g->W;
    /* quads fully inside the row: [qa, qb) */
    int qa = x0 >= 0 ? 0 : (-x0 + 3) / 4;
    int qb = (g->W - x0) / 4;
    if (g->W - x0 < 0) qb = 0;
    qa = MIN(qa, nq);
    qb = MAX(MIN(qb, nq), qa);
    for (int q = 0; q < qa; q++)
      for (int r = 0; r < 4; r++) {
        const int ix = x0 + 4 * q + r;
        p[r][q] = ix >= 0 && ix < g->W ? row[ix] : 0.f;
      }
    const float *src = row + x0;
    int q = qa;
    for (; q + 16 <= qb; q += 16) wg_deinterleave4(src + 4 * q, &p[0][q], &p[1][q], &p[2][q], &p[3][q]);
    for (; q < qb; q++) {
      const float *s = src + 4 * q;
      p[0][q] = s[0];
      p[1][q] = s[1];
      p[2][q] = s[2];
      p[3][q] = s[3];
    }
    for (int q2 = qb; q2 < nq; q2++)
      for (int r = 0; r < 4; r++) {
        const int ix = x0 + 4 * q2 + r;
        p[r][q2] = ix >= 0 && ix < g->W ? row[ix] : 0.f;
      }
  }
}

/* V[p][c][t] (row stride ldt) for channels [0, C) of the block [t0, t0 + T); zero columns up to the
 * next multiple of 16 (the GEMM reads whole vectors). */
static void wg_input_transform(const WgGeo *g, int nthr, const float *in, int64_t t0, int64_t T, size_t ldt,
                               float *V)
{
  const size_t pstride = (size_t)g->C * ldt;
  const size_t tpad = (size_t)((T + 15) & ~(int64_t)15); /* columns the GEMM reads */
  const size_t plane_sz = (size_t)g->H * (size_t)g->W;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (nthr > 1 && g->C > 1)
  for (int c = 0; c < g->C; c++) {
    float ph[6][4][WG_PH] __attribute__((aligned(64)));
    WgSeg sg;
    wg_seg_init(&sg, t0, T);
    while (wg_seg_next(g, &sg)) {
      const int n = sg.n, ty = sg.ty, tx0 = sg.tx0, cnt = sg.cnt;
      const int64_t off = sg.off;
      const float *plane = in + ((size_t)n * (size_t)g->C + (size_t)c) * plane_sz;
      wg_load_band(g, plane, ty, tx0, cnt, ph);
      float *vbase = V + (size_t)c * ldt + (size_t)off;
      for (int q = 0; q < cnt; q += 16) {
        v16 t[6][6];
        for (int j = 0; j < 6; j++) {
          const int r = j & 3, dq = q + (j >> 2);
          const v16 d0 = ld16(&ph[0][r][dq]), d1 = ld16(&ph[1][r][dq]), d2 = ld16(&ph[2][r][dq]);
          const v16 d3 = ld16(&ph[3][r][dq]), d4 = ld16(&ph[4][r][dq]), d5 = ld16(&ph[5][r][dq]);
          WG_BT(d0, d1, d2, d3, d4, d5, t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]);
        }
        const int nv = cnt - q;
        for (int i = 0; i < 6; i++) {
          v16 r0, r1, r2, r3, r4, r5;
          WG_BT(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], r0, r1, r2, r3, r4, r5);
          float *vp = vbase + (size_t)(i * 6) * pstride + q;
          st16(vp, &r0, nv);
          st16(vp + pstride, &r1, nv);
          st16(vp + 2 * pstride, &r2, nv);
          st16(vp + 3 * pstride, &r3, nv);
          st16(vp + 4 * pstride, &r4, nv);
          st16(vp + 5 * pstride, &r5, nv);
        }
      }
    }
    for (int p = 0; p < 36; p++)
      for (size_t t = (size_t)T; t < tpad; t++) V[p * pstride + (size_t)c * ldt + t] = 0.f;
  }
}

/* y[n][k0 + k] from M[p][k][t] (row stride ldt, Kp rows per point) for k in [0, Kc) of the block
 * [t0, t0 + T). */
static void wg_output_transform(const WgGeo *g, int nthr, const float *M, int64_t t0, int64_t T, size_t ldt,
                                int k0, int Kc, int Kp, const float *bias, gboolean relu, float *out)
{
  const size_t pstride = (size_t)Kp * ldt;
  const size_t plane_sz = (size_t)g->OH * (size_t)g->OW;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthr) if (nthr > 1 && Kc > 1)
  for (int k = 0; k < Kc; k++) {
    const float b = bias ? bias[k0 + k] : 0.f;
    float rowbuf[4 * 16] __attribute__((aligned(64)));
    WgSeg sg;
    wg_seg_init(&sg, t0, T);
    while (wg_seg_next(g, &sg)) {
      const int n = sg.n, ty = sg.ty, tx0 = sg.tx0, cnt = sg.cnt;
      const int64_t off = sg.off;
      float *plane = out + ((size_t)n * (size_t)g->K + (size_t)(k0 + k)) * plane_sz;
      const float *mbase = M + (size_t)k * ldt + (size_t)off;
      for (int q = 0; q < cnt; q += 16) {
        v16 s[4][6];
        for (int j = 0; j < 6; j++) {
          const float *mp = mbase + (size_t)j * pstride + q;
          const v16 m0 = ld16(mp), m1 = ld16(mp + 6 * pstride), m2 = ld16(mp + 12 * pstride);
          const v16 m3 = ld16(mp + 18 * pstride), m4 = ld16(mp + 24 * pstride), m5 = ld16(mp + 30 * pstride);
          WG_AT(m0, m1, m2, m3, m4, m5, s[0][j], s[1][j], s[2][j], s[3][j]);
        }
        const int nt = MIN(cnt - q, 16);
        const int x0 = 4 * (tx0 + q);
        const int ncol = MIN(4 * nt, g->OW - x0);
        for (int i = 0; i < 4; i++) {
          const int y = 4 * ty + i;
          if (y >= g->OH) break;
          v16 o0, o1, o2, o3;
          WG_AT(s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5], o0, o1, o2, o3);
          o0 += b;
          o1 += b;
          o2 += b;
          o3 += b;
          if (relu) {
            o0 = WG_RELU(o0);
            o1 = WG_RELU(o1);
            o2 = WG_RELU(o2);
            o3 = WG_RELU(o3);
          }
          float *dst = plane + (size_t)y * g->OW + x0;
          if (ncol == 64) {
            wg_interleave4(&o0, &o1, &o2, &o3, dst);
          } else {
            wg_interleave4(&o0, &o1, &o2, &o3, rowbuf);
            for (int l = 0; l < ncol; l++) dst[l] = rowbuf[l];
          }
        }
      }
    }
  }
}

/* ---- transforms for small images: 16 consecutive tiles gathered one by one ----------------------
 *
 * With tile rows shorter than a vector (planes up to 60 columns: CIFAR's 32x32 and below) the
 * segment path above leaves most of its 16 lanes empty.  Here 16 consecutive tiles of the block,
 * whatever image and tile row they lie in, are gathered into one vector per tile element. */

static inline void wg_tile_pos(const WgGeo *g, int64_t t, int *n, int *ty, int *tx)
{
  const int64_t row = t / g->TX;
  *tx = (int)(t - row * g->TX);
  *n = (int)(row / g->TY);
  *ty = (int)(row - (int64_t)*n * g->TY);
}

static inline gboolean wg_gather_wins(const WgGeo *g) { return g->TX < 16; }

/* d[i][j][l] (S x S x 16) = the S x S patch at rows 4*ty - oy + i, columns 4*tx - ox + j of plane `ch`
 * of the image of tile t + l (l < nt; zero outside the H x W plane and for l >= nt).  Tensor
 * [N][planes][H][W] at base.  Tiles wholly inside the plane are copied without bounds checks; the others
 * clip the patch once.  S is a constant at each call site. */
static inline __attribute__((always_inline)) void wg_gather_tiles(const WgGeo *g, const float *base, int planes,
                                                                  int ch, int H, int W, int64_t t, int nt, int S,
                                                                  int oy, int ox, float *d)
{
  const size_t plane_sz = (size_t)H * (size_t)W;
  int n = 0, ty = 0, tx = 0;
  if (nt > 0) wg_tile_pos(g, t, &n, &ty, &tx);
  for (int l = 0; l < 16; l++) {
    if (l >= nt) {
      for (int e = 0; e < S * S; e++) d[e * 16 + l] = 0.f;
      continue;
    }
    const float *plane = base + ((size_t)n * (size_t)planes + (size_t)ch) * plane_sz;
    const int y0 = 4 * ty - oy, x0 = 4 * tx - ox;
    if (y0 >= 0 && x0 >= 0 && y0 + S <= H && x0 + S <= W) {
      const float *src = plane + (size_t)y0 * W + x0;
      for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) d[(i * S + j) * 16 + l] = src[(size_t)i * W + j];
    } else {
      const int i0 = MAX(0, -y0), i1 = MIN(S, H - y0), j0 = MAX(0, -x0), j1 = MIN(S, W - x0);
      for (int e = 0; e < S * S; e++) d[e * 16 + l] = 0.f;
      for (int i = i0; i < i1; i++)
        for (int j = j0; j < j1; j++) d[(i * S + j) * 16 + l] = plane[(size_t)(y0 + i) * W + x0 + j];
    }
    if (++tx == g->TX) { /* the next tile */
      tx = 0;
      if (++ty == g->TY) {
        ty = 0;
        n++;
      }
    }
  }
}

static void wg_input_transform_gather(const WgGeo *g, int nthr, const float *in, int64_t t0, int64_t T, size_t ldt,
                                      float *V)
{
  const size_t pstride = (size_t)g->C * ldt;
  const int64_t ngrp = (T + 15) / 16, ntask = (int64_t)g->C * ngrp;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && ntask > 1)
  for (int64_t task = 0; task < ntask; task++) {
    const int c = (int)(task / ngrp);
    const int64_t q = (task - (int64_t)c * ngrp) * 16;
    const int nt = (int)MIN((int64_t)16, T - q);
    float d[6][6][16] __attribute__((aligned(64)));
    wg_gather_tiles(g, in, g->C, c, g->H, g->W, t0 + q, nt, 6, g->pt, g->pl, &d[0][0][0]);
    v16 t[6][6];
    for (int j = 0; j < 6; j++)
      WG_BT(ld16(d[0][j]), ld16(d[1][j]), ld16(d[2][j]), ld16(d[3][j]), ld16(d[4][j]), ld16(d[5][j]), t[0][j],
            t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]);
    float *vp = V + (size_t)c * ldt + (size_t)q;
    for (int i = 0; i < 6; i++) {
      v16 r[6];
      WG_BT(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], r[0], r[1], r[2], r[3], r[4], r[5]);
      for (int j = 0; j < 6; j++) memcpy(vp + (size_t)(i * 6 + j) * pstride, &r[j], sizeof(v16));
    }
  }
}

/* V for the block: gathered tiles for narrow planes, 6-row bands split into column phases otherwise. */
static void wg_input(const WgGeo *g, int nthr, const float *in, int64_t t0, int64_t T, size_t ldt, float *V)
{
  if (wg_gather_wins(g))
    wg_input_transform_gather(g, nthr, in, t0, T, ldt, V);
  else
    wg_input_transform(g, nthr, in, t0, T, ldt, V);
}

static void wg_output_transform_gather(const WgGeo *g, int nthr, const float *M, int64_t t0, int64_t T, size_t ldt,
                                       int k0, int Kc, int Kp, const float *bias, gboolean relu, float *out)
{
  const size_t pstride = (size_t)Kp * ldt, plane_sz = (size_t)g->OH * (size_t)g->OW;
  const int64_t ngrp = (T + 15) / 16, ntask = (int64_t)Kc * ngrp;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && ntask > 1)
  for (int64_t task = 0; task < ntask; task++) {
    const int k = (int)(task / ngrp);
    const int64_t q = (task - (int64_t)k * ngrp) * 16;
    const int nt = (int)MIN((int64_t)16, T - q);
    const float b = bias ? bias[k0 + k] : 0.f;
    const float *mb = M + (size_t)k * ldt + (size_t)q;
    v16 s[4][6];
    for (int j = 0; j < 6; j++) {
      const float *mp = mb + (size_t)j * pstride;
      WG_AT(ld16(mp), ld16(mp + 6 * pstride), ld16(mp + 12 * pstride), ld16(mp + 18 * pstride),
            ld16(mp + 24 * pstride), ld16(mp + 30 * pstride), s[0][j], s[1][j], s[2][j], s[3][j]);
    }
    float o[4][4][16] __attribute__((aligned(64)));
    for (int i = 0; i < 4; i++) {
      v16 r[4];
      WG_AT(s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5], r[0], r[1], r[2], r[3]);
      for (int j = 0; j < 4; j++) {
        r[j] += b;
        if (relu) r[j] = WG_RELU(r[j]);
        memcpy(o[i][j], &r[j], sizeof(v16));
      }
    }
    for (int l = 0; l < nt; l++) {
      int n, ty, tx;
      wg_tile_pos(g, t0 + q + l, &n, &ty, &tx);
      float *plane = out + ((size_t)n * (size_t)g->K + (size_t)(k0 + k)) * plane_sz;
      const int rows = MIN(4, g->OH - 4 * ty), cols = MIN(4, g->OW - 4 * tx);
      for (int i = 0; i < rows; i++) {
        float *dst = plane + (size_t)(4 * ty + i) * g->OW + 4 * tx;
        for (int j = 0; j < cols; j++) dst[j] = o[i][j][l];
      }
    }
  }
}

/* ---- filter transform: U[p][kb][c][r] = (G g G^T)[p] of w[k0 + 8 kb + r][c] ---------------------- */

typedef float v8 __attribute__((vector_size(32)));

/* 1-D filter transform G g (3 -> 6). */
#define WG_G(g0, g1, g2, r0, r1, r2, r3, r4, r5)                                                           \
  do {                                                                                                     \
    const v8 s02_ = (g0) + (g2);                                                                           \
    const v8 a_ = (g0) * (1.f / 24) + (g2) * (1.f / 6), b_ = (g1) * (1.f / 12);                            \
    r0 = (g0) * 0.25f;                                                                                     \
    r1 = (s02_ + (g1)) * (-1.f / 6);                                                                       \
    r2 = (s02_ - (g1)) * (-1.f / 6);                                                                       \
    r3 = a_ + b_;                                                                                          \
    r4 = a_ - b_;                                                                                          \
    r5 = (g2);                                                                                             \
  } while (0)

static void wg_filter_transform(int nthr, const float *w, int C, int k0, int kn, int Kp, float *U)
{
  const int nkb = Kp / WG_MR;
  const size_t pstride = (size_t)Kp * (size_t)C;
  const int64_t ntask = (int64_t)nkb * C;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && ntask * (int64_t)WG_MR > 4096)
  for (int64_t task = 0; task < ntask; task++) {
    const int kb = (int)(task / C), c = (int)(task - (int64_t)kb * C);
    v8 g[9], t[6][3];
    const float *wk = w + ((size_t)(k0 + kb * WG_MR) * C + c) * 9; /* lane r: wk[r·9C + a] */
    const int rows = MIN(WG_MR, kn - kb * WG_MR);
#ifdef __AVX2__
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(9 * C));
    if (rows == WG_MR) {
      for (int a = 0; a < 9; a++) g[a] = (v8)_mm256_i32gather_ps(wk + a, idx, 4);
    } else {
      const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32(rows), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (int a = 0; a < 9; a++)
        g[a] = (v8)_mm256_mask_i32gather_ps(_mm256_setzero_ps(), wk + a, idx, _mm256_castsi256_ps(live), 4);
    }
#else
    for (int a = 0; a < 9; a++)
      for (int r = 0; r < WG_MR; r++) g[a][r] = r < rows ? wk[(size_t)r * 9 * C + a] : 0.f;
#endif
    for (int b = 0; b < 3; b++) WG_G(g[b], g[3 + b], g[6 + b], t[0][b], t[1][b], t[2][b], t[3][b], t[4][b], t[5][b]);
    float *ub = U + ((size_t)kb * C + c) * WG_MR;
    for (int i = 0; i < 6; i++) {
      v8 r[6];
      WG_G(t[i][0], t[i][1], t[i][2], r[0], r[1], r[2], r[3], r[4], r[5]);
      for (int j = 0; j < 6; j++) memcpy(ub + (size_t)(i * 6 + j) * pstride, &r[j], sizeof(v8));
    }
  }
}

/* ---- the 36 products M[p] = U[p] V[p] ------------------------------------------------------------ */

/* m[r][0..16 nv) = sum_c u[c][r] v[c][0..16 nv) for r < WG_MR; v and m have row strides ldv, ldm.
 * nv (1..3 vectors of 16 tiles) is a constant at each call site. */
static inline __attribute__((always_inline)) void wg_kernel(int nv, int C, const float *restrict u,
                                                            const float *restrict v, size_t ldv,
                                                            float *restrict m, size_t ldm)
{
  v16 a0[WG_MR], a1[WG_MR], a2[WG_MR];
  for (int r = 0; r < WG_MR; r++) a0[r] = a1[r] = a2[r] = (v16){0};
  for (int c = 0; c < C; c++) {
    const float *vc = v + (size_t)c * ldv;
    const v16 b0 = ld16(vc), b1 = nv > 1 ? ld16(vc + 16) : b0, b2 = nv > 2 ? ld16(vc + 32) : b0;
    const float *uc = u + (size_t)c * WG_MR;
#pragma GCC unroll 8
    for (int r = 0; r < WG_MR; r++) {
      const float s = uc[r];
      a0[r] += s * b0;
      if (nv > 1) a1[r] += s * b1;
      if (nv > 2) a2[r] += s * b2;
    }
  }
  for (int r = 0; r < WG_MR; r++) {
    float *mr = m + (size_t)r * ldm;
    memcpy(mr, &a0[r], sizeof(v16));
    if (nv > 1) memcpy(mr + 16, &a1[r], sizeof(v16));
    if (nv > 2) memcpy(mr + 32, &a2[r], sizeof(v16));
  }
}

/* M[p][k][t] = sum_c U[p][k / WG_MR][c][k % WG_MR] V[p][c][t] for t < tb rounded up to 16. */
static void wg_gemm(int nthr, int C, int Kp, const float *U, const float *V, int64_t tb, size_t ldt, float *M)
{
  const int64_t ngrp = (tb + WG_NR - 1) / WG_NR, ntask = 36 * ngrp;
  const int nkb = Kp / WG_MR;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
  for (int64_t task = 0; task < ntask; task++) {
    const int p = (int)(task / ngrp);
    const int64_t t = (task - (int64_t)p * ngrp) * WG_NR;
    const int nv = (int)MIN((int64_t)3, (tb - t + 15) / 16);
    const float *vp = V + (size_t)p * C * ldt + (size_t)t;
    for (int kb = 0; kb < nkb; kb++) {
      const float *up = U + ((size_t)p * Kp + (size_t)kb * WG_MR) * C;
      float *mp = M + ((size_t)p * Kp + (size_t)kb * WG_MR) * ldt + (size_t)t;
      if (nv == 3)
        wg_kernel(3, C, up, vp, ldt, mp, ldt);
      else if (nv == 2)
        wg_kernel(2, C, up, vp, ldt, mp, ldt);
      else
        wg_kernel(1, C, up, vp, ldt, mp, ldt);
    }
  }
}

gboolean cnnfx_conv3x3_winograd(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                const float *w, int K, const float *bias, int pad_t, int pad_l,
                                int OH, int OW, float *out, GError **error)
{
  if (N <= 0 || K <= 0 || OH <= 0 || OW <= 0) return TRUE;
  CnnfxMem *mem = x ? x->mem : NULL;
  const int nthr = x && x->n_threads > 0 ? x->n_threads : 1;
  const gboolean relu = x && x->fuse_relu; /* fused Relu: max(0, conv + bias) in the output transform */
  WgGeo g = {.N = N, .C = MAX(C, 0), .H = H, .W = W, .K = K, .pt = pad_t, .pl = pad_l, .OH = OH, .OW = OW,
             .TY = (OH + 3) / 4, .TX = (OW + 3) / 4};
  const int64_t ntiles = (int64_t)N * g.TY * g.TX;

  /* K chunk (a multiple of WG_MR) so that U = 36·Kc·C floats stays bounded; tile block (a multiple of
   * WG_NR) from the V + M budget. */
  const int Kp_all = (K + WG_MR - 1) / WG_MR * WG_MR;
  int Kc = (int)MIN((int64_t)Kp_all, (int64_t)(WG_U_BUDGET / (size_t)MAX(g.C, 1)) / WG_MR * WG_MR);
  Kc = MAX(Kc, WG_MR);
  int64_t T = (int64_t)(WG_VM_BUDGET / (36 * ((size_t)g.C + (size_t)Kc)));
  T = MIN(T, (ntiles + WG_NR - 1) / WG_NR * WG_NR);
  T = MAX(T / WG_NR * WG_NR, WG_NR);

  const size_t nU = (size_t)36 * (size_t)Kc * (size_t)g.C, nV = (size_t)36 * (size_t)g.C * (size_t)T;
  /* + 16: the output transform reads whole vectors, up to 15 columns past a row's end */
  const size_t nM = (size_t)36 * (size_t)Kc * (size_t)T + 16;
  float *U = cnnfx_scratch_f32(mem, MAX(nU, 1), error);
  if (!U) return FALSE;
  float *V = cnnfx_scratch_f32(mem, MAX(nV, 1), error);
  if (!V) {
    cnnfx_scratch_free(mem, U, MAX(nU, 1));
    return FALSE;
  }
  float *Mb = cnnfx_scratch_f32(mem, MAX(nM, 1), error);
  if (!Mb) {
    cnnfx_scratch_free(mem, V, MAX(nV, 1));
    cnnfx_scratch_free(mem, U, MAX(nU, 1));
    return FALSE;
  }

  for (int k0 = 0; k0 < K; k0 += Kc) {
    const int kn = MIN(Kc, K - k0), Kp = (kn + WG_MR - 1) / WG_MR * WG_MR;
    wg_filter_transform(nthr, w, g.C, k0, kn, Kp, U);
    for (int64_t t0 = 0; t0 < ntiles; t0 += T) {
      const int64_t tb = MIN(T, ntiles - t0);
      wg_input(&g, nthr, in, t0, tb, (size_t)T, V);
      wg_gemm(nthr, g.C, Kp, U, V, tb, (size_t)T, Mb);
      if (wg_gather_wins(&g))
        wg_output_transform_gather(&g, nthr, Mb, t0, tb, (size_t)T, k0, kn, Kp, bias, relu, out);
      else
        wg_output_transform(&g, nthr, Mb, t0, tb, (size_t)T, k0, kn, Kp, bias, relu, out);
    }
  }

  cnnfx_scratch_free(mem, Mb, MAX(nM, 1));
  cnnfx_scratch_free(mem, V, MAX(nV, 1));
  cnnfx_scratch_free(mem, U, MAX(nU, 1));
  return TRUE;
}

gboolean cnnfx_winograd_wins(int C, int K, int OH, int OW)
{
  return C >= 16 && K >= 16 && (int64_t)OH * OW >= 256;
}

/* ---- weight gradient ------------------------------------------------------------------------------
 *
 * The transposition principle turns F(4x4,3x3) into F(3x3,4x4) with the same matrices: from
 * y = A^T [(G g G^T) ⊙ (B^T d B)] A,   sum_ij dy_ij y_ij = sum_p (A dy A^T)_p (G g G^T)_p (B^T d B)_p,
 * so the gradient of one tile's output w.r.t. the 3x3 kernel is
 *   dg = G^T [ (A dy A^T) ⊙ (B^T d B) ] G.
 * Summed over tiles (and images) before the last transform:
 *   D[p][k][t] = (A dy_t A^T)_p          (4x4 output-gradient tiles, zero past the edge)
 *   V[p][c][t] = (B^T d_t B)_p           (the forward's input transform)
 *   S[p][k][c] = sum_t D[p][k][t] V[p][c][t]   (36 products with a long inner dimension: wg_wgrad_gemm)
 *   dw[k][c]   = G^T S[.][k][c] G
 * 36 multiplications per tile and channel pair instead of 144, like the forward. */

/* 1-D A d (4 -> 6) and G^T m (6 -> 3). */
#define WG_A(d0, d1, d2, d3, r0, r1, r2, r3, r4, r5)                                                       \
  do {                                                                                                     \
    const v16 s02_ = (d0) + (d2), s13_ = (d1) + (d3);                                                      \
    const v16 t02_ = (d0) + 4.f * (d2), t13_ = 2.f * (d1) + 8.f * (d3);                                    \
    r0 = (d0);                                                                                             \
    r1 = s02_ + s13_;                                                                                      \
    r2 = s02_ - s13_;                                                                                      \
    r3 = t02_ + t13_;                                                                                      \
    r4 = t02_ - t13_;                                                                                      \
    r5 = (d3);                                                                                             \
  } while (0)

#define WG_GT(m0, m1, m2, m3, m4, m5, o0, o1, o2)                                                          \
  do {                                                                                                     \
    const double s12_ = (double)(m1) + (m2), d12_ = (double)(m1) - (m2);                                   \
    const double s34_ = (double)(m3) + (m4), d34_ = (double)(m3) - (m4);                                   \
    o0 = 0.25 * (m0) - s12_ / 6 + s34_ / 24;                                                               \
    o1 = -d12_ / 6 + d34_ / 12;                                                                            \
    o2 = -s12_ / 6 + s34_ / 6 + (m5);                                                                      \
  } while (0)

/* D[p][k][t] (row stride ldt) for the block [t0, t0 + T) of the output gradient dy[N][K][OH][OW]
 * (16 consecutive tiles gathered per vector; zero past the edges and up to the next multiple of 16). */
static void wg_dy_transform(const WgGeo *g, int nthr, const float *dy, int64_t t0, int64_t T, size_t ldt, float *D)
{
  const size_t pstride = (size_t)g->K * ldt;
  const int64_t ngrp = (T + 15) / 16, ntask = (int64_t)g->K * ngrp;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && ntask > 1)
  for (int64_t task = 0; task < ntask; task++) {
    const int k = (int)(task / ngrp);
    const int64_t q = (task - (int64_t)k * ngrp) * 16;
    const int nt = (int)MIN((int64_t)16, T - q);
    float d[4][4][16] __attribute__((aligned(64)));
    wg_gather_tiles(g, dy, g->K, k, g->OH, g->OW, t0 + q, nt, 4, 0, 0, &d[0][0][0]);
    v16 t[6][4];
    for (int j = 0; j < 4; j++)
      WG_A(ld16(d[0][j]), ld16(d[1][j]), ld16(d[2][j]), ld16(d[3][j]), t[0][j], t[1][j], t[2][j], t[3][j], t[4][j],
           t[5][j]);
    float *dp = D + (size_t)k * ldt + (size_t)q;
    for (int i = 0; i < 6; i++) {
      v16 r[6];
      WG_A(t[i][0], t[i][1], t[i][2], t[i][3], r[0], r[1], r[2], r[3], r[4], r[5]);
      for (int j = 0; j < 6; j++) memcpy(dp + (size_t)(i * 6 + j) * pstride, &r[j], sizeof(v16));
    }
  }
}

/* The 16 lane sums of x[0..15] in one vector (lane j = the sum of x[j]'s 16 lanes): 4 stages, each adding
 * the two halves of every accumulator's lanes and packing two vectors' accumulators into one. */
#define WG_SHUF __builtin_shufflevector
static inline v16 wg_lane_sums(const v16 *x)
{
  v16 y[8], z[4], w[2];
  for (int i = 0; i < 8; i++) /* accumulators 2i, 2i + 1: 8 lanes each */
    y[i] = WG_SHUF(x[2 * i], x[2 * i + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           WG_SHUF(x[2 * i], x[2 * i + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int i = 0; i < 4; i++) /* 4 lanes each */
    z[i] = WG_SHUF(y[2 * i], y[2 * i + 1], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           WG_SHUF(y[2 * i], y[2 * i + 1], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  for (int i = 0; i < 2; i++) /* 2 lanes each */
    w[i] = WG_SHUF(z[2 * i], z[2 * i + 1], 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           WG_SHUF(z[2 * i], z[2 * i + 1], 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  return WG_SHUF(w[0], w[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
         WG_SHUF(w[0], w[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
#undef WG_SHUF

/* S[p][k][c] = (first ? 0 : S[p][k][c]) + sum_t D[p][k][t] V[p][c][t] over the block's tb tiles (rows of
 * D and V zero-padded to a multiple of 16).  Both operands run along t, so the products are 4 x 4 blocks
 * of (k, c) pairs with one 16-lane accumulator each, summed across lanes once per block: 8 loads per 16
 * FMAs.  OpenMP over (p, 4 output channels); each S entry is summed by one thread in a fixed order, so
 * the result does not depend on the thread count. */
static void wg_wgrad_gemm(int nthr, int K, int C, const float *D, const float *V, int64_t tb, size_t ldt,
                          gboolean first, float *S)
{
  const int64_t tpad = (tb + 15) & ~(int64_t)15;
  const int nkb = (K + 3) / 4;
  const int64_t ntask = (int64_t)36 * nkb;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1)
  for (int64_t task = 0; task < ntask; task++) {
    const int p = (int)(task / nkb), k0 = (int)(task - (int64_t)p * nkb) * 4;
    const float *dr[4], *vr[4];
    for (int i = 0; i < 4; i++) dr[i] = D + ((size_t)p * K + (size_t)MIN(k0 + i, K - 1)) * ldt; /* past K: a copy */
    float *sp = S + (size_t)p * K * C;
    for (int c0 = 0; c0 < C; c0 += 4) {
      for (int j = 0; j < 4; j++) vr[j] = V + ((size_t)p * C + (size_t)MIN(c0 + j, C - 1)) * ldt;
      v16 acc[16];
      for (int i = 0; i < 16; i++) acc[i] = (v16){0};
      for (int64_t t = 0; t < tpad; t += 16) {
        const v16 v0 = ld16(vr[0] + t), v1 = ld16(vr[1] + t), v2 = ld16(vr[2] + t), v3 = ld16(vr[3] + t);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
          const v16 d = ld16(dr[i] + t);
          acc[4 * i] += d * v0;
          acc[4 * i + 1] += d * v1;
          acc[4 * i + 2] += d * v2;
          acc[4 * i + 3] += d * v3;
        }
      }
      const v16 s = wg_lane_sums(acc);
      for (int i = 0; i < 4 && k0 + i < K; i++)
        for (int j = 0; j < 4 && c0 + j < C; j++) {
          float *o = sp + (size_t)(k0 + i) * C + (size_t)(c0 + j);
          *o = first ? s[4 * i + j] : *o + s[4 * i + j];
        }
    }
  }
}

gboolean cnnfx_conv3x3_winograd_wgrad(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                      const float *dy, int K, int pad_t, int pad_l, int OH, int OW, float *dw,
                                      GError **error)
{
  if (N <= 0 || K <= 0 || C <= 0 || OH <= 0 || OW <= 0) { /* nothing to sum (the transform below writes all of dw) */
    if (K > 0 && C > 0) memset(dw, 0, (size_t)K * (size_t)C * 9 * sizeof(float));
    return TRUE;
  }
  CnnfxMem *mem = x ? x->mem : NULL;
  const int nthr = x && x->n_threads > 0 ? x->n_threads : 1;
  WgGeo g = {.N = N, .C = C, .H = H, .W = W, .K = K, .pt = pad_t, .pl = pad_l, .OH = OH, .OW = OW,
             .TY = (OH + 3) / 4, .TX = (OW + 3) / 4};
  const int64_t ntiles = (int64_t)N * g.TY * g.TX;
  /* tile block: V + D within ~32 MiB, a multiple of 16 (whole vectors), at least 64 tiles */
  int64_t T = (int64_t)(((size_t)8 << 20) / (36 * ((size_t)C + (size_t)K)));
  T = MIN(T, (ntiles + 15) / 16 * 16);
  T = MAX(T / 16 * 16, 64);
  const size_t nV = (size_t)36 * C * (size_t)T, nD = (size_t)36 * K * (size_t)T, nS = (size_t)36 * K * C;
  float *V = cnnfx_scratch_f32(mem, nV, error);
  float *D = V ? cnnfx_scratch_f32(mem, nD, error) : NULL;
  float *S = D ? cnnfx_scratch_f32(mem, nS, error) : NULL;
  if (!S) {
    if (D) cnnfx_scratch_free(mem, D, nD);
    if (V) cnnfx_scratch_free(mem, V, nV);
    return FALSE;
  }
  for (int64_t t0 = 0; t0 < ntiles; t0 += T) {
    const int64_t tb = MIN(T, ntiles - t0);
    wg_input(&g, nthr, in, t0, tb, (size_t)T, V);
    wg_dy_transform(&g, nthr, dy, t0, tb, (size_t)T, D);
    wg_wgrad_gemm(nthr, K, C, D, V, tb, (size_t)T, t0 == 0, S);
  }
  /* dw[k][c] = G^T S[.][k][c] G */
  const int64_t KC = (int64_t)K * C;
#pragma omp parallel for schedule(static) num_threads(nthr) if (nthr > 1 && KC > 256)
  for (int64_t kc = 0; kc < KC; kc++) {
    float s[6][6], t[3][6];
    for (int p = 0; p < 36; p++) s[p / 6][p % 6] = S[(size_t)p * KC + kc];
    for (int j = 0; j < 6; j++) WG_GT(s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], s[5][j], t[0][j], t[1][j], t[2][j]);
    float *o = dw + kc * 9;
    for (int i = 0; i < 3; i++) WG_GT(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], o[i * 3], o[i * 3 + 1], o[i * 3 + 2]);
  }
  cnnfx_scratch_free(mem, S, nS);
  cnnfx_scratch_free(mem, D, nD);
  cnnfx_scratch_free(mem, V, nV);
  return TRUE;
}
