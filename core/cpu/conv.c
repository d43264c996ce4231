/* CPU kernels (conv family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/conv.c. */
#include "cnnfx-private.h"

const CnnfxKernel *const cnnfx_cpu_kernels_conv[] = {NULL};
