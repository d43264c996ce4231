/* ONNX loading: a small, defensive protobuf reader for ModelProto / GraphProto /
 * NodeProto / TensorProto / AttributeProto.  Every length is checked against the
 * remaining buffer; nothing is trusted. */
#include "cnnfx-private.h"
#include <math.h>
#include <stdlib.h>

/* ---- protobuf wire format ---------------------------------------------------- */

typedef struct {
  const guint8 *p, *end;
} PbBuf;

typedef struct {
  guint32 field;
  guint32 wire;      /* 0 varint, 1 fixed64, 2 bytes, 5 fixed32 */
  guint64 v;         /* varint / fixed value */
  PbBuf sub;         /* wire 2 payload */
} PbField;

#define PB_MAX_DEPTH 8

static gboolean pb_fail(GError **error, const char *what)
{
  if (error && !*error) cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: %s", what);
  return FALSE;
}

static gboolean pb_varint(PbBuf *b, guint64 *out)
{
  guint64 v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end) return FALSE;
    guint8 c = *b->p++;
    v |= (guint64)(c & 0x7f) << shift;
    if (!(c & 0x80)) {
      *out = v;
      return TRUE;
    }
  }
  return FALSE;
}

/* Returns 1 with a field, 0 at end, -1 on error. */
static int pb_next(PbBuf *b, PbField *f, GError **error)
{
  if (b->p >= b->end) return 0;
  guint64 key;
  f->v = 0;
  f->sub.p = f->sub.end = NULL;
  if (!pb_varint(b, &key)) return pb_fail(error, "truncated field key"), -1;
  f->field = (guint32)(key >> 3);
  f->wire = (guint32)(key & 7);
  if (f->field == 0 || (key >> 3) > 0x1fffffff) return pb_fail(error, "bad field number"), -1;
  switch (f->wire) {
  case 0:
    if (!pb_varint(b, &f->v)) return pb_fail(error, "truncated varint"), -1;
    return 1;
  case 1:
    if (b->end - b->p < 8) return pb_fail(error, "truncated fixed64"), -1;
    memcpy(&f->v, b->p, 8);
    b->p += 8;
    return 1;
  case 5: {
    guint32 v;
    if (b->end - b->p < 4) return pb_fail(error, "truncated fixed32"), -1;
    memcpy(&v, b->p, 4);
    f->v = v;
    b->p += 4;
    return 1;
  }
  case 2: {
    guint64 len;
    if (!pb_varint(b, &len)) return pb_fail(error, "truncated length"), -1;
    if (len > (guint64)(b->end - b->p)) return pb_fail(error, "length runs past end of data"), -1;
    f->sub.p = b->p;
    f->sub.end = b->p + len;
    b->p += len;
    return 1;
  }
  default:
    return pb_fail(error, "unsupported wire type (groups)"), -1;
  }
}

static char *pb_string(const PbField *f, GError **error)
{
  if (f->wire != 2) {
    pb_fail(error, "string field with wrong wire type");
    return NULL;
  }
  size_t n = (size_t)(f->sub.end - f->sub.p);
  if (memchr(f->sub.p, 0, n)) {
    pb_fail(error, "string with embedded NUL");
    return NULL;
  }
  char *s = g_try_malloc(n + 1);
  if (!s) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory");
    return NULL;
  }
  memcpy(s, f->sub.p, n);
  s[n] = 0;
  return s;
}

/* Repeated int64 field, packed or not: appended to arr. */
static gboolean pb_ints(const PbField *f, GArray *arr, GError **error)
{
  if (f->wire == 0) {
    gint64 v = (gint64)f->v;
    g_array_append_val(arr, v);
    return TRUE;
  }
  if (f->wire != 2) return pb_fail(error, "integer list with wrong wire type");
  PbBuf b = f->sub;
  while (b.p < b.end) {
    guint64 v;
    if (!pb_varint(&b, &v)) return pb_fail(error, "truncated packed integers");
    gint64 s = (gint64)v;
    if (arr->len >= (1u << 26)) return pb_fail(error, "integer list too long");
    g_array_append_val(arr, s);
  }
  return TRUE;
}

static gboolean pb_floats(const PbField *f, GArray *arr, GError **error)
{
  if (f->wire == 5) {
    float v;
    guint32 u = (guint32)f->v;
    memcpy(&v, &u, 4);
    g_array_append_val(arr, v);
    return TRUE;
  }
  if (f->wire != 2) return pb_fail(error, "float list with wrong wire type");
  size_t n = (size_t)(f->sub.end - f->sub.p);
  if (n % 4) return pb_fail(error, "packed floats not a multiple of 4 bytes");
  g_array_append_vals(arr, f->sub.p, (guint)(n / 4));
  return TRUE;
}

static gboolean pb_doubles(const PbField *f, GArray *arr, GError **error)
{
  if (f->wire == 1) {
    double v;
    memcpy(&v, &f->v, 8);
    g_array_append_val(arr, v);
    return TRUE;
  }
  if (f->wire != 2) return pb_fail(error, "double list with wrong wire type");
  size_t n = (size_t)(f->sub.end - f->sub.p);
  if (n % 8) return pb_fail(error, "packed doubles not a multiple of 8 bytes");
  g_array_append_vals(arr, f->sub.p, (guint)(n / 8));
  return TRUE;
}

/* ---- TensorProto --------------------------------------------------------------- */

static const char *onnx_type_name(int t)
{
  static const char *const names[] = {"UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32",
                                      "INT64", "STRING", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64",
                                      "COMPLEX64", "COMPLEX128", "BFLOAT16"};
  return (t >= 0 && t < (int)G_N_ELEMENTS(names)) ? names[t] : "unknown";
}

static float half_to_f32(guint16 h)
{
  int sign = h >> 15, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  float v;
  if (e == 0) v = ldexpf((float)m, -24);                 /* zero / subnormal */
  else if (e == 31) v = m ? NAN : INFINITY;
  else v = ldexpf((float)(m | 0x400), e - 25);
  return sign ? -v : v;
}

static float bf16_to_f32(guint16 h)
{
  guint32 u = (guint32)h << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}

static CnnfxTensor *parse_tensor(PbBuf b, char **name_out, int *type_out, GError **error)
{
  g_autoptr(GArray) dims = g_array_new(FALSE, FALSE, sizeof(gint64));
  g_autoptr(GArray) fdata = g_array_new(FALSE, FALSE, sizeof(float));
  g_autoptr(GArray) idata = g_array_new(FALSE, FALSE, sizeof(gint64));   /* int64_data / int32_data */
  g_autoptr(GArray) ddata = g_array_new(FALSE, FALSE, sizeof(double));
  g_autofree char *name = NULL;
  const guint8 *raw = NULL;
  size_t raw_len = 0;
  gboolean has_raw = FALSE, external = FALSE, has_strings = FALSE;
  int dtype = 0;
  PbField f;
  int r;
  while ((r = pb_next(&b, &f, error)) > 0) {
    switch (f.field) {
    case 1: if (!pb_ints(&f, dims, error)) return NULL; break;
    case 2: dtype = (int)f.v; break;
    case 4: if (!pb_floats(&f, fdata, error)) return NULL; break;
    case 5: case 7: case 11: if (!pb_ints(&f, idata, error)) return NULL; break;
    case 6: has_strings = TRUE; break;
    case 8:
      g_free(name);
      if (!(name = pb_string(&f, error))) return NULL;
      break;
    case 9:
      if (f.wire != 2) return pb_fail(error, "raw_data with wrong wire type"), NULL;
      raw = f.sub.p;
      raw_len = (size_t)(f.sub.end - f.sub.p);
      has_raw = TRUE;
      break;
    case 10: if (!pb_doubles(&f, ddata, error)) return NULL; break;
    case 13: external = TRUE; break;
    case 14: if (f.v == 1) external = TRUE; break;
    default: break;
    }
  }
  if (r < 0) return NULL;
  if (external) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "tensor '%s' uses external data files (not supported; "
                    "re-save the model with all weights inside the .onnx file)", name ? name : "");
    return NULL;
  }
  if (dims->len > CNNFX_MAX_DIMS) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "tensor '%s' has rank %u (max %d)", name ? name : "",
                    dims->len, CNNFX_MAX_DIMS);
    return NULL;
  }
  size_t numel;
  if (!cnnfx_dims_numel((int)dims->len, (const int64_t *)dims->data, &numel)) {
    pb_fail(error, "tensor with negative or oversized dimensions");
    return NULL;
  }
  CnnfxDType dt;
  size_t src_size;
  switch (dtype) {
  case 1: dt = CNNFX_F32; src_size = 4; break;
  case 7: dt = CNNFX_I64; src_size = 8; break;
  case 6: case 5: case 3: case 2: case 4: case 9: case 12: case 13: /* integer types -> int64 */
    dt = CNNFX_I64;
    src_size = (dtype == 6 || dtype == 12) ? 4 : (dtype == 5 || dtype == 4) ? 2 : (dtype == 13) ? 8 : 1;
    break;
  case 11: dt = CNNFX_F32; src_size = 8; break;
  case 10: case 16: dt = CNNFX_F32; src_size = 2; break; /* float16 / bfloat16 weights: widened */
  default:
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "tensor '%s' has data type %s (%d), not supported",
                    name ? name : "", onnx_type_name(dtype), dtype);
    return NULL;
  }
  if (has_strings) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "string tensors are not supported");
    return NULL;
  }
  /* Check sizes before allocating anything big. */
  size_t have = has_raw ? raw_len / src_size
              : dt == CNNFX_F32 ? (dtype == 11 ? ddata->len : (dtype == 10 || dtype == 16) ? idata->len : fdata->len)
              : idata->len;
  if (has_raw && raw_len % src_size) {
    pb_fail(error, "raw_data size is not a multiple of the element size");
    return NULL;
  }
  if (have != numel) {
    cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: tensor '%s' has %zu values, shape needs %zu",
                    name ? name : "", have, numel);
    return NULL;
  }
  CnnfxTensor *t = cnnfx_tensor_alloc(NULL, dt, (int)dims->len, (const int64_t *)dims->data, error);
  if (!t) return NULL;
  if (dt == CNNFX_F32) {
    float *d = cnnfx_f32(t);
    if (has_raw && dtype == 1) memcpy(d, raw, numel * 4);
    else if (dtype == 10 || dtype == 16) {
      /* raw: 2 bytes each; otherwise the bits in int32_data */
      for (size_t i = 0; i < numel; i++) {
        guint16 h;
        if (has_raw) memcpy(&h, raw + 2 * i, 2);
        else h = (guint16)g_array_index(idata, gint64, i);
        d[i] = dtype == 16 ? bf16_to_f32(h) : half_to_f32(h);
      }
    } else if (has_raw) {
      for (size_t i = 0; i < numel; i++) {
        double v;
        memcpy(&v, raw + 8 * i, 8);
        d[i] = (float)v;
      }
    } else if (dtype == 11) {
      for (size_t i = 0; i < numel; i++) d[i] = (float)g_array_index(ddata, double, i);
    } else if (numel) memcpy(d, fdata->data, numel * 4);
  } else {
    int64_t *d = cnnfx_i64(t);
    if (has_raw) {
      for (size_t i = 0; i < numel; i++) {
        const guint8 *q = raw + src_size * i;
        switch (dtype) {
        case 7: case 13: { gint64 v; memcpy(&v, q, 8); d[i] = v; break; }
        case 6: { gint32 v; memcpy(&v, q, 4); d[i] = v; break; }
        case 12: { guint32 v; memcpy(&v, q, 4); d[i] = v; break; }
        case 5: { gint16 v; memcpy(&v, q, 2); d[i] = v; break; }
        case 4: { guint16 v; memcpy(&v, q, 2); d[i] = v; break; }
        case 3: d[i] = (gint8)*q; break;
        default: d[i] = *q; break;
        }
      }
    } else if (numel) memcpy(d, idata->data, numel * 8);
  }
  if (dtype != 1 && dtype != 7 && dtype != 11 && dtype != 10 && dtype != 16) {
    /* Integers other than int64 were widened: fine for shape inputs, but tell data consumers. */
    t->dtype = CNNFX_I64;
  }
  if (name_out) *name_out = g_steal_pointer(&name);
  if (type_out) *type_out = dtype;
  return t;
}

CnnfxTensor *cnnfx_tensor_from_proto(const void *data, size_t len, char **name_out, GError **error)
{
  PbBuf b = {data, (const guint8 *)data + len};
  if (!data && len) return pb_fail(error, "no data"), NULL;
  return parse_tensor(b, name_out, NULL, error);
}

static void put_varint(GByteArray *a, guint64 v)
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

GBytes *cnnfx_tensor_to_proto(const CnnfxTensor *t, const char *name, GError **error)
{
  if (!t->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "tensor has no data");
    return NULL;
  }
  GByteArray *a = g_byte_array_new();
  for (int i = 0; i < t->ndim; i++) {
    put_varint(a, (1 << 3) | 0);
    put_varint(a, (guint64)t->dims[i]);
  }
  put_varint(a, (2 << 3) | 0);
  put_varint(a, (guint64)t->dtype);
  if (name) {
    put_varint(a, (8 << 3) | 2);
    put_varint(a, strlen(name));
    g_byte_array_append(a, (const guint8 *)name, (guint)strlen(name));
  }
  size_t bytes = t->numel * cnnfx_dtype_size(t->dtype);
  put_varint(a, (9 << 3) | 2);
  put_varint(a, bytes);
  g_byte_array_append(a, t->data, (guint)bytes);
  return g_byte_array_free_to_bytes(a);
}

/* ---- model ---------------------------------------------------------------------- */

static void attr_clear(CnnfxAttr *a)
{
  g_free(a->name);
  g_free(a->s);
  if (a->t) cnnfx_tensor_unref(a->t);
  g_free(a->floats);
  g_free(a->ints);
  if (a->strings) g_strfreev(a->strings);
}

static void node_clear(CnnfxNode *n)
{
  g_free(n->name);
  g_free(n->op_type);
  g_free(n->domain);
  g_free(n->in);
  g_free(n->out);
  g_free(n->in_type);
  for (int k = 0; k < n->n_attrs; k++) attr_clear(&n->attrs[k]);
  g_free(n->attrs);
}

void cnnfx_model_free(CnnfxModel *m)
{
  if (!m) return;
  for (int i = 0; i < m->n_nodes; i++) node_clear(&m->nodes[i]);
  g_free(m->nodes);
  for (int i = 0; i < m->n_values; i++) {
    g_free(m->values[i].name);
    if (m->values[i].init) cnnfx_tensor_unref(m->values[i].init);
  }
  g_free(m->values);
  if (m->by_name) g_hash_table_destroy(m->by_name);
  g_free(m->inputs);
  g_free(m->outputs);
  g_free(m);
}

/* Loader state */
typedef struct {
  CnnfxModel *m;
  GArray *values;   /* CnnfxValue */
  GArray *nodes;    /* CnnfxNode (unsorted) */
  GArray *inputs, *outputs; /* names (char*) collected first */
  GHashTable *opsets; /* domain -> version */
} Loader;

static int value_get(Loader *L, const char *name, gboolean create)
{
  gpointer v = g_hash_table_lookup(L->m->by_name, name);
  if (v) return GPOINTER_TO_INT(v) - 1;
  if (!create) return -1;
  CnnfxValue nv = {0};
  nv.name = g_strdup(name);
  nv.producer = -1;
  nv.decl_ndim = -1;
  g_array_append_val(L->values, nv);
  int id = (int)L->values->len - 1;
  g_hash_table_insert(L->m->by_name, nv.name, GINT_TO_POINTER(id + 1));
  return id;
}

static gboolean parse_attr(PbBuf b, CnnfxAttr *a, GError **error)
{
  PbField f;
  int r;
  g_autoptr(GArray) ints = g_array_new(FALSE, FALSE, sizeof(gint64));
  g_autoptr(GArray) floats = g_array_new(FALSE, FALSE, sizeof(float));
  g_autoptr(GPtrArray) strings = g_ptr_array_new_with_free_func(g_free);
  int declared = 0;
  gboolean has_f = FALSE, has_i = FALSE;
  while ((r = pb_next(&b, &f, error)) > 0) {
    switch (f.field) {
    case 1:
      g_free(a->name);
      if (!(a->name = pb_string(&f, error))) return FALSE;
      break;
    case 2:
      if (f.wire != 5) return pb_fail(error, "attribute float with wrong wire type");
      { guint32 u = (guint32)f.v; memcpy(&a->f, &u, 4); }
      has_f = TRUE;
      break;
    case 3: a->i = (gint64)f.v; has_i = TRUE; break;
    case 4:
      g_clear_pointer(&a->s, g_free); /* attr_clear() frees it again on failure */
      if (f.wire != 2) return pb_fail(error, "attribute string with wrong wire type");
      /* bytes may contain anything; keep up to first NUL */
      a->s = g_strndup((const char *)f.sub.p, (gsize)(f.sub.end - f.sub.p));
      break;
    case 5:
      if (f.wire != 2) return pb_fail(error, "attribute tensor with wrong wire type");
      if (a->t) cnnfx_tensor_unref(a->t);
      if (!(a->t = parse_tensor(f.sub, NULL, &a->t_type, error))) return FALSE;
      break;
    case 6: case 11: a->type = CNNFX_ATTR_GRAPH; break;
    case 7: if (!pb_floats(&f, floats, error)) return FALSE; break;
    case 8: if (!pb_ints(&f, ints, error)) return FALSE; break;
    case 9:
      if (f.wire != 2) return pb_fail(error, "attribute strings with wrong wire type");
      g_ptr_array_add(strings, g_strndup((const char *)f.sub.p, (gsize)(f.sub.end - f.sub.p)));
      if (strings->len > 65536) return pb_fail(error, "too many strings");
      break;
    case 20: declared = (int)f.v; break;
    default: break;
    }
  }
  if (r < 0) return FALSE;
  if (!a->name) return pb_fail(error, "attribute without a name");
  /* Prefer the declared type (ONNX >= 1.1 always sets it); fall back to what is present. */
  switch (declared) {
  case 1: a->type = CNNFX_ATTR_FLOAT; break;
  case 2: a->type = CNNFX_ATTR_INT; break;
  case 3: a->type = CNNFX_ATTR_STRING; break;
  case 4: a->type = CNNFX_ATTR_TENSOR; break;
  case 5: case 10: a->type = CNNFX_ATTR_GRAPH; break;
  case 6: a->type = CNNFX_ATTR_FLOATS; break;
  case 7: a->type = CNNFX_ATTR_INTS; break;
  case 8: a->type = CNNFX_ATTR_STRINGS; break;
  default:
    if (a->type == CNNFX_ATTR_GRAPH) break;
    if (a->t) a->type = CNNFX_ATTR_TENSOR;
    else if (a->s) a->type = CNNFX_ATTR_STRING;
    else if (ints->len) a->type = CNNFX_ATTR_INTS;
    else if (floats->len) a->type = CNNFX_ATTR_FLOATS;
    else if (strings->len) a->type = CNNFX_ATTR_STRINGS;
    else if (has_f) a->type = CNNFX_ATTR_FLOAT;
    else if (has_i) a->type = CNNFX_ATTR_INT;
    else a->type = CNNFX_ATTR_INTS; /* empty list */
  }
  if (a->type == CNNFX_ATTR_TENSOR && !a->t) return pb_fail(error, "tensor attribute without a tensor");
  if (a->type == CNNFX_ATTR_STRING && !a->s) a->s = g_strdup("");
  a->n = (int)(a->type == CNNFX_ATTR_FLOATS ? floats->len : a->type == CNNFX_ATTR_INTS ? ints->len
               : a->type == CNNFX_ATTR_STRINGS ? strings->len : 0);
  /* one spare element so that empty lists still get a non-NULL pointer */
  if (a->type == CNNFX_ATTR_INTS) {
    a->ints = g_new0(int64_t, ints->len + 1);
    if (ints->len) memcpy(a->ints, ints->data, ints->len * sizeof(gint64));
  }
  if (a->type == CNNFX_ATTR_FLOATS) {
    a->floats = g_new0(float, floats->len + 1);
    if (floats->len) memcpy(a->floats, floats->data, floats->len * sizeof(float));
  }
  if (a->type == CNNFX_ATTR_STRINGS) {
    g_ptr_array_add(strings, NULL);
    a->strings = (char **)g_ptr_array_free(g_steal_pointer(&strings), FALSE);
  }
  return TRUE;
}

static gboolean parse_node(Loader *L, PbBuf b, GError **error)
{
  CnnfxNode n = {0};
  g_autoptr(GPtrArray) ins = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) outs = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GArray) attrs = g_array_new(FALSE, TRUE, sizeof(CnnfxAttr));
  PbField f;
  int r;
  while ((r = pb_next(&b, &f, error)) > 0) {
    char *s = NULL;
    switch (f.field) {
    case 1: case 2: case 3: case 4: case 7:
      if (!(s = pb_string(&f, error))) goto out;
      if (f.field == 1) g_ptr_array_add(ins, s);
      else if (f.field == 2) g_ptr_array_add(outs, s);
      else if (f.field == 3) { g_free(n.name); n.name = s; }
      else if (f.field == 4) { g_free(n.op_type); n.op_type = s; }
      else { g_free(n.domain); n.domain = s; }
      if (ins->len > 4096 || outs->len > 4096) { pb_fail(error, "node with too many inputs/outputs"); goto out; }
      break;
    case 5: {
      if (f.wire != 2) { pb_fail(error, "attribute with wrong wire type"); goto out; }
      CnnfxAttr a = {0};
      if (!parse_attr(f.sub, &a, error)) { attr_clear(&a); goto out; }
      g_array_append_val(attrs, a);
      if (attrs->len > 1024) { pb_fail(error, "node with too many attributes"); goto out; }
      break;
    }
    default: break;
    }
  }
  if (r < 0) goto out;
  if (!n.op_type) { pb_fail(error, "node without op_type"); goto out; }
  if (!n.name) n.name = g_strdup_printf("%s_%u", n.op_type, L->nodes->len);
  if (!n.domain) n.domain = g_strdup("");
  n.n_in = (int)ins->len;
  n.n_out = (int)outs->len;
  n.in = g_new(int, n.n_in + 1);
  n.out = g_new(int, n.n_out + 1);
  for (int i = 0; i < n.n_in; i++) {
    const char *nm = g_ptr_array_index(ins, i);
    n.in[i] = nm[0] ? value_get(L, nm, TRUE) : -1;
  }
  for (int i = 0; i < n.n_out; i++) {
    const char *nm = g_ptr_array_index(outs, i);
    n.out[i] = nm[0] ? value_get(L, nm, TRUE) : -1;
  }
  n.n_attrs = (int)attrs->len;
  n.attrs = (CnnfxAttr *)g_array_free(g_steal_pointer(&attrs), FALSE);
  g_array_append_val(L->nodes, n);
  return TRUE;
out:
  g_free(n.name);
  g_free(n.op_type);
  g_free(n.domain);
  for (guint k = 0; k < attrs->len; k++) attr_clear(&g_array_index(attrs, CnnfxAttr, k));
  return FALSE;
}

/* ValueInfoProto -> name and declared shape */
static gboolean parse_value_info(PbBuf b, char **name, int *ndim, int64_t *dims, int *elem, GError **error)
{
  PbField f, g, h, d, e;
  int r;
  *ndim = -1;
  *elem = 0;
  while ((r = pb_next(&b, &f, error)) > 0) {
    if (f.field == 1) {
      g_free(*name);
      if (!(*name = pb_string(&f, error))) return FALSE;
    } else if (f.field == 2 && f.wire == 2) { /* TypeProto */
      PbBuf tb = f.sub;
      while ((r = pb_next(&tb, &g, error)) > 0) {
        if (g.field != 1 || g.wire != 2) continue; /* tensor_type */
        PbBuf tt = g.sub;
        while ((r = pb_next(&tt, &h, error)) > 0) {
          if (h.field == 1 && h.wire == 0) *elem = h.v < 64 ? (int)h.v : -1;
          if (h.field != 2 || h.wire != 2) continue; /* shape */
          PbBuf sb = h.sub;
          int nd = 0;
          while ((r = pb_next(&sb, &d, error)) > 0) {
            if (d.field != 1 || d.wire != 2) continue;
            int64_t v = -1;
            PbBuf db = d.sub;
            while ((r = pb_next(&db, &e, error)) > 0)
              if (e.field == 1 && e.wire == 0) v = (gint64)e.v < 0 ? -1 : (gint64)e.v;
            if (r < 0) return FALSE;
            if (nd < CNNFX_MAX_DIMS) dims[nd] = v;
            nd++;
          }
          if (r < 0) return FALSE;
          *ndim = nd <= CNNFX_MAX_DIMS ? nd : -1;
        }
        if (r < 0) return FALSE;
      }
      if (r < 0) return FALSE;
    }
  }
  return r >= 0;
}

static gboolean parse_graph(Loader *L, PbBuf b, GError **error)
{
  PbField f;
  int r;
  while ((r = pb_next(&b, &f, error)) > 0) {
    if (f.wire != 2) continue;
    switch (f.field) {
    case 1:
      if (!parse_node(L, f.sub, error)) return FALSE;
      if (L->nodes->len > 1000000) return pb_fail(error, "too many nodes");
      break;
    case 5: {
      char *name = NULL;
      int elem = 0;
      CnnfxTensor *t = parse_tensor(f.sub, &name, &elem, error);
      if (!t) return FALSE;
      if (!name || !name[0]) {
        g_free(name);
        cnnfx_tensor_unref(t);
        return pb_fail(error, "initializer without a name");
      }
      int id = value_get(L, name, TRUE);
      CnnfxValue *v = &g_array_index(L->values, CnnfxValue, id);
      if (v->init) cnnfx_tensor_unref(v->init);
      v->init = t;
      v->elem_type = elem;
      g_free(name);
      break;
    }
    case 11: case 12: {
      char *name = NULL;
      int ndim;
      int64_t dims[CNNFX_MAX_DIMS];
      int elem;
      if (!parse_value_info(f.sub, &name, &ndim, dims, &elem, error)) { g_free(name); return FALSE; }
      if (!name || !name[0]) { g_free(name); return pb_fail(error, "graph input/output without a name"); }
      int id = value_get(L, name, TRUE);
      CnnfxValue *v = &g_array_index(L->values, CnnfxValue, id);
      v->decl_ndim = ndim;
      v->decl_type = elem;
      for (int i = 0; i < ndim; i++) v->decl_dims[i] = dims[i];
      if (f.field == 11) g_array_append_val(L->inputs, id);
      else g_array_append_val(L->outputs, id);
      g_free(name);
      break;
    }
    case 15:
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "sparse initializers are not supported");
      return FALSE;
    default: break;
    }
  }
  return r >= 0;
}

/* Constant nodes become initializers. */
static gboolean fold_constant(Loader *L, CnnfxNode *n, GError **error)
{
  if (n->n_out != 1 || n->out[0] < 0 || n->n_attrs < 1)
    return pb_fail(error, "Constant node without exactly one output and a value");
  const CnnfxAttr *a = &n->attrs[0];
  CnnfxTensor *t = NULL;
  int elem = 0;
  if (!strcmp(a->name, "value") && a->type == CNNFX_ATTR_TENSOR) {
    t = cnnfx_tensor_copy(a->t, error);
    elem = a->t_type;
  } else if (!strcmp(a->name, "value_float")) {
    t = cnnfx_tensor_new(CNNFX_F32, 0, NULL, error);
    if (t) cnnfx_f32(t)[0] = a->f;
  } else if (!strcmp(a->name, "value_int")) {
    t = cnnfx_tensor_new(CNNFX_I64, 0, NULL, error);
    if (t) cnnfx_i64(t)[0] = a->i;
  } else if (!strcmp(a->name, "value_floats") || !strcmp(a->name, "value_ints")) {
    int64_t d = a->n;
    gboolean fl = a->type == CNNFX_ATTR_FLOATS;
    t = cnnfx_tensor_new(fl ? CNNFX_F32 : CNNFX_I64, 1, &d, error);
    if (t && d) memcpy(t->data, fl ? (void *)a->floats : (void *)a->ints, d * (fl ? 4 : 8));
  } else {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "Constant node '%s': attribute '%s' not supported",
                    n->name, a->name);
    return FALSE;
  }
  if (!t) return FALSE;
  CnnfxValue *v = &g_array_index(L->values, CnnfxValue, n->out[0]);
  if (v->init) cnnfx_tensor_unref(v->init);
  v->init = t;
  v->elem_type = elem ? elem : (int)t->dtype;
  return TRUE;
}

static gboolean finish_model(Loader *L, GError **error)
{
  CnnfxModel *m = L->m;
  guint nn = L->nodes->len;
  CnnfxNode *raw = (CnnfxNode *)L->nodes->data;
  int opset_default = GPOINTER_TO_INT(g_hash_table_lookup(L->opsets, ""));
  if (!opset_default) opset_default = GPOINTER_TO_INT(g_hash_table_lookup(L->opsets, "ai.onnx"));
  if (!opset_default) opset_default = 7; /* very old files without opset_import */
  m->opset = opset_default;

  /* Resolve ops and fold Constants. */
  gboolean *is_const = g_new0(gboolean, nn + 1);
  for (guint i = 0; i < nn; i++) {
    CnnfxNode *n = &raw[i];
    if (n->domain[0] && strcmp(n->domain, "ai.onnx") &&
        !(!strcmp(n->domain, "com.microsoft") && cnnfx_op_quant_ms(n->op_type))) {
      g_free(is_const);
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "node '%s': operator %s::%s is not supported",
                      n->name, n->domain, n->op_type);
      return FALSE;
    }
    n->opset = opset_default;
    if (!strcmp(n->op_type, "Constant")) {
      if (!fold_constant(L, n, error)) { g_free(is_const); return FALSE; }
      is_const[i] = TRUE;
      continue;
    }
    n->def = cnnfx_opdef_lookup(n->op_type);
    if (!n->def) {
      g_free(is_const);
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "node '%s': operator %s (opset %d) is not supported",
                      n->name, n->op_type, n->opset);
      return FALSE;
    }
    /* Required inputs (ONNX schema) must be present: kernels rely on them. */
    int need_in = cnnfx_op_min_inputs(n->op_type, n->opset);
    for (int i = 0; i < need_in; i++)
      if (i >= n->n_in || n->in[i] < 0) {
        g_free(is_const);
        cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: node '%s' (%s) needs %d inputs, input %d is missing",
                        n->name, n->op_type, need_in, i);
        return FALSE;
      }
  }
  /* Topological sort (Kahn) over non-constant nodes; detect cycles and double producers. */
  CnnfxValue *vals = (CnnfxValue *)L->values->data;
  int nv = (int)L->values->len;
  for (guint i = 0; i < nn; i++) {
    if (is_const[i]) continue;
    for (int k = 0; k < raw[i].n_out; k++) {
      int o = raw[i].out[k];
      if (o < 0) continue;
      if (vals[o].producer >= 0 || vals[o].init) {
        g_free(is_const);
        cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: tensor '%s' is produced twice", vals[o].name);
        return FALSE;
      }
      vals[o].producer = (int)i;
    }
  }
  int *pending = g_new0(int, nn + 1);
  GArray *order = g_array_sized_new(FALSE, FALSE, sizeof(int), nn);
  /* consumers list */
  GPtrArray **cons = g_new0(GPtrArray *, nv + 1);
  for (guint i = 0; i < nn; i++) {
    if (is_const[i]) continue;
    for (int k = 0; k < raw[i].n_in; k++) {
      int v = raw[i].in[k];
      if (v < 0) continue;
      if (vals[v].producer >= 0) {
        pending[i]++;
        if (!cons[v]) cons[v] = g_ptr_array_new();
        g_ptr_array_add(cons[v], GINT_TO_POINTER(i));
      }
    }
  }
  GQueue q = G_QUEUE_INIT;
  for (guint i = 0; i < nn; i++)
    if (!is_const[i] && pending[i] == 0) g_queue_push_tail(&q, GINT_TO_POINTER(i));
  while (!g_queue_is_empty(&q)) {
    int i = GPOINTER_TO_INT(g_queue_pop_head(&q));
    g_array_append_val(order, i);
    for (int k = 0; k < raw[i].n_out; k++) {
      int o = raw[i].out[k];
      if (o < 0 || !cons[o]) continue;
      for (guint c = 0; c < cons[o]->len; c++) {
        int j = GPOINTER_TO_INT(g_ptr_array_index(cons[o], c));
        if (--pending[j] == 0) g_queue_push_tail(&q, GINT_TO_POINTER(j));
      }
    }
  }
  for (int v = 0; v < nv; v++) if (cons[v]) g_ptr_array_free(cons[v], TRUE);
  g_free(cons);
  g_free(pending);
  guint n_live = 0;
  for (guint i = 0; i < nn; i++) n_live += !is_const[i];
  if (order->len != n_live) {
    g_array_free(order, TRUE);
    g_free(is_const);
    cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: the graph has a cycle");
    return FALSE;
  }
  m->n_nodes = (int)order->len;
  m->nodes = g_new0(CnnfxNode, order->len + 1);
  for (guint k = 0; k < order->len; k++) {
    int i = g_array_index(order, int, k);
    m->nodes[k] = raw[i];
    memset(&raw[i], 0, sizeof(CnnfxNode));
  }
  for (guint i = 0; i < nn; i++)
    if (is_const[i]) {
      node_clear(&raw[i]);
      memset(&raw[i], 0, sizeof(CnnfxNode)); /* the loader clears L->nodes again */
    }
  g_array_free(order, TRUE);
  g_free(is_const);
  for (int v = 0; v < nv; v++) vals[v].producer = -1;
  for (int k = 0; k < m->n_nodes; k++)
    for (int o = 0; o < m->nodes[k].n_out; o++)
      if (m->nodes[k].out[o] >= 0) vals[m->nodes[k].out[o]].producer = k;

  /* Inputs: graph inputs that have no initializer. */
  GArray *ins = g_array_new(FALSE, FALSE, sizeof(int));
  for (guint i = 0; i < L->inputs->len; i++) {
    int id = g_array_index(L->inputs, int, i);
    if (vals[id].init || vals[id].is_input) continue;
    vals[id].is_input = TRUE;
    g_array_append_val(ins, id);
  }
  /* Every consumed value must come from somewhere. */
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    for (int i = 0; i < n->n_in; i++) {
      int v = n->in[i];
      if (v >= 0 && !vals[v].init && !vals[v].is_input && vals[v].producer < 0) {
        g_array_free(ins, TRUE);
        cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: node '%s' reads '%s', which nothing produces",
                        n->name, vals[v].name);
        return FALSE;
      }
    }
    for (int o = 0; o < n->n_out; o++) {
      int v = n->out[o];
      if (v >= 0 && vals[v].is_input) {
        g_array_free(ins, TRUE);
        cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: node '%s' writes graph input '%s'",
                        n->name, vals[v].name);
        return FALSE;
      }
    }
  }
  for (guint i = 0; i < L->outputs->len; i++) {
    int v = g_array_index(L->outputs, int, i);
    if (!vals[v].init && !vals[v].is_input && vals[v].producer < 0) {
      g_array_free(ins, TRUE);
      cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: graph output '%s' is never produced", vals[v].name);
      return FALSE;
    }
  }
  /* Graph inputs of types we cannot represent are refused up front (integers and bool are
   * widened to int64, which shape inputs and indices need). */
  for (guint i = 0; i < ins->len; i++) {
    const CnnfxValue *v = &vals[g_array_index(ins, int, i)];
    int t = v->decl_type;
    if (t == 8 || t == 10 || t == 11 || t == 14 || t == 15 || t == 16 || t < 0 || t > 16) {
      g_array_free(ins, TRUE);
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "input '%s' has data type %s, not supported (float32 and "
                      "integer inputs only)", v->name, onnx_type_name(t));
      return FALSE;
    }
  }
  m->n_inputs = (int)ins->len;
  m->inputs = (int *)g_array_free(ins, FALSE);
  m->n_outputs = (int)L->outputs->len;
  m->outputs = g_new0(int, L->outputs->len + 1);
  if (L->outputs->len) memcpy(m->outputs, L->outputs->data, L->outputs->len * sizeof(int));
  m->n_values = nv;
  m->values = (CnnfxValue *)g_array_free(L->values, FALSE);
  L->values = NULL;
  if (m->n_outputs == 0) {
    cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: the graph has no outputs");
    return FALSE;
  }
  /* ONNX element types of each node's inputs where known (initializers, Constants, declared
   * graph inputs): the loader widens integer tensors to int64, but quantised operators need to
   * know whether a zero point is int8 or uint8.  0 = unknown. */
  for (int k = 0; k < m->n_nodes; k++) {
    CnnfxNode *n = &m->nodes[k];
    n->in_type = g_new0(int, n->n_in + 1);
    for (int i = 0; i < n->n_in; i++) {
      int v = n->in[i];
      if (v < 0) continue;
      n->in_type[i] = m->values[v].init ? m->values[v].elem_type : m->values[v].is_input ? m->values[v].decl_type : 0;
    }
  }
  /* Per-op attribute checks */
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (n->def->check && !n->def->check(n, error)) {
      if (error && *error) g_prefix_error(error, "node '%s' (%s): ", n->name, n->op_type);
      return FALSE;
    }
  }
  return TRUE;
}

CnnfxModel *cnnfx_model_load(const void *data, size_t len, GError **error)
{
  if (!data || len == 0) {
    cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file: empty");
    return NULL;
  }
  Loader L = {0};
  L.m = g_new0(CnnfxModel, 1);
  L.m->by_name = g_hash_table_new(g_str_hash, g_str_equal);
  L.values = g_array_new(FALSE, TRUE, sizeof(CnnfxValue));
  L.nodes = g_array_new(FALSE, TRUE, sizeof(CnnfxNode));
  L.inputs = g_array_new(FALSE, FALSE, sizeof(int));
  L.outputs = g_array_new(FALSE, FALSE, sizeof(int));
  L.opsets = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  PbBuf b = {data, (const guint8 *)data + len};
  PbField f;
  int r;
  gboolean ok = FALSE, seen_graph = FALSE;
  while ((r = pb_next(&b, &f, error)) > 0) {
    if (f.field == 7 && f.wire == 2) {
      if (seen_graph) { pb_fail(error, "two graphs"); goto out; }
      seen_graph = TRUE;
      if (!parse_graph(&L, f.sub, error)) goto out;
    } else if (f.field == 8 && f.wire == 2) {
      PbBuf ob = f.sub;
      PbField g;
      char *domain = NULL;
      gint64 version = 0;
      while ((r = pb_next(&ob, &g, error)) > 0) {
        if (g.field == 1) {
          g_free(domain);
          if (!(domain = pb_string(&g, error))) goto out;
        } else if (g.field == 2 && g.wire == 0) version = (gint64)g.v;
      }
      if (r < 0) { g_free(domain); goto out; }
      if (version < 0 || version > 1000) version = 0;
      g_hash_table_replace(L.opsets, domain ? domain : g_strdup(""), GINT_TO_POINTER((int)version));
    }
  }
  if (r < 0) goto out;
  if (!seen_graph) {
    pb_fail(error, "no graph (is this an ONNX model file?)");
    goto out;
  }
  ok = finish_model(&L, error);
out:
  if (L.nodes) {
    for (guint i = 0; i < L.nodes->len; i++) node_clear(&g_array_index(L.nodes, CnnfxNode, i));
    g_array_free(L.nodes, TRUE);
  }
  if (L.values) {
    /* not moved into the model: names are owned by values; move them for cnnfx_model_free */
    L.m->n_values = (int)L.values->len;
    L.m->values = (CnnfxValue *)g_array_free(L.values, FALSE);
  }
  g_array_free(L.inputs, TRUE);
  g_array_free(L.outputs, TRUE);
  g_hash_table_destroy(L.opsets);
  if (!ok) {
    if (error && !*error) cnnfx_set_error(error, CNNFX_ERROR_PARSE, "malformed ONNX file");
    cnnfx_model_free(L.m);
    return NULL;
  }
  return L.m;
}

/* ---- accessors ------------------------------------------------------------------ */

int cnnfx_model_value_id(const CnnfxModel *m, const char *name)
{
  gpointer v = g_hash_table_lookup(m->by_name, name);
  return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

gboolean cnnfx_model_has_value(const CnnfxModel *m, const char *name)
{
  return cnnfx_model_value_id(m, name) >= 0;
}

int cnnfx_model_n_inputs(const CnnfxModel *m) { return m->n_inputs; }
const char *cnnfx_model_input_name(const CnnfxModel *m, int i) { return m->values[m->inputs[i]].name; }
int cnnfx_model_input_shape(const CnnfxModel *m, int i, int64_t *dims)
{
  const CnnfxValue *v = &m->values[m->inputs[i]];
  for (int k = 0; k < v->decl_ndim; k++) dims[k] = v->decl_dims[k];
  return v->decl_ndim;
}
int cnnfx_model_output_shape(const CnnfxModel *m, int i, int64_t *dims)
{
  const CnnfxValue *v = &m->values[m->outputs[i]];
  for (int k = 0; k < v->decl_ndim; k++) dims[k] = v->decl_dims[k];
  return v->decl_ndim;
}
int cnnfx_model_n_outputs(const CnnfxModel *m) { return m->n_outputs; }
const char *cnnfx_model_output_name(const CnnfxModel *m, int i) { return m->values[m->outputs[i]].name; }
int cnnfx_model_n_nodes(const CnnfxModel *m) { return m->n_nodes; }
const char *cnnfx_model_node_op(const CnnfxModel *m, int i) { return m->nodes[i].op_type; }
const char *cnnfx_model_node_name(const CnnfxModel *m, int i) { return m->nodes[i].name; }
int cnnfx_model_node_n_outputs(const CnnfxModel *m, int i) { return m->nodes[i].n_out; }
const char *cnnfx_model_node_output(const CnnfxModel *m, int i, int k)
{
  int v = m->nodes[i].out[k];
  return v >= 0 ? m->values[v].name : "";
}
const CnnfxTensor *cnnfx_model_initializer(const CnnfxModel *m, const char *name)
{
  int id = cnnfx_model_value_id(m, name);
  return id >= 0 ? m->values[id].init : NULL;
}
int cnnfx_model_opset(const CnnfxModel *m) { return m->opset; }

int cnnfx_model_node_n_inputs(const CnnfxModel *m, int i) { return m->nodes[i].n_in; }
const char *cnnfx_model_node_input(const CnnfxModel *m, int i, int k)
{
  int v = m->nodes[i].in[k];
  return v >= 0 ? m->values[v].name : "";
}
int cnnfx_model_producer(const CnnfxModel *m, const char *name)
{
  int id = cnnfx_model_value_id(m, name);
  return id >= 0 ? m->values[id].producer : -1;
}
