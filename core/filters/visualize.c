/* Visualize: what a classifier has learnt, three ways.
 *
 * mode=class  Class model visualisation (Simonyan, Vedaldi & Zisserman 2014, "Deep inside
 *             convolutional networks"): gradient ascent on an image I for
 *                 J(I) = S_c(I) - lambda * ||x(I)||^2
 *             where S_c is the class score before the softmax (cnnfx_net_score_tensor: the
 *             Softmax input whenever the output is a Softmax, flagged output_is_prob or not) and
 *             x(I) = (I * scale - mean) / std is the network input, i.e. the mean-subtracted
 *             (standardised) image of the paper, so the regulariser pulls towards the mean image.
 *             With the regularisers of Yosinski et al. 2015 ("Understanding neural networks
 *             through deep visualization"):
 *               I = mean colour + N(0, 0.05) noise        (seeded by run->seed)
 *               repeat `iterations` times:
 *                 roll I by a random (dy, dx) in [-j, j]   (j = jitter, below)
 *                 g = dJ/dI of the rolled image, rolled back
 *                 I += step/255 * g / mean|g|              (normalised step, 0..255 units)
 *                 clip I to 0..1                           (a valid image)
 *                 every `blur-every` steps: Gaussian blur of sigma `blur`
 *             Grey networks (pre.gray) optimise a grey image: dJ/dL = sum over R, G, B of dJ/dc.
 *             Working size: a network with a fixed input size (pre.fixed_h/w, or a static H x W
 *             declared by the graph input) is optimised at that size and the result enlarged with
 *             nearest-neighbour to `size` on its long side (each network pixel an exact block, the
 *             picture is what the network saw); other networks are optimised at size x size.
 *             `jitter` and `blur` are in pixels of a 224 px network input (the ImageNet size the
 *             defaults were made for); a network with another fixed input size gets them scaled
 *             by its size / 224 (LeNet: jitter 8 -> 1 px, blur 0.5 -> 0.06 px, i.e. none), so
 *             `size` only changes the display of fixed-size networks.  The class is `class`
 *             (a label, case-insensitive, one of its comma-separated synonyms, or an index), by
 *             default the input image's top class.
 *
 * mode=filters  The weights W [F, C, kh, kw] of a convolution: the first Conv of the graph, or
 *             the one that computes `layer` (a tensor name or OpType#N; a layer computed from a
 *             Conv through BatchNormalization / activations / pooling names that Conv).  Each
 *             filter is normalised by its own min and max to 0..1.  C == 3: one RGB tile per
 *             filter (network channel order turned to RGB for BGR models); C == 1: one grey tile
 *             per filter; otherwise one row per filter with a grey tile per input channel.
 *             At most `max-channels` filters (and input channels).
 *
 * mode=activations  The activation maps [1, K, h, w] of `layer` (default: the output of the
 *             first Conv, or of the activation that directly follows it) for the input image,
 *             one grey tile per channel (at most `max-channels`), each normalised by its own min
 *             and max (a constant map is black).  Fixed-size networks see the image resized to
 *             their size; other networks see it at its own size, reduced (antialiased) to
 *             `size` on the long side if larger.
 *
 * Grids: n tiles of h x w in cols = ceil(sqrt(n)) columns (filters with C other than 1 or 3: one
 * column per input channel), 1 px separators around and between tiles.  Tiles are enlarged by the
 * largest integer factor z (nearest-neighbour) that keeps the grid within size x size, or, if
 * even z = 1 does not fit, reduced (antialiased bilinear) to fit.  Tile (r, k) covers
 * rows 1 + r*(h*z+1) .. and columns 1 + k*(w*z+1) ..; unused cells show the separator colour. */
#include "imgops.h"
#include "netutil.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define INIT_NOISE 0.05 /* sigma of the starting noise, 0..1 units */

static const float sep_rgb[3] = {0.35f, 0.45f, 0.75f}; /* separators: a blue no grey tile has */

typedef struct {
  const CnnfxNet *net;
  CnnfxNet eff; /* shallow copy with the pinned input size */
  const CnnfxParams *p;
  const CnnfxRun *run;
} Viz;

static void progress(const Viz *v, double f, const char *what)
{
  if (v->run && v->run->progress) v->run->progress(f, _(what), v->run->user);
}

static gpointer nomem(GError **error, const char *what)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (visualize: %s)", what);
  return NULL;
}

static CnnfxSession *new_session(const Viz *v, CnnfxGradMode grad, const char *const *targets, GError **error)
{
  CnnfxSessionOptions o = {.grad = grad,
                           .targets = targets,
                           .mem_limit = v->run ? v->run->max_memory : 0,
                           .cancel = v->run ? v->run->cancel : NULL};
  return cnnfx_session_new(v->net->model, v->run ? v->run->backend : NULL, &o, error);
}

static CnnfxTensor *new_image(int C, int h, int w, GError **error)
{
  int64_t d[3] = {C, h, w};
  return cnnfx_tensor_new_f32(3, d, error);
}

/* ---- grids ----------------------------------------------------------------------------- */

/* tiles: n tiles of C (1 or 3) planes of th x tw, values 0..1, tile i at row i / cols, column
 * i % cols.  Returns the RGB grid image. */
static CnnfxTensor *render_grid(const float *tiles, int n, int C, int th, int tw, int cols, int size, GError **error)
{
  int rows = (n + cols - 1) / cols;
  double f = MIN((double)(size - (cols + 1)) / ((double)cols * tw), (double)(size - (rows + 1)) / ((double)rows * th));
  int z = 1, oh = th, ow = tw;
  if (f >= 1) {
    z = (int)floor(f);
    oh = th * z;
    ow = tw * z;
  } else {
    oh = MAX(1, (int)floor(th * f));
    ow = MAX(1, (int)floor(tw * f));
  }
  int64_t gh = (int64_t)rows * (oh + 1) + 1, gw = (int64_t)cols * (ow + 1) + 1;
  if (gh * gw > (int64_t)1 << 26) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Channels shown: the grid would be %lldx%lld pixels; show fewer channels or choose a smaller size"),
                (long long)gw, (long long)gh);
    return NULL;
  }
  CnnfxTensor *g = new_image(3, (int)gh, (int)gw, error);
  if (!g) return NULL;
  float *o = cnnfx_f32(g);
  size_t ghw = (size_t)gh * gw;
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < ghw; i++) o[c * ghw + i] = sep_rgb[c];
  float *small = NULL;
  size_t thw = (size_t)th * tw;
  if (f < 1 && !(small = g_try_new(float, (size_t)C * oh * ow))) {
    cnnfx_tensor_unref(g);
    nomem(error, "grid");
    return NULL;
  }
  for (int i = 0; i < n; i++) {
    const float *t = tiles + (size_t)i * C * thw;
    int y0 = 1 + (i / cols) * (oh + 1), x0 = 1 + (i % cols) * (ow + 1);
    if (small && !cnnfx_resize_bilinear(t, C, th, tw, small, oh, ow)) {
      g_free(small);
      cnnfx_tensor_unref(g);
      nomem(error, "grid");
      return NULL;
    }
    for (int c = 0; c < 3; c++) {
      int sc = C == 3 ? c : 0;
      for (int y = 0; y < oh; y++) {
        float *row = o + c * ghw + (size_t)(y0 + y) * gw + x0;
        if (small) {
          const float *s = small + ((size_t)sc * oh + y) * ow;
          for (int x = 0; x < ow; x++) row[x] = CLAMP(s[x], 0.f, 1.f);
        } else {
          const float *s = t + sc * thw + (size_t)(y / z) * tw;
          for (int x = 0; x < ow; x++) row[x] = s[x / z];
        }
      }
    }
  }
  g_free(small);
  return g;
}

/* x[0..n) -> (x - min) / (max - min); a constant block becomes `flat`. */
static void minmax_normalise(float *x, size_t n, float flat)
{
  float lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; i++)
    if (isfinite(x[i])) {
      lo = MIN(lo, x[i]);
      hi = MAX(hi, x[i]);
    }
  if (!(hi > lo)) {
    for (size_t i = 0; i < n; i++) x[i] = flat;
    return;
  }
  float inv = 1.0f / (hi - lo);
  for (size_t i = 0; i < n; i++) x[i] = isfinite(x[i]) ? CLAMP((x[i] - lo) * inv, 0.f, 1.f) : 0.f;
}

/* ---- layers ------------------------------------------------------------------------------ */

/* Convolutions, quantised ones included (their filters are shown per filter min..max, which
 * the per-channel affine map of quantisation does not change). */
static gboolean is_conv(const char *op)
{
  return !strcmp(op, "Conv") || !strcmp(op, "QLinearConv") || !strcmp(op, "ConvInteger");
}

static int first_conv(const CnnfxModel *m)
{
  for (int k = 0; k < cnnfx_model_n_nodes(m); k++)
    if (is_conv(cnnfx_model_node_op(m, k))) return k;
  return -1;
}

static gboolean is_activation(const char *op)
{
  static const char *const acts[] = {"Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid",
                                     "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Gelu", "Mish", NULL};
  for (int i = 0; acts[i]; i++)
    if (!strcmp(op, acts[i])) return TRUE;
  return FALSE;
}

/* The only node reading tensor `name`, or -1 (none or several; graph outputs count as readers). */
static int sole_consumer(const CnnfxModel *m, const char *name)
{
  int found = -1;
  for (int i = 0; i < cnnfx_model_n_outputs(m); i++)
    if (!strcmp(cnnfx_model_output_name(m, i), name)) return -1;
  for (int k = 0; k < cnnfx_model_n_nodes(m); k++)
    for (int i = 0; i < cnnfx_model_node_n_inputs(m, k); i++)
      if (!strcmp(cnnfx_model_node_input(m, k, i), name)) {
        if (found >= 0 && found != k) return -1;
        found = k;
      }
  return found;
}

/* The Conv node behind the layer spec (or the first Conv). */
static int conv_for_layer(const Viz *v, const char *spec, GError **error)
{
  const CnnfxModel *m = v->net->model;
  if (!spec || !*spec) {
    int k = first_conv(m);
    if (k < 0)
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Layer: model %s has no Conv node; choose a layer"),
                  v->net->name ? v->net->name : "");
    return k;
  }
  g_autofree char *t = cnnfx_net_resolve_layer(v->net, spec, error);
  if (!t) return -1;
  int k = cnnfx_model_producer(m, t);
  for (int hops = 0; k >= 0 && hops < 16 && !is_conv(cnnfx_model_node_op(m, k)); hops++) {
    const char *op = cnnfx_model_node_op(m, k);
    if (!is_activation(op) && strcmp(op, "BatchNormalization") && strcmp(op, "MaxPool") &&
        strcmp(op, "AveragePool") && strcmp(op, "Identity") && strcmp(op, "LRN") && strcmp(op, "Dropout") &&
        strcmp(op, "QuantizeLinear") && strcmp(op, "DequantizeLinear"))
      break;
    if (cnnfx_model_node_n_inputs(m, k) < 1) break;
    k = cnnfx_model_producer(m, cnnfx_model_node_input(m, k, 0));
  }
  if (k < 0 || !is_conv(cnnfx_model_node_op(m, k))) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                _("Layer: %s is not computed by a convolution (mode filters needs a Conv output, or an "
                  "activation / normalisation / pooling of one)"), spec);
    return -1;
  }
  return k;
}

/* ---- filters ----------------------------------------------------------------------------- */

static CnnfxTensor *viz_filters(Viz *v, GError **error)
{
  const CnnfxModel *m = v->net->model;
  const char *spec = cnnfx_params_string(v->p, "layer");
  int k = conv_for_layer(v, spec, error);
  if (k < 0) return NULL;
  int wi = !strcmp(cnnfx_model_node_op(m, k), "QLinearConv") ? 3 : 1;
  const char *wname = cnnfx_model_node_n_inputs(m, k) > wi ? cnnfx_model_node_input(m, k, wi) : "";
  const CnnfxTensor *W = *wname ? cnnfx_model_initializer(m, wname) : NULL;
  if (!W && *wname) {
    /* QDQ models: the weights are a DequantizeLinear of a constant */
    int dq = cnnfx_model_producer(m, wname);
    if (dq >= 0 && !strcmp(cnnfx_model_node_op(m, dq), "DequantizeLinear") && cnnfx_model_node_n_inputs(m, dq) > 0)
      W = cnnfx_model_initializer(m, cnnfx_model_node_input(m, dq, 0));
  }
  g_autofree float *wconv = NULL; /* integer weights as floats */
  if (W && W->dtype == CNNFX_I64 && W->data && (wconv = g_try_new(float, W->numel + 1)))
    for (size_t i = 0; i < W->numel; i++) wconv[i] = (float)cnnfx_i64(W)[i];
  if (!W || (W->dtype != CNNFX_F32 && !wconv) || W->ndim != 4 || !W->data) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED,
                "visualize: the weights '%s' of convolution %s are not a constant 4-D float tensor", wname,
                cnnfx_model_node_output(m, k, 0));
    return NULL;
  }
  int F = (int)W->dims[0], C = (int)W->dims[1], kh = (int)W->dims[2], kw = (int)W->dims[3];
  if (F < 1 || C < 1 || kh < 1 || kw < 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "visualize: convolution weights '%s' are empty", wname);
    return NULL;
  }
  int maxc = cnnfx_params_int(v->p, "max-channels");
  int nf = MIN(F, maxc);
  gboolean rgb = C == 3, grey1 = C == 1;
  int nc = (rgb || grey1) ? 1 : MIN(C, maxc); /* tiles per filter */
  int tc = rgb ? 3 : 1;                        /* planes per tile */
  size_t khw = (size_t)kh * kw, fsz = (size_t)C * khw;
  int n = nf * nc;
  int cols = (rgb || grey1) ? (int)ceil(sqrt((double)n) - 1e-9) : nc;
  g_autofree float *tiles = g_try_new(float, (size_t)n * tc * khw);
  g_autofree float *filt = g_try_new(float, fsz);
  if (!tiles || !filt) return nomem(error, "filters");
  const float *w = wconv ? wconv : cnnfx_f32(W);
  for (int f = 0; f < nf; f++) {
    memcpy(filt, w + (size_t)f * fsz, fsz * sizeof(float));
    minmax_normalise(filt, fsz, 0.5f);
    if (rgb) {
      for (int c = 0; c < 3; c++) {
        int src = v->net->pre.bgr ? 2 - c : c;
        memcpy(tiles + ((size_t)f * 3 + c) * khw, filt + src * khw, khw * sizeof(float));
      }
    } else {
      memcpy(tiles + (size_t)f * nc * khw, filt, (size_t)nc * khw * sizeof(float));
    }
  }
  progress(v, 1.0, N_("filters"));
  g_debug("visualize: filters of %s (%s, %dx%dx%dx%d), %d tiles in %d columns", cnnfx_model_node_output(m, k, 0),
          wname, F, C, kh, kw, n, cols);
  return render_grid(tiles, n, tc, kh, kw, cols, cnnfx_params_int(v->p, "size"), error);
}

/* ---- activations --------------------------------------------------------------------------- */

static char *default_activation_layer(const Viz *v, GError **error)
{
  const CnnfxModel *m = v->net->model;
  int k = first_conv(m);
  if (k < 0 || cnnfx_model_node_n_outputs(m, k) < 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Layer: model %s has no Conv node; choose a layer"),
                v->net->name ? v->net->name : "");
    return NULL;
  }
  const char *t = cnnfx_model_node_output(m, k, 0);
  /* conv -> [BatchNormalization] -> activation: show the activation */
  for (int hops = 0; hops < 2; hops++) {
    int c = sole_consumer(m, t);
    if (c < 0 || cnnfx_model_node_n_outputs(m, c) < 1) break;
    const char *op = cnnfx_model_node_op(m, c);
    if (is_activation(op)) return g_strdup(cnnfx_model_node_output(m, c, 0));
    if (strcmp(op, "BatchNormalization")) break;
    t = cnnfx_model_node_output(m, c, 0);
  }
  return g_strdup(cnnfx_model_node_output(m, k, 0));
}

static CnnfxTensor *viz_activations(Viz *v, const CnnfxTensor *image, GError **error)
{
  const char *spec = cnnfx_params_string(v->p, "layer");
  g_autofree char *layer = spec && *spec ? cnnfx_net_resolve_layer(v->net, spec, error)
                                         : default_activation_layer(v, error);
  if (!layer) return NULL;
  int size = cnnfx_params_int(v->p, "size");
  int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  g_autoptr(CnnfxTensor) small = NULL;
  const CnnfxTensor *img = image;
  if (!v->eff.pre.fixed_h && MAX(H, W) > size) {
    int h = MAX(1, (int)lround((double)H * size / MAX(H, W))), w = MAX(1, (int)lround((double)W * size / MAX(H, W)));
    if (!(small = cnnfx_tensor_resized(image, h, w, error))) return NULL;
    img = small;
  }
  progress(v, 0.0, N_("activations"));
  g_autoptr(CnnfxTensor) x = cnnfx_net_preprocess(&v->eff, img, error);
  if (!x) return NULL;
  const char *targets[] = {layer, NULL};
  g_autoptr(CnnfxSession) s = new_session(v, CNNFX_GRAD_NONE, targets, error);
  if (!s || !cnnfx_session_set_input(s, v->net->input, x, error) || !cnnfx_session_forward(s, error)) return NULL;
  CnnfxTensor *a = cnnfx_session_get(s, layer, error);
  if (!a) return NULL;
  if (a->dtype != CNNFX_F32 || !(a->ndim == 4 && a->dims[0] == 1) || a->dims[1] < 1 || a->dims[2] < 1 ||
      a->dims[3] < 1) {
    g_autofree char *sh = cnnfx_shape_string(a);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE,
                _("Layer: %s: '%s' has shape %s; mode activations needs a feature map [1,C,H,W]"), spec ? spec : "",
                layer, sh);
    return NULL;
  }
  int K = (int)a->dims[1], h = (int)a->dims[2], w = (int)a->dims[3];
  int n = MIN(K, cnnfx_params_int(v->p, "max-channels"));
  size_t hw = (size_t)h * w;
  g_autofree float *tiles = g_try_new(float, (size_t)n * hw);
  if (!tiles) return nomem(error, "activation maps");
  memcpy(tiles, cnnfx_f32(a), (size_t)n * hw * sizeof(float));
  for (int i = 0; i < n; i++) minmax_normalise(tiles + (size_t)i * hw, hw, 0.f);
  int cols = (int)ceil(sqrt((double)n) - 1e-9);
  g_debug("visualize: activations of %s (%dx%dx%d), %d tiles", layer, K, h, w, n);
  progress(v, 1.0, N_("activations"));
  return render_grid(tiles, n, 1, h, w, cols, size, error);
}

/* ---- class model visualisation ------------------------------------------------------------- */

static double gauss(GRand *r)
{
  double u1 = g_rand_double(r), u2 = g_rand_double(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
}

typedef struct {
  Viz *v;
  CnnfxSession *s;
  const char *score;
  int n_classes;
} Scorer;

/* Forward pass of rgb [3,h,w]; returns the score row (borrowed) after checking its shape. */
static const float *scores(Scorer *sc, const CnnfxTensor *rgb, CnnfxTensor **xout, GError **error)
{
  g_autoptr(CnnfxTensor) x = cnnfx_net_preprocess(&sc->v->eff, rgb, error);
  if (!x || !cnnfx_session_set_input(sc->s, sc->v->net->input, x, error) || !cnnfx_session_forward(sc->s, error))
    return NULL;
  CnnfxTensor *out = cnnfx_session_get(sc->s, sc->score, error);
  if (!out) return NULL;
  int big = 0;
  for (int i = 0; i < out->ndim; i++) big += out->dims[i] > 1;
  if (out->dtype != CNNFX_F32 || out->numel < 1 || out->numel > G_MAXINT || big > 1 ||
      (sc->n_classes && (int)out->numel != sc->n_classes)) {
    g_autofree char *sh = cnnfx_shape_string(out);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE,
                "visualize: '%s' (%s) of model %s is not one row of class scores", sc->score, sh,
                sc->v->net->name ? sc->v->net->name : "");
    return NULL;
  }
  sc->n_classes = (int)out->numel;
  if (xout) *xout = g_steal_pointer(&x);
  return cnnfx_f32(out);
}

static CnnfxTensor *viz_class(Viz *v, const CnnfxTensor *image, GError **error)
{
  const CnnfxParams *p = v->p;
  const CnnfxNet *net = &v->eff;
  const int iters = cnnfx_params_int(p, "iterations"), size = cnnfx_params_int(p, "size");
  const int blur_every = MAX(1, cnnfx_params_int(p, "blur-every"));
  const double l2 = cnnfx_params_double(p, "l2"), step = cnnfx_params_double(p, "step");

  const char *cls_spec = cnnfx_params_string(p, "class");
  const gboolean fixed = net->pre.fixed_h > 0 && net->pre.fixed_w > 0;
  const int wh = fixed ? net->pre.fixed_h : size, ww = fixed ? net->pre.fixed_w : size;
  /* jitter and blur are given for a 224 px network input (the ImageNet size): a network with
   * another fixed input size gets them scaled (LeNet: 28/224) */
  const double px = fixed ? MAX(wh, ww) / 224.0 : 1.0;
  const int jitter = (int)lround(cnnfx_params_int(p, "jitter") * px);
  const double blur = cnnfx_params_double(p, "blur") * px;
  const size_t hw = (size_t)wh * ww, n = 3 * hw;

  /* the logits: behind a Softmax output even when the model section does not say output_is_prob
   * (the zoo's classifiers end in a Softmax; Simonyan et al. maximise the unnormalised score) */
  CnnfxNet as_prob = *v->net;
  as_prob.output_is_prob = TRUE;
  Scorer sc = {.v = v, .score = cnnfx_net_score_tensor(&as_prob)};
  const char *targets[] = {sc.score, NULL};
  g_autoptr(CnnfxSession) s = sc.s = new_session(v, CNNFX_GRAD_INPUT, targets, error);
  if (!s) return NULL;
  g_autoptr(CnnfxTensor) I = new_image(3, wh, ww, error);
  g_autoptr(CnnfxTensor) g = I ? new_image(3, wh, ww, error) : NULL;
  g_autoptr(CnnfxTensor) seed = NULL;
  g_autofree float *scratch = g_try_new(float, hw);
  if (!g) return NULL;
  if (!scratch) return nomem(error, "image");

  /* the class: given, or the top class of the input image */
  progress(v, 0.0, N_("class visualisation"));
  int cls = -1;
  double s_input = NAN;
  if (!cls_spec || !*cls_spec) {
    const float *z = scores(&sc, image, NULL, error);
    if (!z) return NULL;
    cls = 0;
    for (int i = 1; i < sc.n_classes; i++)
      if (z[i] > z[cls]) cls = i;
    s_input = z[cls];
  }

  /* start: the mean image (x = 0) plus seeded noise */
  guint64 sd64 = v->run ? v->run->seed : 0;
  guint32 sd[2] = {(guint32)(sd64 & 0xffffffffu), (guint32)(sd64 >> 32)};
  g_autoptr(GRand) rng = g_rand_new_with_seed_array(sd, 2);
  float *im = cnnfx_f32(I), *gr = cnnfx_f32(g);
  const CnnfxPreproc *pp = &net->pre;
  for (int c = 0; c < 3; c++) {
    int nc = pp->gray ? 0 : pp->bgr ? 2 - c : c;
    float m0 = pp->scale != 0 ? pp->mean[nc] / pp->scale : 0.5f;
    for (size_t i = 0; i < hw; i++) im[c * hw + i] = CLAMP(m0, 0.f, 1.f);
  }
  for (size_t i = 0; i < hw; i++) {
    if (pp->gray) {
      float e = (float)(INIT_NOISE * gauss(rng));
      for (int c = 0; c < 3; c++) im[c * hw + i] += e;
    } else {
      for (int c = 0; c < 3; c++) im[c * hw + i] += (float)(INIT_NOISE * gauss(rng));
    }
  }
  cnnfx_clamp(im, n, 0.f, 1.f);

  const float *z = scores(&sc, I, NULL, error);
  if (!z) return NULL;
  if (cls_spec && *cls_spec && !cnnfx_net_parse_class(v->net, cls_spec, sc.n_classes, &cls, error)) return NULL;
  double s_start = z[cls], s_last = s_start;

  for (int t = 0; t < iters; t++) {
    if (cnnfx_run_cancelled(v->run, error)) return NULL;
    if (v->run && v->run->progress) {
      char what[64];
      g_snprintf(what, sizeof what, _("class %d, step %d/%d"), cls, t + 1, iters);
      progress(v, (double)t / iters, what);
    }
    int dy = jitter ? g_rand_int_range(rng, -jitter, jitter + 1) : 0;
    int dx = jitter ? g_rand_int_range(rng, -jitter, jitter + 1) : 0;
    cnnfx_roll(im, 3, wh, ww, dy, dx, scratch);
    CnnfxTensor *x = NULL;
    z = scores(&sc, I, &x, error);
    if (!z) return NULL;
    g_autoptr(CnnfxTensor) xin = x;
    s_last = z[cls];
    CnnfxTensor *out = cnnfx_session_get(s, sc.score, error);
    if (!out) return NULL;
    if (!seed && !(seed = cnnfx_tensor_new_f32(out->ndim, out->dims, error))) return NULL;
    memset(seed->data, 0, seed->numel * sizeof(float));
    cnnfx_f32(seed)[cls] = 1.0f;
    if (!cnnfx_session_backward(s, 1, &sc.score, &seed, error)) return NULL;
    CnnfxTensor *gx = cnnfx_session_grad(s, v->net->input, error);
    if (!gx) return NULL;
    if (!cnnfx_same_shape(gx, xin)) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "visualize: input gradient has the wrong shape");
      return NULL;
    }
    /* d/dx of -lambda ||x||^2, then back to the image (copy: the session owns gx) */
    g_autoptr(CnnfxTensor) gj = cnnfx_tensor_copy(gx, error);
    if (!gj) return NULL;
    float *gjs = cnnfx_f32(gj);
    const float *xs = cnnfx_f32(xin);
    for (size_t i = 0; i < gj->numel; i++) gjs[i] -= (float)(2.0 * l2) * xs[i];
    if (!cnnfx_net_grad_to_rgb(net, gj, g, error)) return NULL;
    if (pp->gray)
      for (size_t i = 0; i < hw; i++) {
        float sum = gr[i] + gr[hw + i] + gr[2 * hw + i];
        gr[i] = gr[hw + i] = gr[2 * hw + i] = sum;
      }
    cnnfx_roll(im, 3, wh, ww, -dy, -dx, scratch);
    cnnfx_roll(gr, 3, wh, ww, -dy, -dx, scratch);
    double mean_abs = 0;
    for (size_t i = 0; i < n; i++) mean_abs += fabsf(gr[i]);
    mean_abs /= (double)n;
    if (!(mean_abs > 0) || !isfinite(mean_abs)) {
      if (!isfinite(mean_abs)) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "visualize: model %s gives a non-finite gradient",
                    v->net->name ? v->net->name : "");
        return NULL;
      }
      continue; /* flat: nothing to climb (a dead network at this image) */
    }
    const float a = (float)(step / 255.0 / mean_abs);
    for (size_t i = 0; i < n; i++) im[i] += a * gr[i];
    cnnfx_clamp(im, n, 0.f, 1.f);
    if (blur > 0 && (t + 1) % blur_every == 0 && !cnnfx_blur(im, 3, wh, ww, blur, error)) return NULL;
  }
  z = scores(&sc, I, NULL, error);
  if (!z) return NULL;
  int top = 0;
  for (int i = 1; i < sc.n_classes; i++)
    if (z[i] > z[top]) top = i;
  g_debug("visualize: class %d, score %.4g on the input image, %.4g at the start, %.4g at the last step, %.4g "
          "at the end (top class %d, %.4g); working size %dx%d, jitter %d, blur sigma %.3g",
          cls, s_input, s_start, s_last, z[cls], top, z[top], ww, wh, jitter, blur);
  progress(v, 1.0, N_("done"));

  /* the result: long side `size` */
  int oh = wh >= ww ? size : MAX(1, (int)lround((double)size * wh / ww));
  int ow = ww >= wh ? size : MAX(1, (int)lround((double)size * ww / wh));
  if (oh == wh && ow == ww) return g_steal_pointer(&I);
  CnnfxTensor *o = new_image(3, oh, ow, error);
  if (!o) return NULL;
  float *os = cnnfx_f32(o);
  if (oh >= wh && ow >= ww) { /* enlarge: nearest neighbour, every network pixel a block */
    size_t ohw = (size_t)oh * ow;
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < oh; y++) {
        int sy = (int)(((int64_t)y * wh) / oh);
        for (int x = 0; x < ow; x++) os[c * ohw + (size_t)y * ow + x] = im[c * hw + (size_t)sy * ww + (x * (int64_t)ww) / ow];
      }
  } else if (!cnnfx_resize_bilinear(im, 3, wh, ww, os, oh, ow)) {
    cnnfx_tensor_unref(o);
    return nomem(error, "result");
  }
  return o;
}

/* ---- entry point --------------------------------------------------------------------------- */

static CnnfxTensor *visualize_run(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run,
                                  const CnnfxTensor *image, GError **error)
{
  if (!net || !net->model || !net->input || !p) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "visualize: missing argument");
    return NULL;
  }
  const char *mode = cnnfx_params_string(p, "mode");
  gboolean need_image = g_strcmp0(mode, "filters") != 0;
  if (need_image &&
      (!image || !((image->ndim == 3 && image->dims[0] == 3) || (image->ndim == 4 && image->dims[0] == 1 &&
                                                                 image->dims[1] == 3)) ||
       image->dtype != CNNFX_F32 || image->dims[image->ndim - 1] < 1 || image->dims[image->ndim - 2] < 1)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "visualize: the image must be an RGB tensor [3,H,W]");
    return NULL;
  }
  Viz v = {.net = net, .eff = *net, .p = p, .run = run};
  cnnfx_net_pin_input_size(&v.eff);
  if (!g_strcmp0(mode, "filters")) return viz_filters(&v, error);
  if (!g_strcmp0(mode, "activations")) return viz_activations(&v, image, error);
  if (!g_strcmp0(mode, "class")) {
    if (!net->output) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "visualize: the model has no output");
      return NULL;
    }
    return viz_class(&v, image, error);
  }
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "visualize: unknown mode '%s'", mode ? mode : "");
  return NULL;
}

CnnfxTensor *cnnfx_visualize(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run,
                             const CnnfxTensor *image, GError **error)
{
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r ? visualize_run(net, p, r, image, error) : NULL;
}
