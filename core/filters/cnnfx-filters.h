/* cnnfx filters: Deep Dream, style transfer, classify (+ heat maps), fool, visualize.
 *
 * The algorithms live here so that the GIMP plug-in and the CLI call the same code.
 * Like the core, this layer knows nothing about files or GIMP: images are float tensors
 * [3, H, W] (RGB, 0..1, planar); front-ends convert pixels and handle alpha.
 *
 * Every filter is described by ONE parameter table (CnnfxFilterInfo); the CLI builds its
 * flags from it, the GIMP plug-in its procedure arguments and dialog. */
#ifndef CNNFX_FILTERS_H
#define CNNFX_FILTERS_H

#include "cnnfx.h"

G_BEGIN_DECLS

/* ---- parameter tables ---------------------------------------------------------- */

typedef enum {
  CNNFX_P_INT,
  CNNFX_P_DOUBLE,
  CNNFX_P_BOOL,
  CNNFX_P_STRING,   /* free text (layer names, labels) */
  CNNFX_P_CHOICE,   /* one of `choices` ("lbfgs|adam") */
  CNNFX_P_FILE,     /* a path (front-end loads it) */
  CNNFX_P_FILES,    /* repeatable path (style images) */
  CNNFX_P_STRINGS,  /* repeatable / comma-separated text (layers with weights) */
  CNNFX_P_COLOR,    /* "#rrggbb" (def_str) */
  CNNFX_P_LAYER,    /* an image / drawable (GIMP: another open layer; CLI: a FILE) */
  CNNFX_P_CLASS,    /* a class label or index of the loaded model (dynamic choice) */
  CNNFX_P_MODEL_LAYER, /* a tensor name / OpType#N of the loaded model (dynamic choice) */
} CnnfxParamType;

typedef enum {
  CNNFX_SCOPE_BOTH = 0, /* CLI flag and GIMP argument */
  CNNFX_SCOPE_CLI,      /* CLI only (output format, 16-bit...) */
  CNNFX_SCOPE_GUI,      /* GIMP only (e.g. "as new layer") */
} CnnfxParamScope;

/* One parameter.  The first nine fields are positional (the P_* macros of params.c fill them);
 * the rest default to 0 / NULL. */
typedef struct {
  const char *name;     /* CLI flag --name, GIMP argument name; NULL ends a table */
  CnnfxParamType type;
  double min, max, def; /* INT / DOUBLE / BOOL (def 0/1) */
  const char *def_str;  /* STRING / CHOICE / FILE / COLOR default, may be NULL */
  const char *choices;  /* CHOICE: nicks "a|b|c" (CLI values, Script-Fu strings) */
  const char *label;    /* short, translatable (N_()) */
  const char *help;     /* one sentence, translatable (N_()) */
  /* presentation */
  const char *choice_labels; /* CHOICE: translatable labels "A|B|C", same order as choices (N_()) */
  double step, page;    /* INT / DOUBLE: spin increments (0 = derived from the range) */
  gboolean log_scale;   /* slider on a logarithmic scale */
  const char *group;    /* N_("Basic") (NULL) or N_("Advanced") ... */
  CnnfxParamScope scope;
  const char *sensitive_if; /* GUI sensitivity: "param" (true / non-empty) or "param=v1|v2" or "param!=v" */
  /* command line (added after the contract's fields; 0 / NULL = derived) */
  char short_name;      /* one-letter CLI flag ('o' for -o), 0 = none */
  const char *cli_name; /* CLI flag when it differs from name ("16bit" for depth16; names are identifiers) */
  const char *metavar;  /* placeholder in --help ("OUTDIR"); NULL = from the type */
  gboolean choice_index; /* CHOICE: a nick may carry ":N" (device "cuda:1") */
} CnnfxParam;

typedef struct {
  const char *name;     /* "dream" — CLI subcommand, procedure plug-in-cnnfx-<name> */
  const char *title;    /* N_("Deep Dream") */
  const char *help;
  const CnnfxParam *params;
} CnnfxFilterInfo;

/* Parameters every filter shares (model, device, seed, memory bound, preprocessing of a model
 * given as a path...), one table for all filters; NULL-name terminated.  Entries with scope
 * CNNFX_SCOPE_CLI (output folder, overwrite, JPEG quality...) are for the CLI only. */
const CnnfxParam *cnnfx_common_params(void);

/* The translation domain of every string in the tables (labels, help, choice labels, groups,
 * titles) and of the filters' progress texts and messages.  Front-ends translate table strings
 * at display time: g_dgettext(CNNFX_GETTEXT_DOMAIN, p->label), or with cnnfx_param_text(). */
#define CNNFX_GETTEXT_DOMAIN "cnnfx"
/* A table string (label, help, title, group...) translated in the cnnfx domain; NULL stays NULL. */
const char *cnnfx_param_text(const char *msgid);
/* The translated label of choice `nick` of a CHOICE parameter (choice_labels, else the nick). g_free. */
char *cnnfx_param_choice_label(const CnnfxParam *d, const char *nick);
/* The CLI flag of a parameter without the leading "--" (cli_name or name). */
const char *cnnfx_param_flag(const CnnfxParam *d);
/* Is `value` accepted for d? (range, whole number, choice...); the error names the parameter by
 * its (translated) label. */
gboolean cnnfx_param_check(const CnnfxParam *d, const char *value, GError **error);


/* The five filters' tables, and lookup by name. */
const CnnfxFilterInfo *cnnfx_filter_info(const char *name);
const CnnfxFilterInfo *const *cnnfx_filter_infos(void); /* NULL-terminated */

/* Parameter values of one run (defaults from the table). */
typedef struct CnnfxParams CnnfxParams;
CnnfxParams *cnnfx_params_new(const CnnfxFilterInfo *f);
void cnnfx_params_free(CnnfxParams *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxParams, cnnfx_params_free)
/* Parse and range-check a value given as text (CLI); STRINGS/FILES append; "" for a text-like
 * parameter (string, file, class, layer...) means its default (a GUI's empty field). */
gboolean cnnfx_params_set(CnnfxParams *p, const char *name, const char *value, GError **error);
gboolean cnnfx_params_set_int(CnnfxParams *p, const char *name, int v, GError **error);
gboolean cnnfx_params_set_double(CnnfxParams *p, const char *name, double v, GError **error);
int cnnfx_params_int(const CnnfxParams *p, const char *name);
double cnnfx_params_double(const CnnfxParams *p, const char *name);
gboolean cnnfx_params_bool(const CnnfxParams *p, const char *name);
const char *cnnfx_params_string(const CnnfxParams *p, const char *name);    /* NULL if unset */
const char *const *cnnfx_params_strings(const CnnfxParams *p, const char *name); /* NULL-terminated */
const CnnfxFilterInfo *cnnfx_params_filter(const CnnfxParams *p);
/* The values hold the common table's entries first, then the filter's: all n of them, in order
 * (for front-ends that iterate). */
int cnnfx_params_count(const CnnfxParams *p);
const CnnfxParam *cnnfx_params_nth(const CnnfxParams *p, int i);
const CnnfxParam *cnnfx_params_find(const CnnfxParams *p, const char *name); /* NULL if none */
/* TRUE once a value was set (the default was overridden), e.g. preprocessing keys that override a
 * model's .ini only when given. */
gboolean cnnfx_params_is_set(const CnnfxParams *p, const char *name);
/* Set a STRINGS / FILES list as a whole (replaces); NULL or empty clears it. */
gboolean cnnfx_params_set_strings(CnnfxParams *p, const char *name, const char *const *values, GError **error);
/* GUI sensitivity: does parameter `name` matter with the current values (its sensitive_if)? */
gboolean cnnfx_params_sensitive(const CnnfxParams *p, const char *name);

/* ---- networks ------------------------------------------------------------------- */

/* How images become network input: x = (rgb * scale - mean) / std, channel order. */
typedef struct {
  float scale;          /* 1 (0..1 input) or 255 */
  float mean[3], std[3];
  gboolean bgr;
  gboolean gray;        /* single-channel models (Fashion-MNIST) */
  int fixed_h, fixed_w; /* classifiers with a fixed input size (0 = any size) */
  int pad_to;           /* any-size models with a stride constraint: H, W padded (edge replication) up
                         * to a multiple of this, gradients cropped back (0 or 1 = none) */
} CnnfxPreproc;

typedef struct {
  CnnfxModel *model;     /* owned */
  char *name;
  char *input;           /* input tensor name */
  char *output;          /* logits / probabilities tensor name */
  gboolean output_is_prob; /* output already softmaxed */
  CnnfxPreproc pre;
  char **labels;         /* NULL-terminated, may be NULL */
  /* default layers per filter (NULL-terminated lists), from the model manifest */
  char **dream_layers;
  char **style_layers;
  char **content_layers;
  char *cam_layer;       /* last conv feature map for Grad-CAM */
  int tta;               /* classify: test-time augmentation as the model was evaluated (a sidecar's
                          * tta=): 0 none, 1 flip (mean of the image's and its mirror image's scores),
                          * 2 flip-translate (cnnfx_tta_views) */
} CnnfxNet;

/* Test-time augmentation: the views of level 0 (the image), 1 (+ its mirror image, weights 1/2)
 * or 2 (airbench: those two with weight 1/4, plus both moved one pixel up-left and down-right
 * with reflection, 1/8 each).  A view shows the input at (x + dx, y + dy), mirrored first where
 * flip.  The first view is always the unmoved image.  Returns the number of views. */
typedef struct {
  int dx, dy;
  gboolean flip;
  float weight;
} CnnfxTtaView;
int cnnfx_tta_views(int level, const CnnfxTtaView **views);

void cnnfx_net_free(CnnfxNet *n);
/* Whether the net's output is made by a Softmax (through Flatten / Reshape / Squeeze /
 * Unsqueeze / Identity), i.e. already probabilities: front-ends set output_is_prob from it
 * unless the model's settings say otherwise. */
gboolean cnnfx_net_output_is_softmax(const CnnfxNet *n);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxNet, cnnfx_net_free)

/* A layer given by the user or the manifest: a tensor name, or "OpType#N" = the output of the
 * N-th node (1-based, file order) of that operator type (e.g. "Relu#10", "Concat#5").
 * Returns the tensor name (g_free) or NULL with an error naming the available layers. */
char *cnnfx_net_resolve_layer(const CnnfxNet *n, const char *spec, GError **error);

/* Dynamic choices of a parameter from the loaded model (the plug-in's combo boxes):
 * CNNFX_P_CLASS: the class labels (none when the model has no labels: an index is typed then;
 * fool's target also offers "least-likely"); CNNFX_P_MODEL_LAYER and the layer lists of dream /
 * style: every tensor computed by a node of the model, in file order.  NULL when the type has no
 * dynamic choices.  g_strfreev. */
char **cnnfx_param_dynamic_choices(const CnnfxParam *d, const CnnfxNet *net);
/* Every tensor computed by a node of the model, in file order (g_strfreev). */
char **cnnfx_net_layer_names(const CnnfxNet *net);

/* Image <-> network input */
CnnfxTensor *cnnfx_net_preprocess(const CnnfxNet *n, const CnnfxTensor *rgb, GError **error);
/* Preprocess an RGB image, bind it as the net's input of session s and run forward. */
gboolean cnnfx_net_forward(const CnnfxNet *n, CnnfxSession *s, const CnnfxTensor *rgb, GError **error);
/* Map a gradient w.r.t. the network input back to a gradient w.r.t. the RGB image (chain rule). */
gboolean cnnfx_net_grad_to_rgb(const CnnfxNet *n, const CnnfxTensor *gin, CnnfxTensor *grgb, GError **error);

/* ---- running -------------------------------------------------------------------- */

typedef struct {
  CnnfxBackend *backend;
  guint64 seed;
  size_t max_memory;            /* bytes for tensors (0 = no limit); big images are tiled to fit */
  /* Cancel token: another thread (or a signal handler) sets it with g_atomic_int_set(&flag, 1); the
   * filter reads it with g_atomic_int_get and returns CNNFX_ERROR_CANCELLED soon after. */
  const volatile gint *cancel;
  /* fraction 0..1 of the whole run, and a short description ("octave 2/4, tile 3/12"), already
   * translated in the cnnfx domain (plain English when no catalogue is bound).  Called on the thread
   * that runs the filter: a GUI hands it to its main loop. */
  void (*progress)(double fraction, const char *what, gpointer user);
  gpointer user;
  gboolean exact;               /* no Winograd or other approximations (bit-for-bit reference arithmetic) */
} CnnfxRun;

/* TRUE (and CNNFX_ERROR_CANCELLED) once the run's cancel flag is raised. */
gboolean cnnfx_run_cancelled(const CnnfxRun *run, GError **error);

/* Result of classify / fool */
typedef struct {
  int index;
  double prob;
  const char *label;    /* borrowed from the net, or NULL */
} CnnfxScore;

/* In-place filters on an RGB image tensor [3,H,W] 0..1. */
gboolean cnnfx_dream(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     const CnnfxTensor *guide, GError **error);
gboolean cnnfx_style(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     CnnfxTensor *const *styles, int n_styles, GError **error);
/* Fast style: a feed-forward ONNX network image -> image. */
gboolean cnnfx_fast_style(const CnnfxModel *m, const CnnfxRun *run, CnnfxTensor *image, GError **error);

/* Classify: top-k; heatmap (optional out, [1,H,W] 0..1) by the method in params ("gradcam", ...). */
gboolean cnnfx_classify(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, const CnnfxTensor *image,
                        CnnfxScore *top, int k, CnnfxTensor **heatmap, GError **error);

typedef struct {
  CnnfxScore before, after;
  double linf;          /* in 0..255 units, measured after 8-bit rounding */
  int iterations;       /* gradient steps taken (including re-projection rounds after quantisation) */
  gboolean fooled;      /* untargeted: after.index != before.index; targeted: after.index == target.index */
  CnnfxScore target;    /* targeted attacks: the target class (prob = its probability after); index -1 if none */
} CnnfxFoolReport;
/* image is replaced by the adversarial image (already 8-bit representable); noise (optional out) is the
 * amplified difference for viewing. */
gboolean cnnfx_fool(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                    CnnfxTensor **noise, CnnfxFoolReport *report, GError **error);

/* Visualize: class visualisation or filter / activation views; returns a new RGB image. */
CnnfxTensor *cnnfx_visualize(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run,
                             const CnnfxTensor *image, GError **error);

G_END_DECLS

#endif
