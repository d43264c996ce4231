/* CPU kernels: pooling.  MaxPool, AveragePool (1-D/2-D/3-D), GlobalAveragePool, GlobalMaxPool,
 * forward and backward into tensors the session has allocated (definitions: core/ops/pool.c).
 *
 * Every windowed pool is computed on a 3-D view [planes][D][H][W] of the input (1-D and 2-D
 * pools get unit leading spatial dims).  Forward is separable: for each output row the valid
 * input rows of the window are reduced into one row buffer (contiguous, vectorised), then the
 * row is pooled horizontally with the stride.  Backward: MaxPool reads the argmax its
 * forward saved (aux: the tap of each window's first maximum in scan order, as the Indices output)
 * and scatters the gradient plane by plane.  Without aux (a caller that runs the backward without
 * the forward's state) it recomputes the argmax from its input; when windows
 * do not overlap along D and H (kernel == stride, the VGG case) each work item owns its input rows
 * and writes them completely.  Otherwise the gradient is scattered into a zeroed tensor with output
 * rows grouped into blocks large enough that blocks i and i+2 never touch the same input rows; even
 * and odd blocks run in two parallel phases. */
#include "ops/pool.h"
#include <math.h>
#include <omp.h>

typedef struct {
  int *j0[3], *j1[3];
  float *inv[3];                   /* 1 / count (AveragePool), 0 for empty windows */
  void *block;
  size_t bytes;
} PoolTables;

static int thread_count(const CnnfxExec *x)
{
  int nt = x && x->n_threads > 0 ? x->n_threads : omp_get_max_threads();
  return nt > 0 ? nt : 1;
}

static void tables_free(const CnnfxExec *x, PoolTables *t)
{
  if (t->block) cnnfx_mem_free(x->mem, t->block, t->bytes);
  t->block = NULL;
}

static gboolean tables_make(const CnnfxExec *x, const CnnfxPoolGeom *g, gboolean include_pad, PoolTables *t,
                            GError **error)
{
  size_t tot = 0;
  for (int i = 0; i < 3; i++) tot += (size_t)g->O[i];
  t->bytes = tot * (2 * sizeof(int) + sizeof(float));
  t->block = cnnfx_mem_alloc(x->mem, t->bytes, error);
  if (!t->block) return FALSE;
  int *ip = t->block;
  float *fp = (float *)(ip + 2 * tot);
  for (int i = 0; i < 3; i++) {
    t->j0[i] = ip;
    ip += g->O[i];
    t->j1[i] = ip;
    ip += g->O[i];
    t->inv[i] = fp;
    fp += g->O[i];
    int64_t I = g->I[i], k = g->k[i], s = g->s[i], d = g->d[i], pb = g->pb[i], pe = g->pe[i];
    for (int64_t o = 0; o < g->O[i]; o++) {
      int64_t start = o * s - pb;
      int64_t j0 = start >= 0 ? 0 : (-start + d - 1) / d;
      int64_t j1 = I - start <= 0 ? 0 : (I - start + d - 1) / d;
      if (j1 > k) j1 = k;
      if (j0 > j1) j0 = j1;
      t->j0[i][o] = (int)j0;
      t->j1[i][o] = (int)j1;
      int64_t cnt;
      if (include_pad) {
        int64_t e = I + pe - start; /* taps before the end of the padded range */
        int64_t jp = e <= 0 ? 0 : (e + d - 1) / d;
        cnt = jp > k ? k : jp;
      } else {
        cnt = j1 - j0;
      }
      t->inv[i][o] = cnt > 0 ? 1.f / (float)cnt : 0.f;
    }
  }
  return TRUE;
}

/* Output range [a, b) along W whose windows lie fully inside the input. */
static void interior_range(const CnnfxPoolGeom *g, const PoolTables *t, int64_t *a, int64_t *b)
{
  int64_t OW = g->O[2], k = g->k[2];
  int64_t lo = 0, hi = OW;
  while (lo < OW && t->j0[2][lo] != 0) lo++;
  while (hi > lo && t->j1[2][hi - 1] != k) hi--;
  /* every ow in [lo, hi) is interior: j0 is non-increasing and j1 non-increasing in ow */
  *a = lo;
  *b = hi;
}

/* ---- forward ----------------------------------------------------------------------------- */

static inline __attribute__((always_inline)) void hmax_run(const float *restrict t, float *restrict o, int64_t a,
                                                           int64_t b, int64_t s, int64_t k, int64_t d, int64_t off)
{
  for (int64_t w = a; w < b; w++) o[w] = t[w * s + off];
  for (int64_t j = 1; j < k; j++) {
    const float *tj = t + off + j * d;
    for (int64_t w = a; w < b; w++) {
      float v = tj[w * s];
      o[w] = o[w] > v ? o[w] : v;
    }
  }
}

static inline __attribute__((always_inline)) void hsum_run(const float *restrict t, float *restrict o, int64_t a,
                                                           int64_t b, int64_t s, int64_t k, int64_t d, int64_t off)
{
  for (int64_t w = a; w < b; w++) o[w] = t[w * s + off];
  for (int64_t j = 1; j < k; j++) {
    const float *tj = t + off + j * d;
    for (int64_t w = a; w < b; w++) o[w] += tj[w * s];
  }
}

static void hpool(const float *t, float *o, const CnnfxPoolGeom *g, const PoolTables *tb, int64_t a, int64_t b,
                  gboolean is_max)
{
  int64_t s = g->s[2], k = g->k[2], d = g->d[2], off = -g->pb[2];
  if (b > a) {
    if (is_max) {
      if (s == 1) hmax_run(t, o, a, b, 1, k, d, off);
      else if (s == 2) hmax_run(t, o, a, b, 2, k, d, off);
      else hmax_run(t, o, a, b, s, k, d, off);
    } else {
      if (s == 1) hsum_run(t, o, a, b, 1, k, d, off);
      else if (s == 2) hsum_run(t, o, a, b, 2, k, d, off);
      else hsum_run(t, o, a, b, s, k, d, off);
    }
  }
  /* edges */
  for (int64_t w = 0; w < g->O[2]; w++) {
    if (w == a && b > a) {
      w = b - 1;
      continue;
    }
    int j0 = tb->j0[2][w], j1 = tb->j1[2][w];
    const float *tw = t + w * s + off;
    float acc;
    if (j1 <= j0) {
      acc = 0.f;
    } else if (is_max) {
      acc = tw[j0 * d];
      for (int j = j0 + 1; j < j1; j++) acc = acc > tw[j * d] ? acc : tw[j * d];
    } else {
      acc = 0.f;
      for (int j = j0; j < j1; j++) acc += tw[j * d];
    }
    o[w] = acc;
  }
}

static gboolean pool_forward_sep(const CnnfxExec *x, const CnnfxPoolGeom *g, const PoolTables *tb, const float *X,
                                 float *Y, gboolean is_max, GError **error)
{
  int nt = thread_count(x);
  int64_t IW = g->I[2], OW = g->O[2], OD = g->O[0], OH = g->O[1];
  int64_t items = g->planes * OD * OH;
  size_t per = ((size_t)IW + 15) & ~(size_t)15;
  float *scratch = cnnfx_scratch_f32(x->mem, per * (size_t)nt, error);
  if (!scratch) return FALSE;
  int64_t a, b;
  interior_range(g, tb, &a, &b);
  if (items < nt) nt = (int)MAX(items, 1);
#pragma omp parallel num_threads(nt)
  {
    float *buf = scratch + per * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t p = it / (OD * OH), r = it % (OD * OH), od = r / OH, oh = r % OH;
      const float *xp = X + p * g->in_plane;
      float *yr = Y + it * OW;
      int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
      int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
      int nrows = (jd1 - jd0) * (jh1 - jh0);
      if (nrows <= 0) {
        for (int64_t w = 0; w < OW; w++) yr[w] = 0.f;
        continue;
      }
      const float *t = NULL, *prev = NULL;
      int cnt = 0;
      for (int jd = jd0; jd < jd1; jd++) {
        for (int jh = jh0; jh < jh1; jh++) {
          const float *row = xp + ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * IW;
          if (cnt == 0) {
            t = prev = row; /* a single row is pooled in place */
          } else {
            const float *src = cnt == 1 ? prev : buf; /* fold the first two rows without a copy */
            if (is_max)
              for (int64_t w = 0; w < IW; w++) buf[w] = src[w] > row[w] ? src[w] : row[w];
            else
              for (int64_t w = 0; w < IW; w++) buf[w] = src[w] + row[w];
            t = buf;
          }
          cnt++;
        }
      }
      hpool(t, yr, g, tb, a, b, is_max);
      if (!is_max) {
        float rs = tb->inv[0][od] * tb->inv[1][oh];
        const float *iw = tb->inv[2];
        for (int64_t w = 0; w < OW; w++) yr[w] *= rs * iw[w];
      }
    }
  }
  cnnfx_scratch_free(x->mem, scratch, per * (size_t)thread_count(x));
  return TRUE;
}


/* One tap of the vectorised forward argmax: columns [a, b) compare row[w * s] against the best so far
 * (strictly greater wins: the first maximum in scan order). */
static inline __attribute__((always_inline)) void argmax_tap_fwd(const float *restrict row, float *restrict bv,
                                                                 float *restrict bt, int64_t a, int64_t b,
                                                                 int64_t s, float tap, gboolean first)
{
  if (first) {
    for (int64_t w = a; w < b; w++) {
      bv[w] = row[w * s];
      bt[w] = tap;
    }
  } else {
    for (int64_t w = a; w < b; w++) {
      float v = row[w * s];
      gboolean gt = v > bv[w];
      bv[w] = gt ? v : bv[w];
      bt[w] = gt ? tap : bt[w];
    }
  }
}

/* One input row of the forward argmax with the KW horizontal taps fused (KW, s, d constant after
 * inlining): per column the row's first maximum, folded into the best so far (strictly greater wins,
 * rows in scan order). */
static inline __attribute__((always_inline)) void argmax_row_fwd(const float *restrict row, float *restrict bv,
                                                                 float *restrict bt, int64_t a, int64_t b,
                                                                 int64_t s, int64_t d, int kw, float tap0,
                                                                 gboolean first)
{
  for (int64_t w = a; w < b; w++) {
    const float *r = row + w * s;
    float m = r[0], j = tap0;
    for (int q = 1; q < kw; q++) {
      float v = r[q * d];
      j = v > m ? tap0 + (float)q : j;
      m = v > m ? v : m;
    }
    if (first) {
      bv[w] = m;
      bt[w] = j;
    } else {
      float o = bv[w], ot = bt[w];
      bt[w] = m > o ? j : ot;
      bv[w] = m > o ? m : o;
    }
  }
}

#define ARGMAX_ROW(first)                                                                                    \
  do {                                                                                                       \
    if (s == 1) argmax_row_fwd(row, bv, bt, a, b, 1, 1, KWC, tap0, first);                                   \
    else if (s == 2) argmax_row_fwd(row, bv, bt, a, b, 2, 1, KWC, tap0, first);                              \
    else argmax_row_fwd(row, bv, bt, a, b, s, 1, KWC, tap0, first);                                          \
  } while (0)

/* The common 3x3 window with all three rows inside: the nine taps in registers, in scan order. */
static inline __attribute__((always_inline)) void argmax_3x3(const float *restrict r0, const float *restrict r1,
                                                             const float *restrict r2, float *restrict bv,
                                                             float *restrict bt, int64_t a, int64_t b, int64_t s,
                                                             float t0, float t1, float t2)
{
  for (int64_t w = a; w < b; w++) {
    const float *p0 = r0 + w * s, *p1 = r1 + w * s, *p2 = r2 + w * s;
    float m = p0[0], j = t0, v;
#define ARGMAX_STEP(val, tap)                                                                                \
  v = (val);                                                                                                 \
  j = v > m ? (tap) : j;                                                                                     \
  m = v > m ? v : m;
    ARGMAX_STEP(p0[1], t0 + 1.f)
    ARGMAX_STEP(p0[2], t0 + 2.f)
    ARGMAX_STEP(p1[0], t1)
    ARGMAX_STEP(p1[1], t1 + 1.f)
    ARGMAX_STEP(p1[2], t1 + 2.f)
    ARGMAX_STEP(p2[0], t2)
    ARGMAX_STEP(p2[1], t2 + 1.f)
    ARGMAX_STEP(p2[2], t2 + 2.f)
#undef ARGMAX_STEP
    bv[w] = m;
    bt[w] = j;
  }
}

/* Interior columns [a, b) of one row of windows of width 2 or 3 (dilation 1). */
static void argmax_rows_fused(const float *const *rows, const float *taps, int nr, float *restrict bv,
                              float *restrict bt, int64_t a, int64_t b, int64_t s, int64_t kw)
{
  if (nr == 3 && kw == 3) {
    if (s == 1) argmax_3x3(rows[0], rows[1], rows[2], bv, bt, a, b, 1, taps[0], taps[1], taps[2]);
    else if (s == 2) argmax_3x3(rows[0], rows[1], rows[2], bv, bt, a, b, 2, taps[0], taps[1], taps[2]);
    else argmax_3x3(rows[0], rows[1], rows[2], bv, bt, a, b, s, taps[0], taps[1], taps[2]);
    return;
  }
  for (int r = 0; r < nr; r++) {
    const float *row = rows[r];
    const float tap0 = taps[r];
    if (kw == 3) {
#define KWC 3
      if (r == 0) ARGMAX_ROW(TRUE);
      else ARGMAX_ROW(FALSE);
#undef KWC
    } else {
#define KWC 2
      if (r == 0) ARGMAX_ROW(TRUE);
      else ARGMAX_ROW(FALSE);
#undef KWC
    }
  }
}

/* MaxPool forward that also finds each window's argmax: Y, and optionally the Indices output (Ind)
 * and the backward's aux state (see core/ops/pool.h).  Scratch: per thread OW floats + OW int32. */
static void maxpool_forward_argmax(const CnnfxExec *x, const CnnfxPoolGeom *g, const PoolTables *tb, const float *X,
                                   float *Y, int64_t *Ind, gboolean col_major, void *aux, float *scratch, size_t per)
{
  int nt = thread_count(x);
  const int64_t OD = g->O[0], OH = g->O[1], OW = g->O[2], KH = g->k[1], KW = g->k[2];
  const int64_t items = g->planes * OD * OH;
  const size_t owp = ((size_t)OW + 15) & ~(size_t)15;
  const gboolean wide = cnnfx_maxpool_aux_wide(g);
  /* 2- and 3-wide windows of up to 9 rows (dilation 1 along W): taps of a row fused */
  const gboolean fused = (KW == 2 || KW == 3) && g->d[2] == 1 && g->k[0] * KH <= 9;
  int64_t a, b;
  interior_range(g, tb, &a, &b);
  if (items < nt) nt = (int)MAX(items, 1);
#pragma omp parallel num_threads(nt)
  {
    float *bv = scratch + per * (size_t)omp_get_thread_num();
    float *bt = bv + owp; /* tap indices (exact in float: windows have fewer than 2^24 taps) */
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t p = it / (OD * OH), r = it % (OD * OH), od = r / OH, oh = r % OH;
      const float *xp = X + p * g->in_plane;
      int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
      int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
      int64_t s = g->s[2], d = g->d[2], pw = g->pb[2];
      gboolean first = TRUE;
      if (b > a && fused) {
        const float *rows[9];
        float taps[9];
        int nr = 0;
        for (int jd = jd0; jd < jd1; jd++)
          for (int jh = jh0; jh < jh1; jh++) {
            rows[nr] = xp + ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2] - pw;
            taps[nr++] = (float)((jd * KH + jh) * KW);
          }
        if (nr > 0) {
          argmax_rows_fused(rows, taps, nr, bv, bt, a, b, s, KW);
          first = FALSE;
        }
      } else if (b > a) {
        for (int jd = jd0; jd < jd1; jd++) {
          for (int jh = jh0; jh < jh1; jh++) {
            int64_t rowoff = ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2];
            for (int64_t jw = 0; jw < KW; jw++) {
              const float *row = xp + rowoff + jw * d - pw;
              float tap = (float)((jd * KH + jh) * KW + jw);
              if (s == 1) argmax_tap_fwd(row, bv, bt, a, b, 1, tap, first);
              else if (s == 2) argmax_tap_fwd(row, bv, bt, a, b, 2, tap, first);
              else argmax_tap_fwd(row, bv, bt, a, b, s, tap, first);
              first = FALSE;
            }
          }
        }
      }
      if (first) /* no input row in these windows (padding wider than the kernel) */
        for (int64_t w = a; w < b; w++) bt[w] = -1.f;
      /* edge columns: scalar */
      for (int64_t ow = 0; ow < OW; ow++) {
        if (ow == a && b > a) {
          ow = b - 1;
          continue;
        }
        int jw0 = tb->j0[2][ow], jw1 = tb->j1[2][ow];
        int64_t sw = ow * s - pw;
        int32_t best = -1;
        float m = 0.f;
        for (int jd = jd0; jd < jd1; jd++) {
          for (int jh = jh0; jh < jh1; jh++) {
            const float *row = xp + ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2] + sw;
            for (int jw = jw0; jw < jw1; jw++) {
              float v = row[jw * d];
              if (best < 0 || v > m) {
                m = v;
                best = (int32_t)((jd * KH + jh) * KW + jw);
              }
            }
          }
        }
        bv[ow] = m;
        bt[ow] = (float)best;
      }
      float *yr = Y + it * OW;
      for (int64_t ow = 0; ow < OW; ow++) yr[ow] = bt[ow] >= 0.f ? bv[ow] : 0.f;
      if (aux) {
        if (wide) {
          int32_t *ar = (int32_t *)aux + it * OW;
          for (int64_t ow = 0; ow < OW; ow++) ar[ow] = (int32_t)bt[ow];
        } else {
          uint8_t *ar = (uint8_t *)aux + it * OW;
          /* -1 (empty) wraps to 255 = CNNFX_MAXPOOL_AUX_EMPTY8 */
          for (int64_t ow = 0; ow < OW; ow++) ar[ow] = (uint8_t)((int32_t)bt[ow] & 0xff);
        }
      }
      if (Ind) {
        int64_t *ir = Ind + it * OW;
        for (int64_t ow = 0; ow < OW; ow++) {
          int64_t t = (int64_t)bt[ow];
          if (t < 0) {
            ir[ow] = -1;
            continue;
          }
          int64_t jd = t / (KH * KW), jh = (t / KW) % KH, jw = t % KW;
          int64_t id = sd + jd * g->d[0], ih = sh + jh * g->d[1], iw = ow * s - pw + jw * d;
          int64_t pos = (id * g->I[1] + ih) * g->I[2] + iw;
          if (col_major) {
            /* reverse the order of the spatial dims (only the op's own spatial dims count) */
            if (g->nsp == 3) pos = id + g->I[0] * (ih + g->I[1] * iw);
            else pos = ih + g->I[1] * iw;
          }
          ir[ow] = p * g->in_plane + pos;
        }
      }
    }
  }
}

/* The common 2x2 / stride 2 max-pool without padding or dilation (VGG, ResNet stems, airbench),
 * with the backward's 8-bit aux state: whole planes per thread, no per-row tables.  The same
 * choices as maxpool_forward_argmax's fused path (each row's first maximum, then the rows folded
 * with "strictly greater wins"), so Y and aux are bit-identical to it. */
static gboolean is_plain_2x2(const CnnfxPoolGeom *g)
{
  return g->I[0] == 1 && g->O[0] == 1 && g->k[0] == 1 && g->k[1] == 2 && g->k[2] == 2 && g->s[1] == 2 &&
         g->s[2] == 2 && g->d[1] == 1 && g->d[2] == 1 && g->pb[1] == 0 && g->pb[2] == 0 && g->pe[1] == 0 &&
         g->pe[2] == 0 && g->O[1] == g->I[1] / 2 && g->O[2] == g->I[2] / 2 && g->O[1] > 0 && g->O[2] > 0 &&
         !cnnfx_maxpool_aux_wide(g);
}

static void maxpool_2x2_forward(const CnnfxExec *x, const CnnfxPoolGeom *g, const float *X, float *Y, uint8_t *aux)
{
  const int64_t IW = g->I[2], OH = g->O[1], OW = g->O[2];
  const int nt = (int)MIN((int64_t)thread_count(x), MAX(g->planes, (int64_t)1));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t p = 0; p < g->planes; p++) {
    const float *xp = X + p * g->in_plane;
    float *yp = Y + p * g->out_plane;
    uint8_t *ap = aux + p * g->out_plane;
    for (int64_t oh = 0; oh < OH; oh++) {
      const float *r0 = xp + 2 * oh * IW, *r1 = r0 + IW;
      float *yr = yp + oh * OW;
      uint8_t *ar = ap + oh * OW;
      for (int64_t ow = 0; ow < OW; ow++) {
        float a0 = r0[2 * ow], a1 = r0[2 * ow + 1], b0 = r1[2 * ow], b1 = r1[2 * ow + 1];
        float m0 = a1 > a0 ? a1 : a0, m1 = b1 > b0 ? b1 : b0;
        uint8_t t0 = a1 > a0 ? 1 : 0, t1 = b1 > b0 ? 3 : 2;
        gboolean g1 = m1 > m0;
        yr[ow] = g1 ? m1 : m0;
        ar[ow] = g1 ? t1 : t0;
      }
    }
  }
}

static gboolean pool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, gboolean is_max, GError **error)
{
  const CnnfxTensor *X = in[0];
  CnnfxPoolGeom g;
  if (!cnnfx_pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  gboolean include_pad = !is_max && cnnfx_attr_int(n, "count_include_pad", 0) != 0;
  gboolean want_ind = is_max && n->n_out > 1 && n->out[1] >= 0;
  if (out[0]->numel == 0) return TRUE;
  if (is_max && aux && !want_ind && is_plain_2x2(&g)) {
    maxpool_2x2_forward(x, &g, cnnfx_f32(X), cnnfx_f32(out[0]), aux);
    return TRUE;
  }
  PoolTables tb = {0};
  if (!tables_make(x, &g, include_pad, &tb, error)) return FALSE;
  gboolean ok = TRUE;
  if (is_max && (want_ind || aux)) {
    const int nt = thread_count(x);
    const size_t per = 2 * (((size_t)g.O[2] + 15) & ~(size_t)15);
    float *scratch = cnnfx_scratch_f32(x->mem, per * (size_t)nt, error);
    if (!scratch) {
      ok = FALSE;
    } else {
      maxpool_forward_argmax(x, &g, &tb, cnnfx_f32(X), cnnfx_f32(out[0]), want_ind ? cnnfx_i64(out[1]) : NULL,
                             cnnfx_attr_int(n, "storage_order", 0) == 1, aux, scratch, per);
      cnnfx_scratch_free(x->mem, scratch, per * (size_t)nt);
    }
  } else {
    ok = pool_forward_sep(x, &g, &tb, cnnfx_f32(X), cnnfx_f32(out[0]), is_max, error);
  }
  tables_free(x, &tb);
  return ok;
}

static gboolean maxpool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                                void *aux, GError **error)
{
  return pool_forward(x, n, in, out, aux, TRUE, error);
}

static gboolean avgpool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                                void *aux, GError **error)
{
  (void)aux;
  return pool_forward(x, n, in, out, NULL, FALSE, error);
}

/* ---- backward ---------------------------------------------------------------------------- */

/* MaxPool backward from the saved argmax: planes in parallel (windows of one plane overlap, planes
 * never do), each output's gradient added at its window's maximum. */
static void maxpool_bwd_aux(const CnnfxExec *x, const CnnfxPoolGeom *g, const void *aux, const float *G, float *GX)
{
  int nt = thread_count(x);
  const int64_t OD = g->O[0], OH = g->O[1], OW = g->O[2], KH = g->k[1], KW = g->k[2];
  const int64_t I1 = g->I[1], I2 = g->I[2];
  const gboolean wide = cnnfx_maxpool_aux_wide(g);
  /* offset of each tap from its window's start (narrow case: at most 255 taps) */
  int64_t toff[256];
  if (!wide)
    for (int64_t t = 0; t < cnnfx_pool_taps(g); t++) {
      int64_t jd = t / (KH * KW), jh = (t / KW) % KH, jw = t % KW;
      toff[t] = (jd * g->d[0] * I1 + jh * g->d[1]) * I2 + jw * g->d[2];
    }
  if (g->planes < nt) nt = (int)MAX(g->planes, 1);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t p = 0; p < g->planes; p++) {
    float *gp = GX + p * g->in_plane;
    for (int64_t od = 0; od < OD; od++)
      for (int64_t oh = 0; oh < OH; oh++) {
        const int64_t it = (p * OD + od) * OH + oh;
        const float *gr = G + it * OW;
        const int64_t row0 = ((od * g->s[0] - g->pb[0]) * I1 + oh * g->s[1] - g->pb[1]) * I2 - g->pb[2];
        if (!wide) {
          const uint8_t *ar = (const uint8_t *)aux + it * OW;
          for (int64_t ow = 0; ow < OW; ow++) {
            const unsigned t = ar[ow];
            if (t == CNNFX_MAXPOOL_AUX_EMPTY8) continue;
            gp[row0 + ow * g->s[2] + toff[t]] += gr[ow];
          }
        } else {
          const int32_t *ar = (const int32_t *)aux + it * OW;
          for (int64_t ow = 0; ow < OW; ow++) {
            const int64_t t = ar[ow];
            if (t < 0) continue;
            int64_t jd = t / (KH * KW), jh = (t / KW) % KH, jw = t % KW;
            gp[row0 + ow * g->s[2] + (jd * g->d[0] * I1 + jh * g->d[1]) * I2 + jw * g->d[2]] += gr[ow];
          }
        }
      }
  }
}


/* Blocks of output rows for race-free scattering (see the file comment). */
typedef struct {
  int sd;           /* split dim: 0 (D) or 1 (H) */
  int64_t B, nb;    /* block size (outputs along sd), blocks per plane */
} PoolBlocks;

static PoolBlocks make_blocks(const CnnfxPoolGeom *g, int nt)
{
  PoolBlocks pbk;
  pbk.sd = g->O[0] > 1 ? 0 : 1;
  int64_t O = g->O[pbk.sd], s = g->s[pbk.sd], dk = (g->k[pbk.sd] - 1) * g->d[pbk.sd] + 1;
  int64_t minB = (dk + s - 1) / s;
  if (minB < 1) minB = 1;
  if (g->planes >= 4 * (int64_t)nt || O <= 2 * minB) {
    pbk.B = O;
  } else {
    int64_t want = (O + 8 * nt - 1) / (8 * nt);
    pbk.B = MAX(minB, want);
  }
  pbk.nb = (O + pbk.B - 1) / pbk.B;
  return pbk;
}

typedef void (*RowFn)(const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
                      int64_t p, int64_t od, int64_t oh, float *buf, int64_t a, int64_t b);

static void run_blocks(const CnnfxExec *x, const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G,
                       float *GX, float *scratch, size_t per, RowFn fn)
{
  int nt = thread_count(x);
  PoolBlocks pbk = make_blocks(g, nt);
  int64_t a, b;
  interior_range(g, tb, &a, &b);
  for (int phase = 0; phase < 2; phase++) {
    int64_t nbp = phase == 0 ? (pbk.nb + 1) / 2 : pbk.nb / 2;
    int64_t items = g->planes * nbp;
    if (items == 0) continue;
#pragma omp parallel num_threads(nt)
    {
      float *buf = scratch ? scratch + per * (size_t)omp_get_thread_num() : NULL;
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < items; it++) {
        int64_t p = it / nbp, blk = 2 * (it % nbp) + phase;
        int64_t lo = blk * pbk.B, hi = MIN(lo + pbk.B, g->O[pbk.sd]);
        int64_t od0 = 0, od1 = g->O[0], oh0 = 0, oh1 = g->O[1];
        if (pbk.sd == 0) {
          od0 = lo;
          od1 = hi;
        } else {
          oh0 = lo;
          oh1 = hi;
        }
        for (int64_t od = od0; od < od1; od++)
          for (int64_t oh = oh0; oh < oh1; oh++) fn(g, tb, X, G, GX, p, od, oh, buf, a, b);
      }
    }
  }
}

/* Scalar argmax scatter for the output columns outside [a, b). */
static void maxpool_bwd_edges(const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
                              int64_t p, int64_t od, int64_t oh, float *buf, int64_t a, int64_t b)
{
  const float *xp = X + p * g->in_plane;
  float *gp = GX + p * g->in_plane;
  const float *gr = G + ((p * g->O[0] + od) * g->O[1] + oh) * g->O[2];
  int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
  int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
  (void)buf;
  int64_t s = g->s[2], d = g->d[2], pw = g->pb[2];
  for (int64_t ow = 0; ow < g->O[2]; ow++) {
    if (ow == a && b > a) {
      ow = b - 1;
      continue;
    }
    float gv = gr[ow];
    if (gv == 0.f) continue;
    int jw0 = tb->j0[2][ow], jw1 = tb->j1[2][ow];
    int64_t sw = ow * s - pw;
    int64_t best = -1;
    float bv = 0.f;
    for (int jd = jd0; jd < jd1; jd++) {
      for (int jh = jh0; jh < jh1; jh++) {
        int64_t rowoff = ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2];
        const float *row = xp + rowoff + sw;
        for (int jw = jw0; jw < jw1; jw++) {
          float v = row[jw * d];
          if (best < 0 || v > bv) {
            bv = v;
            best = rowoff + sw + jw * d;
          }
        }
      }
    }
    if (best >= 0) gp[best] += gv;
  }
}

/* One tap of the vectorised argmax: columns [a, b) compare row[w * s] against the best so far. */
static inline __attribute__((always_inline)) void argmax_tap(const float *restrict row, float *restrict bv,
                                                             int64_t *restrict bi, int64_t a, int64_t b, int64_t s,
                                                             int64_t pos0, gboolean first)
{
  if (first) {
    for (int64_t w = a; w < b; w++) {
      bv[w] = row[w * s];
      bi[w] = pos0 + w * s;
    }
  } else {
    for (int64_t w = a; w < b; w++) {
      float v = row[w * s];
      gboolean gt = v > bv[w];
      bv[w] = gt ? v : bv[w];
      bi[w] = gt ? pos0 + w * s : bi[w];
    }
  }
}

/* Argmax scatter for one output row: interior columns [a, b) tap by tap (vectorised), then edges.
 * buf holds OW floats followed by OW int64 (see maxpool_buf_size). */
static void maxpool_bwd_row(const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
                            int64_t p, int64_t od, int64_t oh, float *buf, int64_t a, int64_t b)
{
  if (b > a) {
    const float *xp = X + p * g->in_plane;
    float *gp = GX + p * g->in_plane;
    int64_t OW = g->O[2];
    const float *gr = G + ((p * g->O[0] + od) * g->O[1] + oh) * OW;
    int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
    int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
    int64_t s = g->s[2], d = g->d[2], pw = g->pb[2], k = g->k[2];
    float *bv = buf;
    int64_t *bi = (int64_t *)(buf + ((OW + 15) & ~(int64_t)15));
    gboolean first = TRUE;
    for (int jd = jd0; jd < jd1; jd++) {
      for (int jh = jh0; jh < jh1; jh++) {
        int64_t rowoff = ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2];
        for (int64_t jw = 0; jw < k; jw++) {
          int64_t off = jw * d - pw;
          const float *row = xp + rowoff + off;
          if (s == 1) argmax_tap(row, bv, bi, a, b, 1, rowoff + off, first);
          else if (s == 2) argmax_tap(row, bv, bi, a, b, 2, rowoff + off, first);
          else argmax_tap(row, bv, bi, a, b, s, rowoff + off, first);
          first = FALSE;
        }
      }
    }
    if (!first)
      for (int64_t w = a; w < b; w++) gp[bi[w]] += gr[w];
  }
  maxpool_bwd_edges(g, tb, X, G, GX, p, od, oh, buf, a, b);
}

static void avgpool_bwd_row(const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
                            int64_t p, int64_t od, int64_t oh, float *buf, int64_t a, int64_t b)
{
  (void)X;
  float *gp = GX + p * g->in_plane;
  int64_t OW = g->O[2], IW = g->I[2];
  const float *gr = G + ((p * g->O[0] + od) * g->O[1] + oh) * OW;
  int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
  int nrows = (jd1 - jd0) * (jh1 - jh0);
  if (nrows <= 0) return;
  int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
  float rs = tb->inv[0][od] * tb->inv[1][oh];
  size_t iwp = ((size_t)IW + 15) & ~(size_t)15;
  float *gv = buf + iwp; /* OW scaled gradients */
  const float *iw = tb->inv[2];
  for (int64_t w = 0; w < OW; w++) gv[w] = gr[w] * rs * iw[w];
  float *t;
  if (nrows == 1) {
    t = gp + ((sd + jd0 * g->d[0]) * g->I[1] + sh + jh0 * g->d[1]) * IW;
  } else {
    t = buf;
    memset(t, 0, (size_t)IW * sizeof(float));
  }
  int64_t s = g->s[2], d = g->d[2], k = g->k[2], off = -g->pb[2];
  /* interior windows: tap-outer loops */
  if (b > a) {
    for (int64_t j = 0; j < k; j++) {
      float *tj = t + off + j * d;
      if (s == 1)
        for (int64_t w = a; w < b; w++) tj[w] += gv[w];
      else if (s == 2)
        for (int64_t w = a; w < b; w++) tj[w * 2] += gv[w];
      else
        for (int64_t w = a; w < b; w++) tj[w * s] += gv[w];
    }
  }
  for (int64_t w = 0; w < OW; w++) {
    if (w == a && b > a) {
      w = b - 1;
      continue;
    }
    float *tw = t + w * s + off;
    for (int j = tb->j0[2][w]; j < tb->j1[2][w]; j++) tw[j * d] += gv[w];
  }
  if (nrows == 1) return;
  for (int jd = jd0; jd < jd1; jd++) {
    for (int jh = jh0; jh < jh1; jh++) {
      float *row = gp + ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * IW;
      for (int64_t w = 0; w < IW; w++) row[w] += t[w];
    }
  }
}

/* MaxPool 2-wide, stride-2 windows over two input rows: every input element of the windows is
 * written (g at the first maximum, 0 elsewhere). */
static void maxpool_bwd_2x2(const float *restrict x0, const float *restrict x1, float *restrict o0,
                            float *restrict o1, const float *restrict gr, int64_t a, int64_t b, int64_t off)
{
  for (int64_t w = a; w < b; w++) {
    int64_t i = 2 * w + off;
    float A = x0[i], B = x0[i + 1], C = x1[i], D = x1[i + 1], gv = gr[w];
    float m1 = A > B ? A : B, m2 = C > D ? C : D;
    float m = m1 > m2 ? m1 : m2;
    int fa = A == m, fb = !fa & (B == m), fc = !(fa | fb) & (C == m), fd = !(fa | fb | fc);
    o0[i] = fa ? gv : 0.f;
    o0[i + 1] = fb ? gv : 0.f;
    o1[i] = fc ? gv : 0.f;
    o1[i + 1] = fd ? gv : 0.f;
  }
}

/* Backward when windows do not overlap along D and H (kernel == stride, no dilation there): every
 * input row belongs to one output row, so rows are zeroed and filled by one work item each, with
 * no separate zeroing pass and no phases. */
static void run_tiled(const CnnfxExec *x, const CnnfxPoolGeom *g, const PoolTables *tb, const float *X, const float *G,
                      float *GX, float *scratch, size_t per, gboolean is_max)
{
  int nt = thread_count(x);
  int64_t OD = g->O[0], OH = g->O[1], IW = g->I[2];
  int64_t items = g->planes * OD * OH;
  int64_t a, b;
  interior_range(g, tb, &a, &b);
  gboolean k2 = is_max && g->k[2] == 2 && g->s[2] == 2 && g->d[2] == 1 && b > a;
#pragma omp parallel num_threads(nt)
  {
    float *buf = scratch ? scratch + per * (size_t)omp_get_thread_num() : NULL;
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t p = it / (OD * OH), r = it % (OD * OH), od = r / OH, oh = r % OH;
      int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
      int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1];
      float *gp = GX + p * g->in_plane;
      for (int jd = jd0; jd < jd1; jd++)
        for (int jh = jh0; jh < jh1; jh++)
          memset(gp + ((sd + jd) * g->I[1] + sh + jh) * IW, 0, (size_t)IW * sizeof(float));
      if (!is_max) {
        avgpool_bwd_row(g, tb, X, G, GX, p, od, oh, buf, a, b);
      } else if (k2 && (jd1 - jd0) * (jh1 - jh0) == 2 && jd1 - jd0 == 1) {
        int64_t r0 = ((sd + jd0) * g->I[1] + sh + jh0) * IW;
        const float *xp = X + p * g->in_plane;
        maxpool_bwd_2x2(xp + r0, xp + r0 + IW, gp + r0, gp + r0 + IW, G + it * g->O[2], a, b, -g->pb[2]);
        maxpool_bwd_edges(g, tb, X, G, GX, p, od, oh, buf, a, b);
      } else {
        maxpool_bwd_row(g, tb, X, G, GX, p, od, oh, buf, a, b);
      }
    }
  }
  /* input rows that no window covers (floor mode tails) */
  int64_t covD = MIN(g->I[0], OD * g->s[0] - g->pb[0]), covH = MIN(g->I[1], OH * g->s[1] - g->pb[1]);
  if (covD >= g->I[0] && covH >= g->I[1]) return;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t p = 0; p < g->planes; p++)
    for (int64_t id = 0; id < g->I[0]; id++)
      for (int64_t ih = 0; ih < g->I[1]; ih++)
        if (id >= covD || ih >= covH)
          memset(GX + p * g->in_plane + (id * g->I[1] + ih) * IW, 0, (size_t)IW * sizeof(float));
}


/* gin[0] arrives zero-filled. */
static gboolean pool_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                              gboolean is_max, GError **error)
{
  if (!need[0] || !gin[0]) return TRUE;
  const CnnfxTensor *X = in[0];
  CnnfxPoolGeom g;
  if (!cnnfx_pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  if (!gout[0] || gin[0]->numel == 0 || gout[0]->numel == 0) return TRUE;
  if (gout[0]->numel != (size_t)(g.planes * g.out_plane))
    return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  if (is_max && aux) {
    maxpool_bwd_aux(x, &g, aux, cnnfx_f32(gout[0]), cnnfx_f32(gin[0]));
    return TRUE;
  }
  if (is_max && !X->data) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': backward without the forward's argmax needs the input",
                    n->op_type, n->name);
    return FALSE;
  }
  int nt = thread_count(x);
  gboolean tiled = g.k[0] == g.s[0] && g.d[0] == 1 && g.k[1] == g.s[1] && g.d[1] == 1;
  gboolean include_pad = !is_max && cnnfx_attr_int(n, "count_include_pad", 0) != 0;
  PoolTables tb = {0};
  if (!tables_make(x, &g, include_pad, &tb, error)) return FALSE;
  float *scratch = NULL;
  size_t per = 0;
  {
    size_t iwp = ((size_t)g.I[2] + 15) & ~(size_t)15, owp = ((size_t)g.O[2] + 15) & ~(size_t)15;
    per = is_max ? 3 * owp : iwp + owp; /* max: OW floats + OW int64; avg: IW + OW floats */
    scratch = cnnfx_scratch_f32(x->mem, per * (size_t)nt, error);
    if (!scratch) {
      tables_free(x, &tb);
      return FALSE;
    }
  }
  if (tiled)
    run_tiled(x, &g, &tb, is_max ? cnnfx_f32(X) : NULL, cnnfx_f32(gout[0]), cnnfx_f32(gin[0]), scratch, per, is_max);
  else
    run_blocks(x, &g, &tb, is_max ? cnnfx_f32(X) : NULL, cnnfx_f32(gout[0]), cnnfx_f32(gin[0]), scratch, per,
               is_max ? maxpool_bwd_row : avgpool_bwd_row);
  if (scratch) cnnfx_scratch_free(x->mem, scratch, per * (size_t)nt);
  tables_free(x, &tb);
  return TRUE;
}

static gboolean maxpool_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                 CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  return pool_backward(x, n, in, gout, need, gin, aux, TRUE, error);
}

static gboolean avgpool_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                 CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  return pool_backward(x, n, in, gout, need, gin, NULL, FALSE, error);
}

/* ---- global pools ------------------------------------------------------------------------ */

static gboolean global_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, gboolean is_max, GError **error)
{
  const CnnfxTensor *X = in[0];
  int64_t planes = X->dims[0] * X->dims[1];
  if (planes == 0) return TRUE;
  int64_t S = (int64_t)(X->numel / (size_t)planes);
  if (S == 0) return cnnfx_fail_shape(error, n, "empty spatial extent");
  const float *xp = cnnfx_f32(X);
  float *y = cnnfx_f32(out[0]);
  int nt = thread_count(x);
  /* Split each plane into chunks so that few big planes still use every thread. */
  const int64_t CH = 1 << 15;
  int64_t nch = (S + CH - 1) / CH;
  if (planes >= nt) nch = 1;
  int64_t csz = (S + nch - 1) / nch;
  int64_t items = planes * nch;
  size_t pb = (size_t)items * sizeof(double);
  double *part = cnnfx_mem_alloc(x->mem, pb, error);
  if (!part) return FALSE;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / nch, c = it % nch;
    int64_t a = c * csz, e = MIN(S, a + csz);
    const float *v = xp + p * S;
    if (is_max) {
      float m = v[a];
      for (int64_t i = a + 1; i < e; i++) m = m > v[i] ? m : v[i];
      part[it] = a < e ? m : -INFINITY;
    } else {
      double acc = 0.0;
#pragma omp simd reduction(+ : acc)
      for (int64_t i = a; i < e; i++) acc += v[i];
      part[it] = acc;
    }
  }
  for (int64_t p = 0; p < planes; p++) {
    double r = part[p * nch];
    for (int64_t c = 1; c < nch; c++) {
      double v = part[p * nch + c];
      if (is_max) r = v > r ? v : r;
      else r += v;
    }
    y[p] = is_max ? (float)r : (float)(r / (double)S);
  }
  cnnfx_mem_free(x->mem, part, pb);
  return TRUE;
}

static gboolean gmax_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)aux;
  return global_forward(x, n, in, out, TRUE, error);
}

static gboolean gavg_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)aux;
  return global_forward(x, n, in, out, FALSE, error);
}

static gboolean global_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin,
                                gboolean is_max, GError **error)
{
  if (!need[0] || !gin[0]) return TRUE;
  const CnnfxTensor *X = in[0];
  int nt = thread_count(x);
  float *gx = cnnfx_f32(gin[0]);
  int64_t planes = X->dims[0] * X->dims[1];
  if (planes == 0 || gin[0]->numel == 0) return TRUE;
  int64_t S = (int64_t)(gin[0]->numel / (size_t)planes);
  if (!gout[0]) return TRUE; /* gin[0] arrives zero-filled */
  if (gout[0]->numel != (size_t)planes) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  const float *g = cnnfx_f32(gout[0]);
  if (is_max) {
    const float *xp = cnnfx_f32(X);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t p = 0; p < planes; p++) {
      const float *v = xp + p * S;
      int64_t best = 0;
      float m = v[0];
      for (int64_t i = 1; i < S; i++)
        if (v[i] > m) {
          m = v[i];
          best = i;
        }
      gx[p * S + best] = g[p];
    }
  } else {
    const int64_t CH = 1 << 15;
    int64_t nch = (S + CH - 1) / CH;
    int64_t items = planes * nch;
    float inv = 1.f / (float)S;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t it = 0; it < items; it++) {
      int64_t p = it / nch, c = it % nch;
      int64_t a = c * CH, e = MIN(S, a + CH);
      float v = g[p] * inv;
      float *o = gx + p * S;
      for (int64_t i = a; i < e; i++) o[i] = v;
    }
  }
  return TRUE;
}

static gboolean gmax_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  return global_backward(x, n, in, gout, need, gin, TRUE, error);
}

static gboolean gavg_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  return global_backward(x, n, in, gout, need, gin, FALSE, error);
}


static const CnnfxKernel k_maxpool = {.name = "MaxPool", .forward = maxpool_forward, .backward = maxpool_backward};
static const CnnfxKernel k_avgpool = {.name = "AveragePool", .forward = avgpool_forward, .backward = avgpool_backward};
static const CnnfxKernel k_gmax = {.name = "GlobalMaxPool", .forward = gmax_forward, .backward = gmax_backward};
static const CnnfxKernel k_gavg = {.name = "GlobalAveragePool", .forward = gavg_forward, .backward = gavg_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_pool[] = {&k_maxpool, &k_avgpool, &k_gmax, &k_gavg, NULL};
