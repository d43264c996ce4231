/* Operator definitions (elementwise family): attribute checks, shape inference, what backward keeps.
 *
 *   Add Sub Mul Div Pow PRelu Sum Identity Dropout Cast CastLike
 *
 * plus the broadcasting rule cnnfx_broadcast_dims() (numpy rules), used by every family's inference.
 * Backend-neutral; the CPU kernels are in core/cpu/elementwise.c. */
#include "cnnfx-private.h"
#include "ops/elementwise.h"

/* ---- shared helpers ------------------------------------------------------------- */

gboolean cnnfx_broadcast_dims(int na, const int64_t *da, int nb, const int64_t *db, int *nout, int64_t *dout)
{
  int n = MAX(na, nb);
  if (n > CNNFX_MAX_DIMS || na < 0 || nb < 0) return FALSE;
  for (int i = 0; i < n; i++) {
    int ia = i - (n - na), ib = i - (n - nb);
    int64_t a = ia >= 0 ? da[ia] : 1, b = ib >= 0 ? db[ib] : 1;
    if (a == b || b == 1) dout[i] = a;
    else if (a == 1) dout[i] = b;
    else return FALSE;
  }
  *nout = n;
  return TRUE;
}

static size_t dims_prod(int nd, const int64_t *d)
{
  size_t n = 1;
  for (int i = 0; i < nd; i++) n *= (size_t)d[i];
  return n;
}

gboolean cnnfx_prelu_slope_dims(const CnnfxNode *n, const CnnfxTensor *xt, const CnnfxTensor *s, int *nd,
                                int64_t *dims, GError **error)
{
  *nd = s->ndim;
  for (int i = 0; i < s->ndim; i++) dims[i] = s->dims[i];
  if (s->ndim == 1 && xt->ndim >= 2 && s->dims[0] == xt->dims[1] && s->dims[0] != 1 &&
      (n->opset < 7 || xt->dims[xt->ndim - 1] != s->dims[0])) {
    *nd = xt->ndim - 1;
    dims[0] = s->dims[0];
    for (int i = 1; i < *nd; i++) dims[i] = 1;
  }
  int ond;
  int64_t od[CNNFX_MAX_DIMS];
  if (!cnnfx_broadcast_dims(xt->ndim, xt->dims, *nd, dims, &ond, od) || ond != xt->ndim ||
      dims_prod(ond, od) != dims_prod(xt->ndim, xt->dims)) {
    g_autofree char *sx = cnnfx_shape_string(xt);
    g_autofree char *ss = cnnfx_shape_string(s);
    return cnnfx_fail_shape(error, n, "slope of shape %s does not broadcast to input %s", ss, sx);
  }
  return TRUE;
}

static const char *dtype_name(CnnfxDType t)
{
  return t == CNNFX_F32 ? "float" : t == CNNFX_I64 ? "int64" : "unknown";
}

static gboolean need_inputs(const CnnfxNode *n, CnnfxTensor *const *in, int k, GError **error)
{
  if (n->n_in < k) return cnnfx_fail_shape(error, n, "needs %d inputs, has %d", k, n->n_in);
  for (int i = 0; i < k; i++)
    if (!in[i]) return cnnfx_fail_shape(error, n, "input %d is missing", i);
  return TRUE;
}

/* ---- Add / Sub / Mul / Div / Pow ---------------------------------------------- */

/* int64 op int64 (and int64 ** anything) is int64; float op float (and float ** int64) is float. */
static gboolean binary_infer_common(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                                    gboolean is_pow, GError **error)
{
  if (!need_inputs(n, in, 2, error)) return FALSE;
  const CnnfxTensor *a = in[0], *b = in[1];
  int nd;
  int64_t od[CNNFX_MAX_DIMS];
  if (!cnnfx_broadcast_dims(a->ndim, a->dims, b->ndim, b->dims, &nd, od)) {
    g_autofree char *sa = cnnfx_shape_string(a);
    g_autofree char *sb = cnnfx_shape_string(b);
    return cnnfx_fail_shape(error, n, "cannot broadcast shapes %s and %s", sa, sb);
  }
  if (a->dtype == CNNFX_I64 && (b->dtype == CNNFX_I64 || is_pow)) {
    cnnfx_meta_set(out[0], CNNFX_I64, nd, od);
    return TRUE;
  }
  if (a->dtype != CNNFX_F32 || (b->dtype != CNNFX_F32 && !is_pow)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': operands of types %s and %s are not supported",
                    n->op_type, n->name, dtype_name(a->dtype), dtype_name(b->dtype));
    return FALSE;
  }
  cnnfx_meta_set(out[0], CNNFX_F32, nd, od);
  return TRUE;
}

static gboolean binary_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  return binary_infer_common(n, in, out, FALSE, error);
}

static gboolean pow_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  return binary_infer_common(n, in, out, TRUE, error);
}

static guint32 mul_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  return (need[0] ? CNNFX_SAVE_IN(1) : 0) | (need[1] ? CNNFX_SAVE_IN(0) : 0);
}

static guint32 div_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  return (need[0] || need[1] ? CNNFX_SAVE_IN(1) : 0) | (need[1] ? CNNFX_SAVE_IN(0) : 0);
}

/* ---- PRelu ---------------------------------------------------------------------- */

static gboolean prelu_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!need_inputs(n, in, 2, error)) return FALSE;
  const CnnfxTensor *a = in[0], *s = in[1];
  if (a->dtype != CNNFX_F32 || s->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "PRelu '%s': only float tensors are supported", n->name);
    return FALSE;
  }
  int snd;
  int64_t sd[CNNFX_MAX_DIMS];
  if (!cnnfx_prelu_slope_dims(n, a, s, &snd, sd, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, a->ndim, a->dims);
  return TRUE;
}

static guint32 prelu_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  return CNNFX_SAVE_IN(0) | (need[0] ? CNNFX_SAVE_IN(1) : 0);
}

/* ---- Sum ------------------------------------------------------------------------ */

static gboolean sum_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (n->n_in < 1) return cnnfx_fail_shape(error, n, "needs at least one input");
  int nd = 0;
  int64_t od[CNNFX_MAX_DIMS];
  for (int i = 0; i < n->n_in; i++) {
    if (!in[i]) return cnnfx_fail_shape(error, n, "input %d is missing", i);
    if (in[i]->dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Sum '%s': %s inputs are not supported", n->name,
                      dtype_name(in[i]->dtype));
      return FALSE;
    }
    if (i == 0) {
      nd = in[0]->ndim;
      for (int j = 0; j < nd; j++) od[j] = in[0]->dims[j];
    } else {
      int64_t t[CNNFX_MAX_DIMS];
      for (int j = 0; j < nd; j++) t[j] = od[j];
      if (!cnnfx_broadcast_dims(nd, t, in[i]->ndim, in[i]->dims, &nd, od)) {
        g_autofree char *s = cnnfx_shape_string(in[i]);
        return cnnfx_fail_shape(error, n, "input %d of shape %s does not broadcast with the others", i, s);
      }
    }
  }
  cnnfx_meta_set(out[0], CNNFX_F32, nd, od);
  return TRUE;
}

/* ---- Identity / Dropout --------------------------------------------------------- */

static gboolean identity_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!need_inputs(n, in, 1, error)) return FALSE;
  return cnnfx_infer_same(n, in, out, error);
}

/* Output 1 (the mask, all true in inference) is int64 shaped like the input.  training_mode (input 2)
 * is checked by the kernel: its value may be computed by the network. */
static gboolean dropout_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!need_inputs(n, in, 1, error)) return FALSE;
  cnnfx_meta_set(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
  for (int k = 1; k < n->n_out; k++) cnnfx_meta_set(out[k], CNNFX_I64, in[0]->ndim, in[0]->dims);
  return TRUE;
}

/* ---- Cast ------------------------------------------------------------------------ */

static const char *onnx_type_str(int64_t t)
{
  static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
                                      "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
                                      "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  return t >= 0 && t < (int64_t)G_N_ELEMENTS(names) ? names[t] : "unknown";
}

static gboolean cast_check(const CnnfxNode *n, GError **error)
{
  int64_t to = cnnfx_attr_int(n, "to", -1);
  if (to == 1 || to == 7) return TRUE;
  if (to < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_PARSE, "Cast '%s' has no 'to' attribute", n->name);
    return FALSE;
  }
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                  "Cast '%s' to %s (%" G_GINT64_FORMAT ") is not supported (only FLOAT and INT64)", n->name,
                  onnx_type_str(to), to);
  return FALSE;
}

static gboolean cast_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!need_inputs(n, in, 1, error)) return FALSE;
  if (!cast_check(n, error)) return FALSE;
  CnnfxDType to = cnnfx_attr_int(n, "to", 1) == 1 ? CNNFX_F32 : CNNFX_I64;
  cnnfx_meta_set(out[0], to, in[0]->ndim, in[0]->dims);
  return TRUE;
}

/* CastLike (opset 15): the type of input 1. */
static gboolean castlike_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (!need_inputs(n, in, 2, error)) return FALSE;
  cnnfx_meta_set(out[0], in[1]->dtype, in[0]->ndim, in[0]->dims);
  return TRUE;
}

/* ---- table ------------------------------------------------------------------------ */

static const CnnfxOpDef def_add = {.name = "Add", .infer = binary_infer, .differentiable = TRUE};
static const CnnfxOpDef def_sub = {.name = "Sub", .infer = binary_infer, .differentiable = TRUE};
static const CnnfxOpDef def_mul = {.name = "Mul", .infer = binary_infer, .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1), .saves_fn = mul_saves};
static const CnnfxOpDef def_div = {.name = "Div", .infer = binary_infer, .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1), .saves_fn = div_saves};
static const CnnfxOpDef def_pow = {.name = "Pow", .infer = pow_infer, .differentiable = TRUE,
                                   .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1), .nondiff_inputs = 1u << 1};
static const CnnfxOpDef def_prelu = {.name = "PRelu", .infer = prelu_infer, .differentiable = TRUE,
                                     .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1), .saves_fn = prelu_saves};
static const CnnfxOpDef def_sum = {.name = "Sum", .infer = sum_infer, .differentiable = TRUE};
static const CnnfxOpDef def_identity = {.name = "Identity", .infer = identity_infer, .differentiable = TRUE};
static const CnnfxOpDef def_dropout = {.name = "Dropout", .infer = dropout_infer, .differentiable = TRUE,
                                       .nondiff_inputs = (1u << 1) | (1u << 2)};
static const CnnfxOpDef def_castlike = {.name = "CastLike", .infer = castlike_infer, .differentiable = TRUE,
                                        .nondiff_inputs = 1u << 1};
static const CnnfxOpDef def_cast = {.name = "Cast", .check = cast_check, .infer = cast_infer,
                                    .differentiable = TRUE};

const CnnfxOpDef *const cnnfx_opdefs_elementwise[] = {
  &def_add, &def_sub, &def_mul, &def_div, &def_pow, &def_prelu, &def_sum, &def_identity, &def_dropout, &def_cast,
  &def_castlike, NULL,
};
