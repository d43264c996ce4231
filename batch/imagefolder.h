/* Image classification data sets in the ImageFolder layout (DIR/<class>/<image>), loaded
 * into memory as float planes, with the usual training augmentations. */
#ifndef CNNFX_IMAGEFOLDER_H
#define CNNFX_IMAGEFOLDER_H

#include <glib.h>

typedef struct {
  int n, h, w;        /* images, each 3 x h x w */
  float *x;           /* n * 3 * h * w, planar RGB; 0..1 after loading, normalised by the caller */
  int *y;             /* n class indices */
  char **classes;     /* NULL-terminated class names (sorted folder names) */
  int n_classes;
} CnnfxImageSet;

void cnnfx_imageset_clear(CnnfxImageSet *d);

/* Class folder names of dir (sorted, folders holding at least one photo), NULL-terminated. */
char **cnnfx_imagefolder_classes(const char *dir, GError **error);

/* SHA-256 (hex) of what a training run reads from dir: the relative path, size and modification
 * time of every image file in dir and its sub-folders (two levels: DIR/CLASS/IMAGE and
 * DIR/SPLIT/CLASS/IMAGE), in sorted order.  Changes when a photo is added, removed, renamed or
 * rewritten; not when a folder without images changes. */
char *cnnfx_imagefolder_fingerprint(const char *dir, GError **error);

/* Load every .jpg/.jpeg/.png of dir/<class>/ (files sorted by name) for the given classes
 * (NULL: the folders found).  Images are resized to size x size (box/bilinear) unless they
 * already have that size.  per_class > 0: only the first per_class files of each class.
 * Decoding runs on all threads; the result does not depend on the thread count. */
gboolean cnnfx_imagefolder_load(const char *dir, char **classes, int size, int per_class, CnnfxImageSet *d,
                                GError **error);

/* Move every k-th image (k = round(1/fraction), by class in file order) from d into held. */
gboolean cnnfx_imageset_split(CnnfxImageSet *d, double fraction, CnnfxImageSet *held, GError **error);

/* Per-channel mean and standard deviation over the whole set. */
void cnnfx_imageset_stats(const CnnfxImageSet *d, double mean[3], double std[3]);
/* RGB -> BGR planes (models trained on BGR input). */
void cnnfx_imageset_swap_rb(CnnfxImageSet *d);
/* x = (x - mean) / std in place. */
void cnnfx_imageset_normalise(CnnfxImageSet *d, const double mean[3], const double std[3]);

/* Copy image i into dst (3 x h x w), shifted by (dx, dy) with padding (reflect: mirror the
 * border, else zeros, i.e. the mean colour after normalisation) and mirrored when flip. */
void cnnfx_imageset_crop_flip(const CnnfxImageSet *d, int i, int dx, int dy, gboolean flip, gboolean reflect,
                              float *dst);

/* Cutout: set the size x size square with top-left corner (x0, y0) of the 3 x h x w image img to
 * zero (the mean colour after normalisation) in every channel; the part outside the image is
 * ignored. */
void cnnfx_imageset_cutout(float *img, int h, int w, int x0, int y0, int size);

#endif
