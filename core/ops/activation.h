/* Activation family: what the definitions and every backend's kernels share. */
#pragma once
#include "cnnfx-private.h"

/* Which tensor the backward of a unary activation (Relu ... Erf, Gelu) reads: the input, the output, or
 * nothing (the derivative is a constant, Neg).  Depends on the op and its attributes (LeakyRelu / Elu
 * with alpha < 0 cannot recover the sign of x from y). */
typedef enum { CNNFX_ACT_READS_OUTPUT, CNNFX_ACT_READS_INPUT, CNNFX_ACT_READS_NOTHING } CnnfxActReads;
CnnfxActReads cnnfx_activation_backward_reads(const CnnfxNode *n);

/* Softmax / LogSoftmax: the input viewed as [O, D, S], normalising over D.  Before opset 13 the input
 * is coerced to 2-D at `axis` (default 1): D = prod(dims[axis:]), S = 1.  From 13 on a single axis
 * (default -1).  FALSE (shape error) when the axis is out of range. */
gboolean cnnfx_softmax_view(const CnnfxNode *n, const CnnfxTensor *t, size_t *O, size_t *D, size_t *S,
                            GError **error);
