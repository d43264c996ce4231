/* Drawing the top labels onto an image (being written, issue 4). */
#include "netload.h"

CnnfxImage *cli_draw_labels(const CnnfxImage *img, const CnnfxScore *top, int k, GError **error)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "label drawing is not implemented yet");
  return NULL;
}
