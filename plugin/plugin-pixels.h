/* Pixel helpers of the GIMP plug-in (no libgimp): RGBA float (interleaved, 0..1) <-> [3,H,W]. */
#ifndef CNNFX_PLUGIN_PIXELS_H
#define CNNFX_PLUGIN_PIXELS_H

#include "netload.h"

CnnfxTensor *px_rgba_to_tensor(const float *rgba, int w, int h, GError **error);
void px_tensor_to_rgba(const CnnfxTensor *t, float *rgba, int w, int h); /* alpha untouched */
/* A [1,H,W] / [H,W] map 0..1 coloured and resampled to w x h, opaque (g_free). */
float *px_heatmap_rgba(const CnnfxTensor *map, const char *cmap, int w, int h);
/* Transparent w x h RGBA with the top labels box (g_free). */
float *px_labels_rgba(const CnnfxScore *top, int k, int w, int h, GError **error);
/* The style used when no style image is given: a built-in colourful pattern. */
CnnfxTensor *px_builtin_style(int size, GError **error);

#endif
