/* Tensors, checked and counted allocation. */
#include "cnnfx-private.h"
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

G_DEFINE_QUARK(cnnfx-error-quark, cnnfx_error)

size_t cnnfx_dtype_size(CnnfxDType dt)
{
  return dt == CNNFX_I64 ? 8 : 4;
}

gboolean cnnfx_dims_numel(int ndim, const int64_t *dims, size_t *numel)
{
  size_t n = 1;
  if (ndim < 0 || ndim > CNNFX_MAX_DIMS) return FALSE;
  for (int i = 0; i < ndim; i++) {
    if (dims[i] < 0) return FALSE;
    if (dims[i] != 0 && n > (SIZE_MAX / 16) / (size_t)dims[i]) return FALSE;
    n *= (size_t)dims[i];
  }
  *numel = n;
  return TRUE;
}


/* Big blocks: 2 MiB aligned and marked for transparent huge pages (far fewer page faults on
 * first touch of large activations). */
static size_t block_align(size_t bytes)
{
  return bytes >= ((size_t)4 << 20) ? ((size_t)2 << 20) : 64;
}

static void cache_drop(CnnfxMem *mem, int i)
{
  free(mem->cache_p[i]);
  mem->cached -= mem->cache_n[i];
  mem->n_cached--;
  memmove(mem->cache_p + i, mem->cache_p + i + 1, (size_t)(mem->n_cached - i) * sizeof(void *));
  memmove(mem->cache_n + i, mem->cache_n + i + 1, (size_t)(mem->n_cached - i) * sizeof(size_t));
}

void cnnfx_mem_clear(CnnfxMem *mem)
{
  while (mem && mem->n_cached) cache_drop(mem, mem->n_cached - 1);
}

static void account(CnnfxMem *mem, size_t bytes)
{
  if (mem) {
    mem->current += bytes;
    if (mem->current > mem->peak) mem->peak = mem->current;
  }
}

void *cnnfx_mem_alloc(CnnfxMem *mem, size_t bytes, GError **error)
{
  if (bytes == 0) bytes = 1;
  if (mem && mem->hook_alloc) return mem->hook_alloc(mem->hook_ctx, bytes, error);
  if (mem && mem->limit && (bytes > mem->limit || mem->current > mem->limit - bytes)) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM,
                    "out of memory: need %.1f MiB more, %.1f MiB in use, limit %.1f MiB",
                    bytes / 1048576.0, mem->current / 1048576.0, mem->limit / 1048576.0);
    return NULL;
  }
  size_t align = block_align(bytes);
  size_t rounded = (bytes + align - 1) & ~(align - 1);
  if (rounded < bytes) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory: cannot allocate %zu MiB", bytes >> 20);
    return NULL;
  }
  if (mem && mem->cache) {
    for (int i = mem->n_cached - 1; i >= 0; i--)
      if (mem->cache_n[i] == rounded) { /* newest first */
        void *p = mem->cache_p[i];
        mem->cached -= rounded;
        mem->n_cached--;
        memmove(mem->cache_p + i, mem->cache_p + i + 1, (size_t)(mem->n_cached - i) * sizeof(void *));
        memmove(mem->cache_n + i, mem->cache_n + i + 1, (size_t)(mem->n_cached - i) * sizeof(size_t));
        account(mem, bytes);
        return p;
      }
    /* keep live + cached within the limit: drop the oldest cached blocks first */
    while (mem->n_cached && mem->limit && mem->current + mem->cached + rounded > mem->limit) cache_drop(mem, 0);
  }
  void *p = NULL;
  if (posix_memalign(&p, align, rounded) != 0 || !p) {
    p = NULL;
    if (mem && mem->n_cached) { /* give the cache back and try once more */
      cnnfx_mem_clear(mem);
      if (posix_memalign(&p, align, rounded) != 0) p = NULL;
    }
    if (!p) {
      cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory: cannot allocate %zu MiB", bytes >> 20);
      return NULL;
    }
  }
#ifdef MADV_HUGEPAGE
  if (align > 64) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  if (mem) mem->n_sys_allocs++;
  account(mem, bytes);
  return p;
}

void cnnfx_mem_free(CnnfxMem *mem, void *p, size_t bytes)
{
  if (!p) return;
  if (bytes == 0) bytes = 1;
  if (mem && mem->hook_free) {
    mem->hook_free(mem->hook_ctx, p, bytes);
    return;
  }
  if (mem) mem->current -= MIN(bytes, mem->current);
  size_t align = block_align(bytes), rounded = (bytes + align - 1) & ~(align - 1);
  if (mem && mem->cache && rounded <= mem->peak) {
    while (mem->n_cached && (mem->n_cached == CNNFX_MEM_CACHE || mem->cached + rounded > mem->peak))
      cache_drop(mem, 0);
    mem->cache_p[mem->n_cached] = p;
    mem->cache_n[mem->n_cached] = rounded;
    mem->n_cached++;
    mem->cached += rounded;
    return;
  }
  free(p);
}

float *cnnfx_scratch_f32(CnnfxMem *mem, size_t n, GError **error)
{
  if (n > SIZE_MAX / sizeof(float)) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory: scratch size overflow");
    return NULL;
  }
  return cnnfx_mem_alloc(mem, n * sizeof(float), error);
}

void cnnfx_scratch_free(CnnfxMem *mem, float *p, size_t n)
{
  cnnfx_mem_free(mem, p, n * sizeof(float));
}

gboolean cnnfx_scratch_f32_pair(CnnfxMem *mem, size_t na, float **a, size_t nb, float **b, GError **error)
{
  *b = NULL;
  if (!(*a = cnnfx_scratch_f32(mem, na, error))) return FALSE;
  if ((*b = cnnfx_scratch_f32(mem, nb, error))) return TRUE;
  cnnfx_scratch_free(mem, *a, na);
  *a = NULL;
  return FALSE;
}

CnnfxTensor *cnnfx_tensor_alloc(CnnfxMem *mem, CnnfxDType dt, int ndim, const int64_t *dims, GError **error)
{
  size_t numel;
  if (dt != CNNFX_F32 && dt != CNNFX_I64) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "unsupported tensor data type %d", (int)dt);
    return NULL;
  }
  if (!cnnfx_dims_numel(ndim, dims, &numel)) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "invalid tensor shape (rank %d, negative or too large dims)", ndim);
    return NULL;
  }
  CnnfxTensor *t = g_try_new0(CnnfxTensor, 1);
  if (!t) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory");
    return NULL;
  }
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->dims[i] = dims[i];
  t->numel = numel;
  t->refcount = 1;
  t->mem = mem;
  t->data = cnnfx_mem_alloc(mem, numel * cnnfx_dtype_size(dt), error);
  if (!t->data) {
    g_free(t);
    return NULL;
  }
  return t;
}

CnnfxTensor *cnnfx_tensor_alloc_like(CnnfxMem *mem, const CnnfxTensor *t, GError **error)
{
  return cnnfx_tensor_alloc(mem, t->dtype, t->ndim, t->dims, error);
}

CnnfxTensor *cnnfx_tensor_zeros_like(CnnfxMem *mem, const CnnfxTensor *t, GError **error)
{
  CnnfxTensor *r = cnnfx_tensor_alloc(mem, t->dtype, t->ndim, t->dims, error);
  if (r) memset(r->data, 0, r->numel * cnnfx_dtype_size(r->dtype));
  return r;
}

CnnfxTensor *cnnfx_tensor_new(CnnfxDType dtype, int ndim, const int64_t *dims, GError **error)
{
  CnnfxTensor *t = cnnfx_tensor_alloc(NULL, dtype, ndim, dims, error);
  if (t) memset(t->data, 0, t->numel * cnnfx_dtype_size(dtype));
  return t;
}

CnnfxTensor *cnnfx_tensor_new_f32(int ndim, const int64_t *dims, GError **error)
{
  return cnnfx_tensor_new(CNNFX_F32, ndim, dims, error);
}

CnnfxTensor *cnnfx_tensor_copy(const CnnfxTensor *t, GError **error)
{
  CnnfxTensor *r = cnnfx_tensor_alloc(NULL, t->dtype, t->ndim, t->dims, error);
  if (r && t->data) memcpy(r->data, t->data, t->numel * cnnfx_dtype_size(t->dtype));
  return r;
}

CnnfxTensor *cnnfx_tensor_ref(CnnfxTensor *t)
{
  if (t) t->refcount++;
  return t;
}

void cnnfx_tensor_release_data(CnnfxTensor *t)
{
  if (t && t->data) {
    cnnfx_mem_free(t->mem, t->data, t->numel * cnnfx_dtype_size(t->dtype));
    t->data = NULL;
  }
}

void cnnfx_tensor_unref(CnnfxTensor *t)
{
  if (!t || --t->refcount > 0) return;
  cnnfx_tensor_release_data(t);
  g_free(t);
}

gboolean cnnfx_same_shape(const CnnfxTensor *a, const CnnfxTensor *b)
{
  if (a->ndim != b->ndim) return FALSE;
  for (int i = 0; i < a->ndim; i++)
    if (a->dims[i] != b->dims[i]) return FALSE;
  return TRUE;
}

char *cnnfx_shape_string(const CnnfxTensor *t)
{
  GString *s = g_string_new(NULL);
  for (int i = 0; i < t->ndim; i++) g_string_append_printf(s, "%s%" G_GINT64_FORMAT, i ? "x" : "", t->dims[i]);
  if (t->ndim == 0) g_string_append(s, "scalar");
  return g_string_free(s, FALSE);
}

gboolean cnnfx_norm_axis(int64_t axis, int rank, int *out)
{
  if (axis < -(int64_t)rank || axis >= (int64_t)rank) {
    if (!(rank == 0 && (axis == 0 || axis == -1))) return FALSE;
    *out = 0;
    return TRUE;
  }
  *out = (int)(axis < 0 ? axis + rank : axis);
  return TRUE;
}
