/* style filter — being written (issue 4). */
#include "cnnfx-filters.h"
gboolean cnnfx_style(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     CnnfxTensor *const *styles, int n_styles, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "style is not implemented yet");
  return FALSE;
}
gboolean cnnfx_fast_style(const CnnfxModel *m, const CnnfxRun *run, CnnfxTensor *image, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "fast style is not implemented yet");
  return FALSE;
}
