/* Quantised operators: parameter layout and the description of the QLinear* / *Integer wrappers,
 * shared by the definitions (core/ops/quant.c) and every backend's kernels (core/cpu/quant.c).
 *
 * Representation: quantised tensors travel as float32 tensors holding the integer values
 * (q in -128..127 or 0..255); integer initializers arrive widened to int64 and are read as
 * either.  Each QLinear operator dequantises its inputs ((q - zero_point) * scale, per tensor
 * or per axis), runs the float operator of the same name without the prefix (Conv, MatMul,
 * AveragePool, ...) and requantises its output (round half to even, then clamp to the zero
 * point's integer range), so the int8 rounding of the real model is reproduced. */
#ifndef CNNFX_OPS_QUANT_H
#define CNNFX_OPS_QUANT_H

#include "cnnfx-private.h"

static inline float cnnfx_quant_tval(const CnnfxTensor *t, size_t i)
{
  return t->dtype == CNNFX_F32 ? cnnfx_f32(t)[i] : (float)cnnfx_i64(t)[i];
}

static inline size_t cnnfx_quant_chan_of(size_t i, size_t ch, size_t inner)
{
  return ch == 1 ? 0 : (i / inner) % ch;
}

/* ONNX element type of input i where known (initializers, graph inputs), else 0. */
int cnnfx_quant_in_type(const CnnfxNode *n, int i);
/* Integer range of an ONNX element type (unknown: uint8, the ONNX default). */
void cnnfx_quant_range(int type, float *lo, float *hi);
/* in[i], or NULL past the node's inputs. */
const CnnfxTensor *cnnfx_quant_opt_in(const CnnfxNode *n, CnnfxTensor *const *in, int i);
/* Channel layout of a per-axis scale: element i of x belongs to channel (i / inner) % ch.
 * ch == 1: per tensor.  FALSE (error set) if the parameter does not fit x.  Shapes only. */
gboolean cnnfx_quant_axis_layout(const CnnfxNode *n, const CnnfxTensor *x, const CnnfxTensor *s,
                                 const CnnfxTensor *zp, int64_t axis, size_t *ch, size_t *inner, GError **error);
/* QuantizeLinear / DequantizeLinear: the quantisation axis. */
int64_t cnnfx_quant_qdq_axis(const CnnfxNode *n);

/* ---- operators wrapped around their float counterparts ------------------------------------- */

#define CNNFX_QMAX_IN 3
#define CNNFX_QMAX_INNER 64
#define CNNFX_GEMM_B_AXIS 99 /* QGemm's B: axis 0 if transB, else 1 (the output columns) */

typedef struct {
  const char *name, *inner;
  int n_inner;             /* inner inputs (QLinearConcat: computed) */
  struct {
    int q, s, zp;          /* outer input indices; s < 0: input passed as is */
    int axis;              /* per-axis scale axis (-1, -2: from the end) */
  } in[CNNFX_QMAX_IN];
  int ys, yzp;             /* output scale / zero point; ys < 0: float output (ConvInteger, MatMulInteger) */
  int bias;                /* QLinearConv's int32 bias (scale s_x * s_w), -1 none */
} CnnfxQSpec;

/* NULL: not a wrapped operator. */
const CnnfxQSpec *cnnfx_quant_spec(const CnnfxNode *n);
/* Outer input indices of inner input j: q, scale, zero point, axis. */
void cnnfx_quant_inner_map(const CnnfxQSpec *sp, int j, int *q, int *s, int *zp, int *axis);
int64_t cnnfx_quant_resolve_axis(const CnnfxNode *n, int ax, int ndim);
/* The output is requantised when its scale is given (QGemm may leave it out: float output). */
gboolean cnnfx_quant_quantised_out(const CnnfxQSpec *sp, const CnnfxNode *n);
int cnnfx_quant_n_inner(const CnnfxQSpec *sp, const CnnfxNode *n);
/* The bias input is present (QLinearConv's B, QGemm's C). */
gboolean cnnfx_quant_has_bias(const CnnfxQSpec *sp, const CnnfxNode *n);

/* A node that looks like the float operator to its kernel (same attributes, one output).  Its
 * inputs are the dequantised inner inputs 0..n_inner-1, then the bias. */
typedef struct {
  CnnfxNode node;
  int ids[CNNFX_QMAX_INNER + 1];
  char op_type[32];
} CnnfxQInner;

void cnnfx_quant_make_inner(const CnnfxNode *n, const CnnfxQSpec *sp, int n_inner, gboolean with_bias,
                            CnnfxQInner *w);
/* Header (dtype, shape; no data) of the float bias for inner weight header `w1` (the dequantised
 * second input), with the shape checks of the kernels. */
gboolean cnnfx_quant_bias_meta(const CnnfxNode *n, const CnnfxQSpec *sp, CnnfxTensor *const *in,
                               const CnnfxTensor *w1, CnnfxTensor *meta, GError **error);

#endif
