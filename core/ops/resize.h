/* Resize / Upsample: attribute parsing and output geometry shared by the definition (shape
 * inference, core/ops/resize.c) and every backend's kernels (core/cpu/resize.c). */
#pragma once
#include "cnnfx-private.h"

/* Largest output extent along one axis. */
#define CNNFX_RESIZE_MAX_OUT_DIM ((int64_t)1 << 40)

/* mode */
enum { CNNFX_RS_M_NEAREST, CNNFX_RS_M_LINEAR, CNNFX_RS_M_CUBIC };
/* coordinate_transformation_mode */
enum { CNNFX_RS_CT_HALF_PIXEL, CNNFX_RS_CT_HALF_PIXEL_SYM, CNNFX_RS_CT_PYTORCH_HALF_PIXEL, CNNFX_RS_CT_ALIGN_CORNERS,
       CNNFX_RS_CT_ASYMMETRIC, CNNFX_RS_CT_TF_HALF_PIXEL_NN, CNNFX_RS_CT_TF_CROP };
/* nearest_mode; SIMPLE: Upsample / Resize-10 (down when upsampling, up when downsampling) */
enum { CNNFX_RS_NM_ROUND_PREFER_FLOOR, CNNFX_RS_NM_ROUND_PREFER_CEIL, CNNFX_RS_NM_FLOOR, CNNFX_RS_NM_CEIL,
       CNNFX_RS_NM_SIMPLE };
/* keep_aspect_ratio_policy */
enum { CNNFX_RS_KA_STRETCH, CNNFX_RS_KA_NOT_LARGER, CNNFX_RS_KA_NOT_SMALLER };

typedef struct {
  gboolean upsample;  /* Upsample operator */
  gboolean legacy;    /* Upsample or Resize-10: inputs (X, scales), asymmetric */
  int mode, ctm, nearest, keep;
  gboolean antialias, exclude_outside;
  double cubic_a;
  float extrapolation;
} CnnfxResizeAttrs;

typedef struct {
  int r;
  int64_t I[CNNFX_MAX_DIMS], O[CNNFX_MAX_DIMS];
  double scale[CNNFX_MAX_DIMS]; /* scale factor used by the coordinate transformation */
  double len[CNNFX_MAX_DIMS];   /* "output width" of the reference: scale * I (or sizes) */
  double roi0[CNNFX_MAX_DIMS], roi1[CNNFX_MAX_DIMS];
} CnnfxResizeGeom;

/* Parse and check the attributes (the load-time check runs it too). */
gboolean cnnfx_resize_attrs(const CnnfxNode *n, CnnfxResizeAttrs *a, GError **error);
/* Output dims and per-axis scale / length / roi from the dims of X and the values of scales / sizes /
 * roi (inputs 1..3, or the Upsample-7 attribute).  Those values must be known (value_inputs). */
gboolean cnnfx_resize_geom(const CnnfxNode *n, CnnfxTensor *const *in, const CnnfxResizeAttrs *a,
                           CnnfxResizeGeom *g, GError **error);
/* x_original for output index x along axis d (ONNX reference formulas, double precision). */
double cnnfx_resize_source_coord(const CnnfxResizeAttrs *a, const CnnfxResizeGeom *g, int d, double x);
