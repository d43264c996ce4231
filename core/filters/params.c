/* The parameter tables of the five filters, and parameter values. */
#include "cnnfx-filters.h"
#include <math.h>
#include <string.h>

#define N_(s) (s)
/* Designated initialisers: the presentation fields (choice_labels, step, group, scope...) can follow
 * any entry, e.g. P_DBL(...), .group = N_("Advanced") is not possible in a macro call, so the macros
 * take them as trailing designated initialisers: P_DBL(..., .log_scale = TRUE). */
#define P_INT(n, lo, hi, d, lab, h, ...) {.name = n, .type = CNNFX_P_INT, .min = lo, .max = hi, .def = d, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_DBL(n, lo, hi, d, lab, h, ...) {.name = n, .type = CNNFX_P_DOUBLE, .min = lo, .max = hi, .def = d, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_BOOL(n, d, lab, h, ...) {.name = n, .type = CNNFX_P_BOOL, .min = 0, .max = 1, .def = d, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_STR(n, d, lab, h, ...) {.name = n, .type = CNNFX_P_STRING, .def_str = d, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_STRS(n, lab, h, ...) {.name = n, .type = CNNFX_P_STRINGS, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_CHOICE(n, d, ch, lab, h, ...) {.name = n, .type = CNNFX_P_CHOICE, .def_str = d, .choices = ch, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_FILE(n, lab, h, ...) {.name = n, .type = CNNFX_P_FILE, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_FILES(n, lab, h, ...) {.name = n, .type = CNNFX_P_FILES, .label = N_(lab), .help = N_(h), __VA_ARGS__}
#define P_END {.name = NULL}

static const CnnfxParam dream_params[] = {
  P_STRS("layer", "Layers", "Layer(s) whose activation is amplified (default: the model's dream layer)"),
  P_STR("channel", NULL, "Channels", "Only these channels of the layer, e.g. 12, 3,40 or 8-15 (default: all)"),
  P_INT("octaves", 1, 12, 4, "Octaves", "Number of scales, coarse to fine"),
  P_DBL("octave-scale", 1.05, 3.0, 1.4, "Octave scale", "Size ratio between octaves"),
  P_INT("iterations", 1, 1000, 10, "Iterations", "Gradient-ascent steps per octave"),
  P_DBL("step", 0.01, 20.0, 1.5, "Step size", "Step size (gradient normalised by its mean absolute value)"),
  P_INT("jitter", 0, 256, 32, "Jitter", "Random shift (roll) in pixels before each step"),
  P_BOOL("clip", 1, "Clip", "Keep pixel values in the valid range 0..1 after every step"),
  P_FILE("guide", "Guide image", "Maximise the match with this image's features (best guide feature per position) instead of their norm"),
  P_INT("tile", 128, 4096, 512, "Tile size", "Largest tile processed at once; big photos are done in overlapping tiles"),
  P_END,
};

static const CnnfxParam style_params[] = {
  P_FILES("style", "Style images", "Style image (repeat for several)"),
  P_STRS("style-blend", "Style blend", "Weight of each style image, in the same order (default: equal)"),
  P_STRS("style-layers", "Style layers", "Style layers, each NAME or NAME:WEIGHT (default: the model's)"),
  P_STRS("content-layers", "Content layers", "Content layer(s) (default: the model's)"),
  P_DBL("content-weight", 0, 1e6, 1.0, "Content weight", "Weight of the content loss"),
  P_DBL("style-weight", 0, 1e9, 1e3, "Style weight", "Weight of the style (Gram matrix) loss"),
  P_DBL("tv-weight", 0, 1e6, 1e-2, "Total variation", "Weight of the total-variation smoothness loss"),
  P_CHOICE("init", "content", "content|noise", "Start from", "Start from the content image or from noise"),
  P_CHOICE("optimizer", "lbfgs", "lbfgs|adam", "Optimizer", "L-BFGS (default) or Adam"),
  P_INT("iterations", 1, 10000, 100, "Iterations", "Optimisation steps per scale"),
  P_DBL("learning-rate", 1e-4, 1.0, 0.02, "Learning rate", "Adam step size (image in 0..1 units)"),
  P_DBL("style-scale", 0.1, 4.0, 1.0, "Style scale", "Resize style images by this factor relative to the content"),
  P_BOOL("preserve-colors", 0, "Keep colours", "Transfer luminance only; keep the content's colours"),
  P_INT("scales", 1, 6, 2, "Scales", "Multi-scale: optimise coarse to fine over this many sizes"),
  P_INT("size", 64, 8192, 512, "Working size", "Longest side the optimisation works at (result is upscaled)"),
  P_FILE("fast-model", "Fast style network", "Run this feed-forward style network (ONNX) instead of optimising"),
  P_END,
};

static const CnnfxParam classify_params[] = {
  P_INT("top", 1, 100, 5, "Top K", "Number of labels reported"),
  P_CHOICE("overlay", "gradcam", "none|gradcam|gradcam++|saliency|smoothgrad", "Heat map",
           "Explanation rendered as a heat map"),
  P_STR("class", NULL, "Class", "Explain this class (label or index; default: the top one)"),
  P_CHOICE("colormap", "jet", "jet|inferno|viridis|gray", "Colour map", "Colour map of the heat map"),
  P_DBL("opacity", 0, 1, 0.5, "Opacity", "Heat map opacity over the image"),
  P_INT("smooth-samples", 1, 200, 25, "SmoothGrad samples", "Noisy copies averaged by SmoothGrad"),
  P_DBL("smooth-noise", 0, 1, 0.15, "SmoothGrad noise", "Noise level of SmoothGrad (fraction of the range)"),
  P_BOOL("labels-image", 1, "Label image", "Also write the image with the top labels drawn on it"),
  P_CHOICE("format", "csv", "csv|json", "Report format", "Batch report format"),
  P_END,
};

static const CnnfxParam fool_params[] = {
  P_CHOICE("method", "pgd", "fgsm|ifgsm|pgd", "Method", "FGSM (one step), iterative FGSM, or PGD (random start)"),
  P_DBL("epsilon", 0, 255, 4, "Epsilon", "Largest change of any pixel, in 0..255 units"),
  P_DBL("step", 0.01, 255, 1, "Step", "Step per iteration, in 0..255 units"),
  P_INT("iterations", 1, 1000, 20, "Iterations", "Steps of iterative FGSM / PGD"),
  P_STR("target", NULL, "Target", "Target label or index, or 'least-likely' (default: untargeted)"),
  P_DBL("amplify", 1, 255, 20, "Noise amplification", "Gain applied to the noise image written for viewing"),
  P_END,
};

static const CnnfxParam visualize_params[] = {
  P_CHOICE("mode", "class", "class|filters|activations", "Mode",
           "Class visualisation, first-layer filters, or a layer's activation maps for the input"),
  P_STR("class", NULL, "Class", "Class to visualise (label or index; default: the input's top class)"),
  P_STR("layer", NULL, "Layer", "Layer for filters / activations: tensor name or OpType#N (default: the first "
        "convolution; for activations its activation)"),
  P_INT("iterations", 1, 5000, 200, "Iterations", "Gradient-ascent steps for class visualisation"),
  P_DBL("l2", 0, 1, 1e-4, "L2 weight", "Lambda of the -lambda*||x||^2 regulariser (x: the network input)"),
  P_DBL("step", 0.001, 100, 1.0, "Step size",
        "Gradient-ascent step in 0..255 units (gradient normalised by its mean absolute value)"),
  P_INT("jitter", 0, 64, 8, "Jitter",
        "Random shift (roll) per step, in pixels of a 224 px input (scaled for other fixed input sizes)"),
  P_DBL("blur", 0, 16, 0.5, "Blur", "Gaussian blur sigma, in pixels of a 224 px input (scaled like jitter); 0 = off"),
  P_INT("blur-every", 1, 100, 4, "Blur every", "Blur period in steps"),
  P_INT("size", 16, 2048, 224, "Size", "Long side of the class visualisation; grids fit in size x size"),
  P_INT("max-channels", 1, 1024, 64, "Channels shown", "Largest number of filters / maps (and input channels) in the grid"),
  P_END,
};

/* Shared by every filter (filled in as the CLI's common flags move onto the table). */
static const CnnfxParam common_params[] = {
  P_END,
};

const CnnfxParam *cnnfx_common_params(void)
{
  return common_params;
}

static const CnnfxFilterInfo filters[] = {
  {"dream", N_("Deep Dream"), N_("Amplify what a network layer sees in the image"), dream_params},
  {"style", N_("Style Transfer"), N_("Repaint the image in the style of another (Gatys et al.)"), style_params},
  {"classify", N_("Classify"), N_("Top labels with heat maps of where the network looked"), classify_params},
  {"fool", N_("Fool the Network"), N_("Invisible noise that changes the network's answer"), fool_params},
  {"visualize", N_("Visualize"), N_("What a class or a layer's filters look like to the network"), visualize_params},
};

static const CnnfxFilterInfo *const filter_list[] = {&filters[0], &filters[1], &filters[2], &filters[3],
                                                     &filters[4], NULL};

const CnnfxFilterInfo *const *cnnfx_filter_infos(void)
{
  return filter_list;
}

const CnnfxFilterInfo *cnnfx_filter_info(const char *name)
{
  for (size_t i = 0; i < G_N_ELEMENTS(filters); i++)
    if (!strcmp(filters[i].name, name)) return &filters[i];
  return NULL;
}

/* ---- values --------------------------------------------------------------------- */

typedef struct {
  double num;
  char *str;
  GPtrArray *list; /* STRINGS / FILES */
} Value;

struct CnnfxParams {
  const CnnfxFilterInfo *f;
  int n;
  Value *v;
};

static int find(const CnnfxParams *p, const char *name)
{
  for (int i = 0; i < p->n; i++)
    if (!strcmp(p->f->params[i].name, name)) return i;
  return -1;
}

CnnfxParams *cnnfx_params_new(const CnnfxFilterInfo *f)
{
  CnnfxParams *p = g_new0(CnnfxParams, 1);
  p->f = f;
  while (f->params[p->n].name) p->n++;
  p->v = g_new0(Value, p->n + 1);
  for (int i = 0; i < p->n; i++) {
    const CnnfxParam *d = &f->params[i];
    p->v[i].num = d->def;
    p->v[i].str = g_strdup(d->def_str);
    if (d->type == CNNFX_P_STRINGS || d->type == CNNFX_P_FILES) {
      p->v[i].list = g_ptr_array_new_with_free_func(g_free);
      g_ptr_array_add(p->v[i].list, NULL);
    }
  }
  return p;
}

void cnnfx_params_free(CnnfxParams *p)
{
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    g_free(p->v[i].str);
    if (p->v[i].list) g_ptr_array_free(p->v[i].list, TRUE);
  }
  g_free(p->v);
  g_free(p);
}

const CnnfxFilterInfo *cnnfx_params_filter(const CnnfxParams *p)
{
  return p->f;
}

static gboolean bad(GError **error, const CnnfxParam *d, const char *fmt, const char *value)
{
  g_autofree char *what = g_strdup_printf(fmt, value);
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "--%s: %s", d->name, what);
  return FALSE;
}

static gboolean set_num(CnnfxParams *p, int i, double x, GError **error)
{
  const CnnfxParam *d = &p->f->params[i];
  if (!(x >= d->min && x <= d->max)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "--%s: %g is outside %g..%g", d->name, x, d->min, d->max);
    return FALSE;
  }
  if (d->type == CNNFX_P_INT && x != floor(x)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "--%s: %g is not a whole number", d->name, x);
    return FALSE;
  }
  p->v[i].num = x;
  return TRUE;
}

gboolean cnnfx_params_set(CnnfxParams *p, const char *name, const char *value, GError **error)
{
  int i = find(p, name);
  if (i < 0) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "%s has no option --%s", p->f->name, name);
    return FALSE;
  }
  const CnnfxParam *d = &p->f->params[i];
  char *end;
  switch (d->type) {
  case CNNFX_P_INT:
  case CNNFX_P_DOUBLE: {
    double x = g_ascii_strtod(value, &end);
    if (end == value || *end) return bad(error, d, "'%s' is not a number", value);
    return set_num(p, i, x, error);
  }
  case CNNFX_P_BOOL:
    if (!g_ascii_strcasecmp(value, "1") || !g_ascii_strcasecmp(value, "true") || !g_ascii_strcasecmp(value, "yes"))
      p->v[i].num = 1;
    else if (!g_ascii_strcasecmp(value, "0") || !g_ascii_strcasecmp(value, "false") || !g_ascii_strcasecmp(value, "no"))
      p->v[i].num = 0;
    else
      return bad(error, d, "'%s' is not yes/no", value);
    return TRUE;
  case CNNFX_P_CHOICE: {
    g_auto(GStrv) ch = g_strsplit(d->choices, "|", -1);
    if (!g_strv_contains((const char *const *)ch, value))
      return bad(error, d, "'%s' is not one of the choices", value);
    g_free(p->v[i].str);
    p->v[i].str = g_strdup(value);
    return TRUE;
  }
  case CNNFX_P_STRING:
  case CNNFX_P_FILE:
  case CNNFX_P_COLOR:
  case CNNFX_P_LAYER:
  case CNNFX_P_CLASS:
  case CNNFX_P_MODEL_LAYER:
    g_free(p->v[i].str);
    p->v[i].str = g_strdup(value);
    return TRUE;
  case CNNFX_P_STRINGS:
  case CNNFX_P_FILES: {
    GPtrArray *l = p->v[i].list;
    g_ptr_array_remove_index(l, l->len - 1); /* the NULL terminator */
    if (d->type == CNNFX_P_STRINGS) {
      g_auto(GStrv) parts = g_strsplit(value, ",", -1);
      for (char **s = parts; *s; s++)
        if (**s) g_ptr_array_add(l, g_strstrip(g_strdup(*s)));
    } else {
      g_ptr_array_add(l, g_strdup(value));
    }
    g_ptr_array_add(l, NULL);
    return TRUE;
  }
  }
  return FALSE;
}

gboolean cnnfx_params_set_int(CnnfxParams *p, const char *name, int v, GError **error)
{
  return cnnfx_params_set_double(p, name, v, error);
}

gboolean cnnfx_params_set_double(CnnfxParams *p, const char *name, double v, GError **error)
{
  int i = find(p, name);
  if (i < 0 || p->f->params[i].type > CNNFX_P_BOOL) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "%s has no numeric option --%s", p->f->name, name);
    return FALSE;
  }
  return set_num(p, i, v, error);
}

int cnnfx_params_int(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0, 0);
  return (int)p->v[i].num;
}

double cnnfx_params_double(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0, 0);
  return p->v[i].num;
}

gboolean cnnfx_params_bool(const CnnfxParams *p, const char *name)
{
  return cnnfx_params_double(p, name) != 0;
}

const char *cnnfx_params_string(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0, NULL);
  return p->v[i].str;
}

const char *const *cnnfx_params_strings(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0 && p->v[i].list, NULL);
  return (const char *const *)p->v[i].list->pdata;
}
