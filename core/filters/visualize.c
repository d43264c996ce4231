/* visualize filter — being written (issue 4). */
#include "cnnfx-filters.h"
CnnfxTensor *cnnfx_visualize(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run,
                             const CnnfxTensor *image, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "visualize is not implemented yet");
  return NULL;
}
