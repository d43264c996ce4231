/* Writing ONNX: a model (with a session's trained weights) back to a ModelProto, and a
 * small builder for graphs made in C.  Protobuf is emitted by hand: every message is
 * built in its own buffer and appended with its length. */
#include "cnnfx-private.h"
#include "cnnfx-train.h"

/* ---- protobuf emission ------------------------------------------------------------ */

static void w_varint(GByteArray *a, guint64 v)
{
  guint8 buf[10];
  int n = 0;
  do {
    buf[n] = v & 0x7f;
    v >>= 7;
    if (v) buf[n] |= 0x80;
    n++;
  } while (v);
  g_byte_array_append(a, buf, n);
}

static void w_key(GByteArray *a, guint32 field, guint32 wire) { w_varint(a, ((guint64)field << 3) | wire); }

static void w_int(GByteArray *a, guint32 field, gint64 v)
{
  w_key(a, field, 0);
  w_varint(a, (guint64)v);
}

static void w_bytes(GByteArray *a, guint32 field, const void *p, size_t n)
{
  w_key(a, field, 2);
  w_varint(a, n);
  if (n) g_byte_array_append(a, p, (guint)n);
}

static void w_str(GByteArray *a, guint32 field, const char *s) { w_bytes(a, field, s, strlen(s)); }

static void w_float(GByteArray *a, guint32 field, float f)
{
  guint32 u;
  memcpy(&u, &f, 4);
  guint8 b[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
  w_key(a, field, 5);
  g_byte_array_append(a, b, 4);
}

/* Append sub as a length-delimited field and free it. */
static void w_msg(GByteArray *a, guint32 field, GByteArray *sub)
{
  w_bytes(a, field, sub->data, sub->len);
  g_byte_array_unref(sub);
}

static void w_packed_ints(GByteArray *a, guint32 field, int n, const int64_t *v)
{
  GByteArray *s = g_byte_array_new();
  for (int i = 0; i < n; i++) w_varint(s, (guint64)v[i]);
  w_msg(a, field, s);
}

static void w_packed_floats(GByteArray *a, guint32 field, int n, const float *v)
{
  GByteArray *s = g_byte_array_new();
  for (int i = 0; i < n; i++) {
    guint32 u;
    memcpy(&u, &v[i], 4);
    guint8 b[4] = {u & 0xff, (u >> 8) & 0xff, (u >> 16) & 0xff, u >> 24};
    g_byte_array_append(s, b, 4);
  }
  w_msg(a, field, s);
}

/* TensorProto with raw_data (little-endian, as ONNX requires). */
static gboolean w_tensor(GByteArray *a, guint32 field, const CnnfxTensor *t, const char *name, GError **error)
{
  if (!t->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "tensor '%s' has no data", name ? name : "");
    return FALSE;
  }
  size_t bytes = t->numel * cnnfx_dtype_size(t->dtype);
  if (bytes > G_MAXUINT - 1024) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "tensor '%s' is too large for one protobuf message (2 GB)",
                    name ? name : "");
    return FALSE;
  }
  GByteArray *s = g_byte_array_sized_new((guint)bytes + 64);
  for (int i = 0; i < t->ndim; i++) w_int(s, 1, t->dims[i]);
  w_int(s, 2, t->dtype);
  if (name) w_str(s, 8, name);
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  w_bytes(s, 9, t->data, bytes);
#else
#error "cnnfx writes ONNX raw_data on little-endian hosts only"
#endif
  w_msg(a, field, s);
  return TRUE;
}

/* ValueInfoProto: name, tensor type, optional shape (negative dims symbolic). */
static void w_value_info(GByteArray *a, guint32 field, const char *name, int elem_type, int ndim,
                         const int64_t *dims)
{
  GByteArray *vi = g_byte_array_new();
  w_str(vi, 1, name);
  GByteArray *tt = g_byte_array_new();
  w_int(tt, 1, elem_type);
  if (ndim >= 0) {
    GByteArray *sh = g_byte_array_new();
    for (int i = 0; i < ndim; i++) {
      GByteArray *d = g_byte_array_new();
      if (dims[i] >= 0) w_int(d, 1, dims[i]);
      else if (i == 0) w_str(d, 2, "N");
      else {
        char p[16];
        g_snprintf(p, sizeof p, "d%d", i);
        w_str(d, 2, p);
      }
      w_msg(sh, 1, d);
    }
    w_msg(tt, 2, sh);
  }
  GByteArray *tp = g_byte_array_new();
  w_msg(tp, 1, tt);
  w_msg(vi, 2, tp);
  w_msg(a, field, vi);
}

static gboolean w_attr(GByteArray *a, const CnnfxAttr *at, GError **error)
{
  GByteArray *s = g_byte_array_new();
  w_str(s, 1, at->name);
  switch (at->type) {
  case CNNFX_ATTR_FLOAT: w_float(s, 2, at->f); break;
  case CNNFX_ATTR_INT: w_int(s, 3, at->i); break;
  case CNNFX_ATTR_STRING: w_str(s, 4, at->s ? at->s : ""); break;
  case CNNFX_ATTR_TENSOR:
    if (!at->t || !w_tensor(s, 5, at->t, NULL, error)) {
      if (error && !*error) cnnfx_set_error(error, CNNFX_ERROR_ARG, "tensor attribute '%s' has no value", at->name);
      g_byte_array_unref(s);
      return FALSE;
    }
    break;
  case CNNFX_ATTR_FLOATS: if (at->n) w_packed_floats(s, 7, at->n, at->floats); break;
  case CNNFX_ATTR_INTS: if (at->n) w_packed_ints(s, 8, at->n, at->ints); break;
  case CNNFX_ATTR_STRINGS:
    for (int i = 0; i < at->n; i++) w_str(s, 9, at->strings[i]);
    break;
  default:
    g_byte_array_unref(s);
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "attribute '%s': graph attributes cannot be written", at->name);
    return FALSE;
  }
  w_int(s, 20, at->type);
  w_msg(a, 5, s);
  return TRUE;
}

static void w_model_header(GByteArray *a, int opset)
{
  w_int(a, 1, 8); /* ir_version 8 (ONNX 1.10+) */
  w_str(a, 2, "cnnfx");
  w_str(a, 3, "0.1.0");
  GByteArray *op = g_byte_array_new();
  w_str(op, 1, "");
  w_int(op, 2, opset);
  w_msg(a, 8, op);
}

/* ---- model -> ModelProto -------------------------------------------------------- */

/* How the tensors of one model are named in the file written: the shared input keeps `input`'s name;
 * with a prefix every other name gets it; without, `from` (if any) becomes `to`. */
typedef struct {
  const char *input, *prefix, *from, *to;
} NameMap;

static const char *map_name(const NameMap *nm, const char *name, GString *buf)
{
  if (!nm || !name[0] || (nm->input && !strcmp(name, nm->input))) return name;
  if (nm->prefix) {
    g_string_assign(buf, nm->prefix);
    g_string_append(buf, name);
    return buf->str;
  }
  return nm->from && !strcmp(name, nm->from) ? nm->to : name;
}

/* The nodes of m (those in keep_node, NULL: all) as GraphProto fields, named by nm (NULL: as they
 * are) ... */
static gboolean w_graph_nodes(GByteArray *g, const CnnfxModel *m, const NameMap *nm, const gboolean *keep_node,
                              GError **error)
{
  g_autoptr(GString) buf = g_string_new(NULL);
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (keep_node && !keep_node[k]) continue;
    GByteArray *nb = g_byte_array_new();
    for (int i = 0; i < n->n_in; i++) w_str(nb, 1, n->in[i] >= 0 ? map_name(nm, m->values[n->in[i]].name, buf) : "");
    for (int o = 0; o < n->n_out; o++)
      w_str(nb, 2, n->out[o] >= 0 ? map_name(nm, m->values[n->out[o]].name, buf) : "");
    if (n->name) w_str(nb, 3, nm && nm->prefix ? map_name(nm, n->name, buf) : n->name);
    w_str(nb, 4, n->op_type);
    for (int i = 0; i < n->n_attrs; i++)
      if (!w_attr(nb, &n->attrs[i], error)) {
        g_prefix_error(error, "node '%s': ", n->name);
        g_byte_array_unref(nb);
        return FALSE;
      }
    if (n->domain && n->domain[0]) w_str(nb, 7, n->domain);
    w_msg(g, 1, nb);
  }
  return TRUE;
}

/* ... and its initializers (after the graph's name: cnnfx_model_save's field order, so that a
 * training run writes the same bytes as before this split). */
static gboolean w_graph_inits(GByteArray *g, const CnnfxModel *m, CnnfxSession *s, const NameMap *nm,
                              const gboolean *keep_value, GError **error)
{
  g_autoptr(GString) buf = g_string_new(NULL);
  for (int v = 0; v < m->n_values; v++) {
    if (!m->values[v].init || (keep_value && !keep_value[v])) continue;
    const CnnfxTensor *t = m->values[v].init;
    if (s) {
      g_autoptr(GError) e2 = NULL;
      const CnnfxTensor *cur = cnnfx_session_get(s, m->values[v].name, &e2);
      if (cur && cur->data && cnnfx_same_shape(cur, t) && cur->dtype == t->dtype) t = cur;
    }
    if (!w_tensor(g, 5, t, map_name(nm, m->values[v].name, buf), error)) return FALSE;
  }
  return TRUE;
}

GBytes *cnnfx_model_save(const CnnfxModel *m, CnnfxSession *s, GError **error)
{
  GByteArray *g = g_byte_array_new();
  if (!w_graph_nodes(g, m, NULL, NULL, error)) {
    g_byte_array_unref(g);
    return NULL;
  }
  w_str(g, 2, "cnnfx");
  /* initializers with the session's current weights where s is given */
  if (!w_graph_inits(g, m, s, NULL, NULL, error)) {
    g_byte_array_unref(g);
    return NULL;
  }
  gboolean batch_symbolic = FALSE;
  for (int i = 0; i < m->n_inputs; i++) {
    const CnnfxValue *v = &m->values[m->inputs[i]];
    int et = 1;
    if (s) {
      g_autoptr(GError) e2 = NULL;
      const CnnfxTensor *cur = cnnfx_session_get(s, v->name, &e2);
      if (cur) et = cur->dtype;
    }
    if (i == 0 && v->decl_ndim > 0 && v->decl_dims[0] < 0) batch_symbolic = TRUE;
    w_value_info(g, 11, v->name, et, v->decl_ndim, v->decl_dims);
  }
  for (int i = 0; i < m->n_outputs; i++) {
    const CnnfxValue *v = &m->values[m->outputs[i]];
    int ndim = -1;
    int64_t dims[CNNFX_MAX_DIMS];
    if (s && !cnnfx_session_shape(s, v->name, &ndim, dims)) ndim = -1;
    if (ndim > 0 && batch_symbolic) dims[0] = -1;
    if (ndim < 0 && v->decl_ndim >= 0) { /* declared in the file we loaded */
      ndim = v->decl_ndim;
      memcpy(dims, v->decl_dims, sizeof dims);
    }
    w_value_info(g, 12, v->name, v->init ? (int)v->init->dtype : 1, ndim, dims);
  }
  GByteArray *a = g_byte_array_sized_new(g->len + 64);
  w_model_header(a, m->opset);
  w_msg(a, 7, g);
  return g_byte_array_free_to_bytes(a);
}

/* Close graph g of a one-input, one-output model (declared as in0 and out0) into a ModelProto. */
static GBytes *w_finish_one_io(GByteArray *g, const CnnfxValue *in0, const CnnfxValue *out0, int opset)
{
  w_value_info(g, 11, in0->name, in0->decl_type ? in0->decl_type : 1, in0->decl_ndim, in0->decl_dims);
  w_value_info(g, 12, out0->name, out0->decl_type ? out0->decl_type : 1, out0->decl_ndim, out0->decl_dims);
  GByteArray *a = g_byte_array_sized_new(g->len + 64);
  w_model_header(a, opset);
  w_msg(a, 7, g);
  return g_byte_array_free_to_bytes(a);
}

static gboolean same_decl(const CnnfxValue *a, const CnnfxValue *b)
{
  if (a->decl_ndim != b->decl_ndim || a->decl_type != b->decl_type) return FALSE;
  for (int i = 0; i < a->decl_ndim; i++)
    if (a->decl_dims[i] != b->decl_dims[i] && !(a->decl_dims[i] < 0 && b->decl_dims[i] < 0)) return FALSE;
  return TRUE;
}

GBytes *cnnfx_model_save_mean(const CnnfxModel *const *ms, int n, GError **error)
{
  if (n < 2 || n > 64) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "an ensemble needs 2 to 64 models (got %d)", n);
    return NULL;
  }
  const CnnfxModel *m0 = ms[0];
  for (int k = 0; k < n; k++) {
    const CnnfxModel *m = ms[k];
    if (m->n_inputs != 1 || m->n_outputs < 1) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "model %d: an ensemble member needs one input and an output", k + 1);
      return NULL;
    }
    if (!same_decl(&m->values[m->inputs[0]], &m0->values[m0->inputs[0]]) ||
        !same_decl(&m->values[m->outputs[0]], &m0->values[m0->outputs[0]]) || m->opset != m0->opset) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG,
                      "model %d: its input, first output or opset differs from the first model's", k + 1);
      return NULL;
    }
  }
  const CnnfxValue *in0 = &m0->values[m0->inputs[0]], *out0 = &m0->values[m0->outputs[0]];
  g_autoptr(GPtrArray) outs = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) prefixes = g_ptr_array_new_with_free_func(g_free);
  GByteArray *g = g_byte_array_new();
  for (int k = 0; k < n; k++) {
    const CnnfxModel *m = ms[k];
    const char *iname = m->values[m->inputs[0]].name, *oname = m->values[m->outputs[0]].name;
    /* the first model keeps its names (its layers stay addressable: Grad-CAM, dreams) but for
     * its output; model k >= 2 is prefixed "netK." */
    char *pre = k ? g_strdup_printf("net%d.", k + 1) : NULL;
    char *mo = k ? g_strconcat(pre, oname, NULL) : g_strdup_printf("%s.net1", oname); /* its output here */
    NameMap nm = {.input = iname, .prefix = pre, .from = k ? NULL : oname, .to = mo};
    g_ptr_array_add(prefixes, pre);
    g_ptr_array_add(outs, mo);
    if (strcmp(iname, in0->name)) {
      /* a different input name: feed it from the shared input */
      char *alias = k ? g_strconcat(pre, iname, NULL) : g_strdup(iname);
      GByteArray *nb = g_byte_array_new();
      w_str(nb, 1, in0->name);
      w_str(nb, 2, alias);
      w_str(nb, 4, "Identity");
      w_msg(g, 1, nb);
      g_free(alias);
      nm.input = NULL;
    }
    if (!w_graph_nodes(g, m, &nm, NULL, error) || !w_graph_inits(g, m, NULL, &nm, NULL, error)) {
      g_prefix_error(error, "model %d: ", k + 1);
      g_byte_array_unref(g);
      return NULL;
    }
  }
  /* output = (out_1 + ... + out_n) * (1/n) */
  g_autofree char *sum = g_strdup_printf("%s.sum", out0->name), *scale = g_strdup_printf("%s.scale", out0->name);
  GByteArray *nb = g_byte_array_new();
  for (int k = 0; k < n; k++) w_str(nb, 1, outs->pdata[k]);
  w_str(nb, 2, sum);
  w_str(nb, 3, "ensemble.sum");
  w_str(nb, 4, "Sum");
  w_msg(g, 1, nb);
  nb = g_byte_array_new();
  w_str(nb, 1, sum);
  w_str(nb, 1, scale);
  w_str(nb, 2, out0->name);
  w_str(nb, 3, "ensemble.mean");
  w_str(nb, 4, "Mul");
  w_msg(g, 1, nb);
  w_str(g, 2, "cnnfx-ensemble");
  g_autoptr(CnnfxTensor) sc = cnnfx_tensor_new(CNNFX_F32, 0, NULL, error);
  if (!sc) {
    g_byte_array_unref(g);
    return NULL;
  }
  cnnfx_f32(sc)[0] = 1.0f / (float)n;
  if (!w_tensor(g, 5, sc, scale, error)) {
    g_byte_array_unref(g);
    return NULL;
  }
  return w_finish_one_io(g, in0, out0, m0->opset);
}

/* The tensor the first member's output became (the Sum's first input) if m is an ensemble written by
 * cnnfx_model_save_mean, else -1. */
static int ensemble_first_output(const CnnfxModel *m)
{
  if (m->n_outputs < 1 || m->n_inputs != 1) return -1;
  int k = m->values[m->outputs[0]].producer;
  if (k < 0 || !m->nodes[k].name || strcmp(m->nodes[k].name, "ensemble.mean") || strcmp(m->nodes[k].op_type, "Mul") ||
      m->nodes[k].n_in != 2 || m->nodes[k].in[0] < 0)
    return -1;
  int j = m->values[m->nodes[k].in[0]].producer;
  if (j < 0 || !m->nodes[j].name || strcmp(m->nodes[j].name, "ensemble.sum") || strcmp(m->nodes[j].op_type, "Sum") ||
      m->nodes[j].n_in < 2)
    return -1;
  return m->nodes[j].in[0];
}

gboolean cnnfx_model_is_ensemble(const CnnfxModel *m) { return ensemble_first_output(m) >= 0; }

GBytes *cnnfx_model_save_first_member(const CnnfxModel *m, GError **error)
{
  int x = ensemble_first_output(m);
  if (x < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "the model is not an ensemble written by cnnfx");
    return NULL;
  }
  /* the nodes and initializers the first member's output depends on */
  g_autofree gboolean *keep_node = g_new0(gboolean, MAX(m->n_nodes, 1));
  g_autofree gboolean *keep_value = g_new0(gboolean, MAX(m->n_values, 1));
  g_autofree int *stack = g_new(int, MAX(m->n_values, 1));
  int sp = 0;
  stack[sp++] = x;
  keep_value[x] = TRUE;
  while (sp) {
    int v = stack[--sp], k = m->values[v].producer;
    if (k < 0 || keep_node[k]) continue;
    keep_node[k] = TRUE;
    for (int i = 0; i < m->nodes[k].n_in; i++) {
      int u = m->nodes[k].in[i];
      if (u >= 0 && !keep_value[u]) {
        keep_value[u] = TRUE;
        stack[sp++] = u;
      }
    }
  }
  const CnnfxValue *in0 = &m->values[m->inputs[0]], *out0 = &m->values[m->outputs[0]];
  NameMap nm = {.input = in0->name, .from = m->values[x].name, .to = out0->name};
  GByteArray *g = g_byte_array_new();
  if (!w_graph_nodes(g, m, &nm, keep_node, error)) {
    g_byte_array_unref(g);
    return NULL;
  }
  w_str(g, 2, "cnnfx");
  if (!w_graph_inits(g, m, NULL, &nm, keep_value, error)) {
    g_byte_array_unref(g);
    return NULL;
  }
  return w_finish_one_io(g, in0, out0, m->opset);
}

gboolean cnnfx_write_file_atomic(const char *path, GBytes *bytes, GError **error)
{
  gsize len;
  const char *data = g_bytes_get_data(bytes, &len);
  /* g_file_set_contents writes a temporary file in the same directory, fsyncs and renames. */
  return g_file_set_contents(path, data ? data : "", (gssize)len, error);
}

/* ---- builder ------------------------------------------------------------------- */

struct CnnfxBuilder {
  int opset;
  GByteArray *nodes, *inits, *inputs, *outputs, *meta;
  GByteArray *cur;    /* node being built */
  char *cur_domain;
  char *doc;
};

CnnfxBuilder *cnnfx_builder_new(int opset)
{
  CnnfxBuilder *b = g_new0(CnnfxBuilder, 1);
  b->opset = opset;
  b->nodes = g_byte_array_new();
  b->inits = g_byte_array_new();
  b->inputs = g_byte_array_new();
  b->outputs = g_byte_array_new();
  b->meta = g_byte_array_new();
  return b;
}

static void flush_node(CnnfxBuilder *b)
{
  if (!b->cur) return;
  w_msg(b->nodes, 1, b->cur);
  b->cur = NULL;
}

void cnnfx_builder_free(CnnfxBuilder *b)
{
  if (!b) return;
  if (b->cur) g_byte_array_unref(b->cur);
  g_byte_array_unref(b->nodes);
  g_byte_array_unref(b->inits);
  g_byte_array_unref(b->inputs);
  g_byte_array_unref(b->outputs);
  g_byte_array_unref(b->meta);
  g_free(b->doc);
  g_free(b);
}

void cnnfx_builder_input(CnnfxBuilder *b, const char *name, CnnfxDType dt, int ndim, const int64_t *dims)
{
  w_value_info(b->inputs, 11, name, dt, ndim, dims);
}

void cnnfx_builder_output(CnnfxBuilder *b, const char *name, CnnfxDType dt, int ndim, const int64_t *dims)
{
  w_value_info(b->outputs, 12, name, dt, ndim, dims);
}

gboolean cnnfx_builder_initializer(CnnfxBuilder *b, const char *name, const CnnfxTensor *t, GError **error)
{
  return w_tensor(b->inits, 5, t, name, error);
}

void cnnfx_builder_node(CnnfxBuilder *b, const char *op_type, const char *name, const char *const *inputs,
                        const char *const *outputs)
{
  flush_node(b);
  b->cur = g_byte_array_new();
  for (const char *const *p = inputs; p && *p; p++) w_str(b->cur, 1, *p);
  for (const char *const *p = outputs; p && *p; p++) w_str(b->cur, 2, *p);
  if (name) w_str(b->cur, 3, name);
  w_str(b->cur, 4, op_type);
}

static GByteArray *attr_begin(CnnfxBuilder *b, const char *name)
{
  GByteArray *s = g_byte_array_new();
  w_str(s, 1, name);
  return s;
}

static void attr_end(CnnfxBuilder *b, GByteArray *s, CnnfxAttrType type)
{
  w_int(s, 20, type);
  if (b->cur) w_msg(b->cur, 5, s);
  else g_byte_array_unref(s);
}

void cnnfx_builder_attr_int(CnnfxBuilder *b, const char *name, int64_t v)
{
  GByteArray *s = attr_begin(b, name);
  w_int(s, 3, v);
  attr_end(b, s, CNNFX_ATTR_INT);
}

void cnnfx_builder_attr_float(CnnfxBuilder *b, const char *name, float v)
{
  GByteArray *s = attr_begin(b, name);
  w_float(s, 2, v);
  attr_end(b, s, CNNFX_ATTR_FLOAT);
}

void cnnfx_builder_attr_string(CnnfxBuilder *b, const char *name, const char *v)
{
  GByteArray *s = attr_begin(b, name);
  w_str(s, 4, v);
  attr_end(b, s, CNNFX_ATTR_STRING);
}

void cnnfx_builder_attr_ints(CnnfxBuilder *b, const char *name, int n, const int64_t *v)
{
  GByteArray *s = attr_begin(b, name);
  if (n) w_packed_ints(s, 8, n, v);
  attr_end(b, s, CNNFX_ATTR_INTS);
}

void cnnfx_builder_attr_floats(CnnfxBuilder *b, const char *name, int n, const float *v)
{
  GByteArray *s = attr_begin(b, name);
  if (n) w_packed_floats(s, 7, n, v);
  attr_end(b, s, CNNFX_ATTR_FLOATS);
}

void cnnfx_builder_doc(CnnfxBuilder *b, const char *doc_string)
{
  g_free(b->doc);
  b->doc = g_strdup(doc_string);
}

void cnnfx_builder_metadata(CnnfxBuilder *b, const char *key, const char *value)
{
  GByteArray *e = g_byte_array_new();
  w_str(e, 1, key);
  w_str(e, 2, value);
  w_msg(b->meta, 14, e);
}

GBytes *cnnfx_builder_finish(CnnfxBuilder *b, const char *graph_name, GError **error)
{
  flush_node(b);
  GByteArray *g = g_byte_array_new();
  g_byte_array_append(g, b->nodes->data, b->nodes->len);
  w_str(g, 2, graph_name ? graph_name : "cnnfx");
  g_byte_array_append(g, b->inits->data, b->inits->len);
  g_byte_array_append(g, b->inputs->data, b->inputs->len);
  g_byte_array_append(g, b->outputs->data, b->outputs->len);
  GByteArray *a = g_byte_array_new();
  w_model_header(a, b->opset);
  if (b->doc) w_str(a, 6, b->doc);
  w_msg(a, 7, g);
  g_byte_array_append(a, b->meta->data, b->meta->len);
  return g_byte_array_free_to_bytes(a);
}
