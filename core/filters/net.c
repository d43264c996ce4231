/* Networks as the filters see them: a model plus how images go in. */
#include "imgops.h"
#include "netutil.h"
#include <stdlib.h>
#include <string.h>

void cnnfx_net_free(CnnfxNet *n)
{
  if (!n) return;
  cnnfx_model_free(n->model);
  g_free(n->name);
  g_free(n->input);
  g_free(n->output);
  g_strfreev(n->labels);
  g_strfreev(n->dream_layers);
  g_strfreev(n->style_layers);
  g_strfreev(n->content_layers);
  g_free(n->cam_layer);
  g_free(n);
}

static const float luma[3] = {0.299f, 0.587f, 0.114f};

/* rgb: [3,H,W] (or [1,3,H,W]) 0..1  ->  [1,C,h,w] normalised network input */
CnnfxTensor *cnnfx_net_preprocess(const CnnfxNet *n, const CnnfxTensor *rgb, GError **error)
{
  const CnnfxPreproc *p = &n->pre;
  int H = (int)rgb->dims[rgb->ndim - 2], W = (int)rgb->dims[rgb->ndim - 1];
  int h = p->fixed_h ? p->fixed_h : H, w = p->fixed_w ? p->fixed_w : W;
  int C = p->gray ? 1 : 3;
  g_autoptr(CnnfxTensor) rs = NULL;
  const float *src = cnnfx_f32(rgb);
  if (h != H || w != W) {
    if (!(rs = cnnfx_tensor_resized(rgb, h, w, error))) return NULL;
    src = cnnfx_f32(rs);
  }
  /* stride constraint: pad (edge replication) to the next multiple; grad_to_rgb folds it back */
  const int sh = h, sw = w;
  if (!p->fixed_h && p->pad_to > 1) {
    h = (h + p->pad_to - 1) / p->pad_to * p->pad_to;
    w = (w + p->pad_to - 1) / p->pad_to * p->pad_to;
  }
  int64_t d[4] = {1, C, h, w};
  g_autofree float *padded = NULL;
  if (h != sh || w != sw) {
    size_t phw = (size_t)h * w;
    if (!(padded = g_try_malloc(3 * phw * sizeof(float)))) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (padding)");
      return NULL;
    }
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          padded[c * phw + (size_t)y * w + x] = src[(size_t)c * sh * sw + (size_t)MIN(y, sh - 1) * sw + MIN(x, sw - 1)];
    src = padded;
  }
  CnnfxTensor *x = cnnfx_tensor_new_f32(4, d, error);
  if (!x) return NULL;
  size_t hw = (size_t)h * w;
  float *dst = cnnfx_f32(x);
  for (int c = 0; c < C; c++) {
    int sc = p->bgr ? 2 - c : c;
    float scale = p->scale / p->std[c], off = p->mean[c] / p->std[c];
    float *o = dst + c * hw;
    if (p->gray) {
      for (size_t i = 0; i < hw; i++)
        o[i] = (luma[0] * src[i] + luma[1] * src[hw + i] + luma[2] * src[2 * hw + i]) * scale - off;
    } else {
      const float *s = src + sc * hw;
      for (size_t i = 0; i < hw; i++) o[i] = s[i] * scale - off;
    }
  }
  return x;
}

gboolean cnnfx_net_forward(const CnnfxNet *n, CnnfxSession *s, const CnnfxTensor *rgb, GError **error)
{
  g_autoptr(CnnfxTensor) x = cnnfx_net_preprocess(n, rgb, error);
  return x && cnnfx_session_set_input(s, n->input, x, error) && cnnfx_session_forward(s, error);
}

gboolean cnnfx_net_grad_to_rgb(const CnnfxNet *n, const CnnfxTensor *gin, CnnfxTensor *grgb, GError **error)
{
  const CnnfxPreproc *p = &n->pre;
  int H = (int)grgb->dims[grgb->ndim - 2], W = (int)grgb->dims[grgb->ndim - 1];
  int h = (int)gin->dims[2], w = (int)gin->dims[3];
  g_autoptr(CnnfxTensor) folded = NULL;
  if (!p->fixed_h && p->pad_to > 1 && (h != H || w != W) && h >= H && w >= W && h - H < p->pad_to &&
      w - W < p->pad_to) {
    /* adjoint of the edge-replication padding of preprocess: padded rows / columns add into the
     * last row / column */
    int64_t fd[4] = {1, gin->dims[1], H, W};
    if (!(folded = cnnfx_tensor_new_f32(4, fd, error))) return FALSE;
    float *o = cnnfx_f32(folded);
    const float *gi = cnnfx_f32(gin);
    memset(o, 0, folded->numel * sizeof(float));
    for (int64_t c = 0; c < gin->dims[1]; c++)
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          o[((size_t)c * H + MIN(y, H - 1)) * W + MIN(x, W - 1)] += gi[((size_t)c * h + y) * w + x];
    gin = folded;
    h = H;
    w = W;
  }
  size_t hw = (size_t)h * w;
  g_autoptr(CnnfxTensor) tmp = NULL;
  float *g3;
  if (h != H || w != W) {
    int64_t d[3] = {3, h, w};
    if (!(tmp = cnnfx_tensor_new_f32(3, d, error))) return FALSE;
    g3 = cnnfx_f32(tmp);
  } else {
    g3 = cnnfx_f32(grgb);
  }
  const float *g = cnnfx_f32(gin);
  for (int c = 0; c < 3; c++) {
    float *o = g3 + c * hw;
    if (p->gray) {
      float s = p->scale / p->std[0] * luma[c];
      for (size_t i = 0; i < hw; i++) o[i] = g[i] * s;
    } else {
      int nc = p->bgr ? 2 - c : c;
      float s = p->scale / p->std[nc];
      for (size_t i = 0; i < hw; i++) o[i] = g[nc * hw + i] * s;
    }
  }
  if (tmp) {
    memset(cnnfx_f32(grgb), 0, grgb->numel * sizeof(float));
    if (!cnnfx_resize_bilinear_adjoint(g3, 3, h, w, cnnfx_f32(grgb), H, W)) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (resize adjoint)");
      return FALSE;
    }
  }
  return TRUE;
}

char *cnnfx_net_resolve_layer(const CnnfxNet *n, const char *spec, GError **error)
{
  const CnnfxModel *m = n->model;
  if (cnnfx_model_has_value(m, spec)) return g_strdup(spec);
  const char *hash = strchr(spec, '#');
  if (hash) {
    g_autofree char *op = g_strndup(spec, (gsize)(hash - spec));
    char *end;
    long want = strtol(hash + 1, &end, 10);
    if (*end == 0 && want >= 1) {
      long seen = 0;
      for (int k = 0; k < cnnfx_model_n_nodes(m); k++)
        if (!strcmp(cnnfx_model_node_op(m, k), op) && ++seen == want && cnnfx_model_node_n_outputs(m, k) > 0)
          return g_strdup(cnnfx_model_node_output(m, k, 0));
    }
  }
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
              "no layer '%s' in model %s (`cnnfx info MODEL` lists tensor names; OpType#N also works)", spec,
              n->name ? n->name : "");
  return NULL;
}

/* ---- classifier helpers (netutil.h) ------------------------------------------------------ */

/* The input of the Softmax behind a tensor, through shape-only ops; NULL if none. */
static const char *softmax_input_behind(const CnnfxModel *m, const char *name)
{
  const char *v = name;
  for (int hops = 0; v && *v && hops < 8; hops++) {
    int p = cnnfx_model_producer(m, v);
    if (p < 0 || cnnfx_model_node_n_inputs(m, p) < 1) break;
    const char *in = cnnfx_model_node_input(m, p, 0), *op = cnnfx_model_node_op(m, p);
    if (!in || !*in) break;
    if (!strcmp(op, "Softmax")) return in;
    if (strcmp(op, "Reshape") && strcmp(op, "Flatten") && strcmp(op, "Squeeze") && strcmp(op, "Unsqueeze") &&
        strcmp(op, "Identity"))
      break;
    v = in;
  }
  return NULL;
}

gboolean cnnfx_net_output_is_softmax(const CnnfxNet *net)
{
  return net && net->model && net->output && softmax_input_behind(net->model, net->output) != NULL;
}

/* The logits behind a probability output: walk back through shape-only ops to a Softmax. */
const char *cnnfx_net_score_tensor(const CnnfxNet *net)
{
  if (!net->output_is_prob) return net->output;
  const char *in = softmax_input_behind(net->model, net->output);
  return in ? in : net->output;
}

gboolean cnnfx_net_parse_class(const CnnfxNet *net, const char *s, int n_classes, int *out, GError **error)
{
  int n_labels = net->labels ? (int)g_strv_length(net->labels) : 0;
  for (int i = 0; i < n_labels && i < n_classes; i++)
    if (!strcmp(net->labels[i], s)) return *out = i, TRUE;
  for (int i = 0; i < n_labels && i < n_classes; i++)
    if (!g_ascii_strcasecmp(net->labels[i], s)) return *out = i, TRUE;
  /* ImageNet-style "tabby, tabby cat": any comma-separated synonym */
  for (int i = 0; i < n_labels && i < n_classes; i++) {
    if (!strchr(net->labels[i], ',')) continue;
    g_auto(GStrv) syn = g_strsplit(net->labels[i], ",", -1);
    for (char **q = syn; *q; q++)
      if (!g_ascii_strcasecmp(g_strstrip(*q), s)) return *out = i, TRUE;
  }
  char *end;
  long v = strtol(s, &end, 10);
  if (end != s && *end == 0) {
    if (v >= 0 && v < n_classes) return *out = (int)v, TRUE;
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Class: %ld is not a class of the model (0..%d)"), v, n_classes - 1);
    return FALSE;
  }
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Class: '%s': no such label (give a label or an index 0..%d)"), s,
              n_classes - 1);
  return FALSE;
}

void cnnfx_net_pin_input_size(CnnfxNet *eff)
{
  if (eff->pre.fixed_h && eff->pre.fixed_w) return;
  const CnnfxModel *m = eff->model;
  for (int i = 0; i < cnnfx_model_n_inputs(m); i++) {
    int64_t d[CNNFX_MAX_DIMS];
    if (strcmp(cnnfx_model_input_name(m, i), eff->input) || cnnfx_model_input_shape(m, i, d) != 4) continue;
    if (d[2] > 0 && d[3] > 0) {
      eff->pre.fixed_h = (int)d[2];
      eff->pre.fixed_w = (int)d[3];
    }
  }
}

const CnnfxRun *cnnfx_run_resolve(const CnnfxRun *run, CnnfxRun *local, CnnfxBackend **own, GError **error)
{
  *own = NULL;
  if (run && run->backend) return run;
  *local = run ? *run : (CnnfxRun){0};
  if (!(*own = cnnfx_backend_new("cpu", error))) return NULL;
  local->backend = *own;
  return local;
}

gboolean cnnfx_run_cancelled(const CnnfxRun *run, GError **error)
{
  if (run && run->cancel && g_atomic_int_get(run->cancel)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_CANCELLED, "cancelled");
    return TRUE;
  }
  return FALSE;
}

/* ---- dynamic choices ------------------------------------------------------------------------ */

char **cnnfx_net_layer_names(const CnnfxNet *net)
{
  GPtrArray *a = g_ptr_array_new();
  const CnnfxModel *m = net && net->model ? net->model : NULL;
  for (int k = 0; m && k < cnnfx_model_n_nodes(m); k++)
    for (int o = 0; o < cnnfx_model_node_n_outputs(m, k); o++) {
      const char *v = cnnfx_model_node_output(m, k, o);
      if (v && *v) g_ptr_array_add(a, g_strdup(v));
    }
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}


char **cnnfx_param_dynamic_choices(const CnnfxParam *d, const CnnfxNet *net)
{
  if (!d || !net) return NULL;
  gboolean layers = d->type == CNNFX_P_MODEL_LAYER ||
                    (d->type == CNNFX_P_STRINGS && strstr(d->name, "layer") != NULL);
  if (layers) return cnnfx_net_layer_names(net);
  if (d->type != CNNFX_P_CLASS) return NULL;
  GPtrArray *a = g_ptr_array_new();
  for (int i = 0; net->labels && net->labels[i]; i++) g_ptr_array_add(a, g_strdup(net->labels[i]));
  if (!strcmp(d->name, "target")) g_ptr_array_add(a, g_strdup("least-likely"));
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}
