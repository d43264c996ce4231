/* Cutting big images into overlapping tiles (shared by dream, style and fast style).
 *
 * An axis of n pixels is split into cores [b[i], b[i+1]) aligned to `align` pixels (the
 * network's stride phase stays the same in every tile), each read with a margin of context so
 * that core + 2*margin <= the tile size T.  Blending weights ramp linearly across each core
 * boundary and add up to 1 everywhere, so tile results can be summed without seams. */
#ifndef CNNFX_TILES_H
#define CNNFX_TILES_H

#include <glib.h>

/* Split [0,n) into k cores; *b gets k+1 boundaries (g_free).  Returns k (1 when n <= T). */
int cnnfx_tiles_split(int n, int T, int margin, int align, int **b);
/* Extent [*e0, *e1) of tile i: its core plus the margin, clipped to [0, n). */
void cnnfx_tiles_extent(const int *b, int k, int i, int margin, int n, int *e0, int *e1);
/* Blending weights of tile i over its extent [e0, e1) with ramps of half-width up to R around each
 * inner boundary; the nonzero range goes to [*r0, *r1). */
void cnnfx_tiles_weights(const int *b, int k, int i, int R, int e0, int e1, float *w, int *r0, int *r1);

/* tile[c,i,j] = img[c, (y0+i-dy) mod H, (x0+j-dx) mod W] for a [3,H,W] image: a th x tw window of
 * the image rolled by (dy, dx) (no roll: a plain crop). */
void cnnfx_tiles_extract(const float *img, int H, int W, int dy, int dx, int y0, int x0, int th, int tw, float *tile);

#endif
