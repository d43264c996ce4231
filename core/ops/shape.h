/* Shape family: attribute and value parsing shared by the definitions (core/ops/shape.c) and the
 * kernels of every backend (core/cpu/shape.c).  Backend-neutral: these read attributes and the values
 * of small int64 inputs (which are known to the host when planning), never tensor data. */
#ifndef CNNFX_OPS_SHAPE_H
#define CNNFX_OPS_SHAPE_H

#include "cnnfx-private.h"

/* Concat: the normalised axis for inputs of rank r. */
gboolean cnnfx_concat_axis(const CnnfxNode *n, int r, int *axis, GError **error);
/* Split: axis and the n->n_out sizes along it (reads the values of in[1] when present). */
gboolean cnnfx_split_sizes(const CnnfxNode *n, CnnfxTensor *const *in, int *axis, int64_t *sizes, GError **error);
/* Transpose: output dim k is input dim perm[k]. */
gboolean cnnfx_transpose_perm(const CnnfxNode *n, int r, int *perm, GError **error);

/* Slice: per dim of in[0], first index, step and output length (reads in[1..4]). */
typedef struct {
  int64_t start[CNNFX_MAX_DIMS], step[CNNFX_MAX_DIMS], len[CNNFX_MAX_DIMS];
} CnnfxSliceParams;
gboolean cnnfx_slice_params(const CnnfxNode *n, CnnfxTensor *const *in, CnnfxSliceParams *p, GError **error);

/* Gather: normalised axis; checks the indices' type and the result rank (not the index values). */
gboolean cnnfx_gather_axis(const CnnfxNode *n, CnnfxTensor *const *in, int *axis, GError **error);

/* Pad */
enum { CNNFX_PAD_CONSTANT, CNNFX_PAD_REFLECT, CNNFX_PAD_EDGE };
gboolean cnnfx_pad_mode(const CnnfxNode *n, int *mode, GError **error);
/* Begin/end pads per dim of in[0] (reads in[1] and in[3] from opset 11). */
gboolean cnnfx_pad_amounts(const CnnfxNode *n, CnnfxTensor *const *in, int64_t *pb, int64_t *pe, GError **error);

/* ReduceMean: mask of reduced axes of in[0] (reads in[1] when present); *noop when the op is the
 * identity (empty axes with noop_with_empty_axes). */
gboolean cnnfx_reduce_axes(const CnnfxNode *n, CnnfxTensor *const *in, gboolean *mask, gboolean *noop,
                           GError **error);

#endif
