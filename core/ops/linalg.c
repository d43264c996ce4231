/* Operator definitions (linalg family): attribute checks, shape inference, what backward keeps.
 * Backend-neutral; the CPU kernels are in core/cpu/linalg.c. */
#include "cnnfx-private.h"

const CnnfxOpDef *const cnnfx_opdefs_linalg[] = {NULL};
