/* "sim": a simulated device, for tests only.
 *
 * It runs the CPU kernels of a subset of operators, but its memory is mapped PROT_NONE except
 * while one of its own calls runs (a kernel, an upload or download, a copy).  Host code that reads
 * or writes a tensor living on the device without a download, or a CPU kernel handed a device
 * tensor because a boundary copy is missing, therefore crashes at once instead of silently
 * working as it would on the CPU.  Every operator outside the subset falls back to the CPU, so a
 * real network crosses the boundary many times in each direction.  Results must equal the CPU
 * backend's exactly (same kernels, same order of operations). */
#include "cnnfx-private.h"
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
  GHashTable *regions; /* base pointer -> length (bytes, page multiple) */
  int depth;           /* nesting of enter/leave */
  size_t page;
} Sim;

static const char *const sim_ops[] = {
  "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "Sigmoid", "MaxPool", "AveragePool", "GlobalAveragePool",
  "GlobalMaxPool", "Add", "Sub", "Mul", "Concat", "Flatten", "Dropout", "Identity", NULL,
};

static void protect_all(Sim *sim, int prot)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, sim->regions);
  while (g_hash_table_iter_next(&it, &k, &v))
    if (mprotect(k, GPOINTER_TO_SIZE(v), prot) != 0) g_error("sim: mprotect failed"); /* cannot continue safely */
}

static void sim_enter(CnnfxBackend *b)
{
  Sim *sim = b->priv;
  if (sim->depth++ == 0) protect_all(sim, PROT_READ | PROT_WRITE);
}

static void sim_leave(CnnfxBackend *b)
{
  Sim *sim = b->priv;
  if (--sim->depth == 0) protect_all(sim, PROT_NONE);
}

static void *sim_buf_alloc(CnnfxBackend *b, size_t bytes, GError **error)
{
  Sim *sim = b->priv;
  size_t len = (MAX(bytes, 1) + sim->page - 1) / sim->page * sim->page;
  if (len < bytes) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "sim: out of device memory");
    return NULL;
  }
  void *p = mmap(NULL, len, sim->depth ? PROT_READ | PROT_WRITE : PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "sim: out of device memory (%zu MiB)", bytes >> 20);
    return NULL;
  }
  g_hash_table_insert(sim->regions, p, GSIZE_TO_POINTER(len));
  return p;
}

static void sim_buf_free(CnnfxBackend *b, void *p, size_t bytes)
{
  Sim *sim = b->priv;
  (void)bytes;
  if (!p) return;
  gpointer len = g_hash_table_lookup(sim->regions, p);
  if (!len) g_error("sim: freeing %p, which is not a device buffer", p);
  munmap(p, GPOINTER_TO_SIZE(len));
  g_hash_table_remove(sim->regions, p);
}

static gboolean sim_copy(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error)
{
  (void)error;
  sim_enter(b);
  if (bytes) memcpy(dst, src, bytes);
  sim_leave(b);
  return TRUE;
}

static gboolean sim_fill_zero(CnnfxBackend *b, void *dst, size_t bytes, GError **error)
{
  (void)error;
  sim_enter(b);
  if (bytes) memset(dst, 0, bytes);
  sim_leave(b);
  return TRUE;
}

static gboolean sim_accumulate(CnnfxBackend *b, float *dst, const float *src, size_t n, GError **error)
{
  (void)error;
  sim_enter(b);
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
  sim_leave(b);
  return TRUE;
}

static gboolean sim_supports(const CnnfxBackend *b, const CnnfxNode *n, CnnfxTensor *const *in)
{
  gboolean listed = FALSE;
  for (const char *const *o = sim_ops; *o && !listed; o++) listed = !strcmp(*o, n->op_type);
  if (!listed || strcmp(n->domain ? n->domain : "", "") || !cnnfx_cpu_kernel(b->simd, n->op_type)) return FALSE;
  for (int i = 0; i < n->n_in; i++)
    if (in[i] && in[i]->dtype != CNNFX_F32) return FALSE; /* float32 only, like a first GPU port */
  return TRUE;
}

static const CnnfxKernel *sim_kernel(const CnnfxBackend *b, const char *op_type)
{
  for (const char *const *o = sim_ops; *o; o++)
    if (!strcmp(*o, op_type)) return cnnfx_cpu_kernel(b->simd, op_type);
  return NULL;
}

static gboolean sim_sync(CnnfxBackend *b, GError **error)
{
  (void)b;
  (void)error;
  return TRUE;
}

static char *sim_describe(const CnnfxBackend *b)
{
  g_autofree char *ops = g_strjoinv(" ", (char **)sim_ops);
  return g_strdup_printf("sim: simulated device for tests (CPU kernels, %s, on memory that is unreadable "
                         "outside its own calls); runs %s, the rest falls back to the CPU",
                         cnnfx_simd_name(b->simd), ops);
}

static void sim_destroy(CnnfxBackend *b)
{
  Sim *sim = b->priv;
  if (!sim) return;
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, sim->regions);
  while (g_hash_table_iter_next(&it, &k, &v)) munmap(k, GPOINTER_TO_SIZE(v));
  g_hash_table_destroy(sim->regions);
  g_free(sim);
  b->priv = NULL;
}

static const CnnfxBackendIface sim_iface = {
  .name = "sim",
  .is_host = FALSE,
  .buf_alloc = sim_buf_alloc,
  .buf_free = sim_buf_free,
  .upload = sim_copy,
  .download = sim_copy,
  .copy = sim_copy,
  .fill_zero = sim_fill_zero,
  .accumulate = sim_accumulate,
  .supports = sim_supports,
  .kernel = sim_kernel,
  .enter = sim_enter,
  .leave = sim_leave,
  .synchronize = sim_sync,
  .describe = sim_describe,
  .destroy = sim_destroy,
};

CnnfxBackend *cnnfx_sim_backend_new(GError **error)
{
  (void)error;
  CnnfxBackend *b = g_new0(CnnfxBackend, 1);
  Sim *sim = g_new0(Sim, 1);
  long page = sysconf(_SC_PAGESIZE);
  sim->page = page > 0 ? (size_t)page : 4096;
  sim->regions = g_hash_table_new(g_direct_hash, g_direct_equal);
  b->iface = &sim_iface;
  b->priv = sim;
  cnnfx_backend_init_cpu_fields(b);
  return b;
}
