/* Pixels <-> filter tensors and what front-ends draw from a filter's results: heat-map
 * colouring and the top-labels box.  Shared by the CLI and the GIMP plug-in; no file I/O.
 *
 * Pixel buffers are interleaved floats 0..1, row-major, `channels` per pixel:
 * 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (alpha is never changed by the filters). */
#ifndef CNNFX_RENDER_H
#define CNNFX_RENDER_H

#include "cnnfx-filters.h"

G_BEGIN_DECLS

/* Pixels -> [3,H,W] RGB tensor (grey is copied to R, G and B). */
CnnfxTensor *cnnfx_pixels_to_tensor(const float *px, int width, int height, int channels, GError **error);
/* [3,h,w] tensor (same size) -> the colour channels of px, clamped to 0..1; grey buffers get the
 * luma (0.299 R + 0.587 G + 0.114 B); alpha untouched. */
void cnnfx_tensor_to_pixels(const CnnfxTensor *t, float *px, int width, int height, int channels);

/* Selections: result = original + mask * (result - original), mask [width*height] 0..1
 * (feathered edges blend).  Alpha is blended likewise. */
void cnnfx_pixels_apply_mask(float *result, const float *original, const float *mask, int width, int height,
                             int channels);

/* Colour maps of the classify "colormap" parameter: jet, inferno, viridis, gray (v in 0..1). */
void cnnfx_colormap(const char *name, float v, float rgb[3]);
/* A single-channel map [1,h,w] or [h,w] 0..1, bilinearly resized to width x height, coloured
 * with cmap and laid over px with the given opacity into out (same layout as px; alpha copied). */
gboolean cnnfx_render_heatmap(const float *px, int width, int height, int channels, const CnnfxTensor *map,
                              const char *cmap, double opacity, float *out, GError **error);

/* Draw the top labels ("label  87.3%" and a probability bar per line) in a semi-transparent
 * box in the top-left corner of px, in place.  Built-in 8x8 bitmap font (ASCII; other
 * characters as '?'), scaled by max(1, min(width, height) / 400).  Entries with index < 0 are
 * skipped. */
void cnnfx_render_labels(float *px, int width, int height, int channels, const CnnfxScore *top, int k);

G_END_DECLS

#endif
