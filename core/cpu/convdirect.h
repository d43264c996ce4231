/* Direct convolution for few input channels (core/cpu/convdirect.c), compiled once per SIMD level:
 * 2-D, one group, dilation 1, Ci <= 4 (an RGB stem such as GoogLeNet's 7x7 stride-2 conv). */
#ifndef CNNFX_CPU_CONVDIRECT_H
#define CNNFX_CPU_CONVDIRECT_H

#include "ops/conv.h"

/* The geometry the direct kernels take, and where they beat im2col + sgemm. */
gboolean cnnfx_conv_direct_wins(const CnnfxConvGeo *g);
/* out = conv(img, W) (+ bias, then ReLU if relu) for all N images. */
gboolean cnnfx_conv_direct_fwd(const CnnfxExec *x, const CnnfxConvGeo *g, const float *img, const float *W,
                               const float *bias, gboolean relu, float *out, GError **error);
/* img = conv^T(out, W): the input gradient (overwrites img). */
gboolean cnnfx_conv_direct_adj(const CnnfxExec *x, const CnnfxConvGeo *g, const float *out, const float *W,
                               float *img, GError **error);

#endif
