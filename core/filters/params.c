/* The parameter tables of the five filters, and parameter values. */
#include "cnnfx-filters.h"
#include <math.h>
#include <string.h>

#include "netutil.h"
/* Designated initialisers: the presentation fields (choice_labels, step, group, scope...) follow the
 * positional ones as trailing designated initialisers: P_DBL(..., .log_scale = TRUE). */
#define P_INT(n, lo, hi, d, lab, h, ...) {.name = n, .type = CNNFX_P_INT, .min = lo, .max = hi, .def = d, .label = lab, .help = h, __VA_ARGS__}
#define P_DBL(n, lo, hi, d, lab, h, ...) {.name = n, .type = CNNFX_P_DOUBLE, .min = lo, .max = hi, .def = d, .label = lab, .help = h, __VA_ARGS__}
#define P_BOOL(n, d, lab, h, ...) {.name = n, .type = CNNFX_P_BOOL, .min = 0, .max = 1, .def = d, .label = lab, .help = h, __VA_ARGS__}
#define P_STR(n, d, lab, h, ...) {.name = n, .type = CNNFX_P_STRING, .def_str = d, .label = lab, .help = h, __VA_ARGS__}
#define P_STRS(n, lab, h, ...) {.name = n, .type = CNNFX_P_STRINGS, .label = lab, .help = h, __VA_ARGS__}
#define P_CHOICE(n, d, ch, lab, h, ...) {.name = n, .type = CNNFX_P_CHOICE, .def_str = d, .choices = ch, .label = lab, .help = h, __VA_ARGS__}
#define P_FILE(n, lab, h, ...) {.name = n, .type = CNNFX_P_FILE, .label = lab, .help = h, __VA_ARGS__}
#define P_FILES(n, lab, h, ...) {.name = n, .type = CNNFX_P_FILES, .label = lab, .help = h, __VA_ARGS__}
#define P_LAYER(n, lab, h, ...) {.name = n, .type = CNNFX_P_LAYER, .label = lab, .help = h, __VA_ARGS__}
#define P_CLASS(n, lab, h, ...) {.name = n, .type = CNNFX_P_CLASS, .label = lab, .help = h, __VA_ARGS__}
#define P_MLAYER(n, lab, h, ...) {.name = n, .type = CNNFX_P_MODEL_LAYER, .label = lab, .help = h, __VA_ARGS__}
#define P_END {.name = NULL}

#define BASIC .group = GROUP_BASIC
#define ADVANCED .group = GROUP_ADVANCED
#define CLI_ONLY .scope = CNNFX_SCOPE_CLI

/* TRANSLATORS: parameter group (GIMP dialog section) */
static const char GROUP_BASIC[] = N_("Basic");
/* TRANSLATORS: parameter group (GIMP dialog section, expander) */
static const char GROUP_ADVANCED[] = N_("Advanced");

static const CnnfxParam dream_params[] = {
  P_STRS("layer", N_("Layers"), N_("Layer(s) whose activation is amplified (default: the model's dream layer)"), BASIC),
  P_STR("channel", NULL, N_("Channels"), N_("Only these channels of the layer, e.g. 12, 3,40 or 8-15 (default: all)"),
        ADVANCED),
  P_INT("octaves", 1, 12, 4, N_("Octaves"), N_("Number of scales, coarse to fine"), BASIC, .step = 1, .page = 2),
  P_DBL("octave-scale", 1.05, 3.0, 1.4, N_("Octave scale"), N_("Size ratio between octaves"), ADVANCED, .step = 0.05,
        .page = 0.2),
  P_INT("iterations", 1, 1000, 10, N_("Iterations"), N_("Gradient-ascent steps per octave"), BASIC, .step = 1, .page = 10,
        .log_scale = TRUE),
  P_DBL("step", 0.01, 20.0, 1.5, N_("Step size"), N_("Step size (gradient normalised by its mean absolute value)"), BASIC,
        .step = 0.1, .page = 0.5, .log_scale = TRUE),
  P_INT("jitter", 0, 256, 32, N_("Jitter"), N_("Random shift (roll) in pixels before each step"), ADVANCED, .step = 1,
        .page = 8),
  P_BOOL("clip", 1, N_("Clip"), N_("Keep pixel values in the valid range 0..1 after every step"), ADVANCED),
  P_LAYER("guide", N_("Guide image"),
          N_("Maximise the match with this image's features (best guide feature per position) instead of their norm"),
          ADVANCED),
  P_INT("tile", 128, 4096, 512, N_("Tile size"), N_("Largest tile processed at once; big photos are done in overlapping tiles"),
        ADVANCED, .step = 64, .page = 256),
  P_END,
};

static const CnnfxParam style_params[] = {
  P_FILES("style", N_("Style images"), N_("Style image (repeat for several)"), BASIC),
  P_STRS("style-blend", N_("Style blend"), N_("Weight of each style image, in the same order (default: equal)"), ADVANCED),
  P_STRS("style-layers", N_("Style layers"), N_("Style layers, each NAME or NAME:WEIGHT (default: the model's)"), ADVANCED),
  P_STRS("content-layers", N_("Content layers"), N_("Content layer(s) (default: the model's)"), ADVANCED),
  P_DBL("content-weight", 0, 1e6, 1.0, N_("Content weight"), N_("Weight of the content loss"), BASIC, .step = 0.1, .page = 1,
        .log_scale = TRUE),
  P_DBL("style-weight", 0, 1e9, 1e3, N_("Style weight"), N_("Weight of the style (Gram matrix) loss"), BASIC, .step = 10,
        .page = 100, .log_scale = TRUE),
  P_DBL("tv-weight", 0, 1e6, 1e-2, N_("Total variation"), N_("Weight of the total-variation smoothness loss"), ADVANCED,
        .step = 0.001, .page = 0.01, .log_scale = TRUE),
  P_CHOICE("init", "content", "content|noise", N_("Start from"), N_("Start from the content image or from noise"), ADVANCED,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("Content image|Noise")),
  P_CHOICE("optimizer", "lbfgs", "lbfgs|adam", N_("Optimizer"), N_("L-BFGS (default) or Adam"), ADVANCED,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("L-BFGS|Adam")),
  P_INT("iterations", 1, 10000, 100, N_("Iterations"), N_("Optimisation steps per scale"), BASIC, .step = 1, .page = 10,
        .log_scale = TRUE),
  P_DBL("learning-rate", 1e-4, 1.0, 0.02, N_("Learning rate"), N_("Adam step size (image in 0..1 units)"), ADVANCED,
        .step = 0.001, .page = 0.01, .log_scale = TRUE, .sensitive_if = "optimizer=adam"),
  P_DBL("style-scale", 0.1, 4.0, 1.0, N_("Style scale"), N_("Resize style images by this factor relative to the content"),
        ADVANCED, .step = 0.05, .page = 0.25),
  P_BOOL("preserve-colors", 0, N_("Keep colours"), N_("Transfer luminance only; keep the content's colours"), BASIC),
  P_INT("scales", 1, 6, 2, N_("Scales"), N_("Multi-scale: optimise coarse to fine over this many sizes"), ADVANCED, .step = 1,
        .page = 1),
  P_INT("size", 64, 8192, 512, N_("Working size"), N_("Longest side the optimisation works at (result is upscaled)"), BASIC,
        .step = 16, .page = 128),
  P_FILE("fast-model", N_("Fast style network"), N_("Run this feed-forward style network (ONNX) instead of optimising"),
         ADVANCED),
  P_END,
};

static const CnnfxParam classify_params[] = {
  P_INT("top", 1, 100, 5, N_("Top K"), N_("Number of labels reported"), BASIC, .step = 1, .page = 5),
  P_CHOICE("overlay", "gradcam", "none|gradcam|gradcam++|saliency|smoothgrad", N_("Heat map"),
           N_("Explanation rendered as a heat map"), BASIC,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("None|Grad-CAM|Grad-CAM++|Saliency (input gradient)|SmoothGrad")),
  P_CLASS("class", N_("Class"), N_("Explain this class (label or index; default: the top one)"), BASIC,
          .sensitive_if = "overlay!=none"),
  P_CHOICE("colormap", "jet", "jet|inferno|viridis|gray", N_("Colour map"), N_("Colour map of the heat map"), ADVANCED,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("Jet|Inferno|Viridis|Grey"), .sensitive_if = "overlay!=none"),
  P_DBL("opacity", 0, 1, 0.5, N_("Opacity"), N_("Heat map opacity over the image"), BASIC, .step = 0.05, .page = 0.1,
        .sensitive_if = "overlay!=none"),
  P_INT("smooth-samples", 1, 200, 25, N_("SmoothGrad samples"), N_("Noisy copies averaged by SmoothGrad"), ADVANCED,
        .step = 1, .page = 5, .sensitive_if = "overlay=smoothgrad"),
  P_DBL("smooth-noise", 0, 1, 0.15, N_("SmoothGrad noise"), N_("Noise level of SmoothGrad (fraction of the range)"), ADVANCED,
        .step = 0.01, .page = 0.05, .sensitive_if = "overlay=smoothgrad"),
  P_BOOL("labels-image", 1, N_("Label image"), N_("Also write the image with the top labels drawn on it"), CLI_ONLY),
  P_CHOICE("format", "csv", "csv|json", N_("Report format"), N_("Batch report format"), CLI_ONLY,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("CSV|JSON")),
  P_END,
};

static const CnnfxParam fool_params[] = {
  P_CHOICE("method", "pgd", "fgsm|ifgsm|pgd", N_("Method"), N_("How the adversarial noise is found"),
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           BASIC, .choice_labels = N_("FGSM (one step)|Iterative FGSM|PGD (random start)")),
  P_DBL("epsilon", 0, 255, 4, N_("Epsilon"), N_("Largest change of any pixel, in 0..255 units"), BASIC, .step = 0.5,
        .page = 2),
  P_DBL("step", 0.01, 255, 1, N_("Step"), N_("Step per iteration, in 0..255 units"), ADVANCED, .step = 0.1, .page = 1,
        .log_scale = TRUE, .sensitive_if = "method!=fgsm"),
  P_INT("iterations", 1, 1000, 20, N_("Iterations"), N_("Steps of iterative FGSM / PGD"), ADVANCED, .step = 1, .page = 10,
        .log_scale = TRUE, .sensitive_if = "method!=fgsm"),
  P_CLASS("target", N_("Target"), N_("Target label or index, or 'least-likely' (default: untargeted)"), BASIC),
  P_DBL("amplify", 1, 255, 20, N_("Noise amplification"), N_("Gain applied to the noise image written for viewing"),
        ADVANCED, .step = 1, .page = 10, .log_scale = TRUE),
  P_END,
};

static const CnnfxParam visualize_params[] = {
  P_CHOICE("mode", "class", "class|filters|activations", N_("Mode"),
           N_("Class visualisation, first-layer filters, or a layer's activation maps for the input"), BASIC,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("Class visualisation|Filters|Activation maps")),
  P_CLASS("class", N_("Class"), N_("Class to visualise (label or index; default: the input's top class)"), BASIC,
          .sensitive_if = "mode=class"),
  P_MLAYER("layer", N_("Layer"), N_("Layer for filters / activations: tensor name or OpType#N (default: the first "
           "convolution; for activations its activation)"), BASIC, .sensitive_if = "mode=filters|activations"),
  P_INT("iterations", 1, 5000, 200, N_("Iterations"), N_("Gradient-ascent steps for class visualisation"), BASIC, .step = 1,
        .page = 10, .log_scale = TRUE, .sensitive_if = "mode=class"),
  P_DBL("l2", 0, 1, 1e-4, N_("L2 weight"), N_("Lambda of the -lambda*||x||^2 regulariser (x: the network input)"), ADVANCED,
        .step = 1e-5, .page = 1e-4, .log_scale = TRUE, .sensitive_if = "mode=class"),
  P_DBL("step", 0.001, 100, 1.0, N_("Step size"),
        N_("Gradient-ascent step in 0..255 units (gradient normalised by its mean absolute value)"), ADVANCED,
        .step = 0.1, .page = 1, .log_scale = TRUE, .sensitive_if = "mode=class"),
  P_INT("jitter", 0, 64, 8, N_("Jitter"),
        N_("Random shift (roll) per step, in pixels of a 224 px input (scaled for other fixed input sizes)"), ADVANCED,
        .step = 1, .page = 4, .sensitive_if = "mode=class"),
  P_DBL("blur", 0, 16, 0.5, N_("Blur"), N_("Gaussian blur sigma, in pixels of a 224 px input (scaled like jitter); 0 = off"),
        ADVANCED, .step = 0.1, .page = 0.5, .sensitive_if = "mode=class"),
  P_INT("blur-every", 1, 100, 4, N_("Blur every"), N_("Blur period in steps"), ADVANCED, .step = 1, .page = 5,
        .sensitive_if = "mode=class"),
  P_INT("size", 16, 2048, 224, N_("Size"), N_("Long side of the class visualisation; grids fit in size x size"), BASIC,
        .step = 16, .page = 64),
  P_INT("max-channels", 1, 1024, 64, N_("Channels shown"),
        N_("Largest number of filters / maps (and input channels) in the grid"), ADVANCED, .step = 1, .page = 16,
        .sensitive_if = "mode!=class"),
  P_END,
};

/* Shared by every filter: the model and where it runs, then the preprocessing of a model given as a
 * path (override its DIR/M.ini), then the CLI's batch options. */
static const CnnfxParam common_params[] = {
  P_STR("model", NULL, N_("Model"),
        N_("Model name (see 'cnnfx models list') or ONNX file; default: the filter's offline default"), BASIC,
        .short_name = 'm', .metavar = "NAME|PATH"),
  P_BOOL("offline", 0, N_("Offline"),
         N_("Never download the filter's preferred model on first use (also CNNFX_OFFLINE=1)"), CLI_ONLY),
  P_FILE("labels", N_("Labels file"), N_("Labels file (one per line) for a model given as a path"), ADVANCED),
  P_CHOICE("device", "auto", "auto|cpu|cuda|sim", N_("Device"),
           N_("Where the network runs: auto, cpu, cuda (or cuda:N), or sim (the simulated test device)"), BASIC,
           /* TRANSLATORS: one label per choice, separated by '|' (keep the number of '|') */
           .choice_labels = N_("Automatic|CPU|CUDA GPU|Simulated device (tests)"), .choice_index = TRUE),
  P_INT("seed", 0, G_MAXINT, 0, N_("Random seed"), N_("Random seed; the same seed gives the same result"), ADVANCED,
        .step = 1, .page = 10),
  P_INT("max-memory", 0, 1 << 20, 2048, N_("Memory bound (MiB)"),
        N_("Memory bound for network tensors in MiB; big images are processed in tiles to fit (0 = no bound)"),
        ADVANCED, .step = 64, .page = 512, .log_scale = TRUE, .metavar = "MB"),
  P_BOOL("exact", 0, N_("Exact arithmetic"), N_("Turn off Winograd convolutions and other approximations"), ADVANCED),
  /* preprocessing of a model given as a path (each overrides the model's .ini when given) */
  P_STRS("mean", N_("Input mean"), N_("Per-channel mean subtracted from the scaled input, r,g,b (model given as a path)"),
         ADVANCED, .metavar = "R,G,B"),
  P_STRS("std", N_("Input standard deviation"),
         N_("Per-channel standard deviation the input is divided by, r,g,b (model given as a path)"), ADVANCED,
         .metavar = "R,G,B"),
  P_DBL("scale", 0.001, 65535, 1, N_("Input scale"), N_("Factor applied to 0..1 pixel values before mean and std "
        "(255 for 0..255 networks; model given as a path)"), ADVANCED, .step = 1, .page = 10, .log_scale = TRUE),
  P_BOOL("bgr", 0, N_("BGR channel order"), N_("The network takes BGR instead of RGB (model given as a path)"), ADVANCED),
  P_BOOL("gray", 0, N_("Greyscale input"), N_("The network takes one grey channel (model given as a path)"), ADVANCED),
  P_STRS("input-size", N_("Input size"), N_("Fixed input size H,W of a classifier (model given as a path; default: any size)"),
         ADVANCED, .metavar = "H,W"),
  P_BOOL("output-is-prob", 0, N_("Output is probabilities"),
         N_("The network's output is already softmaxed (model given as a path)"), ADVANCED),
  /* batch runs: command line only */
  P_FILE("output", N_("Output folder"), N_("Output folder (required; mirrors the input tree)"), CLI_ONLY, .short_name = 'o',
         .metavar = "OUTDIR"),
  P_BOOL("overwrite", 0, N_("Overwrite"), N_("Replace existing outputs (otherwise they are skipped, so a run can resume)"), CLI_ONLY),
  P_BOOL("recursive", 0, N_("Recursive"), N_("Recurse into sub-folders"), CLI_ONLY, .short_name = 'r'),
  P_INT("jpeg-quality", 1, 100, 92, N_("JPEG quality"), N_("JPEG output quality"), CLI_ONLY, .metavar = "Q"),
  P_BOOL("depth16", 0, N_("16-bit output"), N_("Write 16-bit PNG (otherwise: the input's depth)"), CLI_ONLY,
         .cli_name = "16bit"),
  P_BOOL("quiet", 0, N_("Quiet"), N_("No progress bar"), CLI_ONLY, .short_name = 'q'),
  P_DBL("max-pixels", 0, 1e12, 178956970, N_("Pixel limit"),
        N_("Refuse images declaring more pixels than this before decoding (decompression-bomb guard; default like Pillow)"),
        CLI_ONLY, .metavar = "N"),
  P_STR("shard", NULL, N_("Shard"),
        N_("Process only shard K of N (1-based, by path hash; default: from SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)"),
        CLI_ONLY, .metavar = "K/N"),
  P_INT("shard-count", 0, 1000000, 0, N_("Shard count"),
        N_("Number of shards N with JOB_COMPLETION_INDEX (default: CNNFX_SHARD_COUNT)"), CLI_ONLY, .metavar = "N"),
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

/* ---- presentation helpers --------------------------------------------------------- */

const char *cnnfx_param_text(const char *msgid)
{
  return msgid && *msgid ? g_dgettext(CNNFX_GETTEXT_DOMAIN, msgid) : msgid;
}

const char *cnnfx_param_flag(const CnnfxParam *d)
{
  return d->cli_name ? d->cli_name : d->name;
}

char *cnnfx_param_choice_label(const CnnfxParam *d, const char *nick)
{
  if (!d->choices || !nick) return g_strdup(nick);
  g_auto(GStrv) ch = g_strsplit(d->choices, "|", -1);
  g_auto(GStrv) lab = d->choice_labels ? g_strsplit(cnnfx_param_text(d->choice_labels), "|", -1) : NULL;
  for (guint i = 0; ch[i]; i++)
    if (!strcmp(ch[i], nick)) return g_strdup(lab && i < g_strv_length(lab) ? lab[i] : nick);
  return g_strdup(nick);
}

/* ---- values --------------------------------------------------------------------- */

typedef struct {
  double num;
  char *str;
  GPtrArray *list; /* STRINGS / FILES */
  gboolean set;
} Value;

struct CnnfxParams {
  const CnnfxFilterInfo *f;
  int n;
  const CnnfxParam **d; /* common entries, then the filter's */
  Value *v;
};

static int find(const CnnfxParams *p, const char *name)
{
  for (int i = 0; i < p->n; i++)
    if (!strcmp(p->d[i]->name, name)) return i;
  return -1;
}

CnnfxParams *cnnfx_params_new(const CnnfxFilterInfo *f)
{
  CnnfxParams *p = g_new0(CnnfxParams, 1);
  p->f = f;
  int nc = 0, nf = 0;
  while (common_params[nc].name) nc++;
  while (f->params[nf].name) nf++;
  p->n = nc + nf;
  p->d = g_new0(const CnnfxParam *, p->n + 1);
  for (int i = 0; i < nc; i++) p->d[i] = &common_params[i];
  for (int i = 0; i < nf; i++) p->d[nc + i] = &f->params[i];
  p->v = g_new0(Value, p->n + 1);
  for (int i = 0; i < p->n; i++) {
    const CnnfxParam *d = p->d[i];
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
  g_free(p->d);
  g_free(p);
}

const CnnfxFilterInfo *cnnfx_params_filter(const CnnfxParams *p)
{
  return p->f;
}

int cnnfx_params_count(const CnnfxParams *p)
{
  return p->n;
}

const CnnfxParam *cnnfx_params_nth(const CnnfxParams *p, int i)
{
  g_return_val_if_fail(i >= 0 && i < p->n, NULL);
  return p->d[i];
}

const CnnfxParam *cnnfx_params_find(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  return i < 0 ? NULL : p->d[i];
}

gboolean cnnfx_params_is_set(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0, FALSE);
  return p->v[i].set;
}

static gboolean bad(GError **error, const CnnfxParam *d, const char *what)
{
  /* TRANSLATORS: "<parameter label>: <what is wrong>" */
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("%s: %s"), cnnfx_param_text(d->label), what);
  return FALSE;
}

static gboolean check_num(const CnnfxParam *d, double x, GError **error)
{
  if (!(x >= d->min && x <= d->max)) {
    g_autofree char *w = g_strdup_printf(_("%g is outside %g..%g"), x, d->min, d->max);
    return bad(error, d, w);
  }
  if (d->type == CNNFX_P_INT && x != floor(x)) {
    g_autofree char *w = g_strdup_printf(_("%g is not a whole number"), x);
    return bad(error, d, w);
  }
  return TRUE;
}

static gboolean parse_bool(const char *value, double *x)
{
  static const char *const yes[] = {"1", "true", "yes", "on", NULL}, *const no[] = {"0", "false", "no", "off", NULL};
  for (int i = 0; yes[i]; i++)
    if (!g_ascii_strcasecmp(value, yes[i])) return *x = 1, TRUE;
  for (int i = 0; no[i]; i++)
    if (!g_ascii_strcasecmp(value, no[i])) return *x = 0, TRUE;
  return FALSE;
}

static gboolean choice_ok(const CnnfxParam *d, const char *value)
{
  g_auto(GStrv) ch = g_strsplit(d->choices ? d->choices : "", "|", -1);
  if (g_strv_contains((const char *const *)ch, value)) return TRUE;
  if (!d->choice_index) return FALSE;
  /* "nick:N" with N a device index */
  const char *colon = strchr(value, ':');
  if (!colon || !colon[1] || colon[1] == '-') return FALSE;
  for (const char *c = colon + 1; *c; c++)
    if (!g_ascii_isdigit(*c)) return FALSE;
  g_autofree char *nick = g_strndup(value, colon - value);
  return g_strv_contains((const char *const *)ch, nick) && strcmp(nick, "auto") != 0;
}

gboolean cnnfx_param_check(const CnnfxParam *d, const char *value, GError **error)
{
  g_autofree char *w = NULL;
  if (!value) value = "";
  switch (d->type) {
  case CNNFX_P_INT:
  case CNNFX_P_DOUBLE: {
    char *end;
    double x = g_ascii_strtod(value, &end);
    if (end == value || *end) {
      w = g_strdup_printf(_("'%s' is not a number"), value);
      return bad(error, d, w);
    }
    return check_num(d, x, error);
  }
  case CNNFX_P_BOOL: {
    double x;
    if (!parse_bool(value, &x)) {
      w = g_strdup_printf(_("'%s' is not yes/no"), value);
      return bad(error, d, w);
    }
    return TRUE;
  }
  case CNNFX_P_CHOICE:
    if (!choice_ok(d, value)) {
      g_auto(GStrv) nicks = g_strsplit(d->choices, "|", -1);
      g_autofree char *list = g_strjoinv(", ", nicks);
      w = g_strdup_printf(_("'%s' is not one of %s"), value, list);
      return bad(error, d, w);
    }
    return TRUE;
  case CNNFX_P_COLOR: {
    gboolean ok = value[0] == '#' && strlen(value) == 7;
    for (int i = 1; ok && i < 7; i++) ok = g_ascii_isxdigit(value[i]);
    if (!ok) {
      w = g_strdup_printf(_("'%s' is not a colour #rrggbb"), value);
      return bad(error, d, w);
    }
    return TRUE;
  }
  default:
    return TRUE;
  }
}

gboolean cnnfx_params_set(CnnfxParams *p, const char *name, const char *value, GError **error)
{
  int i = find(p, name);
  if (i < 0) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("%s has no parameter '%s'"), p->f->name, name);
    return FALSE;
  }
  const CnnfxParam *d = p->d[i];
  if (!value) value = "";
  if (!cnnfx_param_check(d, value, error)) return FALSE;
  switch (d->type) {
  case CNNFX_P_INT:
  case CNNFX_P_DOUBLE:
    p->v[i].num = g_ascii_strtod(value, NULL);
    break;
  case CNNFX_P_BOOL:
    parse_bool(value, &p->v[i].num);
    break;
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
    break;
  }
  default: /* STRING, CHOICE, FILE, COLOR, LAYER, CLASS, MODEL_LAYER */
    g_free(p->v[i].str);
    if (!*value && d->type != CNNFX_P_CHOICE) { /* "" (an empty GUI field) = the default */
      p->v[i].str = g_strdup(d->def_str);
      p->v[i].set = FALSE;
      return TRUE;
    }
    p->v[i].str = g_strdup(value);
  }
  p->v[i].set = TRUE;
  return TRUE;
}

gboolean cnnfx_params_set_strings(CnnfxParams *p, const char *name, const char *const *values, GError **error)
{
  int i = find(p, name);
  if (i < 0 || !p->v[i].list) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("%s has no list parameter '%s'"), p->f->name, name);
    return FALSE;
  }
  GPtrArray *l = p->v[i].list;
  g_ptr_array_set_size(l, 0);
  for (; values && *values; values++) g_ptr_array_add(l, g_strdup(*values));
  g_ptr_array_add(l, NULL);
  p->v[i].set = l->len > 1;
  return TRUE;
}

gboolean cnnfx_params_set_int(CnnfxParams *p, const char *name, int v, GError **error)
{
  return cnnfx_params_set_double(p, name, v, error);
}

gboolean cnnfx_params_set_double(CnnfxParams *p, const char *name, double v, GError **error)
{
  int i = find(p, name);
  if (i < 0 || p->d[i]->type > CNNFX_P_BOOL) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("%s has no numeric parameter '%s'"), p->f->name, name);
    return FALSE;
  }
  if (p->d[i]->type == CNNFX_P_BOOL) v = v != 0;
  if (!check_num(p->d[i], v, error)) return FALSE;
  p->v[i].num = v;
  p->v[i].set = TRUE;
  return TRUE;
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

/* sensitive_if: "param" (true / non-empty), "param=v1|v2", "param!=v1|v2" */
gboolean cnnfx_params_sensitive(const CnnfxParams *p, const char *name)
{
  int i = find(p, name);
  g_return_val_if_fail(i >= 0, TRUE);
  const char *cond = p->d[i]->sensitive_if;
  if (!cond || !*cond) return TRUE;
  const char *eq = strchr(cond, '=');
  gboolean neg = eq && eq > cond && eq[-1] == '!';
  g_autofree char *other = eq ? g_strndup(cond, (eq - cond) - (neg ? 1 : 0)) : g_strdup(cond);
  int j = find(p, other);
  if (j < 0) return TRUE;
  const CnnfxParam *od = p->d[j];
  if (!eq) {
    if (od->type <= CNNFX_P_BOOL) return p->v[j].num != 0;
    if (p->v[j].list) return p->v[j].list->len > 1;
    return p->v[j].str && *p->v[j].str;
  }
  g_autofree char *cur = od->type <= CNNFX_P_BOOL ? g_strdup_printf("%g", p->v[j].num) : g_strdup(p->v[j].str);
  g_auto(GStrv) vals = g_strsplit(eq + 1, "|", -1);
  gboolean in = cur && g_strv_contains((const char *const *)vals, cur);
  return neg ? !in : in;
}
