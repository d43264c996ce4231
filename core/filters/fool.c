/* fool filter — being written (issue 4). */
#include "cnnfx-filters.h"
gboolean cnnfx_fool(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                    CnnfxTensor **noise, CnnfxFoolReport *report, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "fool is not implemented yet");
  return FALSE;
}
