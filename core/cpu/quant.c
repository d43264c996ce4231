/* CPU kernels (quant family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/quant.c, the representation in core/ops/quant.h.
 *
 * The QLinear* / *Integer wrappers dequantise their inputs, run the CPU kernel of the float
 * operator (Conv, MatMul, ...; the common build of it, as before the split) and requantise.
 * Gradients are straight-through (rounding and clamping count as identity). */
#include "ops/quant.h"
#include <math.h>

#define tval cnnfx_quant_tval
#define chan_of cnnfx_quant_chan_of
#define opt_in cnnfx_quant_opt_in

/* ---- helpers ------------------------------------------------------------------------------- */

/* y = (q - zp) * s into y (shaped like q). */
static gboolean dequant_into(const CnnfxNode *n, const CnnfxTensor *q, const CnnfxTensor *s, const CnnfxTensor *zp,
                             int64_t axis, CnnfxTensor *y, GError **error)
{
  size_t ch, inner;
  if (!q || !q->data) return cnnfx_fail_shape(error, n, "missing quantised input");
  if (!cnnfx_quant_axis_layout(n, q, s, zp, axis, &ch, &inner, error)) return FALSE;
  float *yd = cnnfx_f32(y);
  for (size_t i = 0; i < q->numel; i++) {
    size_t c = chan_of(i, ch, inner);
    float z = zp ? tval(zp, zp->numel == 1 ? 0 : c) : 0.f;
    yd[i] = (tval(q, i) - z) * tval(s, c);
  }
  return TRUE;
}

/* A new float tensor (q - zp) * s. */
static CnnfxTensor *dequant(const CnnfxExec *x, const CnnfxNode *n, const CnnfxTensor *q, const CnnfxTensor *s,
                            const CnnfxTensor *zp, int64_t axis, GError **error)
{
  if (!q || !q->data) return cnnfx_fail_shape(error, n, "missing quantised input"), NULL;
  CnnfxTensor *y = cnnfx_tensor_alloc(x->mem, CNNFX_F32, q->ndim, q->dims, error);
  if (!y) return NULL;
  if (!dequant_into(n, q, s, zp, axis, y, error)) {
    cnnfx_tensor_unref(y);
    return NULL;
  }
  return y;
}

/* In place: v = clamp(rint(v / s) + zp, lo, hi) */
static gboolean requant(const CnnfxNode *n, CnnfxTensor *v, const CnnfxTensor *s, const CnnfxTensor *zp, int64_t axis,
                        float lo, float hi, GError **error)
{
  size_t ch, inner;
  if (!cnnfx_quant_axis_layout(n, v, s, zp, axis, &ch, &inner, error)) return FALSE;
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

/* g (float gradient of the dequantised value) -> gradient of q into r (shaped like `like`): times s
 * (or divided by s), per axis.  g NULL: zeros. */
static gboolean scale_grad_into(const CnnfxNode *n, const CnnfxTensor *g, const CnnfxTensor *like,
                                const CnnfxTensor *s, int64_t axis, gboolean divide, CnnfxTensor *r, GError **error)
{
  size_t ch, inner;
  if (!cnnfx_quant_axis_layout(n, like, s, NULL, axis, &ch, &inner, error)) return FALSE;
  float *rd = cnnfx_f32(r);
  for (size_t i = 0; i < r->numel; i++) {
    float sc = tval(s, chan_of(i, ch, inner));
    float gv = g ? cnnfx_f32(g)[i] : 0.f;
    rd[i] = divide ? (sc != 0.f ? gv / sc : 0.f) : gv * sc;
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

/* The CPU kernel of a split float operator (the common build, as the legacy wrappers used). */
#define QUANT_KERNEL_TABLE(f) cnnfx_cpu_kernels_##f,
static const CnnfxKernel *float_kernel(const char *op_type)
{
  static const CnnfxKernel *const *const tables[] = {CNNFX_OP_FAMILIES(QUANT_KERNEL_TABLE)};
  for (size_t i = 0; i < G_N_ELEMENTS(tables); i++)
    for (const CnnfxKernel *const *k = tables[i]; *k; k++)
      if (!strcmp((*k)->name, op_type)) return *k;
  return NULL;
}

/* ---- QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear ------------------------------ */

static gboolean quantize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  const CnnfxTensor *X = in[0], *s = opt_in(n, in, 1), *zp = opt_in(n, in, 2);
  if (!X || !X->data) return cnnfx_fail_shape(error, n, "missing input");
  float lo, hi;
  int t = zp ? cnnfx_quant_in_type(n, 2) : 0;
  if (!t) t = (int)cnnfx_attr_int(n, "output_dtype", 0);
  cnnfx_quant_range(t, &lo, &hi);
  CnnfxTensor *y = out[0];
  for (size_t i = 0; i < X->numel; i++) cnnfx_f32(y)[i] = tval(X, i);
  return requant(n, y, s, zp, cnnfx_quant_qdq_axis(n), lo, hi, error);
}

static gboolean quantize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                  CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                  CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (need[0] && !scale_grad_into(n, gout[0], in[0], in[1], cnnfx_quant_qdq_axis(n), TRUE, gin[0], error))
    return FALSE;
  return TRUE;
}

static gboolean dequantize_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  return dequant_into(n, in[0], opt_in(n, in, 1), opt_in(n, in, 2), cnnfx_quant_qdq_axis(n), out[0], error);
}

static gboolean dequantize_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                    CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)out;
  (void)aux;
  if (need[0] && !scale_grad_into(n, gout[0], in[0], in[1], cnnfx_quant_qdq_axis(n), FALSE, gin[0], error))
    return FALSE;
  return TRUE;
}

/* y, y_scale, y_zero_point (uint8), as the ONNX reference. */
static gboolean dynq_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             void *aux, GError **error)
{
  (void)x;
  (void)aux;
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
  CnnfxTensor s = {.dtype = CNNFX_F32, .ndim = 0, .numel = 1, .data = &scale};
  CnnfxTensor z = {.dtype = CNNFX_F32, .ndim = 0, .numel = 1, .data = &zpv};
  CnnfxTensor *y = out[0];
  for (size_t i = 0; i < X->numel; i++) cnnfx_f32(y)[i] = tval(X, i);
  if (!requant(n, y, &s, &z, 1, 0.f, 255.f, error)) return FALSE;
  if (n->n_out > 1) cnnfx_f32(out[1])[0] = scale;
  if (n->n_out > 2) cnnfx_f32(out[2])[0] = zpv;
  return TRUE;
}

static gboolean dynq_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)x;
  (void)aux;
  if (!need[0]) return TRUE;
  if (n->n_out < 2 || !out[1] || !out[1]->data) return cnnfx_fail_shape(error, n, "scale output not kept");
  return scale_grad_into(n, gout[0], in[0], out[1], 1, TRUE, gin[0], error);
}

/* ---- operators wrapped around their float counterparts ------------------------------------- */

/* Dequantised inner inputs (plus bias).  f[] gets new references. */
static gboolean inner_inputs(const CnnfxExec *x, const CnnfxNode *n, const CnnfxQSpec *sp, CnnfxTensor *const *in,
                             int ni, CnnfxTensor **f, gboolean *with_bias, GError **error)
{
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    cnnfx_quant_inner_map(sp, j, &q, &s, &zp, &ax);
    const CnnfxTensor *Q = in[q];
    if (!Q || !Q->data) return cnnfx_fail_shape(error, n, "input %d not available", q);
    if (s >= 0) {
      f[j] = dequant(x, n, Q, in[s], opt_in(n, in, zp), cnnfx_quant_resolve_axis(n, ax, Q->ndim), error);
    } else {
      /* Integer op: subtract the zero point (per tensor, or per row / column / channel). */
      float one_v = 1.f;
      CnnfxTensor one = {.dtype = CNNFX_F32, .ndim = 0, .numel = 1, .data = &one_v};
      const CnnfxTensor *Z = opt_in(n, in, zp);
      int64_t axis = cnnfx_quant_resolve_axis(n, ax, Q->ndim);
      if (Z && Z->numel > 1) {
        /* per-axis zero point with unit scale */
        CnnfxTensor *ones = cnnfx_tensor_alloc(x->mem, CNNFX_F32, Z->ndim, Z->dims, error);
        if (!ones) return FALSE;
        for (size_t i = 0; i < ones->numel; i++) cnnfx_f32(ones)[i] = 1.f;
        f[j] = dequant(x, n, Q, ones, Z, axis, error);
        cnnfx_tensor_unref(ones);
      } else {
        f[j] = dequant(x, n, Q, &one, Z, axis, error);
      }
    }
    if (!f[j]) return FALSE;
  }
  *with_bias = FALSE;
  if (cnnfx_quant_has_bias(sp, n) && in[sp->bias]) {
    const CnnfxTensor *B = in[sp->bias], *sx = in[sp->in[0].s], *sw = in[sp->in[1].s];
    CnnfxTensor meta;
    if (!cnnfx_quant_bias_meta(n, sp, in, f[1], &meta, error)) return FALSE;
    CnnfxTensor *b = cnnfx_tensor_alloc(x->mem, CNNFX_F32, meta.ndim, meta.dims, error);
    if (!b) return FALSE;
    if (meta.ndim == 0) {
      cnnfx_f32(b)[0] = tval(B, 0) * tval(sx, 0) * tval(sw, 0);
    } else {
      for (int64_t m = 0; m < meta.dims[0]; m++)
        cnnfx_f32(b)[m] = tval(B, (size_t)m) * tval(sx, 0) * tval(sw, sw->numel == 1 ? 0 : (size_t)m);
    }
    f[ni] = b;
    *with_bias = TRUE;
  }
  return TRUE;
}

/* Outputs of the float operator (split: inferred and allocated here) run forward on f; aux (split
 * operators with private state) is allocated when `want_aux`.  y[0] may be given (written in place). */
static gboolean inner_forward(const CnnfxExec *x, const CnnfxQInner *w, CnnfxTensor **f, CnnfxTensor **y,
                              gboolean want_aux, void **aux, size_t *aux_n, GError **error)
{
  const CnnfxNode *in = &w->node;
  const CnnfxKernel *k = float_kernel(in->op_type);
  if (!k) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "no CPU kernel for %s", in->op_type);
    return FALSE;
  }
  if (!y[0]) {
    CnnfxTensor meta = {0};
    CnnfxTensor *mp = &meta;
    if (!in->def->infer(in, f, &mp, error)) return FALSE;
    if (!(y[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, meta.ndim, meta.dims, error))) return FALSE;
  }
  *aux = NULL;
  *aux_n = 0;
  if (want_aux && in->def->aux_bytes) {
    size_t bytes = in->def->aux_bytes(in, f, y);
    if (bytes) {
      if (!(*aux = cnnfx_mem_alloc(x->mem, bytes, error))) return FALSE;
      *aux_n = bytes;
    }
  }
  return k->forward(x, in, f, y, *aux, error);
}

static gboolean qwrap_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                              void *aux, GError **error)
{
  (void)aux;
  const CnnfxQSpec *sp = cnnfx_quant_spec(n);
  int ni = cnnfx_quant_n_inner(sp, n);
  CnnfxTensor *f[CNNFX_QMAX_INNER + 1] = {0};
  gboolean wb;
  if (!inner_inputs(x, n, sp, in, ni, f, &wb, error)) {
    unref_all(f, CNNFX_QMAX_INNER + 1);
    return FALSE;
  }
  CnnfxQInner w;
  cnnfx_quant_make_inner(n, sp, ni, wb, &w);
  CnnfxTensor *y[4] = {0};
  void *iaux = NULL;
  size_t iaux_n = 0;
  if (w.node.def) y[0] = cnnfx_tensor_ref(out[0]); /* the split kernel writes the output in place */
  gboolean ok = inner_forward(x, &w, f, y, FALSE, &iaux, &iaux_n, error);
  unref_all(f, CNNFX_QMAX_INNER + 1);
  if (ok && y[0] != out[0]) {
    if (y[0]->numel != out[0]->numel) ok = cnnfx_fail_shape(error, n, "output has %zu values, expected %zu",
                                                            y[0]->numel, out[0]->numel);
    else memcpy(out[0]->data, y[0]->data, out[0]->numel * sizeof(float));
  }
  unref_all(y, 4);
  if (!ok) return FALSE;
  if (cnnfx_quant_quantised_out(sp, n)) {
    float lo, hi;
    const CnnfxTensor *zp = opt_in(n, in, sp->yzp);
    cnnfx_quant_range(zp ? cnnfx_quant_in_type(n, sp->yzp) : 0, &lo, &hi);
    if (in[sp->ys]->numel != 1 || (zp && zp->numel != 1))
      return cnnfx_fail_shape(error, n, "output scale and zero point must be scalars");
    if (!requant(n, out[0], in[sp->ys], zp, 0, lo, hi, error)) return FALSE;
  }
  return TRUE;
}

static gboolean qwrap_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)out;
  (void)aux;
  const CnnfxQSpec *sp = cnnfx_quant_spec(n);
  int ni = cnnfx_quant_n_inner(sp, n);
  CnnfxTensor *f[CNNFX_QMAX_INNER + 1] = {0}, *g[CNNFX_QMAX_INNER + 1] = {0}, *y[4] = {0}, *gy[4] = {0};
  gboolean ineed[CNNFX_QMAX_INNER + 1] = {0};
  gboolean wb, ok = FALSE, any = FALSE;
  CnnfxTensor ymeta = {0}, *yk[4] = {0}; /* what the float operator's backward gets as its outputs */
  void *iaux = NULL;
  size_t iaux_n = 0;
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    cnnfx_quant_inner_map(sp, j, &q, &s, &zp, &ax);
    ineed[j] = need[q];
    any |= ineed[j];
  }
  if (!any || !gout[0]) return TRUE;
  if (!inner_inputs(x, n, sp, in, ni, f, &wb, error)) goto out;
  CnnfxQInner w;
  cnnfx_quant_make_inner(n, sp, ni, wb, &w);
  const CnnfxNode *wn = &w.node;
  guint32 sv = wn->def->saves_fn ? wn->def->saves_fn(wn, ineed) : wn->def->saves;
  gboolean diff = wn->def->differentiable;
  if (!diff) {
    ok = cnnfx_fail_shape(error, n, "%s has no gradient", sp->inner);
    goto out;
  }
  /* The float operator's backward reads its output or its private state: recompute them. */
  if ((sv & 0xffff0000u) || wn->def->aux_bytes) {
    if (!inner_forward(x, &w, f, y, TRUE, &iaux, &iaux_n, error)) goto out;
  } else {
    /* the output's header only (its data is not read) */
    CnnfxTensor *mp = &ymeta;
    if (!wn->def->infer(wn, f, &mp, error)) goto out;
    if (!cnnfx_dims_numel(ymeta.ndim, ymeta.dims, &ymeta.numel)) {
      ok = cnnfx_fail_shape(error, n, "output too large");
      goto out;
    }
    yk[0] = &ymeta;
  }
  if (y[0]) yk[0] = y[0];
  if (cnnfx_quant_quantised_out(sp, n)) {
    gy[0] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, gout[0]->ndim, gout[0]->dims, error);
    if (!gy[0] || !scale_grad_into(n, gout[0], gout[0], in[sp->ys], 0, TRUE, gy[0], error)) goto out;
  } else {
    gy[0] = cnnfx_tensor_ref(gout[0]);
  }
  {
    for (int j = 0; j < wn->n_in; j++) {
      if (!ineed[j]) continue;
      if (!(g[j] = cnnfx_tensor_alloc(x->mem, CNNFX_F32, f[j]->ndim, f[j]->dims, error))) goto out;
      memset(g[j]->data, 0, g[j]->numel * sizeof(float));
    }
    const CnnfxKernel *k = float_kernel(wn->op_type);
    if (!k || !k->backward) {
      ok = cnnfx_fail_shape(error, n, "%s has no gradient", sp->inner);
      goto out;
    }
    if (!k->backward(x, wn, f, yk, gy, ineed, g, iaux, error)) goto out;
  }
  for (int j = 0; j < ni; j++) {
    int q, s, zp, ax;
    cnnfx_quant_inner_map(sp, j, &q, &s, &zp, &ax);
    if (!need[q] || !g[j]) continue;
    if (s >= 0) {
      if (!scale_grad_into(n, g[j], in[q], in[s], cnnfx_quant_resolve_axis(n, ax, in[q]->ndim), FALSE, gin[q], error))
        goto out;
    } else {
      if (g[j]->numel != gin[q]->numel) {
        ok = cnnfx_fail_shape(error, n, "gradient of input %d has the wrong size", q);
        goto out;
      }
      memcpy(gin[q]->data, g[j]->data, gin[q]->numel * sizeof(float));
    }
  }
  ok = TRUE;
out:
  if (iaux) cnnfx_mem_free(x->mem, iaux, iaux_n);
  unref_all(f, CNNFX_QMAX_INNER + 1);
  unref_all(g, CNNFX_QMAX_INNER + 1);
  unref_all(y, 4);
  unref_all(gy, 4);
  return ok;
}

#define QWRAP(var, nm) static const CnnfxKernel var = {.name = nm, .forward = qwrap_forward, .backward = qwrap_backward}

QWRAP(k_qconv, "QLinearConv");
QWRAP(k_qmatmul, "QLinearMatMul");
QWRAP(k_qadd, "QLinearAdd");
QWRAP(k_qmul, "QLinearMul");
QWRAP(k_qavgpool, "QLinearAveragePool");
QWRAP(k_qgavgpool, "QLinearGlobalAveragePool");
QWRAP(k_qleaky, "QLinearLeakyRelu");
QWRAP(k_qsigmoid, "QLinearSigmoid");
QWRAP(k_convint, "ConvInteger");
QWRAP(k_qgemm, "QGemm");
QWRAP(k_matmulint, "MatMulInteger");
QWRAP(k_qconcat, "QLinearConcat");

static const CnnfxKernel k_quantize = {.name = "QuantizeLinear", .forward = quantize_forward,
                                       .backward = quantize_backward};
static const CnnfxKernel k_dequantize = {.name = "DequantizeLinear", .forward = dequantize_forward,
                                         .backward = dequantize_backward};
static const CnnfxKernel k_dynq = {.name = "DynamicQuantizeLinear", .forward = dynq_forward, .backward = dynq_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_quant[] = {
  &k_quantize, &k_dequantize, &k_dynq, &k_qconv, &k_qmatmul, &k_qadd, &k_qmul, &k_qavgpool,
  &k_qgavgpool, &k_qleaky, &k_qsigmoid, &k_convint, &k_matmulint, &k_qconcat, &k_qgemm, NULL,
};
