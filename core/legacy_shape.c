/* Operators: shape manipulation and data movement.
 *
 * Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Slice, Gather, Shape, Size, Pad,
 * ReduceMean, ConstantOfShape, Expand, Range, Split.
 *
 * Data-moving ops work on float and int64 tensors alike (they only copy elements); their
 * backward passes (float only) are the adjoint copies: slices scatter, gathers scatter-add,
 * pads and broadcasts sum.  Shape-like inputs (shapes, axes, pads, indices) carry no gradient.
 */
#include "cnnfx-private.h"
#include <math.h>
#include <stdint.h>

#define MAXD CNNFX_MAX_DIMS
#define PAR_MIN 32768 /* elements below which loops stay single-threaded */

/* ---- small helpers ------------------------------------------------------------ */

static inline size_t esz(const CnnfxTensor *t) { return cnnfx_dtype_size(t->dtype); }

static void contiguous_strides(int nd, const int64_t *dims, int64_t *st)
{
  int64_t s = 1;
  for (int k = nd - 1; k >= 0; k--) {
    st[k] = s;
    s *= dims[k];
  }
}

static int64_t prod(const int64_t *d, int a, int b)
{
  int64_t p = 1;
  for (int k = a; k < b; k++) p *= d[k];
  return p;
}

/* Copy n bytes, in parallel for big blocks. */
static void big_memcpy(void *dst, const void *src, size_t n)
{
  if (n < ((size_t)1 << 22)) {
    if (n) memcpy(dst, src, n);
    return;
  }
  const size_t chunk = (size_t)1 << 20;
  int64_t nc = (int64_t)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < nc; c++) {
    size_t a = (size_t)c * chunk, len = MIN(chunk, n - a);
    memcpy((char *)dst + a, (const char *)src + a, len);
  }
}

static void scale_f32(float *p, size_t n, float s)
{
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
  for (size_t i = 0; i < n; i++) p[i] *= s;
}

static gboolean need_float(const CnnfxNode *n, const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->dtype == CNNFX_F32) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': %s must be a float tensor", n->op_type, n->name, what);
  return FALSE;
}

/* Read a 1-D (or scalar) int64 tensor into vals (at most max values). */
static gboolean tensor_ints(const CnnfxNode *n, const CnnfxTensor *t, const char *what, int64_t *vals, int max,
                            int *count, GError **error)
{
  if (t->dtype != CNNFX_I64) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': input '%s' must be an integer tensor", n->op_type,
                    n->name, what);
    return FALSE;
  }
  if (t->ndim > 1) return cnnfx_fail_shape(error, n, "input '%s' must be 1-D, has rank %d", what, t->ndim);
  if (t->numel > (size_t)max)
    return cnnfx_fail_shape(error, n, "input '%s' has %zu values, at most %d supported", what, t->numel, max);
  if (!t->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "%s '%s': input '%s' has no data", n->op_type, n->name, what);
    return FALSE;
  }
  if (t->numel) memcpy(vals, t->data, t->numel * sizeof(int64_t));
  *count = (int)t->numel;
  return TRUE;
}

/* INTS attribute into vals; -1 count if absent. */
static gboolean attr_ints(const CnnfxNode *n, const char *name, int64_t *vals, int max, int *count, GError **error)
{
  const int64_t *v;
  int c = cnnfx_attr_ints(n, name, &v);
  if (c > max) return cnnfx_fail_shape(error, n, "attribute '%s' has %d values, at most %d supported", name, c, max);
  if (c > 0) memcpy(vals, v, (size_t)c * sizeof(int64_t));
  *count = c;
  return TRUE;
}

/* Normalise a list of axes against rank r into a mask; duplicates and out-of-range fail. */
static gboolean axes_mask(const CnnfxNode *n, const int64_t *axes, int na, int r, gboolean *mask, GError **error)
{
  for (int k = 0; k < r; k++) mask[k] = FALSE;
  for (int i = 0; i < na; i++) {
    int a;
    if (!cnnfx_norm_axis(axes[i], r, &a) || r == 0)
      return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", axes[i], r);
    if (mask[a]) return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " repeated", axes[i]);
    mask[a] = TRUE;
  }
  return TRUE;
}

static CnnfxTensor *alloc_f32_like(const CnnfxExec *x, const CnnfxTensor *t, GError **error)
{
  return cnnfx_tensor_alloc(x->mem, CNNFX_F32, t->ndim, t->dims, error);
}

static CnnfxTensor *zeros_f32_like(const CnnfxExec *x, const CnnfxTensor *t, GError **error)
{
  CnnfxTensor *r = alloc_f32_like(x, t, error);
  if (r) memset(r->data, 0, r->numel * sizeof(float));
  return r;
}

static inline const CnnfxTensor *fgrad(CnnfxTensor *const *gout, int k)
{
  return gout[k] && gout[k]->dtype == CNNFX_F32 && gout[k]->data ? gout[k] : NULL;
}

/* ---- strided copies ------------------------------------------------------------ */

/* Walk over an index space dims[nd]: element i goes from src + sum i_k ss[k] to dst + sum i_k ds[k]
 * (strides in elements; zero and negative strides allowed; destinations must not overlap). */
typedef struct {
  int nd;
  int64_t dims[MAXD], ds[MAXD], ss[MAXD];
} Walk;

static void walk_simplify(Walk *w)
{
  int m = 0;
  for (int k = 0; k < w->nd; k++) {
    if (w->dims[k] == 1) continue;
    if (m > 0 && w->ds[m - 1] == w->ds[k] * w->dims[k] && w->ss[m - 1] == w->ss[k] * w->dims[k]) {
      w->dims[m - 1] *= w->dims[k];
      w->ds[m - 1] = w->ds[k];
      w->ss[m - 1] = w->ss[k];
      continue;
    }
    w->dims[m] = w->dims[k];
    w->ds[m] = w->ds[k];
    w->ss[m] = w->ss[k];
    m++;
  }
  w->nd = m;
}

static inline void row_copy(char *d, int64_t dl, const char *s, int64_t sl, int64_t L, size_t es)
{
  if (dl == 1 && sl == 1) {
    memcpy(d, s, (size_t)L * es);
  } else if (es == 4) {
    uint32_t *D = (uint32_t *)d;
    const uint32_t *S = (const uint32_t *)s;
    if (sl == 0) {
      uint32_t v = S[0];
      for (int64_t j = 0; j < L; j++) D[j * dl] = v;
    } else if (dl == 1) {
      for (int64_t j = 0; j < L; j++) D[j] = S[j * sl];
    } else {
      for (int64_t j = 0; j < L; j++) D[j * dl] = S[j * sl];
    }
  } else {
    uint64_t *D = (uint64_t *)d;
    const uint64_t *S = (const uint64_t *)s;
    if (sl == 0) {
      uint64_t v = S[0];
      for (int64_t j = 0; j < L; j++) D[j * dl] = v;
    } else {
      for (int64_t j = 0; j < L; j++) D[j * dl] = S[j * sl];
    }
  }
}

#define TILE 32

static void walk_copy(const Walk *w0, void *dstv, const void *srcv, size_t es)
{
  Walk w = *w0;
  char *dst = dstv;
  const char *src = srcv;
  for (int k = 0; k < w.nd; k++)
    if (w.dims[k] == 0) return;
  walk_simplify(&w);
  int nd = w.nd;
  if (nd == 0) {
    memcpy(dst, src, es);
    return;
  }
  int64_t total = prod(w.dims, 0, nd);
  /* Transposition: the destination's fastest dim is not the source's.  Copy in tiles. */
  if (nd >= 2 && w.ds[nd - 1] == 1 && w.ss[nd - 1] != 1 && w.dims[nd - 1] >= 4) {
    int b = -1;
    for (int k = 0; k < nd - 1; k++)
      if (w.ss[k] == 1 && w.dims[k] >= 4) b = k;
    if (b >= 0) {
      /* move dim b to nd-2 (iteration order does not matter for a copy) */
      int64_t bd = w.dims[b], bds = w.ds[b], bss = w.ss[b];
      for (int k = b; k < nd - 2; k++) {
        w.dims[k] = w.dims[k + 1];
        w.ds[k] = w.ds[k + 1];
        w.ss[k] = w.ss[k + 1];
      }
      w.dims[nd - 2] = bd;
      w.ds[nd - 2] = bds;
      w.ss[nd - 2] = bss;
      const int64_t A = w.dims[nd - 2], B = w.dims[nd - 1];
      const int64_t dA = w.ds[nd - 2], sB = w.ss[nd - 1];
      const int64_t rows = prod(w.dims, 0, nd - 2), ta = (A + TILE - 1) / TILE;
#pragma omp parallel for if (total > PAR_MIN) schedule(static)
      for (int64_t t = 0; t < rows * ta; t++) {
        int64_t r = t / ta, a0 = (t % ta) * TILE, a1 = MIN(a0 + TILE, A);
        int64_t doff = 0, soff = 0, rr = r;
        for (int k = nd - 3; k >= 0; k--) {
          int64_t i = rr % w.dims[k];
          rr /= w.dims[k];
          doff += i * w.ds[k];
          soff += i * w.ss[k];
        }
        for (int64_t b0 = 0; b0 < B; b0 += TILE) {
          int64_t b1 = MIN(b0 + TILE, B);
          if (es == 4) {
            uint32_t *D = (uint32_t *)dst + doff;
            const uint32_t *S = (const uint32_t *)src + soff;
            for (int64_t a = a0; a < a1; a++)
              for (int64_t bb = b0; bb < b1; bb++) D[a * dA + bb] = S[a + bb * sB];
          } else {
            uint64_t *D = (uint64_t *)dst + doff;
            const uint64_t *S = (const uint64_t *)src + soff;
            for (int64_t a = a0; a < a1; a++)
              for (int64_t bb = b0; bb < b1; bb++) D[a * dA + bb] = S[a + bb * sB];
          }
        }
      }
      return;
    }
  }
  const int64_t L = w.dims[nd - 1], dl = w.ds[nd - 1], sl = w.ss[nd - 1];
  const int64_t rows = total / L;
  const int64_t nch = MIN(rows, 256);
#pragma omp parallel for if (total > PAR_MIN) schedule(static)
  for (int64_t c = 0; c < nch; c++) {
    int64_t r0 = rows * c / nch, r1 = rows * (c + 1) / nch;
    if (r0 >= r1) continue;
    int64_t idx[MAXD] = {0}, doff = 0, soff = 0, rr = r0;
    for (int k = nd - 2; k >= 0; k--) {
      idx[k] = rr % w.dims[k];
      rr /= w.dims[k];
      doff += idx[k] * w.ds[k];
      soff += idx[k] * w.ss[k];
    }
    for (int64_t r = r0; r < r1; r++) {
      row_copy(dst + doff * (int64_t)es, dl, src + soff * (int64_t)es, sl, L, es);
      for (int k = nd - 2; k >= 0; k--) {
        idx[k]++;
        doff += w.ds[k];
        soff += w.ss[k];
        if (idx[k] < w.dims[k]) break;
        doff -= w.ds[k] * w.dims[k];
        soff -= w.ss[k] * w.dims[k];
        idx[k] = 0;
      }
    }
  }
}

/* dst (dims with the reduced ones removed, contiguous) = sum of src (contiguous dims) over red. */
static void reduce_sum_f32(int nd, const int64_t *dims, const gboolean *red, const float *src, float *dst)
{
  int64_t gd[MAXD];
  gboolean gr[MAXD];
  int ng = 0;
  size_t onum = 1;
  gboolean empty = FALSE;
  for (int k = 0; k < nd; k++) {
    if (!red[k]) onum *= (size_t)dims[k];
    if (dims[k] == 0) empty = TRUE;
    if (dims[k] == 1) continue;
    if (ng > 0 && gr[ng - 1] == red[k]) {
      gd[ng - 1] *= dims[k];
    } else {
      gd[ng] = dims[k];
      gr[ng] = red[k];
      ng++;
    }
  }
  if (empty) {
    if (onum) memset(dst, 0, onum * sizeof(float));
    return;
  }
  if (ng == 0) {
    dst[0] = src[0];
    return;
  }
  int64_t gs[MAXD];
  contiguous_strides(ng, gd, gs);
  int kept[MAXD], rdim[MAXD], nk = 0, nr = 0;
  for (int k = 0; k < ng; k++) {
    if (gr[k]) rdim[nr++] = k;
    else kept[nk++] = k;
  }
  const int64_t total = prod(gd, 0, ng);
  const int64_t L = gd[ng - 1];
  if (!gr[ng - 1]) {
    /* last dim kept: add rows of L */
    const int64_t orows = (int64_t)onum / L;
    int64_t rc = 1;
    for (int i = 0; i < nr; i++) rc *= gd[rdim[i]];
#pragma omp parallel for if (total > PAR_MIN) schedule(static)
    for (int64_t orow = 0; orow < orows; orow++) {
      int64_t base = 0, rr = orow;
      for (int i = nk - 2; i >= 0; i--) {
        int64_t ix = rr % gd[kept[i]];
        rr /= gd[kept[i]];
        base += ix * gs[kept[i]];
      }
      float *o = dst + orow * L;
      for (int64_t j = 0; j < L; j++) o[j] = 0.f;
      int64_t idx[MAXD] = {0}, off = 0;
      for (int64_t c = 0; c < rc; c++) {
        const float *s = src + base + off;
        for (int64_t j = 0; j < L; j++) o[j] += s[j];
        for (int i = nr - 1; i >= 0; i--) {
          int k = rdim[i];
          idx[i]++;
          off += gs[k];
          if (idx[i] < gd[k]) break;
          off -= gs[k] * gd[k];
          idx[i] = 0;
        }
      }
    }
  } else {
    /* last dim reduced: contiguous sums of L */
    int64_t rc = 1;
    for (int i = 0; i < nr - 1; i++) rc *= gd[rdim[i]];
#pragma omp parallel for if (total > PAR_MIN && onum > 1) schedule(static)
    for (int64_t o = 0; o < (int64_t)onum; o++) {
      int64_t base = 0, rr = o;
      for (int i = nk - 1; i >= 0; i--) {
        int64_t ix = rr % gd[kept[i]];
        rr /= gd[kept[i]];
        base += ix * gs[kept[i]];
      }
      double acc = 0;
      int64_t idx[MAXD] = {0}, off = 0;
      for (int64_t c = 0; c < rc; c++) {
        const float *s = src + base + off;
        float part = 0.f;
        for (int64_t j = 0; j < L; j++) part += s[j];
        acc += part;
        for (int i = nr - 2; i >= 0; i--) {
          int k = rdim[i];
          idx[i]++;
          off += gs[k];
          if (idx[i] < gd[k]) break;
          off -= gs[k] * gd[k];
          idx[i] = 0;
        }
      }
      dst[o] = (float)acc;
    }
  }
}

/* Broadcast src (shape sdims, rank sn <= nd, numpy-aligned) to dst of shape dims. */
static void broadcast_copy(int nd, const int64_t *dims, void *dst, int sn, const int64_t *sdims, const void *src,
                           size_t es)
{
  Walk w;
  int64_t sst[MAXD];
  contiguous_strides(sn, sdims, sst);
  w.nd = nd;
  contiguous_strides(nd, dims, w.ds);
  for (int k = 0; k < nd; k++) {
    int j = k - (nd - sn);
    w.dims[k] = dims[k];
    w.ss[k] = (j < 0 || sdims[j] == 1) ? 0 : sst[j];
  }
  walk_copy(&w, dst, src, es);
}

/* Sum-reduce g (shape gdims, rank gn) to t (shape tdims, rank tn <= gn, broadcast inverse). */
static void unbroadcast_sum(int gn, const int64_t *gdims, const float *g, int tn, const int64_t *tdims, float *t)
{
  gboolean red[MAXD];
  for (int k = 0; k < gn; k++) {
    int j = k - (gn - tn);
    red[k] = j < 0 || (tdims[j] == 1 && gdims[k] != 1);
  }
  reduce_sum_f32(gn, gdims, red, g, t);
}

/* Copy gout into a new tensor shaped like in (reshape-like ops). */
static gboolean copy_grad(const CnnfxExec *x, const CnnfxTensor *in, const CnnfxTensor *g, CnnfxTensor **gin,
                          GError **error)
{
  CnnfxTensor *r = alloc_f32_like(x, in, error);
  if (!r) return FALSE;
  if (g && g->numel == r->numel) big_memcpy(r->data, g->data, r->numel * sizeof(float));
  else memset(r->data, 0, r->numel * sizeof(float));
  *gin = r;
  return TRUE;
}

static gboolean reshape_like_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                      CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                      CnnfxTensor **gin, GError **error)
{
  (void)n;
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  return copy_grad(x, in[0], fgrad(gout, 0), &gin[0], error);
}

/* New tensor with dims and a copy of in's data. */
static gboolean reshaped_copy(const CnnfxExec *x, const CnnfxTensor *in, int nd, const int64_t *dims,
                              CnnfxTensor **out, GError **error)
{
  CnnfxTensor *r = cnnfx_tensor_alloc(x->mem, in->dtype, nd, dims, error);
  if (!r) return FALSE;
  big_memcpy(r->data, in->data, r->numel * esz(r));
  *out = r;
  return TRUE;
}

/* ---- Concat / Split ------------------------------------------------------------ */

/* For o in [0, outer): dst[o*drow + doff ..+len] = src[o*srow + soff ..+len] (bytes). */
static void block_copy(char *dst, size_t drow, size_t doff, const char *src, size_t srow, size_t soff,
                       int64_t outer, size_t len)
{
  if (!len) return;
  gboolean par = (size_t)outer * len > (size_t)PAR_MIN * 4 && outer > 1;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t o = 0; o < outer; o++) memcpy(dst + o * drow + doff, src + o * srow + soff, len);
}

static gboolean concat_axis(const CnnfxNode *n, int r, int *axis, GError **error)
{
  const CnnfxAttr *a = cnnfx_attr(n, "axis");
  int64_t ax = a && a->type == CNNFX_ATTR_INT ? a->i : 1;
  if (!a && n->opset >= 4) return cnnfx_fail_shape(error, n, "attribute 'axis' is required");
  if (!cnnfx_norm_axis(ax, r, axis) || r == 0)
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, r);
  return TRUE;
}

static gboolean concat_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               GError **error)
{
  const CnnfxTensor *f = NULL;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) {
      f = in[i];
      break;
    }
  if (!f) return cnnfx_fail_shape(error, n, "no inputs");
  int r = f->ndim, axis;
  if (!concat_axis(n, r, &axis, error)) return FALSE;
  int64_t dims[MAXD];
  memcpy(dims, f->dims, sizeof(int64_t) * r);
  dims[axis] = 0;
  for (int i = 0; i < n->n_in; i++) {
    const CnnfxTensor *t = in[i];
    if (!t) continue;
    if (t->dtype != f->dtype) return cnnfx_fail_shape(error, n, "inputs have different data types");
    if (t->ndim != r) return cnnfx_fail_shape(error, n, "input %d has rank %d, expected %d", i, t->ndim, r);
    for (int k = 0; k < r; k++)
      if (k != axis && t->dims[k] != f->dims[k]) {
        g_autofree char *a = cnnfx_shape_string(f), *b = cnnfx_shape_string(t);
        return cnnfx_fail_shape(error, n, "input shapes %s and %s differ outside axis %d", a, b, axis);
      }
    dims[axis] += t->dims[axis];
  }
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, f->dtype, r, dims, error);
  if (!o) return FALSE;
  const size_t es = esz(f);
  const int64_t outer = prod(dims, 0, axis), inner = prod(dims, axis + 1, r);
  const size_t orow = (size_t)(dims[axis] * inner) * es;
  size_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) continue;
    size_t len = (size_t)(in[i]->dims[axis] * inner) * es;
    block_copy(o->data, orow, off, in[i]->data, len, 0, outer, len);
    off += len;
  }
  out[0] = o;
  return TRUE;
}

static gboolean concat_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor **gin, GError **error)
{
  (void)out;
  const CnnfxTensor *g = fgrad(gout, 0);
  const CnnfxTensor *f = NULL;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) {
      f = in[i];
      break;
    }
  if (!f) return TRUE;
  int r = f->ndim, axis;
  if (!concat_axis(n, r, &axis, error)) return FALSE;
  int64_t total = 0;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) total += in[i]->dims[axis];
  const int64_t outer = prod(f->dims, 0, axis), inner = prod(f->dims, axis + 1, r);
  const size_t grow = (size_t)(total * inner) * sizeof(float);
  size_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) continue;
    size_t len = (size_t)(in[i]->dims[axis] * inner) * sizeof(float);
    if (need[i] && in[i]->dtype == CNNFX_F32) {
      if (!(gin[i] = alloc_f32_like(x, in[i], error))) return FALSE;
      if (g) block_copy(gin[i]->data, len, 0, g->data, grow, off, outer, len);
      else memset(gin[i]->data, 0, gin[i]->numel * sizeof(float));
    }
    off += len;
  }
  return TRUE;
}

/* Split sizes along axis.  Returns FALSE with error on mismatch. */
static gboolean split_sizes(const CnnfxNode *n, CnnfxTensor *const *in, int *axis_out, int64_t *sizes,
                            GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim, axis;
  int64_t ax = cnnfx_attr_int(n, "axis", 0);
  if (!cnnfx_norm_axis(ax, r, &axis) || r == 0)
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, r);
  int no = n->n_out;
  int64_t dim = t->dims[axis];
  const int64_t *sv = NULL;
  int ns = -1;
  if (n->n_in > 1 && in[1]) {
    if (in[1]->dtype != CNNFX_I64 || in[1]->ndim > 1 || !in[1]->data)
      return cnnfx_fail_shape(error, n, "input 'split' must be a 1-D integer tensor");
    ns = (int)in[1]->numel;
    sv = cnnfx_i64(in[1]);
  } else if (n->opset < 13) {
    ns = cnnfx_attr_ints(n, "split", &sv);
  }
  if (ns >= 0 && !(ns == 0 && n->opset >= 13)) {
    if (ns != no) return cnnfx_fail_shape(error, n, "%d split sizes for %d outputs", ns, no);
    int64_t sum = 0;
    for (int k = 0; k < no; k++) {
      if (sv[k] < 0) return cnnfx_fail_shape(error, n, "negative split size");
      sizes[k] = sv[k];
      sum += sv[k];
    }
    if (sum != dim)
      return cnnfx_fail_shape(error, n, "split sizes add up to %" G_GINT64_FORMAT ", axis has %" G_GINT64_FORMAT,
                              sum, dim);
  } else {
    int64_t nparts = cnnfx_attr_int(n, "num_outputs", no);
    if (nparts != no || no <= 0) return cnnfx_fail_shape(error, n, "num_outputs does not match the outputs");
    if (n->opset >= 18 && cnnfx_attr(n, "num_outputs")) {
      int64_t chunk = (dim + no - 1) / no;
      for (int k = 0; k < no; k++) sizes[k] = MAX(0, MIN(chunk, dim - chunk * k));
    } else {
      if (dim % no)
        return cnnfx_fail_shape(error, n, "axis of size %" G_GINT64_FORMAT " cannot be split into %d equal parts",
                                dim, no);
      for (int k = 0; k < no; k++) sizes[k] = dim / no;
    }
  }
  *axis_out = axis;
  return TRUE;
}

static gboolean split_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  const CnnfxTensor *t = in[0];
  int axis, r = t->ndim;
  g_autofree int64_t *sizes = g_new0(int64_t, n->n_out + 1);
  if (!split_sizes(n, in, &axis, sizes, error)) return FALSE;
  const size_t es = esz(t);
  const int64_t outer = prod(t->dims, 0, axis), inner = prod(t->dims, axis + 1, r);
  const size_t srow = (size_t)(t->dims[axis] * inner) * es;
  size_t off = 0;
  for (int k = 0; k < n->n_out; k++) {
    int64_t dims[MAXD];
    memcpy(dims, t->dims, sizeof(int64_t) * r);
    dims[axis] = sizes[k];
    size_t len = (size_t)(sizes[k] * inner) * es;
    if (!(out[k] = cnnfx_tensor_alloc(x->mem, t->dtype, r, dims, error))) return FALSE;
    block_copy(out[k]->data, len, 0, t->data, srow, off, outer, len);
    off += len;
  }
  return TRUE;
}

static gboolean split_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0];
  int axis, r = t->ndim;
  g_autofree int64_t *sizes = g_new0(int64_t, n->n_out + 1);
  if (!split_sizes(n, in, &axis, sizes, error)) return FALSE;
  if (!(gin[0] = alloc_f32_like(x, t, error))) return FALSE;
  const int64_t outer = prod(t->dims, 0, axis), inner = prod(t->dims, axis + 1, r);
  const size_t grow = (size_t)(t->dims[axis] * inner) * sizeof(float);
  size_t off = 0;
  char *gd = gin[0]->data;
  for (int k = 0; k < n->n_out; k++) {
    size_t len = (size_t)(sizes[k] * inner) * sizeof(float);
    const CnnfxTensor *g = fgrad(gout, k);
    if (g && g->numel * sizeof(float) == (size_t)outer * len) {
      block_copy(gd, grow, off, g->data, len, 0, outer, len);
    } else {
      for (int64_t o = 0; o < outer; o++) memset(gd + o * grow + off, 0, len);
    }
    off += len;
  }
  return TRUE;
}

/* ---- Flatten / Reshape / Squeeze / Unsqueeze ----------------------------------- */

static gboolean flatten_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim;
  int64_t axis = cnnfx_attr_int(n, "axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return cnnfx_fail_shape(error, n, "axis out of range for rank %d", r);
  int64_t dims[2] = {prod(t->dims, 0, (int)axis), prod(t->dims, (int)axis, r)};
  return reshaped_copy(x, t, 2, dims, &out[0], error);
}

static gboolean reshape_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t shape[MAXD], dims[MAXD];
  int k = -1;
  if (n->opset < 5 || n->n_in < 2 || !in[1]) {
    if (!attr_ints(n, "shape", shape, MAXD, &k, error)) return FALSE;
    if (k < 0) return cnnfx_fail_shape(error, n, "no target shape");
  } else if (!tensor_ints(n, in[1], "shape", shape, MAXD, &k, error)) {
    return FALSE;
  }
  gboolean allowzero = n->opset >= 14 && cnnfx_attr_int(n, "allowzero", 0) != 0;
  int neg = -1;
  int64_t known = 1;
  for (int i = 0; i < k; i++) {
    int64_t v = shape[i];
    if (v == 0 && !allowzero) {
      if (i >= t->ndim) return cnnfx_fail_shape(error, n, "shape entry %d is 0 but the input has rank %d", i, t->ndim);
      v = t->dims[i];
    } else if (v == -1) {
      if (neg >= 0) return cnnfx_fail_shape(error, n, "more than one -1 in the target shape");
      neg = i;
      dims[i] = -1;
      continue;
    } else if (v < 0) {
      return cnnfx_fail_shape(error, n, "invalid target dimension %" G_GINT64_FORMAT, v);
    }
    dims[i] = v;
    if (v && known > INT64_MAX / v) return cnnfx_fail_shape(error, n, "target shape too large");
    known *= v;
  }
  if (neg >= 0) {
    if (known == 0 || t->numel % (size_t)known)
      return cnnfx_fail_shape(error, n, "cannot infer the -1 dimension (%zu elements)", t->numel);
    dims[neg] = (int64_t)t->numel / known;
  } else if ((size_t)known != t->numel) {
    g_autofree char *s = cnnfx_shape_string(t);
    return cnnfx_fail_shape(error, n, "cannot reshape %s (%zu elements) to %" G_GINT64_FORMAT " elements", s,
                            t->numel, known);
  }
  return reshaped_copy(x, t, k, dims, &out[0], error);
}

static gboolean squeeze_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t axes[MAXD], dims[MAXD];
  int na = -1, r = t->ndim, nd = 0;
  gboolean mask[MAXD];
  if (n->n_in > 1 && in[1]) {
    if (!tensor_ints(n, in[1], "axes", axes, MAXD, &na, error)) return FALSE;
  } else if (!attr_ints(n, "axes", axes, MAXD, &na, error)) { /* attribute before opset 13 */
    return FALSE;
  }
  if (na < 0) {
    for (int k = 0; k < r; k++) mask[k] = t->dims[k] == 1;
  } else {
    if (!axes_mask(n, axes, na, r, mask, error)) return FALSE;
    for (int k = 0; k < r; k++)
      if (mask[k] && t->dims[k] != 1)
        return cnnfx_fail_shape(error, n, "cannot squeeze axis %d of size %" G_GINT64_FORMAT, k, t->dims[k]);
  }
  for (int k = 0; k < r; k++)
    if (!mask[k]) dims[nd++] = t->dims[k];
  return reshaped_copy(x, t, nd, dims, &out[0], error);
}

static gboolean unsqueeze_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor **out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t axes[MAXD], dims[MAXD];
  int na = -1, r = t->ndim;
  gboolean mask[MAXD];
  if (n->n_in > 1 && in[1]) {
    if (!tensor_ints(n, in[1], "axes", axes, MAXD, &na, error)) return FALSE;
  } else if (!attr_ints(n, "axes", axes, MAXD, &na, error)) { /* attribute before opset 13 */
    return FALSE;
  }
  if (na < 0) return cnnfx_fail_shape(error, n, "no axes given");
  int nr = r + na;
  if (nr > MAXD) return cnnfx_fail_shape(error, n, "result would have rank %d (max %d)", nr, MAXD);
  if (!axes_mask(n, axes, na, nr, mask, error)) return FALSE;
  for (int k = 0, j = 0; k < nr; k++) dims[k] = mask[k] ? 1 : t->dims[j++];
  return reshaped_copy(x, t, nr, dims, &out[0], error);
}

/* ---- Transpose ------------------------------------------------------------------ */

static gboolean get_perm(const CnnfxNode *n, int r, int *perm, GError **error)
{
  const int64_t *p;
  int np = cnnfx_attr_ints(n, "perm", &p);
  if (np < 0) {
    for (int k = 0; k < r; k++) perm[k] = r - 1 - k;
    return TRUE;
  }
  if (np != r) return cnnfx_fail_shape(error, n, "perm has %d entries for rank %d", np, r);
  gboolean seen[MAXD] = {0};
  for (int k = 0; k < r; k++) {
    if (p[k] < 0 || p[k] >= r || seen[p[k]]) return cnnfx_fail_shape(error, n, "perm is not a permutation");
    seen[p[k]] = TRUE;
    perm[k] = (int)p[k];
  }
  return TRUE;
}

/* out[i_0..] = in[i_perm^-1...]: out dim k is input dim perm[k] */
static void transpose_copy(const CnnfxTensor *t, const int *perm, void *dst, const void *src, int64_t *odims)
{
  int r = t->ndim;
  int64_t ist[MAXD];
  contiguous_strides(r, t->dims, ist);
  Walk w;
  w.nd = r;
  for (int k = 0; k < r; k++) {
    w.dims[k] = t->dims[perm[k]];
    w.ss[k] = ist[perm[k]];
    if (odims) odims[k] = w.dims[k];
  }
  contiguous_strides(r, w.dims, w.ds);
  walk_copy(&w, dst, src, esz(t));
}

static gboolean transpose_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor **out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int perm[MAXD];
  int64_t dims[MAXD];
  if (!get_perm(n, t->ndim, perm, error)) return FALSE;
  for (int k = 0; k < t->ndim; k++) dims[k] = t->dims[perm[k]];
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, t->dtype, t->ndim, dims, error);
  if (!o) return FALSE;
  transpose_copy(t, perm, o->data, t->data, NULL);
  out[0] = o;
  return TRUE;
}

static gboolean transpose_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                   CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *g = fgrad(gout, 0);
  int r = in[0]->ndim, perm[MAXD], inv[MAXD];
  if (!get_perm(n, r, perm, error)) return FALSE;
  if (!g) return (gin[0] = zeros_f32_like(x, in[0], error)) != NULL;
  for (int k = 0; k < r; k++) inv[perm[k]] = k;
  if (!(gin[0] = alloc_f32_like(x, in[0], error))) return FALSE;
  transpose_copy(g, inv, gin[0]->data, g->data, NULL);
  return TRUE;
}

/* ---- Slice ------------------------------------------------------------------------ */

typedef struct {
  int64_t start[MAXD], step[MAXD], len[MAXD];
} SliceParams;

static gboolean slice_params(const CnnfxNode *n, CnnfxTensor *const *in, SliceParams *p, GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim;
  int64_t starts[MAXD], ends[MAXD], axes[MAXD], steps[MAXD];
  int ns, ne, na = -1, nst = -1;
  if (n->opset < 10) {
    if (!attr_ints(n, "starts", starts, MAXD, &ns, error) || !attr_ints(n, "ends", ends, MAXD, &ne, error) ||
        !attr_ints(n, "axes", axes, MAXD, &na, error))
      return FALSE;
    if (ns < 0 || ne < 0) return cnnfx_fail_shape(error, n, "attributes 'starts' and 'ends' are required");
  } else {
    if (n->n_in < 3 || !in[1] || !in[2]) return cnnfx_fail_shape(error, n, "inputs 'starts' and 'ends' are required");
    if (!tensor_ints(n, in[1], "starts", starts, MAXD, &ns, error) ||
        !tensor_ints(n, in[2], "ends", ends, MAXD, &ne, error))
      return FALSE;
    if (n->n_in > 3 && in[3] && !tensor_ints(n, in[3], "axes", axes, MAXD, &na, error)) return FALSE;
    if (n->n_in > 4 && in[4] && !tensor_ints(n, in[4], "steps", steps, MAXD, &nst, error)) return FALSE;
  }
  if (ne != ns) return cnnfx_fail_shape(error, n, "%d starts but %d ends", ns, ne);
  if (na >= 0 && na != ns) return cnnfx_fail_shape(error, n, "%d starts but %d axes", ns, na);
  if (nst >= 0 && nst != ns) return cnnfx_fail_shape(error, n, "%d starts but %d steps", ns, nst);
  if (na < 0 && ns > r) return cnnfx_fail_shape(error, n, "%d starts for rank %d", ns, r);
  gboolean seen[MAXD] = {0};
  for (int k = 0; k < r; k++) {
    p->start[k] = 0;
    p->step[k] = 1;
    p->len[k] = t->dims[k];
  }
  for (int i = 0; i < ns; i++) {
    int a;
    int64_t ax = na >= 0 ? axes[i] : i;
    if (!cnnfx_norm_axis(ax, r, &a) || r == 0)
      return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, r);
    if (seen[a]) return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " repeated", ax);
    seen[a] = TRUE;
    int64_t step = nst >= 0 ? steps[i] : 1;
    if (step == 0) return cnnfx_fail_shape(error, n, "step 0");
    int64_t dim = t->dims[a], s = starts[i], e = ends[i], len;
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    /* |step| beyond dim selects at most one element: keep it small so offsets cannot overflow */
    if (step > dim + 1) step = dim + 1;
    if (step < -(dim + 1)) step = -(dim + 1);
    if (dim == 0) {
      s = 0;
      len = 0;
    } else if (step > 0) {
      s = CLAMP(s, 0, dim);
      e = CLAMP(e, 0, dim);
      len = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = CLAMP(s, 0, dim - 1);
      e = CLAMP(e, -1, dim - 1);
      len = s > e ? (s - e - step - 1) / (-step) : 0;
    }
    p->start[a] = s;
    p->step[a] = step;
    p->len[a] = len;
  }
  return TRUE;
}

static void slice_walk(const CnnfxTensor *t, const SliceParams *p, Walk *w, int64_t *base, gboolean forward)
{
  int r = t->ndim;
  int64_t ist[MAXD], ost[MAXD];
  contiguous_strides(r, t->dims, ist);
  contiguous_strides(r, p->len, ost);
  w->nd = r;
  *base = 0;
  for (int k = 0; k < r; k++) {
    w->dims[k] = p->len[k];
    *base += p->start[k] * ist[k];
    if (forward) {
      w->ds[k] = ost[k];
      w->ss[k] = ist[k] * p->step[k];
    } else {
      w->ds[k] = ist[k] * p->step[k];
      w->ss[k] = ost[k];
    }
  }
}

static gboolean slice_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  const CnnfxTensor *t = in[0];
  SliceParams p;
  if (!slice_params(n, in, &p, error)) return FALSE;
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, t->dtype, t->ndim, p.len, error);
  if (!o) return FALSE;
  Walk w;
  int64_t base;
  slice_walk(t, &p, &w, &base, TRUE);
  if (o->numel) walk_copy(&w, o->data, (const char *)t->data + base * (int64_t)esz(t), esz(t));
  out[0] = o;
  return TRUE;
}

static gboolean slice_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  SliceParams p;
  if (!slice_params(n, in, &p, error)) return FALSE;
  if (!(gin[0] = zeros_f32_like(x, t, error))) return FALSE;
  if (!g) return TRUE;
  Walk w;
  int64_t base;
  slice_walk(t, &p, &w, &base, FALSE);
  if (g->numel) walk_copy(&w, cnnfx_f32(gin[0]) + base, g->data, sizeof(float));
  return TRUE;
}

/* ---- Gather ------------------------------------------------------------------------- */

static gboolean gather_setup(const CnnfxNode *n, CnnfxTensor *const *in, int *axis, GError **error)
{
  const CnnfxTensor *d = in[0], *ix = in[1];
  if (ix->dtype != CNNFX_I64) return cnnfx_fail_shape(error, n, "indices must be integers");
  int64_t ax = cnnfx_attr_int(n, "axis", 0);
  if (d->ndim == 0 || !cnnfx_norm_axis(ax, d->ndim, axis))
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, d->ndim);
  if (d->ndim - 1 + ix->ndim > MAXD) return cnnfx_fail_shape(error, n, "result rank too large");
  return TRUE;
}

static gboolean gather_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               GError **error)
{
  const CnnfxTensor *d = in[0], *ix = in[1];
  int axis;
  if (!gather_setup(n, in, &axis, error)) return FALSE;
  int r = d->ndim, q = ix->ndim, nd = 0;
  int64_t dims[MAXD];
  for (int k = 0; k < axis; k++) dims[nd++] = d->dims[k];
  for (int k = 0; k < q; k++) dims[nd++] = ix->dims[k];
  for (int k = axis + 1; k < r; k++) dims[nd++] = d->dims[k];
  const int64_t D = d->dims[axis], ni = (int64_t)ix->numel;
  const int64_t *idx = cnnfx_i64(ix);
  for (int64_t j = 0; j < ni; j++)
    if (idx[j] < -D || idx[j] >= D)
      return cnnfx_fail_shape(error, n, "index %" G_GINT64_FORMAT " out of range for axis of size %" G_GINT64_FORMAT,
                              idx[j], D);
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, d->dtype, nd, dims, error);
  if (!o) return FALSE;
  const size_t es = esz(d);
  const int64_t outer = prod(d->dims, 0, axis), inner = prod(d->dims, axis + 1, r);
  const size_t blk = (size_t)inner * es;
  char *od = o->data;
  const char *sd = d->data;
#pragma omp parallel for if ((int64_t)o->numel > PAR_MIN) schedule(static)
  for (int64_t t = 0; t < outer * ni; t++) {
    int64_t oi = t / ni, j = t % ni, k = idx[j] < 0 ? idx[j] + D : idx[j];
    memcpy(od + (size_t)t * blk, sd + ((size_t)(oi * D + k)) * blk, blk);
  }
  out[0] = o;
  return TRUE;
}

static gboolean gather_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *d = in[0], *ix = in[1], *g = fgrad(gout, 0);
  int axis;
  if (!gather_setup(n, in, &axis, error)) return FALSE;
  if (!(gin[0] = zeros_f32_like(x, d, error))) return FALSE;
  if (!g) return TRUE;
  if (!ix->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "Gather '%s': indices were not kept for backward", n->name);
    return FALSE;
  }
  const int64_t D = d->dims[axis], ni = (int64_t)ix->numel;
  const int64_t outer = prod(d->dims, 0, axis), inner = prod(d->dims, axis + 1, d->ndim);
  const int64_t *idx = cnnfx_i64(ix);
  float *gd = cnnfx_f32(gin[0]);
  const float *gs = cnnfx_f32(g);
  if (outer > 1) {
#pragma omp parallel for if ((int64_t)g->numel > PAR_MIN) schedule(static)
    for (int64_t oi = 0; oi < outer; oi++)
      for (int64_t j = 0; j < ni; j++) {
        int64_t k = idx[j] < 0 ? idx[j] + D : idx[j];
        if (k < 0 || k >= D) continue;
        float *dst = gd + (oi * D + k) * inner;
        const float *src = gs + (oi * ni + j) * inner;
        for (int64_t e = 0; e < inner; e++) dst[e] += src[e];
      }
  } else {
    /* one outer block (axis 0): parallelise inside the rows */
    const int64_t nch = inner >= 4096 ? MIN(inner / 1024, 64) : 1;
#pragma omp parallel for if (nch > 1) schedule(static)
    for (int64_t c = 0; c < nch; c++) {
      int64_t e0 = inner * c / nch, e1 = inner * (c + 1) / nch;
      for (int64_t j = 0; j < ni; j++) {
        int64_t k = idx[j] < 0 ? idx[j] + D : idx[j];
        if (k < 0 || k >= D) continue;
        float *dst = gd + k * inner;
        const float *src = gs + j * inner;
        for (int64_t e = e0; e < e1; e++) dst[e] += src[e];
      }
    }
  }
  return TRUE;
}

/* ---- Shape / Size --------------------------------------------------------------------- */

static gboolean shape_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t r = t->ndim, s = 0, e = r;
  if (n->opset >= 15) {
    s = cnnfx_attr_int(n, "start", 0);
    e = cnnfx_attr_int(n, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = CLAMP(s, 0, r);
    e = CLAMP(e, 0, r);
  }
  int64_t len = MAX(0, e - s);
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, CNNFX_I64, 1, &len, error);
  if (!o) return FALSE;
  for (int64_t k = 0; k < len; k++) cnnfx_i64(o)[k] = t->dims[s + k];
  out[0] = o;
  return TRUE;
}

static gboolean size_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             GError **error)
{
  (void)n;
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, CNNFX_I64, 0, NULL, error);
  if (!o) return FALSE;
  cnnfx_i64(o)[0] = (int64_t)in[0]->numel;
  out[0] = o;
  return TRUE;
}

/* ---- Pad -------------------------------------------------------------------------------- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE };

static gboolean pad_mode(const CnnfxNode *n, int *mode, GError **error)
{
  const char *m = cnnfx_attr_string(n, "mode", "constant");
  if (!strcmp(m, "constant")) *mode = PAD_CONSTANT;
  else if (!strcmp(m, "reflect")) *mode = PAD_REFLECT;
  else if (!strcmp(m, "edge")) *mode = PAD_EDGE;
  else {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Pad '%s': mode '%s' is not supported", n->name, m);
    return FALSE;
  }
  return TRUE;
}

static gboolean pad_check(const CnnfxNode *n, GError **error)
{
  int mode;
  return pad_mode(n, &mode, error);
}

/* Begin/end pads per dim of in[0]. */
static gboolean pad_amounts(const CnnfxNode *n, CnnfxTensor *const *in, int64_t *pb, int64_t *pe, GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim, np = -1;
  int64_t pads[2 * MAXD], axes[MAXD];
  int na = -1;
  if (n->opset < 11) {
    if (!attr_ints(n, n->opset < 2 && cnnfx_attr(n, "paddings") ? "paddings" : "pads", pads, 2 * MAXD, &np, error))
      return FALSE;
    if (np < 0) return cnnfx_fail_shape(error, n, "attribute 'pads' is required");
  } else {
    if (n->n_in < 2 || !in[1]) return cnnfx_fail_shape(error, n, "input 'pads' is required");
    if (!tensor_ints(n, in[1], "pads", pads, 2 * MAXD, &np, error)) return FALSE;
    if (n->n_in > 3 && in[3] && !tensor_ints(n, in[3], "axes", axes, MAXD, &na, error)) return FALSE;
  }
  for (int k = 0; k < r; k++) pb[k] = pe[k] = 0;
  if (na >= 0) {
    gboolean mask[MAXD];
    if (np != 2 * na) return cnnfx_fail_shape(error, n, "%d pads for %d axes", np, na);
    if (!axes_mask(n, axes, na, r, mask, error)) return FALSE;
    for (int i = 0; i < na; i++) {
      int a;
      cnnfx_norm_axis(axes[i], r, &a);
      pb[a] = pads[i];
      pe[a] = pads[na + i];
    }
  } else {
    if (np != 2 * r) return cnnfx_fail_shape(error, n, "%d pads for rank %d", np, r);
    for (int k = 0; k < r; k++) {
      pb[k] = pads[k];
      pe[k] = pads[r + k];
    }
  }
  for (int k = 0; k < r; k++) {
    if (pb[k] < -t->dims[k] || pe[k] < -t->dims[k] || pb[k] > (1 << 30) || pe[k] > (1 << 30) ||
        t->dims[k] + pb[k] + pe[k] < 0)
      return cnnfx_fail_shape(error, n, "pads %" G_GINT64_FORMAT ",%" G_GINT64_FORMAT " invalid for axis %d of size %"
                              G_GINT64_FORMAT, pb[k], pe[k], k, t->dims[k]);
  }
  return TRUE;
}

/* Per-dim source index maps: map[d][o] in [0, I) or -1 (constant). Single allocation. */
typedef struct {
  int nd;
  int64_t I[MAXD], O[MAXD], b[MAXD];
  int64_t *map[MAXD];
  int64_t *buf;
} PadMaps;

static gboolean pad_maps(const CnnfxNode *n, const CnnfxTensor *t, const int64_t *pb, const int64_t *pe, int mode,
                         PadMaps *pm, GError **error)
{
  int r = t->ndim;
  size_t total = 0;
  pm->nd = r;
  for (int k = 0; k < r; k++) {
    pm->I[k] = t->dims[k];
    pm->b[k] = pb[k];
    pm->O[k] = t->dims[k] + pb[k] + pe[k];
    total += (size_t)pm->O[k];
    if (mode != PAD_CONSTANT && pm->I[k] == 0 && pm->O[k] > 0)
      return cnnfx_fail_shape(error, n, "cannot %s-pad an empty axis", mode == PAD_EDGE ? "edge" : "reflect");
  }
  pm->buf = g_try_new(int64_t, total + 1);
  if (!pm->buf) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory");
    return FALSE;
  }
  int64_t *p = pm->buf;
  for (int k = 0; k < r; k++) {
    pm->map[k] = p;
    int64_t I = pm->I[k];
    for (int64_t o = 0; o < pm->O[k]; o++) {
      int64_t i = o - pb[k];
      if (i < 0 || i >= I) {
        if (mode == PAD_CONSTANT) i = -1;
        else if (mode == PAD_EDGE) i = i < 0 ? 0 : I - 1;
        else if (I == 1) i = 0;
        else {
          int64_t period = 2 * (I - 1);
          i %= period;
          if (i < 0) i += period;
          if (i >= I) i = period - i;
        }
      }
      p[o] = i;
    }
    p += pm->O[k];
  }
  return TRUE;
}

static gboolean pad_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                            GError **error)
{
  const CnnfxTensor *t = in[0];
  int mode, r = t->ndim;
  int64_t pb[MAXD], pe[MAXD];
  if (!pad_mode(n, &mode, error) || !pad_amounts(n, in, pb, pe, error)) return FALSE;
  /* fill value as raw bits of the element type */
  uint64_t fill = 0;
  {
    double v = 0;
    int64_t iv = 0;
    if (n->opset < 11) {
      v = cnnfx_attr_float(n, "value", 0.f);
      iv = (int64_t)CLAMP(v, -9.2e18, 9.2e18); /* defined for any float (NaN -> 0 below) */
      if (v != v) iv = 0;
    } else if (n->n_in > 2 && in[2] && in[2]->numel) {
      if (in[2]->dtype == CNNFX_F32) {
        v = cnnfx_f32(in[2])[0];
        iv = v == v ? (int64_t)CLAMP(v, -9.2e18, 9.2e18) : 0;
      } else {
        iv = cnnfx_i64(in[2])[0];
        v = (double)iv;
      }
    }
    if (t->dtype == CNNFX_F32) {
      float f = (float)v;
      uint32_t b32;
      memcpy(&b32, &f, 4);
      fill = b32;
    } else {
      memcpy(&fill, &iv, 8);
    }
  }
  int64_t odims[MAXD];
  for (int k = 0; k < r; k++) odims[k] = t->dims[k] + pb[k] + pe[k];
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, t->dtype, r, odims, error);
  if (!o) return FALSE;
  PadMaps pm;
  if (!pad_maps(n, t, pb, pe, mode, &pm, error)) {
    cnnfx_tensor_unref(o);
    return FALSE;
  }
  if (r == 0) {
    memcpy(o->data, t->data, esz(t));
  } else if (o->numel) {
    const size_t es = esz(t);
    int64_t ist[MAXD];
    contiguous_strides(r, pm.I, ist);
    const int64_t L = pm.O[r - 1], Il = pm.I[r - 1], bl = pm.b[r - 1];
    const int64_t rows = (int64_t)o->numel / L;
    const int64_t j0 = MAX(0, bl), j1 = MIN(L, Il + bl); /* identity section of the last dim */
    const int64_t *ml = pm.map[r - 1];
    char *od = o->data;
    const char *sd = t->data;
#pragma omp parallel for if ((int64_t)o->numel > PAR_MIN) schedule(static)
    for (int64_t row = 0; row < rows; row++) {
      int64_t rr = row, base = 0;
      gboolean pad = FALSE;
      for (int k = r - 2; k >= 0; k--) {
        int64_t ok = rr % pm.O[k];
        rr /= pm.O[k];
        int64_t m = pm.map[k][ok];
        if (m < 0) pad = TRUE;
        else base += m * ist[k];
      }
      char *dr = od + (size_t)row * L * es;
      if (es == 4) {
        uint32_t *D = (uint32_t *)dr;
        const uint32_t *S = (const uint32_t *)sd + base;
        uint32_t f = (uint32_t)fill;
        if (pad) {
          for (int64_t j = 0; j < L; j++) D[j] = f;
          continue;
        }
        for (int64_t j = 0; j < j0; j++) D[j] = ml[j] < 0 ? f : S[ml[j]];
        if (j1 > j0) memcpy(D + j0, S + (j0 - bl), (size_t)(j1 - j0) * 4);
        for (int64_t j = MAX(j1, j0); j < L; j++) D[j] = ml[j] < 0 ? f : S[ml[j]];
      } else {
        uint64_t *D = (uint64_t *)dr;
        const uint64_t *S = (const uint64_t *)sd + base;
        if (pad) {
          for (int64_t j = 0; j < L; j++) D[j] = fill;
          continue;
        }
        for (int64_t j = 0; j < j0; j++) D[j] = ml[j] < 0 ? fill : S[ml[j]];
        if (j1 > j0) memcpy(D + j0, S + (j0 - bl), (size_t)(j1 - j0) * 8);
        for (int64_t j = MAX(j1, j0); j < L; j++) D[j] = ml[j] < 0 ? fill : S[ml[j]];
      }
    }
  }
  g_free(pm.buf);
  out[0] = o;
  return TRUE;
}

static gboolean pad_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                             CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                             CnnfxTensor **gin, GError **error)
{
  (void)out;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  gboolean need_v = n->n_in > 2 && need[2] && in[2] && in[2]->dtype == CNNFX_F32;
  if (!(need[0] || need_v) || t->dtype != CNNFX_F32) return TRUE;
  int mode, r = t->ndim;
  int64_t pb[MAXD], pe[MAXD];
  if (!pad_mode(n, &mode, error) || !pad_amounts(n, in, pb, pe, error)) return FALSE;
  PadMaps pm;
  if (!pad_maps(n, t, pb, pe, mode, &pm, error)) return FALSE;
  CnnfxTensor *gi = zeros_f32_like(x, t, error);
  if (!gi) {
    g_free(pm.buf);
    return FALSE;
  }
  if (g && r == 0) {
    cnnfx_f32(gi)[0] = cnnfx_f32(g)[0];
  } else if (g && gi->numel && g->numel) {
    /* Inverse maps of the outer dims (CSR): out indices whose source is input index i. */
    int64_t *istart[MAXD], *ilist[MAXD];
    size_t tot = 0;
    for (int k = 0; k < r - 1; k++) tot += (size_t)(2 * (pm.I[k] + 1) + pm.O[k]);
    g_autofree int64_t *ib = g_try_new(int64_t, tot + 1);
    if (!ib) {
      g_free(pm.buf);
      cnnfx_tensor_unref(gi);
      cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory");
      return FALSE;
    }
    int64_t *p = ib;
    for (int k = 0; k < r - 1; k++) {
      istart[k] = p;
      p += pm.I[k] + 1;
      int64_t *cur = p;
      p += pm.I[k] + 1;
      ilist[k] = p;
      p += pm.O[k];
      for (int64_t i = 0; i <= pm.I[k]; i++) istart[k][i] = 0;
      for (int64_t o = 0; o < pm.O[k]; o++)
        if (pm.map[k][o] >= 0) istart[k][pm.map[k][o] + 1]++;
      for (int64_t i = 0; i < pm.I[k]; i++) istart[k][i + 1] += istart[k][i];
      memcpy(cur, istart[k], sizeof(int64_t) * (size_t)(pm.I[k] + 1));
      for (int64_t o = 0; o < pm.O[k]; o++) {
        int64_t m = pm.map[k][o];
        if (m >= 0) ilist[k][cur[m]++] = o;
      }
    }
    int64_t ost[MAXD];
    contiguous_strides(r, pm.O, ost);
    const int64_t Il = pm.I[r - 1], L = pm.O[r - 1], bl = pm.b[r - 1];
    const int64_t j0 = MAX(0, bl), j1 = MIN(L, Il + bl);
    const int64_t *ml = pm.map[r - 1];
    const int64_t irows = (int64_t)gi->numel / Il;
    float *gd = cnnfx_f32(gi);
    const float *gs = cnnfx_f32(g);
#pragma omp parallel for if ((int64_t)g->numel > PAR_MIN) schedule(static)
    for (int64_t row = 0; row < irows; row++) {
      int64_t ik[MAXD], cnt[MAXD], pos[MAXD];
      int64_t rr = row;
      gboolean none = FALSE;
      for (int k = r - 2; k >= 0; k--) {
        ik[k] = rr % pm.I[k];
        rr /= pm.I[k];
        cnt[k] = istart[k][ik[k] + 1] - istart[k][ik[k]];
        pos[k] = 0;
        if (!cnt[k]) none = TRUE;
      }
      if (none) continue;
      float *dr = gd + row * Il;
      for (;;) {
        int64_t off = 0;
        for (int k = 0; k < r - 1; k++) off += ilist[k][istart[k][ik[k]] + pos[k]] * ost[k];
        const float *sr = gs + off;
        for (int64_t j = 0; j < j0; j++)
          if (ml[j] >= 0) dr[ml[j]] += sr[j];
        for (int64_t j = j0; j < j1; j++) dr[j - bl] += sr[j];
        for (int64_t j = MAX(j1, j0); j < L; j++)
          if (ml[j] >= 0) dr[ml[j]] += sr[j];
        int k = r - 2;
        for (; k >= 0; k--) {
          if (++pos[k] < cnt[k]) break;
          pos[k] = 0;
        }
        if (k < 0) break;
      }
    }
  }
  g_free(pm.buf);
  if (need_v) {
    /* constant mode: d/dvalue = sum of the padded positions = sum(gout) - sum(gin) */
    CnnfxTensor *gv = zeros_f32_like(x, in[2], error);
    if (!gv) {
      cnnfx_tensor_unref(gi);
      return FALSE;
    }
    if (g && mode == PAD_CONSTANT && gv->numel) {
      double sg = 0, si = 0;
      for (size_t i = 0; i < g->numel; i++) sg += cnnfx_f32(g)[i];
      for (size_t i = 0; i < gi->numel; i++) si += cnnfx_f32(gi)[i];
      cnnfx_f32(gv)[0] = (float)(sg - si);
    }
    gin[2] = gv;
  }
  if (need[0]) gin[0] = gi;
  else cnnfx_tensor_unref(gi);
  return TRUE;
}

/* ---- ReduceMean ------------------------------------------------------------------------ */

/* mask of reduced axes; *noop when the op is the identity */
static gboolean reduce_axes(const CnnfxNode *n, CnnfxTensor *const *in, gboolean *mask, gboolean *noop,
                            GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim, na = -1;
  int64_t axes[MAXD];
  *noop = FALSE;
  if (n->n_in > 1 && in[1]) {
    if (!tensor_ints(n, in[1], "axes", axes, MAXD, &na, error)) return FALSE;
  } else if (!attr_ints(n, "axes", axes, MAXD, &na, error)) { /* attribute before opset 18 */
    return FALSE;
  }
  if (na <= 0) {
    if (n->opset >= 18 && cnnfx_attr_int(n, "noop_with_empty_axes", 0)) *noop = TRUE;
    for (int k = 0; k < r; k++) mask[k] = !*noop;
    return TRUE;
  }
  return axes_mask(n, axes, na, r, mask, error);
}

static gboolean reducemean_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor **out, GError **error)
{
  const CnnfxTensor *t = in[0];
  if (!need_float(n, t, "data", error)) return FALSE;
  gboolean mask[MAXD], noop;
  if (!reduce_axes(n, in, mask, &noop, error)) return FALSE;
  if (noop) return reshaped_copy(x, t, t->ndim, t->dims, &out[0], error);
  gboolean keep = cnnfx_attr_int(n, "keepdims", 1) != 0;
  int r = t->ndim, nd = 0;
  int64_t dims[MAXD], count = 1;
  for (int k = 0; k < r; k++) {
    if (mask[k]) {
      count *= t->dims[k];
      if (keep) dims[nd++] = 1;
    } else {
      dims[nd++] = t->dims[k];
    }
  }
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, CNNFX_F32, nd, dims, error);
  if (!o) return FALSE;
  reduce_sum_f32(r, t->dims, mask, t->data, o->data);
  scale_f32(o->data, o->numel, count ? 1.f / (float)count : NAN);
  out[0] = o;
  return TRUE;
}

static gboolean reducemean_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                    CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  gboolean mask[MAXD], noop;
  if (!reduce_axes(n, in, mask, &noop, error)) return FALSE;
  if (noop) return copy_grad(x, t, g, &gin[0], error);
  if (!g) return (gin[0] = zeros_f32_like(x, t, error)) != NULL;
  int r = t->ndim;
  int64_t kd[MAXD], count = 1;
  for (int k = 0; k < r; k++) {
    kd[k] = mask[k] ? 1 : t->dims[k];
    if (mask[k]) count *= t->dims[k];
  }
  if (!(gin[0] = alloc_f32_like(x, t, error))) return FALSE;
  if (!gin[0]->numel) return TRUE;
  broadcast_copy(r, t->dims, gin[0]->data, r, kd, g->data, sizeof(float));
  scale_f32(gin[0]->data, gin[0]->numel, 1.f / (float)count);
  return TRUE;
}

/* ---- ConstantOfShape / Expand / Range ------------------------------------------------------- */

static gboolean cos_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                            GError **error)
{
  int64_t dims[MAXD];
  int nd = 0;
  if (!tensor_ints(n, in[0], "input", dims, MAXD, &nd, error)) return FALSE;
  for (int k = 0; k < nd; k++)
    if (dims[k] < 0) return cnnfx_fail_shape(error, n, "negative dimension %" G_GINT64_FORMAT, dims[k]);
  const CnnfxAttr *a = cnnfx_attr(n, "value");
  CnnfxDType dt = CNNFX_F32;
  if (a) {
    if (a->type != CNNFX_ATTR_TENSOR || !a->t || a->t->numel != 1)
      return cnnfx_fail_shape(error, n, "attribute 'value' must be a one-element tensor");
    dt = a->t->dtype;
  }
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, dt, nd, dims, error);
  if (!o) return FALSE;
  if (dt == CNNFX_F32) {
    float v = a ? cnnfx_f32(a->t)[0] : 0.f;
    float *p = o->data;
    for (size_t i = 0; i < o->numel; i++) p[i] = v;
  } else {
    int64_t v = cnnfx_i64(a->t)[0];
    int64_t *p = o->data;
    for (size_t i = 0; i < o->numel; i++) p[i] = v;
  }
  out[0] = o;
  return TRUE;
}

static gboolean expand_dims(const CnnfxNode *n, CnnfxTensor *const *in, int *nd, int64_t *dims, GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t shape[MAXD];
  int k = 0;
  if (!tensor_ints(n, in[1], "shape", shape, MAXD, &k, error)) return FALSE;
  int r = t->ndim, o = MAX(r, k);
  for (int i = 0; i < o; i++) {
    int ia = i - (o - r), ib = i - (o - k);
    int64_t a = ia >= 0 ? t->dims[ia] : 1, b = ib >= 0 ? shape[ib] : 1;
    if (b < 0) return cnnfx_fail_shape(error, n, "negative dimension %" G_GINT64_FORMAT, b);
    if (a == b || b == 1) dims[i] = a;
    else if (a == 1) dims[i] = b;
    else {
      g_autofree char *s = cnnfx_shape_string(t);
      return cnnfx_fail_shape(error, n, "cannot expand %s: dimension %" G_GINT64_FORMAT " vs %" G_GINT64_FORMAT, s, a,
                              b);
    }
  }
  *nd = o;
  return TRUE;
}

static gboolean expand_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               GError **error)
{
  const CnnfxTensor *t = in[0];
  int nd = 0;
  int64_t dims[MAXD];
  if (!expand_dims(n, in, &nd, dims, error)) return FALSE;
  CnnfxTensor *o = cnnfx_tensor_alloc(x->mem, t->dtype, nd, dims, error);
  if (!o) return FALSE;
  if (o->numel) broadcast_copy(nd, dims, o->data, t->ndim, t->dims, t->data, esz(t));
  out[0] = o;
  return TRUE;
}

static gboolean expand_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor **gin, GError **error)
{
  (void)n;
  (void)out;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  if (!g || !g->numel) return (gin[0] = zeros_f32_like(x, t, error)) != NULL;
  if (!(gin[0] = alloc_f32_like(x, t, error))) return FALSE;
  unbroadcast_sum(g->ndim, g->dims, g->data, t->ndim, t->dims, gin[0]->data);
  return TRUE;
}

static gboolean range_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  for (int i = 0; i < 3; i++)
    if (!in[i] || in[i]->numel != 1 || in[i]->dtype != in[0]->dtype)
      return cnnfx_fail_shape(error, n, "start, limit and delta must be scalars of one type");
  CnnfxTensor *o;
  if (in[0]->dtype == CNNFX_F32) {
    float s = cnnfx_f32(in[0])[0], l = cnnfx_f32(in[1])[0], d = cnnfx_f32(in[2])[0];
    if (d == 0.f || !isfinite(s) || !isfinite(l) || !isfinite(d))
      return cnnfx_fail_shape(error, n, "invalid range parameters");
    double cnt = ceil(((double)l - s) / d);
    if (cnt > 2147483647.0) return cnnfx_fail_shape(error, n, "range too long");
    int64_t len = cnt > 0 ? (int64_t)cnt : 0;
    if (!(o = cnnfx_tensor_alloc(x->mem, CNNFX_F32, 1, &len, error))) return FALSE;
    for (int64_t i = 0; i < len; i++) cnnfx_f32(o)[i] = s + (float)i * d;
  } else {
    int64_t s = cnnfx_i64(in[0])[0], l = cnnfx_i64(in[1])[0], d = cnnfx_i64(in[2])[0];
    if (d == 0) return cnnfx_fail_shape(error, n, "delta is 0");
    double cnt = ceil(((double)l - (double)s) / (double)d);
    if (cnt > 2147483647.0) return cnnfx_fail_shape(error, n, "range too long");
    int64_t len = cnt > 0 ? (int64_t)cnt : 0;
    if (!(o = cnnfx_tensor_alloc(x->mem, CNNFX_I64, 1, &len, error))) return FALSE;
    for (int64_t i = 0; i < len; i++) cnnfx_i64(o)[i] = s + i * d;
  }
  out[0] = o;
  return TRUE;
}

/* ---- table ---------------------------------------------------------------------------------- */

static const CnnfxOp op_concat = {.name = "Concat", .forward = concat_forward, .backward = concat_backward};
static const CnnfxOp op_split = {.name = "Split", .forward = split_forward, .backward = split_backward,
                                 .saves = CNNFX_SAVE_IN(1), .nondiff_inputs = 1u << 1};
static const CnnfxOp op_flatten = {.name = "Flatten", .forward = flatten_forward, .backward = reshape_like_backward};
static const CnnfxOp op_reshape = {.name = "Reshape", .forward = reshape_forward, .backward = reshape_like_backward,
                                   .nondiff_inputs = 1u << 1};
static const CnnfxOp op_squeeze = {.name = "Squeeze", .forward = squeeze_forward, .backward = reshape_like_backward,
                                   .nondiff_inputs = 1u << 1};
static const CnnfxOp op_unsqueeze = {.name = "Unsqueeze", .forward = unsqueeze_forward,
                                     .backward = reshape_like_backward, .nondiff_inputs = 1u << 1};
static const CnnfxOp op_transpose = {.name = "Transpose", .forward = transpose_forward,
                                     .backward = transpose_backward};
static const CnnfxOp op_slice = {.name = "Slice", .forward = slice_forward, .backward = slice_backward,
                                 .saves = CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(2) | CNNFX_SAVE_IN(3) | CNNFX_SAVE_IN(4),
                                 .nondiff_inputs = 0x1eu};
static const CnnfxOp op_gather = {.name = "Gather", .forward = gather_forward, .backward = gather_backward,
                                  .saves = CNNFX_SAVE_IN(1), .nondiff_inputs = 1u << 1};
static const CnnfxOp op_shape = {.name = "Shape", .forward = shape_forward};
static const CnnfxOp op_size = {.name = "Size", .forward = size_forward};
static const CnnfxOp op_pad = {.name = "Pad", .check = pad_check, .forward = pad_forward, .backward = pad_backward,
                               .saves = CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(3),
                               .nondiff_inputs = (1u << 1) | (1u << 3)};
static const CnnfxOp op_reducemean = {.name = "ReduceMean", .forward = reducemean_forward,
                                      .backward = reducemean_backward, .saves = CNNFX_SAVE_IN(1),
                                      .nondiff_inputs = 1u << 1};
static const CnnfxOp op_cos = {.name = "ConstantOfShape", .forward = cos_forward};
static const CnnfxOp op_expand = {.name = "Expand", .forward = expand_forward, .backward = expand_backward,
                                  .nondiff_inputs = 1u << 1};
static const CnnfxOp op_range = {.name = "Range", .forward = range_forward};

const CnnfxOp *const cnnfx_ops_shape[] = {
  &op_concat, &op_split, &op_flatten, &op_reshape, &op_squeeze, &op_unsqueeze, &op_transpose, &op_slice,
  &op_gather, &op_shape, &op_size, &op_pad, &op_reducemean, &op_cos, &op_expand, &op_range, NULL,
};
