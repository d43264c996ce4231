/* Drawing the top labels onto an image file's pixels: the shared renderer of the filter layer
 * (core/filters/render.c), which the GIMP plug-in uses too. */
#include "netload.h"
#include "render.h"
#include <string.h>

CnnfxImage *cli_draw_labels(const CnnfxImage *img, const CnnfxScore *top, int k, GError **error)
{
  CnnfxImage *o = cnnfx_image_new(img->width, img->height, img->channels, img->depth, error);
  if (!o) return NULL;
  memcpy(o->px, img->px, sizeof(float) * (size_t)img->width * img->height * img->channels);
  cnnfx_render_labels(o->px, o->width, o->height, o->channels, top, k);
  return o;
}
