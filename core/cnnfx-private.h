/* Internal interfaces of libcnnfx: graph representation, operator kernels,
 * memory accounting.  Not installed. */
#ifndef CNNFX_PRIVATE_H
#define CNNFX_PRIVATE_H

#include "cnnfx.h"
#include <string.h>

/* ---- memory accounting ------------------------------------------------------ */

#define CNNFX_MEM_CACHE 48

typedef struct CnnfxMem {
  size_t limit;    /* 0 = unlimited */
  size_t current;
  size_t peak;
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
  int n;                /* count for FLOATS / INTS / STRINGS */
  float *floats;
  int64_t *ints;
  char **strings;
} CnnfxAttr;

/* ---- graph ------------------------------------------------------------------ */

typedef struct CnnfxOp CnnfxOp;

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
  const CnnfxOp *op;    /* resolved at load time (CPU table) */
} CnnfxNode;

typedef struct {
  char *name;
  CnnfxTensor *init;    /* initializer / Constant value, or NULL */
  gboolean is_input;    /* graph input that is not an initializer */
  int producer;         /* node index, -1 for inputs/initializers */
  int decl_ndim;        /* declared shape from ValueInfo (inputs, outputs), -1 unknown */
  int decl_type;        /* declared ONNX element type, 0 unknown */
  int64_t decl_dims[CNNFX_MAX_DIMS];
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
} CnnfxExec;

/* Bits for CnnfxOp.saves: which tensors backward reads (the rest may be freed). */
#define CNNFX_SAVE_IN(i)  (1u << (i))
#define CNNFX_SAVE_OUT(i) (1u << (16 + (i)))
#define CNNFX_SAVE_ALL_IN 0xffffu

struct CnnfxOp {
  const char *name;     /* ONNX op_type (default domain) */
  /* Optional: validate attributes at load time. */
  gboolean (*check)(const CnnfxNode *n, GError **error);
  /* in[i] is NULL for absent optional inputs.  Allocate out[k] with cnnfx_tensor_alloc(x->mem, ...). */
  gboolean (*forward)(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                      CnnfxTensor **out, GError **error);
  /* gout[k] NULL when output k got no gradient.  For each i with need[i], set gin[i] to a new
   * tensor shaped like in[i] (in[i]->dims are always valid; in[i]->data only if saved).
   * NULL backward = op carries no gradient (shape ops on int64, Shape, ...). */
  gboolean (*backward)(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                       CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                       CnnfxTensor **gin, GError **error);
  guint32 saves;        /* CNNFX_SAVE_* bits */
  /* Inputs that are never differentiable (shape / axes / indices inputs): bit i. */
  guint32 nondiff_inputs;
  /* Optional: what backward reads given which inputs need gradients (overrides `saves`),
   * e.g. Conv needs X only for the weight gradient. */
  guint32 (*saves_fn)(const CnnfxNode *n, const gboolean *need);
};

const CnnfxOp *cnnfx_op_lookup(const char *op_type);
int cnnfx_op_min_inputs(const char *op_type, int opset);

/* Each ops_*.c file exports one NULL-terminated table; ops.c gathers them. */
extern const CnnfxOp *const cnnfx_ops_elementwise[];
extern const CnnfxOp *const cnnfx_ops_activation[];
extern const CnnfxOp *const cnnfx_ops_shape[];
extern const CnnfxOp *const cnnfx_ops_linalg[];
extern const CnnfxOp *const cnnfx_ops_conv[];
extern const CnnfxOp *const cnnfx_ops_pool[];
extern const CnnfxOp *const cnnfx_ops_norm[];
extern const CnnfxOp *const cnnfx_ops_resize[];

/* Backend internals (backend.c) */
const CnnfxOp *cnnfx_backend_op(const CnnfxBackend *b, const char *op_type);
int cnnfx_backend_threads(const CnnfxBackend *b);

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
 * Returns FALSE only on allocation failure (error set).  If accumulate, adds into y. */
gboolean cnnfx_conv3x3_winograd(const CnnfxExec *x, const float *in, int N, int C, int H, int W,
                                const float *w, int K, const float *bias, int pad_t, int pad_l,
                                int OH, int OW, float *out, GError **error);
/* Heuristic: is Winograd worth it for this layer on this machine? */
gboolean cnnfx_winograd_wins(int C, int K, int OH, int OW);

#endif
