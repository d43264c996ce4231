/* Backends: one small interface (ggml-style); the CPU backend is always there,
 * a CUDA backend plugs in behind the same table of operator kernels. */
#include "cnnfx-private.h"
#include <cblas.h>
#include <gmodule.h>
#include <omp.h>

static char *cpu_describe(const CnnfxBackend *b)
{
  CnnfxBlasInfo bi;
  cnnfx_blas_check(&bi);
  return g_strdup_printf("cpu: %s %s (core %s%s), %d threads (OpenMP %d), kernels %s%s", bi.name, bi.config,
                         bi.core, bi.generic ? ", GENERIC on this CPU" : "", bi.threads, b->n_threads,
                         cnnfx_simd_name(b->simd), b->exact ? ", exact" : "");
}

/* ---- CPU buffers: host memory ---------------------------------------------------------------- */

static void *cpu_buf_alloc(CnnfxBackend *b, size_t bytes, GError **error)
{
  (void)b;
  return cnnfx_mem_alloc(NULL, bytes, error);
}

static void cpu_buf_free(CnnfxBackend *b, void *p, size_t bytes)
{
  (void)b;
  cnnfx_mem_free(NULL, p, bytes);
}

static gboolean cpu_copy(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error)
{
  (void)b;
  (void)error;
  if (bytes) memcpy(dst, src, bytes);
  return TRUE;
}

static gboolean cpu_fill_zero(CnnfxBackend *b, void *dst, size_t bytes, GError **error)
{
  (void)b;
  (void)error;
  if (bytes) memset(dst, 0, bytes);
  return TRUE;
}

static gboolean cpu_accumulate(CnnfxBackend *b, float *dst, const float *src, size_t n, GError **error)
{
  (void)b;
  (void)error;
#pragma omp parallel for if (n > 65536) schedule(static)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
  return TRUE;
}

static gboolean cpu_supports(const CnnfxBackend *b, const CnnfxNode *n, CnnfxTensor *const *in)
{
  (void)in;
  return cnnfx_cpu_kernel(b->simd, n->op_type) != NULL;
}

static const CnnfxKernel *cpu_kernel_of(const CnnfxBackend *b, const char *op_type)
{
  return cnnfx_cpu_kernel(b->simd, op_type);
}

static const CnnfxBackendIface cpu_iface = {
  .name = "cpu",
  .is_host = TRUE,
  .buf_alloc = cpu_buf_alloc,
  .buf_free = cpu_buf_free,
  .upload = cpu_copy,
  .download = cpu_copy,
  .copy = cpu_copy,
  .fill_zero = cpu_fill_zero,
  .accumulate = cpu_accumulate,
  .supports = cpu_supports,
  .kernel = cpu_kernel_of,
  .describe = cpu_describe,
};

#define CNNFX_KERNEL_TABLE(f) cnnfx_cpu_kernels_##f,
static const CnnfxKernel *const *const cpu_kernel_tables[] = {CNNFX_OP_FAMILIES(CNNFX_KERNEL_TABLE)};

static const CnnfxKernel *kernel_table_find(const CnnfxKernel *const *t, const char *op_type)
{
  for (; *t; t++)
    if (!strcmp((*t)->name, op_type)) return *t;
  return NULL;
}

/* The CPU kernel compiled for `level` where one exists, else the common one. */
gboolean cnnfx_kernel_fuses_relu(const CnnfxKernel *k)
{
  if (!k) return FALSE;
  const CnnfxSimd levels[] = {CNNFX_SIMD_BASELINE, CNNFX_SIMD_AVX2, CNNFX_SIMD_AVX512};
  for (size_t i = 0; i < G_N_ELEMENTS(levels); i++)
    if (k == cnnfx_cpu_kernel(levels[i], "Conv")) return TRUE;
  return FALSE;
}

const CnnfxKernel *cnnfx_cpu_kernel(CnnfxSimd level, const char *op_type)
{
#ifdef CNNFX_HAVE_SIMD_VARIANTS
  const CnnfxKernel *const *const avx2[] = {cnnfx_cpu_kernels_conv_avx2, cnnfx_cpu_kernels_pool_avx2,
                                            cnnfx_cpu_kernels_activation_avx2, cnnfx_cpu_kernels_elementwise_avx2,
                                            cnnfx_cpu_kernels_norm_avx2};
  const CnnfxKernel *const *const avx512[] = {cnnfx_cpu_kernels_conv_avx512, cnnfx_cpu_kernels_pool_avx512,
                                              cnnfx_cpu_kernels_activation_avx512,
                                              cnnfx_cpu_kernels_elementwise_avx512, cnnfx_cpu_kernels_norm_avx512};
  const CnnfxKernel *const *const *tabs = level == CNNFX_SIMD_AVX512 ? avx512 : level == CNNFX_SIMD_AVX2 ? avx2 : NULL;
  for (size_t i = 0; tabs && i < G_N_ELEMENTS(avx2); i++) {
    const CnnfxKernel *k = kernel_table_find(tabs[i], op_type);
    if (k) return k;
  }
#else
  (void)level;
#endif
  for (size_t i = 0; i < G_N_ELEMENTS(cpu_kernel_tables); i++) {
    const CnnfxKernel *k = kernel_table_find(cpu_kernel_tables[i], op_type);
    if (k) return k;
  }
  return NULL;
}

const CnnfxKernel *cnnfx_backend_kernel(const CnnfxBackend *b, const char *op_type)
{
  return b->iface->kernel(b, op_type);
}

gboolean cnnfx_conv3x3_winograd(const CnnfxExec *x, const float *in, int N, int C, int H, int W, const float *w,
                                int K, const float *bias, int pad_t, int pad_l, int OH, int OW, float *out,
                                GError **error)
{
  const CnnfxSimd level = x && x->simd != CNNFX_SIMD_AUTO ? x->simd : cnnfx_cpu_simd();
#ifdef CNNFX_HAVE_SIMD_VARIANTS
  if (level == CNNFX_SIMD_AVX512)
    return cnnfx_conv3x3_winograd_avx512(x, in, N, C, H, W, w, K, bias, pad_t, pad_l, OH, OW, out, error);
  if (level == CNNFX_SIMD_AVX2)
    return cnnfx_conv3x3_winograd_avx2(x, in, N, C, H, W, w, K, bias, pad_t, pad_l, OH, OW, out, error);
#else
  (void)level; /* a build without SIMD variants (non-x86, the fuzz core) has the baseline only */
#endif
  return cnnfx_conv3x3_winograd_baseline(x, in, N, C, H, W, w, K, bias, pad_t, pad_l, OH, OW, out, error);
}

gboolean cnnfx_conv3x3_winograd_wgrad(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                      const float *dy, int K, int pad_t, int pad_l, int OH, int OW, float *dw,
                                      GError **error)
{
  const CnnfxSimd level = x && x->simd != CNNFX_SIMD_AUTO ? x->simd : cnnfx_cpu_simd();
#ifdef CNNFX_HAVE_SIMD_VARIANTS
  if (level == CNNFX_SIMD_AVX512)
    return cnnfx_conv3x3_winograd_wgrad_avx512(x, in, N, C, H, W, dy, K, pad_t, pad_l, OH, OW, dw, error);
  if (level == CNNFX_SIMD_AVX2)
    return cnnfx_conv3x3_winograd_wgrad_avx2(x, in, N, C, H, W, dy, K, pad_t, pad_l, OH, OW, dw, error);
#else
  (void)level;
#endif
  return cnnfx_conv3x3_winograd_wgrad_baseline(x, in, N, C, H, W, dy, K, pad_t, pad_l, OH, OW, dw, error);
}

void cnnfx_backend_init_cpu_fields(CnnfxBackend *b)
{
  b->n_threads = omp_get_max_threads();
  b->simd = cnnfx_cpu_simd();
}

/* "cuda" or "cuda:N": the device number, -1 if not a CUDA name. */
static int cuda_index(const char *name)
{
  if (!strcmp(name, "cuda")) return 0;
  if (strncmp(name, "cuda:", 5) || !name[5]) return -1;
  char *end = NULL;
  long v = strtol(name + 5, &end, 10);
  return *end || v < 0 || v > 1024 ? -1 : (int)v;
}

/* ---- the CUDA backend: a module loaded on demand (core/cuda/, libcnnfx-cuda.so) ---------------- */

#ifndef CNNFX_CUDA_MODULE_INSTALLED
#define CNNFX_CUDA_MODULE_INSTALLED ""
#endif
#ifndef CNNFX_CUDA_MODULE_BUILT
#define CNNFX_CUDA_MODULE_BUILT ""
#endif
#ifndef CNNFX_BUILD_ROOT
#define CNNFX_BUILD_ROOT ""
#endif

/* Cheap test before loading CUDA at all (auto): an NVIDIA driver with a device node. */
static gboolean cuda_gpu_present(void)
{
  if (!CNNFX_CUDA_MODULE_BUILT[0] && !g_getenv("CNNFX_CUDA_MODULE")) return FALSE; /* built without CUDA */
  return g_file_test("/dev/nvidiactl", G_FILE_TEST_EXISTS) && g_file_test("/dev/nvidia0", G_FILE_TEST_EXISTS);
}

/* Where the module is: $CNNFX_CUDA_MODULE, else the build tree's for programs run from the build
 * tree, else the installed one (LIBDIR/cnnfx/libcnnfx-cuda.so). */
static const char *cuda_module_path(void)
{
  const char *env = g_getenv("CNNFX_CUDA_MODULE");
  if (env && *env) return env;
  if (CNNFX_BUILD_ROOT[0] && CNNFX_CUDA_MODULE_BUILT[0]) {
    g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
    if ((exe && g_str_has_prefix(exe, CNNFX_BUILD_ROOT "/")) ||
        !g_file_test(CNNFX_CUDA_MODULE_INSTALLED, G_FILE_TEST_EXISTS))
      return CNNFX_CUDA_MODULE_BUILT;
  }
  return CNNFX_CUDA_MODULE_INSTALLED;
}

static CnnfxBackend *cuda_backend_new(int device, GError **error)
{
  const char *path = cuda_module_path();
  if (!path[0]) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND,
                    "CUDA backend not available: this cnnfx was built without it (meson -Dcuda=enabled)");
    return NULL;
  }
  if (!g_module_supported()) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "CUDA backend not available: no dynamic loading on this system");
    return NULL;
  }
  /* kept loaded for the life of the process (CUDA libraries do not like being unloaded) */
  GModule *mod = g_module_open(path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
  if (!mod) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "CUDA backend not available: cannot load %s: %s", path,
                    g_module_error());
    return NULL;
  }
  g_module_make_resident(mod);
  gpointer sym = NULL;
  if (!g_module_symbol(mod, CNNFX_CUDA_ENTRY, &sym) || !sym) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "CUDA backend not available: %s has no %s", path, CNNFX_CUDA_ENTRY);
    g_module_close(mod);
    return NULL;
  }
  CnnfxCudaBackendNew entry = (CnnfxCudaBackendNew)sym;
  GError *err = NULL;
  CnnfxBackend *b = entry(device, &err);
  if (!b) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "CUDA backend not available: %s", err ? err->message : "unknown error");
    g_clear_error(&err);
    return NULL;
  }
  cnnfx_backend_init_cpu_fields(b); /* the CPU fallback of its sessions follows these */
  if (!g_getenv("CNNFX_QUIET")) { /* the versions, once per backend (issue #15) */
    g_autofree char *d = b->iface->describe(b);
    g_printerr("cnnfx: %s\n", d);
  }
  return b;
}

CnnfxBackend *cnnfx_backend_new(const char *name, GError **error)
{
  /* "auto": the best device here.  CNNFX_DEVICE (e.g. "sim" for the test suite) overrides it. */
  if (!name || !strcmp(name, "auto")) {
    const char *env = g_getenv("CNNFX_DEVICE");
    if (env && *env && strcmp(env, "auto")) {
      name = env;
    } else {
      /* a GPU when the CUDA module loads and finds one, else the CPU without a word */
      CnnfxBackend *b = cuda_gpu_present() ? cuda_backend_new(0, NULL) : NULL;
      if (b) return b;
      name = "cpu";
    }
  }
  if (!strcmp(name, "cpu")) {
    CnnfxBackend *b = g_new0(CnnfxBackend, 1);
    b->iface = &cpu_iface;
    cnnfx_backend_init_cpu_fields(b);
    return b;
  }
  if (!strcmp(name, "sim")) return cnnfx_sim_backend_new(error);
  if (cuda_index(name) >= 0) return cuda_backend_new(cuda_index(name), error);
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "unknown device '%s' (expected auto, cpu, cuda, cuda:N or sim)", name);
  return NULL;
}

void cnnfx_backend_free(CnnfxBackend *b)
{
  if (!b) return;
  if (b->iface->destroy) b->iface->destroy(b);
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

void cnnfx_backend_set_exact(CnnfxBackend *b, gboolean exact)
{
  b->exact = !!exact;
}

gboolean cnnfx_backend_get_exact(const CnnfxBackend *b)
{
  return b->exact;
}

void cnnfx_backend_set_passive_wait(CnnfxBackend *b, gboolean passive)
{
  b->passive_wait = !!passive;
}

gboolean cnnfx_backend_get_passive_wait(const CnnfxBackend *b)
{
  return b->passive_wait;
}

gboolean cnnfx_backend_set_simd(CnnfxBackend *b, CnnfxSimd level, GError **error)
{
  if (level == CNNFX_SIMD_AUTO) level = cnnfx_cpu_simd();
  if (!cnnfx_cpu_supports(level)) {
    cnnfx_set_error(error, CNNFX_ERROR_BACKEND, "this CPU or build cannot run the %s kernels (best: %s)",
                    cnnfx_simd_name(level), cnnfx_simd_name(cnnfx_cpu_simd()));
    return FALSE;
  }
  b->simd = level;
  return TRUE;
}

CnnfxSimd cnnfx_backend_get_simd(const CnnfxBackend *b)
{
  return b->simd;
}

int cnnfx_backend_threads(const CnnfxBackend *b)
{
  return b->n_threads;
}
