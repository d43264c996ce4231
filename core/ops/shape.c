/* Operator definitions (shape family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/shape.c.
 *
 * Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze, Slice, Gather, Shape, Size, Pad,
 * ReduceMean, ConstantOfShape, Expand, Range, Split.
 *
 * Data-moving ops work on float and int64 tensors alike; their backward passes (float only) are the
 * adjoint copies.  Shape-like inputs (shapes, axes, pads, indices, split sizes) carry no gradient;
 * the ones whose VALUES decide the output shape are value_inputs (known while planning: the planner
 * evaluates int64 shape sub-graphs on the CPU).
 */
#include "ops/shape.h"
#include <math.h>
#include <stdint.h>

#define MAXD CNNFX_MAX_DIMS

/* ---- small helpers ------------------------------------------------------------ */

static int64_t prod(const int64_t *d, int a, int b)
{
  int64_t p = 1;
  for (int k = a; k < b; k++) p *= d[k];
  return p;
}

/* Elements of a tensor from its dims (infer: in[i]->numel is not guaranteed). */
static size_t numel_of(const CnnfxTensor *t) { return (size_t)prod(t->dims, 0, t->ndim); }

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

/* ---- shared with the kernels (ops/shape.h) ---------------------------------------- */

gboolean cnnfx_concat_axis(const CnnfxNode *n, int r, int *axis, GError **error)
{
  const CnnfxAttr *a = cnnfx_attr(n, "axis");
  int64_t ax = a && a->type == CNNFX_ATTR_INT ? a->i : 1;
  if (!a && n->opset >= 4) return cnnfx_fail_shape(error, n, "attribute 'axis' is required");
  if (!cnnfx_norm_axis(ax, r, axis) || r == 0)
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, r);
  return TRUE;
}

/* Split sizes along axis.  Returns FALSE with error on mismatch. */
gboolean cnnfx_split_sizes(const CnnfxNode *n, CnnfxTensor *const *in, int *axis_out, int64_t *sizes,
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

gboolean cnnfx_transpose_perm(const CnnfxNode *n, int r, int *perm, GError **error)
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


gboolean cnnfx_slice_params(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxSliceParams *p, GError **error)
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

gboolean cnnfx_gather_axis(const CnnfxNode *n, CnnfxTensor *const *in, int *axis, GError **error)
{
  const CnnfxTensor *d = in[0], *ix = in[1];
  if (ix->dtype != CNNFX_I64) return cnnfx_fail_shape(error, n, "indices must be integers");
  int64_t ax = cnnfx_attr_int(n, "axis", 0);
  if (d->ndim == 0 || !cnnfx_norm_axis(ax, d->ndim, axis))
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", ax, d->ndim);
  if (d->ndim - 1 + ix->ndim > MAXD) return cnnfx_fail_shape(error, n, "result rank too large");
  return TRUE;
}

gboolean cnnfx_pad_mode(const CnnfxNode *n, int *mode, GError **error)
{
  const char *m = cnnfx_attr_string(n, "mode", "constant");
  if (!strcmp(m, "constant")) *mode = CNNFX_PAD_CONSTANT;
  else if (!strcmp(m, "reflect")) *mode = CNNFX_PAD_REFLECT;
  else if (!strcmp(m, "edge")) *mode = CNNFX_PAD_EDGE;
  else {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Pad '%s': mode '%s' is not supported", n->name, m);
    return FALSE;
  }
  return TRUE;
}

static gboolean pad_check(const CnnfxNode *n, GError **error)
{
  int mode;
  return cnnfx_pad_mode(n, &mode, error);
}

/* Begin/end pads per dim of in[0]. */
gboolean cnnfx_pad_amounts(const CnnfxNode *n, CnnfxTensor *const *in, int64_t *pb, int64_t *pe, GError **error)
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



/* mask of reduced axes; *noop when the op is the identity */
gboolean cnnfx_reduce_axes(const CnnfxNode *n, CnnfxTensor *const *in, gboolean *mask, gboolean *noop,
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

/* ---- shape inference ------------------------------------------------------------------------ */

static gboolean concat_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *f = NULL;
  for (int i = 0; i < n->n_in; i++)
    if (in[i]) {
      f = in[i];
      break;
    }
  if (!f) return cnnfx_fail_shape(error, n, "no inputs");
  int r = f->ndim, axis;
  if (!cnnfx_concat_axis(n, r, &axis, error)) return FALSE;
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
  cnnfx_meta_set(out[0], f->dtype, r, dims);
  return TRUE;
}

static gboolean split_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!cnnfx_infer_need_value(n, in, 1, error)) return FALSE;
  const CnnfxTensor *t = in[0];
  int axis, r = t->ndim;
  g_autofree int64_t *sizes = g_new0(int64_t, n->n_out + 1);
  if (!cnnfx_split_sizes(n, in, &axis, sizes, error)) return FALSE;
  for (int k = 0; k < n->n_out; k++) {
    int64_t dims[MAXD];
    memcpy(dims, t->dims, sizeof(int64_t) * r);
    dims[axis] = sizes[k];
    cnnfx_meta_set(out[k], t->dtype, r, dims);
  }
  return TRUE;
}

static gboolean flatten_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int r = t->ndim;
  int64_t axis = cnnfx_attr_int(n, "axis", 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) return cnnfx_fail_shape(error, n, "axis out of range for rank %d", r);
  int64_t dims[2] = {prod(t->dims, 0, (int)axis), prod(t->dims, (int)axis, r)};
  cnnfx_meta_set(out[0], t->dtype, 2, dims);
  return TRUE;
}

static gboolean reshape_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  const size_t numel = numel_of(t);
  int64_t shape[MAXD], dims[MAXD];
  int k = -1;
  if (n->opset < 5 || n->n_in < 2 || !in[1]) {
    if (!attr_ints(n, "shape", shape, MAXD, &k, error)) return FALSE;
    if (k < 0) return cnnfx_fail_shape(error, n, "no target shape");
  } else if (!cnnfx_infer_need_value(n, in, 1, error) || !tensor_ints(n, in[1], "shape", shape, MAXD, &k, error)) {
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
    if (known == 0 || numel % (size_t)known)
      return cnnfx_fail_shape(error, n, "cannot infer the -1 dimension (%zu elements)", numel);
    dims[neg] = (int64_t)numel / known;
  } else if ((size_t)known != numel) {
    g_autofree char *s = cnnfx_shape_string(t);
    return cnnfx_fail_shape(error, n, "cannot reshape %s (%zu elements) to %" G_GINT64_FORMAT " elements", s, numel,
                            known);
  }
  cnnfx_meta_set(out[0], t->dtype, k, dims);
  return TRUE;
}

static gboolean squeeze_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t axes[MAXD], dims[MAXD];
  int na = -1, r = t->ndim, nd = 0;
  gboolean mask[MAXD];
  if (n->n_in > 1 && in[1]) {
    if (!cnnfx_infer_need_value(n, in, 1, error) || !tensor_ints(n, in[1], "axes", axes, MAXD, &na, error))
      return FALSE;
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
  cnnfx_meta_set(out[0], t->dtype, nd, dims);
  return TRUE;
}

static gboolean unsqueeze_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int64_t axes[MAXD], dims[MAXD];
  int na = -1, r = t->ndim;
  gboolean mask[MAXD];
  if (n->n_in > 1 && in[1]) {
    if (!cnnfx_infer_need_value(n, in, 1, error) || !tensor_ints(n, in[1], "axes", axes, MAXD, &na, error))
      return FALSE;
  } else if (!attr_ints(n, "axes", axes, MAXD, &na, error)) { /* attribute before opset 13 */
    return FALSE;
  }
  if (na < 0) return cnnfx_fail_shape(error, n, "no axes given");
  int nr = r + na;
  if (nr > MAXD) return cnnfx_fail_shape(error, n, "result would have rank %d (max %d)", nr, MAXD);
  if (!axes_mask(n, axes, na, nr, mask, error)) return FALSE;
  for (int k = 0, j = 0; k < nr; k++) dims[k] = mask[k] ? 1 : t->dims[j++];
  cnnfx_meta_set(out[0], t->dtype, nr, dims);
  return TRUE;
}

static gboolean transpose_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int perm[MAXD];
  int64_t dims[MAXD];
  if (!cnnfx_transpose_perm(n, t->ndim, perm, error)) return FALSE;
  for (int k = 0; k < t->ndim; k++) dims[k] = t->dims[perm[k]];
  cnnfx_meta_set(out[0], t->dtype, t->ndim, dims);
  return TRUE;
}

static gboolean slice_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  for (int i = 1; i <= 4; i++)
    if (!cnnfx_infer_need_value(n, in, i, error)) return FALSE;
  CnnfxSliceParams p;
  if (!cnnfx_slice_params(n, in, &p, error)) return FALSE;
  cnnfx_meta_set(out[0], in[0]->dtype, in[0]->ndim, p.len);
  return TRUE;
}

static gboolean gather_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *d = in[0], *ix = in[1];
  int axis;
  if (!cnnfx_gather_axis(n, in, &axis, error)) return FALSE;
  int r = d->ndim, q = ix->ndim, nd = 0;
  int64_t dims[MAXD];
  for (int k = 0; k < axis; k++) dims[nd++] = d->dims[k];
  for (int k = 0; k < q; k++) dims[nd++] = ix->dims[k];
  for (int k = axis + 1; k < r; k++) dims[nd++] = d->dims[k];
  cnnfx_meta_set(out[0], d->dtype, nd, dims);
  return TRUE;
}

/* Shape's [start, end) range of dims (opset 15 attributes). */
static void shape_range(const CnnfxNode *n, int64_t r, int64_t *s_out, int64_t *len)
{
  int64_t s = 0, e = r;
  if (n->opset >= 15) {
    s = cnnfx_attr_int(n, "start", 0);
    e = cnnfx_attr_int(n, "end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = CLAMP(s, 0, r);
    e = CLAMP(e, 0, r);
  }
  *s_out = s;
  *len = MAX(0, e - s);
}

static gboolean shape_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  (void)error;
  int64_t s, len;
  shape_range(n, in[0]->ndim, &s, &len);
  cnnfx_meta_set(out[0], CNNFX_I64, 1, &len);
  return TRUE;
}

static gboolean size_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  (void)n;
  (void)in;
  (void)error;
  cnnfx_meta_set(out[0], CNNFX_I64, 0, NULL);
  return TRUE;
}

static gboolean pad_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *t = in[0];
  int mode, r = t->ndim;
  int64_t pb[MAXD], pe[MAXD], odims[MAXD];
  if (n->opset >= 11 && (!cnnfx_infer_need_value(n, in, 1, error) || !cnnfx_infer_need_value(n, in, 3, error)))
    return FALSE;
  if (!cnnfx_pad_mode(n, &mode, error) || !cnnfx_pad_amounts(n, in, pb, pe, error)) return FALSE;
  for (int k = 0; k < r; k++) {
    odims[k] = t->dims[k] + pb[k] + pe[k];
    if (mode != CNNFX_PAD_CONSTANT && t->dims[k] == 0 && odims[k] > 0)
      return cnnfx_fail_shape(error, n, "cannot %s-pad an empty axis", mode == CNNFX_PAD_EDGE ? "edge" : "reflect");
  }
  cnnfx_meta_set(out[0], t->dtype, r, odims);
  return TRUE;
}

static gboolean reducemean_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                                 GError **error)
{
  const CnnfxTensor *t = in[0];
  if (!need_float(n, t, "data", error) || !cnnfx_infer_need_value(n, in, 1, error)) return FALSE;
  gboolean mask[MAXD], noop;
  if (!cnnfx_reduce_axes(n, in, mask, &noop, error)) return FALSE;
  if (noop) return cnnfx_infer_same(n, in, out, error);
  gboolean keep = cnnfx_attr_int(n, "keepdims", 1) != 0;
  int r = t->ndim, nd = 0;
  int64_t dims[MAXD];
  for (int k = 0; k < r; k++) {
    if (mask[k]) {
      if (keep) dims[nd++] = 1;
    } else {
      dims[nd++] = t->dims[k];
    }
  }
  cnnfx_meta_set(out[0], CNNFX_F32, nd, dims);
  return TRUE;
}

static gboolean cos_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  int64_t dims[MAXD];
  int nd = 0;
  if (!cnnfx_infer_need_value(n, in, 0, error) || !tensor_ints(n, in[0], "input", dims, MAXD, &nd, error))
    return FALSE;
  for (int k = 0; k < nd; k++)
    if (dims[k] < 0) return cnnfx_fail_shape(error, n, "negative dimension %" G_GINT64_FORMAT, dims[k]);
  const CnnfxAttr *a = cnnfx_attr(n, "value");
  CnnfxDType dt = CNNFX_F32;
  if (a) {
    if (a->type != CNNFX_ATTR_TENSOR || !a->t || a->t->numel != 1)
      return cnnfx_fail_shape(error, n, "attribute 'value' must be a one-element tensor");
    dt = a->t->dtype;
  }
  cnnfx_meta_set(out[0], dt, nd, dims);
  return TRUE;
}

static gboolean expand_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  int nd = 0;
  int64_t dims[MAXD];
  if (!cnnfx_infer_need_value(n, in, 1, error) || !expand_dims(n, in, &nd, dims, error)) return FALSE;
  cnnfx_meta_set(out[0], in[0]->dtype, nd, dims);
  return TRUE;
}

static gboolean range_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  for (int i = 0; i < 3; i++)
    if (!in[i] || numel_of(in[i]) != 1 || in[i]->dtype != in[0]->dtype)
      return cnnfx_fail_shape(error, n, "start, limit and delta must be scalars of one type");
  for (int i = 0; i < 3; i++)
    if (!cnnfx_infer_need_value(n, in, i, error)) return FALSE;
  int64_t len;
  if (in[0]->dtype == CNNFX_F32) {
    float s = cnnfx_f32(in[0])[0], l = cnnfx_f32(in[1])[0], d = cnnfx_f32(in[2])[0];
    if (d == 0.f || !isfinite(s) || !isfinite(l) || !isfinite(d))
      return cnnfx_fail_shape(error, n, "invalid range parameters");
    double cnt = ceil(((double)l - s) / d);
    if (cnt > 2147483647.0) return cnnfx_fail_shape(error, n, "range too long");
    len = cnt > 0 ? (int64_t)cnt : 0;
    cnnfx_meta_set(out[0], CNNFX_F32, 1, &len);
  } else {
    int64_t s = cnnfx_i64(in[0])[0], l = cnnfx_i64(in[1])[0], d = cnnfx_i64(in[2])[0];
    if (d == 0) return cnnfx_fail_shape(error, n, "delta is 0");
    double cnt = ceil(((double)l - (double)s) / (double)d);
    if (cnt > 2147483647.0) return cnnfx_fail_shape(error, n, "range too long");
    len = cnt > 0 ? (int64_t)cnt : 0;
    cnnfx_meta_set(out[0], CNNFX_I64, 1, &len);
  }
  return TRUE;
}

/* ---- table ---------------------------------------------------------------------------------- */

#define VIN(i) (1u << (i))

static const CnnfxOpDef def_concat = {.name = "Concat", .infer = concat_infer, .differentiable = TRUE};
static const CnnfxOpDef def_split = {.name = "Split", .infer = split_infer, .value_inputs = VIN(1),
                                     .differentiable = TRUE, .saves = CNNFX_SAVE_IN(1), .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_flatten = {.name = "Flatten", .infer = flatten_infer, .differentiable = TRUE};
static const CnnfxOpDef def_reshape = {.name = "Reshape", .infer = reshape_infer, .value_inputs = VIN(1),
                                       .differentiable = TRUE, .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_squeeze = {.name = "Squeeze", .infer = squeeze_infer, .value_inputs = VIN(1),
                                       .differentiable = TRUE, .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_unsqueeze = {.name = "Unsqueeze", .infer = unsqueeze_infer, .value_inputs = VIN(1),
                                         .differentiable = TRUE, .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_transpose = {.name = "Transpose", .infer = transpose_infer, .differentiable = TRUE};
static const CnnfxOpDef def_slice = {.name = "Slice", .infer = slice_infer,
                                     .value_inputs = VIN(1) | VIN(2) | VIN(3) | VIN(4), .differentiable = TRUE,
                                     .saves = CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(2) | CNNFX_SAVE_IN(3) | CNNFX_SAVE_IN(4),
                                     .nondiff_inputs = 0x1eu};
static const CnnfxOpDef def_gather = {.name = "Gather", .infer = gather_infer, .differentiable = TRUE,
                                      .saves = CNNFX_SAVE_IN(1), .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_shape = {.name = "Shape", .infer = shape_infer};
static const CnnfxOpDef def_size = {.name = "Size", .infer = size_infer};
static const CnnfxOpDef def_pad = {.name = "Pad", .check = pad_check, .infer = pad_infer,
                                   .value_inputs = VIN(1) | VIN(3), .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(3), .nondiff_inputs = VIN(1) | VIN(3)};
static const CnnfxOpDef def_reducemean = {.name = "ReduceMean", .infer = reducemean_infer, .value_inputs = VIN(1),
                                          .differentiable = TRUE, .saves = CNNFX_SAVE_IN(1),
                                          .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_cos = {.name = "ConstantOfShape", .infer = cos_infer, .value_inputs = VIN(0)};
static const CnnfxOpDef def_expand = {.name = "Expand", .infer = expand_infer, .value_inputs = VIN(1),
                                      .differentiable = TRUE, .nondiff_inputs = VIN(1)};
static const CnnfxOpDef def_range = {.name = "Range", .infer = range_infer, .value_inputs = VIN(0) | VIN(1) | VIN(2)};

const CnnfxOpDef *const cnnfx_opdefs_shape[] = {
  &def_concat, &def_split, &def_flatten, &def_reshape, &def_squeeze, &def_unsqueeze, &def_transpose, &def_slice,
  &def_gather, &def_shape, &def_size, &def_pad, &def_reducemean, &def_cos, &def_expand, &def_range, NULL,
};
