/* LD_PRELOAD stand-in for OpenBLAS's identification calls (test_blas_core.py): an OpenBLAS that does
 * not know this CPU and runs its generic "Prescott" kernels unless OPENBLAS_CORETYPE names a core
 * when the process starts (as OpenBLAS 0.3.21 does on new Intel CPUs).  With
 * CNNFX_TEST_SHIM_STUCK set it ignores OPENBLAS_CORETYPE (an OpenBLAS built without DYNAMIC_ARCH
 * would): cnnfx must then give up after one restart instead of looping. */
#include <stdlib.h>

char *openblas_get_corename(void);
char *openblas_get_config(void);

char *openblas_get_corename(void)
{
  const char *c = getenv("OPENBLAS_CORETYPE");
  if (getenv("CNNFX_TEST_SHIM_STUCK") || !c || !*c) return (char *)"Prescott";
  return (char *)c;
}

char *openblas_get_config(void)
{
  return (char *)"OpenBLAS 0.3.21 (test shim) DYNAMIC_ARCH";
}
