/* Operators: linalg.  (placeholder table, filled in by its owner) */
#include "cnnfx-private.h"

const CnnfxOp *const cnnfx_ops_linalg[] = { NULL };
