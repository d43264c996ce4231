/* Small image operations shared by the filters (planar float [C,H,W]). */
#ifndef CNNFX_IMGOPS_H
#define CNNFX_IMGOPS_H

#include "cnnfx-filters.h"

/* Bilinear resize with half-pixel centres; antialiased when shrinking (the tent filter widens to
 * the scale factor, so every source pixel counts).  src [C,H,W] -> dst [C,h,w].  FALSE only when
 * out of memory. */
gboolean cnnfx_resize_bilinear(const float *src, int C, int H, int W, float *dst, int h, int w);
/* Adjoint of the resize above: accumulates gdst [C,h,w] into gsrc [C,H,W] (gsrc zeroed by caller). */
gboolean cnnfx_resize_bilinear_adjoint(const float *gdst, int C, int h, int w, float *gsrc, int H, int W);
/* New tensor [C,h,w] resized from t [C,H,W] (or [1,C,H,W]). */
CnnfxTensor *cnnfx_tensor_resized(const CnnfxTensor *t, int h, int w, GError **error);
/* Circular shift of every channel by (dy, dx). */
void cnnfx_roll(float *x, int C, int H, int W, int dy, int dx, float *scratch);
/* Separable Gaussian blur in place (sigma in pixels; edge clamp). */
gboolean cnnfx_blur(float *x, int C, int H, int W, double sigma, GError **error);
/* Clamp every value to [lo, hi]. */
void cnnfx_clamp(float *x, size_t n, float lo, float hi);

#endif
