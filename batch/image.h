/* Image files for the cnnfx front-ends: PNG (8/16-bit, grey/RGB, alpha) and JPEG,
 * EXIF orientation applied on load, atomic writes.  Not part of the core. */
#ifndef CNNFX_IMAGE_H
#define CNNFX_IMAGE_H

#include <glib.h>

typedef struct {
  int width, height;
  int channels;   /* 3 (RGB) or 4 (RGBA); grey files are expanded to RGB */
  int depth;      /* bits per sample of the source file: 8 or 16 */
  float *px;      /* width*height*channels floats in 0..1, interleaved, row-major */
} CnnfxImage;

CnnfxImage *cnnfx_image_new(int width, int height, int channels, int depth, GError **error);
void cnnfx_image_free(CnnfxImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxImage, cnnfx_image_free)

/* Format by content (PNG / JPEG signature), not by name. */
CnnfxImage *cnnfx_image_load(const char *path, GError **error);
/* Format by the file name's extension (.png, .jpg/.jpeg).  depth 8 or 16 (PNG only).
 * Writes to a temporary file in the same folder and renames it into place, so a failed or
 * interrupted write never leaves a partial file; refuses to replace an existing file unless
 * overwrite. */
gboolean cnnfx_image_save(const CnnfxImage *img, const char *path, int depth, int jpeg_quality,
                          gboolean overwrite, GError **error);

#endif
