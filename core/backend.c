/* Backends: one small interface (ggml-style); the CPU backend is always there,
 * a CUDA backend plugs in behind the same table of operator kernels. */
#include "cnnfx-private.h"
#include <cblas.h>
#include <omp.h>

typedef struct {
  const char *name;
  /* Kernel for an ONNX operator on this backend (NULL = not available here). */
  const CnnfxOp *(*lookup)(const char *op_type);
  char *(*describe)(const CnnfxBackend *b);
} CnnfxBackendIface;

struct CnnfxBackend {
  const CnnfxBackendIface *iface;
  int n_threads;
};

static char *cpu_describe(const CnnfxBackend *b)
{
  return g_strdup_printf("cpu: OpenBLAS %s, %d threads (OpenMP %d)", openblas_get_config(),
                         openblas_get_num_threads(), b->n_threads);
}

static const CnnfxBackendIface cpu_iface = {"cpu", cnnfx_op_lookup, cpu_describe};

CnnfxBackend *cnnfx_backend_new(const char *name, GError **error)
{
  if (!name || !strcmp(name, "auto") || !strcmp(name, "cpu")) {
    CnnfxBackend *b = g_new0(CnnfxBackend, 1);
    b->iface = &cpu_iface;
    b->n_threads = omp_get_max_threads();
    return b;
  }
  if (!strcmp(name, "cuda")) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "this cnnfx was built without the CUDA backend");
    return NULL;
  }
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "unknown device '%s' (expected auto, cpu or cuda)", name);
  return NULL;
}

void cnnfx_backend_free(CnnfxBackend *b)
{
  g_free(b);
}

const char *cnnfx_backend_name(const CnnfxBackend *b)
{
  return b->iface->name;
}

char *cnnfx_backend_describe(const CnnfxBackend *b)
{
  return b->iface->describe(b);
}

const CnnfxOp *cnnfx_backend_op(const CnnfxBackend *b, const char *op_type)
{
  return b->iface->lookup(op_type);
}

int cnnfx_backend_threads(const CnnfxBackend *b)
{
  return b->n_threads;
}
