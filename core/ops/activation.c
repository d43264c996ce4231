/* Operator definitions (activation family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/activation.c. */
#include "cnnfx-private.h"

const CnnfxOpDef *const cnnfx_opdefs_activation[] = {NULL};
