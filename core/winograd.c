/* Winograd F(4x4,3x3) convolution for 3x3 stride-1 kernels. (placeholder) */
#include "cnnfx-private.h"
