/* Normalisation family: attribute checks and geometry shared by the definitions (core/ops/norm.c)
 * and every backend's kernels (core/cpu/norm.c). */
#ifndef CNNFX_OPS_NORM_H
#define CNNFX_OPS_NORM_H

#include "cnnfx-private.h"

/* BatchNormalization: training form (training_mode=1, opset >= 14)? */
gboolean cnnfx_norm_bn_training(const CnnfxNode *n);

typedef struct {
  int64_t N, Cp, inner;
  float eps;
} CnnfxBnGeom;

/* check_x: X must be float32 (forward, inference); the parameters always must. */
gboolean cnnfx_norm_bn_geom(const CnnfxNode *n, CnnfxTensor *const *in, gboolean check_x, CnnfxBnGeom *g,
                            GError **error);

typedef struct {
  int64_t N, C, S;
  float eps;
} CnnfxInGeom;

gboolean cnnfx_norm_in_geom(const CnnfxNode *n, CnnfxTensor *const *in, gboolean check_x, CnnfxInGeom *g,
                            GError **error);

typedef struct {
  int64_t N, C, S, lo, hi;
  float alpha_n, beta, bias;
} CnnfxLrnGeom;

gboolean cnnfx_norm_lrn_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, CnnfxLrnGeom *g,
                             GError **error);

/* LpNormalization: the tensor as outer x L x inner around `axis`; *p is 1 or 2. */
gboolean cnnfx_norm_lp_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, int64_t *outer, int64_t *L,
                            int64_t *inner, int *p, GError **error);

typedef struct {
  int ndim;
  int64_t dims[CNNFX_MAX_DIMS];
  int64_t gstride[CNNFX_MAX_DIMS]; /* group index stride per dim, 0 on reduced axes */
  int64_t groups, M;               /* number of groups, elements per group */
} CnnfxMvnGeom;

gboolean cnnfx_norm_mvn_geom(const CnnfxNode *n, const CnnfxTensor *X, gboolean check_x, CnnfxMvnGeom *g,
                             GError **error);

#endif
