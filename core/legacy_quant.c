/* Quantised operators (QuantizeLinear, DequantizeLinear, QLinearConv, QLinearMatMul, QLinearAdd,
 * QLinearMul, QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat, QLinearLeakyRelu,
 * QLinearSigmoid, QGemm, ConvInteger, MatMulInteger, DynamicQuantizeLinear; opsets 10-21 and the
 * com.microsoft variants that ONNX Runtime's quantiser writes).
 *
 * Representation: quantised tensors travel as float32 tensors holding the integer values
 * (q in -128..127 or 0..255); integer initializers arrive widened to int64 and are read as
 * either.  Each QLinear operator dequantises its inputs ((q - zero_point) * scale, per tensor
 * or per axis), runs the float operator of the same name without the prefix (Conv, MatMul,
 * AveragePool, ...) and requantises its output (round half to even, then clamp to the zero
 * point's integer range), so the int8 rounding of the real model is reproduced.
 *
 * Gradients are straight-through: rounding and clamping are treated as identity, so the
 * gradient of a quantised tensor q is that of its float value (q - zp) * s times s. */
#include "cnnfx-private.h"
#include <math.h>

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

static inline float tval(const CnnfxTensor *t, size_t i)
{
  return t->dtype == CNNFX_F32 ? cnnfx_f32(t)[i] : (float)cnnfx_i64(t)[i];
}

static int in_type(const CnnfxNode *n, int i)
{
  return n->in_type && i >= 0 && i < n->n_in ? n->in_type[i] : 0;
}

/* Integer range of an ONNX element type (unknown: uint8, the ONNX default). */
static void qrange(int type, float *lo, float *hi)
{
  switch (type) {
  case 3: *lo = -128.f; *hi = 127.f; break;          /* INT8 */
  case 5: *lo = -32768.f; *hi = 32767.f; break;      /* INT16 */
  case 4: *lo = 0.f; *hi = 65535.f; break;           /* UINT16 */
  case 6: *lo = -2147483648.f; *hi = 2147483520.f; break; /* INT32 */
  default: *lo = 0.f; *hi = 255.f; break;            /* UINT8 */
  }
}

static const CnnfxTensor *opt_in(const CnnfxNode *n, CnnfxTensor *const *in, int i)
{
  return i >= 0 && i < n->n_in ? in[i] : NULL;
}

/* Channel layout of a per-axis scale: element i of x belongs to channel (i / inner) % ch.
 * ch == 1: per tensor.  FALSE (error set) if the parameter does not fit x. */
static gboolean axis_layout(const CnnfxNode *n, const CnnfxTensor *x, const CnnfxTensor *s, const CnnfxTensor *zp,
                            int64_t axis, size_t *ch, size_t *inner, GError **error)
{
  *ch = 1;
  *inner = 1;
  if (!s) return cnnfx_fail_shape(error, n, "missing scale");
  if (s->numel == 0) return cnnfx_fail_shape(error, n, "empty scale");
  if (s->numel > 1) {
    int ax;
    if (!cnnfx_norm_axis(axis, x->ndim, &ax))
      return cnnfx_fail_shape(error, n, "quantisation axis %" G_GINT64_FORMAT " out of range for rank %d", axis, x->ndim);
    if ((int64_t)s->numel != x->dims[ax])
      return cnnfx_fail_shape(error, n, "scale has %zu values, axis %d has %" G_GINT64_FORMAT " (blocked quantisation "
                              "is not supported)", s->numel, ax, x->dims[ax]);
    *ch = s->numel;
    for (int d = ax + 1; d < x->ndim; d++) *inner *= (size_t)x->dims[d];
  }
  if (zp && zp->numel != 1 && zp->numel != s->numel)
    return cnnfx_fail_shape(error, n, "zero point has %zu values, scale %zu", zp->numel, s->numel);
  return TRUE;
}

static inline size_t chan_of(size_t i, size_t ch, size_t inner)
{
  return ch == 1 ? 0 : (i / inner) % ch;
}

/* y = (q - zp) * s */
static CnnfxTensor *dequant(const CnnfxExec *x, const CnnfxNode *n, const CnnfxTensor *q, const CnnfxTensor *s,
                            const CnnfxTensor *zp, int64_t axis, GError **error)
{
  size_t ch, inner;
  if (!q || !q->data) return cnnfx_fail_shape(error, n, "missing quantised input"), NULL;
  if (!axis_layout(n, q, s, zp, axis, &ch, &inner, error)) return NULL;
  CnnfxTensor *y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, q->ndim, q->dims, error);
  if (!y) return NULL;
  float *yd = cnnfx_f32(y);
  for (size_t i = 0; i < q->numel; i++) {
    size_t c = chan_of(i, ch, inner);
    float z = zp ? tval(zp, zp->numel == 1 ? 0 : c) : 0.f;
    yd[i] = (tval(q, i) - z) * tval(s, c);
  }
  return y;
}

/* In place: v = clamp(rint(v / s) + zp, lo, hi) */
static gboolean requant(const CnnfxNode *n, CnnfxTensor *v, const CnnfxTensor *s, const CnnfxTensor *zp, int64_t axis,
                        float lo, float hi, GError **error)
{
  size_t ch, inner;
  if (!axis_layout(n, v, s, zp, axis, &ch, &inner, error)) return FALSE;
  float *d = cnnfx_f32(v);
  for (size_t i = 0; i < v->numel; i++) {
    size_t c = chan_of(i, ch, inner);
    float sc = tval(s, c);
    float z = zp ? tval(zp, zp->numel == 1 ? 0 : c) : 0.f;
    float q = sc != 0.f ? rintf(d[i] / sc) + z : z;
    if (isnan(q)) q = z;
    d[i] = q < lo ? lo : q > hi ? hi : q;
  }
  return TRUE;
}

/* g (float gradient of the dequantised value) -> gradient of q: times s, per axis. */
static CnnfxTensor *scale_grad(const CnnfxExec *x, const CnnfxNode *n, const CnnfxTensor *g, const CnnfxTensor *like,
                               const CnnfxTensor *s, int64_t axis, gboolean divide, GError **error)
{
  size_t ch, inner;
  if (!axis_layout(n, like, s, NULL, axis, &ch, &inner, error)) return NULL;
  CnnfxTensor *r = cnnfx_tensor_alloc(x->mem, CNNFX_F32, like->ndim, like->dims, error);
  if (!r) return NULL;
  float *rd = cnnfx_f32(r);
  for (size_t i = 0; i < r->numel; i++) {
    float sc = tval(s, chan_of(i, ch, inner));
    float gv = g ? cnnfx_f32(g)[i] : 0.f;
    rd[i] = divide ? (sc != 0.f ? gv / sc : 0.f) : gv * sc;
  }
  return r;
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

static int64_t qdq_axis(const CnnfxNode *n)
{
  /* opset 13+ (and com.microsoft's variants): `axis`, default 1; opset 10 has none (per tensor) */
  return cnnfx_attr_int(n, "axis", 1);
}

static gboolean quantize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                 GError **error)
{
  const CnnfxTensor *X = in[0], *s = opt_in(n, in, 1), *zp = opt_in(n, in, 2);
  if (!X || !X->data) return cnnfx_fail_shape(error, n, "missing input");
  float lo, hi;
  int t = zp ? in_type(n, 2) : 0;
  if (!t) t = (int)cnnfx_attr_int(n, "output_dtype", 0);
  qrange(t, &lo, &hi);
  CnnfxTensor *y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, X->dims, error);
  if (!y) return FALSE;
  for (size_t i = 0; i < X->numel; i++) cnnfx_f32(y)[i] = tval(X, i);
  if (!requant(n, y, s, zp, qdq_axis(n), lo, hi, error)) {
    cnnfx_tensor_unref(y);
    return FALSE;
  }
  out[0] = y;
  return TRUE;
}

static gboolean quantize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                  CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (need[0]) {
    gin[0] = scale_grad(x, n, gout[0], in[0], in[1], qdq_axis(n), TRUE, error);
    if (!gin[0]) return FALSE;
  }
  return TRUE;
}

static gboolean dequantize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                                   GError **error)
{
  out[0] = dequant(x, n, in[0], opt_in(n, in, 1), opt_in(n, in, 2), qdq_axis(n), error);
  return out[0] != NULL;
}

static gboolean dequantize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                    CnnfxTensor **gin, GError **error)
{
  (void)out;
  if (need[0]) {
    gin[0] = scale_grad(x, n, gout[0], in[0], in[1], qdq_axis(n), FALSE, error);
    if (!gin[0]) return FALSE;
  }
  return TRUE;
}

/* y, y_scale, y_zero_point (uint8), as the ONNX reference. */
static gboolean dynq_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                             GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!X || !X->data) return cnnfx_fail_shape(error, n, "missing input");
  float mn = 0.f, mx = 0.f;
  for (size_t i = 0; i < X->numel; i++) {
    float v = tval(X, i);
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  float scale = (mx - mn) / 255.f;
  float zpv = scale != 0.f ? rintf(-mn / scale) : 0.f;
  zpv = zpv < 0.f ? 0.f : zpv > 255.f ? 255.f : zpv;
  CnnfxTensor *y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, X->ndim, X->dims, error);
  CnnfxTensor *s = y ? cnnfx_tensor_alloc(x->mem, CNNFX_F32, 0, NULL, error) : NULL;
  CnnfxTensor *z = s ? cnnfx_tensor_alloc(x->mem, CNNFX_F32, 0, NULL, error) : NULL;
  if (!z) {
    if (y) cnnfx_tensor_unref(y);
    if (s) cnnfx_tensor_unref(s);
    return FALSE;
  }
  cnnfx_f32(s)[0] = scale;
  cnnfx_f32(z)[0] = zpv;
  for (size_t i = 0; i < X->numel; i++) cnnfx_f32(y)[i] = tval(X, i);
  if (!requant(n, y, s, z, 1, 0.f, 255.f, error)) {
    cnnfx_tensor_unref(y);
    cnnfx_tensor_unref(s);
    cnnfx_tensor_unref(z);
    return FALSE;
  }
  out[0] = y;
  if (n->n_out > 1) out[1] = s; else cnnfx_tensor_unref(s);
  if (n->n_out > 2) out[2] = z; else cnnfx_tensor_unref(z);
  return TRUE;
}

static gboolean dynq_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor **gin, GError **error)
{
  if (!need[0]) return TRUE;
  if (n->n_out < 2 || !out[1] || !out[1]->data) return cnnfx_fail_shape(error, n, "scale output not kept");
  gin[0] = scale_grad(x, n, gout[0], in[0], out[1], 1, TRUE, error);
  return gin[0] != NULL;
}

/* ---- operators wrapped around their float counterparts ------------------------------------- */

#define QMAX_IN 3
#define GEMM_B_AXIS 99 /* QGemm's B: axis 0 if transB, else 1 (the output columns) */

typedef struct {
  const char *name, *inner;
  int n_inner;             /* inner inputs (QLinearConcat: computed) */
  struct {
    int q, s, zp;          /* outer input indices; s < 0: input passed as is */
    int axis;              /* per-axis scale axis (-1, -2: from the end) */
  } in[QMAX_IN];
  int ys, yzp;             /* output scale / zero point; ys < 0: float output (ConvInteger, MatMulInteger) */
  int bias;                /* QLinearConv's int32 bias (scale s_x * s_w), -1 none */
  guint32 nondiff;
} QSpec;

static const QSpec q_specs[] = {
  {"QLinearConv", "Conv", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, 8, 0x1f6u},
  {"QLinearMatMul", "MatMul", 2, {{0, 1, 2, -2}, {3, 4, 5, -1}}, 6, 7, -1, 0xf6u},
  {"QLinearAdd", "Add", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, -1, 0xf6u},
  {"QLinearMul", "Mul", 2, {{0, 1, 2, 0}, {3, 4, 5, 0}}, 6, 7, -1, 0xf6u},
  {"QLinearAveragePool", "AveragePool", 1, {{0, 1, 2, 0}}, 3, 4, -1, 0x1eu},
  {"QLinearGlobalAveragePool", "GlobalAveragePool", 1, {{0, 1, 2, 0}}, 3, 4, -1, 0x1eu},
  {"QLinearLeakyRelu", "LeakyRelu", 1, {{0, 1, 2, 0}}, 3, 4, -1, 0x1eu},
  {"QLinearSigmoid", "Sigmoid", 1, {{0, 1, 2, 0}}, 3, 4, -1, 0x1eu},
  {"ConvInteger", "Conv", 2, {{0, -1, 2, 0}, {1, -1, 3, 0}}, -1, -1, -1, 0xcu},
  {"MatMulInteger", "MatMul", 2, {{0, -1, 2, -2}, {1, -1, 3, -1}}, -1, -1, -1, 0xcu},
  {"QLinearConcat", "Concat", 0, {{0}}, 0, 1, -1, 0},
  /* com.microsoft QGemm: A, a_scale, a_zp, B, b_scale, b_zp, C (int32, scale a_scale*b_scale),
   * y_scale, y_zp (both absent: float output); B per output column (axis GEMM_B_AXIS) */
  {"QGemm", "Gemm", 2, {{0, 1, 2, 0}, {3, 4, 5, GEMM_B_AXIS}}, 7, 8, 6, 0},
};

static const QSpec *spec_of(const CnnfxNode *n)
{
  for (size_t i = 0; i < G_N_ELEMENTS(q_specs); i++)
    if (!strcmp(q_specs[i].name, n->op_type)) return &q_specs[i];
  return NULL;
}

static gboolean is_concat(const QSpec *sp)
{
  return !strcmp(sp->name, "QLinearConcat");
}

/* Outer input indices of inner input j: q, scale, zero point, axis. */
static void inner_map(const QSpec *sp, int j, int *q, int *s, int *zp, int *axis)
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

static int64_t resolve_axis(const CnnfxNode *n, int ax, int ndim)
{
  if (ax == GEMM_B_AXIS) return cnnfx_attr_int(n, "transB", 0) ? 0 : 1;
  return ax < 0 ? ndim + ax : ax;
}

/* The output is requantised when its scale is given (QGemm may leave it out: float output). */
static gboolean quantised_out(const QSpec *sp, const CnnfxNode *n)
{
  return sp->ys >= 0 && sp->ys < n->n_in && n->in[sp->ys] >= 0;
}

static int n_inner_of(const QSpec *sp, const CnnfxNode *n)
{
  return is_concat(sp) ? (n->n_in - 2) / 3 : sp->n_inner;
}

#define QMAX_INNER 64

/* A node that looks like the float operator to its kernel (same attributes). */
typedef struct {
  CnnfxNode node;
  int ids[QMAX_INNER + 1];
  char op_type[32];
} InnerNode;

static void make_inner(const CnnfxNode *n, const QSpec *sp, int n_inner, gboolean with_bias, InnerNode *w)
{
  w->node = *n;
  g_strlcpy(w->op_type, sp->inner, sizeof w->op_type);
  w->node.op_type = w->op_type;
  w->node.domain = (char *)"";
  w->node.n_in = n_inner + (with_bias ? 1 : 0);
  for (int i = 0; i <= QMAX_INNER; i++) w->ids[i] = i;
  w->node.in = w->ids;
  w->node.in_type = NULL;
  w->node.def = cnnfx_opdef_lookup(sp->inner);
  w->node.op = w->node.def ? NULL : cnnfx_op_lookup(sp->inner);
}

/* Inner operators already split into definition + kernel (issue #11) run through their baseline CPU
 * kernel: infer, allocate the outputs, forward; backward gets zero-filled input gradients. */
#define QKERNEL_TABLE(f) cnnfx_cpu_kernels_##f,
static const CnnfxKernel *inner_kernel(const CnnfxNode *n)
{
  static const CnnfxKernel *const *const tables[] = {CNNFX_OP_FAMILIES(QKERNEL_TABLE)};
  for (size_t t = 0; t < G_N_ELEMENTS(tables); t++)
    for (const CnnfxKernel *const *k = tables[t]; *k; k++)
      if (!strcmp((*k)->name, n->op_type)) return *k;
  return NULL;
}

static gboolean inner_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  if (n->op) return n->op->forward(x, n, in, out, error);
  const CnnfxKernel *k = inner_kernel(n);
  if (!k || n->n_out > 4) return cnnfx_fail_shape(error, n, "no float operator %s", n->op_type);
  CnnfxTensor meta[4], *mp[4];
  memset(meta, 0, sizeof meta);
  for (int o = 0; o < 4; o++) mp[o] = &meta[o];
  if (!n->def->infer(n, in, mp, error)) return FALSE;
  gboolean ok = TRUE;
  for (int o = 0; ok && o < n->n_out; o++)
    ok = (out[o] = cnnfx_tensor_alloc(x->mem, meta[o].dtype, meta[o].ndim, meta[o].dims, error)) != NULL;
  if (ok) ok = k->forward(x, n, in, out, NULL, error);
  for (int o = 0; !ok && o < n->n_out; o++) /* like a legacy forward: no outputs on failure */
    if (out[o]) {
      cnnfx_tensor_unref(out[o]);
      out[o] = NULL;
    }
  return ok;
}

static gboolean inner_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor **gin, GError **error)
{
  if (n->op) return n->op->backward(x, n, in, out, gout, need, gin, error);
  const CnnfxKernel *k = inner_kernel(n);
  if (!k || n->def->aux_bytes) return cnnfx_fail_shape(error, n, "%s has no gradient", n->op_type);
  for (int i = 0; i < n->n_in; i++) {
    if (!need[i]) continue;
    if (!(gin[i] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, in[i]->ndim, in[i]->dims, error))) return FALSE;
    memset(gin[i]->data, 0, gin[i]->numel * sizeof(float));
  }
  return k->backward(x, n, in, out, gout, need, gin, NULL, error);
}

static gboolean qwrap_check(const CnnfxNode *n, GError **error)
{
  const QSpec *sp = spec_of(n);
  if (!sp) return cnnfx_fail_shape(error, n, "unknown quantised operator");
  int ni = n_inner_of(sp, n);
  if (is_concat(sp) && (n->n_in < 5 || (n->n_in - 2) % 3))
    return cnnfx_fail_shape(error, n, "needs Y_scale, Y_zero_point and triples of (X, X_scale, X_zero_point)");
  if (ni < 1 || ni > QMAX_INNER) return cnnfx_fail_shape(error, n, "too many inputs");
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    inner_map(sp, j, &q, &s, &zp, &ax);
    if (q >= n->n_in || n->in[q] < 0 || (s >= 0 && (s >= n->n_in || n->in[s] < 0)))
      return cnnfx_fail_shape(error, n, "input %d or its scale is missing", q);
  }
  if (sp->ys >= 0 && strcmp(sp->name, "QGemm") && !quantised_out(sp, n))
    return cnnfx_fail_shape(error, n, "output scale is missing");
  if (cnnfx_attr_int(n, "channels_last", 0)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "channels_last layout is not supported");
    return FALSE;
  }
  InnerNode w;
  make_inner(n, sp, ni, sp->bias >= 0 && sp->bias < n->n_in && n->in[sp->bias] >= 0, &w);
  if (!w.node.op && !w.node.def) return cnnfx_fail_shape(error, n, "no float operator %s", sp->inner);
  gboolean (*check)(const CnnfxNode *, GError **) = w.node.def ? w.node.def->check : w.node.op->check;
  if (check && !check(&w.node, error)) return FALSE;
  return TRUE;
}

/* Dequantised inner inputs (plus bias).  f[] gets new references. */
static gboolean inner_inputs(const CnnfxExec *x, const CnnfxNode *n, const QSpec *sp, CnnfxTensor *const *in,
                             int ni, CnnfxTensor **f, gboolean *with_bias, GError **error)
{
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    inner_map(sp, j, &q, &s, &zp, &ax);
    const CnnfxTensor *Q = in[q];
    if (!Q || !Q->data) return cnnfx_fail_shape(error, n, "input %d not available", q);
    if (s >= 0) {
      f[j] = dequant(x, n, Q, in[s], opt_in(n, in, zp), resolve_axis(n, ax, Q->ndim), error);
    } else {
      /* Integer op: subtract the zero point (per tensor, or per row / column / channel). */
      CnnfxTensor *one = cnnfx_tensor_alloc(x->mem, CNNFX_F32, 0, NULL, error);
      if (!one) return FALSE;
      cnnfx_f32(one)[0] = 1.f;
      const CnnfxTensor *Z = opt_in(n, in, zp);
      int64_t axis = resolve_axis(n, ax, Q->ndim);
      if (Z && Z->numel > 1) {
        /* per-axis zero point with unit scale */
        CnnfxTensor *ones = cnnfx_tensor_alloc(x->mem, CNNFX_F32, Z->ndim, Z->dims, error);
        if (!ones) {
          cnnfx_tensor_unref(one);
          return FALSE;
        }
        for (size_t i = 0; i < ones->numel; i++) cnnfx_f32(ones)[i] = 1.f;
        f[j] = dequant(x, n, Q, ones, Z, axis, error);
        cnnfx_tensor_unref(ones);
      } else {
        f[j] = dequant(x, n, Q, one, Z, axis, error);
      }
      cnnfx_tensor_unref(one);
    }
    if (!f[j]) return FALSE;
  }
  *with_bias = FALSE;
  if (sp->bias >= 0 && sp->bias < n->n_in && in[sp->bias]) {
    const CnnfxTensor *B = in[sp->bias], *sx = in[sp->in[0].s], *sw = in[sp->in[1].s];
    int64_t bax = sp->in[1].axis == GEMM_B_AXIS ? resolve_axis(n, GEMM_B_AXIS, f[1]->ndim) : 0;
    int64_t M = f[1]->ndim > bax ? f[1]->dims[bax] : 0;
    if (sp->in[1].axis == GEMM_B_AXIS && B->numel == 1) {
      /* a scalar C broadcasts */
      CnnfxTensor *b = cnnfx_tensor_alloc(x->mem, CNNFX_F32, 0, NULL, error);
      if (!b) return FALSE;
      cnnfx_f32(b)[0] = tval(B, 0) * tval(sx, 0) * tval(sw, 0);
      f[ni] = b;
      *with_bias = TRUE;
      return TRUE;
    }
    if (B->ndim != 1 || B->dims[0] != M) return cnnfx_fail_shape(error, n, "bias must have %" G_GINT64_FORMAT " values", M);
    if (sw->numel != 1 && (int64_t)sw->numel != M) return cnnfx_fail_shape(error, n, "weight scale does not fit");
    CnnfxTensor *b = cnnfx_tensor_alloc(x->mem, CNNFX_F32, 1, &M, error);
    if (!b) return FALSE;
    for (int64_t m = 0; m < M; m++)
      cnnfx_f32(b)[m] = tval(B, (size_t)m) * tval(sx, 0) * tval(sw, sw->numel == 1 ? 0 : (size_t)m);
    f[ni] = b;
    *with_bias = TRUE;
  }
  return TRUE;
}

static void unref_all(CnnfxTensor **t, int n)
{
  for (int i = 0; i < n; i++)
    if (t[i]) {
      cnnfx_tensor_unref(t[i]);
      t[i] = NULL;
    }
}

static gboolean qwrap_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor **out,
                              GError **error)
{
  const QSpec *sp = spec_of(n);
  int ni = n_inner_of(sp, n);
  CnnfxTensor *f[QMAX_INNER + 1] = {0};
  gboolean wb;
  if (!inner_inputs(x, n, sp, in, ni, f, &wb, error)) {
    unref_all(f, QMAX_INNER + 1);
    return FALSE;
  }
  InnerNode w;
  make_inner(n, sp, ni, wb, &w);
  CnnfxTensor *y[4] = {0};
  gboolean ok = inner_forward(x, &w.node, f, y, error);
  unref_all(f, QMAX_INNER + 1);
  if (!ok) return FALSE;
  if (quantised_out(sp, n)) {
    float lo, hi;
    const CnnfxTensor *zp = opt_in(n, in, sp->yzp);
    qrange(zp ? in_type(n, sp->yzp) : 0, &lo, &hi);
    if (in[sp->ys]->numel != 1 || (zp && zp->numel != 1)) {
      cnnfx_tensor_unref(y[0]);
      return cnnfx_fail_shape(error, n, "output scale and zero point must be scalars");
    }
    if (!requant(n, y[0], in[sp->ys], zp, 0, lo, hi, error)) {
      cnnfx_tensor_unref(y[0]);
      return FALSE;
    }
  }
  out[0] = y[0];
  return TRUE;
}

static gboolean qwrap_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor **gin, GError **error)
{
  (void)out;
  const QSpec *sp = spec_of(n);
  int ni = n_inner_of(sp, n);
  CnnfxTensor *f[QMAX_INNER + 1] = {0}, *g[QMAX_INNER + 1] = {0}, *y[4] = {0}, *gy[4] = {0};
  gboolean ineed[QMAX_INNER + 1] = {0};
  gboolean wb, ok = FALSE, any = FALSE;
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    inner_map(sp, j, &q, &s, &zp, &ax);
    ineed[j] = need[q];
    any |= ineed[j];
  }
  if (!any) return TRUE;
  if (!gout[0]) return TRUE;
  if (!inner_inputs(x, n, sp, in, ni, f, &wb, error)) goto out;
  InnerNode w;
  make_inner(n, sp, ni, wb, &w);
  guint32 sv = w.node.def ? (w.node.def->saves_fn ? w.node.def->saves_fn(&w.node, ineed) : w.node.def->saves)
               : w.node.op->saves_fn ? w.node.op->saves_fn(&w.node, ineed) : w.node.op->saves;
  if (sv & 0xffff0000u) { /* the float operator's backward reads its output: recompute it */
    if (!inner_forward(x, &w.node, f, y, error)) goto out;
  }
  if (quantised_out(sp, n)) {
    gy[0] = scale_grad(x, n, gout[0], gout[0], in[sp->ys], 0, TRUE, error);
    if (!gy[0]) goto out;
  } else {
    gy[0] = cnnfx_tensor_ref(gout[0]);
  }
  if (w.node.def ? !w.node.def->differentiable : !w.node.op->backward) {
    ok = cnnfx_fail_shape(error, n, "%s has no gradient", sp->inner);
    goto out;
  }
  if (!inner_backward(x, &w.node, f, y, gy, ineed, g, error)) goto out;
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    inner_map(sp, j, &q, &s, &zp, &ax);
    if (!need[q]) continue;
    if (s >= 0) {
      gin[q] = scale_grad(x, n, g[j], in[q], in[s], resolve_axis(n, ax, in[q]->ndim), FALSE, error);
    } else {
      gin[q] = g[j];
      g[j] = NULL;
    }
    if (!gin[q]) goto out;
  }
  ok = TRUE;
out:
  unref_all(f, QMAX_INNER + 1);
  unref_all(g, QMAX_INNER + 1);
  unref_all(y, 4);
  unref_all(gy, 4);
  return ok;
}

static guint32 qwrap_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  (void)need;
  return CNNFX_SAVE_ALL_IN;
}

#define QWRAP(var, nm, nd)                                                                                           \
  static const CnnfxOp var = {.name = nm, .check = qwrap_check, .forward = qwrap_forward, .backward = qwrap_backward, \
                              .saves = CNNFX_SAVE_ALL_IN, .nondiff_inputs = nd, .saves_fn = qwrap_saves}

QWRAP(op_qconv, "QLinearConv", 0x1f6u);
QWRAP(op_qmatmul, "QLinearMatMul", 0xf6u);
QWRAP(op_qadd, "QLinearAdd", 0xf6u);
QWRAP(op_qmul, "QLinearMul", 0xf6u);
QWRAP(op_qavgpool, "QLinearAveragePool", 0x1eu);
QWRAP(op_qgavgpool, "QLinearGlobalAveragePool", 0x1eu);
QWRAP(op_qleaky, "QLinearLeakyRelu", 0x1eu);
QWRAP(op_qsigmoid, "QLinearSigmoid", 0x1eu);
QWRAP(op_convint, "ConvInteger", 0xcu);
QWRAP(op_qgemm, "QGemm", 0x1f6u);
QWRAP(op_matmulint, "MatMulInteger", 0xcu);
/* QLinearConcat: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) triples: every
 * input except the X's is non-differentiable. */
QWRAP(op_qconcat, "QLinearConcat", 0xdb6db6dbu);

static const CnnfxOp op_quantize = {.name = "QuantizeLinear", .check = qdq_check, .forward = quantize_forward,
                                    .backward = quantize_backward, .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
                                    .nondiff_inputs = 0x6u};
static const CnnfxOp op_dequantize = {.name = "DequantizeLinear", .check = qdq_check, .forward = dequantize_forward,
                                      .backward = dequantize_backward, .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
                                      .nondiff_inputs = 0x6u};
static const CnnfxOp op_dynq = {.name = "DynamicQuantizeLinear", .forward = dynq_forward, .backward = dynq_backward,
                                .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_OUT(1)};

const CnnfxOp *const cnnfx_ops_quant[] = {
  &op_quantize, &op_dequantize, &op_dynq, &op_qconv, &op_qmatmul, &op_qadd, &op_qmul, &op_qavgpool,
  &op_qgavgpool, &op_qleaky, &op_qsigmoid, &op_convint, &op_matmulint, &op_qconcat, &op_qgemm, NULL,
};
