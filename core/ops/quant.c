/* Operator definitions (quant family): attribute checks, shape inference, what backward keeps.
 * QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul, QLinearAdd, QLinearMul,
 * QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat, QLinearLeakyRelu, QLinearSigmoid,
 * QGemm, ConvInteger, MatMulInteger, DynamicQuantizeLinear; opsets 10-21 and the com.microsoft
 * variants that ONNX Runtime's quantiser writes.  Backend-neutral; the CPU kernels are in
 * core/cpu/quant.c, the representation is described in core/ops/quant.h.
 *
 * Gradients are straight-through: rounding and clamping are treated as identity, so the
 * gradient of a quantised tensor q is that of its float value (q - zp) * s times s. */
#include "ops/quant.h"

gboolean cnnfx_op_quant_ms(const char *op)
{
  static const char *const ms[] = {"QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
                                   "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QuantizeLinear",
                                   "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                                   "ConvInteger", "MatMulInteger", "QGemm"};
  for (size_t i = 0; i < G_N_ELEMENTS(ms); i++)
    if (!strcmp(op, ms[i])) return TRUE;
  return FALSE;
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* Element count from the dims (planning headers need not carry numel). */
static size_t numel_of(const CnnfxTensor *t)
{
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= (size_t)t->dims[i];
  return n;
}

int cnnfx_quant_in_type(const CnnfxNode *n, int i)
{
  return n->in_type && i >= 0 && i < n->n_in ? n->in_type[i] : 0;
}

void cnnfx_quant_range(int type, float *lo, float *hi)
{
  switch (type) {
  case 3: *lo = -128.f; *hi = 127.f; break;          /* INT8 */
  case 5: *lo = -32768.f; *hi = 32767.f; break;      /* INT16 */
  case 4: *lo = 0.f; *hi = 65535.f; break;           /* UINT16 */
  case 6: *lo = -2147483648.f; *hi = 2147483520.f; break; /* INT32 */
  default: *lo = 0.f; *hi = 255.f; break;            /* UINT8 */
  }
}

const CnnfxTensor *cnnfx_quant_opt_in(const CnnfxNode *n, CnnfxTensor *const *in, int i)
{
  return i >= 0 && i < n->n_in ? in[i] : NULL;
}

gboolean cnnfx_quant_axis_layout(const CnnfxNode *n, const CnnfxTensor *x, const CnnfxTensor *s,
                                 const CnnfxTensor *zp, int64_t axis, size_t *ch, size_t *inner, GError **error)
{
  *ch = 1;
  *inner = 1;
  if (!s) return cnnfx_fail_shape(error, n, "missing scale");
  size_t sn = numel_of(s), zn = zp ? numel_of(zp) : 1;
  if (sn == 0) return cnnfx_fail_shape(error, n, "empty scale");
  if (sn > 1) {
    int ax;
    if (!cnnfx_norm_axis(axis, x->ndim, &ax))
      return cnnfx_fail_shape(error, n, "quantisation axis %" G_GINT64_FORMAT " out of range for rank %d", axis, x->ndim);
    if ((int64_t)sn != x->dims[ax])
      return cnnfx_fail_shape(error, n, "scale has %zu values, axis %d has %" G_GINT64_FORMAT " (blocked quantisation "
                              "is not supported)", sn, ax, x->dims[ax]);
    *ch = sn;
    for (int d = ax + 1; d < x->ndim; d++) *inner *= (size_t)x->dims[d];
  }
  if (zp && zn != 1 && zn != sn)
    return cnnfx_fail_shape(error, n, "zero point has %zu values, scale %zu", zn, sn);
  return TRUE;
}

int64_t cnnfx_quant_qdq_axis(const CnnfxNode *n)
{
  /* opset 13+ (and com.microsoft's variants): `axis`, default 1; opset 10 has none (per tensor) */
  return cnnfx_attr_int(n, "axis", 1);
}

/* ---- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear ------------------------------ */

static gboolean qdq_check(const CnnfxNode *n, GError **error)
{
  if (cnnfx_attr_int(n, "block_size", 0) > 0) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "blocked quantisation (block_size) is not supported");
    return FALSE;
  }
  int64_t od = cnnfx_attr_int(n, "output_dtype", 0);
  if (od != 0 && od != 2 && od != 3 && od != 4 && od != 5) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "quantisation to element type %" G_GINT64_FORMAT
                    " is not supported (int8, uint8, int16, uint16 only)", od);
    return FALSE;
  }
  return TRUE;
}

/* Q and DQ: float32 like X (quantised values travel as floats). */
static gboolean qdq_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!X) return cnnfx_fail_shape(error, n, "missing input");
  size_t ch, inner;
  if (!cnnfx_quant_axis_layout(n, X, cnnfx_quant_opt_in(n, in, 1), cnnfx_quant_opt_in(n, in, 2),
                               cnnfx_quant_qdq_axis(n), &ch, &inner, error))
    return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, X->ndim, X->dims);
  return TRUE;
}

/* y, y_scale, y_zero_point (scalars), as the ONNX reference. */
static gboolean dynq_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!X) return cnnfx_fail_shape(error, n, "missing input");
  cnnfx_meta_set(out[0], CNNFX_F32, X->ndim, X->dims);
  for (int o = 1; o < n->n_out; o++) cnnfx_meta_set(out[o], CNNFX_F32, 0, NULL);
  return TRUE;
}

/* ---- operators wrapped around their float counterparts ------------------------------------- */

static const CnnfxQSpec q_specs[] = {
  {"QLinearConv", "Conv", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, 8},
  {"QLinearMatMul", "MatMul", 2, {{0, 1, 2, -2}, {3, 4, 5, -1}}, 6, 7, -1},
  {"QLinearAdd", "Add", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, -1},
  {"QLinearMul", "Mul", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, -1},
  {"QLinearAveragePool", "AveragePool", 1, {{0, 1, 2, 0}}, 3, 4, -1},
  {"QLinearGlobalAveragePool", "GlobalAveragePool", 1, {{0, 1, 2, 0}}, 3, 4, -1},
  {"QLinearLeakyRelu", "LeakyRelu", 1, {{0, 1, 2, 0}}, 3, 4, -1},
  {"QLinearSigmoid", "Sigmoid", 1, {{0, 1, 2, 0}}, 3, 4, -1},
  {"ConvInteger", "Conv", 2, {{0, -1, 2, 0}, {1, -1, 3, 0}}, -1, -1, -1},
  {"MatMulInteger", "MatMul", 2, {{0, -1, 2, -2}, {1, -1, 3, -1}}, -1, -1, -1},
  {"QLinearConcat", "Concat", 0, {{0}}, 0, 1, -1},
  /* com.microsoft QGemm: A, a_scale, a_zp, B, b_scale, b_zp, C (int32, scale a_scale*b_scale),
   * y_scale, y_zp (both absent: float output); B per output column (axis CNNFX_GEMM_B_AXIS) */
  {"QGemm", "Gemm", 2, {{0, 1, 2, 0}, {3, 4, 5, CNNFX_GEMM_B_AXIS}}, 7, 8, 6},
};

const CnnfxQSpec *cnnfx_quant_spec(const CnnfxNode *n)
{
  for (size_t i = 0; i < G_N_ELEMENTS(q_specs); i++)
    if (!strcmp(q_specs[i].name, n->op_type)) return &q_specs[i];
  return NULL;
}

static gboolean is_concat(const CnnfxQSpec *sp)
{
  return !strcmp(sp->name, "QLinearConcat");
}

void cnnfx_quant_inner_map(const CnnfxQSpec *sp, int j, int *q, int *s, int *zp, int *axis)
{
  if (is_concat(sp)) {
    *q = 2 + 3 * j;
    *s = 3 + 3 * j;
    *zp = 4 + 3 * j;
    *axis = 0;
  } else {
    *q = sp->in[j].q;
    *s = sp->in[j].s;
    *zp = sp->in[j].zp;
    *axis = sp->in[j].axis;
  }
}

int64_t cnnfx_quant_resolve_axis(const CnnfxNode *n, int ax, int ndim)
{
  if (ax == CNNFX_GEMM_B_AXIS) return cnnfx_attr_int(n, "transB", 0) ? 0 : 1;
  return ax < 0 ? ndim + ax : ax;
}

gboolean cnnfx_quant_quantised_out(const CnnfxQSpec *sp, const CnnfxNode *n)
{
  return sp->ys >= 0 && sp->ys < n->n_in && n->in[sp->ys] >= 0;
}

int cnnfx_quant_n_inner(const CnnfxQSpec *sp, const CnnfxNode *n)
{
  return is_concat(sp) ? (n->n_in - 2) / 3 : sp->n_inner;
}

gboolean cnnfx_quant_has_bias(const CnnfxQSpec *sp, const CnnfxNode *n)
{
  return sp->bias >= 0 && sp->bias < n->n_in && n->in[sp->bias] >= 0;
}

void cnnfx_quant_make_inner(const CnnfxNode *n, const CnnfxQSpec *sp, int n_inner, gboolean with_bias,
                            CnnfxQInner *w)
{
  w->node = *n;
  g_strlcpy(w->op_type, sp->inner, sizeof w->op_type);
  w->node.op_type = w->op_type;
  w->node.domain = (char *)"";
  w->node.n_in = n_inner + (with_bias ? 1 : 0);
  w->node.n_out = 1;
  for (int i = 0; i <= CNNFX_QMAX_INNER; i++) w->ids[i] = i;
  w->node.in = w->ids;
  w->node.in_type = NULL;
  w->node.def = cnnfx_opdef_lookup(sp->inner);
}

gboolean cnnfx_quant_bias_meta(const CnnfxNode *n, const CnnfxQSpec *sp, CnnfxTensor *const *in,
                               const CnnfxTensor *w1, CnnfxTensor *meta, GError **error)
{
  const CnnfxTensor *B = in[sp->bias], *sw = in[sp->in[1].s];
  gboolean gemm = sp->in[1].axis == CNNFX_GEMM_B_AXIS;
  int64_t bax = gemm ? cnnfx_quant_resolve_axis(n, CNNFX_GEMM_B_AXIS, w1->ndim) : 0;
  int64_t M = w1->ndim > bax ? w1->dims[bax] : 0;
  memset(meta, 0, sizeof *meta);
  if (gemm && numel_of(B) == 1) { /* a scalar C broadcasts */
    cnnfx_meta_set(meta, CNNFX_F32, 0, NULL);
    meta->numel = 1;
    return TRUE;
  }
  if (B->ndim != 1 || B->dims[0] != M) return cnnfx_fail_shape(error, n, "bias must have %" G_GINT64_FORMAT " values", M);
  if (numel_of(sw) != 1 && (int64_t)numel_of(sw) != M) return cnnfx_fail_shape(error, n, "weight scale does not fit");
  cnnfx_meta_set(meta, CNNFX_F32, 1, &M);
  meta->numel = (size_t)M;
  return TRUE;
}

static gboolean qwrap_check(const CnnfxNode *n, GError **error)
{
  const CnnfxQSpec *sp = cnnfx_quant_spec(n);
  if (!sp) return cnnfx_fail_shape(error, n, "unknown quantised operator");
  int ni = cnnfx_quant_n_inner(sp, n);
  if (is_concat(sp) && (n->n_in < 5 || (n->n_in - 2) % 3))
    return cnnfx_fail_shape(error, n, "needs Y_scale, Y_zero_point and triples of (X, X_scale, X_zero_point)");
  if (ni < 1 || ni > CNNFX_QMAX_INNER) return cnnfx_fail_shape(error, n, "too many inputs");
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    cnnfx_quant_inner_map(sp, j, &q, &s, &zp, &ax);
    if (q >= n->n_in || n->in[q] < 0 || (s >= 0 && (s >= n->n_in || n->in[s] < 0)))
      return cnnfx_fail_shape(error, n, "input %d or its scale is missing", q);
  }
  if (sp->ys >= 0 && strcmp(sp->name, "QGemm") && !cnnfx_quant_quantised_out(sp, n))
    return cnnfx_fail_shape(error, n, "output scale is missing");
  if (cnnfx_attr_int(n, "channels_last", 0)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "channels_last layout is not supported");
    return FALSE;
  }
  CnnfxQInner w;
  cnnfx_quant_make_inner(n, sp, ni, cnnfx_quant_has_bias(sp, n), &w);
  if (!w.node.def) return cnnfx_fail_shape(error, n, "no float operator %s", sp->inner);
  if (w.node.def->check && !w.node.def->check(&w.node, error)) return FALSE;
  return TRUE;
}

static gboolean qwrap_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxQSpec *sp = cnnfx_quant_spec(n);
  if (!sp) return cnnfx_fail_shape(error, n, "unknown quantised operator");
  int ni = cnnfx_quant_n_inner(sp, n);
  /* Headers of the dequantised inner inputs (and the float bias). */
  CnnfxTensor meta[CNNFX_QMAX_INNER + 1];
  CnnfxTensor *hdr[CNNFX_QMAX_INNER + 1] = {0};
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    cnnfx_quant_inner_map(sp, j, &q, &s, &zp, &ax);
    const CnnfxTensor *Q = in[q], *Z = cnnfx_quant_opt_in(n, in, zp);
    if (!Q) return cnnfx_fail_shape(error, n, "input %d not available", q);
    int64_t axis = cnnfx_quant_resolve_axis(n, ax, Q->ndim);
    size_t ch, inner;
    if (s >= 0) {
      if (!cnnfx_quant_axis_layout(n, Q, in[s], Z, axis, &ch, &inner, error)) return FALSE;
    } else if (Z && numel_of(Z) > 1) {
      /* integer op: per-axis zero point with unit scale */
      if (!cnnfx_quant_axis_layout(n, Q, Z, Z, axis, &ch, &inner, error)) return FALSE;
    }
    memset(&meta[j], 0, sizeof meta[j]);
    cnnfx_meta_set(&meta[j], CNNFX_F32, Q->ndim, Q->dims);
    meta[j].numel = numel_of(Q);
    hdr[j] = &meta[j];
  }
  gboolean wb = cnnfx_quant_has_bias(sp, n);
  if (wb) {
    if (!cnnfx_quant_bias_meta(n, sp, in, hdr[1], &meta[ni], error)) return FALSE;
    hdr[ni] = &meta[ni];
  }
  if (cnnfx_quant_quantised_out(sp, n)) {
    const CnnfxTensor *zp = cnnfx_quant_opt_in(n, in, sp->yzp);
    if (numel_of(in[sp->ys]) != 1 || (zp && numel_of(zp) != 1))
      return cnnfx_fail_shape(error, n, "output scale and zero point must be scalars");
  }
  CnnfxQInner w;
  cnnfx_quant_make_inner(n, sp, ni, wb, &w);
  if (!w.node.def) return cnnfx_fail_shape(error, n, "no float operator %s", sp->inner);
  if (!w.node.def->infer(&w.node, hdr, out, error)) return FALSE;
  out[0]->dtype = CNNFX_F32;
  for (int o = 1; o < n->n_out; o++) cnnfx_meta_set(out[o], CNNFX_F32, out[0]->ndim, out[0]->dims);
  return TRUE;
}

static guint32 qwrap_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  (void)need;
  return CNNFX_SAVE_ALL_IN;
}

#define QWRAP(var, nm, nd)                                                                                 \
  static const CnnfxOpDef var = {.name = nm, .check = qwrap_check, .infer = qwrap_infer,                   \
                                 .differentiable = TRUE, .saves = CNNFX_SAVE_ALL_IN, .nondiff_inputs = nd, \
                                 .saves_fn = qwrap_saves}

QWRAP(def_qconv, "QLinearConv", 0x1f6u);
QWRAP(def_qmatmul, "QLinearMatMul", 0xf6u);
QWRAP(def_qadd, "QLinearAdd", 0xf6u);
QWRAP(def_qmul, "QLinearMul", 0xf6u);
QWRAP(def_qavgpool, "QLinearAveragePool", 0x1eu);
QWRAP(def_qgavgpool, "QLinearGlobalAveragePool", 0x1eu);
QWRAP(def_qleaky, "QLinearLeakyRelu", 0x1eu);
QWRAP(def_qsigmoid, "QLinearSigmoid", 0x1eu);
QWRAP(def_convint, "ConvInteger", 0xcu);
QWRAP(def_qgemm, "QGemm", 0x1f6u);
QWRAP(def_matmulint, "MatMulInteger", 0xcu);
/* QLinearConcat: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples: every
 * input except the X's is non-differentiable. */
QWRAP(def_qconcat, "QLinearConcat", 0xdb6db6dbu);

static const CnnfxOpDef def_quantize = {.name = "QuantizeLinear", .check = qdq_check, .infer = qdq_infer,
                                        .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
                                        .nondiff_inputs = 0x6u};
static const CnnfxOpDef def_dequantize = {.name = "DequantizeLinear", .check = qdq_check, .infer = qdq_infer,
                                          .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
                                          .nondiff_inputs = 0x6u};
static const CnnfxOpDef def_dynq = {.name = "DynamicQuantizeLinear", .infer = dynq_infer, .differentiable = TRUE,
                                    .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_OUT(1)};

const CnnfxOpDef *const cnnfx_opdefs_quant[] = {
  &def_quantize, &def_dequantize, &def_dynq, &def_qconv, &def_qmatmul, &def_qadd, &def_qmul, &def_qavgpool,
  &def_qgavgpool, &def_qleaky, &def_qsigmoid, &def_convint, &def_matmulint, &def_qconcat, &def_qgemm, NULL,
};
