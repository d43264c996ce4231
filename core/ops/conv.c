/* Operator definitions (conv family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/conv.c. */
#include "cnnfx-private.h"

const CnnfxOpDef *const cnnfx_opdefs_conv[] = {NULL};
