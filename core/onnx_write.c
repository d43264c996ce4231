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

GBytes *cnnfx_model_save(const CnnfxModel *m, CnnfxSession *s, GError **error)
{
  GByteArray *g = g_byte_array_new();
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    GByteArray *nb = g_byte_array_new();
    for (int i = 0; i < n->n_in; i++) w_str(nb, 1, n->in[i] >= 0 ? m->values[n->in[i]].name : "");
    for (int o = 0; o < n->n_out; o++) w_str(nb, 2, n->out[o] >= 0 ? m->values[n->out[o]].name : "");
    if (n->name) w_str(nb, 3, n->name);
    w_str(nb, 4, n->op_type);
    for (int i = 0; i < n->n_attrs; i++)
      if (!w_attr(nb, &n->attrs[i], error)) {
        g_prefix_error(error, "node '%s': ", n->name);
        g_byte_array_unref(nb);
        g_byte_array_unref(g);
        return NULL;
      }
    if (n->domain && n->domain[0]) w_str(nb, 7, n->domain);
    w_msg(g, 1, nb);
  }
  w_str(g, 2, "cnnfx");
  for (int v = 0; v < m->n_values; v++) {
    if (!m->values[v].init) continue;
    const CnnfxTensor *t = m->values[v].init;
    if (s) {
      g_autoptr(GError) e2 = NULL;
      const CnnfxTensor *cur = cnnfx_session_get(s, m->values[v].name, &e2);
      if (cur && cur->data && cnnfx_same_shape(cur, t) && cur->dtype == t->dtype) t = cur;
    }
    if (!w_tensor(g, 5, t, m->values[v].name, error)) {
      g_byte_array_unref(g);
      return NULL;
    }
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
