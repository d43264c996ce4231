/* Direct convolution for layers with few input channels: the RGB stem of a network (GoogLeNet's
 * and ResNet's 7x7 stride-2 conv on 3 channels).  im2col + sgemm does these badly: the column
 * matrix is Ci*KH*KW = 147 rows of strided gathers, 25x the input's size, and the GEMM's inner
 * dimension is small.  Here the input is copied once into a zero-padded, column-phase-split layout
 *
 *   P[c][q][r][j] = img[c][r - pt][j*sw + q - pl]      (q < sw: the column phase)
 *
 * so that every tap of a strided convolution reads a contiguous run of P, and the output is
 * computed directly: for one output row and a block of XB columns, OB output channels are kept
 * in vector registers while all Ci*KH*KW taps stream past (FMA with a broadcast weight).
 *
 * The input gradient (the adjoint) is split by input-column phase the same way: the input columns
 * t with (t + pl) % sw == rho receive dY[o][y][m - a] * W[o][c][kh][rho + sw*a] for consecutive m,
 * i.e. again contiguous loads, with all Ci input channels in registers.
 *
 * Exact arithmetic (no transform): the same sums as im2col + sgemm in another order, so it also
 * runs in --exact mode.  Compiled once per SIMD level (GCC vector extensions: 16, 8 or 4 lanes). */
#include "cpu/convdirect.h"

#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
typedef float vf __attribute__((vector_size(VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(VW * sizeof(float))));

#define OB 8                /* forward: output channels per register block */
#define NV 3                /* forward: vectors per block (XB = NV*VW columns) */
#define XB (NV * VW)
#define NA 3                /* adjoint: vectors per block */
#define XA (NA * VW)
#define CMAX 4              /* input channels the direct path takes */

static inline vf vload(const float *p)
{
  vf v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

static inline vf vbcast(float a) { return (vf){0} + a; }

gboolean cnnfx_conv_direct_wins(const CnnfxConvGeo *g)
{
  if (g->G != 1 || g->Ci > CMAX || g->Ci < 1) return FALSE;
  if (g->is[0] != 1 || g->os[0] != 1 || g->k[0] != 1) return FALSE; /* 1-D or 2-D */
  if (g->d[1] != 1 || g->d[2] != 1) return FALSE;
  if (g->s[1] < 1 || g->s[1] > 4 || g->s[2] < 1 || g->s[2] > 2) return FALSE; /* adjoint: 2 column phases */
  if (g->p[1] < 0 || g->p[2] < 0 || g->kk < 9) return FALSE;
  /* worth it when the output is big enough to amortise the padded copies */
  return g->osz >= 1024 && g->Co >= 8;
}

static inline int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

/* ---- forward ------------------------------------------------------------------------------ */

gboolean cnnfx_conv_direct_fwd(const CnnfxExec *x, const CnnfxConvGeo *g, const float *img, const float *W,
                               const float *bias, gboolean relu, float *out, GError **error)
{
  const int64_t Ci = g->Ci, Co = g->Co, IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2];
  const int64_t KH = g->k[1], KW = g->k[2], sh = g->s[1], sw = g->s[2], pt = g->p[1], pl = g->p[2];
  const int64_t R = (OH - 1) * sh + KH;                 /* padded rows read */
  const int64_t OWB = round_up(OW, XB);                 /* output columns computed */
  const int64_t J = OWB + (KW - 1) / sw + 1;            /* padded columns per phase */
  const int64_t nob = (Co + OB - 1) / OB, CoP = nob * OB, taps = Ci * KH * KW;
  const size_t np = (size_t)(Ci * sw * R * J), nw = (size_t)(taps * CoP);
  float *P, *Wt;
  if (!cnnfx_scratch_f32_pair(x->mem, np, &P, nw, &Wt, error)) return FALSE;
  /* Wt[tap][o] (o padded to CoP with zeros): one block's weights of a tap are adjacent */
  for (int64_t t = 0; t < taps; t++)
    for (int64_t o = 0; o < CoP; o++) Wt[t * CoP + o] = o < Co ? W[o * taps + t] : 0.f;
  for (int64_t n = 0; n < g->N; n++) {
    const float *in = img + n * Ci * IH * IW;
    float *o_n = out + n * Co * OH * OW;
#pragma omp parallel for schedule(static) if (Ci * sw * R * J > 32768)
    for (int64_t i = 0; i < Ci * sw * R; i++) {
      const int64_t r = i % R, q = (i / R) % sw, c = i / (R * sw);
      float *dst = P + i * J;
      const int64_t ir = r - pt;
      if (ir < 0 || ir >= IH) {
        memset(dst, 0, (size_t)J * sizeof(float));
        continue;
      }
      const float *src = in + (c * IH + ir) * IW;
      for (int64_t j = 0; j < J; j++) {
        const int64_t ic = j * sw + q - pl;
        dst[j] = ic >= 0 && ic < IW ? src[ic] : 0.f;
      }
    }
#pragma omp parallel for collapse(2) schedule(static) if (OH * nob * OWB * taps > 32768)
    for (int64_t y = 0; y < OH; y++)
      for (int64_t ob = 0; ob < nob; ob++) {
        const int64_t o0 = ob * OB, on = MIN((int64_t)OB, Co - o0);
        for (int64_t x0 = 0; x0 < OWB; x0 += XB) {
          vf acc[OB][NV];
          for (int b = 0; b < OB; b++)
            for (int v = 0; v < NV; v++) acc[b][v] = (vf){0};
          const float *wp = Wt + o0;
          for (int64_t c = 0; c < Ci; c++)
            for (int64_t kh = 0; kh < KH; kh++) {
              const float *row = P + ((c * sw) * R + y * sh + kh) * J + x0;
              for (int64_t kw = 0; kw < KW; kw++, wp += CoP) {
                const float *rp = row + (kw % sw) * R * J + kw / sw;
                vf in_v[NV];
                for (int v = 0; v < NV; v++) in_v[v] = vload(rp + v * VW);
                for (int b = 0; b < OB; b++) {
                  const vf w = vbcast(wp[b]);
                  for (int v = 0; v < NV; v++) acc[b][v] += w * in_v[v];
                }
              }
            }
          const int64_t nx = MIN((int64_t)XB, OW - x0);
          for (int64_t b = 0; b < on; b++) {
            float *orow = o_n + ((o0 + b) * OH + y) * OW + x0;
            const vf bv = vbcast(bias ? bias[o0 + b] : 0.f);
            float tmp[XB];
            for (int v = 0; v < NV; v++) {
              vf a = acc[b][v] + bv;
              if (relu) a = (vf)((vi)a & (a > (vf){0})); /* x > 0 ? x : 0 (NaN and -0 give +0) */
              vstore(tmp + v * VW, a);
            }
            memcpy(orow, tmp, (size_t)nx * sizeof(float));
          }
        }
      }
  }
  cnnfx_scratch_free(x->mem, Wt, nw);
  cnnfx_scratch_free(x->mem, P, np);
  return TRUE;
}

/* ---- adjoint: img = conv^T(out) -------------------------------------------------------------- */

#define RB 32 /* input rows per band: the padded copy of dY holds only the rows a band reads */

/* One input row r, columns m in [m0, m0 + XA) of every column phase rho < SW: res[rho][c][.].
 * Both phases read the same dY row segments, so they share the loads.  Wa[o][kh][a][rho][c]
 * (zero where rho + SW*a >= KW, channels padded to CMAX). */
static inline __attribute__((always_inline)) void adj_block(const CnnfxConvGeo *g, const float *Q, int64_t QW,
                                                          int64_t QR, int64_t ylo, int64_t XL, int64_t AM,
                                                          const float *Wa, int64_t r, int64_t m0, int CB, int SW,
                                                          float *res)
{
  const int64_t Co = g->Co, OH = g->os[1], KH = g->k[1], sh = g->s[1], pt = g->p[1];
  vf acc[2][CMAX][NA];
  for (int q = 0; q < SW; q++)
    for (int c = 0; c < CB; c++)
      for (int v = 0; v < NA; v++) acc[q][c][v] = (vf){0};
  for (int64_t kh = (r + pt) % sh; kh < KH; kh += sh) {
    const int64_t y = (r + pt - kh) / sh;
    if (y < 0) break;
    if (y >= OH) continue;
    for (int64_t o = 0; o < Co; o++) {
      const float *qrow = Q + (o * QR + y - ylo) * QW + XL + m0;
      const float *wp = Wa + (o * KH + kh) * AM * SW * CMAX;
      for (int64_t a = 0; a < AM; a++, wp += SW * CMAX) {
        vf in_v[NA];
        for (int v = 0; v < NA; v++) in_v[v] = vload(qrow - a + v * VW);
        for (int q = 0; q < SW; q++)
          for (int c = 0; c < CB; c++) {
            const vf w = vbcast(wp[q * CMAX + c]);
            for (int v = 0; v < NA; v++) acc[q][c][v] += w * in_v[v];
          }
      }
    }
  }
  for (int q = 0; q < SW; q++)
    for (int c = 0; c < CB; c++)
      for (int v = 0; v < NA; v++) vstore(res + (q * CMAX + c) * XA + v * VW, acc[q][c][v]);
}

gboolean cnnfx_conv_direct_adj(const CnnfxExec *x, const CnnfxConvGeo *g, const float *out, const float *W,
                               float *img, GError **error)
{
  const int64_t Ci = g->Ci, Co = g->Co, IH = g->is[1], IW = g->is[2], OH = g->os[1], OW = g->os[2];
  const int64_t KH = g->k[1], KW = g->k[2], sh = g->s[1], sw = g->s[2], pt = g->p[1], pl = g->p[2];
  const int64_t AM = (KW + sw - 1) / sw;                     /* taps per column phase */
  const int64_t XL = AM - 1;                                 /* reads reach m - XL */
  const int64_t MB = round_up((IW - 1 + pl) / sw + 1, XA);   /* columns m per phase */
  const int64_t QW = XL + MAX(MB, OW);
  const int64_t QR = (RB - 1 + KH - 1) / sh + 2;             /* dY rows one band reads, at most */
  const size_t nq = (size_t)(Co * QR * QW), nw = (size_t)(Co * KH * AM * sw * CMAX);
  float *Q, *Wa;
  if (!cnnfx_scratch_f32_pair(x->mem, nq, &Q, nw, &Wa, error)) return FALSE;
  for (int64_t o = 0; o < Co; o++)
    for (int64_t kh = 0; kh < KH; kh++)
      for (int64_t a = 0; a < AM; a++)
        for (int64_t q = 0; q < sw; q++)
          for (int64_t c = 0; c < CMAX; c++) {
            const int64_t kw = q + sw * a;
            Wa[(((o * KH + kh) * AM + a) * sw + q) * CMAX + c] =
              c < Ci && kw < KW ? W[((o * Ci + c) * KH + kh) * KW + kw] : 0.f;
          }
  for (int64_t n = 0; n < g->N; n++) {
    const float *dy = out + n * Co * OH * OW;
    float *dx = img + n * Ci * IH * IW;
    for (int64_t r0 = 0; r0 < IH; r0 += RB) {
      const int64_t r1 = MIN(IH, r0 + RB);
      /* dY rows y with y*sh + kh - pt in [r0, r1) for some kh */
      const int64_t ylo = MAX((int64_t)0, (r0 + pt - (KH - 1) + sh - 1 + sh * KH) / sh - KH);
      const int64_t yhi = MIN(OH - 1, (r1 - 1 + pt) / sh);
      const int64_t ny = yhi - ylo + 1;
      if (ny <= 0) { /* no dY row reaches these input rows */
        for (int64_t c = 0; c < Ci; c++) memset(dx + (c * IH + r0) * IW, 0, (size_t)((r1 - r0) * IW) * sizeof(float));
        continue;
      }
#pragma omp parallel for schedule(static) if (Co * ny * QW > 32768)
      for (int64_t i = 0; i < Co * ny; i++) {
        const int64_t o = i / ny, y = ylo + i % ny;
        float *dst = Q + (o * QR + y - ylo) * QW;
        memset(dst, 0, (size_t)XL * sizeof(float));
        memcpy(dst + XL, dy + (o * OH + y) * OW, (size_t)OW * sizeof(float));
        memset(dst + XL + OW, 0, (size_t)(QW - XL - OW) * sizeof(float));
      }
#pragma omp parallel for collapse(2) schedule(static) if ((r1 - r0) * MB * Co * KH * KW > 32768)
      for (int64_t r = r0; r < r1; r++)
        for (int64_t m0 = 0; m0 < MB; m0 += XA) {
          float res[2 * CMAX * XA];
#define ADJ(CB, SW) adj_block(g, Q, QW, QR, ylo, XL, AM, Wa, r, m0, CB, SW, res)
          if (sw == 1) {
            switch (Ci) {
            case 1: ADJ(1, 1); break;
            case 2: ADJ(2, 1); break;
            case 3: ADJ(3, 1); break;
            default: ADJ(4, 1); break;
            }
          } else {
            switch (Ci) {
            case 1: ADJ(1, 2); break;
            case 2: ADJ(2, 2); break;
            case 3: ADJ(3, 2); break;
            default: ADJ(4, 2); break;
            }
          }
#undef ADJ
          /* input column t = m*sw + q - pl */
          for (int64_t q = 0; q < sw; q++)
            for (int64_t c = 0; c < Ci; c++) {
              float *drow = dx + (c * IH + r) * IW;
              const float *src = res + (q * CMAX + c) * XA;
              for (int64_t m = m0; m < m0 + XA; m++) {
                const int64_t t = m * sw + q - pl;
                if (t >= 0 && t < IW) drow[t] = src[m - m0];
              }
            }
        }
    }
  }
  cnnfx_scratch_free(x->mem, Wa, nw);
  cnnfx_scratch_free(x->mem, Q, nq);
  return TRUE;
}
