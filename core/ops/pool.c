/* Operator definitions (pool family): MaxPool, AveragePool (1-D/2-D/3-D), GlobalAveragePool,
 * GlobalMaxPool.  Attribute checks, shape inference, what backward keeps.  Backend-neutral; the
 * geometry is declared in core/ops/pool.h, the CPU kernels are in core/cpu/pool.c. */
#include "ops/pool.h"

static gboolean ints_attr_ok(const CnnfxNode *n, const char *name, int want, gboolean allow_zero, GError **error)
{
  const int64_t *v;
  int c = cnnfx_attr_ints(n, name, &v);
  if (c < 0) {
    if (cnnfx_attr(n, name)) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': attribute %s must be a list of ints",
                      n->op_type, n->name, name);
      return FALSE;
    }
    return TRUE;
  }
  if (c != want) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': attribute %s has %d values, expected %d", n->op_type,
                    n->name, name, c, want);
    return FALSE;
  }
  for (int i = 0; i < c; i++)
    if (v[i] < (allow_zero ? 0 : 1) || v[i] > (1 << 24)) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': attribute %s has invalid value %" G_GINT64_FORMAT,
                      n->op_type, n->name, name, v[i]);
      return FALSE;
    }
  return TRUE;
}

static gboolean pool_check(const CnnfxNode *n, GError **error)
{
  const int64_t *ks;
  int nk = cnnfx_attr_ints(n, "kernel_shape", &ks);
  if (nk < 1 || nk > POOL_MAX_SP) {
    cnnfx_set_error(error, nk < 1 ? CNNFX_ERROR_SHAPE : CNNFX_ERROR_UNSUPPORTED,
                    "%s '%s': kernel_shape must have 1 to %d values", n->op_type, n->name, POOL_MAX_SP);
    return FALSE;
  }
  if (!ints_attr_ok(n, "kernel_shape", nk, FALSE, error) || !ints_attr_ok(n, "strides", nk, FALSE, error) ||
      !ints_attr_ok(n, "dilations", nk, FALSE, error) || !ints_attr_ok(n, "pads", 2 * nk, TRUE, error))
    return FALSE;
  const char *ap = cnnfx_attr_string(n, "auto_pad", "NOTSET");
  if (strcmp(ap, "NOTSET") && strcmp(ap, "SAME_UPPER") && strcmp(ap, "SAME_LOWER") && strcmp(ap, "VALID")) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': unknown auto_pad '%s'", n->op_type, n->name, ap);
    return FALSE;
  }
  int64_t so = cnnfx_attr_int(n, "storage_order", 0);
  if (so != 0 && so != 1) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': storage_order must be 0 or 1", n->op_type, n->name);
    return FALSE;
  }
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': missing input", n->op_type, n->name);
    return FALSE;
  }
  return TRUE;
}

static gboolean check_f32_input(const CnnfxNode *n, const CnnfxTensor *t, int min_rank, GError **error)
{
  if (!t || t->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': only float32 input is supported", n->op_type,
                    n->name);
    return FALSE;
  }
  if (t->ndim < min_rank) return cnnfx_fail_shape(error, n, "input has rank %d, expected at least %d", t->ndim, min_rank);
  return TRUE;
}

/* Geometry from attributes and input dims (x_dims of rank 2 + nsp). */
gboolean cnnfx_pool_geom(const CnnfxNode *n, int ndim, const int64_t *xd, CnnfxPoolGeom *g, GError **error)
{
  if (!pool_check(n, error)) return FALSE;
  const int64_t *ks, *st, *dl, *pd;
  int nk = cnnfx_attr_ints(n, "kernel_shape", &ks);
  int ns = cnnfx_attr_ints(n, "strides", &st);
  int nd = cnnfx_attr_ints(n, "dilations", &dl);
  int np = cnnfx_attr_ints(n, "pads", &pd);
  if (ndim != nk + 2) return cnnfx_fail_shape(error, n, "input has rank %d, kernel_shape needs rank %d", ndim, nk + 2);
  const char *ap = cnnfx_attr_string(n, "auto_pad", "NOTSET");
  gboolean ceil_mode = cnnfx_attr_int(n, "ceil_mode", 0) != 0;
  memset(g, 0, sizeof *g);
  g->nsp = nk;
  if (xd[0] < 0 || xd[1] < 0) return cnnfx_fail_shape(error, n, "invalid input dims");
  g->planes = xd[0] * xd[1];
  int off = POOL_MAX_SP - nk;
  for (int i = 0; i < POOL_MAX_SP; i++) {
    g->I[i] = g->O[i] = g->k[i] = g->s[i] = g->d[i] = 1;
    g->pb[i] = g->pe[i] = 0;
  }
  for (int i = 0; i < nk; i++) {
    int j = off + i;
    int64_t in = xd[2 + i];
    int64_t k = ks[i], s = ns > 0 ? st[i] : 1, d = nd > 0 ? dl[i] : 1;
    int64_t dk = (k - 1) * d + 1;
    int64_t pb = 0, pe = 0, out;
    if (in <= 0) return cnnfx_fail_shape(error, n, "spatial dim %d is %" G_GINT64_FORMAT, i, in);
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      out = (in + s - 1) / s;
      int64_t tot = (out - 1) * s + dk - in;
      if (tot < 0) tot = 0;
      if (!strcmp(ap, "SAME_UPPER")) {
        pb = tot / 2;
        pe = tot - pb;
      } else {
        pe = tot / 2;
        pb = tot - pe;
      }
    } else {
      if (!strcmp(ap, "NOTSET") && np > 0) {
        pb = pd[i];
        pe = pd[nk + i];
      }
      int64_t span = in + pb + pe - dk;
      if (span < 0)
        return cnnfx_fail_shape(error, n, "kernel extent %" G_GINT64_FORMAT " larger than padded input %" G_GINT64_FORMAT,
                                dk, in + pb + pe);
      if (ceil_mode) { /* ceil_mode also applies to VALID, as in onnxruntime */
        out = (span + s - 1) / s + 1;
        if ((out - 1) * s >= in + pb) out--; /* last window may not start in the end padding */
      } else {
        out = span / s + 1;
      }
    }
    if (out <= 0) return cnnfx_fail_shape(error, n, "empty output along spatial dim %d", i);
    g->I[j] = in;
    g->O[j] = out;
    g->k[j] = k;
    g->s[j] = s;
    g->d[j] = d;
    g->pb[j] = pb;
    g->pe[j] = pe;
  }
  g->in_plane = g->I[0] * g->I[1] * g->I[2];
  g->out_plane = g->O[0] * g->O[1] * g->O[2];
  return TRUE;
}

static void out_dims(const CnnfxPoolGeom *g, const int64_t *xd, int64_t *od)
{
  od[0] = xd[0];
  od[1] = xd[1];
  for (int i = 0; i < g->nsp; i++) od[2 + i] = g->O[POOL_MAX_SP - g->nsp + i];
}

/* ---- global pools ------------------------------------------------------------------------ */

static gboolean global_check(const CnnfxNode *n, GError **error)
{
  if (n->n_in < 1 || n->in[0] < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "%s '%s': missing input", n->op_type, n->name);
    return FALSE;
  }
  return TRUE;
}


/* ---- definitions -------------------------------------------------------------------- */

static gboolean pool_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!check_f32_input(n, X, 3, error)) return FALSE;
  CnnfxPoolGeom g;
  if (!cnnfx_pool_geom(n, X->ndim, X->dims, &g, error)) return FALSE;
  int64_t od[CNNFX_MAX_DIMS];
  out_dims(&g, X->dims, od);
  cnnfx_meta_set(out[0], CNNFX_F32, X->ndim, od);
  /* MaxPool's optional Indices */
  for (int k = 1; k < n->n_out; k++) cnnfx_meta_set(out[k], CNNFX_I64, X->ndim, od);
  return TRUE;
}

static gboolean global_infer(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error)
{
  const CnnfxTensor *X = in[0];
  if (!check_f32_input(n, X, 2, error)) return FALSE;
  int64_t od[CNNFX_MAX_DIMS];
  for (int i = 0; i < X->ndim; i++) od[i] = i < 2 ? X->dims[i] : 1;
  cnnfx_meta_set(out[0], CNNFX_F32, X->ndim, od);
  return TRUE;
}

/* MaxPool's forward saves the argmax of every window (one byte per output for windows of up to 255
 * taps) when its backward will run, so the backward neither recomputes it nor keeps X alive. */
static size_t maxpool_aux_bytes(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out)
{
  CnnfxPoolGeom g;
  if (!in[0] || in[0]->dtype != CNNFX_F32 || !cnnfx_pool_geom(n, in[0]->ndim, in[0]->dims, &g, NULL)) return 0;
  (void)out;
  const size_t cnt = (size_t)(g.planes * g.out_plane);
  return cnt * (cnnfx_maxpool_aux_wide(&g) ? sizeof(int32_t) : sizeof(uint8_t));
}

/* The session gives the backward the aux state whenever it runs (aux_bytes is 0 only for an empty
 * output, whose backward reads nothing): X is not kept. */
static guint32 maxpool_saves(const CnnfxNode *n, const gboolean *need)
{
  (void)n;
  (void)need;
  return 0;
}

static const CnnfxOpDef def_maxpool = {.name = "MaxPool", .check = pool_check, .infer = pool_infer,
                                       .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0),
                                       .saves_fn = maxpool_saves, .aux_bytes = maxpool_aux_bytes};
static const CnnfxOpDef def_avgpool = {.name = "AveragePool", .check = pool_check, .infer = pool_infer,
                                       .differentiable = TRUE, .saves = 0};
static const CnnfxOpDef def_gmax = {.name = "GlobalMaxPool", .check = global_check, .infer = global_infer,
                                    .differentiable = TRUE, .saves = CNNFX_SAVE_IN(0)};
static const CnnfxOpDef def_gavg = {.name = "GlobalAveragePool", .check = global_check, .infer = global_infer,
                                    .differentiable = TRUE, .saves = 0};

const CnnfxOpDef *const cnnfx_opdefs_pool[] = {&def_maxpool, &def_avgpool, &def_gmax, &def_gavg, NULL};
