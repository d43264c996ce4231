/* Operators: Resize (opsets 10, 11, 13, 18, 19) and Upsample (opsets 7, 9), forward and
 * backward to X (roi, scales and sizes carry no gradient).
 *
 * Every mode is separable: along each resized axis an output index j reads the contiguous input
 * run lo[j] .. lo[j]+cnt[j]-1 with weights w[j][0..cnt-1].  The per-axis tables are built in
 * double precision following the ONNX reference algorithm (onnx/reference/ops/op_resize.py):
 * the coordinate transformation gives x_original, its floor and fraction ("ratio", taken as 1 at
 * integers so the left neighbour is preferred) give the taps; taps that fall outside the input
 * are clamped to the edge (the reference pads with 'edge') and their weights merged, or with
 * exclude_outside dropped and the rest renormalised.  Antialiasing (opset 18) stretches the
 * linear / cubic kernel by 1/scale when downscaling.  tf_crop_and_resize outputs whose source
 * coordinate lies outside the input are the extrapolation value (cnt = -1).
 *
 * Forward applies the axes one after the other (downscaling axes first, then an upscaled last
 * axis, then the other upscaled axes) on a view [outer][I][inner] -> [outer][O][inner];
 * intermediate results live in counted scratch buffers.
 * The last axis (inner == 1) is a per-row gather; other axes combine whole contiguous rows
 * (vectorised over inner), parallel over (outer x inner chunks).  Axes the op leaves unchanged
 * (N, C) are detected from the tables and skipped.  Backward is the exact adjoint: the same tables
 * applied in reverse order as scatter-adds; every work item owns its (outer, chunk) block of the
 * input gradient, so no atomics are needed.
 *
 * Upsample and Resize-10 use the 'asymmetric' transformation; nearest there rounds down when
 * upsampling and up when downsampling along an axis (onnxruntime's behaviour for these
 * versions, which predate nearest_mode). */
#include "cnnfx-private.h"
#include <math.h>
#include <omp.h>

#define MAXD CNNFX_MAX_DIMS
#define PAR_MIN 32768 /* elements below which loops stay single-threaded */
#define MAX_OUT_DIM ((int64_t)1 << 40)

enum { M_NEAREST, M_LINEAR, M_CUBIC };
enum { CT_HALF_PIXEL, CT_HALF_PIXEL_SYM, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC, CT_TF_HALF_PIXEL_NN,
       CT_TF_CROP };
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_CEIL, NM_SIMPLE };
enum { KA_STRETCH, KA_NOT_LARGER, KA_NOT_SMALLER };

typedef struct {
  gboolean upsample;  /* Upsample operator */
  gboolean legacy;    /* Upsample or Resize-10: inputs (X, scales), asymmetric */
  int mode, ctm, nearest, keep;
  gboolean antialias, exclude_outside;
  double cubic_a;
  float extrapolation;
} ResizeAttrs;

typedef struct {
  int r;
  int64_t I[MAXD], O[MAXD];
  double scale[MAXD]; /* scale factor used by the coordinate transformation */
  double len[MAXD];   /* "output width" of the reference: scale * I (or sizes) */
  double roi0[MAXD], roi1[MAXD];
} ResizeGeom;

typedef struct {
  int64_t I, O;
  int K;            /* row stride of w */
  int64_t *lo;      /* [O] first input index */
  int *cnt;         /* [O] taps; -1 = extrapolation value */
  float *w;         /* [O * K] */
  void *block;
  size_t bytes;
  gboolean identity, gather;
} AxisTab;

typedef struct {
  int nact;
  int order[MAXD];  /* active axes in forward order */
  AxisTab tab[MAXD];
} ResizePlan;

static int thread_count(const CnnfxExec *x)
{
  int nt = x && x->n_threads > 0 ? x->n_threads : omp_get_max_threads();
  return nt > 0 ? nt : 1;
}

static CnnfxTensor *opt_in(const CnnfxNode *n, CnnfxTensor *const *in, int i)
{
  return i < n->n_in && n->in[i] >= 0 ? in[i] : NULL;
}

/* ---- attributes ---------------------------------------------------------------------------- */

static gboolean pick(const char *s, const char *const *names, int count, int *out)
{
  for (int i = 0; i < count; i++)
    if (!strcmp(s, names[i])) {
      *out = i;
      return TRUE;
    }
  return FALSE;
}

static gboolean bool_attr(const CnnfxNode *n, const char *name, gboolean *out, GError **error)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  if (a && (a->type != CNNFX_ATTR_INT || (a->i != 0 && a->i != 1))) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute %s must be 0 or 1", name);
    return FALSE;
  }
  *out = a && a->i == 1;
  return TRUE;
}

static gboolean string_attr(const CnnfxNode *n, const char *name, const char *def, const char *const *names,
                            int count, int *out, const char *allowed, GError **error)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  if (a && a->type != CNNFX_ATTR_STRING) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute %s must be a string", name);
    return FALSE;
  }
  const char *s = a ? a->s : def;
  if (!pick(s, names, count, out)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute %s='%s' is not supported (%s)", name, s, allowed);
    return FALSE;
  }
  return TRUE;
}

static gboolean resize_attrs(const CnnfxNode *n, ResizeAttrs *a, GError **error)
{
  memset(a, 0, sizeof *a);
  a->upsample = !strcmp(n->op_type, "Upsample");
  a->cubic_a = -0.75;
  a->keep = KA_STRETCH;
  if (a->upsample && n->opset < 7) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                    "Upsample before opset 7 (height_scale/width_scale attributes) is not supported");
    return FALSE;
  }
  if (!a->upsample && n->opset < 10) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Resize needs opset 10 or later (model has %d)", n->opset);
    return FALSE;
  }
  a->legacy = a->upsample || n->opset < 11;
  if (a->legacy) {
    static const char *const modes[] = {"nearest", "linear", "bilinear"};
    int m;
    if (!string_attr(n, "mode", "nearest", modes, a->upsample ? 3 : 2, &m, "nearest, linear", error)) return FALSE;
    a->mode = m == 0 ? M_NEAREST : M_LINEAR;
    a->ctm = CT_ASYMMETRIC;
    a->nearest = NM_SIMPLE;
    if (a->upsample && n->opset < 9) {
      const CnnfxAttr *s = cnnfx_attr(n, "scales");
      if (!s || s->type != CNNFX_ATTR_FLOATS) {
        cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Upsample-7 needs a 'scales' attribute (list of floats)");
        return FALSE;
      }
    } else if (n->n_in < 2 || n->in[1] < 0) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "input 'scales' is required");
      return FALSE;
    }
    return TRUE;
  }
  static const char *const modes[] = {"nearest", "linear", "cubic"};
  static const char *const ctms[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                     "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"};
  static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
  static const char *const kas[] = {"stretch", "not_larger", "not_smaller"};
  if (!string_attr(n, "mode", "nearest", modes, 3, &a->mode, "nearest, linear, cubic", error) ||
      !string_attr(n, "coordinate_transformation_mode", "half_pixel", ctms, 7, &a->ctm,
                   "half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners, asymmetric, "
                   "tf_half_pixel_for_nn, tf_crop_and_resize", error) ||
      !string_attr(n, "nearest_mode", "round_prefer_floor", nms, 4, &a->nearest,
                   "round_prefer_floor, round_prefer_ceil, floor, ceil", error) ||
      !string_attr(n, "keep_aspect_ratio_policy", "stretch", kas, 3, &a->keep, "stretch, not_larger, not_smaller",
                   error) ||
      !bool_attr(n, "exclude_outside", &a->exclude_outside, error) || !bool_attr(n, "antialias", &a->antialias, error))
    return FALSE;
  a->cubic_a = cnnfx_attr_float(n, "cubic_coeff_a", -0.75f);
  a->extrapolation = cnnfx_attr_float(n, "extrapolation_value", 0.f);
  if (!isfinite(a->cubic_a)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute cubic_coeff_a must be finite");
    return FALSE;
  }
  const CnnfxAttr *ax = cnnfx_attr(n, "axes");
  if (ax && (ax->type != CNNFX_ATTR_INTS || ax->n < 1 || ax->n > MAXD)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute axes must be a list of 1 to %d ints", MAXD);
    return FALSE;
  }
  return TRUE;
}

static gboolean resize_check(const CnnfxNode *n, GError **error)
{
  ResizeAttrs a;
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "input X is required");
    return FALSE;
  }
  return resize_attrs(n, &a, error);
}

/* ---- geometry -------------------------------------------------------------------------------- */

static gboolean need_data(const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->data || t->numel == 0) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' has no data", what);
  return FALSE;
}

/* Output dims and per-axis scale / length / roi.  Reads only the dims of X. */
static gboolean resize_geom(const CnnfxNode *n, CnnfxTensor *const *in, const ResizeAttrs *a, ResizeGeom *g,
                            GError **error)
{
  const CnnfxTensor *X = in[0];
  if (X->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "only float32 X is supported");
    return FALSE;
  }
  int r = X->ndim;
  if (r < 1) return cnnfx_fail_shape(error, n, "X must have rank 1 or more (it is a scalar)");
  g->r = r;
  for (int d = 0; d < r; d++) {
    g->I[d] = g->O[d] = X->dims[d];
    g->scale[d] = 1.0;
    g->len[d] = (double)X->dims[d];
    g->roi0[d] = 0.0;
    g->roi1[d] = 1.0;
  }
  /* axes (opset 18): which dims scales / sizes / roi describe */
  int axes[MAXD], na = r;
  for (int d = 0; d < r; d++) axes[d] = d;
  const int64_t *av;
  int nav = a->legacy ? -1 : cnnfx_attr_ints(n, "axes", &av);
  if (nav >= 0) {
    gboolean seen[MAXD] = {0};
    if (nav < 1 || nav > r) return cnnfx_fail_shape(error, n, "attribute axes has %d values for rank %d", nav, r);
    for (int i = 0; i < nav; i++) {
      if (!cnnfx_norm_axis(av[i], r, &axes[i]))
        return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " out of range for rank %d", av[i], r);
      if (seen[axes[i]]) return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " repeated", av[i]);
      seen[axes[i]] = TRUE;
    }
    na = nav;
  }
  /* scales / sizes / roi */
  const CnnfxTensor *tscales = NULL, *tsizes = NULL, *troi = NULL;
  const float *sc = NULL;
  int nsc = 0;
  if (a->upsample && n->opset < 9) {
    const CnnfxAttr *s = cnnfx_attr(n, "scales");
    if (!s || s->type != CNNFX_ATTR_FLOATS) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Upsample-7 needs a 'scales' attribute (list of floats)");
      return FALSE;
    }
    sc = s->floats;
    nsc = s->n;
    if (nsc == 0) return cnnfx_fail_shape(error, n, "attribute scales is empty");
  } else if (a->legacy) {
    tscales = opt_in(n, in, 1);
    if (!tscales || tscales->numel == 0) return cnnfx_fail_shape(error, n, "input 'scales' is required");
  } else {
    troi = opt_in(n, in, 1);
    tscales = opt_in(n, in, 2);
    tsizes = opt_in(n, in, 3);
    if (tscales && tscales->numel == 0) tscales = NULL;
    if (tsizes && tsizes->numel == 0) tsizes = NULL;
    if (tscales && tsizes) return cnnfx_fail_shape(error, n, "give either 'scales' or 'sizes', not both");
    if (!tscales && !tsizes) return cnnfx_fail_shape(error, n, "one of 'scales' and 'sizes' is required");
  }
  if (tscales) {
    if (tscales->dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "input 'scales' must be a float tensor");
      return FALSE;
    }
    if (tscales->ndim > 1) return cnnfx_fail_shape(error, n, "input 'scales' must be 1-D");
    if (!need_data(tscales, "scales", error)) return FALSE;
    sc = cnnfx_f32(tscales);
    nsc = (int)MIN(tscales->numel, (size_t)(MAXD + 1));
  }
  if (sc && nsc != na)
    return cnnfx_fail_shape(error, n, "%s has %d values, X has rank %d%s", tscales ? "input 'scales'" : "attribute scales",
                            nsc, r, na != r ? " (and axes selects fewer)" : "");
  if (tsizes) {
    if (tsizes->dtype != CNNFX_I64) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "input 'sizes' must be an int64 tensor");
      return FALSE;
    }
    if (tsizes->ndim > 1) return cnnfx_fail_shape(error, n, "input 'sizes' must be 1-D");
    if (!need_data(tsizes, "sizes", error)) return FALSE;
    if (tsizes->numel != (size_t)na)
      return cnnfx_fail_shape(error, n, "input 'sizes' has %zu values, expected %d", tsizes->numel, na);
  }
  if (a->ctm == CT_TF_CROP) {
    if (!troi || troi->numel == 0)
      return cnnfx_fail_shape(error, n, "coordinate_transformation_mode tf_crop_and_resize needs input 'roi'");
    if (troi->dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "input 'roi' must be a float tensor");
      return FALSE;
    }
    if (!need_data(troi, "roi", error)) return FALSE;
    if (troi->numel != (size_t)(2 * na))
      return cnnfx_fail_shape(error, n, "input 'roi' has %zu values, expected %d", troi->numel, 2 * na);
    const float *rv = cnnfx_f32(troi);
    for (int i = 0; i < na; i++) {
      if (!isfinite(rv[i]) || !isfinite(rv[na + i]))
        return cnnfx_fail_shape(error, n, "input 'roi' has a non-finite value");
      g->roi0[axes[i]] = rv[i];
      g->roi1[axes[i]] = rv[na + i];
    }
  }
  if (sc) {
    for (int i = 0; i < na; i++) {
      int d = axes[i];
      double s = sc[i];
      if (!(s > 0) || !isfinite(s))
        return cnnfx_fail_shape(error, n, "scale %g for axis %d is not a positive finite number", s, d);
      /* floor(I * scale), also for tf_crop_and_resize: the ONNX reference implementation and
       * onnxruntime ignore the roi extent here (the spec's text multiplies by it). */
      double L = s * (double)g->I[d];
      double o = floor(L);
      if (!(o >= 0) || !(o <= (double)MAX_OUT_DIM))
        return cnnfx_fail_shape(error, n, "axis %d: output size %g (input %" G_GINT64_FORMAT " x scale %g) is invalid", d,
                                o, g->I[d], s);
      g->O[d] = (int64_t)o;
      g->scale[d] = s;
      g->len[d] = L;
    }
  } else {
    const int64_t *sz = cnnfx_i64(tsizes);
    for (int i = 0; i < na; i++)
      if (sz[i] < 0 || sz[i] > MAX_OUT_DIM)
        return cnnfx_fail_shape(error, n, "sizes[%d] = %" G_GINT64_FORMAT " is invalid", i, sz[i]);
    if (a->keep == KA_STRETCH) {
      for (int i = 0; i < na; i++) {
        int d = axes[i];
        g->O[d] = sz[i];
        g->scale[d] = g->I[d] > 0 ? (double)sz[i] / (double)g->I[d] : 1.0;
        g->len[d] = g->scale[d] * (double)g->I[d];
        if (g->I[d] == 0) g->len[d] = (double)sz[i];
      }
    } else {
      double s = 0;
      for (int i = 0; i < na; i++) {
        int d = axes[i];
        if (g->I[d] <= 0)
          return cnnfx_fail_shape(error, n, "keep_aspect_ratio_policy needs non-empty input axes (axis %d is empty)", d);
        double q = (double)sz[i] / (double)g->I[d];
        if (i == 0 || (a->keep == KA_NOT_LARGER ? q < s : q > s)) s = q;
      }
      if (!(s > 0)) return cnnfx_fail_shape(error, n, "keep_aspect_ratio_policy gives an empty output");
      for (int i = 0; i < na; i++) {
        int d = axes[i];
        double o = floor(s * (double)g->I[d] + 0.5);
        if (!(o <= (double)MAX_OUT_DIM)) return cnnfx_fail_shape(error, n, "output size overflows");
        g->O[d] = (int64_t)o;
        g->scale[d] = s;
        g->len[d] = s * (double)g->I[d];
      }
    }
  }
  for (int d = 0; d < r; d++)
    if (g->I[d] == 0 && g->O[d] > 0)
      return cnnfx_fail_shape(error, n, "cannot resize empty axis %d to size %" G_GINT64_FORMAT, d, g->O[d]);
  size_t numel;
  if (!cnnfx_dims_numel(r, g->O, &numel)) return cnnfx_fail_shape(error, n, "output size overflows");
  return TRUE;
}

/* ---- per-axis tables ------------------------------------------------------------------------- */

/* x_original for output index x along one axis (ONNX reference formulas, double precision). */
static double source_coord(const ResizeAttrs *a, const ResizeGeom *g, int d, double x)
{
  double s = g->scale[d], L = g->len[d], I = (double)g->I[d];
  switch (a->ctm) {
  case CT_HALF_PIXEL_SYM: {
    double adj = (double)g->O[d] / L;
    double center = I / 2;
    double off = center * (1 - adj);
    return off + (x + 0.5) / s - 0.5;
  }
  case CT_PYTORCH_HALF_PIXEL:
    return g->O[d] > 1 ? (x + 0.5) / s - 0.5 : 0.0;
  case CT_ALIGN_CORNERS:
    return L == 1 ? 0.0 : x * (I - 1) / (L - 1);
  case CT_ASYMMETRIC:
    return x / s;
  case CT_TF_HALF_PIXEL_NN:
    return (x + 0.5) / s;
  case CT_TF_CROP: {
    double r0 = g->roi0[d], r1 = g->roi1[d], v;
    if (L == 1) v = (r1 - r0) * (I - 1) / 2;
    else v = x * (r1 - r0) * (I - 1) / (L - 1);
    return v + r0 * (I - 1);
  }
  case CT_HALF_PIXEL:
  default:
    return (x + 0.5) / s - 0.5;
  }
}

static double cubic_kernel(double x, double A)
{
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0.0;
}

static void tab_free(const CnnfxExec *x, AxisTab *t)
{
  if (t->block) cnnfx_mem_free(x->mem, t->block, t->bytes);
  t->block = NULL;
}

static gboolean tab_make(const CnnfxExec *x, const CnnfxNode *n, const ResizeAttrs *a, const ResizeGeom *g, int d,
                         AxisTab *t, GError **error)
{
  memset(t, 0, sizeof *t);
  const int64_t I = g->I[d], O = g->O[d];
  const double s = g->scale[d];
  t->I = I;
  t->O = O;
  /* taps i in [i0, i1) around the base index; kernel argument se * (i - ratio) */
  const gboolean aa = a->antialias && a->mode != M_NEAREST && s < 1;
  const double se = aa ? s : 1.0;
  const double R = a->mode == M_CUBIC ? 2.0 : 1.0;
  int64_t i0 = 0, i1 = 1;
  if (a->mode != M_NEAREST) {
    double f = floor(-R / se) + 1;
    if (!(f > -(double)(8 * I + 64)))
      return cnnfx_fail_shape(error, n, "axis %d: antialiasing filter for scale %g is wider than the input", d, s);
    i0 = (int64_t)f;
    i1 = 2 - i0;
  }
  const int64_t Kraw = i1 - i0;
  t->K = (int)MAX(1, MIN(Kraw, I));
  size_t no = (size_t)O;
  if (no && (size_t)t->K + 4 > (SIZE_MAX / 16) / no) return cnnfx_fail_shape(error, n, "resize tables overflow");
  t->bytes = no * (sizeof(int64_t) + sizeof(int) + (size_t)t->K * sizeof(float)) + 64;
  t->block = cnnfx_mem_alloc(x->mem, t->bytes, error);
  if (!t->block) return FALSE;
  t->lo = t->block;
  t->w = (float *)(t->lo + no);
  t->cnt = (int *)(t->w + no * (size_t)t->K);
  double *raw = NULL, *acc = NULL;
  if (a->mode != M_NEAREST) {
    raw = g_try_new(double, (gsize)(Kraw + t->K));
    if (!raw) {
      tab_free(x, t);
      cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory (resize filter)");
      return FALSE;
    }
    acc = raw + Kraw;
  }
  gboolean identity = I == O, gather = TRUE;
  for (int64_t j = 0; j < O; j++) {
    double xo = source_coord(a, g, d, (double)j);
    float *wj = t->w + (size_t)j * t->K;
    if (a->ctm == CT_TF_CROP && (xo < 0 || xo > (double)(I - 1))) {
      t->cnt[j] = -1;
      t->lo[j] = 0;
      identity = gather = FALSE;
      continue;
    }
    /* Coordinates of the other modes stay within about [-1, I]; keep int64 conversion defined. */
    xo = CLAMP(xo, -4.0 * (double)MAX_OUT_DIM, 4.0 * (double)MAX_OUT_DIM);
    double fl = floor(xo), ratio;
    int64_t b;
    if (xo == fl) {
      ratio = 1.0;
      b = (int64_t)fl - 1;
    } else {
      ratio = xo - fl;
      b = (int64_t)fl;
    }
    if (a->mode == M_NEAREST) {
      int64_t p;
      int nm = a->nearest;
      if (nm == NM_SIMPLE) nm = s < 1 ? NM_CEIL : NM_FLOOR;
      if (ratio == 1.0) p = b + 1;
      else if (nm == NM_ROUND_PREFER_FLOOR) p = ratio <= 0.5 ? b : b + 1;
      else if (nm == NM_ROUND_PREFER_CEIL) p = ratio < 0.5 ? b : b + 1;
      else if (nm == NM_FLOOR) p = b;
      else p = b + 1;
      p = CLAMP(p, 0, I - 1);
      t->lo[j] = p;
      t->cnt[j] = 1;
      wj[0] = 1.f;
      if (p != j) identity = FALSE;
      continue;
    }
    double sum = 0;
    for (int64_t i = i0; i < i1; i++) {
      double arg = se * ((double)i - ratio);
      double v = a->mode == M_CUBIC ? cubic_kernel(arg, a->cubic_a) : MAX(0.0, 1.0 - fabs(arg));
      raw[i - i0] = v;
      sum += v;
    }
    if (aa && sum != 0)
      for (int64_t k = 0; k < Kraw; k++) raw[k] /= sum;
    if (a->exclude_outside) {
      double s2 = 0;
      for (int64_t i = i0; i < i1; i++) {
        int64_t p = b + i;
        if (p < 0 || p >= I) raw[i - i0] = 0;
        s2 += raw[i - i0];
      }
      if (s2 != 0)
        for (int64_t k = 0; k < Kraw; k++) raw[k] /= s2;
    }
    /* clamp taps to the edge, merging weights: the clamped run is contiguous */
    int64_t lo = CLAMP(b + i0, 0, I - 1), hi = CLAMP(b + i1 - 1, 0, I - 1);
    int64_t c = hi - lo + 1;
    for (int64_t k = 0; k < c; k++) acc[k] = 0;
    for (int64_t i = i0; i < i1; i++) acc[CLAMP(b + i, 0, I - 1) - lo] += raw[i - i0];
    int64_t first = 0, last = c - 1;
    while (first <= last && acc[first] == 0) first++;
    while (last >= first && acc[last] == 0) last--;
    t->lo[j] = lo + (first <= last ? first : 0);
    t->cnt[j] = (int)(last - first + 1 > 0 ? last - first + 1 : 0);
    for (int k = 0; k < t->cnt[j]; k++) wj[k] = (float)acc[first + k];
    if (t->cnt[j] != 1 || wj[0] != 1.f) gather = identity = FALSE;
    else if (t->lo[j] != j) identity = FALSE;
  }
  g_free(raw);
  t->identity = identity;
  t->gather = gather;
  return TRUE;
}

static void plan_free(const CnnfxExec *x, ResizePlan *p)
{
  for (int d = 0; d < MAXD; d++) tab_free(x, &p->tab[d]);
}

static gboolean plan_make(const CnnfxExec *x, const CnnfxNode *n, const ResizeAttrs *a, const ResizeGeom *g,
                          ResizePlan *p, GError **error)
{
  memset(p, 0, sizeof *p);
  for (int d = 0; d < g->r; d++) {
    if (!tab_make(x, n, a, g, d, &p->tab[d], error)) {
      plan_free(x, p);
      return FALSE;
    }
    if (p->tab[d].identity) tab_free(x, &p->tab[d]);
    else p->order[p->nact++] = d;
  }
  /* Order: downscaling axes first (smallest ratio first) keeps the intermediates small; then the
   * last axis if it is upscaled (its per-row gather is the costly step, best done while the
   * tensor is still small); then the other upscaled axes.  Insertion sort on a key, stable. */
  double key[MAXD];
  for (int i = 0; i < p->nact; i++) {
    int d = p->order[i];
    double q = (double)g->O[d] / (double)MAX(g->I[d], 1);
    key[i] = q > 1 && d == g->r - 1 ? 1.0 : q;
  }
  for (int i = 1; i < p->nact; i++) {
    int d = p->order[i], k = i;
    double q = key[i];
    while (k > 0 && key[k - 1] > q) {
      p->order[k] = p->order[k - 1];
      key[k] = key[k - 1];
      k--;
    }
    p->order[k] = d;
    key[k] = q;
  }
  return TRUE;
}

/* ---- kernels ----------------------------------------------------------------------------------- */

/* One row (inner == 1): dst[j] = sum_k w[j][k] src[lo[j] + k]. */
static void fwd_row(const AxisTab *t, const float *restrict src, float *restrict dst, float ext)
{
  const int K = t->K;
  if (t->gather) {
    for (int64_t j = 0; j < t->O; j++) dst[j] = src[t->lo[j]];
    return;
  }
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    if (c < 0) {
      dst[j] = ext;
      continue;
    }
    const float *s = src + t->lo[j], *w = t->w + (size_t)j * K;
    float acc = 0.f;
    for (int k = 0; k < c; k++) acc += w[k] * s[k];
    dst[j] = acc;
  }
}

/* Adjoint of fwd_row: gsrc = sum_j w[j][k] g[j] at lo[j] + k (gsrc is overwritten). */
static void bwd_row(const AxisTab *t, const float *restrict g, float *restrict gsrc)
{
  const int K = t->K;
  memset(gsrc, 0, (size_t)t->I * sizeof(float));
  if (t->gather) {
    for (int64_t j = 0; j < t->O; j++) gsrc[t->lo[j]] += g[j];
    return;
  }
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    float gj = g[j];
    float *s = gsrc + t->lo[j];
    const float *w = t->w + (size_t)j * K;
    for (int k = 0; k < c; k++) s[k] += w[k] * gj;
  }
}

/* Block (inner > 1): plane p, columns [c0, c1) of [I][inner] -> [O][inner]. */
static void fwd_block(const AxisTab *t, const float *src, float *dst, int64_t inner, int64_t c0, int64_t c1,
                      float ext)
{
  const int K = t->K;
  const int64_t L = c1 - c0;
  for (int64_t j = 0; j < t->O; j++) {
    float *restrict d = dst + j * inner + c0;
    int c = t->cnt[j];
    if (c < 0) {
      for (int64_t i = 0; i < L; i++) d[i] = ext;
      continue;
    }
    if (c == 0) {
      memset(d, 0, (size_t)L * sizeof(float));
      continue;
    }
    const float *restrict s0 = src + t->lo[j] * inner + c0;
    const float *w = t->w + (size_t)j * K;
    if (t->gather) {
      memcpy(d, s0, (size_t)L * sizeof(float));
      continue;
    }
    const float w0 = w[0];
    if (c == 2) {
      const float w1 = w[1];
      const float *restrict s1 = s0 + inner;
      for (int64_t i = 0; i < L; i++) d[i] = w0 * s0[i] + w1 * s1[i];
      continue;
    }
    for (int64_t i = 0; i < L; i++) d[i] = w0 * s0[i];
    for (int k = 1; k < c; k++) {
      const float wk = w[k];
      const float *restrict sk = s0 + (int64_t)k * inner;
      for (int64_t i = 0; i < L; i++) d[i] += wk * sk[i];
    }
  }
}

static void bwd_block(const AxisTab *t, const float *g, float *gsrc, int64_t inner, int64_t c0, int64_t c1)
{
  const int K = t->K;
  const int64_t L = c1 - c0;
  for (int64_t i = 0; i < t->I; i++) memset(gsrc + i * inner + c0, 0, (size_t)L * sizeof(float));
  for (int64_t j = 0; j < t->O; j++) {
    int c = t->cnt[j];
    if (c <= 0) continue;
    const float *restrict gj = g + j * inner + c0;
    const float *w = t->w + (size_t)j * K;
    for (int k = 0; k < c; k++) {
      const float wk = w[k];
      float *restrict s = gsrc + (t->lo[j] + k) * inner + c0;
      for (int64_t i = 0; i < L; i++) s[i] += wk * gj[i];
    }
  }
}

/* Apply one axis table (forward: src [outer][I][inner] -> dst [outer][O][inner]; backward: the
 * adjoint, src = gradient [outer][O][inner] -> dst [outer][I][inner]). */
static void run_axis(const AxisTab *t, gboolean fwd, const float *src, float *dst, int64_t outer, int64_t inner,
                     float ext, int nt)
{
  const int64_t in_len = fwd ? t->I : t->O, out_len = fwd ? t->O : t->I;
  const double work = (double)outer * (double)MAX(t->I, t->O) * (double)inner * (t->gather ? 1 : MAX(1, t->K));
  const int use_nt = work > PAR_MIN ? nt : 1;
  if (inner == 1) {
#pragma omp parallel for num_threads(use_nt) schedule(static)
    for (int64_t p = 0; p < outer; p++) {
      if (fwd) fwd_row(t, src + p * in_len, dst + p * out_len, ext);
      else bwd_row(t, src + p * in_len, dst + p * out_len);
    }
    return;
  }
  /* chunks of inner so that there are enough work items; at least 64 columns each */
  int64_t nch = 1;
  if (use_nt > 1 && outer < 4 * use_nt) {
    nch = (4 * use_nt + outer - 1) / outer;
    nch = MIN(nch, MAX(1, inner / 64));
  }
  const int64_t ch = (inner + nch - 1) / nch;
  nch = (inner + ch - 1) / ch;
  const int64_t items = outer * nch;
#pragma omp parallel for num_threads(use_nt) schedule(static)
  for (int64_t it = 0; it < items; it++) {
    int64_t p = it / nch, c0 = (it % nch) * ch, c1 = MIN(inner, c0 + ch);
    const float *s = src + p * in_len * inner;
    float *d = dst + p * out_len * inner;
    if (fwd) fwd_block(t, s, d, inner, c0, c1, ext);
    else bwd_block(t, s, d, inner, c0, c1);
  }
}

static int64_t prod(const int64_t *d, int a, int b)
{
  int64_t p = 1;
  for (int k = a; k < b; k++) p *= d[k];
  return p;
}

/* Run the plan forward (X -> Y) or backward (gY -> gX). */
static gboolean plan_run(const CnnfxExec *x, const ResizePlan *p, const ResizeGeom *g, gboolean fwd, float ext,
                         const float *src, float *dst, GError **error)
{
  const int nt = thread_count(x);
  int64_t cur[MAXD];
  for (int d = 0; d < g->r; d++) cur[d] = fwd ? g->I[d] : g->O[d];
  if (p->nact == 0) {
    size_t n = (size_t)prod(cur, 0, g->r);
    if (n) memcpy(dst, src, n * sizeof(float));
    return TRUE;
  }
  const float *s = src;
  float *scratch = NULL;
  size_t scratch_n = 0;
  for (int k = 0; k < p->nact; k++) {
    int d = fwd ? p->order[k] : p->order[p->nact - 1 - k];
    const AxisTab *t = &p->tab[d];
    int64_t outer = prod(cur, 0, d), inner = prod(cur, d + 1, g->r);
    cur[d] = fwd ? g->O[d] : g->I[d];
    float *o;
    size_t on = 0;
    if (k == p->nact - 1) {
      o = dst;
    } else {
      on = (size_t)prod(cur, 0, g->r);
      if (!(o = cnnfx_scratch_f32(x->mem, on, error))) {
        if (scratch) cnnfx_scratch_free(x->mem, scratch, scratch_n);
        return FALSE;
      }
    }
    run_axis(t, fwd, s, o, outer, inner, ext, nt);
    if (scratch) cnnfx_scratch_free(x->mem, scratch, scratch_n);
    scratch = k == p->nact - 1 ? NULL : o;
    scratch_n = on;
    s = o;
  }
  return TRUE;
}

/* ---- operator ---------------------------------------------------------------------------------- */

static gboolean resize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                               GError **error)
{
  ResizeAttrs a;
  ResizeGeom g;
  if (!resize_attrs(n, &a, error) || !resize_geom(n, in, &a, &g, error)) return FALSE;
  CnnfxTensor *y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, g.r, g.O, error);
  if (!y) return FALSE;
  if (y->numel) {
    ResizePlan p;
    if (!plan_make(x, n, &a, &g, &p, error)) {
      cnnfx_tensor_unref(y);
      return FALSE;
    }
    gboolean ok = plan_run(x, &p, &g, TRUE, a.extrapolation, cnnfx_f32(in[0]), cnnfx_f32(y), error);
    plan_free(x, &p);
    if (!ok) {
      cnnfx_tensor_unref(y);
      return FALSE;
    }
  }
  out[0] = y;
  return TRUE;
}

static gboolean resize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (!need[0]) return TRUE;
  ResizeAttrs a;
  ResizeGeom g;
  if (!resize_attrs(n, &a, error) || !resize_geom(n, in, &a, &g, error)) return FALSE;
  const CnnfxTensor *gy = gout[0] && gout[0]->dtype == CNNFX_F32 && gout[0]->data ? gout[0] : NULL;
  if (gy) {
    gboolean same = gy->ndim == g.r;
    for (int d = 0; same && d < g.r; d++) same = gy->dims[d] == g.O[d];
    if (!same) return cnnfx_fail_shape(error, n, "output gradient has the wrong shape");
  }
  CnnfxTensor *gx = cnnfx_tensor_alloc(x->mem, CNNFX_F32, g.r, g.I, error);
  if (!gx) return FALSE;
  if (gx->numel) {
    if (!gy || gy->numel == 0) {
      memset(gx->data, 0, gx->numel * sizeof(float));
    } else {
      ResizePlan p;
      if (!plan_make(x, n, &a, &g, &p, error)) {
        cnnfx_tensor_unref(gx);
        return FALSE;
      }
      gboolean ok = plan_run(x, &p, &g, FALSE, 0.f, cnnfx_f32(gy), cnnfx_f32(gx), error);
      plan_free(x, &p);
      if (!ok) {
        cnnfx_tensor_unref(gx);
        return FALSE;
      }
    }
  }
  gin[0] = gx;
  return TRUE;
}

#define RESIZE_SAVES (CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(2) | CNNFX_SAVE_IN(3))
#define RESIZE_NONDIFF ((1u << 1) | (1u << 2) | (1u << 3))

static const CnnfxOp op_resize = {.name = "Resize", .check = resize_check, .forward = resize_forward,
                                  .backward = resize_backward, .saves = RESIZE_SAVES,
                                  .nondiff_inputs = RESIZE_NONDIFF};
static const CnnfxOp op_upsample = {.name = "Upsample", .check = resize_check, .forward = resize_forward,
                                    .backward = resize_backward, .saves = RESIZE_SAVES,
                                    .nondiff_inputs = RESIZE_NONDIFF};

const CnnfxOp *const cnnfx_ops_resize[] = {&op_resize, &op_upsample, NULL};
