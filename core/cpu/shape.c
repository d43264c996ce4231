/* CPU kernels (shape family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/shape.c.
 *
 * Data-moving ops work on float and int64 tensors alike (they only copy elements); their
 * backward passes (float only) are the adjoint copies: slices scatter, gathers scatter-add,
 * pads and broadcasts sum.  Outputs and input gradients arrive allocated (gradients zero-filled).
 */
#include "ops/shape.h"
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

/* For o in [0, outer): dst[o*drow + doff ..+len] = src[o*srow + soff ..+len] (bytes). */
static void block_copy(char *dst, size_t drow, size_t doff, const char *src, size_t srow, size_t soff,
                       int64_t outer, size_t len)
{
  if (!len) return;
  gboolean par = (size_t)outer * len > (size_t)PAR_MIN * 4 && outer > 1;
#pragma omp parallel for if (par) schedule(static)
  for (int64_t o = 0; o < outer; o++) memcpy(dst + o * drow + doff, src + o * srow + soff, len);
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

static void slice_walk(const CnnfxTensor *t, const CnnfxSliceParams *p, Walk *w, int64_t *base, gboolean forward)
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

/* Per-dim source index maps: map[d][o] in [0, I) or -1 (constant). Single allocation. */
typedef struct {
  int nd;
  int64_t I[MAXD], O[MAXD], b[MAXD];
  int64_t *map[MAXD];
  int64_t *buf;
  size_t bytes;
  CnnfxMem *mem;
} PadMaps;

static void pad_maps_free(PadMaps *pm)
{
  cnnfx_mem_free(pm->mem, pm->buf, pm->bytes);
  pm->buf = NULL;
}

/* Index maps from the kernel's scratch memory (a session's arena: no allocation in a steady state). */
static gboolean pad_maps(const CnnfxExec *x, const CnnfxNode *n, const CnnfxTensor *t, const int64_t *pb,
                         const int64_t *pe, int mode, PadMaps *pm, GError **error)
{
  int r = t->ndim;
  size_t total = 0;
  pm->nd = r;
  for (int k = 0; k < r; k++) {
    pm->I[k] = t->dims[k];
    pm->b[k] = pb[k];
    pm->O[k] = t->dims[k] + pb[k] + pe[k];
    total += (size_t)pm->O[k];
    if (mode != CNNFX_PAD_CONSTANT && pm->I[k] == 0 && pm->O[k] > 0)
      return cnnfx_fail_shape(error, n, "cannot %s-pad an empty axis", mode == CNNFX_PAD_EDGE ? "edge" : "reflect");
  }
  pm->mem = x->mem;
  pm->bytes = (total + 1) * sizeof(int64_t);
  pm->buf = cnnfx_mem_alloc(pm->mem, pm->bytes, error);
  if (!pm->buf) return FALSE;
  int64_t *p = pm->buf;
  for (int k = 0; k < r; k++) {
    pm->map[k] = p;
    int64_t I = pm->I[k];
    for (int64_t o = 0; o < pm->O[k]; o++) {
      int64_t i = o - pb[k];
      if (i < 0 || i >= I) {
        if (mode == CNNFX_PAD_CONSTANT) i = -1;
        else if (mode == CNNFX_PAD_EDGE) i = i < 0 ? 0 : I - 1;
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

/* ---- reshape-like ops: Flatten, Reshape, Squeeze, Unsqueeze (same elements, new dims) -------------- */

static gboolean copy_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)aux;
  (void)error;
  big_memcpy(out[0]->data, in[0]->data, out[0]->numel * esz(out[0]));
  return TRUE;
}

static gboolean copy_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)out;
  (void)aux;
  (void)error;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *g = fgrad(gout, 0);
  if (g && g->numel == gin[0]->numel) big_memcpy(gin[0]->data, g->data, gin[0]->numel * sizeof(float));
  return TRUE;
}

/* ---- Concat / Split ------------------------------------------------------------ */

static gboolean concat_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  CnnfxTensor *o = out[0];
  int r = o->ndim, axis;
  if (!cnnfx_concat_axis(n, r, &axis, error)) return FALSE;
  const size_t es = esz(o);
  const int64_t outer = prod(o->dims, 0, axis), inner = prod(o->dims, axis + 1, r);
  const size_t orow = (size_t)(o->dims[axis] * inner) * es;
  size_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) continue;
    size_t len = (size_t)(in[i]->dims[axis] * inner) * es;
    block_copy(o->data, orow, off, in[i]->data, len, 0, outer, len);
    off += len;
  }
  return TRUE;
}

static gboolean concat_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  const CnnfxTensor *g = fgrad(gout, 0);
  const CnnfxTensor *f = NULL;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) {
      f = in[i];
      break;
    }
  if (!f || !g) return TRUE;
  int r = f->ndim, axis;
  if (!cnnfx_concat_axis(n, r, &axis, error)) return FALSE;
  int64_t total = 0;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) total += in[i]->dims[axis];
  const int64_t outer = prod(f->dims, 0, axis), inner = prod(f->dims, axis + 1, r);
  const size_t grow = (size_t)(total * inner) * sizeof(float);
  size_t off = 0;
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) continue;
    size_t len = (size_t)(in[i]->dims[axis] * inner) * sizeof(float);
    if (need[i] && in[i]->dtype == CNNFX_F32) block_copy(gin[i]->data, len, 0, g->data, grow, off, outer, len);
    off += len;
  }
  return TRUE;
}

static gboolean split_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  (void)error;
  const CnnfxTensor *t = in[0];
  int axis, r = t->ndim;
  int64_t sizes_small[64];
  g_autofree int64_t *sizes_big = n->n_out >= 64 ? g_new0(int64_t, n->n_out + 1) : NULL;
  int64_t *sizes = sizes_big ? sizes_big : sizes_small;
  if (!cnnfx_split_sizes(n, in, &axis, sizes, error)) return FALSE;
  const size_t es = esz(t);
  const int64_t outer = prod(t->dims, 0, axis), inner = prod(t->dims, axis + 1, r);
  const size_t srow = (size_t)(t->dims[axis] * inner) * es;
  size_t off = 0;
  for (int k = 0; k < n->n_out; k++) {
    size_t len = (size_t)(sizes[k] * inner) * es;
    block_copy(out[k]->data, len, 0, t->data, srow, off, outer, len);
    off += len;
  }
  return TRUE;
}

static gboolean split_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0];
  int axis, r = t->ndim;
  int64_t sizes_small[64];
  g_autofree int64_t *sizes_big = n->n_out >= 64 ? g_new0(int64_t, n->n_out + 1) : NULL;
  int64_t *sizes = sizes_big ? sizes_big : sizes_small;
  if (!cnnfx_split_sizes(n, in, &axis, sizes, error)) return FALSE;
  const int64_t outer = prod(t->dims, 0, axis), inner = prod(t->dims, axis + 1, r);
  const size_t grow = (size_t)(t->dims[axis] * inner) * sizeof(float);
  size_t off = 0;
  char *gd = gin[0]->data;
  for (int k = 0; k < n->n_out; k++) {
    size_t len = (size_t)(sizes[k] * inner) * sizeof(float);
    const CnnfxTensor *g = fgrad(gout, k);
    if (g && g->numel * sizeof(float) == (size_t)outer * len) block_copy(gd, grow, off, g->data, len, 0, outer, len);
    off += len;
  }
  return TRUE;
}

/* ---- Transpose ------------------------------------------------------------------ */

static gboolean transpose_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *t = in[0];
  int perm[MAXD];
  if (!cnnfx_transpose_perm(n, t->ndim, perm, error)) return FALSE;
  transpose_copy(t, perm, out[0]->data, t->data, NULL);
  return TRUE;
}

static gboolean transpose_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                   CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *g = fgrad(gout, 0);
  int r = in[0]->ndim, perm[MAXD], inv[MAXD];
  if (!cnnfx_transpose_perm(n, r, perm, error)) return FALSE;
  if (!g) return TRUE;
  for (int k = 0; k < r; k++) inv[perm[k]] = k;
  transpose_copy(g, inv, gin[0]->data, g->data, NULL);
  return TRUE;
}

/* ---- Slice ------------------------------------------------------------------------ */

static gboolean slice_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *t = in[0];
  CnnfxSliceParams p;
  if (!cnnfx_slice_params(n, in, &p, error)) return FALSE;
  Walk w;
  int64_t base;
  slice_walk(t, &p, &w, &base, TRUE);
  if (out[0]->numel) walk_copy(&w, out[0]->data, (const char *)t->data + base * (int64_t)esz(t), esz(t));
  return TRUE;
}

static gboolean slice_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  CnnfxSliceParams p;
  if (!cnnfx_slice_params(n, in, &p, error)) return FALSE;
  if (!g) return TRUE;
  Walk w;
  int64_t base;
  slice_walk(t, &p, &w, &base, FALSE);
  if (g->numel) walk_copy(&w, cnnfx_f32(gin[0]) + base, g->data, sizeof(float));
  return TRUE;
}

/* ---- Gather ------------------------------------------------------------------------- */

static gboolean gather_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *d = in[0], *ix = in[1];
  CnnfxTensor *o = out[0];
  int axis;
  if (!cnnfx_gather_axis(n, in, &axis, error)) return FALSE;
  int r = d->ndim;
  const int64_t D = d->dims[axis], ni = (int64_t)ix->numel;
  const int64_t *idx = cnnfx_i64(ix);
  for (int64_t j = 0; j < ni; j++)
    if (idx[j] < -D || idx[j] >= D)
      return cnnfx_fail_shape(error, n, "index %" G_GINT64_FORMAT " out of range for axis of size %" G_GINT64_FORMAT,
                              idx[j], D);
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
  return TRUE;
}

static gboolean gather_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *d = in[0], *ix = in[1], *g = fgrad(gout, 0);
  int axis;
  if (!cnnfx_gather_axis(n, in, &axis, error)) return FALSE;
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

static gboolean shape_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  (void)error;
  const CnnfxTensor *t = in[0];
  int64_t r = t->ndim, s = 0;
  if (n->opset >= 15) {
    s = cnnfx_attr_int(n, "start", 0);
    if (s < 0) s += r;
    s = CLAMP(s, 0, r);
  }
  /* the length was inferred from the same attributes (core/ops/shape.c) */
  for (int64_t k = 0; k < out[0]->dims[0]; k++) cnnfx_i64(out[0])[k] = t->dims[s + k];
  return TRUE;
}

static gboolean size_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                             CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)aux;
  (void)error;
  cnnfx_i64(out[0])[0] = prod(in[0]->dims, 0, in[0]->ndim); /* dims only: the data may be unknown */
  return TRUE;
}

/* ---- Pad -------------------------------------------------------------------------------- */

static gboolean pad_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                            void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *t = in[0];
  int mode, r = t->ndim;
  int64_t pb[MAXD], pe[MAXD];
  if (!cnnfx_pad_mode(n, &mode, error) || !cnnfx_pad_amounts(n, in, pb, pe, error)) return FALSE;
  /* fill value as raw bits of the element type */
  uint64_t fill = 0;
  {
    double v = 0;
    int64_t iv = 0;
    if (n->opset < 11) {
      v = cnnfx_attr_float(n, "value", 0.f);
      iv = cnnfx_f2i64(v);
    } else if (n->n_in > 2 && in[2] && in[2]->numel) {
      if (in[2]->dtype == CNNFX_F32) {
        v = cnnfx_f32(in[2])[0];
        iv = cnnfx_f2i64(v);
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
  CnnfxTensor *o = out[0];
  PadMaps pm;
  if (!pad_maps(x, n, t, pb, pe, mode, &pm, error)) return FALSE;
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
  pad_maps_free(&pm);
  return TRUE;
}

static gboolean pad_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                             CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                             CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  gboolean need_v = n->n_in > 2 && need[2] && in[2] && in[2]->dtype == CNNFX_F32;
  if (!(need[0] || need_v) || t->dtype != CNNFX_F32) return TRUE;
  int mode, r = t->ndim;
  int64_t pb[MAXD], pe[MAXD];
  if (!cnnfx_pad_mode(n, &mode, error) || !cnnfx_pad_amounts(n, in, pb, pe, error)) return FALSE;
  PadMaps pm;
  if (!pad_maps(x, n, t, pb, pe, mode, &pm, error)) return FALSE;
  /* The input gradient, or a zeroed scratch copy when only the constant value needs one. */
  CnnfxTensor *gi = need[0] ? gin[0] : cnnfx_tensor_alloc(x->mem, CNNFX_F32, t->ndim, t->dims, error);
  if (!gi) {
    pad_maps_free(&pm);
    return FALSE;
  }
  if (!need[0]) memset(gi->data, 0, gi->numel * sizeof(float));
  if (g && r == 0) {
    cnnfx_f32(gi)[0] = cnnfx_f32(g)[0];
  } else if (g && gi->numel && g->numel) {
    /* Inverse maps of the outer dims (CSR): out indices whose source is input index i. */
    int64_t *istart[MAXD], *ilist[MAXD];
    size_t tot = 0;
    for (int k = 0; k < r - 1; k++) tot += (size_t)(2 * (pm.I[k] + 1) + pm.O[k]);
    int64_t *ib = cnnfx_mem_alloc(x->mem, (tot + 1) * sizeof(int64_t), error);
    if (!ib) {
      pad_maps_free(&pm);
      if (!need[0]) cnnfx_tensor_unref(gi);
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
    cnnfx_mem_free(x->mem, ib, (tot + 1) * sizeof(int64_t));
  }
  pad_maps_free(&pm);
  if (need_v) {
    /* constant mode: d/dvalue = sum of the padded positions = sum(gout) - sum(gin) */
    CnnfxTensor *gv = gin[2];
    if (g && mode == CNNFX_PAD_CONSTANT && gv->numel) {
      double sg = 0, si = 0;
      for (size_t i = 0; i < g->numel; i++) sg += cnnfx_f32(g)[i];
      for (size_t i = 0; i < gi->numel; i++) si += cnnfx_f32(gi)[i];
      cnnfx_f32(gv)[0] = (float)(sg - si);
    }
  }
  if (!need[0]) cnnfx_tensor_unref(gi);
  return TRUE;
}

/* ---- ReduceMean ------------------------------------------------------------------------ */

static gboolean reducemean_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *t = in[0];
  CnnfxTensor *o = out[0];
  gboolean mask[MAXD], noop;
  if (!cnnfx_reduce_axes(n, in, mask, &noop, error)) return FALSE;
  if (noop) {
    big_memcpy(o->data, t->data, o->numel * sizeof(float));
    return TRUE;
  }
  int r = t->ndim;
  int64_t count = 1;
  for (int k = 0; k < r; k++)
    if (mask[k]) count *= t->dims[k];
  reduce_sum_f32(r, t->dims, mask, t->data, o->data);
  scale_f32(o->data, o->numel, count ? 1.f / (float)count : NAN);
  return TRUE;
}

static gboolean reducemean_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                    CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  gboolean mask[MAXD], noop;
  if (!cnnfx_reduce_axes(n, in, mask, &noop, error)) return FALSE;
  if (!g) return TRUE;
  if (noop) {
    if (g->numel == gin[0]->numel) big_memcpy(gin[0]->data, g->data, gin[0]->numel * sizeof(float));
    return TRUE;
  }
  int r = t->ndim;
  int64_t kd[MAXD], count = 1;
  for (int k = 0; k < r; k++) {
    kd[k] = mask[k] ? 1 : t->dims[k];
    if (mask[k]) count *= t->dims[k];
  }
  if (!gin[0]->numel) return TRUE;
  broadcast_copy(r, t->dims, gin[0]->data, r, kd, g->data, sizeof(float));
  scale_f32(gin[0]->data, gin[0]->numel, 1.f / (float)count);
  return TRUE;
}

/* ---- ConstantOfShape / Expand / Range ------------------------------------------------------- */

static gboolean cos_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                            CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)in;
  (void)aux;
  (void)error;
  CnnfxTensor *o = out[0];
  const CnnfxAttr *a = cnnfx_attr(n, "value"); /* checked by the inference */
  if (o->dtype == CNNFX_F32) {
    float v = a ? cnnfx_f32(a->t)[0] : 0.f;
    float *p = o->data;
    for (size_t i = 0; i < o->numel; i++) p[i] = v;
  } else {
    int64_t v = cnnfx_i64(a->t)[0];
    int64_t *p = o->data;
    for (size_t i = 0; i < o->numel; i++) p[i] = v;
  }
  return TRUE;
}

static gboolean expand_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)aux;
  (void)error;
  const CnnfxTensor *t = in[0];
  CnnfxTensor *o = out[0];
  if (o->numel) broadcast_copy(o->ndim, o->dims, o->data, t->ndim, t->dims, t->data, esz(t));
  return TRUE;
}

static gboolean expand_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)out;
  (void)aux;
  (void)error;
  if (!need[0] || in[0]->dtype != CNNFX_F32) return TRUE;
  const CnnfxTensor *t = in[0], *g = fgrad(gout, 0);
  if (!g || !g->numel) return TRUE;
  unbroadcast_sum(g->ndim, g->dims, g->data, t->ndim, t->dims, gin[0]->data);
  return TRUE;
}

static gboolean range_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)n;
  (void)aux;
  (void)error;
  CnnfxTensor *o = out[0];
  const int64_t len = o->dims[0]; /* inferred from the same values (core/ops/shape.c) */
  if (in[0]->dtype == CNNFX_F32) {
    float s = cnnfx_f32(in[0])[0], d = cnnfx_f32(in[2])[0];
    for (int64_t i = 0; i < len; i++) cnnfx_f32(o)[i] = s + (float)i * d;
  } else {
    int64_t s = cnnfx_i64(in[0])[0], d = cnnfx_i64(in[2])[0];
    for (int64_t i = 0; i < len; i++) cnnfx_i64(o)[i] = s + i * d;
  }
  return TRUE;
}

/* ---- table ---------------------------------------------------------------------------------- */

#define KERNEL(var, op, fwd, bwd) static const CnnfxKernel var = {.name = op, .forward = fwd, .backward = bwd};
KERNEL(k_concat, "Concat", concat_forward, concat_backward)
KERNEL(k_split, "Split", split_forward, split_backward)
KERNEL(k_flatten, "Flatten", copy_forward, copy_backward)
KERNEL(k_reshape, "Reshape", copy_forward, copy_backward)
KERNEL(k_squeeze, "Squeeze", copy_forward, copy_backward)
KERNEL(k_unsqueeze, "Unsqueeze", copy_forward, copy_backward)
KERNEL(k_transpose, "Transpose", transpose_forward, transpose_backward)
KERNEL(k_slice, "Slice", slice_forward, slice_backward)
KERNEL(k_gather, "Gather", gather_forward, gather_backward)
KERNEL(k_shape, "Shape", shape_forward, NULL)
KERNEL(k_size, "Size", size_forward, NULL)
KERNEL(k_pad, "Pad", pad_forward, pad_backward)
KERNEL(k_reducemean, "ReduceMean", reducemean_forward, reducemean_backward)
KERNEL(k_cos, "ConstantOfShape", cos_forward, NULL)
KERNEL(k_expand, "Expand", expand_forward, expand_backward)
KERNEL(k_range, "Range", range_forward, NULL)

const CnnfxKernel *const cnnfx_cpu_kernels_shape[] = {
  &k_concat, &k_split, &k_flatten, &k_reshape, &k_squeeze, &k_unsqueeze, &k_transpose, &k_slice,
  &k_gather, &k_shape, &k_size, &k_pad, &k_reducemean, &k_cos, &k_expand, &k_range, NULL,
};
