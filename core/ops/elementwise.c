/* Operator definitions (elementwise family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/elementwise.c. */
#include "cnnfx-private.h"

const CnnfxOpDef *const cnnfx_opdefs_elementwise[] = {NULL};
