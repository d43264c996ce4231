/* Elementwise family: helpers shared by the definitions (core/ops/elementwise.c) and the kernels of
 * every backend.  Backend-neutral. */
#ifndef CNNFX_OPS_ELEMENTWISE_H
#define CNNFX_OPS_ELEMENTWISE_H

#include "cnnfx-private.h"

/* PRelu: the slope's effective shape (before opset 7 a 1-D slope of size C means one per channel,
 * dim 1).  FALSE + CNNFX_ERROR_SHAPE when it does not broadcast to the input's shape. */
gboolean cnnfx_prelu_slope_dims(const CnnfxNode *n, const CnnfxTensor *xt, const CnnfxTensor *s, int *nd,
                                int64_t *dims, GError **error);

#endif
