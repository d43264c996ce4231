/* classify filter — being written (issue 4). */
#include "cnnfx-filters.h"
gboolean cnnfx_classify(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, const CnnfxTensor *image,
                        CnnfxScore *top, int k, CnnfxTensor **heatmap, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "classify is not implemented yet");
  return FALSE;
}
