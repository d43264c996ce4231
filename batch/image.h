/* Image files for the cnnfx front-ends: PNG (8/16-bit, grey/RGB, alpha) and JPEG,
 * EXIF orientation applied on load, atomic writes.  Not part of the core.
 *
 * Hostile files: the declared size is checked right after the header, before any pixel
 * buffer exists, against a pixel limit (default CNNFX_IMAGE_DEFAULT_MAX_PIXELS, like Pillow's
 * decompression-bomb limit) and a byte budget for decoding; libjpeg's own memory is bounded
 * and libpng's chunk sizes are limited.  A truncated JPEG is an error, not a grey bottom. */
#ifndef CNNFX_IMAGE_H
#define CNNFX_IMAGE_H

#include <glib.h>
#include <stdio.h>

typedef struct {
  int width, height;
  int channels;   /* 3 (RGB) or 4 (RGBA); grey files are expanded to RGB (see gray) */
  int depth;      /* bits per sample of the source file: 8 or 16 */
  float *px;      /* width*height*channels floats in 0..1, interleaved, row-major */
  /* Metadata of the source file, kept in outputs derived from it (cnnfx_image_copy_meta). */
  gboolean gray;  /* the file was greyscale: saving writes grey (the mean of R, G, B) */
  guint8 *exif;   /* EXIF TIFF block (no "Exif\0\0" prefix), orientation reset to 1; or NULL */
  gsize exif_len;
  int scale_denom; /* 1, or 2/4/8 when a JPEG was decoded reduced (min_side) */
  gboolean jpeg;   /* decoded from a JPEG file (min_side can apply to it) */
} CnnfxImage;

/* Pillow's default decompression-bomb limit (2 x 89478485 pixels). */
#define CNNFX_IMAGE_DEFAULT_MAX_PIXELS ((gint64)178956970)

typedef struct {
  gint64 max_pixels; /* declared width*height above this is refused; 0 = the default limit */
  gint64 max_bytes;  /* memory decoding may use (pixel buffer + decoder state); 0 = 2 GiB */
  int min_side;      /* > 0: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling)
                        while both sides stay >= min_side; 0 = always full size */
} CnnfxImageLoadOptions;

/* The libjpeg scale denominator (1, 2, 4 or 8) a JPEG of this size is decoded at for min_side. */
int cnnfx_image_jpeg_denom(gint64 width, gint64 height, int min_side);

CnnfxImage *cnnfx_image_new(int width, int height, int channels, int depth, GError **error);
void cnnfx_image_free(CnnfxImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxImage, cnnfx_image_free)
/* Copy gray flag and EXIF of src into dst (an output derived from src). */
void cnnfx_image_copy_meta(CnnfxImage *dst, const CnnfxImage *src);

/* Format by content (PNG / JPEG signature), not by name.  Default limits. */
CnnfxImage *cnnfx_image_load(const char *path, GError **error);
CnnfxImage *cnnfx_image_load_with(const char *path, const CnnfxImageLoadOptions *opts, GError **error);
/* From an open stream (name is for messages); used by the fuzz harness with fmemopen(). */
CnnfxImage *cnnfx_image_load_stream(FILE *f, const char *name, const CnnfxImageLoadOptions *opts, GError **error);

/* Format by the file name's extension (.png, .jpg/.jpeg).  depth 8 or 16 (PNG only).
 * Writes to a temporary file in the same folder and renames it into place, so a failed or
 * interrupted write never leaves a partial file; refuses to replace an existing file unless
 * overwrite. */
gboolean cnnfx_image_save(const CnnfxImage *img, const char *path, int depth, int jpeg_quality,
                          gboolean overwrite, GError **error);
/* Write the image for final path `path` into a new temporary file ".NAME.XXXXXX" next to it
 * (fsynced) and return its name in *tmp_path; the caller renames it into place. */
gboolean cnnfx_image_save_temp(const CnnfxImage *img, const char *path, int depth, int jpeg_quality,
                               char **tmp_path, GError **error);
/* Write bytes to a new temporary ".NAME.XXXXXX" next to path (fsynced, usual permissions). */
gboolean cnnfx_write_temp(const char *path, const void *data, gsize len, char **tmp_path, GError **error);
/* TRUE if name (a basename) is one of the temporary names of final basename `final`. */
gboolean cnnfx_is_temp_name_of(const char *name, const char *final);

/* TRUE if the file is an image written by cnnfx (PNG tEXt Software=cnnfx, JPEG COM "cnnfx"). */
gboolean cnnfx_image_file_is_ours(const char *path);
/* TRUE if the first bytes are a PNG or JPEG signature. */
gboolean cnnfx_image_sniff(const char *path);

#endif
