/* Sessions: plan once per input size, then run forward and backward steps on one or two backends.
 *
 * Planning (cnnfx_session_new, once):
 *   - active nodes: only those the targets depend on;
 *   - requires-grad: values that depend on a graph input (and on initializers in
 *     CNNFX_GRAD_WEIGHTS mode) through differentiable operator inputs.
 *
 * Planning (the first forward, and again whenever an input's shape changes):
 *   - shapes and types of every value from the operator definitions (CnnfxOpDef.infer), without
 *     running anything; nodes whose inputs are all known while planning (shape computations,
 *     constant folding of weights) are evaluated once on the CPU and become constants;
 *   - placement: each node runs on the session's backend when it supports the node, else on the
 *     CPU, with explicit copies where a value crosses between them; weights are uploaded once;
 *   - saved tensors and lifetimes: what each backward reads (CnnfxOpDef.saves), the last forward
 *     use of every value, the first backward that reads it.
 *
 * Memory: every tensor of a step (activations, boundary copies, gradients, op-private state) comes
 * from one allocator per device.  The first step of a plan allocates dynamically and records
 * (size, birth, death) of each block; the records are then packed by liveness into one arena per
 * device (best fit by size, offsets reused for blocks whose lifetimes do not overlap), and the
 * following steps take their blocks from the arena in the same order without any allocation.
 * A step that deviates from the record (it cannot, for a fixed plan and fixed seeds, but e.g. a
 * different set of backward seeds would) falls back to dynamic blocks and is recorded again.
 */
#include "cnnfx-private.h"
#include <limits.h>

#define MAX_DEV 2
#define ALIGN 64

/* ---- the record/replay allocator of one device ------------------------------------------------ */

typedef struct {
  size_t size;
  int born, died;
} Event;

typedef struct {
  void *p;
  size_t bytes;
  int ev;           /* index of the allocation in its step */
  gboolean dyn;     /* allocated on its own (not from the arena) */
} Block;

typedef struct {
  CnnfxBackend *b;
  CnnfxMem *mem;    /* host device: blocks are counted against the session's memory */
  gboolean host;
  int clock, n_alloc;
  GArray *ev;       /* Event, recording step */
  gboolean recording, replay, deviated;
  size_t *off, *size;
  int n_off;
  void *base;
  size_t arena, max_live;
  guint64 n_sys;    /* blocks allocated from the system (arena included) */
} Alloc;

static void *dev_raw_alloc(Alloc *a, size_t bytes, GError **error)
{
  if (a->host) return cnnfx_mem_alloc(a->mem, bytes, error); /* counted by the CnnfxMem */
  a->n_sys++;
  return a->b->iface->buf_alloc(a->b, bytes, error);
}

static void dev_raw_free(Alloc *a, void *p, size_t bytes)
{
  if (!p) return;
  if (a->host) cnnfx_mem_free(a->mem, p, bytes);
  else a->b->iface->buf_free(a->b, p, bytes);
}

static gboolean block_alloc(Alloc *a, size_t bytes, Block *blk, GError **error)
{
  bytes = (MAX(bytes, 1) + ALIGN - 1) / ALIGN * ALIGN;
  int i = a->n_alloc++;
  int t = a->clock++;
  blk->bytes = bytes;
  blk->ev = i;
  if (a->replay && !a->deviated && i < a->n_off && a->size[i] == bytes) {
    blk->p = (char *)a->base + a->off[i];
    blk->dyn = FALSE;
  } else {
    if (a->replay) a->deviated = TRUE;
    blk->p = dev_raw_alloc(a, bytes, error);
    blk->dyn = TRUE;
    if (!blk->p) return FALSE;
  }
  if (a->recording) {
    Event e = {bytes, t, INT_MAX};
    g_array_append_val(a->ev, e);
  }
  return TRUE;
}

static void block_free(Alloc *a, Block *blk)
{
  if (!blk->p) return;
  if (a->recording && blk->ev >= 0 && (guint)blk->ev < a->ev->len)
    g_array_index(a->ev, Event, blk->ev).died = a->clock++;
  if (blk->dyn) dev_raw_free(a, blk->p, blk->bytes);
  blk->p = NULL;
}

static void alloc_drop_arena(Alloc *a)
{
  if (a->base) dev_raw_free(a, a->base, a->arena);
  a->base = NULL;
  a->arena = 0;
  g_free(a->off);
  g_free(a->size);
  a->off = a->size = NULL;
  a->n_off = 0;
  a->replay = FALSE;
}

typedef struct {
  size_t off, end;
} Span;

static int cmp_span(const void *x, const void *y)
{
  const Span *a = x, *b = y;
  return a->off < b->off ? -1 : a->off > b->off;
}

/* Larger blocks first, then earlier ones (an insertion sort: a few thousand blocks, once per plan). */
static gboolean event_before(const Event *ev, int a, int b)
{
  if (ev[a].size != ev[b].size) return ev[a].size > ev[b].size;
  return ev[a].born < ev[b].born;
}

static void sort_events(int *order, int n, const Event *ev)
{
  for (int i = 1; i < n; i++) {
    int x = order[i], j = i - 1;
    for (; j >= 0 && event_before(ev, x, order[j]); j--) order[j + 1] = order[j];
    order[j + 1] = x;
  }
}

/* Pack the recorded blocks into one arena: largest first, each at the lowest offset that does not
 * collide with an already placed block alive at the same time. */
static void plan_arena(const Event *ev, int n, size_t *off, size_t *arena, size_t *max_live)
{
  int *order = g_new(int, (gsize)MAX(n, 0) + 1);
  for (int i = 0; i < n; i++) order[i] = i;
  sort_events(order, n, ev);
  gboolean *placed = g_new0(gboolean, (gsize)MAX(n, 0) + 1);
  Span *sp = g_new(Span, (gsize)MAX(n, 0) + 1);
  size_t top = 0;
  for (int r = 0; r < n; r++) {
    int i = order[r];
    int ns = 0;
    for (int j = 0; j < n; j++)
      if (placed[j] && ev[j].born < ev[i].died && ev[i].born < ev[j].died)
        sp[ns++] = (Span){off[j], off[j] + ev[j].size};
    qsort(sp, (size_t)ns, sizeof(Span), cmp_span);
    size_t best = SIZE_MAX, best_gap = SIZE_MAX, cur = 0;
    for (int s = 0; s < ns; s++) {
      if (sp[s].off > cur && sp[s].off - cur >= ev[i].size && sp[s].off - cur < best_gap) {
        best = cur;
        best_gap = sp[s].off - cur;
      }
      cur = MAX(cur, sp[s].end);
    }
    if (best == SIZE_MAX) best = cur;
    off[i] = best;
    placed[i] = TRUE;
    top = MAX(top, best + ev[i].size);
  }
  /* the largest sum of live blocks at any moment */
  size_t live = 0, peak = 0;
  int T = 0;
  for (int i = 0; i < n; i++) T = MAX(T, MAX(ev[i].born, ev[i].died == INT_MAX ? 0 : ev[i].died) + 1);
  long long *delta = g_new0(long long, (gsize)MAX(T, 0) + 2);
  for (int i = 0; i < n; i++) {
    delta[ev[i].born] += (long long)ev[i].size;
    if (ev[i].died != INT_MAX) delta[ev[i].died] -= (long long)ev[i].size;
  }
  for (int t = 0; t <= T; t++) {
    live = (size_t)((long long)live + delta[t]);
    peak = MAX(peak, live);
  }
  g_free(delta);
  g_free(order);
  g_free(placed);
  g_free(sp);
  *arena = top;
  *max_live = peak;
}

/* Between two steps (all blocks of the previous step are free again). */
static void alloc_next_step(Alloc *a)
{
  if (a->deviated) { /* the plan did not fit this step: record the next one afresh */
    alloc_drop_arena(a);
    a->recording = TRUE;
    g_array_set_size(a->ev, 0);
  } else if (a->recording && a->ev->len > 0) {
    int n = (int)a->ev->len;
    const Event *ev = (const Event *)a->ev->data;
    gboolean complete = TRUE;
    for (int i = 0; i < n; i++)
      if (ev[i].died == INT_MAX) complete = FALSE;
    if (complete) {
      gsize cnt = a->ev->len;
      size_t *off = g_new(size_t, cnt + 1), *size = g_new(size_t, cnt + 1), arena = 0, max_live = 0;
      plan_arena(ev, n, off, &arena, &max_live);
      for (int i = 0; i < n; i++) size[i] = ev[i].size;
      alloc_drop_arena(a);
      if (a->host) cnnfx_mem_clear(a->mem); /* blocks cached by the recording step are not needed now */
      a->base = dev_raw_alloc(a, arena, NULL);
      if (a->base) {
        a->arena = arena;
        a->max_live = max_live;
        a->off = off;
        a->size = size;
        a->n_off = n;
        a->replay = TRUE;
        a->recording = FALSE;
      } else { /* no room for the arena in one piece: stay dynamic */
        g_free(off);
        g_free(size);
      }
    }
    g_array_set_size(a->ev, 0);
  }
  a->clock = a->n_alloc = 0;
  a->deviated = FALSE;
}

static void alloc_reset(Alloc *a)
{
  alloc_drop_arena(a);
  g_array_set_size(a->ev, 0);
  a->recording = TRUE;
  a->deviated = FALSE;
  a->clock = a->n_alloc = 0;
}

/* ---- the session -------------------------------------------------------------------------------- */

typedef struct {
  Block blk;
  int dev;
} Scratch;

struct CnnfxSession {
  const CnnfxModel *m;
  CnnfxSessionOptions opts;
  CnnfxMem mem;              /* host memory: counted, limited */
  CnnfxMem kmem;             /* what kernels get for scratch: blocks of the host device's arena */
  GArray *scratch;           /* Scratch, live kernel scratch blocks (LIFO in practice) */
  int n_dev, host;           /* devices: 0 = the session's backend, host = the CPU one */
  CnnfxBackend *dev[MAX_DEV];
  CnnfxBackend *own_cpu;     /* CPU fallback created by the session */
  CnnfxExec exec[MAX_DEV];
  Alloc al[MAX_DEV];
  /* per node */
  gboolean *active;
  gboolean *folded;          /* evaluated while planning, or fused into its producer */
  int *fused;                /* Conv node: the Relu fused into it (-1 none); it writes that Relu's output */
  int *place;                /* device index */
  const CnnfxKernel **kern;  /* kernel on its device */
  Block *aux;
  size_t *aux_n;
  CnnfxNodeTime *prof;       /* opts.profile: per node */
  /* per value */
  gboolean *rg, *keep, *saved, *keep_grad;
  gboolean *want;            /* cnnfx_session_want_grads: the values backward reaches; NULL = all */
  gboolean *needed;          /* targets and what active nodes read (computed once) */
  int *last_fwd, *first_bwd;
  int *target_ids;
  int n_targets;
  gboolean planned;
  gboolean stale;            /* plan again at the next forward (a weight it folded or pointed at changed) */
  CnnfxTensor *meta;         /* planned dtype and shape; data = host pointer of a constant */
  gboolean *cst;             /* known while planning (weights, constants, folded, int64 inputs) */
  CnnfxTensor **fold;        /* folded values (owned, host) */
  int *home;                 /* device of a runtime value */
  CnnfxTensor *hdr[MAX_DEV]; /* headers per device; data = the value's storage there (or NULL) */
  Block *vblk;               /* runtime value on its home device */
  Block *mblk;               /* boundary copy on the other device */
  Block *cup;                /* constant uploaded to device 0 (when it is not the host) */
  CnnfxTensor **inputs;      /* graph inputs (caller's tensors, referenced) */
  CnnfxTensor **weights;     /* session override of an initializer */
  CnnfxTensor **plan_ival;   /* int64 input values the plan was made with */
  Block *gblk;               /* gradient on the value's home device */
  CnnfxTensor *ghdr;
  CnnfxTensor **hostv, **hostg; /* host copies for the API (device-resident values) */
  gboolean forward_done, backward_done;
  /* per-node argument arrays, max_io long */
  int max_io;
  CnnfxTensor **a_in, **a_out, **a_gout, **a_gin;
  gboolean *a_need;
  Block *a_tmp, *a_gblk;
  CnnfxTensor *a_thdr, *a_ghdr, **a_metap;
};

static int value_home(const CnnfxSession *s, int v)
{
  return s->cst[v] || s->m->values[v].is_input || s->m->values[v].init || s->weights[v] ? s->host : s->home[v];
}

static Alloc *alloc_of(CnnfxSession *s, int d)
{
  return &s->al[d];
}

/* Weights, constants and graph inputs keep their host storage; only their boundary copies are ours. */
static gboolean persistent(const CnnfxSession *s, int v)
{
  return s->cst[v] || s->m->values[v].init || s->weights[v] || s->m->values[v].is_input;
}

static void release_value(CnnfxSession *s, int v)
{
  int h = value_home(s, v);
  if (s->vblk[v].p) block_free(alloc_of(s, h), &s->vblk[v]);
  if (s->mblk[v].p) {
    block_free(alloc_of(s, s->n_dev - 1 - h), &s->mblk[v]);
    s->hdr[s->n_dev - 1 - h][v].data = NULL;
  }
  if (!persistent(s, v)) s->hdr[h][v].data = NULL;
}

static void release_grad(CnnfxSession *s, int v)
{
  if (s->gblk[v].p) block_free(alloc_of(s, value_home(s, v)), &s->gblk[v]);
  s->ghdr[v].data = NULL;
}

static void clear_runtime(CnnfxSession *s)
{
  if (!s->planned) return;
  for (int k = 0; k < s->m->n_nodes; k++)
    if (s->aux[k].p) block_free(alloc_of(s, s->place[k]), &s->aux[k]);
  for (int v = 0; v < s->m->n_values; v++) {
    release_value(s, v);
    release_grad(s, v);
  }
  s->forward_done = s->backward_done = FALSE;
}

static void drop_plan(CnnfxSession *s)
{
  if (!s->planned) return;
  clear_runtime(s);
  for (int v = 0; v < s->m->n_values; v++) {
    if (s->fold[v]) {
      cnnfx_tensor_unref(s->fold[v]);
      s->fold[v] = NULL;
    }
    if (s->cup[v].p) {
      s->dev[0]->iface->buf_free(s->dev[0], s->cup[v].p, s->cup[v].bytes);
      s->cup[v].p = NULL;
    }
    if (s->plan_ival[v]) {
      cnnfx_tensor_unref(s->plan_ival[v]);
      s->plan_ival[v] = NULL;
    }
  }
  for (int d = 0; d < s->n_dev; d++) alloc_reset(&s->al[d]);
  s->planned = FALSE;
}

void cnnfx_session_free(CnnfxSession *s)
{
  if (!s) return;
  if (s->meta) {
    drop_plan(s);
    for (int v = 0; v < s->m->n_values; v++) {
      if (s->inputs[v]) cnnfx_tensor_unref(s->inputs[v]);
      if (s->weights[v]) cnnfx_tensor_unref(s->weights[v]);
      if (s->hostv[v]) cnnfx_tensor_unref(s->hostv[v]);
      if (s->hostg[v]) cnnfx_tensor_unref(s->hostg[v]);
    }
  }
  for (int d = 0; d < s->n_dev; d++) {
    alloc_drop_arena(&s->al[d]);
    if (s->al[d].ev) g_array_free(s->al[d].ev, TRUE);
    g_free(s->hdr[d]);
  }
  g_free(s->active);
  g_free(s->folded);
  g_free(s->fused);
  g_free(s->place);
  g_free(s->kern);
  g_free(s->aux);
  g_free(s->aux_n);
  g_free(s->prof);
  g_free(s->rg);
  g_free(s->want);
  g_free(s->needed);
  g_free(s->keep);
  g_free(s->saved);
  g_free(s->keep_grad);
  g_free(s->last_fwd);
  g_free(s->first_bwd);
  g_free(s->target_ids);
  g_free(s->meta);
  g_free(s->cst);
  g_free(s->fold);
  g_free(s->home);
  g_free(s->vblk);
  g_free(s->mblk);
  g_free(s->cup);
  g_free(s->inputs);
  g_free(s->weights);
  g_free(s->plan_ival);
  g_free(s->gblk);
  g_free(s->ghdr);
  g_free(s->hostv);
  g_free(s->hostg);
  g_free(s->a_in);
  g_free(s->a_out);
  g_free(s->a_gout);
  g_free(s->a_gin);
  g_free(s->a_need);
  g_free(s->a_tmp);
  g_free(s->a_gblk);
  g_free(s->a_thdr);
  g_free(s->a_ghdr);
  g_free(s->a_metap);
  if (s->scratch) g_array_free(s->scratch, TRUE);
  cnnfx_mem_clear(&s->mem);
  if (s->own_cpu) cnnfx_backend_free(s->own_cpu);
  g_free(s);
}

static guint32 node_saves(const CnnfxNode *n, const gboolean *need)
{
  return n->def->saves_fn ? n->def->saves_fn(n, need) : n->def->saves;
}

/* Kernel scratch: recorded and replayed by the host device's allocator like every other block. */
static void *scratch_alloc(void *ctx, size_t bytes, GError **error)
{
  CnnfxSession *s = ctx;
  Scratch sc = {.dev = s->host};
  if (!block_alloc(&s->al[s->host], bytes, &sc.blk, error)) return NULL;
  g_array_append_val(s->scratch, sc);
  return sc.blk.p;
}

static void scratch_free(void *ctx, void *p, size_t bytes)
{
  CnnfxSession *s = ctx;
  (void)bytes;
  for (int i = (int)s->scratch->len - 1; i >= 0; i--) {
    Scratch *sc = &g_array_index(s->scratch, Scratch, i);
    if (sc->blk.p == p) {
      block_free(&s->al[sc->dev], &sc->blk);
      g_array_remove_index(s->scratch, (guint)i);
      return;
    }
  }
  g_warning("cnnfx: freeing scratch %p that the session did not hand out", p);
}

static void exec_init(CnnfxExec *x, CnnfxMem *mem, const CnnfxBackend *b)
{
  x->mem = mem;
  x->n_threads = b->n_threads;
  x->simd = b->simd;
  x->exact = b->exact;
  x->passive_wait = b->passive_wait;
  x->backend = b;
}

static gboolean fail_ids(CnnfxSession *s, GArray *tg)
{
  g_array_free(tg, TRUE);
  cnnfx_session_free(s);
  return FALSE;
}

static void compute_rg(CnnfxSession *s);

CnnfxSession *cnnfx_session_new(const CnnfxModel *m, CnnfxBackend *b, const CnnfxSessionOptions *opts,
                                GError **error)
{
  CnnfxSession *s = g_new0(CnnfxSession, 1);
  int nv = m->n_values, nn = m->n_nodes;
  s->m = m;
  if (opts) s->opts = *opts;
  s->opts.targets = NULL; /* copied below as ids */
  s->opts.keep_grads = NULL;
  s->mem.limit = s->opts.mem_limit;
  s->mem.cache = TRUE;
  s->kmem.hook_alloc = scratch_alloc;
  s->kmem.hook_free = scratch_free;
  s->kmem.hook_ctx = s;
  s->scratch = g_array_sized_new(FALSE, FALSE, sizeof(Scratch), 64);
  s->dev[0] = b;
  s->n_dev = 1;
  s->host = 0;
  if (!b->iface->is_host) {
    s->own_cpu = cnnfx_backend_new("cpu", error);
    if (!s->own_cpu) {
      g_free(s);
      return NULL;
    }
    cnnfx_backend_set_exact(s->own_cpu, b->exact);
    cnnfx_backend_set_passive_wait(s->own_cpu, b->passive_wait);
    s->own_cpu->simd = b->simd;
    s->dev[1] = s->own_cpu;
    s->n_dev = 2;
    s->host = 1;
  }
  for (int d = 0; d < s->n_dev; d++) {
    exec_init(&s->exec[d], &s->kmem, s->dev[d]);
    s->al[d].b = s->dev[d];
    s->al[d].mem = &s->mem;
    s->al[d].host = s->dev[d]->iface->is_host;
    s->al[d].ev = g_array_new(FALSE, FALSE, sizeof(Event));
    s->al[d].recording = TRUE;
    s->hdr[d] = g_new0(CnnfxTensor, nv + 1);
  }
  s->active = g_new0(gboolean, nn + 1);
  s->folded = g_new0(gboolean, nn + 1);
  s->fused = g_new0(int, nn + 1);
  s->place = g_new0(int, nn + 1);
  s->kern = g_new0(const CnnfxKernel *, nn + 1);
  s->aux = g_new0(Block, nn + 1);
  s->aux_n = g_new0(size_t, nn + 1);
  if (s->opts.profile) s->prof = g_new0(CnnfxNodeTime, nn + 1);
  s->rg = g_new0(gboolean, nv + 1);
  s->keep = g_new0(gboolean, nv + 1);
  s->saved = g_new0(gboolean, nv + 1);
  s->keep_grad = g_new0(gboolean, nv + 1);
  s->last_fwd = g_new(int, nv + 1);
  s->first_bwd = g_new(int, nv + 1);
  s->meta = g_new0(CnnfxTensor, nv + 1);
  s->cst = g_new0(gboolean, nv + 1);
  s->fold = g_new0(CnnfxTensor *, nv + 1);
  s->home = g_new0(int, nv + 1);
  s->vblk = g_new0(Block, nv + 1);
  s->mblk = g_new0(Block, nv + 1);
  s->cup = g_new0(Block, nv + 1);
  s->inputs = g_new0(CnnfxTensor *, nv + 1);
  s->weights = g_new0(CnnfxTensor *, nv + 1);
  s->plan_ival = g_new0(CnnfxTensor *, nv + 1);
  s->gblk = g_new0(Block, nv + 1);
  s->ghdr = g_new0(CnnfxTensor, nv + 1);
  s->hostv = g_new0(CnnfxTensor *, nv + 1);
  s->hostg = g_new0(CnnfxTensor *, nv + 1);

  s->max_io = 16;
  for (int k = 0; k < nn; k++) s->max_io = MAX(s->max_io, MAX(m->nodes[k].n_in, m->nodes[k].n_out));
  s->a_in = g_new0(CnnfxTensor *, s->max_io);
  s->a_out = g_new0(CnnfxTensor *, s->max_io);
  s->a_gout = g_new0(CnnfxTensor *, s->max_io);
  s->a_gin = g_new0(CnnfxTensor *, s->max_io);
  s->a_need = g_new0(gboolean, s->max_io);
  s->a_tmp = g_new0(Block, s->max_io);
  s->a_gblk = g_new0(Block, s->max_io);
  s->a_thdr = g_new0(CnnfxTensor, s->max_io);
  s->a_ghdr = g_new0(CnnfxTensor, s->max_io);
  s->a_metap = g_new0(CnnfxTensor *, s->max_io);
  for (int k = 0; k < nn; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (!n->def || !cnnfx_cpu_kernel(s->dev[s->host]->simd, n->op_type)) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "operator %s is not available on the %s backend",
                      n->op_type, cnnfx_backend_name(s->dev[s->host]));
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
        fail_ids(s, tg);
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
        fail_ids(s, tg);
        return NULL;
      }
      s->keep_grad[id] = TRUE;
    }
  }
  s->n_targets = (int)tg->len;
  s->target_ids = (int *)g_array_free(tg, FALSE);

  /* Active nodes: walk back from targets. */
  gboolean *needed = s->needed = g_new0(gboolean, nv + 1);
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

  compute_rg(s);
  return s;
}

/* May value v seed gradients in this session's mode (a graph input; a float initializer when
 * training)? */
static gboolean grad_seed_ok(const CnnfxSession *s, int v)
{
  const CnnfxValue *val = &s->m->values[v];
  return s->opts.grad != CNNFX_GRAD_NONE &&
         (val->is_input || (s->opts.grad == CNNFX_GRAD_WEIGHTS && val->init && val->init->dtype == CNNFX_F32));
}

/* Requires-grad: the seeds (every graph input and, when training, every float initializer; or
 * the values cnnfx_session_want_grads named) and every output of an active node with a
 * differentiable input that requires it. */
static void compute_rg(CnnfxSession *s)
{
  const CnnfxModel *m = s->m;
  const int nv = m->n_values, nn = m->n_nodes;
  for (int v = 0; v < nv; v++) s->rg[v] = grad_seed_ok(s, v) && (!s->want || s->want[v]);
  if (s->opts.grad == CNNFX_GRAD_NONE) return;
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

gboolean cnnfx_session_want_grads(CnnfxSession *s, const char *const *names, GError **error)
{
  const CnnfxModel *m = s->m;
  g_autofree gboolean *w = NULL;
  if (names) {
    w = g_new0(gboolean, m->n_values + 1);
    for (int i = 0; names[i]; i++) {
      int id = cnnfx_model_value_id(m, names[i]);
      if (id < 0 || !grad_seed_ok(s, id)) {
        cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' is not a graph input or (training) a float initializer of the model",
                        names[i]);
        return FALSE;
      }
      w[id] = TRUE;
    }
  }
  g_free(s->want);
  s->want = g_steal_pointer(&w);
  compute_rg(s);
  s->stale = TRUE; /* the next forward plans again: what is saved for backward changes */
  return TRUE;
}

/* Value written by output o of node k (a Conv with a fused Relu writes the Relu's output). */
static int node_out(const CnnfxSession *s, int k, int o)
{
  return s->fused[k] >= 0 && o == 0 ? s->m->nodes[s->fused[k]].out[0] : s->m->nodes[k].out[o];
}

/* Does node k's backward run (some output carries a gradient)? */
static gboolean node_carries(const CnnfxSession *s, int k)
{
  const CnnfxNode *n = &s->m->nodes[k];
  for (int o = 0; o < n->n_out; o++)
    if (n->out[o] >= 0 && s->rg[n->out[o]]) return TRUE;
  return FALSE;
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
  if (s->inputs[id]) cnnfx_tensor_unref(s->inputs[id]);
  s->inputs[id] = t;
  return TRUE;
}

static gboolean check_cancel(CnnfxSession *s, GError **error)
{
  if (s->opts.cancel && g_atomic_int_get(s->opts.cancel)) {
    cnnfx_set_error(error, CNNFX_ERROR_CANCELLED, "cancelled");
    return FALSE;
  }
  return TRUE;
}

static void meta_from(CnnfxTensor *h, const CnnfxTensor *t)
{
  memset(h, 0, sizeof *h);
  h->dtype = t->dtype;
  h->ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) h->dims[i] = t->dims[i];
  h->numel = t->numel;
  h->data = t->data;
  h->refcount = 1;
}

static const CnnfxTensor *const_value(const CnnfxSession *s, int v)
{
  if (s->weights[v]) return s->weights[v];
  if (s->m->values[v].init) return s->m->values[v].init;
  if (s->fold[v]) return s->fold[v];
  if (s->m->values[v].is_input && s->inputs[v] && s->inputs[v]->dtype == CNNFX_I64) return s->inputs[v];
  return NULL;
}

static size_t bytes_of(const CnnfxTensor *t)
{
  return t->numel * cnnfx_dtype_size(t->dtype);
}

/* Does the plan still fit the inputs (shapes, int64 values)? */
static gboolean plan_fits(CnnfxSession *s)
{
  const CnnfxModel *m = s->m;
  for (int i = 0; i < m->n_inputs; i++) {
    int v = m->inputs[i];
    CnnfxTensor *t = s->inputs[v];
    if (!t) continue;
    if (!cnnfx_same_shape(t, &s->meta[v]) || t->dtype != s->meta[v].dtype) return FALSE;
    if ((t->dtype == CNNFX_I64 && !s->plan_ival[v]) ||
        (s->plan_ival[v] && memcmp(s->plan_ival[v]->data, t->data, t->numel * cnnfx_dtype_size(t->dtype))))
      return FALSE;
  }
  return TRUE;
}

/* Evaluate a node whose inputs are all known, on the CPU, while planning. */
static gboolean fold_node(CnnfxSession *s, int k, CnnfxTensor *const *in, GError **error)
{
  const CnnfxNode *n = &s->m->nodes[k];
  CnnfxTensor **out = s->a_out;
  for (int o = 0; o < s->max_io; o++) out[o] = NULL;
  CnnfxTensor **mp = s->a_metap;
  for (int o = 0; o < n->n_out; o++) {
    memset(&s->a_thdr[o], 0, sizeof(CnnfxTensor));
    mp[o] = &s->a_thdr[o];
  }
  if (!n->def->infer(n, in, mp, error)) return FALSE;
  gboolean ok = TRUE;
  for (int o = 0; o < n->n_out && ok; o++)
    ok = (out[o] = cnnfx_tensor_alloc(&s->mem, mp[o]->dtype, mp[o]->ndim, mp[o]->dims, error)) != NULL;
  const CnnfxKernel *kern = cnnfx_cpu_kernel(s->dev[s->host]->simd, n->op_type);
  CnnfxExec fx = s->exec[s->host];
  fx.mem = &s->mem; /* scratch of plan-time evaluation: not part of any step */
  ok = ok && kern->forward(&fx, n, in, out, NULL, error);
  for (int o = 0; o < n->n_out; o++) {
    int v = n->out[o];
    if (ok && v >= 0) {
      s->fold[v] = out[o];
      s->cst[v] = TRUE;
      meta_from(&s->meta[v], out[o]);
    } else if (out[o]) {
      cnnfx_tensor_unref(out[o]);
    }
  }
  return ok;
}

/* Conv -> Relu where the Relu alone reads the Conv's output: the Conv kernel applies the ReLU as it
 * writes (and masks the gradient in its backward); the Relu node and its input tensor disappear. */
static void fuse_relus(CnnfxSession *s)
{
  const CnnfxModel *m = s->m;
  int nn = m->n_nodes, nv = m->n_values;
  int *readers = g_new0(int, nv + 1), *reader = g_new0(int, nv + 1);
  for (int k = 0; k < nn; k++) {
    if (!s->active[k] || s->folded[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    for (int i = 0; i < n->n_in; i++)
      if (n->in[i] >= 0) {
        readers[n->in[i]]++;
        reader[n->in[i]] = k;
      }
  }
  for (int k = 0; k < nn; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (!s->active[k] || s->folded[k] || strcmp(n->op_type, "Conv") || n->n_out != 1 || n->out[0] < 0) continue;
    int v = n->out[0], r = reader[v];
    if (readers[v] != 1 || s->keep[v] || s->keep_grad[v] || !cnnfx_kernel_fuses_relu(s->kern[k])) continue;
    const CnnfxNode *rn = &m->nodes[r];
    if (strcmp(rn->op_type, "Relu") || rn->n_in != 1 || rn->n_out != 1 || rn->out[0] < 0 || s->place[r] != s->place[k] ||
        s->rg[rn->out[0]] != s->rg[v])
      continue;
    s->fused[k] = r;
    s->folded[r] = TRUE; /* runs inside the Conv */
  }
  g_free(readers);
  g_free(reader);
}

static gboolean plan(CnnfxSession *s, GError **error)
{
  const CnnfxModel *m = s->m;
  drop_plan(s);
  int nv = m->n_values, nn = m->n_nodes;
  memset(s->cst, 0, sizeof(gboolean) * (size_t)nv);
  for (int v = 0; v < nv; v++) {
    memset(&s->meta[v], 0, sizeof(CnnfxTensor));
    s->home[v] = s->host;
    const CnnfxValue *val = &m->values[v];
    if (val->init || s->weights[v]) {
      /* weights are constants unless they are being trained */
      s->cst[v] = !(s->opts.grad == CNNFX_GRAD_WEIGHTS && val->init && val->init->dtype == CNNFX_F32);
      meta_from(&s->meta[v], s->weights[v] ? s->weights[v] : val->init);
      if (!s->cst[v]) s->meta[v].data = NULL;
    } else if (val->is_input && s->inputs[v]) {
      meta_from(&s->meta[v], s->inputs[v]);
      if (s->inputs[v]->dtype == CNNFX_I64) {
        s->cst[v] = TRUE;
        if (!(s->plan_ival[v] = cnnfx_tensor_copy(s->inputs[v], error))) return FALSE;
      } else {
        s->meta[v].data = NULL;
      }
    }
  }
  CnnfxTensor **in = s->a_in;
  for (int k = 0; k < nn; k++) s->fused[k] = -1;
  for (int k = 0; k < nn; k++) {
    s->folded[k] = FALSE;
    if (!s->active[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    gboolean all_known = TRUE;
    for (int i = 0; i < s->max_io; i++) in[i] = NULL;
    for (int i = 0; i < n->n_in; i++) {
      int v = n->in[i];
      if (v < 0) continue;
      in[i] = &s->meta[v];
      if (!s->cst[v]) all_known = FALSE;
      /* A graph input whose values decide a shape (Range's limits, a Reshape target given as an
       * input): its values become part of what the plan was made for. */
      if (i < 32 && (n->def->value_inputs >> i & 1u) && m->values[v].is_input && s->inputs[v] && !s->cst[v]) {
        if (!s->plan_ival[v] && !(s->plan_ival[v] = cnnfx_tensor_copy(s->inputs[v], error))) goto fail;
        s->meta[v].data = s->inputs[v]->data;
      }
    }
    /* Shape and Size read only the dimensions. */
    gboolean dims_only = !strcmp(n->op_type, "Shape") || !strcmp(n->op_type, "Size");
    if ((all_known || dims_only) && !node_carries(s, k)) {
      if (!fold_node(s, k, in, error)) goto fail;
      s->folded[k] = TRUE;
      continue;
    }
    CnnfxTensor **mp = s->a_metap;
    for (int o = 0; o < n->n_out; o++) {
      memset(&s->a_thdr[o], 0, sizeof(CnnfxTensor));
      mp[o] = &s->a_thdr[o];
    }
    if (!n->def->infer(n, in, mp, error)) goto fail;
    for (int o = 0; o < n->n_out; o++) {
      size_t numel;
      if (!cnnfx_dims_numel(mp[o]->ndim, mp[o]->dims, &numel)) {
        cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "output %d has an invalid shape", o);
        goto fail;
      }
      mp[o]->numel = numel;
      mp[o]->data = NULL;
      int v = n->out[o];
      if (v >= 0) s->meta[v] = *mp[o];
    }
    /* placement: the session's backend when it runs this node, else the CPU */
    int d = s->host;
    if (s->n_dev > 1 && s->dev[0]->iface->supports(s->dev[0], n, in) && s->dev[0]->iface->kernel(s->dev[0], n->op_type))
      d = 0;
    s->place[k] = d;
    s->kern[k] = s->dev[d]->iface->kernel(s->dev[d], n->op_type);
    for (int o = 0; o < n->n_out; o++)
      if (n->out[o] >= 0) s->home[n->out[o]] = d;
    continue;
  fail:
    if (error && *error) g_prefix_error(error, "node '%s' (%s): ", n->name, n->op_type);
    s->planned = TRUE; /* so that drop_plan frees what was folded */
    drop_plan(s);
    return FALSE;
  }
  for (int v = 0; v < nv; v++) /* values of graph inputs were lent to infer only */
    if (m->values[v].is_input && !s->cst[v]) s->meta[v].data = NULL;
  fuse_relus(s);
  /* Saved tensors and lifetimes (nodes that run at every step only) */
  for (int v = 0; v < nv; v++) {
    s->last_fwd[v] = -1;
    s->first_bwd[v] = G_MAXINT;
    s->saved[v] = FALSE;
  }
  for (int k = 0; k < nn; k++) {
    if (!s->active[k] || s->folded[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    for (int i = 0; i < n->n_in; i++)
      if (n->in[i] >= 0) s->last_fwd[n->in[i]] = k;
    if (!node_carries(s, k)) continue;
    gboolean *need = s->a_need;
    memset(need, 0, sizeof(gboolean) * s->max_io);
    for (int i = 0; i < n->n_in; i++)
      need[i] = n->in[i] >= 0 && s->rg[n->in[i]] && cnnfx_node_input_differentiable(n, i);
    guint32 sv = node_saves(n, need);
    if (s->fused[k] >= 0) sv |= CNNFX_SAVE_OUT(0); /* the ReLU mask */
    for (int i = 0; i < n->n_in && i < 16; i++)
      if (n->in[i] >= 0 && (sv & CNNFX_SAVE_IN(i))) {
        s->saved[n->in[i]] = TRUE;
        s->first_bwd[n->in[i]] = MIN(s->first_bwd[n->in[i]], k);
      }
    for (int o = 0; o < n->n_out && o < 16; o++) {
      int v = node_out(s, k, o);
      if (v >= 0 && (sv & CNNFX_SAVE_OUT(o))) {
        s->saved[v] = TRUE;
        s->first_bwd[v] = MIN(s->first_bwd[v], k);
      }
    }
  }
  /* Headers, and the constants the device nodes read uploaded once */
  s->planned = TRUE;
  for (int v = 0; v < nv; v++) {
    /* headers the session owns: a kernel may ref and unref them (never freed: refcount stays >= 1) */
    s->meta[v].refcount = 1;
    s->meta[v].mem = NULL;
    for (int d = 0; d < s->n_dev; d++) {
      s->hdr[d][v] = s->meta[v];
      s->hdr[d][v].data = NULL;
    }
    const CnnfxTensor *c = s->cst[v] ? const_value(s, v) : s->weights[v] ? s->weights[v] : m->values[v].init;
    if (c) s->hdr[s->host][v].data = c->data;
  }
  if (s->n_dev > 1)
    for (int k = 0; k < nn; k++) {
      if (!s->active[k] || s->folded[k] || s->place[k] != 0) continue;
      const CnnfxNode *n = &m->nodes[k];
      for (int i = 0; i < n->n_in; i++) {
        int v = n->in[i];
        if (v < 0 || !s->cst[v] || s->cup[v].p) continue;
        size_t bytes = bytes_of(&s->meta[v]);
        s->cup[v].bytes = bytes;
        if (!(s->cup[v].p = s->dev[0]->iface->buf_alloc(s->dev[0], bytes, error)) ||
            !s->dev[0]->iface->upload(s->dev[0], s->cup[v].p, s->hdr[s->host][v].data, bytes, error)) {
          drop_plan(s);
          return FALSE;
        }
        s->hdr[0][v].data = s->cup[v].p;
      }
    }
  return TRUE;
}

/* Copy between the host device and device 0 (either direction). */
static gboolean cross_copy(CnnfxSession *s, int dst_dev, void *dst, const void *src, size_t bytes, GError **error)
{
  CnnfxBackend *b = s->dev[0];
  if (dst_dev == 0) return b->iface->upload(b, dst, src, bytes, error);
  return b->iface->download(b, dst, src, bytes, error);
}

/* Header of value v usable on device d: the value itself, or a boundary copy made now. */
static CnnfxTensor *value_on(CnnfxSession *s, int v, int d, GError **error, gboolean *ok)
{
  CnnfxTensor *h = &s->hdr[d][v];
  *ok = TRUE;
  if (h->data || s->cst[v]) return h;
  int home = value_home(s, v);
  if (home == d) return h; /* released (dims only) */
  const CnnfxTensor *src = &s->hdr[home][v];
  if (!src->data) return h; /* released on its home too: dims only */
  size_t bytes = bytes_of(&s->meta[v]);
  if (!block_alloc(alloc_of(s, d), bytes, &s->mblk[v], error) ||
      !cross_copy(s, d, s->mblk[v].p, src->data, bytes, error)) {
    *ok = FALSE;
    return NULL;
  }
  h->data = s->mblk[v].p;
  return h;
}

static gboolean call_forward(CnnfxSession *s, int k, CnnfxTensor *const *in, CnnfxTensor *const *out, void *aux,
                             GError **error)
{
  CnnfxBackend *b = s->dev[s->place[k]];
  CnnfxExec x = s->exec[s->place[k]];
  x.fuse_relu = s->fused[k] >= 0;
  const gint64 t0 = s->prof ? g_get_monotonic_time() : 0;
  if (b->iface->enter) b->iface->enter(b);
  gboolean ok = s->kern[k]->forward(&x, &s->m->nodes[k], in, out, aux, error);
  if (b->iface->leave) b->iface->leave(b);
  if (s->prof) {
    if (ok && b->iface->synchronize) ok = b->iface->synchronize(b, error);
    s->prof[k].fwd_s += (double)(g_get_monotonic_time() - t0) * 1e-6;
    s->prof[k].fwd_calls++;
  }
  return ok;
}

static gboolean call_backward(CnnfxSession *s, int k, CnnfxTensor *const *in, CnnfxTensor *const *out,
                              CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                              GError **error)
{
  CnnfxBackend *b = s->dev[s->place[k]];
  CnnfxExec x = s->exec[s->place[k]];
  x.fuse_relu = s->fused[k] >= 0;
  const gint64 t0 = s->prof ? g_get_monotonic_time() : 0;
  if (b->iface->enter) b->iface->enter(b);
  gboolean ok = s->kern[k]->backward(&x, &s->m->nodes[k], in, out, gout, need, gin, aux, error);
  if (b->iface->leave) b->iface->leave(b);
  if (s->prof) {
    if (ok && b->iface->synchronize) ok = b->iface->synchronize(b, error);
    s->prof[k].bwd_s += (double)(g_get_monotonic_time() - t0) * 1e-6;
    s->prof[k].bwd_calls++;
  }
  return ok;
}

static gboolean run_node(CnnfxSession *s, int k, GError **error)
{
  const CnnfxModel *m = s->m;
  const CnnfxNode *n = &m->nodes[k];
  const int d = s->place[k];
  Alloc *a = alloc_of(s, d);
  CnnfxTensor **in = s->a_in, **out = s->a_out;
  for (int i = 0; i < s->max_io; i++) in[i] = out[i] = NULL;
  for (int i = 0; i < n->n_in; i++) {
    int v = n->in[i];
    if (v < 0) continue;
    gboolean ok;
    in[i] = value_on(s, v, d, error, &ok);
    if (!ok) return FALSE;
    if (!in[i]->data) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' has no value", m->values[v].name);
      return FALSE;
    }
  }
  gboolean absent = FALSE;
  for (int o = 0; o < n->n_out; o++) absent = absent || n->out[o] < 0;
  if (absent) { /* outputs the graph does not use: the kernel still writes them, into scratch */
    CnnfxTensor **mp = s->a_metap;
    for (int o = 0; o < n->n_out; o++) {
      memset(&s->a_thdr[o], 0, sizeof(CnnfxTensor));
      mp[o] = &s->a_thdr[o];
    }
    if (!n->def->infer(n, in, mp, error)) return FALSE;
  }
  for (int o = 0; o < n->n_out; o++) {
    int v = node_out(s, k, o);
    size_t bytes;
    if (v >= 0) {
      bytes = bytes_of(&s->meta[v]);
      if (!block_alloc(a, bytes, &s->vblk[v], error)) return FALSE;
      s->hdr[d][v].data = s->vblk[v].p;
      out[o] = &s->hdr[d][v];
    } else {
      CnnfxTensor *t = &s->a_thdr[o];
      if (!cnnfx_dims_numel(t->ndim, t->dims, &t->numel)) {
        cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "output %d has an invalid shape", o);
        return FALSE;
      }
      bytes = bytes_of(t);
      if (!block_alloc(a, bytes, &s->a_tmp[o], error)) return FALSE;
      t->data = s->a_tmp[o].p;
      t->refcount = 1;
      out[o] = t;
    }
  }
  void *aux = NULL;
  if (n->def->aux_bytes && s->opts.grad != CNNFX_GRAD_NONE && node_carries(s, k)) {
    size_t bytes = n->def->aux_bytes(n, in, out);
    s->aux_n[k] = bytes;
    if (bytes) {
      if (!block_alloc(a, bytes, &s->aux[k], error)) return FALSE;
      aux = s->aux[k].p;
    }
  }
  gboolean ok = call_forward(s, k, in, out, aux, error);
  for (int o = 0; o < n->n_out; o++)
    if (n->out[o] < 0) block_free(a, &s->a_tmp[o]);
  if (!ok) return FALSE;
  for (int o = 0; o < n->n_out; o++) {
    int v = node_out(s, k, o);
    /* Outputs nobody reads and nobody keeps: free at once. */
    if (v >= 0 && s->last_fwd[v] < 0 && !s->keep[v] && !s->saved[v]) release_value(s, v);
  }
  /* Free inputs at their last use (and boundary copies of inputs and constants nobody needs later). */
  for (int i = 0; i < n->n_in; i++) {
    int v = n->in[i];
    if (v < 0 || s->last_fwd[v] != k || s->keep[v] || s->saved[v]) continue;
    release_value(s, v);
  }
  return TRUE;
}

gboolean cnnfx_session_forward(CnnfxSession *s, GError **error)
{
  const CnnfxModel *m = s->m;
  for (int i = 0; i < m->n_inputs; i++) {
    int id = m->inputs[i];
    if (s->needed[id] && !s->inputs[id]) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "input '%s' was not set", m->values[id].name);
      return FALSE;
    }
  }
  clear_runtime(s);
  if (!s->planned || s->stale || !plan_fits(s)) {
    s->stale = FALSE;
    if (!plan(s, error)) return FALSE;
  }
  for (int d = 0; d < s->n_dev; d++) alloc_next_step(&s->al[d]);
  for (int i = 0; i < m->n_inputs; i++) {
    int v = m->inputs[i];
    if (s->inputs[v] && !s->cst[v]) s->hdr[s->host][v].data = s->inputs[v]->data;
  }
  for (int k = 0; k < m->n_nodes; k++) {
    if (!s->active[k] || s->folded[k]) continue;
    const CnnfxNode *n = &m->nodes[k];
    if (!check_cancel(s, error)) return FALSE;
    if (!run_node(s, k, error)) {
      if (error && *error) g_prefix_error(error, "node '%s' (%s): ", n->name, n->op_type);
      return FALSE;
    }
  }
  s->forward_done = TRUE;
  return TRUE;
}

/* Host-readable view of value v (a copy for device-resident values). */
static CnnfxTensor *host_view(CnnfxSession *s, int v, gboolean grad, GError **error)
{
  int home = value_home(s, v);
  CnnfxTensor *h = grad ? &s->ghdr[v] : &s->hdr[home][v];
  if (!h->data) return NULL;
  if (home == s->host) return h;
  CnnfxTensor **slot = grad ? &s->hostg[v] : &s->hostv[v];
  if (*slot && (!cnnfx_same_shape(*slot, h) || (*slot)->dtype != h->dtype)) {
    cnnfx_tensor_unref(*slot);
    *slot = NULL;
  }
  if (!*slot && !(*slot = cnnfx_tensor_alloc(&s->mem, h->dtype, h->ndim, h->dims, error))) return NULL;
  CnnfxBackend *b = s->dev[home];
  if (!b->iface->download(b, (*slot)->data, h->data, h->numel * cnnfx_dtype_size(h->dtype), error)) return NULL;
  return *slot;
}

CnnfxTensor *cnnfx_session_get(CnnfxSession *s, const char *name, GError **error)
{
  int id = cnnfx_model_value_id(s->m, name);
  if (id < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "no tensor named '%s' in the model", name);
    return NULL;
  }
  if (!s->planned) {
    const CnnfxTensor *c = s->weights[id] ? s->weights[id] : s->m->values[id].init;
    if (c) return (CnnfxTensor *)c;
    if (s->inputs[id]) return s->inputs[id];
  } else {
    if (s->m->values[id].is_input && s->inputs[id]) return s->inputs[id];
    if (s->cst[id] || s->weights[id] || s->m->values[id].init) {
      const CnnfxTensor *c = const_value(s, id);
      if (c) return (CnnfxTensor *)c;
    }
    GError *e = NULL;
    CnnfxTensor *t = host_view(s, id, FALSE, &e);
    if (t) return t;
    if (e) {
      g_propagate_error(error, e);
      return NULL;
    }
  }
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "tensor '%s' was not kept by this session (make it a target)", name);
  return NULL;
}

/* Add a gradient computed on device `from` (block gb, header gh) into value v's gradient. */
static gboolean accumulate(CnnfxSession *s, int v, int from, Block *gb, GError **error)
{
  const int to = value_home(s, v);
  CnnfxBackend *tb = s->dev[to];
  size_t bytes = s->meta[v].numel * sizeof(float);
  if (!s->gblk[v].p) {
    if (from == to) { /* adopt the block */
      s->gblk[v] = *gb;
      gb->p = NULL;
    } else {
      if (!block_alloc(alloc_of(s, to), bytes, &s->gblk[v], error) ||
          !cross_copy(s, to, s->gblk[v].p, gb->p, bytes, error))
        return FALSE;
      block_free(alloc_of(s, from), gb);
    }
    s->ghdr[v] = s->meta[v];
    s->ghdr[v].dtype = CNNFX_F32;
    s->ghdr[v].data = s->gblk[v].p;
    s->ghdr[v].refcount = 1;
    return TRUE;
  }
  if (from == to) {
    gboolean ok = tb->iface->accumulate(tb, s->gblk[v].p, gb->p, s->meta[v].numel, error);
    block_free(alloc_of(s, from), gb);
    return ok;
  }
  Block tmp = {0};
  gboolean ok = block_alloc(alloc_of(s, to), bytes, &tmp, error) && cross_copy(s, to, tmp.p, gb->p, bytes, error) &&
                tb->iface->accumulate(tb, s->gblk[v].p, tmp.p, s->meta[v].numel, error);
  block_free(alloc_of(s, to), &tmp);
  block_free(alloc_of(s, from), gb);
  return ok;
}

static gboolean backward_node(CnnfxSession *s, int k, GError **error)
{
  const CnnfxModel *m = s->m;
  const CnnfxNode *n = &m->nodes[k];
  const int d = s->place[k];
  Alloc *a = alloc_of(s, d);
  CnnfxTensor **in = s->a_in, **out = s->a_out, **gout = s->a_gout, **gin = s->a_gin;
  gboolean *need = s->a_need;
  gboolean any_out = FALSE, any_need = FALSE;
  for (int i = 0; i < s->max_io; i++) {
    in[i] = out[i] = gout[i] = gin[i] = NULL;
    need[i] = FALSE;
    s->a_gblk[i].p = NULL;
  }
  for (int o = 0; o < n->n_out; o++) {
    int v = node_out(s, k, o);
    if (v < 0) continue;
    out[o] = &s->hdr[d][v];
    if (s->gblk[v].p) {
      gout[o] = &s->ghdr[v];
      any_out = TRUE;
    }
  }
  for (int i = 0; i < n->n_in; i++) {
    int v = n->in[i];
    need[i] = v >= 0 && s->rg[v] && cnnfx_node_input_differentiable(n, i);
    if (need[i]) any_need = TRUE;
  }
  gboolean ok = TRUE;
  if (any_out && any_need) {
    if (!check_cancel(s, error)) return FALSE;
    for (int i = 0; i < n->n_in && ok; i++) {
      int v = n->in[i];
      if (v < 0) continue;
      in[i] = value_on(s, v, d, error, &ok);
    }
    for (int i = 0; i < n->n_in && ok; i++) {
      if (!need[i]) continue;
      size_t bytes = s->meta[n->in[i]].numel * sizeof(float);
      ok = block_alloc(a, bytes, &s->a_gblk[i], error) &&
           s->dev[d]->iface->fill_zero(s->dev[d], s->a_gblk[i].p, bytes, error);
      if (ok) {
        s->a_ghdr[i] = s->meta[n->in[i]];
        s->a_ghdr[i].dtype = CNNFX_F32;
        s->a_ghdr[i].data = s->a_gblk[i].p;
        s->a_ghdr[i].refcount = 1;
        gin[i] = &s->a_ghdr[i];
      }
    }
    ok = ok && call_backward(s, k, in, out, gout, need, gin, s->aux[k].p, error);
    for (int i = 0; i < n->n_in; i++) {
      if (!s->a_gblk[i].p) continue;
      if (ok) ok = accumulate(s, n->in[i], d, &s->a_gblk[i], error);
      if (s->a_gblk[i].p) block_free(a, &s->a_gblk[i]);
    }
    if (!ok) return FALSE;
  }
  if (s->aux[k].p) block_free(a, &s->aux[k]);
  /* Output gradients are consumed; saved activations whose earliest reader ran are freed. */
  for (int o = 0; o < n->n_out; o++) {
    int v = node_out(s, k, o);
    if (v >= 0 && s->gblk[v].p && !m->values[v].is_input && !s->keep_grad[v]) release_grad(s, v);
  }
  for (int i = 0; i < n->n_in + n->n_out; i++) {
    int v = i < n->n_in ? n->in[i] : node_out(s, k, i - n->n_in);
    if (v < 0 || s->first_bwd[v] != k || s->keep[v]) continue;
    release_value(s, v);
  }
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
    const CnnfxTensor *v = id >= 0 ? &s->meta[id] : NULL;
    gboolean computed = id >= 0 && (s->cst[id] || m->values[id].is_input || s->hdr[value_home(s, id)][id].data);
    if (!v || !computed) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "no computed tensor named '%s' to start backward from", names[i]);
      return FALSE;
    }
    if (!cnnfx_same_shape(v, seeds[i]) || seeds[i]->dtype != CNNFX_F32) {
      g_autofree char *a = cnnfx_shape_string(v);
      g_autofree char *b = cnnfx_shape_string(seeds[i]);
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "gradient for '%s' has shape %s, tensor has %s", names[i], b, a);
      return FALSE;
    }
  }
  for (int i = 0; i < n_seeds; i++) {
    int id = cnnfx_model_value_id(m, names[i]);
    if (!s->rg[id]) continue; /* does not depend on anything differentiable */
    int h = s->host;
    Block gb = {0};
    size_t bytes = seeds[i]->numel * sizeof(float);
    if (!block_alloc(alloc_of(s, h), bytes, &gb, error)) return FALSE;
    memcpy(gb.p, seeds[i]->data, bytes);
    if (!accumulate(s, id, h, &gb, error)) return FALSE;
  }
  s->backward_done = TRUE;
  for (int k = m->n_nodes - 1; k >= 0; k--) {
    if (!s->active[k] || s->folded[k]) continue;
    if (!backward_node(s, k, error)) {
      const CnnfxNode *n = &m->nodes[k];
      if (error && *error) g_prefix_error(error, "backward of node '%s' (%s): ", n->name, n->op_type);
      return FALSE;
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
  if (!s->gblk[id].p) {
    /* Nothing flowed here: the gradient is zero. */
    if (s->meta[id].dtype != CNNFX_F32) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "'%s' has no gradient (not a float tensor)", name);
      return NULL;
    }
    CnnfxTensor **slot = &s->hostg[id];
    if (*slot && !cnnfx_same_shape(*slot, &s->meta[id])) {
      cnnfx_tensor_unref(*slot);
      *slot = NULL;
    }
    if (!*slot && !(*slot = cnnfx_tensor_alloc(&s->mem, CNNFX_F32, s->meta[id].ndim, s->meta[id].dims, error)))
      return NULL;
    memset((*slot)->data, 0, (*slot)->numel * sizeof(float));
    return *slot;
  }
  return host_view(s, id, TRUE, error);
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
    if (!(s->weights[id] = cnnfx_tensor_copy(t, error))) return FALSE;
    s->stale = TRUE; /* headers point at the old value; gradients of this step stay readable */
    return TRUE;
  }
  size_t bytes = t->numel * cnnfx_dtype_size(t->dtype);
  memcpy(s->weights[id]->data, t->data, bytes);
  /* folded constants and uploaded copies may depend on it (training mode keeps weights variable) */
  if (s->planned && s->cst[id]) s->stale = TRUE;
  return TRUE;
}

size_t cnnfx_session_peak_bytes(const CnnfxSession *s) { return s->mem.peak; }
size_t cnnfx_session_current_bytes(const CnnfxSession *s) { return s->mem.current; }

gboolean cnnfx_session_shape(CnnfxSession *s, const char *name, int *ndim, int64_t *dims)
{
  int id = cnnfx_model_value_id(s->m, name);
  if (id < 0) return FALSE;
  const CnnfxTensor *t = NULL;
  if (s->planned && (s->meta[id].ndim > 0 || s->cst[id] || s->meta[id].numel)) t = &s->meta[id];
  if (!t) t = s->weights[id] ? s->weights[id] : s->m->values[id].init ? s->m->values[id].init : s->inputs[id];
  if (!t) return FALSE;
  *ndim = t->ndim;
  for (int i = 0; i < t->ndim; i++) dims[i] = t->dims[i];
  return TRUE;
}

void cnnfx_session_stats(const CnnfxSession *s, CnnfxSessionStats *st)
{
  memset(st, 0, sizeof *st);
  for (int d = 0; d < s->n_dev; d++) {
    st->arena_bytes += s->al[d].arena;
    st->max_live_bytes += s->al[d].max_live;
    st->system_allocs += s->al[d].n_sys;
  }
  st->system_allocs += s->mem.n_sys_allocs;
  st->peak_bytes = s->mem.peak;
  st->n_devices = s->n_dev;
  for (int k = 0; k < s->m->n_nodes; k++) {
    if (!s->active[k] || !s->planned) continue;
    if (s->folded[k]) st->nodes_folded++; /* also Relus fused into their Conv */
    else if (s->place[k] == s->host && s->n_dev > 1) st->nodes_fallback++;
    else st->nodes_device++;
  }
}

CnnfxNodeTime *cnnfx_session_profile(const CnnfxSession *s, int *n_nodes)
{
  if (!s->prof) return NULL;
  const int nn = s->m->n_nodes;
  CnnfxNodeTime *t = g_new0(CnnfxNodeTime, nn + 1);
  for (int k = 0; k < nn; k++) {
    const CnnfxNode *n = &s->m->nodes[k];
    t[k] = s->prof[k];
    t[k].op = n->op_type;
    t[k].name = n->n_out > 0 && n->out[0] >= 0 ? s->m->values[n->out[0]].name : "";
  }
  if (n_nodes) *n_nodes = nn;
  return t;
}

void cnnfx_session_profile_reset(CnnfxSession *s)
{
  if (s->prof) memset(s->prof, 0, sizeof(CnnfxNodeTime) * (size_t)(s->m->n_nodes + 1));
}
