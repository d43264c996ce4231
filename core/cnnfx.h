/* cnnfx — run convolutional networks forward and backward to the input.
 *
 * Public API of libcnnfx.  The core knows nothing about files, images or GIMP:
 * it takes ONNX bytes and tensors and gives tensors back.  Every fallible call
 * takes a GError** and returns FALSE/NULL on failure; nothing aborts on bad input
 * or on exhausted memory.
 */
#ifndef CNNFX_H
#define CNNFX_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

#define CNNFX_ERROR (cnnfx_error_quark())
GQuark cnnfx_error_quark(void);

typedef enum {
  CNNFX_ERROR_PARSE,       /* malformed ONNX / protobuf */
  CNNFX_ERROR_UNSUPPORTED, /* operator, attribute or data type we do not run */
  CNNFX_ERROR_SHAPE,       /* shapes that do not fit together */
  CNNFX_ERROR_NOMEM,       /* allocation failed or memory limit exceeded */
  CNNFX_ERROR_ARG,         /* bad argument from the caller (unknown tensor name, ...) */
  CNNFX_ERROR_CANCELLED,   /* the caller's cancel flag was raised */
  CNNFX_ERROR_BACKEND,     /* device/backend failure */
} CnnfxError;

#define CNNFX_MAX_DIMS 8

typedef enum {
  CNNFX_F32 = 1,  /* same numbers as ONNX TensorProto.DataType */
  CNNFX_I64 = 7,
} CnnfxDType;

/* A dense row-major tensor in host memory. */
typedef struct CnnfxTensor {
  CnnfxDType dtype;
  int ndim;
  int64_t dims[CNNFX_MAX_DIMS];
  size_t numel;
  void *data;          /* NULL once released by the memory planner (dims stay valid) */
  /* private */
  int refcount;
  struct CnnfxMem *mem; /* accounting owner, may be NULL */
} CnnfxTensor;

/* Host tensors made by callers (not counted against any session's memory limit). */
CnnfxTensor *cnnfx_tensor_new(CnnfxDType dtype, int ndim, const int64_t *dims, GError **error);
CnnfxTensor *cnnfx_tensor_new_f32(int ndim, const int64_t *dims, GError **error);
CnnfxTensor *cnnfx_tensor_copy(const CnnfxTensor *t, GError **error);
CnnfxTensor *cnnfx_tensor_ref(CnnfxTensor *t);
void cnnfx_tensor_unref(CnnfxTensor *t);
static inline float *cnnfx_f32(const CnnfxTensor *t) { return (float *)t->data; }
static inline int64_t *cnnfx_i64(const CnnfxTensor *t) { return (int64_t *)t->data; }
size_t cnnfx_dtype_size(CnnfxDType dt);
char *cnnfx_shape_string(const CnnfxTensor *t); /* "1x3x224x224", g_free() it */
gboolean cnnfx_same_shape(const CnnfxTensor *a, const CnnfxTensor *b);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxTensor, cnnfx_tensor_unref)

/* Parse an ONNX TensorProto (e.g. input_0.pb of ONNX's backend tests). */
CnnfxTensor *cnnfx_tensor_from_proto(const void *data, size_t len, char **name_out, GError **error);
/* Serialize as an ONNX TensorProto; returns a GBytes. */
GBytes *cnnfx_tensor_to_proto(const CnnfxTensor *t, const char *name, GError **error);

/* ---- models ---------------------------------------------------------------- */

typedef struct CnnfxModel CnnfxModel;

CnnfxModel *cnnfx_model_load(const void *data, size_t len, GError **error);
void cnnfx_model_free(CnnfxModel *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxModel, cnnfx_model_free)

int cnnfx_model_n_inputs(const CnnfxModel *m);          /* graph inputs that are not initializers */
const char *cnnfx_model_input_name(const CnnfxModel *m, int i);
/* Declared shape of input i; symbolic/unknown dims are -1.  Returns ndim (or -1 if unknown). */
int cnnfx_model_input_shape(const CnnfxModel *m, int i, int64_t *dims);
/* Declared shape of output i (-1 for unknown dimensions); returns the rank, -1 if undeclared. */
int cnnfx_model_output_shape(const CnnfxModel *m, int i, int64_t *dims);
int cnnfx_model_n_outputs(const CnnfxModel *m);
const char *cnnfx_model_output_name(const CnnfxModel *m, int i);
int cnnfx_model_n_nodes(const CnnfxModel *m);
const char *cnnfx_model_node_op(const CnnfxModel *m, int i);
const char *cnnfx_model_node_name(const CnnfxModel *m, int i);
int cnnfx_model_node_n_outputs(const CnnfxModel *m, int i);
const char *cnnfx_model_node_output(const CnnfxModel *m, int i, int k);
int cnnfx_model_node_n_inputs(const CnnfxModel *m, int i);
const char *cnnfx_model_node_input(const CnnfxModel *m, int i, int k); /* "" for an absent optional input */
/* Index of the node that computes tensor `name`, or -1 (inputs, weights, unknown names). */
int cnnfx_model_producer(const CnnfxModel *m, const char *name);
/* Initializer (weight) lookup, NULL if absent.  Borrowed. */
const CnnfxTensor *cnnfx_model_initializer(const CnnfxModel *m, const char *name);
int cnnfx_model_opset(const CnnfxModel *m);
gboolean cnnfx_model_has_value(const CnnfxModel *m, const char *name);

/* ---- backends -------------------------------------------------------------- */

typedef struct CnnfxBackend CnnfxBackend;
/* name: "cpu", "cuda" or "auto".  NULL + error when not available. */
CnnfxBackend *cnnfx_backend_new(const char *name, GError **error);
void cnnfx_backend_free(CnnfxBackend *b);
const char *cnnfx_backend_name(const CnnfxBackend *b);
char *cnnfx_backend_describe(const CnnfxBackend *b); /* versions, threads: g_free() it */

/* Exact mode: no Winograd or other approximate kernels (input gradients then agree with float64
 * as closely as plain float32 arithmetic does).  Off by default.  Sessions made afterwards use it. */
void cnnfx_backend_set_exact(CnnfxBackend *b, gboolean exact);
gboolean cnnfx_backend_get_exact(const CnnfxBackend *b);
/* Tell the backend that the process's OpenMP threads wait passively (OMP_WAIT_POLICY=passive, as the
 * cnnfx command sets it): OpenMP loops between BLAS calls then pay.  Off by default. */
void cnnfx_backend_set_passive_wait(CnnfxBackend *b, gboolean passive);
gboolean cnnfx_backend_get_passive_wait(const CnnfxBackend *b);

/* Vector instruction set of cnnfx's own CPU kernels, chosen once per backend. */
typedef enum {
  CNNFX_SIMD_AUTO = 0,     /* the best this CPU runs */
  CNNFX_SIMD_BASELINE = 1, /* plain x86-64 (SSE2) or the target's baseline */
  CNNFX_SIMD_AVX2 = 2,     /* AVX2 + FMA */
  CNNFX_SIMD_AVX512 = 3,   /* AVX-512 F/BW/VL/DQ/CD */
} CnnfxSimd;
const char *cnnfx_simd_name(CnnfxSimd level);                         /* "auto", "baseline", "avx2", "avx512" */
gboolean cnnfx_simd_parse(const char *s, CnnfxSimd *level, GError **error);
CnnfxSimd cnnfx_cpu_simd(void);                                       /* best level built and supported here */
gboolean cnnfx_cpu_supports(CnnfxSimd level);
char *cnnfx_cpu_model(void);                                          /* "AMD EPYC ...": g_free() it */
/* Force a level for sessions made afterwards (AUTO = best).  FALSE + error if this CPU cannot run it. */
gboolean cnnfx_backend_set_simd(CnnfxBackend *b, CnnfxSimd level, GError **error);
CnnfxSimd cnnfx_backend_get_simd(const CnnfxBackend *b);            /* the level in use, never AUTO */

/* The BLAS linked in and the kernels it runs. */
typedef struct {
  const char *name;        /* "OpenBLAS" */
  const char *config;      /* openblas_get_config() */
  const char *core;        /* kernel set in use: openblas_get_corename() */
  int threads;
  gboolean dynamic_arch;   /* core selectable at load time (OPENBLAS_CORETYPE) */
  gboolean generic;        /* runs generic / pre-AVX2 kernels on a CPU that has AVX2 */
  const char *suggest;     /* when generic: the OPENBLAS_CORETYPE this CPU should use, else NULL */
} CnnfxBlasInfo;
void cnnfx_blas_check(CnnfxBlasInfo *info);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxBackend, cnnfx_backend_free)

/* ---- sessions: one run of a model ------------------------------------------ */

typedef enum {
  CNNFX_GRAD_NONE = 0,     /* forward only; activations freed as soon as possible */
  CNNFX_GRAD_INPUT = 1,    /* keep what backward needs to reach the graph inputs */
  CNNFX_GRAD_WEIGHTS = 2,  /* ... and the initializers (training) */
} CnnfxGradMode;

typedef struct {
  CnnfxGradMode grad;
  /* Tensor names whose values must be readable after forward (NULL-terminated).
   * Forward computes only what these (or, when NULL, the graph outputs) need. */
  const char *const *targets;
  /* Intermediate tensors whose gradients backward keeps for cnnfx_session_grad() (Grad-CAM reads
   * the gradient at a feature map).  NULL-terminated, may be NULL. */
  const char *const *keep_grads;
  size_t mem_limit;          /* bytes; 0 = no limit except what malloc gives */
  const volatile gint *cancel; /* optional: set to non-zero (g_atomic_int_set, any thread) to stop at the next node */
  gboolean profile;          /* time every node's kernels (cnnfx_session_profile; device synchronised per node) */
} CnnfxSessionOptions;

typedef struct CnnfxSession CnnfxSession;

CnnfxSession *cnnfx_session_new(const CnnfxModel *m, CnnfxBackend *b,
                                const CnnfxSessionOptions *opts, GError **error);
void cnnfx_session_free(CnnfxSession *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxSession, cnnfx_session_free)

/* Bind a graph input (the session takes a reference). */
gboolean cnnfx_session_set_input(CnnfxSession *s, const char *name, CnnfxTensor *t, GError **error);
gboolean cnnfx_session_forward(CnnfxSession *s, GError **error);
/* A target's value after forward (borrowed, valid until the next forward / free). */
CnnfxTensor *cnnfx_session_get(CnnfxSession *s, const char *name, GError **error);
/* Backward from gradients given at any set of computed tensors (same shapes). */
gboolean cnnfx_session_backward(CnnfxSession *s, int n, const char *const *names,
                                CnnfxTensor *const *grads, GError **error);
/* Gradient at a graph input, at an initializer (CNNFX_GRAD_WEIGHTS mode) or at a tensor named in
 * keep_grads.  Borrowed. */
CnnfxTensor *cnnfx_session_grad(CnnfxSession *s, const char *name, GError **error);
/* Only these values (graph inputs; float initializers in CNNFX_GRAD_WEIGHTS mode; NULL-terminated)
 * need gradients from now on; NULL = all (the default).  Backward then skips what leads only to
 * the others (frozen layers, the input image in training), saving their work and memory; their
 * gradients read as zero.  Takes effect at the next forward. */
gboolean cnnfx_session_want_grads(CnnfxSession *s, const char *const *names, GError **error);
/* Replace an initializer's value for this session (training updates).  Same shape. */
gboolean cnnfx_session_set_weight(CnnfxSession *s, const char *name, const CnnfxTensor *t, GError **error);

/* Shape of any tensor computed by the last forward (also ones already freed). */
gboolean cnnfx_session_shape(CnnfxSession *s, const char *name, int *ndim, int64_t *dims);

size_t cnnfx_session_peak_bytes(const CnnfxSession *s);

/* How the session planned and placed its work. */
typedef struct {
  size_t arena_bytes;      /* static arenas of all devices (0 before the second step of a plan) */
  size_t max_live_bytes;   /* largest sum of tensors alive at one moment of the recorded step */
  size_t peak_bytes;       /* host memory peak (arena, scratch, host copies) */
  guint64 system_allocs;   /* blocks taken from the system so far (a steady-state step adds none) */
  int n_devices;           /* 1, or 2 when nodes fall back to the CPU */
  int nodes_device, nodes_fallback, nodes_folded;
} CnnfxSessionStats;
void cnnfx_session_stats(const CnnfxSession *s, CnnfxSessionStats *stats);
size_t cnnfx_session_current_bytes(const CnnfxSession *s);

/* With opts.profile: wall seconds spent in each node's forward and backward kernels, summed over
 * every step since the session was made (plan-time folding not counted). */
typedef struct {
  const char *op;   /* operator type (borrowed from the model) */
  const char *name; /* the node's first output */
  double fwd_s, bwd_s;
  int fwd_calls, bwd_calls;
} CnnfxNodeTime;
/* The nodes' times in graph order, n_nodes entries (g_free the array); NULL without opts.profile. */
CnnfxNodeTime *cnnfx_session_profile(const CnnfxSession *s, int *n_nodes);
/* Zero the profile counters (e.g. after a warm-up step). */
void cnnfx_session_profile_reset(CnnfxSession *s);

G_END_DECLS

#endif
