/* Operator registry and attribute helpers. */
#include "cnnfx-private.h"
#include <stdarg.h>

static const CnnfxOp *const *const op_tables[] = {
  cnnfx_ops_elementwise, cnnfx_ops_shape, cnnfx_ops_linalg,
  cnnfx_ops_conv, cnnfx_ops_pool, cnnfx_ops_norm, cnnfx_ops_quant,
};

#define CNNFX_OPDEF_TABLE(f) cnnfx_opdefs_##f,
static const CnnfxOpDef *const *const opdef_tables[] = {CNNFX_OP_FAMILIES(CNNFX_OPDEF_TABLE)};

const CnnfxOpDef *cnnfx_opdef_lookup(const char *op_type)
{
  for (size_t t = 0; t < G_N_ELEMENTS(opdef_tables); t++)
    for (const CnnfxOpDef *const *op = opdef_tables[t]; *op; op++)
      if (!strcmp((*op)->name, op_type)) return *op;
  return NULL;
}

gboolean cnnfx_node_input_differentiable(const CnnfxNode *n, int i)
{
  gboolean diff = n->def ? n->def->differentiable : n->op && n->op->backward;
  guint32 nondiff = n->def ? n->def->nondiff_inputs : n->op ? n->op->nondiff_inputs : 0xffffffffu;
  return diff && !(i < 32 && (nondiff >> i) & 1u);
}

gboolean cnnfx_infer_need_value(const CnnfxNode *n, CnnfxTensor *const *in, int i, GError **error)
{
  if (i >= n->n_in || !in[i] || in[i]->data) return TRUE;
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                  "the output shape depends on the values of input %d, which are computed from the "
                  "image data: data-dependent shapes are not supported", i);
  return FALSE;
}

void cnnfx_meta_set(CnnfxTensor *t, CnnfxDType dt, int ndim, const int64_t *dims)
{
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
}

gboolean cnnfx_infer_same(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  (void)n;
  (void)error;
  cnnfx_meta_set(out[0], in[0]->dtype, in[0]->ndim, in[0]->dims);
  return TRUE;
}

const CnnfxOp *cnnfx_op_lookup(const char *op_type)
{
  for (size_t t = 0; t < G_N_ELEMENTS(op_tables); t++)
    for (const CnnfxOp *const *op = op_tables[t]; *op; op++)
      if (!strcmp((*op)->name, op_type)) return *op;
  return NULL;
}

/* Inputs an operator cannot run without (ONNX schema), by opset. */
int cnnfx_op_min_inputs(const char *op, int opset)
{
  static const struct {
    const char *op;
    int since; /* opset from which `n` applies (earlier: 1) */
    int n;
  } req[] = {
    {"Add", 1, 2}, {"Sub", 1, 2}, {"Mul", 1, 2}, {"Div", 1, 2}, {"Pow", 1, 2}, {"PRelu", 1, 2},
    {"MatMul", 1, 2}, {"Gemm", 1, 2}, {"Gather", 1, 2}, {"Expand", 1, 2}, {"Conv", 1, 2},
    {"ConvTranspose", 1, 2}, {"CastLike", 1, 2}, {"Tile", 1, 2}, {"Range", 1, 3}, {"Where", 1, 3},
    {"Reshape", 5, 2}, {"Slice", 10, 3}, {"Pad", 11, 2}, {"Unsqueeze", 13, 2}, {"Upsample", 9, 2},
    {"BatchNormalization", 1, 5}, {"InstanceNormalization", 1, 3},
    {"QuantizeLinear", 1, 2}, {"DequantizeLinear", 1, 2}, {"QLinearConv", 1, 8}, {"QLinearMatMul", 1, 8},
    {"QLinearAdd", 1, 7}, {"QLinearMul", 1, 7}, {"QLinearAveragePool", 1, 4}, {"QLinearGlobalAveragePool", 1, 4},
    {"QLinearConcat", 1, 5}, {"ConvInteger", 1, 2}, {"MatMulInteger", 1, 2}, {"QLinearLeakyRelu", 1, 4},
    {"QLinearSigmoid", 1, 4}, {"QGemm", 1, 6},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(req); i++)
    if (!strcmp(req[i].op, op)) return opset >= req[i].since ? req[i].n : 1;
  return 1;
}

const CnnfxAttr *cnnfx_attr(const CnnfxNode *n, const char *name)
{
  for (int i = 0; i < n->n_attrs; i++)
    if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
  return NULL;
}

int64_t cnnfx_attr_int(const CnnfxNode *n, const char *name, int64_t def)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  return a && a->type == CNNFX_ATTR_INT ? a->i : def;
}

float cnnfx_attr_float(const CnnfxNode *n, const char *name, float def)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  if (!a) return def;
  if (a->type == CNNFX_ATTR_FLOAT) return a->f;
  if (a->type == CNNFX_ATTR_INT) return (float)a->i;
  return def;
}

const char *cnnfx_attr_string(const CnnfxNode *n, const char *name, const char *def)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  return a && a->type == CNNFX_ATTR_STRING ? a->s : def;
}

int cnnfx_attr_ints(const CnnfxNode *n, const char *name, const int64_t **vals)
{
  const CnnfxAttr *a = cnnfx_attr(n, name);
  if (!a || a->type != CNNFX_ATTR_INTS) {
    *vals = NULL;
    return -1;
  }
  *vals = a->ints;
  return a->n;
}

gboolean cnnfx_fail_shape(GError **error, const CnnfxNode *n, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  /* The session / loader prefix the node's name and type. */
  cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s", msg);
  return FALSE;
}
