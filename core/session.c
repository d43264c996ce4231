/* Sessions: plan, run forward, run backward from any set of tensors.
 *
 * Planning (once per session):
 *   - active nodes: only those the targets depend on;
 *   - requires-grad: values that depend on a graph input (and on initializers in
 *     CNNFX_GRAD_WEIGHTS mode) through differentiable operator inputs;
 *   - saved: the inputs/outputs that the backward of an active, grad-carrying node reads
 *     (CnnfxOp.saves); everything else is freed right after its last forward use;
 *   - during backward, saved activations are freed as soon as the earliest node that
 *     reads them has run, and intermediate gradients as soon as they are consumed.
 */
#include "cnnfx-private.h"

struct CnnfxSession {
  const CnnfxModel *m;
  CnnfxBackend *backend;
  CnnfxSessionOptions opts;
  CnnfxMem mem;
  CnnfxExec exec;
  const CnnfxOp **ops;     /* per node: legacy operator (NULL once split into def + kernel) */
  const CnnfxKernel **kern; /* per node: the backend's kernel for a split operator */
  void **aux;              /* per node: private state its forward leaves for its backward */
  size_t *aux_n;
  gboolean *active;        /* per node */
  gboolean *rg;            /* per value: requires grad */
  gboolean *keep;          /* per value: keep data after forward (targets) */
  gboolean *saved;         /* per value: needed by some backward */
  gboolean *keep_grad;     /* per value: backward keeps its gradient */
  int *last_fwd;           /* per value: last active consumer (forward) */
  int *first_bwd;          /* per value: smallest node index whose backward reads it */
  int *target_ids;
  int n_targets;
  CnnfxTensor **vals;      /* per value (runtime) */
  CnnfxTensor **weights;   /* per value: session override of an initializer */
  CnnfxTensor **grads;     /* per value */
  gboolean forward_done;
  gboolean backward_done;
  /* per-node argument arrays, max_io long (>= every node's inputs and outputs, >= 16) */
  int max_io;
  CnnfxTensor **a_in, **a_out, **a_gout, **a_gin;
  gboolean *a_need;
  CnnfxTensor *a_meta, **a_metap;
};

static void clear_runtime(CnnfxSession *s)
{
  for (int k = 0; k < s->m->n_nodes; k++)
    if (s->aux[k]) {
      cnnfx_mem_free(&s->mem, s->aux[k], s->aux_n[k]);
      s->aux[k] = NULL;
    }
  for (int v = 0; v < s->m->n_values; v++) {
    if (s->vals[v] && !s->m->values[v].is_input) {
      cnnfx_tensor_unref(s->vals[v]);
      s->vals[v] = NULL;
    }
    if (s->grads[v]) {
      cnnfx_tensor_unref(s->grads[v]);
      s->grads[v] = NULL;
    }
  }
  s->forward_done = s->backward_done = FALSE;
}

void cnnfx_session_free(CnnfxSession *s)
{
  if (!s) return;
  if (s->vals) clear_runtime(s);
  for (int v = 0; s->vals && v < s->m->n_values; v++) {
    if (s->vals[v]) cnnfx_tensor_unref(s->vals[v]);
    if (s->weights[v]) cnnfx_tensor_unref(s->weights[v]);
  }
  g_free(s->ops);
  g_free(s->kern);
  g_free(s->aux);
  g_free(s->aux_n);
  g_free(s->active);
  g_free(s->rg);
  g_free(s->keep);
  g_free(s->saved);
  g_free(s->keep_grad);
  g_free(s->last_fwd);
  g_free(s->first_bwd);
  g_free(s->target_ids);
  g_free(s->vals);
  g_free(s->weights);
  g_free(s->grads);
  g_free(s->a_in);
  g_free(s->a_out);
  g_free(s->a_gout);
  g_free(s->a_gin);
  g_free(s->a_need);
  g_free(s->a_meta);
  g_free(s->a_metap);
  cnnfx_mem_clear(&s->mem);
  g_free(s);
}

static guint32 node_saves(const CnnfxNode *n, const gboolean *need)
{
  if (n->def) return n->def->saves_fn ? n->def->saves_fn(n, need) : n->def->saves;
  return n->op->saves_fn ? n->op->saves_fn(n, need) : n->op->saves;
}

CnnfxSession *cnnfx_session_new(const CnnfxModel *m, CnnfxBackend *b, const CnnfxSessionOptions *opts,
                                GError **error)
{
  CnnfxSession *s = g_new0(CnnfxSession, 1);
  int nv = m->n_values, nn = m->n_nodes;
  s->m = m;
  s->backend = b;
  if (opts) s->opts = *opts;
  s->opts.targets = NULL; /* copied below as ids */
  s->mem.limit = s->opts.mem_limit;
  s->mem.cache = TRUE;
  s->exec.mem = &s->mem;
  s->exec.n_threads = cnnfx_backend_threads(b);
  s->exec.simd = cnnfx_backend_get_simd(b);
  s->exec.exact = cnnfx_backend_get_exact(b);
  s->exec.passive_wait = cnnfx_backend_get_passive_wait(b);
  s->ops = g_new0(const CnnfxOp *, nn + 1);
  s->kern = g_new0(const CnnfxKernel *, nn + 1);
  s->aux = g_new0(void *, nn + 1);
  s->aux_n = g_new0(size_t, nn + 1);
  s->active = g_new0(gboolean, nn + 1);
  s->rg = g_new0(gboolean, nv + 1);
  s->keep = g_new0(gboolean, nv + 1);
  s->saved = g_new0(gboolean, nv + 1);
  s->keep_grad = g_new0(gboolean, nv + 1);
  s->last_fwd = g_new(int, nv + 1);
  s->first_bwd = g_new(int, nv + 1);
  s->vals = g_new0(CnnfxTensor *, nv + 1);
  s->weights = g_new0(CnnfxTensor *, nv + 1);
  s->grads = g_new0(CnnfxTensor *, nv + 1);

  s->max_io = 16;
  for (int k = 0; k < nn; k++) s->max_io = MAX(s->max_io, MAX(m->nodes[k].n_in, m->nodes[k].n_out));
  s->a_in = g_new0(CnnfxTensor *, s->max_io);
  s->a_out = g_new0(CnnfxTensor *, s->max_io);
  s->a_gout = g_new0(CnnfxTensor *, s->max_io);
  s->a_gin = g_new0(CnnfxTensor *, s->max_io);
  s->a_need = g_new0(gboolean, s->max_io);
  s->a_meta = g_new0(CnnfxTensor, s->max_io);
  s->a_metap = g_new0(CnnfxTensor *, s->max_io);
  for (int k = 0; k < nn; k++) {
    if (m->nodes[k].def)
      s->kern[k] = cnnfx_backend_kernel(b, m->nodes[k].op_type);
    else
      s->ops[k] = cnnfx_backend_op(b, m->nodes[k].op_type);
    if (!s->ops[k] && !s->kern[k]) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "operator %s is not available on the %s backend",
                      m->nodes[k].op_type, cnnfx_backend_name(b));
      cnnfx_session_free(s);
      return NULL;
    }
  }
  /* Targets */
  GArray *tg = g_array_new(FALSE, FALSE, sizeof(int));
  if (opts && opts->targets) {
    for (const char *const *t = opts->targets; *t; t++) {
      int id = cnnfx_model_value_id(m, *t);
      if (id < 0) {
        cnnfx_set_error(error, CNNFX_ERROR_ARG, "no tensor named '%s' in the model (see `cnnfx info`)", *t);
        g_array_free(tg, TRUE);
        cnnfx_session_free(s);
        return NULL;
      }
      g_array_append_val(tg, id);
    }
  } else {
    g_array_append_vals(tg, m->outputs, m->n_outputs);
  }
  if (opts && opts->keep_grads) {
    for (const char *const *t = opts->keep_grads; *t; t++) {
      int id = cnnfx_model_value_id(m, *t);
      if (id < 0) {
        cnnfx_set_error(error, CNNFX_ERROR_ARG, "no tensor named '%s' in the model (see `cnnfx info`)", *t);
        g_array_free(tg, TRUE);
        cnnfx_session_free(s);
        return NULL;
      }
      s->keep_grad[id] = TRUE;
    }
  }
  s->n_targets = (int)tg->len;
  s->target_ids = (int *)g_array_free(tg, FALSE);

  /* Active nodes: walk back from targets. */
  gboolean *needed = g_new0(gboolean, nv + 1);
  for (int t = 0; t < s->n_targets; t++) {
    needed[s->target_ids[t]] = TRUE;
    s->keep[s->target_ids[t]] = TRUE;
  }
  for (int k = nn - 1; k >= 0; k--) {
    const CnnfxNode *n = &m->nodes[k];
    for (int o = 0; o < n->n_out && !s->active[k]; o++)
      if (n->out[o] >= 0 && needed[n->out[o]]) s->active[k] = TRUE;
    if (s->active[k])
      for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0) needed[n->in[i]] = TRUE;
  }
  g_free(needed);

  /* Requires-grad */
  if (s->opts.grad != CNNFX_GRAD_NONE) {
    for (int v = 0; v < nv; v++) {
      if (m->values[v].is_input) s->rg[v] = TRUE;
      if (s->opts.grad == CNNFX_GRAD_WEIGHTS && m->values[v].init && m->values[v].init->dtype == CNNFX_F32)
        s->rg[v] = TRUE;
    }
    for (int k = 0; k < nn; k++) {
      if (!s->active[k]) continue;
      const CnnfxNode *n = &m->nodes[k];
      gboolean any = FALSE;
      for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && s->rg[n->in[i]] && cnnfx_node_input_differentiable(n, i)) any = TRUE;
      for (int o = 0; o < n->n_out; o++)
        if (n->out[o] >= 0) s->rg[n->out[o]] = any;
    }
  }
  /* Saved tensors and lifetimes */
  for (int v = 0; v < nv; v++) {
    s->last_fwd[v] = -1;
    s->first_bwd[v] = G_MAXINT;
  }
  for (int k = 0; k < nn; k++) {
    if (!s->active[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    for (int i = 0; i < n->n_in; i++)
      if (n->in[i] >= 0) s->last_fwd[n->in[i]] = k;
    gboolean carries = FALSE;
    for (int o = 0; o < n->n_out; o++)
      if (n->out[o] >= 0 && s->rg[n->out[o]]) carries = TRUE;
    if (!carries) continue;
    gboolean *need = s->a_need;
    memset(need, 0, sizeof(gboolean) * s->max_io);
    for (int i = 0; i < n->n_in; i++)
      need[i] = n->in[i] >= 0 && s->rg[n->in[i]] && cnnfx_node_input_differentiable(n, i);
    guint32 sv = node_saves(n, need);
    for (int i = 0; i < n->n_in && i < 16; i++)
      if (n->in[i] >= 0 && (sv & CNNFX_SAVE_IN(i))) {
        s->saved[n->in[i]] = TRUE;
        s->first_bwd[n->in[i]] = MIN(s->first_bwd[n->in[i]], k);
      }
    for (int o = 0; o < n->n_out && o < 16; o++)
      if (n->out[o] >= 0 && (sv & CNNFX_SAVE_OUT(o))) {
        s->saved[n->out[o]] = TRUE;
        s->first_bwd[n->out[o]] = MIN(s->first_bwd[n->out[o]], k);
      }
  }
  return s;
}

gboolean cnnfx_session_set_input(CnnfxSession *s, const char *name, CnnfxTensor *t, GError **error)
{
  int id = cnnfx_model_value_id(s->m, name);
  if (id < 0 || !s->m->values[id].is_input) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' is not an input of the model", name);
    return FALSE;
  }
  const CnnfxValue *v = &s->m->values[id];
  if (v->decl_ndim >= 0 && v->decl_ndim != t->ndim) {
    g_autofree char *got = cnnfx_shape_string(t);
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "input '%s' must have rank %d, got a tensor of shape %s", name,
                    v->decl_ndim, got);
    return FALSE;
  }
  gboolean want_float = v->decl_type == 1, want_int = v->decl_type > 1;
  if ((want_float && t->dtype != CNNFX_F32) || (want_int && t->dtype != CNNFX_I64)) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' must be %s, got %s", name, want_float ? "float" : "integer",
                    t->dtype == CNNFX_F32 ? "float" : "integer");
    return FALSE;
  }
  if (!t->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' has no data", name);
    return FALSE;
  }
  cnnfx_tensor_ref(t);
  if (s->vals[id]) cnnfx_tensor_unref(s->vals[id]);
  s->vals[id] = t;
  return TRUE;
}

static CnnfxTensor *value_of(CnnfxSession *s, int v)
{
  if (s->weights[v]) return s->weights[v];
  if (s->m->values[v].init) return s->m->values[v].init;
  return s->vals[v];
}

static gboolean check_cancel(CnnfxSession *s, GError **error)
{
  if (s->opts.cancel && g_atomic_int_get(s->opts.cancel)) {
    cnnfx_set_error(error, CNNFX_ERROR_CANCELLED, "cancelled");
    return FALSE;
  }
  return TRUE;
}

/* Does node k's backward run (some output carries a gradient)? */
static gboolean node_carries(const CnnfxSession *s, int k)
{
  const CnnfxNode *n = &s->m->nodes[k];
  for (int o = 0; o < n->n_out; o++)
    if (n->out[o] >= 0 && s->rg[n->out[o]]) return TRUE;
  return FALSE;
}

/* A split operator: infer the output shapes, allocate them, run the backend's kernel. */
static gboolean run_forward(CnnfxSession *s, int k, CnnfxTensor *const *in, CnnfxTensor **out, GError **error)
{
  const CnnfxNode *n = &s->m->nodes[k];
  CnnfxTensor *meta = s->a_meta, **mp = s->a_metap;
  memset(meta, 0, sizeof(CnnfxTensor) * (size_t)s->max_io);
  for (int o = 0; o < n->n_out; o++) mp[o] = &meta[o];
  if (!n->def->infer(n, in, mp, error)) return FALSE;
  for (int o = 0; o < n->n_out; o++) {
    out[o] = cnnfx_tensor_alloc(&s->mem, meta[o].dtype, meta[o].ndim, meta[o].dims, error);
    if (!out[o]) return FALSE;
  }
  void *aux = NULL;
  if (n->def->aux_bytes && s->opts.grad != CNNFX_GRAD_NONE && node_carries(s, k)) {
    size_t bytes = n->def->aux_bytes(n, in, out);
    if (bytes) {
      aux = cnnfx_mem_alloc(&s->mem, bytes, error);
      if (!aux) return FALSE;
      s->aux[k] = aux;
      s->aux_n[k] = bytes;
    }
  }
  return s->kern[k]->forward(&s->exec, n, in, out, aux, error);
}

/* A split operator's backward: zero-filled input gradients, then the kernel. */
static gboolean run_backward(CnnfxSession *s, int k, CnnfxTensor *const *in, CnnfxTensor *const *out,
                             CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor **gin, GError **error)
{
  const CnnfxNode *n = &s->m->nodes[k];
  for (int i = 0; i < n->n_in; i++) {
    if (!need[i]) continue;
    gin[i] = cnnfx_tensor_alloc(&s->mem, CNNFX_F32, in[i]->ndim, in[i]->dims, error);
    if (!gin[i]) return FALSE;
    memset(gin[i]->data, 0, gin[i]->numel * sizeof(float));
  }
  gboolean ok = s->kern[k]->backward(&s->exec, n, in, out, gout, need, gin, s->aux[k], error);
  if (s->aux[k]) {
    cnnfx_mem_free(&s->mem, s->aux[k], s->aux_n[k]);
    s->aux[k] = NULL;
  }
  return ok;
}

gboolean cnnfx_session_forward(CnnfxSession *s, GError **error)
{
  const CnnfxModel *m = s->m;
  clear_runtime(s);
  for (int i = 0; i < m->n_inputs; i++) {
    int id = m->inputs[i];
    gboolean used = s->last_fwd[id] >= 0 || s->keep[id];
    if (used && !s->vals[id]) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' was not set", m->values[id].name);
      return FALSE;
    }
  }
  CnnfxTensor **in = s->a_in, **out = s->a_out;
  for (int k = 0; k < m->n_nodes; k++) {
    if (!s->active[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    if (!check_cancel(s, error)) return FALSE;
    for (int i = 0; i < n->n_in; i++) {
      in[i] = n->in[i] >= 0 ? value_of(s, n->in[i]) : NULL;
      if (n->in[i] >= 0 && (!in[i] || !in[i]->data)) {
        cnnfx_set_error(error, CNNFX_ERROR_ARG, "node '%s': input '%s' has no value", n->name,
                        m->values[n->in[i]].name);
        return FALSE;
      }
    }
    /* Slots past the node's inputs read as absent (NULL), never as a previous node's tensors. */
    for (int i = n->n_in; i < s->max_io; i++) in[i] = NULL;
    for (int o = 0; o < s->max_io; o++) out[o] = NULL;
    if (!(s->kern[k] ? run_forward(s, k, in, out, error) : s->ops[k]->forward(&s->exec, n, in, out, error))) {
      for (int o = 0; o < n->n_out; o++) if (out[o]) cnnfx_tensor_unref(out[o]);
      if (error && *error) g_prefix_error(error, "node '%s' (%s): ", n->name, n->op_type);
      return FALSE;
    }
    for (int o = 0; o < n->n_out; o++) {
      int v = n->out[o];
      if (v < 0 || !out[o]) {
        if (out[o]) cnnfx_tensor_unref(out[o]);
        continue;
      }
      s->vals[v] = out[o];
      /* Outputs nobody reads and nobody keeps: free at once. */
      if (s->last_fwd[v] < 0 && !s->keep[v] && !s->saved[v]) cnnfx_tensor_release_data(out[o]);
    }
    /* Free inputs at their last use. */
    for (int i = 0; i < n->n_in; i++) {
      int v = n->in[i];
      if (v < 0 || s->last_fwd[v] != k || s->keep[v] || s->saved[v]) continue;
      if (m->values[v].is_input || m->values[v].init || s->weights[v]) continue;
      if (s->vals[v]) cnnfx_tensor_release_data(s->vals[v]);
    }
  }
  s->forward_done = TRUE;
  return TRUE;
}

CnnfxTensor *cnnfx_session_get(CnnfxSession *s, const char *name, GError **error)
{
  int id = cnnfx_model_value_id(s->m, name);
  if (id < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "no tensor named '%s' in the model", name);
    return NULL;
  }
  CnnfxTensor *t = value_of(s, id);
  if (!t || !t->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "tensor '%s' was not kept by this session (make it a target)", name);
    return NULL;
  }
  return t;
}

static gboolean accumulate(CnnfxSession *s, int v, CnnfxTensor *g, GError **error)
{
  CnnfxTensor *have = s->grads[v];
  if (!have) {
    s->grads[v] = g;
    return TRUE;
  }
  if (!cnnfx_same_shape(have, g)) {
    cnnfx_tensor_unref(g);
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "gradient for '%s' has the wrong shape", s->m->values[v].name);
    return FALSE;
  }
  float *a = cnnfx_f32(have);
  const float *b = cnnfx_f32(g);
  size_t n = have->numel;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (size_t i = 0; i < n; i++) a[i] += b[i];
  cnnfx_tensor_unref(g);
  return TRUE;
}

gboolean cnnfx_session_backward(CnnfxSession *s, int n_seeds, const char *const *names, CnnfxTensor *const *seeds,
                                GError **error)
{
  const CnnfxModel *m = s->m;
  if (s->opts.grad == CNNFX_GRAD_NONE) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "session was created without gradients");
    return FALSE;
  }
  if (!s->forward_done || s->backward_done) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "backward needs a fresh forward pass");
    return FALSE;
  }
  for (int i = 0; i < n_seeds; i++) {
    int id = cnnfx_model_value_id(m, names[i]);
    CnnfxTensor *v = id >= 0 ? value_of(s, id) : NULL;
    if (!v) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "no computed tensor named '%s' to start backward from", names[i]);
      return FALSE;
    }
    if (!cnnfx_same_shape(v, seeds[i]) || seeds[i]->dtype != CNNFX_F32) {
      g_autofree char *a = cnnfx_shape_string(v);
      g_autofree char *b = cnnfx_shape_string(seeds[i]);
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "gradient for '%s' has shape %s, tensor has %s", names[i], b, a);
      return FALSE;
    }
    if (!s->rg[id]) continue; /* does not depend on anything differentiable */
    CnnfxTensor *g = cnnfx_tensor_alloc(&s->mem, CNNFX_F32, seeds[i]->ndim, seeds[i]->dims, error);
    if (!g) return FALSE;
    memcpy(g->data, seeds[i]->data, g->numel * sizeof(float));
    if (!accumulate(s, id, g, error)) return FALSE;
  }
  s->backward_done = TRUE;
  CnnfxTensor **in = s->a_in, **out = s->a_out, **gout = s->a_gout, **gin = s->a_gin;
  gboolean *need = s->a_need;
  for (int k = m->n_nodes - 1; k >= 0; k--) {
    if (!s->active[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    gboolean any_out = FALSE, any_need = FALSE;
    for (int o = 0; o < n->n_out; o++) {
      gout[o] = n->out[o] >= 0 ? s->grads[n->out[o]] : NULL;
      out[o] = n->out[o] >= 0 ? s->vals[n->out[o]] : NULL;
      if (gout[o]) any_out = TRUE;
    }
    for (int i = 0; i < n->n_in; i++) {
      int v = n->in[i];
      in[i] = v >= 0 ? value_of(s, v) : NULL;
      need[i] = v >= 0 && s->rg[v] && cnnfx_node_input_differentiable(n, i);
      gin[i] = NULL;
      if (need[i]) any_need = TRUE;
    }
    for (int i = n->n_in; i < s->max_io; i++) {
      in[i] = gin[i] = NULL;
      need[i] = FALSE;
    }
    for (int o = n->n_out; o < s->max_io; o++) out[o] = gout[o] = NULL;
    if (any_out && any_need) {
      if (!check_cancel(s, error)) return FALSE;
      if (!(s->kern[k] ? run_backward(s, k, in, out, gout, need, gin, error)
                       : s->ops[k]->backward(&s->exec, n, in, out, gout, need, gin, error))) {
        for (int i = 0; i < n->n_in; i++) if (gin[i]) cnnfx_tensor_unref(gin[i]);
        if (error && *error) g_prefix_error(error, "backward of node '%s' (%s): ", n->name, n->op_type);
        return FALSE;
      }
      for (int i = 0; i < n->n_in; i++) {
        if (!gin[i]) continue;
        if (!need[i]) {
          cnnfx_tensor_unref(gin[i]);
          continue;
        }
        if (!accumulate(s, n->in[i], gin[i], error)) {
          for (int j = i + 1; j < n->n_in; j++) if (gin[j]) cnnfx_tensor_unref(gin[j]);
          return FALSE;
        }
      }
    }
    /* Output gradients are consumed; saved activations whose earliest reader ran are freed. */
    for (int o = 0; o < n->n_out; o++) {
      int v = n->out[o];
      if (v >= 0 && s->grads[v] && !m->values[v].is_input && !s->keep_grad[v]) {
        cnnfx_tensor_unref(s->grads[v]);
        s->grads[v] = NULL;
      }
    }
    for (int i = 0; i < n->n_in + n->n_out; i++) {
      int v = i < n->n_in ? n->in[i] : n->out[i - n->n_in];
      if (v < 0 || s->first_bwd[v] != k || s->keep[v]) continue;
      if (m->values[v].is_input || m->values[v].init || s->weights[v]) continue;
      if (s->vals[v]) cnnfx_tensor_release_data(s->vals[v]);
    }
  }
  return TRUE;
}

CnnfxTensor *cnnfx_session_grad(CnnfxSession *s, const char *name, GError **error)
{
  int id = cnnfx_model_value_id(s->m, name);
  if (id < 0 || !(s->m->values[id].is_input || s->m->values[id].init || s->keep_grad[id])) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' is not an input or weight of the model, nor in keep_grads", name);
    return NULL;
  }
  if (!s->backward_done) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "no backward pass has run");
    return NULL;
  }
  if (!s->grads[id]) {
    /* Nothing flowed here: the gradient is zero. */
    CnnfxTensor *v = value_of(s, id);
    if (!v || v->dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' has no gradient (not a float tensor)", name);
      return NULL;
    }
    s->grads[id] = cnnfx_tensor_zeros_like(&s->mem, v, error);
    if (!s->grads[id]) return NULL;
  }
  return s->grads[id];
}

gboolean cnnfx_session_set_weight(CnnfxSession *s, const char *name, const CnnfxTensor *t, GError **error)
{
  int id = cnnfx_model_value_id(s->m, name);
  const CnnfxTensor *init = id >= 0 ? s->m->values[id].init : NULL;
  if (!init) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' is not a weight of the model", name);
    return FALSE;
  }
  if (!cnnfx_same_shape(init, t) || init->dtype != t->dtype) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "new value for '%s' has the wrong shape or type", name);
    return FALSE;
  }
  if (!s->weights[id]) {
    s->weights[id] = cnnfx_tensor_copy(t, error);
    return s->weights[id] != NULL;
  }
  memcpy(s->weights[id]->data, t->data, t->numel * cnnfx_dtype_size(t->dtype));
  return TRUE;
}

size_t cnnfx_session_peak_bytes(const CnnfxSession *s) { return s->mem.peak; }
size_t cnnfx_session_current_bytes(const CnnfxSession *s) { return s->mem.current; }

gboolean cnnfx_session_shape(CnnfxSession *s, const char *name, int *ndim, int64_t *dims)
{
  int id = cnnfx_model_value_id(s->m, name);
  CnnfxTensor *t = id >= 0 ? value_of(s, id) : NULL;
  if (!t) return FALSE;
  *ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) dims[i] = t->dims[i];
  return TRUE;
}
