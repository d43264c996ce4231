/* Pooling geometry (MaxPool, AveragePool): shared by the definitions (core/ops/pool.c) and every
 * backend's kernels (core/cpu/pool.c; a CUDA kernel calls the same).  Backend-neutral. */
#ifndef CNNFX_OPS_POOL_H
#define CNNFX_OPS_POOL_H

#include "cnnfx-private.h"

#define POOL_MAX_SP 3

typedef struct {
  int nsp;                         /* spatial dims of the op (1..3) */
  int64_t planes;                  /* N * C */
  int64_t I[3], O[3];              /* input / output spatial dims, padded to 3 (leading 1s) */
  int64_t k[3], s[3], d[3], pb[3], pe[3];
  int64_t in_plane, out_plane;
} CnnfxPoolGeom;


/* Geometry from the node's attributes and the input dims xd (rank ndim = 2 + spatial rank).
 * Errors: CNNFX_ERROR_SHAPE / _UNSUPPORTED. */
gboolean cnnfx_pool_geom(const CnnfxNode *n, int ndim, const int64_t *xd, CnnfxPoolGeom *g, GError **error);

/* MaxPool's private state for its backward (CnnfxOpDef.aux_bytes, filled by the forward kernel): per
 * output element (same order as Y) the tap of its window that holds the maximum (the first maximum in
 * scan order D, H, W, as the Indices output), tap = (jd * k[1] + jh) * k[2] + jw over the full window.
 * uint8 when the window has at most 255 taps (255 = empty window), else int32 (-1 = empty window). */
static inline int64_t cnnfx_pool_taps(const CnnfxPoolGeom *g)
{
  return g->k[0] * g->k[1] * g->k[2];
}

static inline gboolean cnnfx_maxpool_aux_wide(const CnnfxPoolGeom *g)
{
  return cnnfx_pool_taps(g) > 255;
}

#define CNNFX_MAXPOOL_AUX_EMPTY8 255u

#endif
