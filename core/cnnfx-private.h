/* Internal interfaces of libcnnfx: graph representation, operator kernels,
 * memory accounting.  Not installed. */
#ifndef CNNFX_PRIVATE_H
#define CNNFX_PRIVATE_H

#include "cnnfx.h"
#include <string.h>

/* ---- memory accounting ------------------------------------------------------ */

#define CNNFX_MEM_CACHE 256

typedef struct CnnfxMem {
  size_t limit;    /* 0 = unlimited */
  size_t current;
  size_t peak;
  guint64 n_sys_allocs; /* blocks taken from the system (cache misses) */
  /* Optional: blocks come from elsewhere (a session's planned arena: kernel scratch is recorded and
   * replayed like every tensor of a step).  Accounting is then the hook's business. */
  void *(*hook_alloc)(void *ctx, size_t bytes, GError **error);
  void (*hook_free)(void *ctx, void *p, size_t bytes);
  void *hook_ctx;
  /* Freed big blocks kept for reuse (sessions run the same shapes again and again: reusing a
   * block saves the page faults of fresh memory).  Off unless `cache` is set; the cache never
   * holds more than the peak, and with a limit, current + cached stays within it. */
  gboolean cache;
  int n_cached;
  size_t cached;
  void *cache_p[CNNFX_MEM_CACHE];
  size_t cache_n[CNNFX_MEM_CACHE];
} CnnfxMem;

/* Checked allocation, counted against mem (may be NULL).  Sets CNNFX_ERROR_NOMEM. */
void *cnnfx_mem_alloc(CnnfxMem *mem, size_t bytes, GError **error);
void cnnfx_mem_free(CnnfxMem *mem, void *p, size_t bytes);
/* Release the cached blocks (a session's end). */
void cnnfx_mem_clear(CnnfxMem *mem);
/* Scratch buffers (im2col, transforms): counted, 64-byte aligned. */
float *cnnfx_scratch_f32(CnnfxMem *mem, size_t n, GError **error);
void cnnfx_scratch_free(CnnfxMem *mem, float *p, size_t n);
/* Two scratch blocks, or neither (both NULL, error set).  Free in reverse order. */
gboolean cnnfx_scratch_f32_pair(CnnfxMem *mem, size_t na, float **a, size_t nb, float **b, GError **error);

/* New tensor whose data is counted against mem. */
CnnfxTensor *cnnfx_tensor_alloc(CnnfxMem *mem, CnnfxDType dt, int ndim, const int64_t *dims, GError **error);
CnnfxTensor *cnnfx_tensor_alloc_like(CnnfxMem *mem, const CnnfxTensor *t, GError **error);
CnnfxTensor *cnnfx_tensor_zeros_like(CnnfxMem *mem, const CnnfxTensor *t, GError **error);
/* Free data but keep dims (memory planner). */
void cnnfx_tensor_release_data(CnnfxTensor *t);
/* numel of dims with overflow check; FALSE on overflow / negative dims */
gboolean cnnfx_dims_numel(int ndim, const int64_t *dims, size_t *numel);

/* ---- attributes ------------------------------------------------------------- */

typedef enum {
  CNNFX_ATTR_FLOAT = 1, CNNFX_ATTR_INT = 2, CNNFX_ATTR_STRING = 3, CNNFX_ATTR_TENSOR = 4,
  CNNFX_ATTR_GRAPH = 5, CNNFX_ATTR_FLOATS = 6, CNNFX_ATTR_INTS = 7, CNNFX_ATTR_STRINGS = 8,
} CnnfxAttrType;

typedef struct {
  char *name;
  CnnfxAttrType type;
  float f;
  int64_t i;
  char *s;              /* STRING (NUL-terminated) */
  CnnfxTensor *t;       /* TENSOR */
  int t_type;           /* TENSOR: ONNX element type as stored (before widening) */
  int n;                /* count for FLOATS / INTS / STRINGS */
  float *floats;
  int64_t *ints;
  char **strings;
} CnnfxAttr;

/* ---- graph ------------------------------------------------------------------ */


typedef struct CnnfxNode {
  char *name;
  char *op_type;
  char *domain;
  int opset;            /* opset version of the node's domain */
  int n_in, n_out;
  int *in;              /* value ids; -1 = optional input absent ("") */
  int *out;
  int n_attrs;
  CnnfxAttr *attrs;
  const struct CnnfxOpDef *def; /* backend-neutral definition, resolved at load time */
  int *in_type;         /* per input: ONNX element type where known (initializer, graph input), else 0 */
} CnnfxNode;

typedef struct {
  char *name;
  CnnfxTensor *init;    /* initializer / Constant value, or NULL */
  gboolean is_input;    /* graph input that is not an initializer */
  int producer;         /* node index, -1 for inputs/initializers */
  int decl_ndim;        /* declared shape from ValueInfo (inputs, outputs), -1 unknown */
  int decl_type;        /* declared ONNX element type, 0 unknown */
  int64_t decl_dims[CNNFX_MAX_DIMS];
  int elem_type;        /* initializers: ONNX element type as stored (ints are widened to int64) */
} CnnfxValue;

struct CnnfxModel {
  int opset;            /* default domain opset */
  int n_values;
  CnnfxValue *values;
  GHashTable *by_name;  /* name -> GINT_TO_POINTER(id+1) */
  int n_nodes;
  CnnfxNode *nodes;     /* topologically sorted */
  int n_inputs, n_outputs;
  int *inputs, *outputs;
};

int cnnfx_model_value_id(const CnnfxModel *m, const char *name); /* -1 if absent */

/* ---- operators -------------------------------------------------------------- */

/* What a kernel gets: the accounting for its outputs and scratch memory. */
typedef struct {
  CnnfxMem *mem;
  int n_threads;
  CnnfxSimd simd;       /* kernel set of the backend (AUTO: the best this CPU runs) */
  gboolean exact;       /* no Winograd / approximate kernels */
  gboolean passive_wait; /* OpenMP threads sleep when idle (OMP_WAIT_POLICY=passive) */
  /* Conv only (CnnfxKernel.forward/backward of a kernel listed by cnnfx_kernel_fuses_relu()): the
   * session fused the Relu that alone reads this Conv's output.  Forward writes max(0, conv + bias);
   * backward gets gout = the gradient at the ReLU's output and out[0] = that output, and must use
   * gout * (out[0] > 0) as the convolution's output gradient. */
  gboolean fuse_relu;
  /* The backend that runs the kernel (its device state: stream, library handles, workspace), set by
   * the session; NULL in kernels called outside a session (CPU kernels never read it). */
  const CnnfxBackend *backend;
} CnnfxExec;

/* Bits for CnnfxOpDef.saves: which tensors backward reads (the rest may be freed). */
#define CNNFX_SAVE_IN(i)  (1u << (i))
#define CNNFX_SAVE_OUT(i) (1u << (16 + (i)))
#define CNNFX_SAVE_ALL_IN 0xffffu


/* ---- operators: backend-neutral definitions (core/ops/) and per-backend kernels ---------------
 *
 * An operator is split in two:
 *   - its definition (CnnfxOpDef, one per ONNX op, in core/ops/FAMILY.c): attribute checks at load
 *     time, shape/type inference, which tensors the backward reads, which inputs are never
 *     differentiable, how many bytes of private state its forward leaves for its backward;
 *   - its kernels (CnnfxKernel, one per op and backend: core/cpu/FAMILY.c for the CPU), forward and
 *     backward together, writing into outputs the session has already allocated.
 * The session plans shapes and memory from the definitions alone and runs each node on a backend that
 * has a kernel for it (falling back to the CPU).
 */

typedef struct CnnfxOpDef {
  const char *name;     /* ONNX op_type */
  /* Optional: validate attributes at load time. */
  gboolean (*check)(const CnnfxNode *n, GError **error);
  /* Shape and type inference.  in[i] is NULL for an absent optional input; otherwise its dtype, ndim
   * and dims are valid and its data is valid ONLY when the value is known while planning (weights,
   * constants, int64 graph inputs, shape computations on them).  An input whose values the inference
   * reads must be listed in value_inputs.  Fill out[k]->dtype, ->ndim and ->dims for every
   * k < n->n_out (out[k] are blank headers; numel and data are set by the caller).  Never allocates
   * tensor data.  Errors: CNNFX_ERROR_SHAPE / _UNSUPPORTED with the same texts the kernels used. */
  gboolean (*infer)(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error);
  /* Bit i: infer reads the values (not only the shape) of input i (Reshape's shape, Slice's starts...). */
  guint32 value_inputs;
  /* The op carries gradients (has a backward on every backend that runs it). */
  gboolean differentiable;
  guint32 saves;        /* CNNFX_SAVE_* bits: what backward reads */
  guint32 nondiff_inputs; /* inputs that never get a gradient (shape / axes / indices inputs): bit i */
  /* Optional: what backward reads given which inputs need gradients (overrides `saves`). */
  guint32 (*saves_fn)(const CnnfxNode *n, const gboolean *need);
  /* Optional: bytes of op-private state the forward kernel leaves for the backward kernel (e.g. the
   * max-pool argmax), from the inferred shapes; called only when the node's backward will run. */
  size_t (*aux_bytes)(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out);
} CnnfxOpDef;

typedef struct CnnfxKernel {
  const char *name;     /* ONNX op_type */
  /* out[k]->data is allocated (contents undefined) with the inferred dtype and shape, for every
   * k < n->n_out (also outputs the graph does not use).  aux: aux_bytes bytes of private state for
   * the backward (NULL when the backward will not run or the op has no aux_bytes).  in[i] NULL for
   * absent optional inputs. */
  gboolean (*forward)(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                      void *aux, GError **error);
  /* gout[k] is NULL when output k got no gradient.  For each i with need[i], gin[i] is allocated like
   * in[i] (float32) and ZERO-FILLED: the kernel adds or writes its gradient there; gin[i] is NULL where
   * !need[i].  in[i]->dims are always valid, in[i]->data only if saved (CnnfxOpDef.saves). */
  gboolean (*backward)(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out,
                       CnnfxTensor *const *gout, const gboolean *need, CnnfxTensor *const *gin, void *aux,
                       GError **error);
} CnnfxKernel;

/* Does kernel k implement CnnfxExec.fuse_relu?  TRUE for the CPU Conv kernels of every SIMD level
 * (which the simulated device reuses).  backend.c. */
gboolean cnnfx_kernel_fuses_relu(const CnnfxKernel *k);

const CnnfxOpDef *cnnfx_opdef_lookup(const char *op_type);

/* Does input i of node n ever carry a gradient? */
gboolean cnnfx_node_input_differentiable(const CnnfxNode *n, int i);

/* Each core/ops/FAMILY.c exports one NULL-terminated table of definitions, each core/cpu/FAMILY.c one
 * of CPU kernels (the SIMD families are compiled once per level with the table name suffixed). */
#define CNNFX_OP_FAMILIES(X) X(elementwise) X(activation) X(shape) X(linalg) X(conv) X(pool) X(norm) \
  X(resize) X(quant)
#define CNNFX_DECL_OPDEFS(f) extern const CnnfxOpDef *const cnnfx_opdefs_##f[];
#define CNNFX_DECL_KERNELS(f) extern const CnnfxKernel *const cnnfx_cpu_kernels_##f[];
CNNFX_OP_FAMILIES(CNNFX_DECL_OPDEFS)
CNNFX_OP_FAMILIES(CNNFX_DECL_KERNELS)
/* Fill out[0] like in[0] (unary / same-shape operators); a ready-made CnnfxOpDef.infer. */
gboolean cnnfx_infer_same(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxTensor *const *out, GError **error);
/* For infer: FALSE + CNNFX_ERROR_UNSUPPORTED when the values of input i are not known while planning
 * (its shape depends on data computed by the network itself).  TRUE when in[i] is absent or known. */
gboolean cnnfx_infer_need_value(const CnnfxNode *n, CnnfxTensor *const *in, int i, GError **error);
/* Set a header's dtype and shape (infer helpers). */
void cnnfx_meta_set(CnnfxTensor *t, CnnfxDType dt, int ndim, const int64_t *dims);
int cnnfx_op_min_inputs(const char *op_type, int opset);

/* Quantised operators that ONNX Runtime's quantiser emits in the com.microsoft domain. */
gboolean cnnfx_op_quant_ms(const char *op_type);

/* ---- backends (backend.c, core/cpu/, core/sim/, later core/cuda/) ---------------------------
 *
 * A backend owns device memory and runs kernels.  Tensors placed on a backend carry its device
 * pointers in ->data; only a backend whose is_host is TRUE may be read by host code.  The session
 * (session.c) talks to backends through this table only. */
typedef struct CnnfxBackendIface {
  const char *name;
  gboolean is_host;     /* data pointers are host memory, readable outside kernel calls */
  /* Buffers: device memory (the session's arena, uploaded weights, boundary copies). */
  void *(*buf_alloc)(CnnfxBackend *b, size_t bytes, GError **error);
  void (*buf_free)(CnnfxBackend *b, void *p, size_t bytes);
  gboolean (*upload)(CnnfxBackend *b, void *dst, const void *host_src, size_t bytes, GError **error);
  gboolean (*download)(CnnfxBackend *b, void *host_dst, const void *src, size_t bytes, GError **error);
  gboolean (*copy)(CnnfxBackend *b, void *dst, const void *src, size_t bytes, GError **error);
  gboolean (*fill_zero)(CnnfxBackend *b, void *dst, size_t bytes, GError **error);
  /* dst[i] += src[i], both on this backend (gradient accumulation). */
  gboolean (*accumulate)(CnnfxBackend *b, float *dst, const float *src, size_t n, GError **error);
  /* Operators: can this backend run node n with these input types and shapes (attributes included)?
   * Unsupported nodes fall back to the CPU backend with explicit copies at the boundary. */
  gboolean (*supports)(const CnnfxBackend *b, const CnnfxNode *n, CnnfxTensor *const *in);
  const CnnfxKernel *(*kernel)(const CnnfxBackend *b, const char *op_type);
  /* Bracket every kernel call (a device makes its memory reachable to its own kernels only). */
  void (*enter)(CnnfxBackend *b);
  void (*leave)(CnnfxBackend *b);
  /* Stream: wait until queued work is done (no-op on synchronous backends). */
  gboolean (*synchronize)(CnnfxBackend *b, GError **error);
  /* Optional graph capture of a whole step and its replay (NULL: not supported). */
  gboolean (*capture_begin)(CnnfxBackend *b, GError **error);
  gboolean (*capture_end)(CnnfxBackend *b, GError **error);
  gboolean (*replay)(CnnfxBackend *b, GError **error);
  char *(*describe)(const CnnfxBackend *b);
  void (*destroy)(CnnfxBackend *b); /* free iface-private state (priv) */
} CnnfxBackendIface;

struct CnnfxBackend {
  const CnnfxBackendIface *iface;
  int n_threads;
  CnnfxSimd simd;      /* CPU kernels: never AUTO */
  gboolean exact;
  gboolean passive_wait;
  int device;          /* device index (cuda:N) */
  void *priv;          /* backend-private state */
};

/* The CUDA backend's module (core/cuda/, libcnnfx-cuda.so) exports this entry; core/backend.c loads
 * the module with GModule when a CUDA device is asked for. */
typedef CnnfxBackend *(*CnnfxCudaBackendNew)(int device, GError **error);
#define CNNFX_CUDA_ENTRY "cnnfx_cuda_backend_new"

/* The simulated device (core/sim/sim.c). */
CnnfxBackend *cnnfx_sim_backend_new(GError **error);
/* CPU kernel lookup for a SIMD level (backend.c): other backends reuse the CPU kernels. */
const CnnfxKernel *cnnfx_cpu_kernel(CnnfxSimd level, const char *op_type);
void cnnfx_backend_init_cpu_fields(CnnfxBackend *b);

/* Backend internals (backend.c) */
/* The backend's kernel for an op (NULL = not on this backend). */
const CnnfxKernel *cnnfx_backend_kernel(const CnnfxBackend *b, const char *op_type);
int cnnfx_backend_threads(const CnnfxBackend *b);

/* CPU kernel tables compiled for AVX2 and AVX-512 (core/meson.build builds the SIMD families of core/cpu/
 * and cpu/winograd.c once per level with the table names suffixed).  Only on x86 builds (CNNFX_HAVE_SIMD_VARIANTS). */
#ifdef CNNFX_HAVE_SIMD_VARIANTS
#define CNNFX_SIMD_TABLES(sfx)                                                                             \
  extern const CnnfxKernel *const cnnfx_cpu_kernels_elementwise##sfx[];                                    \
  extern const CnnfxKernel *const cnnfx_cpu_kernels_activation##sfx[];                                     \
  extern const CnnfxKernel *const cnnfx_cpu_kernels_conv##sfx[];                                           \
  extern const CnnfxKernel *const cnnfx_cpu_kernels_pool##sfx[];                                           \
  extern const CnnfxKernel *const cnnfx_cpu_kernels_norm##sfx[];
CNNFX_SIMD_TABLES(_avx2)
CNNFX_SIMD_TABLES(_avx512)
#endif

/* Attribute helpers */
const CnnfxAttr *cnnfx_attr(const CnnfxNode *n, const char *name);
int64_t cnnfx_attr_int(const CnnfxNode *n, const char *name, int64_t def);
float cnnfx_attr_float(const CnnfxNode *n, const char *name, float def);
const char *cnnfx_attr_string(const CnnfxNode *n, const char *name, const char *def);
/* INTS attribute; returns count (or -1 if absent) and sets *vals (borrowed). */
int cnnfx_attr_ints(const CnnfxNode *n, const char *name, const int64_t **vals);

/* Errors */
#define cnnfx_set_error(err, code, ...) g_set_error(err, CNNFX_ERROR, code, __VA_ARGS__)
gboolean cnnfx_fail_shape(GError **error, const CnnfxNode *n, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* A float as int64 the way ONNX Cast does it where C leaves it undefined: truncated toward zero,
 * saturated at the int64 range, NaN -> 0 (a plain cast of NaN or of |v| >= 2^63 is UB). */
static inline int64_t cnnfx_f2i64(double v)
{
  return v != v ? 0 : v >= 9.2233720368547758e18 ? INT64_MAX : v <= -9.2233720368547758e18 ? INT64_MIN : (int64_t)v;
}

/* Normalise an axis in [-r, r-1] to [0, r-1]; FALSE if out of range. */
gboolean cnnfx_norm_axis(int64_t axis, int rank, int *out);

/* ---- shared numeric kernels (kernels.c) ------------------------------------- */

/* C[M,N] = alpha * op(A) op(B) + beta * C, row-major; wraps cblas_sgemm. */
void cnnfx_sgemm(gboolean ta, gboolean tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

/* Broadcasting (numpy rules): out dims from a and b; FALSE if incompatible. */
gboolean cnnfx_broadcast_dims(int na, const int64_t *da, int nb, const int64_t *db, int *nout, int64_t *dout);
/* Sum-reduce g (shape gdims) down to shape tdims (broadcast inverse). */
void cnnfx_reduce_to(const float *g, int gndim, const int64_t *gdims, float *t, int tndim, const int64_t *tdims);

/* Winograd F(4x4,3x3) for 3x3, stride 1, dilation 1, groups 1 (winograd.c).
 * x: [N,C,H,W], w: [K,C,3,3], bias: [K] or NULL, y: [N,K,OH,OW] with OH = H + pt + pb - 2 etc.
 * Returns FALSE only on allocation failure (error set).  If accumulate, adds into y.
 * x->fuse_relu: writes max(0, conv + bias) (the Relu operator's numbers), applied in the output transform. */
gboolean cnnfx_conv3x3_winograd(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                const float *w, int K, const float *bias, int pad_t, int pad_l,
                                int OH, int OW, float *out, GError **error);
/* The same compiled for each SIMD level; cnnfx_conv3x3_winograd picks one by x->simd. */
#define CNNFX_WINOGRAD_DECL(name)                                                                          \
  gboolean name(const CnnfxExec *x, const float *in, int N, int C, int H, int W, const float *w, int K,      \
                const float *bias, int pad_t, int pad_l, int OH, int OW, float *out, GError **error);
CNNFX_WINOGRAD_DECL(cnnfx_conv3x3_winograd_baseline)
#ifdef CNNFX_HAVE_SIMD_VARIANTS
CNNFX_WINOGRAD_DECL(cnnfx_conv3x3_winograd_avx2)
CNNFX_WINOGRAD_DECL(cnnfx_conv3x3_winograd_avx512)
#endif
/* The weight gradient of the same convolution: dw[K][C][3][3] = sum over images and output positions of
 * dy * x (overwritten), with Winograd's F(3x3,4x4) form (winograd.c). */
gboolean cnnfx_conv3x3_winograd_wgrad(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                      const float *dy, int K, int pad_t, int pad_l, int OH, int OW, float *dw,
                                      GError **error);
#define CNNFX_WINOGRAD_WGRAD_DECL(name)                                                                    \
  gboolean name(const CnnfxExec *x, const float *in, int N, int C, int H, int W, const float *dy, int K,     \
                int pad_t, int pad_l, int OH, int OW, float *dw, GError **error);
CNNFX_WINOGRAD_WGRAD_DECL(cnnfx_conv3x3_winograd_wgrad_baseline)
#ifdef CNNFX_HAVE_SIMD_VARIANTS
CNNFX_WINOGRAD_WGRAD_DECL(cnnfx_conv3x3_winograd_wgrad_avx2)
CNNFX_WINOGRAD_WGRAD_DECL(cnnfx_conv3x3_winograd_wgrad_avx512)
#endif
/* Heuristic: is Winograd worth it for this layer on this machine? */
gboolean cnnfx_winograd_wins(int C, int K, int OH, int OW);

#endif
