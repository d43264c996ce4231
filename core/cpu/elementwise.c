/* CPU kernels (elementwise family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/elementwise.c. */
#include "cnnfx-private.h"

const CnnfxKernel *const cnnfx_cpu_kernels_elementwise[] = {NULL};
