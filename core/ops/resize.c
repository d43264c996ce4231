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
 * versions, which predate nearest_mode).
 *
 * This file: the backend-neutral definitions (attributes, output shape); the CPU kernels are in
 * core/cpu/resize.c. */
#include "ops/resize.h"
#include <math.h>

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

gboolean cnnfx_resize_attrs(const CnnfxNode *n, CnnfxResizeAttrs *a, GError **error)
{
  memset(a, 0, sizeof *a);
  a->upsample = !strcmp(n->op_type, "Upsample");
  a->cubic_a = -0.75;
  a->keep = CNNFX_RS_KA_STRETCH;
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
    a->mode = m == 0 ? CNNFX_RS_M_NEAREST : CNNFX_RS_M_LINEAR;
    a->ctm = CNNFX_RS_CT_ASYMMETRIC;
    a->nearest = CNNFX_RS_NM_SIMPLE;
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
  if (ax && (ax->type != CNNFX_ATTR_INTS || ax->n < 1 || ax->n > CNNFX_MAX_DIMS)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute axes must be a list of 1 to %d ints", CNNFX_MAX_DIMS);
    return FALSE;
  }
  return TRUE;
}

static gboolean resize_check(const CnnfxNode *n, GError **error)
{
  CnnfxResizeAttrs a;
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "input X is required");
    return FALSE;
  }
  return cnnfx_resize_attrs(n, &a, error);
}

/* ---- geometry -------------------------------------------------------------------------------- */

static gboolean need_data(const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->data || t->numel == 0) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' has no data", what);
  return FALSE;
}

/* Output dims and per-axis scale / length / roi.  Reads only the dims of X. */
gboolean cnnfx_resize_geom(const CnnfxNode *n, CnnfxTensor *const *in, const CnnfxResizeAttrs *a, CnnfxResizeGeom *g,
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
  int axes[CNNFX_MAX_DIMS], na = r;
  for (int d = 0; d < r; d++) axes[d] = d;
  const int64_t *av;
  int nav = a->legacy ? -1 : cnnfx_attr_ints(n, "axes", &av);
  if (nav >= 0) {
    gboolean seen[CNNFX_MAX_DIMS] = {0};
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
    nsc = (int)MIN(tscales->numel, (size_t)(CNNFX_MAX_DIMS + 1));
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
  if (a->ctm == CNNFX_RS_CT_TF_CROP) {
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
      if (!(o >= 0) || !(o <= (double)CNNFX_RESIZE_MAX_OUT_DIM))
        return cnnfx_fail_shape(error, n, "axis %d: output size %g (input %" G_GINT64_FORMAT " x scale %g) is invalid", d,
                                o, g->I[d], s);
      g->O[d] = (int64_t)o;
      g->scale[d] = s;
      g->len[d] = L;
    }
  } else {
    const int64_t *sz = cnnfx_i64(tsizes);
    for (int i = 0; i < na; i++)
      if (sz[i] < 0 || sz[i] > CNNFX_RESIZE_MAX_OUT_DIM)
        return cnnfx_fail_shape(error, n, "sizes[%d] = %" G_GINT64_FORMAT " is invalid", i, sz[i]);
    if (a->keep == CNNFX_RS_KA_STRETCH) {
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
        if (i == 0 || (a->keep == CNNFX_RS_KA_NOT_LARGER ? q < s : q > s)) s = q;
      }
      if (!(s > 0)) return cnnfx_fail_shape(error, n, "keep_aspect_ratio_policy gives an empty output");
      for (int i = 0; i < na; i++) {
        int d = axes[i];
        double o = floor(s * (double)g->I[d] + 0.5);
        if (!(o <= (double)CNNFX_RESIZE_MAX_OUT_DIM)) return cnnfx_fail_shape(error, n, "output size overflows");
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
double cnnfx_resize_source_coord(const CnnfxResizeAttrs *a, const CnnfxResizeGeom *g, int d, double x)
{
  double s = g->scale[d], L = g->len[d], I = (double)g->I[d];
  switch (a->ctm) {
  case CNNFX_RS_CT_HALF_PIXEL_SYM: {
    double adj = (double)g->O[d] / L;
    double center = I / 2;
    double off = center * (1 - adj);
    return off + (x + 0.5) / s - 0.5;
  }
  case CNNFX_RS_CT_PYTORCH_HALF_PIXEL:
    return g->O[d] > 1 ? (x + 0.5) / s - 0.5 : 0.0;
  case CNNFX_RS_CT_ALIGN_CORNERS:
    return L == 1 ? 0.0 : x * (I - 1) / (L - 1);
  case CNNFX_RS_CT_ASYMMETRIC:
    return x / s;
  case CNNFX_RS_CT_TF_HALF_PIXEL_NN:
    return (x + 0.5) / s;
  case CNNFX_RS_CT_TF_CROP: {
    double r0 = g->roi0[d], r1 = g->roi1[d], v;
    if (L == 1) v = (r1 - r0) * (I - 1) / 2;
    else v = x * (r1 - r0) * (I - 1) / (L - 1);
    return v + r0 * (I - 1);
  }
  case CNNFX_RS_CT_HALF_PIXEL:
  default:
    return (x + 0.5) / s - 0.5;
  }
}

static gboolean resize_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxResizeAttrs a;
  CnnfxResizeGeom g;
  if (!cnnfx_resize_attrs(n, &a, error)) return FALSE;
  /* input 1 is roi from opset 11 on: only tf_crop_and_resize reads its values */
  for (int i = 1; i <= 3; i++)
    if ((i != 1 || a.legacy || a.ctm == CNNFX_RS_CT_TF_CROP) && !cnnfx_infer_need_value(n, in, i, error)) return FALSE;
  if (!cnnfx_resize_geom(n, in, &a, &g, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, g.r, g.O);
  return TRUE;
}

/* roi, scales and sizes: read by the shape inference, carry no gradient; backward recomputes the
 * geometry from them. */
#define RESIZE_VALUES ((1u << 1) | (1u << 2) | (1u << 3))
#define RESIZE_SAVES (CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(2) | CNNFX_SAVE_IN(3))

static const CnnfxOpDef def_resize = {.name = "Resize", .check = resize_check, .infer = resize_infer,
                                      .value_inputs = RESIZE_VALUES, .differentiable = TRUE,
                                      .saves = RESIZE_SAVES, .nondiff_inputs = RESIZE_VALUES};
static const CnnfxOpDef def_upsample = {.name = "Upsample", .check = resize_check, .infer = resize_infer,
                                        .value_inputs = RESIZE_VALUES, .differentiable = TRUE,
                                        .saves = RESIZE_SAVES, .nondiff_inputs = RESIZE_VALUES};

const CnnfxOpDef *const cnnfx_opdefs_resize[] = {&def_resize, &def_upsample, NULL};
