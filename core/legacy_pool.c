/* Operators: pooling.  MaxPool, AveragePool (1-D/2-D/3-D), GlobalAveragePool, GlobalMaxPool,
 * forward and backward.
 *
 * Every windowed pool is computed on a 3-D view [planes][D][H][W] of the input (1-D and 2-D
 * pools get unit leading spatial dims).  Forward is separable: for each output row the valid
 * input rows of the window are reduced into one row buffer (contiguous, vectorised), then the
 * row is pooled horizontally with the stride.  Backward: MaxPool keeps only its input and
 * recomputes the argmax (first maximum in window scan order, as the Indices output); when windows
 * do not overlap along D and H (kernel == stride, the VGG case) each work item owns its input rows
 * and writes them completely.  Otherwise the gradient is scattered into a zeroed tensor with output
 * rows grouped into blocks large enough that blocks i and i+2 never touch the same input rows; even
 * and odd blocks run in two parallel phases. */
#include "cnnfx-private.h"
#include <math.h>
#include <omp.h>

#define POOL_MAX_SP 3

typedef struct {
  int nsp;                         /* spatial dims of the op (1..3) */
  int64_t planes;                  /* N * C */
  int64_t I[3], O[3];              /* input / output spatial dims, padded to 3 (leading 1s) */
  int64_t k[3], s[3], d[3], pb[3], pe[3];
  int64_t in_plane, out_plane;
} PoolGeom;

/* Per-dimension window tables: taps j in [j0, j1) land inside the input; cnt = divisor count. */
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

static gboolean ints_attr_ok(const CnnfxNode *n, const char *name, int want, gboolean allow_zero, GError **error)
{
  const int64_t *v;
  int c = cnnfx_attr_ints(n, name, &v);
  if (c < 0) {
    if (cnnfx_attr(n, name)) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': attribute %s must be a list of ints",
                      n->op_type, n->name, name);
      return FALSE;
    }
    return TRUE;
  }
  if (c != want) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': attribute %s has %d values, expected %d", n->op_type,
                    n->name, name, c, want);
    return FALSE;
  }
  for (int i = 0; i < c; i++)
    if (v[i] < (allow_zero ? 0 : 1) || v[i] > (1 << 24)) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': attribute %s has invalid value %" G_GINT64_FORMAT,
                      n->op_type, n->name, name, v[i]);
      return FALSE;
    }
  return TRUE;
}

static gboolean pool_check(const CnnfxNode *n, GError **error)
{
  const int64_t *ks;
  int nk = cnnfx_attr_ints(n, "kernel_shape", &ks);
  if (nk < 1 || nk > POOL_MAX_SP) {
    cnnfx_set_error(error, nk < 1 ? CNNFX_ERROR_SHAPE : CNNFX_ERROR_UNSUPPORTED,
                    "%s '%s': kernel_shape must have 1 to %d values", n->op_type, n->name, POOL_MAX_SP);
    return FALSE;
  }
  if (!ints_attr_ok(n, "kernel_shape", nk, FALSE, error) || !ints_attr_ok(n, "strides", nk, FALSE, error) ||
      !ints_attr_ok(n, "dilations", nk, FALSE, error) || !ints_attr_ok(n, "pads", 2 * nk, TRUE, error))
    return FALSE;
  const char *ap = cnnfx_attr_string(n, "auto_pad", "NOTSET");
  if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID")) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': unknown auto_pad '%s'", n->op_type, n->name, ap);
    return FALSE;
  }
  int64_t so = cnnfx_attr_int(n, "storage_order", 0);
  if (so != 0 && so != 1) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': storage_order must be 0 or 1", n->op_type, n->name);
    return FALSE;
  }
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': missing input", n->op_type, n->name);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_f32_input(const CnnfxNode *n, const CnnfxTensor *t, int min_rank, GError **error)
{
  if (!t || t->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': only float32 input is supported", n->op_type,
                    n->name);
    return FALSE;
  }
  if (t->ndim < min_rank) return cnnfx_fail_shape(error, n, "input has rank %d, expected at least %d", t->ndim, min_rank);
  return TRUE;
}

/* Geometry from attributes and input dims (x_dims of rank 2 + nsp). */
static gboolean pool_geom(const CnnfxNode *n, int ndim, const int64_t *xd, PoolGeom *g, GError **error)
{
  if (!pool_check(n, error)) return FALSE;
  const int64_t *ks, *st, *dl, *pd;
  int nk = cnnfx_attr_ints(n, "kernel_shape", &ks);
  int ns = cnnfx_attr_ints(n, "strides", &st);
  int nd = cnnfx_attr_ints(n, "dilations", &dl);
  int np = cnnfx_attr_ints(n, "pads", &pd);
  if (ndim != nk + 2) return cnnfx_fail_shape(error, n, "input has rank %d, kernel_shape needs rank %d", ndim, nk + 2);
  const char *ap = cnnfx_attr_string(n, "auto_pad", "NOTSET");
  gboolean ceil_mode = cnnfx_attr_int(n, "ceil_mode", 0) != 0;
  memset(g, 0, sizeof *g);
  g->nsp = nk;
  if (xd[0] < 0 || xd[1] < 0) return cnnfx_fail_shape(error, n, "invalid input dims");
  g->planes = xd[0] * xd[1];
  int off = POOL_MAX_SP - nk;
  for (int i = 0; i < POOL_MAX_SP; i++) {
    g->I[i] = g->O[i] = g->k[i] = g->s[i] = g->d[i] = 1;
    g->pb[i] = g->pe[i] = 0;
  }
  for (int i = 0; i < nk; i++) {
    int j = off + i;
    int64_t in = xd[2 + i];
    int64_t k = ks[i], s = ns > 0 ? st[i] : 1, d = nd > 0 ? dl[i] : 1;
    int64_t dk = (k - 1) * d + 1;
    int64_t pb = 0, pe = 0, out;
    if (in <= 0) return cnnfx_fail_shape(error, n, "spatial dim %d is %" G_GINT64_FORMAT, i, in);
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      out = (in + s - 1) / s;
      int64_t tot = (out - 1) * s + dk - in;
      if (tot < 0) tot = 0;
      if (!strcmp(ap, "SAME_UPPER")) {
        pb = tot / 2;
        pe = tot - pb;
      } else {
        pe = tot / 2;
        pb = tot - pe;
      }
    } else {
      if (!strcmp(ap, "NOTSET") && np > 0) {
        pb = pd[i];
        pe = pd[nk + i];
      }
      int64_t span = in + pb + pe - dk;
      if (span < 0)
        return cnnfx_fail_shape(error, n, "kernel extent %" G_GINT64_FORMAT " larger than padded input %" G_GINT64_FORMAT,
                                dk, in + pb + pe);
      if (ceil_mode) { /* ceil_mode also applies to VALID, as in onnxruntime */
        out = (span + s - 1) / s + 1;
        if ((out - 1) * s >= in + pb) out--; /* last window may not start in the end padding */
      } else {
        out = span / s + 1;
      }
    }
    if (out <= 0) return cnnfx_fail_shape(error, n, "empty output along spatial dim %d", i);
    g->I[j] = in;
    g->O[j] = out;
    g->k[j] = k;
    g->s[j] = s;
    g->d[j] = d;
    g->pb[j] = pb;
    g->pe[j] = pe;
  }
  g->in_plane = g->I[0] * g->I[1] * g->I[2];
  g->out_plane = g->O[0] * g->O[1] * g->O[2];
  return TRUE;
}

static void out_dims(const PoolGeom *g, const int64_t *xd, int64_t *od)
{
  od[0] = xd[0];
  od[1] = xd[1];
  for (int i = 0; i < g->nsp; i++) od[2 + i] = g->O[POOL_MAX_SP - g->nsp + i];
}

static void tables_free(const CnnfxExec *x, PoolTables *t)
{
  if (t->block) cnnfx_mem_free(x->mem, t->block, t->bytes);
  t->block = NULL;
}

static gboolean tables_make(const CnnfxExec *x, const PoolGeom *g, gboolean include_pad, PoolTables *t,
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
static void interior_range(const PoolGeom *g, const PoolTables *t, int64_t *a, int64_t *b)
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

static void hpool(const float *t, float *o, const PoolGeom *g, const PoolTables *tb, int64_t a, int64_t b,
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

static gboolean pool_forward_sep(const CnnfxExec *x, const PoolGeom *g, const PoolTables *tb, const float *X,
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

/* Argmax of one window: returns the offset within the plane (row-major) or -1 if empty. */
static inline int64_t window_argmax(const PoolGeom *g, const PoolTables *tb, const float *xp, int64_t od, int64_t oh,
                                    int64_t ow, float *best_out)
{
  int jd0 = tb->j0[0][od], jd1 = tb->j1[0][od], jh0 = tb->j0[1][oh], jh1 = tb->j1[1][oh];
  int jw0 = tb->j0[2][ow], jw1 = tb->j1[2][ow];
  int64_t sd = od * g->s[0] - g->pb[0], sh = oh * g->s[1] - g->pb[1], sw = ow * g->s[2] - g->pb[2];
  int64_t best = -1;
  float bv = 0.f;
  for (int jd = jd0; jd < jd1; jd++) {
    for (int jh = jh0; jh < jh1; jh++) {
      int64_t rowoff = ((sd + jd * g->d[0]) * g->I[1] + sh + jh * g->d[1]) * g->I[2];
      const float *row = xp + rowoff;
      for (int jw = jw0; jw < jw1; jw++) {
        int64_t iw = sw + jw * g->d[2];
        float v = row[iw];
        if (best < 0 || v > bv) {
          bv = v;
          best = rowoff + iw;
        }
      }
    }
  }
  *best_out = bv;
  return best;
}

static void maxpool_forward_indices(const CnnfxExec *x, const PoolGeom *g, const PoolTables *tb, const float *X,
                                    float *Y, int64_t *Ind, gboolean col_major)
{
  int nt = thread_count(x);
  int64_t OD = g->O[0], OH = g->O[1], OW = g->O[2];
  int64_t items = g->planes * OD * OH;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / (OD * OH), r = it % (OD * OH), od = r / OH, oh = r % OH;
    const float *xp = X + p * g->in_plane;
    for (int64_t ow = 0; ow < OW; ow++) {
      float v;
      int64_t pos = window_argmax(g, tb, xp, od, oh, ow, &v);
      Y[it * OW + ow] = pos >= 0 ? v : 0.f;
      if (pos < 0) {
        Ind[it * OW + ow] = -1;
        continue;
      }
      if (col_major) {
        /* reverse the order of the spatial dims (only the op's own spatial dims count) */
        int64_t iw = pos % g->I[2], ih = (pos / g->I[2]) % g->I[1], id = pos / (g->I[2] * g->I[1]);
        if (g->nsp == 3) pos = id + g->I[0] * (ih + g->I[1] * iw);
        else pos = ih + g->I[1] * iw;
      }
      Ind[it * OW + ow] = p * g->in_plane + pos;
    }
  }
}

static gboolean pool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             gboolean is_max, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!check_f32_input(n, X, 3, error)) return FALSE;
  PoolGeom g;
  if (!pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  gboolean include_pad = !is_max && cnnfx_attr_int(n, "count_include_pad", 0) != 0;
  int64_t od[CNNFX_MAX_DIMS];
  out_dims(&g, X->dims, od);
  out[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, od, error);
  if (!out[0]) return FALSE;
  gboolean want_ind = is_max && n->n_out > 1 && n->out[1] >= 0;
  if (want_ind) {
    out[1] = cnnfx_tensor_alloc(x->mem, CNNFX_I64, X->ndim, od, error);
    if (!out[1]) return FALSE;
  }
  if (out[0]->numel == 0) return TRUE;
  PoolTables tb = {0};
  if (!tables_make(x, &g, include_pad, &tb, error)) return FALSE;
  gboolean ok = TRUE;
  if (want_ind)
    maxpool_forward_indices(x, &g, &tb, cnnfx_f32(X), cnnfx_f32(out[0]), cnnfx_i64(out[1]),
                            cnnfx_attr_int(n, "storage_order", 0) == 1);
  else
    ok = pool_forward_sep(x, &g, &tb, cnnfx_f32(X), cnnfx_f32(out[0]), is_max, error);
  tables_free(x, &tb);
  return ok;
}

static gboolean maxpool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                GError **error)
{
  return pool_forward(x, n, in, out, TRUE, error);
}

static gboolean avgpool_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                GError **error)
{
  return pool_forward(x, n, in, out, FALSE, error);
}

/* ---- backward ---------------------------------------------------------------------------- */

static void zero_f32(float *p, size_t n, int nt)
{
  const size_t chunk = 1 << 16;
  size_t nb = (n + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static) if (nb > 1)
  for (size_t b = 0; b < nb; b++) {
    size_t a = b * chunk, e = MIN(n, a + chunk);
    memset(p + a, 0, (e - a) * sizeof(float));
  }
}

/* Blocks of output rows for race-free scattering (see the file comment). */
typedef struct {
  int sd;           /* split dim: 0 (D) or 1 (H) */
  int64_t B, nb;    /* block size (outputs along sd), blocks per plane */
} PoolBlocks;

static PoolBlocks make_blocks(const PoolGeom *g, int nt)
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

typedef void (*RowFn)(const PoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
                      int64_t p, int64_t od, int64_t oh, float *buf, int64_t a, int64_t b);

static void run_blocks(const CnnfxExec *x, const PoolGeom *g, const PoolTables *tb, const float *X, const float *G,
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
static void maxpool_bwd_edges(const PoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
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
static void maxpool_bwd_row(const PoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
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

static void avgpool_bwd_row(const PoolGeom *g, const PoolTables *tb, const float *X, const float *G, float *GX,
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
static void run_tiled(const CnnfxExec *x, const PoolGeom *g, const PoolTables *tb, const float *X, const float *G,
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

static gboolean pool_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor **gin, gboolean is_max, GError **error)
{
  if (!need[0]) return TRUE;
  const CnnfxTensor *X = in[0];
  PoolGeom g;
  if (!pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  gin[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, X->dims, error);
  if (!gin[0]) return FALSE;
  int nt = thread_count(x);
  gboolean tiled = g.k[0] == g.s[0] && g.d[0] == 1 && g.k[1] == g.s[1] && g.d[1] == 1;
  if (!gout[0] || gin[0]->numel == 0 || gout[0]->numel == 0 || !tiled) zero_f32(cnnfx_f32(gin[0]), gin[0]->numel, nt);
  if (!gout[0] || gin[0]->numel == 0 || gout[0]->numel == 0) return TRUE;
  if (gout[0]->numel != (size_t)(g.planes * g.out_plane))
    return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
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
                                 CnnfxTensor **gin, GError **error)
{
  return pool_backward(x, n, in, out, gout, need, gin, TRUE, error);
}

static gboolean avgpool_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                 CnnfxTensor **gin, GError **error)
{
  return pool_backward(x, n, in, out, gout, need, gin, FALSE, error);
}

/* ---- global pools ------------------------------------------------------------------------ */

static gboolean global_check(const CnnfxNode *n, GError **error)
{
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': missing input", n->op_type, n->name);
    return FALSE;
  }
  return TRUE;
}

static gboolean global_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               gboolean is_max, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!check_f32_input(n, X, 2, error)) return FALSE;
  int64_t od[CNNFX_MAX_DIMS];
  for (int i = 0; i < X->ndim; i++) od[i] = i < 2 ? X->dims[i] : 1;
  out[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, od, error);
  if (!out[0]) return FALSE;
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

static gboolean gmax_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             GError **error)
{
  return global_forward(x, n, in, out, TRUE, error);
}

static gboolean gavg_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             GError **error)
{
  return global_forward(x, n, in, out, FALSE, error);
}

static gboolean global_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor **gin, gboolean is_max,
                                GError **error)
{
  if (!need[0]) return TRUE;
  const CnnfxTensor *X = in[0];
  gin[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, X->dims, error);
  if (!gin[0]) return FALSE;
  int nt = thread_count(x);
  float *gx = cnnfx_f32(gin[0]);
  int64_t planes = X->dims[0] * X->dims[1];
  if (planes == 0 || gin[0]->numel == 0) return TRUE;
  int64_t S = (int64_t)(gin[0]->numel / (size_t)planes);
  if (!gout[0]) {
    zero_f32(gx, gin[0]->numel, nt);
    return TRUE;
  }
  if (gout[0]->numel != (size_t)planes) return cnnfx_fail_shape(error, n, "output gradient has the wrong size");
  const float *g = cnnfx_f32(gout[0]);
  if (is_max) {
    const float *xp = cnnfx_f32(X);
    zero_f32(gx, gin[0]->numel, nt);
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
                              CnnfxTensor **gin, GError **error)
{
  return global_backward(x, n, in, gout, need, gin, TRUE, error);
}

static gboolean gavg_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor **gin, GError **error)
{
  return global_backward(x, n, in, gout, need, gin, FALSE, error);
}

static const CnnfxOp op_maxpool = {.name = "MaxPool", .check = pool_check, .forward = maxpool_forward,
                                   .backward = maxpool_backward, .saves = CNNFX_SAVE_IN(0)};
static const CnnfxOp op_avgpool = {.name = "AveragePool", .check = pool_check, .forward = avgpool_forward,
                                   .backward = avgpool_backward, .saves = 0};
static const CnnfxOp op_gmax = {.name = "GlobalMaxPool", .check = global_check, .forward = gmax_forward,
                                .backward = gmax_backward, .saves = CNNFX_SAVE_IN(0)};
static const CnnfxOp op_gavg = {.name = "GlobalAveragePool", .check = global_check, .forward = gavg_forward,
                                .backward = gavg_backward, .saves = 0};

const CnnfxOp *const cnnfx_ops_pool[] = {&op_maxpool, &op_avgpool, &op_gmax, &op_gavg, NULL};
