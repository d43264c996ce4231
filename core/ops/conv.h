/* Convolution geometry (Conv, ConvTranspose): shared by the definitions (core/ops/conv.c) and every
 * backend's kernels (core/cpu/conv.c; a CUDA kernel calls the same).  Backend-neutral.
 *
 * Both operators are described by one geometry: a convolution that maps an *image* tensor
 * img[N, G*Ci, is...] to an *output* tensor out[N, G*Co, os...] with a weight W[G*Co, Ci, k...]:
 *
 *   out[n, g*Co+o, p] = sum_{c, t} W[g*Co+o, c, t] * img[n, g*Ci+c, p*s - pad + t*d]
 *
 * Conv:          img = X, out = Y.   ConvTranspose: img = Y, out = X.
 * Spatial ranks 1..3 are held as 3-D (D, H, W) with the missing leading dims = 1. */
#ifndef CNNFX_OPS_CONV_H
#define CNNFX_OPS_CONV_H

#include "cnnfx-private.h"

typedef struct {
  int64_t N, G, Ci, Co;
  int nsp;                                   /* spatial rank 1..3 */
  int64_t is[3], os[3], k[3], s[3], d[3], p[3]; /* D, H, W; p = leading pad */
  int64_t isz, osz, kk;                      /* plane sizes, kernel taps */
} CnnfxConvGeo;

/* Fill the geometry from X, W (and B, may be NULL) and the node's attributes; ydims gets the forward
 * output shape (rank X->ndim).  transpose: ConvTranspose.  Reads only dtypes, shapes and B's numel.
 * Errors: CNNFX_ERROR_SHAPE / _UNSUPPORTED. */
gboolean cnnfx_conv_geometry(const CnnfxNode *n, const CnnfxTensor *X, const CnnfxTensor *W, const CnnfxTensor *B,
                             gboolean transpose, CnnfxConvGeo *g, int64_t *ydims, GError **error);

#endif
