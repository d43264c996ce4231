/* Operator definitions (conv family): Conv and ConvTranspose.  Attribute checks, shape inference,
 * what backward keeps.  Backend-neutral; the geometry is declared in core/ops/conv.h, the CPU
 * kernels are in core/cpu/conv.c. */
#include "ops/conv.h"
#include <limits.h>

/* ---- attributes and shapes ---------------------------------------------------- */

typedef enum { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } AutoPad;

static gboolean parse_auto_pad(const CnnfxNode *n, AutoPad *ap, GError **error)
{
  const char *s = cnnfx_attr_string(n, "auto_pad", "NOTSET");
  if (!strcmp(s, "NOTSET") || !*s) *ap = PAD_NOTSET;
  else if (!strcmp(s, "SAME_UPPER")) *ap = PAD_SAME_UPPER;
  else if (!strcmp(s, "SAME_LOWER")) *ap = PAD_SAME_LOWER;
  else if (!strcmp(s, "VALID")) *ap = PAD_VALID;
  else {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "unknown auto_pad '%s'", s);
    return FALSE;
  }
  return TRUE;
}

/* INTS attribute with cnt values (or alt_cnt, of which the last cnt are used). */
static gboolean get_ints(const CnnfxNode *n, const char *name, int cnt, int alt_cnt, int64_t def, int64_t minval,
                         int64_t *vals, gboolean *present, GError **error)
{
  const int64_t *v;
  int c = cnnfx_attr_ints(n, name, &v);
  for (int i = 0; i < cnt; i++) vals[i] = def;
  if (present) *present = c >= 0;
  if (c < 0) {
    if (cnnfx_attr(n, name)) return cnnfx_fail_shape(error, n, "attribute %s must be a list of ints", name);
    return TRUE;
  }
  if (c != cnt && c != alt_cnt) return cnnfx_fail_shape(error, n, "attribute %s has %d values, expected %d", name, c, cnt);
  const int64_t *src = v + (c - cnt);
  for (int i = 0; i < cnt; i++) {
    if (src[i] < minval || src[i] > ((int64_t)1 << 24))
      return cnnfx_fail_shape(error, n, "attribute %s has an invalid value %" G_GINT64_FORMAT, name, src[i]);
    vals[i] = src[i];
  }
  return TRUE;
}

static gboolean conv_check(const CnnfxNode *n, GError **error)
{
  AutoPad ap;
  if (!parse_auto_pad(n, &ap, error)) return FALSE;
  if (cnnfx_attr_int(n, "group", 1) < 1) return cnnfx_fail_shape(error, n, "group must be >= 1");
  static const char *const names[] = { "strides", "dilations", "kernel_shape" };
  for (size_t a = 0; a < G_N_ELEMENTS(names); a++) {
    const int64_t *v;
    int c = cnnfx_attr_ints(n, names[a], &v);
    for (int i = 0; i < c; i++)
      if (v[i] < 1) return cnnfx_fail_shape(error, n, "attribute %s must be positive", names[a]);
  }
  const int64_t *v;
  int c = cnnfx_attr_ints(n, "pads", &v);
  for (int i = 0; i < c; i++)
    if (v[i] < 0) return cnnfx_fail_shape(error, n, "negative pads are not supported");
  return TRUE;
}

/* Fill the geometry from X, W (and B) and the node's attributes; ydims gets the forward
 * output shape.  transpose: ConvTranspose. */
gboolean cnnfx_conv_geometry(const CnnfxNode *n, const CnnfxTensor *X, const CnnfxTensor *W, const CnnfxTensor *B,
                             gboolean transpose, CnnfxConvGeo *g, int64_t *ydims, GError **error)
{
  if (X->dtype != CNNFX_F32 || W->dtype != CNNFX_F32 || (B && B->dtype != CNNFX_F32)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s supports float32 tensors only", n->op_type);
    return FALSE;
  }
  if (X->ndim < 3 || X->ndim > 5) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "only 1-D, 2-D and 3-D convolutions are supported "
                    "(input rank %d)", X->ndim);
    return FALSE;
  }
  if (W->ndim != X->ndim)
    return cnnfx_fail_shape(error, n, "weight rank %d does not match input rank %d", W->ndim, X->ndim);
  const int nsp = X->ndim - 2;
  int64_t G = cnnfx_attr_int(n, "group", 1);
  if (G < 1) return cnnfx_fail_shape(error, n, "group must be >= 1");
  AutoPad ap;
  if (!parse_auto_pad(n, &ap, error)) return FALSE;
  const int64_t Nb = X->dims[0], C = X->dims[1];
  int64_t M;
  memset(g, 0, sizeof *g);
  if (C % G) return cnnfx_fail_shape(error, n, "%" G_GINT64_FORMAT " input channels are not divisible by group %"
                                     G_GINT64_FORMAT, C, G);
  if (!transpose) {
    M = W->dims[0];
    if (W->dims[1] != C / G || M % G || M < 1)
      return cnnfx_fail_shape(error, n, "weight shape [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", ...] does not "
                              "fit %" G_GINT64_FORMAT " input channels in %" G_GINT64_FORMAT " groups",
                              W->dims[0], W->dims[1], C, G);
    g->Ci = C / G;
    g->Co = M / G;
  } else {
    if (W->dims[0] != C || W->dims[1] < 1)
      return cnnfx_fail_shape(error, n, "weight shape [%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ", ...] does not "
                              "fit %" G_GINT64_FORMAT " input channels", W->dims[0], W->dims[1], C);
    M = W->dims[1] * G;
    g->Ci = W->dims[1];
    g->Co = C / G;
  }
  if (B && (B->numel != (size_t)M || B->ndim != 1))
    return cnnfx_fail_shape(error, n, "bias must have %" G_GINT64_FORMAT " values", M);
  g->N = Nb;
  g->G = G;
  g->nsp = nsp;

  int64_t ks[3], st[3], dl[3], pads[6], opad[3], oshape[3];
  gboolean have_ks, have_pads, have_oshape;
  if (!get_ints(n, "kernel_shape", nsp, nsp, 1, 1, ks, &have_ks, error) ||
      !get_ints(n, "strides", nsp, nsp, 1, 1, st, NULL, error) ||
      !get_ints(n, "dilations", nsp, nsp, 1, 1, dl, NULL, error) ||
      !get_ints(n, "pads", 2 * nsp, 2 * nsp, 0, 0, pads, &have_pads, error))
    return FALSE;
  for (int i = 0; i < nsp; i++) {
    if (have_ks && ks[i] != W->dims[2 + i])
      return cnnfx_fail_shape(error, n, "kernel_shape does not match the weight's shape");
    ks[i] = W->dims[2 + i];
    if (ks[i] < 1) return cnnfx_fail_shape(error, n, "empty kernel");
  }
  if (transpose) {
    if (!get_ints(n, "output_padding", nsp, nsp, 0, 0, opad, NULL, error) ||
        !get_ints(n, "output_shape", nsp, nsp + 2, 0, 1, oshape, &have_oshape, error))
      return FALSE;
  }

  ydims[0] = Nb;
  ydims[1] = M;
  for (int j = 0; j < 3; j++) g->is[j] = g->os[j] = g->k[j] = g->s[j] = g->d[j] = 1;
  for (int i = 0; i < nsp; i++) {
    const int j = 3 - nsp + i;
    const int64_t in = X->dims[2 + i], k = ks[i], s = st[i], d = dl[i];
    const int64_t dk = (k - 1) * d + 1;
    int64_t pb = pads[i], pe = pads[nsp + i], out;
    if (in < 1) return cnnfx_fail_shape(error, n, "empty input");
    if (!transpose) {
      if (ap == PAD_VALID) {
        pb = pe = 0;
      } else if (ap == PAD_SAME_UPPER || ap == PAD_SAME_LOWER) {
        out = (in + s - 1) / s;
        int64_t total = MAX(0, (out - 1) * s + dk - in);
        pb = ap == PAD_SAME_UPPER ? total / 2 : total - total / 2;
        pe = total - pb;
      }
      if (in + pb + pe < dk)
        return cnnfx_fail_shape(error, n, "kernel (extent %" G_GINT64_FORMAT ") is larger than the padded input (%"
                                G_GINT64_FORMAT ")", dk, in + pb + pe);
      out = (in + pb + pe - dk) / s + 1;
      g->is[j] = in;
      g->os[j] = out;
    } else {
      const int64_t full = s * (in - 1) + opad[i] + dk;
      if (have_oshape || ap == PAD_SAME_UPPER || ap == PAD_SAME_LOWER) {
        out = have_oshape ? oshape[i] : in * s;
        /* Like onnxruntime: negative total padding means extra (zero) outputs at the end. */
        int64_t total = MAX(0, full - out);
        pb = ap == PAD_SAME_LOWER ? total - total / 2 : total / 2;
      } else {
        if (ap == PAD_VALID) pb = pe = 0;
        out = full - pb - pe;
      }
      if (out < 1) return cnnfx_fail_shape(error, n, "output size %" G_GINT64_FORMAT " is not positive", out);
      g->is[j] = out;
      g->os[j] = in;
    }
    g->k[j] = k;
    g->s[j] = s;
    g->d[j] = d;
    g->p[j] = pb;
    ydims[2 + i] = out;
  }
  g->isz = g->is[0] * g->is[1] * g->is[2];
  g->osz = g->os[0] * g->os[1] * g->os[2];
  g->kk = g->k[0] * g->k[1] * g->k[2];
  if (g->isz > INT_MAX || g->osz > INT_MAX || g->Ci * g->kk > INT_MAX || g->Co > INT_MAX || g->Ci > INT_MAX ||
      g->Co * g->kk * g->Ci > INT_MAX) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "layer is too large (a plane or the weight of a group has "
                    "more than 2^31 elements)");
    return FALSE;
  }
  return TRUE;
}

/* ---- definitions -------------------------------------------------------------------- */

static gboolean conv_any_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, gboolean transpose,
                               GError **error)
{
  if (n->n_in < 2 || !in[0] || !in[1]) return cnnfx_fail_shape(error, n, "needs inputs X and W");
  CnnfxConvGeo g;
  int64_t ydims[CNNFX_MAX_DIMS];
  if (!cnnfx_conv_geometry(n, in[0], in[1], n->n_in > 2 ? in[2] : NULL, transpose, &g, ydims, error)) return FALSE;
  cnnfx_meta_set(out[0], CNNFX_F32, in[0]->ndim, ydims);
  return TRUE;
}

static gboolean conv_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  return conv_any_infer(n, in, out, FALSE, error);
}

static gboolean convt_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  return conv_any_infer(n, in, out, TRUE, error);
}

/* Backward reads X only for dW and W only for dX (shapes are always kept): for gradients to
 * the image alone, no convolution input is kept alive. */
static guint32 conv_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  return (need[1] ? CNNFX_SAVE_IN(0) : 0) | (need[0] ? CNNFX_SAVE_IN(1) : 0);
}

static const CnnfxOpDef def_conv = {
  .name = "Conv",
  .check = conv_check,
  .infer = conv_infer,
  .differentiable = TRUE,
  .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
  .saves_fn = conv_saves,
};

static const CnnfxOpDef def_convtranspose = {
  .name = "ConvTranspose",
  .check = conv_check,
  .infer = convt_infer,
  .differentiable = TRUE,
  .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_IN(1),
  .saves_fn = conv_saves,
};

const CnnfxOpDef *const cnnfx_opdefs_conv[] = {&def_conv, &def_convtranspose, NULL};
