/* dream filter — being written (issue 4). */
#include "cnnfx-filters.h"
gboolean cnnfx_dream(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     const CnnfxTensor *guide, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "dream is not implemented yet");
  return FALSE;
}
