/* CPU kernels (resize family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes) are in core/ops/resize.c. */
#include "cnnfx-private.h"

const CnnfxKernel *const cnnfx_cpu_kernels_resize[] = {NULL};
