/* Operator definitions (activation family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/activation.c.
 *
 *   Relu LeakyRelu Elu Selu Sigmoid Tanh HardSigmoid HardSwish Softplus Softsign Mish
 *   ThresholdedRelu Exp Log Sqrt Neg Abs Reciprocal Erf Gelu Clip Softmax LogSoftmax
 *
 * (PRelu and Pow need broadcasting and live in the elementwise family.)
 *
 * Backward reads the output where the derivative can be written in terms of it (Relu, Sigmoid, Tanh,
 * Exp, ...) so that the saved tensor is usually the one the next layer keeps anyway; otherwise the
 * input. */
#include "ops/activation.h"

typedef struct {
  const char *name;
  CnnfxActReads reads;
  gboolean int64;  /* has an int64 forward */
} UnaryInfo;

/* LeakyRelu, Elu and Selu read the output unless their attributes make that ambiguous (see below). */
static const UnaryInfo unary_info[] = {
  {"Relu", CNNFX_ACT_READS_OUTPUT, TRUE},     {"LeakyRelu", CNNFX_ACT_READS_OUTPUT, FALSE},
  {"Elu", CNNFX_ACT_READS_OUTPUT, FALSE},     {"Selu", CNNFX_ACT_READS_OUTPUT, FALSE},
  {"Sigmoid", CNNFX_ACT_READS_OUTPUT, FALSE}, {"Tanh", CNNFX_ACT_READS_OUTPUT, FALSE},
  {"HardSigmoid", CNNFX_ACT_READS_OUTPUT, FALSE}, {"HardSwish", CNNFX_ACT_READS_INPUT, FALSE},
  {"Softplus", CNNFX_ACT_READS_INPUT, FALSE}, {"Softsign", CNNFX_ACT_READS_INPUT, FALSE},
  {"Mish", CNNFX_ACT_READS_INPUT, FALSE},     {"ThresholdedRelu", CNNFX_ACT_READS_INPUT, FALSE},
  {"Exp", CNNFX_ACT_READS_OUTPUT, FALSE},     {"Log", CNNFX_ACT_READS_INPUT, FALSE},
  {"Sqrt", CNNFX_ACT_READS_OUTPUT, FALSE},    {"Neg", CNNFX_ACT_READS_NOTHING, TRUE},
  {"Abs", CNNFX_ACT_READS_INPUT, TRUE},       {"Reciprocal", CNNFX_ACT_READS_OUTPUT, FALSE},
  {"Erf", CNNFX_ACT_READS_INPUT, FALSE},      {"Gelu", CNNFX_ACT_READS_INPUT, FALSE},
};

static const UnaryInfo *unary_find(const char *op_type)
{
  for (size_t i = 0; i < G_N_ELEMENTS(unary_info); i++)
    if (!strcmp(unary_info[i].name, op_type)) return &unary_info[i];
  return NULL;
}

CnnfxActReads cnnfx_activation_backward_reads(const CnnfxNode *n)
{
  const UnaryInfo *u = unary_find(n->op_type);
  if (!u) return CNNFX_ACT_READS_INPUT;
  if (!strcmp(n->op_type, "LeakyRelu"))
    return cnnfx_attr_float(n, "alpha", 0.01f) < 0.f ? CNNFX_ACT_READS_INPUT : CNNFX_ACT_READS_OUTPUT;
  if (!strcmp(n->op_type, "Elu"))
    return cnnfx_attr_float(n, "alpha", 1.0f) < 0.f ? CNNFX_ACT_READS_INPUT : CNNFX_ACT_READS_OUTPUT;
  if (!strcmp(n->op_type, "Selu")) {
    float alpha = cnnfx_attr_float(n, "alpha", 1.67326319217681884765625f);
    float gamma = cnnfx_attr_float(n, "gamma", 1.05070102214813232421875f);
    return alpha < 0.f || gamma <= 0.f ? CNNFX_ACT_READS_INPUT : CNNFX_ACT_READS_OUTPUT;
  }
  return u->reads;
}

static guint32 unary_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)need;
  switch (cnnfx_activation_backward_reads(n)) {
  case CNNFX_ACT_READS_NOTHING: return 0;
  case CNNFX_ACT_READS_INPUT: return CNNFX_SAVE_IN(0);
  case CNNFX_ACT_READS_OUTPUT:
  default: return CNNFX_SAVE_OUT(0);
  }
}

static gboolean unary_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (n->n_in < 1 || !in[0]) return cnnfx_fail_shape(error, n, "input is missing");
  const UnaryInfo *u = unary_find(n->op_type);
  if (in[0]->dtype == CNNFX_I64 && !(u && u->int64)) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': int64 tensors are not supported", n->op_type,
                    n->name);
    return FALSE;
  }
  return cnnfx_infer_same(n, in, out, error);
}

/* Gelu (opset 20): x * Phi(x), approximate "none" (erf) or "tanh". */
static gboolean gelu_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (n->opset < 20) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Gelu '%s': the operator exists from opset 20 on (file: %d)",
                    n->name, n->opset);
    return FALSE;
  }
  const char *ap = cnnfx_attr_string(n, "approximate", "none");
  if (strcmp(ap, "none") && strcmp(ap, "tanh")) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Gelu '%s': approximate='%s' (known: none, tanh)", n->name, ap);
    return FALSE;
  }
  return unary_infer(n, in, out, error);
}

static gboolean clip_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (n->n_in < 1 || !in[0]) return cnnfx_fail_shape(error, n, "input is missing");
  return cnnfx_infer_same(n, in, out, error);
}

gboolean cnnfx_softmax_view(const CnnfxNode *n, const CnnfxTensor *t, size_t *O, size_t *D, size_t *S,
                            GError **error)
{
  gboolean old = n->opset < 13;
  int64_t axis = cnnfx_attr_int(n, "axis", old ? 1 : -1);
  int ax;
  if (!cnnfx_norm_axis(axis, t->ndim, &ax))
    return cnnfx_fail_shape(error, n, "axis %" G_GINT64_FORMAT " is out of range for rank %d", axis, t->ndim);
  size_t o = 1, d = 1, s = 1;
  for (int i = 0; i < t->ndim; i++) {
    size_t v = (size_t)t->dims[i];
    if (i < ax) o *= v;
    else if (i == ax || old) d *= v;
    else s *= v;
  }
  *O = o;
  *D = d;
  *S = s;
  return TRUE;
}

static gboolean softmax_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  if (n->n_in < 1 || !in[0]) return cnnfx_fail_shape(error, n, "input is missing");
  if (in[0]->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': only float tensors are supported", n->op_type,
                    n->name);
    return FALSE;
  }
  size_t O, D, S;
  if (!cnnfx_softmax_view(n, in[0], &O, &D, &S, error)) return FALSE;
  return cnnfx_infer_same(n, in, out, error);
}

#define UNARY_DEF(ID, NAME)                                                                                  \
  static const CnnfxOpDef def_##ID = {.name = NAME, .infer = unary_infer, .differentiable = TRUE,            \
                                      .saves = CNNFX_SAVE_IN(0) | CNNFX_SAVE_OUT(0), .saves_fn = unary_saves};

UNARY_DEF(relu, "Relu")
UNARY_DEF(leaky, "LeakyRelu")
UNARY_DEF(elu, "Elu")
UNARY_DEF(selu, "Selu")
UNARY_DEF(sigmoid, "Sigmoid")
UNARY_DEF(tanh, "Tanh")
UNARY_DEF(hsig, "HardSigmoid")
UNARY_DEF(hswish, "HardSwish")
UNARY_DEF(softplus, "Softplus")
UNARY_DEF(softsign, "Softsign")
UNARY_DEF(mish, "Mish")
UNARY_DEF(thr, "ThresholdedRelu")
UNARY_DEF(exp, "Exp")
UNARY_DEF(log, "Log")
UNARY_DEF(sqrt, "Sqrt")
UNARY_DEF(neg, "Neg")
UNARY_DEF(abs, "Abs")
UNARY_DEF(recip, "Reciprocal")
UNARY_DEF(erf, "Erf")
static const CnnfxOpDef def_gelu = {.name = "Gelu", .infer = gelu_infer, .differentiable = TRUE,
                                    .saves = CNNFX_SAVE_IN(0), .saves_fn = unary_saves};

static const CnnfxOpDef def_clip = {.name = "Clip", .infer = clip_infer, .differentiable = TRUE,
                                    .saves = CNNFX_SAVE_OUT(0) | CNNFX_SAVE_IN(1) | CNNFX_SAVE_IN(2),
                                    .nondiff_inputs = (1u << 1) | (1u << 2)};
static const CnnfxOpDef def_softmax = {.name = "Softmax", .infer = softmax_infer, .differentiable = TRUE,
                                       .saves = CNNFX_SAVE_OUT(0)};
static const CnnfxOpDef def_logsoftmax = {.name = "LogSoftmax", .infer = softmax_infer, .differentiable = TRUE,
                                          .saves = CNNFX_SAVE_OUT(0)};

const CnnfxOpDef *const cnnfx_opdefs_activation[] = {
  &def_relu, &def_leaky, &def_elu, &def_selu, &def_sigmoid, &def_tanh, &def_hsig, &def_hswish, &def_softplus,
  &def_softsign, &def_mish, &def_thr, &def_exp, &def_log, &def_sqrt, &def_neg, &def_abs, &def_recip, &def_erf,
  &def_gelu, &def_clip, &def_softmax, &def_logsoftmax, NULL,
};
