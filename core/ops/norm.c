/* Operator definitions (norm family): attribute checks, shape inference, what backward keeps.
 * BatchNormalization (inference and training form), InstanceNormalization, LRN, LpNormalization,
 * MeanVarianceNormalization.  Backend-neutral; the CPU kernels are in core/cpu/norm.c. */
#include "ops/norm.h"

/* Element count from the dims (planning headers need not carry numel). */
static size_t numel_of(const CnnfxTensor *t)
{
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= (size_t)t->dims[i];
  return n;
}

static gboolean need_f32(const CnnfxNode *n, const CnnfxTensor *t, const char *what, GError **error)
{
  if (!t || t->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': %s must be float32", n->op_type, n->name, what);
    return FALSE;
  }
  return TRUE;
}

static gboolean need_inputs(const CnnfxNode *n, int count, GError **error)
{
  if (n->n_in < count) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': expected %d inputs, got %d", n->op_type, n->name, count,
                    n->n_in);
    return FALSE;
  }
  for (int i = 0; i < count; i++)
    if (n->in[i] < 0) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': input %d is missing", n->op_type, n->name, i);
      return FALSE;
    }
  return TRUE;
}

/* ==== BatchNormalization ================================================================== */

gboolean cnnfx_norm_bn_training(const CnnfxNode *n)
{
  return n->opset >= 14 && cnnfx_attr_int(n, "training_mode", 0) != 0;
}

static gboolean bn_check(const CnnfxNode *n, GError **error)
{
  if (!need_inputs(n, 5, error)) return FALSE;
  if (cnnfx_attr_int(n, "training_mode", 0) != 0 && n->opset < 14) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                    "BatchNormalization '%s': training_mode needs opset 14 or later", n->name);
    return FALSE;
  }
  if (cnnfx_norm_bn_training(n)) {
    /* Training form: batch statistics; optional outputs running_mean, running_var. */
    if (n->n_out > 3) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "BatchNormalization '%s': too many outputs", n->name);
      return FALSE;
    }
    return TRUE;
  }
  for (int o = 1; o < n->n_out; o++)
    if (n->out[o] >= 0) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                      "BatchNormalization '%s': running/saved statistics outputs need training_mode=1",
                      n->name);
      return FALSE;
    }
  if (n->opset < 7 && cnnfx_attr_int(n, "is_test", 1) == 0 && n->n_out > 1) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "BatchNormalization '%s': training form (is_test=0)", n->name);
    return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_norm_bn_geom(const CnnfxNode *n, CnnfxTensor *const *in, gboolean check_x, CnnfxBnGeom *g,
                            GError **error)
{
  if (!bn_check(n, error)) return FALSE;
  const CnnfxTensor *X = in[0];
  if (check_x && !need_f32(n, X, "input X", error)) return FALSE;
  for (int i = 1; i < 5; i++)
    if (!in[i] || in[i]->dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "BatchNormalization '%s': parameter %d must be float32",
                      n->name, i);
      return FALSE;
    }
  if (X->ndim < 2) return cnnfx_fail_shape(error, n, "input has rank %d, expected at least 2", X->ndim);
  gboolean spatial = n->opset >= 9 || cnnfx_attr_int(n, "spatial", 1) != 0;
  int64_t N = X->dims[0];
  int64_t per_n = 1;
  for (int i = 1; i < X->ndim; i++) per_n *= X->dims[i];
  int64_t Cp = spatial ? X->dims[1] : per_n;
  for (int i = 1; i < 5; i++)
    if ((int64_t)numel_of(in[i]) != Cp)
      return cnnfx_fail_shape(error, n, "parameter %d has %zu values, expected %" G_GINT64_FORMAT, i, numel_of(in[i]),
                              Cp);
  g->N = N;
  g->Cp = Cp;
  g->inner = Cp > 0 ? per_n / Cp : 0;
  g->eps = cnnfx_attr_float(n, "epsilon", 1e-5f);
  return TRUE;
}

/* Y like X; the training form's running_mean / running_var like the inputs they update.  Outputs
 * the inference form leaves out get the running statistics' shape (never used). */
static gboolean bn_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxBnGeom g;
  if (!cnnfx_norm_bn_geom(n, in, TRUE, &g, error)) return FALSE;
  if (cnnfx_norm_bn_training(n) && g.N * g.inner == 0)
    return cnnfx_fail_shape(error, n, "training needs a non-empty batch");
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, in[0]->dims);
  for (int o = 1; o < n->n_out; o++) {
    const CnnfxTensor *like = in[o < 2 ? 3 : 4];
    cnnfx_meta_set(out[o], CNNFX_F32, like->ndim, like->dims);
  }
  return TRUE;
}

static guint32 bn_saves(const CnnfxNode *n, const gboolean *need)
{
  guint32 sv = 0;
  if (cnnfx_norm_bn_training(n)) return (need[0] || need[1] || need[2]) ? CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1) : 0;
  if (need[0] || need[3]) sv |= CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(4);
  if (need[1]) sv |= CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(3) | CNNFX_SAVE_IN(4);
  if (need[4]) sv |= CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(3) | CNNFX_SAVE_IN(4);
  return sv;
}

/* ==== InstanceNormalization =============================================================== */

static gboolean in_check(const CnnfxNode *n, GError **error)
{
  return need_inputs(n, 3, error);
}

gboolean cnnfx_norm_in_geom(const CnnfxNode *n, CnnfxTensor *const *in, gboolean check_x, CnnfxInGeom *g,
                            GError **error)
{
  if (!in_check(n, error)) return FALSE;
  const CnnfxTensor *X = in[0];
  if (check_x && !need_f32(n, X, "input", error)) return FALSE;
  if (!need_f32(n, in[1], "scale", error) || !need_f32(n, in[2], "B", error)) return FALSE;
  if (X->ndim < 2) return cnnfx_fail_shape(error, n, "input has rank %d, expected at least 2", X->ndim);
  g->N = X->dims[0];
  g->C = X->dims[1];
  g->S = 1;
  for (int i = 2; i < X->ndim; i++) g->S *= X->dims[i];
  if ((int64_t)numel_of(in[1]) != g->C || (int64_t)numel_of(in[2]) != g->C)
    return cnnfx_fail_shape(error, n, "scale/B must have %" G_GINT64_FORMAT " values", g->C);
  g->eps = cnnfx_attr_float(n, "epsilon", 1e-5f);
  return TRUE;
}

static gboolean in_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxInGeom g;
  if (!cnnfx_norm_in_geom(n, in, TRUE, &g, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, in[0]->dims);
  return TRUE;
}

static guint32 in_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  if (need[0]) return CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1);
  if (need[1]) return CNNFX_SAVE_IN(0);
  return 0;
}

/* ==== LRN ================================================================================= */

static gboolean lrn_check(const CnnfxNode *n, GError **error)
{
  if (!need_inputs(n, 1, error)) return FALSE;
  int64_t size = cnnfx_attr_int(n, "size", -1);
  if (size < 1 || size > 65536) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "LRN '%s': attribute size must be a positive int", n->name);
    return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_norm_lrn_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, CnnfxLrnGeom *g,
                             GError **error)
{
  if (!lrn_check(n, error)) return FALSE;
  if (check_x && !need_f32(n, X, "input", error)) return FALSE;
  if (X->ndim < 2) return cnnfx_fail_shape(error, n, "input has rank %d, expected at least 2", X->ndim);
  int64_t size = cnnfx_attr_int(n, "size", 1);
  g->N = X->dims[0];
  g->C = X->dims[1];
  g->S = 1;
  for (int i = 2; i < X->ndim; i++) g->S *= X->dims[i];
  g->lo = (size - 1) / 2;
  g->hi = size - 1 - g->lo;
  g->alpha_n = cnnfx_attr_float(n, "alpha", 1e-4f) / (float)size;
  g->beta = cnnfx_attr_float(n, "beta", 0.75f);
  g->bias = cnnfx_attr_float(n, "bias", 1.0f);
  return TRUE;
}

static gboolean lrn_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxLrnGeom g;
  if (!cnnfx_norm_lrn_geom(n, in[0], TRUE, &g, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, in[0]->dims);
  return TRUE;
}

/* ==== LpNormalization ===================================================================== */

static gboolean lp_check(const CnnfxNode *n, GError **error)
{
  if (!need_inputs(n, 1, error)) return FALSE;
  int64_t p = cnnfx_attr_int(n, "p", 2);
  if (p != 1 && p != 2) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "LpNormalization '%s': p must be 1 or 2", n->name);
    return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_norm_lp_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, int64_t *outer, int64_t *L,
                            int64_t *inner, int *p, GError **error)
{
  if (!lp_check(n, error)) return FALSE;
  if (check_x && !need_f32(n, X, "input", error)) return FALSE;
  int ax;
  if (X->ndim < 1 || !cnnfx_norm_axis(cnnfx_attr_int(n, "axis", -1), X->ndim, &ax))
    return cnnfx_fail_shape(error, n, "axis out of range for rank %d", X->ndim);
  *outer = *inner = 1;
  for (int i = 0; i < ax; i++) *outer *= X->dims[i];
  for (int i = ax + 1; i < X->ndim; i++) *inner *= X->dims[i];
  *L = X->dims[ax];
  *p = (int)cnnfx_attr_int(n, "p", 2);
  return TRUE;
}

static gboolean lp_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  int64_t outer, L, inner;
  int p;
  if (!cnnfx_norm_lp_geom(n, in[0], TRUE, &outer, &L, &inner, &p, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, in[0]->dims);
  return TRUE;
}

/* ==== MeanVarianceNormalization =========================================================== */

gboolean cnnfx_norm_mvn_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, CnnfxMvnGeom *g,
                             GError **error)
{
  if (!need_inputs(n, 1, error)) return FALSE;
  if (check_x && !need_f32(n, X, "input", error)) return FALSE;
  const int64_t *ax;
  int na = cnnfx_attr_ints(n, "axes", &ax);
  static const int64_t def_axes[] = {0, 2, 3};
  if (na < 0) {
    ax = def_axes;
    na = 3;
  }
  gboolean red[CNNFX_MAX_DIMS] = {0};
  for (int i = 0; i < na; i++) {
    int a;
    if (!cnnfx_norm_axis(ax[i], X->ndim, &a)) return cnnfx_fail_shape(error, n, "axis %d out of range", (int)ax[i]);
    red[a] = TRUE;
  }
  g->ndim = X->ndim;
  g->groups = 1;
  g->M = 1;
  for (int i = X->ndim - 1; i >= 0; i--) {
    g->dims[i] = X->dims[i];
    if (red[i]) {
      g->gstride[i] = 0;
      g->M *= X->dims[i];
    } else {
      g->gstride[i] = g->groups;
      g->groups *= X->dims[i];
    }
  }
  return TRUE;
}

static gboolean mvn_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  CnnfxMvnGeom g;
  if (!cnnfx_norm_mvn_geom(n, in[0], TRUE, &g, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, in[0]->dims);
  return TRUE;
}

static const CnnfxOpDef def_bn = {.name = "BatchNormalization", .check = bn_check, .infer = bn_infer,
                                  .differentiable = TRUE,
                                  .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(3) | CNNFX_SAVE_IN(4),
                                  .saves_fn = bn_saves};
static const CnnfxOpDef def_in = {.name = "InstanceNormalization", .check = in_check, .infer = in_infer,
                                  .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
                                  .saves_fn = in_saves};
static const CnnfxOpDef def_lrn = {.name = "LRN", .check = lrn_check, .infer = lrn_infer, .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(0)};
static const CnnfxOpDef def_lp = {.name = "LpNormalization", .check = lp_check, .infer = lp_infer,
                                  .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0)};
static const CnnfxOpDef def_mvn = {.name = "MeanVarianceNormalization", .infer = mvn_infer, .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(0)};

const CnnfxOpDef *const cnnfx_opdefs_norm[] = {&def_bn, &def_in, &def_lrn, &def_lp, &def_mvn, NULL};
