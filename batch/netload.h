/* Front-end glue shared by the CLI and the GIMP plug-in: finding a model and its
 * preprocessing, and applying a filter to one image with its outputs. */
#ifndef CNNFX_NETLOAD_H
#define CNNFX_NETLOAD_H

#include "cnnfx-filters.h"
#include "image.h"
#include <stdio.h>

/* Preprocessing given on the command line / in the GIMP dialog: wins over the manifest, the
 * sidecar MODEL.ini and the guess.  `set` says which fields were given (NET_OV_* bits). */
enum {
  NET_OV_MEAN = 1 << 0, NET_OV_STD = 1 << 1, NET_OV_SCALE = 1 << 2, NET_OV_BGR = 1 << 3,
  NET_OV_INPUT_SIZE = 1 << 4, NET_OV_OUTPUT_IS_PROB = 1 << 5, NET_OV_GRAY = 1 << 6,
};
typedef struct {
  guint set;
  double mean[3], std[3];
  float scale;
  gboolean bgr, gray;
  int input_h, input_w;  /* 0 = any size */
  gboolean output_is_prob;
} NetOverrides;

/* Set one override from its option text: key "mean" / "std" (one value or three, ',' or ';'),
 * "scale", "bgr" / "gray" / "output-is-prob" (yes|no|true|false|1|0), "input-size" (N, or H,W / HxW;
 * 0 = any size).  Underscores are accepted for dashes.  FALSE with an error on bad text. */
gboolean cli_net_overrides_set(NetOverrides *ov, const char *key, const char *value, GError **error);

/* The same from a filter's parameter values, for those of the six keys its table has (a value
 * equal to the table's default counts as not given). */
gboolean cli_net_overrides_from_params(NetOverrides *ov, const CnnfxParams *p, GError **error);

/* model: NULL (the filter's offline default), a manifest NAME, or a path to an .onnx file.
 * labels: optional labels file overriding the manifest's.  ov: NULL = none.
 * summary (optional): one line naming the model and the preprocessing used, where it came
 * from and how to change it (the CLI prints it unless -q). */
CnnfxNet *cli_load_net(const char *model, const char *labels, const char *filter, const NetOverrides *ov,
                       char **summary, GError **error);

/* Where offline default weights live (weights/ in the source tree or the installed copy). */
char *cli_weights_dir(void);

/* RGB(A) image <-> [3,H,W] tensor */
CnnfxTensor *cli_image_to_tensor(const CnnfxImage *img, GError **error);
/* Write t [3,h,w] back into img's colour channels (same size; alpha untouched). */
void cli_tensor_to_image(const CnnfxTensor *t, CnnfxImage *img);

typedef struct {
  const CnnfxFilterInfo *info;
  CnnfxParams *params;
  CnnfxNet *net;
  CnnfxRun run;
  const char *outdir;
  gboolean overwrite, depth16;
  int jpeg_quality;
  /* filter state */
  CnnfxTensor **styles;  /* style: loaded style images */
  int n_styles;
  CnnfxTensor *guide;    /* dream: guide image */
  CnnfxModel *fast;      /* style: fast-style network (--fast-model) */
  gboolean fast_net;     /* style: the loaded net itself is a fast-style network */
  /* batch/jobs.c: when pending is non-NULL, outputs are written to temporary files recorded
   * there (CliPending, main output last) and the caller renames them as one unit; when NULL
   * each output is saved atomically on its own. */
  GPtrArray *pending;
  /* result lines (classify, fool); NULL = fputs to the stream */
  void (*say)(gpointer user, FILE *stream, const char *line);
  gpointer say_user;
  CnnfxParams *aux_params; /* fool: classify parameters, to re-check a greyscale result */
  FILE *report;          /* classify / fool: CSV or JSON report */
  CnnfxImageLoadOptions load; /* batch/jobs.c: the decode limits of this run (min_side 0) */
  char *report_tmp, *report_path;
  int n_reported;
} FilterApp;

gboolean cli_filter_prepare(FilterApp *app, GError **error);
/* classify with a fixed-size network reads a JPEG decoded reduced (libjpeg DCT scaling) to this
 * shorter side or more (CnnfxImageLoadOptions.min_side), whatever it writes; 0 = full size. */
int cli_filter_reduced_side(const FilterApp *app);
/* Path of the output whose presence means "done" (resume). */
char *cli_filter_main_output(const FilterApp *app, const char *rel);
gboolean cli_filter_apply(FilterApp *app, CnnfxImage *img, const char *src, const char *rel, GError **error);
/* Closes reports (renamed into place atomically). */
void cli_filter_finish(FilterApp *app, GError **error);

/* Copy of img with the top labels and probabilities drawn in a box (built-in bitmap font). */
CnnfxImage *cli_draw_labels(const CnnfxImage *img, const CnnfxScore *top, int k, GError **error);

char *cli_output_path(const char *outdir, const char *rel, const char *suffix, const char *ext);
/* Every output path of one input (rel = its output name, see jobs.c), main output last. */
GPtrArray *cli_filter_outputs(const FilterApp *app, const char *rel);

typedef struct {
  char *tmp, *final;
} CliPending;
void cli_pending_free(gpointer p);

#endif
