/* Style transfer: Gatys, Ecker & Bethge (2016) image optimisation, and feed-forward "fast style"
 * networks (Johnson et al. 2016) given as ONNX.
 *
 * Losses, on the image x (RGB 0..1) at the working size; F_l = features of layer l ([C, P], P
 * positions), G_l = F_l F_l^T / P (the Gram matrix, normalised by positions), A_l = the blended
 * Gram matrices of the style images, Pc_l = the content image's features:
 *
 *   L = sw * sum_l ws_l * |G_l - A_l|^2 / |A_l|^2              (style; ws normalised to sum 1)
 *     + cw * sum_l wc_l * |F_l - Pc_l|^2 / |Pc_l|^2            (content; wc normalised to sum 1)
 *     + tv * mean over pixels and channels of (dx^2 + dy^2) * 100   (total variation)
 *
 * Each term is relative to its target's size, so the same weights work for networks whose
 * activations differ by orders of magnitude (a 0..255 Caffe VGG, a 0..1 random-feature net).
 * Gradients: dL/dF_l = sw ws_l 4/(P |A|^2) (G - A) F  +  cw wc_l 2/|Pc|^2 (F - Pc).
 *
 * Optimisation: L-BFGS (history m <= 10, Armijo backtracking line search) or Adam, coarse to fine
 * over `scales` sizes (each half the next), the longest side of the finest being `size` (at most
 * the image's own).  The finest result is upscaled to the image when `size` is smaller.
 *
 * Big images: when one forward + backward of the whole working image does not fit in
 * run->max_memory, the image is cut into tiles (cores aligned to 32 px plus a margin of context).
 * Gram matrices are sums over positions, so one evaluation is two passes: (A) forward every tile,
 * adding F F^T over the core positions; (B) forward + backward every tile with the gradient seeded
 * at its core positions only, the whole tile's input gradient added into the image's.  Features
 * at core positions see the margin as context (exact when the receptive field fits in it).
 * Content features are recomputed per tile then (one extra forward of the content layers).
 *
 * Keep colours (Gatys et al. 2017, "luminance-only transfer"): the optimisation runs on the
 * luminance (as grey RGB), with each style's luminance matched to the content's mean and standard
 * deviation; the result's luminance is combined with the content's chroma (YUV). */
#include "cnnfx-filters.h"
#include "netutil.h"
#include "imgops.h"
#include "tiles.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32
#define MIN_SIDE 32
#define MIN_TILE 96
#define LBFGS_M 10

typedef struct {
  char *name;  /* resolved tensor name */
  float w;     /* normalised weight */
  int C;
  float *A;    /* target Gram [C*C] */
  double *acc; /* Gram accumulator [C*C] */
  float *G;    /* current Gram [C*C] */
  float *D;    /* seed coefficients: dL/dF = D F on core positions [C*C] */
  double P;    /* positions counted */
  double a2;   /* |A|^2 */
} SLayer;

typedef struct {
  char *name;
  float w;
  double norm;         /* |Pc|^2 over the whole image at this scale */
  CnnfxTensor *cache;  /* content features when the image is one tile */
} CLayer;

typedef struct {
  const CnnfxNet *net;
  const CnnfxRun *run;
  CnnfxSession *s;      /* forward + backward, targets: all layers */
  CnnfxSession *fs;     /* forward only, style layers (Gram passes) */
  CnnfxSession *fc;     /* forward only, content layers */
  int ns, nc;
  SLayer *sl;
  CLayer *cl;
  const char **all, **snames, **cnames; /* NULL-terminated */
  int n_all;
  double sw, cw, tv;
  int tile, margin;
  double mem_fixed, bytes_per_px;
  /* current scale */
  int h, w;
  float *content;       /* [3,h,w] */
  /* progress */
  double done, total;
  int scale, n_scales, iter, n_iters;
  /* last evaluation's parts (debug output) */
  double ls, lc, ltv;
} Style;

static void report(Style *st, const char *phase)
{
  if (!st->run->progress) return;
  char what[96];
  /* TRANSLATORS: style transfer progress: "scale 1/2, iteration 5/100" */
  snprintf(what, sizeof what, _("scale %d/%d, %s %d/%d"), st->scale, st->n_scales, _(phase), st->iter, st->n_iters);
  st->run->progress(MIN(0.999, st->done / MAX(1.0, st->total)), what, st->run->user);
}

static gboolean nomem(GError **error, const char *what)
{
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (style: %s)", what);
  return FALSE;
}

/* ---- layers ---------------------------------------------------------------------------- */

/* "NAME" or "NAME:WEIGHT" (the name itself may contain ':' — only a numeric suffix is a weight). */
static char *split_weight(const char *spec, float *w, GError **error)
{
  const char *c = strrchr(spec, ':');
  *w = 1;
  if (c && c[1]) {
    char *end;
    double v = g_ascii_strtod(c + 1, &end);
    if (*end == 0) {
      if (!(v >= 0) || !isfinite(v)) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "layer weight in '%s' must be >= 0", spec);
        return NULL;
      }
      *w = (float)v;
      return g_strndup(spec, (gsize)(c - spec));
    }
  }
  return g_strdup(spec);
}

static void add_unique(GPtrArray *a, const char *name)
{
  for (guint i = 0; i < a->len; i++)
    if (!strcmp(a->pdata[i], name)) return;
  g_ptr_array_add(a, (gpointer)name);
}

static gboolean setup_layers(Style *st, const CnnfxParams *p, GError **error)
{
  const CnnfxNet *net = st->net;
  const char *const *sl = cnnfx_params_strings(p, "style-layers");
  const char *const *cl = cnnfx_params_strings(p, "content-layers");
  if (!sl || !*sl) sl = (const char *const *)net->style_layers;
  if (!cl || !*cl) cl = (const char *const *)net->content_layers;
  if (!sl || !*sl) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                _("Style layers: model %s has no default style layers; choose some of its layers"),
                net->name ? net->name : "");
    return FALSE;
  }
  st->ns = (int)g_strv_length((char **)sl);
  st->nc = cl ? (int)g_strv_length((char **)cl) : 0;
  st->sl = g_new0(SLayer, st->ns);
  st->cl = g_new0(CLayer, MAX(1, st->nc));
  double sum = 0;
  for (int i = 0; i < st->ns; i++) {
    g_autofree char *nm = split_weight(sl[i], &st->sl[i].w, error);
    if (!nm || !(st->sl[i].name = cnnfx_net_resolve_layer(net, nm, error))) return FALSE;
    sum += st->sl[i].w;
  }
  if (!(sum > 0)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "style: the style layer weights add up to 0");
    return FALSE;
  }
  for (int i = 0; i < st->ns; i++) st->sl[i].w = (float)(st->sl[i].w / sum);
  sum = 0;
  for (int i = 0; i < st->nc; i++) {
    g_autofree char *nm = split_weight(cl[i], &st->cl[i].w, error);
    if (!nm || !(st->cl[i].name = cnnfx_net_resolve_layer(net, nm, error))) return FALSE;
    sum += st->cl[i].w;
  }
  for (int i = 0; i < st->nc; i++) st->cl[i].w = sum > 0 ? (float)(st->cl[i].w / sum) : 0.f;
  if (!st->nc) st->cw = 0;

  GPtrArray *all = g_ptr_array_new(), *sn = g_ptr_array_new(), *cn = g_ptr_array_new();
  for (int i = 0; i < st->ns; i++) add_unique(all, st->sl[i].name), add_unique(sn, st->sl[i].name);
  for (int i = 0; i < st->nc; i++) add_unique(all, st->cl[i].name), add_unique(cn, st->cl[i].name);
  st->n_all = (int)all->len;
  g_ptr_array_add(all, NULL);
  g_ptr_array_add(sn, NULL);
  g_ptr_array_add(cn, NULL);
  st->all = (const char **)g_ptr_array_free(all, FALSE);
  st->snames = (const char **)g_ptr_array_free(sn, FALSE);
  st->cnames = (const char **)g_ptr_array_free(cn, FALSE);

  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = st->all, .mem_limit = st->run->max_memory,
                           .cancel = st->run->cancel};
  if (!(st->s = cnnfx_session_new(net->model, st->run->backend, &o, error))) return FALSE;
  o.grad = CNNFX_GRAD_NONE;
  o.targets = st->snames;
  if (!(st->fs = cnnfx_session_new(net->model, st->run->backend, &o, error))) return FALSE;
  if (st->nc) {
    o.targets = st->cnames;
    if (!(st->fc = cnnfx_session_new(net->model, st->run->backend, &o, error))) return FALSE;
  }
  return TRUE;
}

/* Features of a layer as [C, fh, fw]; FALSE (with error) if it is not a float feature map. */
static gboolean feat_dims(const CnnfxTensor *a, const char *name, int *C, int *fh, int *fw, GError **error)
{
  if (a->dtype != CNNFX_F32 || a->ndim < 2 || a->numel == 0 || (a->ndim == 4 && a->dims[0] != 1)) {
    g_autofree char *sh = cnnfx_shape_string(a);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "style: layer '%s' (%s) is not a feature map [1,C,H,W]",
                name, sh);
    return FALSE;
  }
  int nd = a->ndim; /* [N,C] vectors, [C,H,W], [1,C,H,W] */
  *C = (int)a->dims[nd == 2 ? 1 : nd - 3];
  *fh = nd >= 3 ? (int)a->dims[nd - 2] : 1;
  *fw = nd >= 3 ? (int)a->dims[nd - 1] : 1;
  return TRUE;
}

/* ---- tiles ----------------------------------------------------------------------------- */

typedef struct {
  int y0, y1, x0, x1;     /* tile extent in the image */
  int cy0, cy1, cx0, cx1; /* its core */
  int ylast, xlast;       /* core touches the bottom / right edge */
} Tile;

typedef struct {
  int ny, nx;
  int *by, *bx;
} Grid;

static void grid_make(Style *st, int h, int w, Grid *g)
{
  g->ny = cnnfx_tiles_split(h, st->tile, st->margin, ALIGN, &g->by);
  g->nx = cnnfx_tiles_split(w, st->tile, st->margin, ALIGN, &g->bx);
}

static void grid_free(Grid *g)
{
  g_free(g->by);
  g_free(g->bx);
}

static void grid_tile(const Grid *g, int h, int w, int margin, int i, Tile *t)
{
  int ty = i / g->nx, tx = i % g->nx;
  cnnfx_tiles_extent(g->by, g->ny, ty, margin, h, &t->y0, &t->y1);
  cnnfx_tiles_extent(g->bx, g->nx, tx, margin, w, &t->x0, &t->x1);
  t->cy0 = g->by[ty];
  t->cy1 = g->by[ty + 1];
  t->cx0 = g->bx[tx];
  t->cx1 = g->bx[tx + 1];
  t->ylast = ty == g->ny - 1;
  t->xlast = tx == g->nx - 1;
}

/* Core range [*f0, *f1) in a feature axis of length fl for a tile extent of tl pixels starting at t0. */
static void core_range(int t0, int tl, int c0, int c1, gboolean last, int fl, int *f0, int *f1)
{
  int s = MAX(1, (int)lround((double)tl / fl));
  *f0 = MIN(fl, (c0 - t0 + s - 1) / s);
  *f1 = last ? fl : MIN(fl, (c1 - t0 + s - 1) / s);
}

/* rgb tile [3, th, tw] copied from img [3,h,w] */
static CnnfxTensor *cut(const float *img, int h, int w, const Tile *t, GError **error)
{
  int th = t->y1 - t->y0, tw = t->x1 - t->x0;
  int64_t d[3] = {3, th, tw};
  CnnfxTensor *r = cnnfx_tensor_new_f32(3, d, error);
  if (!r) return NULL;
  cnnfx_tiles_extract(img, h, w, 0, 0, t->y0, t->x0, th, tw, cnnfx_f32(r));
  return r;
}

/* Copy the core region of feature map a [C, fh, fw] into buf [C, n]; returns n. */
static size_t core_pack(const float *a, int C, int fh, int fw, int f0, int f1, int g0, int g1, float *buf)
{
  size_t n = (size_t)(f1 - f0) * (g1 - g0);
  for (int c = 0; c < C; c++) {
    float *o = buf + (size_t)c * n;
    for (int y = f0; y < f1; y++, o += g1 - g0) memcpy(o, a + ((size_t)c * fh + y) * fw + g0, (size_t)(g1 - g0) * sizeof(float));
  }
  return n;
}

/* acc += F F^T over the core positions of layer feature map a. */
static gboolean gram_add(SLayer *L, const CnnfxTensor *a, const Tile *t, GError **error)
{
  int C, fh, fw, f0, f1, g0, g1;
  if (!feat_dims(a, L->name, &C, &fh, &fw, error)) return FALSE;
  if (L->C && C != L->C) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "style: layer '%s' changed its channel count", L->name);
    return FALSE;
  }
  if (!L->C) {
    L->C = C;
    if (!(L->acc = g_try_new0(double, (size_t)C * C)) || !(L->A = g_try_new0(float, (size_t)C * C)) ||
        !(L->G = g_try_new0(float, (size_t)C * C)) || !(L->D = g_try_new0(float, (size_t)C * C)))
      return nomem(error, "Gram matrices");
  }
  core_range(t->y0, t->y1 - t->y0, t->cy0, t->cy1, t->ylast, fh, &f0, &f1);
  core_range(t->x0, t->x1 - t->x0, t->cx0, t->cx1, t->xlast, fw, &g0, &g1);
  if (f1 <= f0 || g1 <= g0) return TRUE;
  const float *F = cnnfx_f32(a);
  float *buf = NULL;
  size_t n = (size_t)fh * fw;
  if (f0 || g0 || f1 < fh || g1 < fw) {
    if (!(buf = g_try_malloc((size_t)C * (f1 - f0) * (g1 - g0) * sizeof(float)))) return nomem(error, "tile features");
    n = core_pack(F, C, fh, fw, f0, f1, g0, g1, buf);
    F = buf;
  }
  float *tmp = g_try_malloc((size_t)C * C * sizeof(float));
  if (!tmp) {
    g_free(buf);
    return nomem(error, "Gram matrix");
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, C, (int)n, 1.0f, F, (int)n, F, (int)n, 0.0f, tmp, C);
  for (size_t i = 0; i < (size_t)C * C; i++) L->acc[i] += tmp[i];
  L->P += (double)n;
  g_free(tmp);
  g_free(buf);
  return TRUE;
}

static void gram_reset(Style *st)
{
  for (int l = 0; l < st->ns; l++) {
    SLayer *L = &st->sl[l];
    if (L->acc) memset(L->acc, 0, (size_t)L->C * L->C * sizeof(double));
    L->P = 0;
  }
}

/* G = acc / P */
static void gram_finish(SLayer *L, float *G)
{
  double inv = L->P > 0 ? 1.0 / L->P : 0;
  for (size_t i = 0; i < (size_t)L->C * L->C; i++) G[i] = (float)(L->acc[i] * inv);
}

/* Pass A over an image: Gram matrices of the style layers (into acc / P). */
static gboolean gram_pass(Style *st, const float *img, int h, int w, GError **error)
{
  gram_reset(st);
  Grid g;
  grid_make(st, h, w, &g);
  gboolean ok = TRUE;
  for (int i = 0; i < g.ny * g.nx && ok; i++) {
    Tile t;
    grid_tile(&g, h, w, st->margin, i, &t);
    g_autoptr(CnnfxTensor) rgb = NULL;
    ok = !cnnfx_run_cancelled(st->run, error) && (rgb = cut(img, h, w, &t, error)) &&
         cnnfx_net_forward(st->net, st->fs, rgb, error);
    for (int l = 0; l < st->ns && ok; l++) {
      CnnfxTensor *a = cnnfx_session_get(st->fs, st->sl[l].name, error);
      ok = a && gram_add(&st->sl[l], a, &t, error);
    }
  }
  grid_free(&g);
  return ok;
}

/* ---- the objective ----------------------------------------------------------------------- */

/* Content: |Pc|^2 per layer at this scale; cache the features when the image is one tile. */
static gboolean content_setup(Style *st, GError **error)
{
  for (int l = 0; l < st->nc; l++) {
    st->cl[l].norm = 0;
    if (st->cl[l].cache) cnnfx_tensor_unref(st->cl[l].cache);
    st->cl[l].cache = NULL;
  }
  if (!st->nc) return TRUE;
  Grid g;
  grid_make(st, st->h, st->w, &g);
  gboolean one = g.ny * g.nx == 1, ok = TRUE;
  for (int i = 0; i < g.ny * g.nx && ok; i++) {
    Tile t;
    grid_tile(&g, st->h, st->w, st->margin, i, &t);
    g_autoptr(CnnfxTensor) rgb = NULL;
    ok = !cnnfx_run_cancelled(st->run, error) && (rgb = cut(st->content, st->h, st->w, &t, error)) &&
         cnnfx_net_forward(st->net, st->fc, rgb, error);
    for (int l = 0; l < st->nc && ok; l++) {
      CnnfxTensor *a = cnnfx_session_get(st->fc, st->cl[l].name, error);
      int C, fh, fw, f0, f1, g0, g1;
      ok = a && feat_dims(a, st->cl[l].name, &C, &fh, &fw, error);
      if (!ok) break;
      core_range(t.y0, t.y1 - t.y0, t.cy0, t.cy1, t.ylast, fh, &f0, &f1);
      core_range(t.x0, t.x1 - t.x0, t.cx0, t.cx1, t.xlast, fw, &g0, &g1);
      const float *F = cnnfx_f32(a);
      double s = 0;
      for (int c = 0; c < C; c++)
        for (int y = f0; y < f1; y++)
          for (int x = g0; x < g1; x++) {
            double v = F[((size_t)c * fh + y) * fw + x];
            s += v * v;
          }
      st->cl[l].norm += s;
      if (one) ok = (st->cl[l].cache = cnnfx_tensor_copy(a, error)) != NULL;
    }
  }
  grid_free(&g);
  return ok;
}

/* Style seed coefficients from the finished Grams; returns the style loss. */
static double style_coeffs(Style *st)
{
  double loss = 0;
  for (int l = 0; l < st->ns; l++) {
    SLayer *L = &st->sl[l];
    gram_finish(L, L->G);
    size_t n = (size_t)L->C * L->C;
    double e = 0, a2 = MAX(L->a2, 1e-30);
    for (size_t i = 0; i < n; i++) {
      double d = (double)L->G[i] - L->A[i];
      e += d * d;
    }
    loss += st->sw * L->w * e / a2;
    float k = (float)(st->sw * L->w * 4.0 / (MAX(L->P, 1.0) * a2));
    for (size_t i = 0; i < n; i++) L->D[i] = k * (L->G[i] - L->A[i]);
  }
  return loss;
}

/* Add the style and content seeds of one tile into seeds[] (one per st->all name), core positions only;
 * returns the tile's content loss in *lc. */
static gboolean tile_seeds(Style *st, const Tile *t, CnnfxTensor **seeds, double *lc, GError **error)
{
  *lc = 0;
  for (int k = 0; k < st->n_all; k++) {
    CnnfxTensor *a = cnnfx_session_get(st->s, st->all[k], error);
    int C, fh, fw, f0, f1, g0, g1;
    if (!a || !feat_dims(a, st->all[k], &C, &fh, &fw, error)) return FALSE;
    if (!(seeds[k] = cnnfx_tensor_new_f32(a->ndim, a->dims, error))) return FALSE;
    core_range(t->y0, t->y1 - t->y0, t->cy0, t->cy1, t->ylast, fh, &f0, &f1);
    core_range(t->x0, t->x1 - t->x0, t->cx0, t->cx1, t->xlast, fw, &g0, &g1);
    const float *F = cnnfx_f32(a);
    float *S = cnnfx_f32(seeds[k]);
    size_t P = (size_t)fh * fw;
    memset(S, 0, a->numel * sizeof(float));
    for (int l = 0; l < st->ns; l++) {
      SLayer *L = &st->sl[l];
      if (strcmp(L->name, st->all[k])) continue;
      /* S += D F (all positions), masked to the core below */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, (int)P, C, 1.0f, L->D, C, F, (int)P, 1.0f, S,
                  (int)P);
    }
    if (f0 > 0 || g0 > 0 || f1 < fh || g1 < fw)
      for (int c = 0; c < C; c++)
        for (int y = 0; y < fh; y++)
          for (int x = 0; x < fw; x++)
            if (y < f0 || y >= f1 || x < g0 || x >= g1) S[((size_t)c * fh + y) * fw + x] = 0;
    for (int l = 0; l < st->nc; l++) {
      CLayer *L = &st->cl[l];
      if (strcmp(L->name, st->all[k]) || !(st->cw > 0) || !(L->w > 0)) continue;
      const CnnfxTensor *pc = L->cache;
      if (!pc && !(pc = cnnfx_session_get(st->fc, L->name, error))) return FALSE;
      if (pc->numel != a->numel) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "style: content layer '%s' changed shape", L->name);
        return FALSE;
      }
      const float *Pc = cnnfx_f32(pc);
      double norm = MAX(L->norm, 1e-30), e = 0;
      float k2 = (float)(st->cw * L->w * 2.0 / norm);
      for (int c = 0; c < C; c++)
        for (int y = f0; y < f1; y++)
          for (int x = g0; x < g1; x++) {
            size_t i = ((size_t)c * fh + y) * fw + x;
            float d = F[i] - Pc[i];
            e += (double)d * d;
            S[i] += k2 * d;
          }
      *lc += st->cw * L->w * e / norm;
    }
  }
  return TRUE;
}

/* Total variation: loss and gradient added into g. */
static double tv_term(const Style *st, const float *x, float *g)
{
  if (!(st->tv > 0)) return 0;
  int h = st->h, w = st->w;
  double k = st->tv * 100.0 / (3.0 * h * w), loss = 0;
  for (int c = 0; c < 3; c++) {
    const float *p = x + (size_t)c * h * w;
    float *q = g + (size_t)c * h * w;
    for (int y = 0; y < h; y++)
      for (int i = 0; i < w; i++) {
        size_t o = (size_t)y * w + i;
        if (i + 1 < w) {
          float d = p[o + 1] - p[o];
          loss += (double)d * d;
          q[o + 1] += (float)(2 * k * d);
          q[o] -= (float)(2 * k * d);
        }
        if (y + 1 < h) {
          float d = p[o + w] - p[o];
          loss += (double)d * d;
          q[o + w] += (float)(2 * k * d);
          q[o] -= (float)(2 * k * d);
        }
      }
  }
  return k * loss;
}

/* f(x) and g = df/dx at the current scale (x, g: [3,h,w]). */
static gboolean evaluate(Style *st, const float *x, double *f, float *g, GError **error)
{
  int h = st->h, w = st->w;
  Grid grid;
  grid_make(st, h, w, &grid);
  int n = grid.ny * grid.nx;
  gboolean ok = TRUE;
  memset(g, 0, (size_t)3 * h * w * sizeof(float));
  if (n > 1) ok = gram_pass(st, x, h, w, error); /* pass A */
  double ls = 0, lc = 0;
  if (ok && n > 1) ls = style_coeffs(st);
  for (int i = 0; i < n && ok; i++) {
    Tile t;
    grid_tile(&grid, h, w, st->margin, i, &t);
    g_autoptr(CnnfxTensor) rgb = NULL, crgb = NULL;
    if (cnnfx_run_cancelled(st->run, error) || !(rgb = cut(x, h, w, &t, error))) {
      ok = FALSE;
      break;
    }
    if (n > 1 && st->nc && st->cw > 0 &&
        (!(crgb = cut(st->content, h, w, &t, error)) || !cnnfx_net_forward(st->net, st->fc, crgb, error))) {
      ok = FALSE;
      break;
    }
    if (!cnnfx_net_forward(st->net, st->s, rgb, error)) {
      ok = FALSE;
      break;
    }
    if (n == 1) { /* Grams from this very forward */
      gram_reset(st);
      for (int l = 0; l < st->ns && ok; l++) {
        CnnfxTensor *a = cnnfx_session_get(st->s, st->sl[l].name, error);
        ok = a && gram_add(&st->sl[l], a, &t, error);
      }
      if (!ok) break;
      ls = style_coeffs(st);
    }
    CnnfxTensor **seeds = g_new0(CnnfxTensor *, st->n_all + 1);
    double tlc = 0;
    ok = tile_seeds(st, &t, seeds, &tlc, error) &&
         cnnfx_session_backward(st->s, st->n_all, st->all, seeds, error);
    lc += tlc;
    for (int k = 0; k < st->n_all; k++)
      if (seeds[k]) cnnfx_tensor_unref(seeds[k]);
    g_free(seeds);
    if (!ok) break;
    CnnfxTensor *gx = cnnfx_session_grad(st->s, st->net->input, error);
    g_autoptr(CnnfxTensor) grgb = gx ? cnnfx_tensor_new_f32(3, rgb->dims, error) : NULL;
    if (!grgb || !cnnfx_net_grad_to_rgb(st->net, gx, grgb, error)) {
      ok = FALSE;
      break;
    }
    int th = t.y1 - t.y0, tw = t.x1 - t.x0;
    const float *tg = cnnfx_f32(grgb);
    for (int c = 0; c < 3; c++)
      for (int y = 0; y < th; y++) {
        float *d = g + ((size_t)c * h + t.y0 + y) * w + t.x0;
        const float *s = tg + ((size_t)c * th + y) * tw;
        for (int xx = 0; xx < tw; xx++) d[xx] += s[xx];
      }
  }
  grid_free(&grid);
  if (!ok) return FALSE;
  st->ls = ls;
  st->lc = lc;
  st->ltv = tv_term(st, x, g);
  *f = ls + lc + st->ltv;
  return TRUE;
}

/* Evaluate, shrinking the tile and retrying when memory runs out. */
static gboolean eval_retry(Style *st, const float *x, double *f, float *g, GError **error)
{
  for (;;) {
    GError *e = NULL;
    if (evaluate(st, x, f, g, &e)) {
      st->done += (double)st->h * st->w;
      return TRUE;
    }
    int side = MAX(st->h, st->w);
    if (!g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_NOMEM) || MIN(st->tile, side) <= MIN_TILE) {
      g_propagate_error(error, e);
      return FALSE;
    }
    g_error_free(e);
    st->tile = MAX(MIN_TILE, MIN(st->tile, side) * 3 / 4 / ALIGN * ALIGN);
    st->margin = st->tile >= 320 ? 64 : 32;
    g_debug("style: out of memory, retrying with tile %d", st->tile);
    if (st->nc && !content_setup(st, error)) return FALSE;
  }
}

/* ---- optimisers ------------------------------------------------------------------------- */

static double dot(const float *a, const float *b, size_t n)
{
  double s = 0;
#pragma omp parallel for reduction(+ : s) schedule(static)
  for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
  return s;
}

static void axpy(float *y, double a, const float *x, size_t n)
{
  float af = (float)a;
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) y[i] += af * x[i];
}

static double max_abs(const float *x, size_t n)
{
  double m = 0;
  for (size_t i = 0; i < n; i++) m = MAX(m, fabs((double)x[i]));
  return m;
}

/* L-BFGS (Nocedal & Wright, algorithm 7.4) with Armijo backtracking.  x is updated in place. */
static gboolean lbfgs(Style *st, float *x, int iters, size_t budget, GError **error)
{
  size_t n = (size_t)3 * st->h * st->w, vb = n * sizeof(float);
  int m = (int)CLAMP(budget / MAX((size_t)1, 2 * vb), 2, LBFGS_M);
  float **S = g_new0(float *, m), **Y = g_new0(float *, m);
  double *rho = g_new0(double, m), *alpha = g_new0(double, m);
  float *g = g_try_malloc(vb), *d = g_try_malloc(vb), *xn = g_try_malloc(vb), *gn = g_try_malloc(vb);
  gboolean ok = FALSE;
  int k = 0, head = 0; /* pairs stored, next slot */
  double f, fn;
  if (!g || !d || !xn || !gn) {
    nomem(error, "optimiser");
    goto out;
  }
  for (int i = 0; i < m; i++)
    if (!(S[i] = g_try_malloc(vb)) || !(Y[i] = g_try_malloc(vb))) {
      nomem(error, "L-BFGS history");
      goto out;
    }
  if (!eval_retry(st, x, &f, g, error)) goto out;
  g_debug("style: scale %d start loss %.6g (style %.4g content %.4g tv %.4g)", st->scale, f, st->ls, st->lc, st->ltv);
  for (int it = 0; it < iters; it++) {
    st->iter = it + 1;
    report(st, N_("iteration"));
    /* d = -H g (two-loop recursion) */
    memcpy(d, g, vb);
    for (int j = 0; j < k; j++) {
      int i = (head - 1 - j + m) % m;
      alpha[i] = rho[i] * dot(S[i], d, n);
      axpy(d, -alpha[i], Y[i], n);
    }
    double t;
    if (k) {
      int i = (head - 1 + m) % m;
      double gamma = 1.0 / (rho[i] * dot(Y[i], Y[i], n));
#pragma omp parallel for schedule(static)
      for (size_t q = 0; q < n; q++) d[q] *= (float)gamma;
      for (int j = k - 1; j >= 0; j--) {
        int ii = (head - 1 - j + m) % m;
        double beta = rho[ii] * dot(Y[ii], d, n);
        axpy(d, alpha[ii] - beta, S[ii], n);
      }
      t = 1;
    } else {
      double gm = max_abs(g, n);
      if (!(gm > 0)) break; /* already at a stationary point */
      t = 0.05 / gm;        /* first step: at most 5% of the range on any pixel */
    }
#pragma omp parallel for schedule(static)
    for (size_t q = 0; q < n; q++) d[q] = -d[q];
    double gd = dot(g, d, n);
    if (!(gd < 0)) { /* not a descent direction: restart from steepest descent */
      k = 0;
      double gm = max_abs(g, n);
      if (!(gm > 0)) break;
#pragma omp parallel for schedule(static)
      for (size_t q = 0; q < n; q++) d[q] = -g[q];
      gd = -dot(g, g, n);
      t = 0.05 / gm;
    }
    gboolean accepted = FALSE;
    for (int ls = 0; ls < 12; ls++) {
      memcpy(xn, x, vb);
      axpy(xn, t, d, n);
      if (!eval_retry(st, xn, &fn, gn, error)) goto out;
      if (fn <= f + 1e-4 * t * gd) {
        accepted = TRUE;
        break;
      }
      t *= 0.4;
    }
    if (!accepted) {
      g_debug("style: line search failed at iteration %d; stopping", it + 1);
      break;
    }
    /* s = xn - x, y = gn - g */
    float *s = S[head], *y = Y[head];
#pragma omp parallel for schedule(static)
    for (size_t q = 0; q < n; q++) {
      s[q] = xn[q] - x[q];
      y[q] = gn[q] - g[q];
    }
    double sy = dot(s, y, n);
    if (sy > 1e-12 * sqrt(dot(s, s, n) * dot(y, y, n))) {
      rho[head] = 1.0 / sy;
      head = (head + 1) % m;
      k = MIN(k + 1, m);
    }
    memcpy(x, xn, vb);
    memcpy(g, gn, vb);
    double rel = (f - fn) / MAX(fabs(f), 1e-30);
    f = fn;
    if (rel >= 0 && rel < 1e-7) break;
  }
  g_debug("style: scale %d end loss %.6g (style %.4g content %.4g tv %.4g)", st->scale, f, st->ls, st->lc, st->ltv);
  ok = TRUE;
out:
  for (int i = 0; i < m; i++) {
    g_free(S[i]);
    g_free(Y[i]);
  }
  g_free(S);
  g_free(Y);
  g_free(rho);
  g_free(alpha);
  g_free(g);
  g_free(d);
  g_free(xn);
  g_free(gn);
  return ok;
}

static gboolean adam(Style *st, float *x, int iters, double lr, GError **error)
{
  size_t n = (size_t)3 * st->h * st->w, vb = n * sizeof(float);
  float *g = g_try_malloc(vb), *mo = g_try_malloc0(vb), *vo = g_try_malloc0(vb);
  gboolean ok = FALSE;
  double f = 0;
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  if (!g || !mo || !vo) {
    nomem(error, "optimiser");
    goto out;
  }
  for (int it = 0; it < iters; it++) {
    st->iter = it + 1;
    report(st, N_("iteration"));
    if (!eval_retry(st, x, &f, g, error)) goto out;
    if (it == 0) g_debug("style: scale %d start loss %.6g", st->scale, f);
    double c1 = 1 - pow(b1, it + 1), c2 = 1 - pow(b2, it + 1);
#pragma omp parallel for schedule(static)
    for (size_t q = 0; q < n; q++) {
      mo[q] = (float)(b1 * mo[q] + (1 - b1) * g[q]);
      vo[q] = (float)(b2 * vo[q] + (1 - b2) * (double)g[q] * g[q]);
      x[q] -= (float)(lr * (mo[q] / c1) / (sqrt(vo[q] / c2) + eps));
    }
  }
  g_debug("style: scale %d end loss %.6g (before the last step)", st->scale, f);
  ok = TRUE;
out:
  g_free(g);
  g_free(mo);
  g_free(vo);
  return ok;
}

/* ---- colour ---------------------------------------------------------------------------- */

static float luma_of(const float *p, size_t hw, size_t i)
{
  return 0.299f * p[i] + 0.587f * p[hw + i] + 0.114f * p[2 * hw + i];
}

/* New grey RGB tensor from the luminance of t; optionally matched to mean/std (mean < 0: keep). */
static CnnfxTensor *luminance(const CnnfxTensor *t, double mean, double sd, double *mean_out, double *sd_out,
                              GError **error)
{
  int h = (int)t->dims[t->ndim - 2], w = (int)t->dims[t->ndim - 1];
  int64_t d[3] = {3, h, w};
  CnnfxTensor *r = cnnfx_tensor_new_f32(3, d, error);
  if (!r) return NULL;
  size_t hw = (size_t)h * w;
  const float *s = cnnfx_f32(t);
  float *o = cnnfx_f32(r);
  double m = 0, v = 0;
  for (size_t i = 0; i < hw; i++) m += o[i] = luma_of(s, hw, i);
  m /= (double)hw;
  for (size_t i = 0; i < hw; i++) v += (o[i] - m) * (o[i] - m);
  double sdv = sqrt(v / (double)hw);
  if (mean_out) *mean_out = m;
  if (sd_out) *sd_out = sdv;
  double a = mean >= 0 && sdv > 1e-6 ? sd / sdv : 1, b = mean >= 0 ? mean - a * m : 0;
  for (size_t i = 0; i < hw; i++) o[i] = (float)CLAMP(a * o[i] + b, 0.0, 1.0);
  memcpy(o + hw, o, hw * sizeof(float));
  memcpy(o + 2 * hw, o, hw * sizeof(float));
  return r;
}

/* image <- luminance of lum (grey RGB [3,H,W]) with the chroma of image (YUV, BT.601). */
static void recolour(float *img, const float *lum, size_t hw)
{
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < hw; i++) {
    float y0 = luma_of(img, hw, i), y = luma_of(lum, hw, i);
    float u = img[2 * hw + i] - y0, v = img[i] - y0; /* B - Y, R - Y */
    img[i] = y + v;
    img[2 * hw + i] = y + u;
    img[hw + i] = y - (0.299f * v + 0.114f * u) / 0.587f;
  }
}

/* ---- setup ------------------------------------------------------------------------------- */

/* Memory model of one tile (peak of the gradient session + the forward sessions + our buffers),
 * fitted on two crops; then the tile size that fits in max_memory. */
static gboolean setup_tile_size(Style *st, int h, int w, GError **error)
{
  const float *img = st->content;
  double peak[2], px[2];
  for (int k = 0; k < 2; k++) {
    int ph = MIN(h, 64 << k), pw = MIN(w, 64 << k);
    Tile t = {0, ph, 0, pw, 0, ph, 0, pw, 1, 1};
    g_autoptr(CnnfxTensor) rgb = cut(img, h, w, &t, error);
    if (!rgb || !cnnfx_net_forward(st->net, st->s, rgb, error)) return FALSE;
    CnnfxTensor **seeds = g_new0(CnnfxTensor *, st->n_all + 1);
    gboolean ok = TRUE;
    double seed_bytes = 0;
    for (int l = 0; l < st->n_all && ok; l++) {
      CnnfxTensor *a = cnnfx_session_get(st->s, st->all[l], error);
      int C, fh, fw;
      ok = a && feat_dims(a, st->all[l], &C, &fh, &fw, error) && (seeds[l] = cnnfx_tensor_copy(a, error));
      if (ok) seed_bytes += (double)a->numel * sizeof(float);
    }
    ok = ok && cnnfx_session_backward(st->s, st->n_all, st->all, seeds, error);
    for (int l = 0; l < st->n_all; l++)
      if (seeds[l]) cnnfx_tensor_unref(seeds[l]);
    g_free(seeds);
    if (!ok) return FALSE;
    px[k] = (double)ph * pw;
    peak[k] = (double)cnnfx_session_peak_bytes(st->s) + seed_bytes;
  }
  double per_px = px[1] > px[0] ? (peak[1] - peak[0]) / (px[1] - px[0]) : peak[1] / px[1];
  if (per_px < 0.25 * peak[1] / px[1]) per_px = peak[1] / px[1];
  st->mem_fixed = MAX(0.0, peak[1] - per_px * px[1]);
  /* forward-only sessions keep their targets (<= the seeds) and transient activations; count them
   * as half the gradient session, plus 6 floats per pixel of tile buffers */
  st->bytes_per_px = 1.5 * per_px + 6 * 4 * 3;
  return TRUE;
}

static int choose_tile(Style *st, int req, GError **error)
{
  int T = req;
  if (st->run->max_memory) {
    double fit = sqrt(MAX(0.0, 0.9 * (double)st->run->max_memory - st->mem_fixed) / st->bytes_per_px);
    if (fit < MIN_TILE) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM,
                  _("Memory bound (MiB): %zu MiB is too small for this model (a %d px tile needs about %.0f MiB)"),
                  st->run->max_memory >> 20, MIN_TILE,
                  (st->mem_fixed + st->bytes_per_px * MIN_TILE * MIN_TILE) / 1048576.0 / 0.9);
      return 0;
    }
    T = MIN(T, (int)fit);
  }
  return MAX(MIN_TILE, T / ALIGN * ALIGN);
}

/* Target Grams: blend of the style images' Grams, each image resized to long side `side`. */
static gboolean style_targets(Style *st, CnnfxTensor *const *styles, const double *blend, int n_styles, int side,
                              gboolean lum, double cmean, double csd, GError **error)
{
  for (int l = 0; l < st->ns; l++)
    if (st->sl[l].A) memset(st->sl[l].A, 0, (size_t)st->sl[l].C * st->sl[l].C * sizeof(float));
  for (int k = 0; k < n_styles; k++) {
    const CnnfxTensor *s = styles[k];
    int H = (int)s->dims[s->ndim - 2], W = (int)s->dims[s->ndim - 1];
    double f = (double)side / MAX(H, W);
    int h = MAX(MIN_SIDE, (int)lround(H * f)), w = MAX(MIN_SIDE, (int)lround(W * f));
    g_autoptr(CnnfxTensor) rs = cnnfx_tensor_resized(s, h, w, error);
    if (!rs) return FALSE;
    if (lum) {
      CnnfxTensor *l = luminance(rs, cmean, csd, NULL, NULL, error);
      if (!l) return FALSE;
      cnnfx_tensor_unref(rs);
      rs = l;
    }
    if (!gram_pass(st, cnnfx_f32(rs), h, w, error)) return FALSE;
    for (int l = 0; l < st->ns; l++) {
      SLayer *L = &st->sl[l];
      gram_finish(L, L->G); /* L->G is scratch until the optimiser's first evaluation */
      for (size_t i = 0; i < (size_t)L->C * L->C; i++) L->A[i] += (float)blend[k] * L->G[i];
    }
  }
  for (int l = 0; l < st->ns; l++) {
    SLayer *L = &st->sl[l];
    double a2 = 0;
    for (size_t i = 0; i < (size_t)L->C * L->C; i++) a2 += (double)L->A[i] * L->A[i];
    L->a2 = a2;
  }
  return TRUE;
}

static gboolean parse_blend(const CnnfxParams *p, int n, double *blend, GError **error)
{
  const char *const *b = cnnfx_params_strings(p, "style-blend");
  int nb = b ? (int)g_strv_length((char **)b) : 0;
  if (nb && nb != n) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Style blend: %d weights for %d style images"), nb, n);
    return FALSE;
  }
  double sum = 0;
  for (int i = 0; i < n; i++) {
    blend[i] = 1;
    if (nb) {
      char *end;
      blend[i] = g_ascii_strtod(b[i], &end);
      if (end == b[i] || *end || !(blend[i] >= 0) || !isfinite(blend[i])) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Style blend: '%s' is not a weight >= 0"), b[i]);
        return FALSE;
      }
    }
    sum += blend[i];
  }
  if (!(sum > 0)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Style blend: the weights add up to 0"));
    return FALSE;
  }
  for (int i = 0; i < n; i++) blend[i] /= sum;
  return TRUE;
}

static gboolean check_image(const CnnfxTensor *t, const char *what, GError **error)
{
  if (t->dtype != CNNFX_F32 || !(t->ndim == 3 || (t->ndim == 4 && t->dims[0] == 1)) || t->dims[t->ndim - 3] != 3) {
    g_autofree char *sh = cnnfx_shape_string(t);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "style: the %s must be an RGB image [3,H,W], got %s", what, sh);
    return FALSE;
  }
  int H = (int)t->dims[t->ndim - 2], W = (int)t->dims[t->ndim - 1];
  if (H < MIN_SIDE || W < MIN_SIDE) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "style: the %s (%dx%d) is too small (at least %d px a side)",
                what, W, H, MIN_SIDE);
    return FALSE;
  }
  return TRUE;
}

static void style_clear(Style *st)
{
  for (int l = 0; l < st->ns; l++) {
    SLayer *L = &st->sl[l];
    g_free(L->name);
    g_free(L->A);
    g_free(L->acc);
    g_free(L->G);
    g_free(L->D);
  }
  for (int l = 0; l < st->nc; l++) {
    g_free(st->cl[l].name);
    if (st->cl[l].cache) cnnfx_tensor_unref(st->cl[l].cache);
  }
  g_free(st->sl);
  g_free(st->cl);
  g_free(st->all);
  g_free(st->snames);
  g_free(st->cnames);
  if (st->s) cnnfx_session_free(st->s);
  if (st->fs) cnnfx_session_free(st->fs);
  if (st->fc) cnnfx_session_free(st->fc);
  g_free(st->content);
}

/* ---- the filter ----------------------------------------------------------------------------- */

static gboolean style_run(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                          CnnfxTensor *const *styles, int n_styles, GError **error)
{
  g_return_val_if_fail(net && p && run && image, FALSE);
  if (!check_image(image, "image", error)) return FALSE;
  if (n_styles < 1 || !styles) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "style: no style image given");
    return FALSE;
  }
  for (int k = 0; k < n_styles; k++)
    if (!check_image(styles[k], "style image", error)) return FALSE;
  const int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  const int iters = cnnfx_params_int(p, "iterations"), n_scales_req = cnnfx_params_int(p, "scales");
  const gboolean keep_colours = cnnfx_params_bool(p, "preserve-colors");
  const gboolean use_adam = !g_strcmp0(cnnfx_params_string(p, "optimizer"), "adam");
  const gboolean from_noise = !g_strcmp0(cnnfx_params_string(p, "init"), "noise");
  const double style_scale = cnnfx_params_double(p, "style-scale"), lr = cnnfx_params_double(p, "learning-rate");
  g_autofree double *blend = g_new(double, n_styles);
  if (!parse_blend(p, n_styles, blend, error)) return FALSE;

  Style st = {.net = net, .run = run};
  st.sw = cnnfx_params_double(p, "style-weight");
  st.cw = cnnfx_params_double(p, "content-weight");
  st.tv = cnnfx_params_double(p, "tv-weight");
  gboolean ok = FALSE;
  float *x = NULL;
  GRand *rng = NULL;
  g_autoptr(CnnfxTensor) lum = NULL;
  double cmean = -1, csd = 0;
  if (!setup_layers(&st, p, error)) goto out;

  /* what is optimised: the image, or its luminance */
  const CnnfxTensor *src = image;
  if (keep_colours) {
    if (!(lum = luminance(image, -1, 0, &cmean, &csd, error))) goto out;
    src = lum;
  }

  /* sizes: finest long side = min(size, image), each coarser scale half of the next */
  int side = MIN(cnnfx_params_int(p, "size"), MAX(H, W));
  int S = 1;
  while (S < n_scales_req && side / (1 << S) >= 2 * MIN_SIDE && MIN(H, W) * (double)side / MAX(H, W) / (1 << S) >= MIN_SIDE)
    S++;
  int *sh = g_newa(int, S), *sw_ = g_newa(int, S);
  st.total = 0;
  for (int k = 0; k < S; k++) {
    double f = (double)side / MAX(H, W) / (1 << k);
    sh[k] = MAX(MIN_SIDE / 2, (int)lround(H * f));
    sw_[k] = MAX(MIN_SIDE / 2, (int)lround(W * f));
    st.total += (double)iters * sh[k] * sw_[k] * (use_adam ? 1.0 : 1.3);
  }
  st.n_scales = S;
  st.n_iters = iters;
  guint32 sd[2] = {(guint32)(run->seed & 0xffffffffu), (guint32)(run->seed >> 32)};
  rng = g_rand_new_with_seed_array(sd, 2);

  for (int k = S - 1; k >= 0; k--) {
    int h = sh[k], w = sw_[k];
    size_t n = (size_t)3 * h * w;
    st.scale = S - k;
    st.iter = 0;
    /* content at this scale */
    g_free(st.content);
    if (!(st.content = g_try_malloc(n * sizeof(float)))) {
      nomem(error, "content image");
      goto out;
    }
    if (!cnnfx_resize_bilinear(cnnfx_f32(src), 3, H, W, st.content, h, w)) {
      nomem(error, "resize");
      goto out;
    }
    st.h = h;
    st.w = w;
    if (k == S - 1) { /* first scale: memory model, tile size */
      if (!setup_tile_size(&st, h, w, error)) goto out;
      st.tile = choose_tile(&st, 4096, error);
      if (!st.tile) goto out;
      st.margin = st.tile >= 320 ? 64 : 32;
      g_debug("style: tile memory %.1f MiB + %.0f bytes/px, tile %d", st.mem_fixed / 1048576.0, st.bytes_per_px,
              st.tile);
    }
    /* the image being optimised: from the previous scale, or the initial one */
    float *xn = g_try_malloc(n * sizeof(float));
    if (!xn) {
      nomem(error, "image");
      goto out;
    }
    if (x) {
      if (!cnnfx_resize_bilinear(x, 3, sh[k + 1], sw_[k + 1], xn, h, w)) {
        g_free(xn);
        nomem(error, "resize");
        goto out;
      }
    } else if (from_noise) {
      for (size_t i = 0; i < n; i++) xn[i] = (float)g_rand_double_range(rng, 0.35, 0.65);
      if (keep_colours) {
        memcpy(xn + n / 3, xn, n / 3 * sizeof(float));
        memcpy(xn + 2 * n / 3, xn, n / 3 * sizeof(float));
      }
    } else {
      memcpy(xn, st.content, n * sizeof(float));
    }
    g_free(x);
    x = xn;
    if (!style_targets(&st, styles, blend, n_styles, MAX(MIN_SIDE, (int)lround(style_scale * MAX(h, w))),
                       keep_colours, cmean, csd, error) ||
        !content_setup(&st, error))
      goto out;
    size_t budget = run->max_memory ? run->max_memory / 2 : (size_t)1 << 30;
    if (!(use_adam ? adam(&st, x, iters, lr, error) : lbfgs(&st, x, iters, budget, error))) goto out;
    cnnfx_clamp(x, n, 0.f, 1.f);
  }

  /* result at the image's size */
  float *img = cnnfx_f32(image);
  size_t hw = (size_t)H * W;
  if (sh[0] == H && sw_[0] == W && !keep_colours) {
    memcpy(img, x, 3 * hw * sizeof(float));
  } else {
    float *full = keep_colours ? cnnfx_f32(lum) : img; /* lum is no longer needed as a source */
    if (sh[0] == H && sw_[0] == W) memcpy(full, x, 3 * hw * sizeof(float));
    else if (!cnnfx_resize_bilinear(x, 3, sh[0], sw_[0], full, H, W)) {
      nomem(error, "resize");
      goto out;
    }
    if (keep_colours) recolour(img, full, hw);
  }
  cnnfx_clamp(img, 3 * hw, 0.f, 1.f);
  if (run->progress) run->progress(1.0, _("done"), run->user);
  ok = TRUE;
out:
  if (rng) g_rand_free(rng);
  g_free(x);
  style_clear(&st);
  return ok;
}

/* ---- fast style ------------------------------------------------------------------------------ */

/* A feed-forward style network (the ONNX model zoo's fast-neural-style): RGB 0..255 in and out,
 * [1,3,H,W] -> [1,3,H,W], fully convolutional.  Big images run in overlapping tiles blended
 * linearly (instance normalisation then sees each tile's statistics: tiles are kept large). */
static gboolean fast_style_run(const CnnfxModel *m, const CnnfxRun *run, CnnfxTensor *image, GError **error)
{
  g_return_val_if_fail(m && run && image, FALSE);
  if (image->dtype != CNNFX_F32 || !(image->ndim == 3 || (image->ndim == 4 && image->dims[0] == 1)) ||
      image->dims[image->ndim - 3] != 3) {
    g_autofree char *s = cnnfx_shape_string(image);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "fast style needs an RGB image [3,H,W], got %s", s);
    return FALSE;
  }
  if (cnnfx_model_n_inputs(m) < 1 || cnnfx_model_n_outputs(m) < 1) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "fast style: the model has no input or output");
    return FALSE;
  }
  const char *in = cnnfx_model_input_name(m, 0), *out = cnnfx_model_output_name(m, 0);
  const char *targets[] = {out, NULL};
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_NONE, .targets = targets, .mem_limit = run->max_memory,
                           .cancel = run->cancel};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, run->backend, &o, error);
  if (!s) return FALSE;
  const int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  size_t hw = (size_t)H * W;
  float *img = cnnfx_f32(image);
  float *acc = g_try_malloc0(3 * hw * sizeof(float));
  if (!acc) return nomem(error, "fast style result");
  int T = MAX(H, W), M = 64;
  /* Networks with strided convolutions and upsampling back (Johnson et al.: two stride-2
   * convolutions) only take sizes that are multiples of their total stride: each tile is padded
   * (edge replication) up to a multiple of `pm` and the result cropped back.  pm starts at 1 and
   * doubles while the network refuses the size (a shape error, or an output of another size). */
  int pm = 1;
  gboolean ok = FALSE;
  for (;;) {
    GError *e = NULL;
    int *by = NULL, *bx = NULL;
    int ny = cnnfx_tiles_split(H, T, M, ALIGN, &by), nx = cnnfx_tiles_split(W, T, M, ALIGN, &bx);
    float *wy = g_new(float, MIN(T, H) + 1), *wx = g_new(float, MIN(T, W) + 1);
    memset(acc, 0, 3 * hw * sizeof(float));
    g_debug("fast style: %d tiles (%d x %d) of at most %d px, padded to multiples of %d", ny * nx, nx, ny, T, pm);
    gboolean tiles_ok = TRUE;
    for (int i = 0; i < ny * nx && tiles_ok; i++) {
      int ty = i / nx, tx = i % nx, y0, y1, x0, x1, ry0, ry1, rx0, rx1;
      cnnfx_tiles_extent(by, ny, ty, M, H, &y0, &y1);
      cnnfx_tiles_extent(bx, nx, tx, M, W, &x0, &x1);
      int th = y1 - y0, tw = x1 - x0;
      int ph = (th + pm - 1) / pm * pm, pw = (tw + pm - 1) / pm * pm;
      int64_t d[4] = {1, 3, ph, pw};
      if (cnnfx_run_cancelled(run, &e)) {
        tiles_ok = FALSE;
        break;
      }
      g_autoptr(CnnfxTensor) xt = cnnfx_tensor_new_f32(4, d, &e);
      if (!xt) {
        tiles_ok = FALSE;
        break;
      }
      float *xp = cnnfx_f32(xt);
      for (int c = 0; c < 3; c++)
        for (int y = 0; y < ph; y++)
          for (int xx = 0; xx < pw; xx++)
            xp[((size_t)c * ph + y) * pw + xx] =
              255.f * img[(size_t)c * hw + (size_t)(y0 + MIN(y, th - 1)) * W + x0 + MIN(xx, tw - 1)];
      CnnfxTensor *yt = NULL;
      if (!cnnfx_session_set_input(s, in, xt, &e) || !cnnfx_session_forward(s, &e) ||
          !(yt = cnnfx_session_get(s, out, &e))) {
        tiles_ok = FALSE;
        break;
      }
      if (yt->dtype != CNNFX_F32 || yt->numel != (size_t)3 * ph * pw) {
        g_autofree char *sh = cnnfx_shape_string(yt);
        g_set_error(&e, CNNFX_ERROR, CNNFX_ERROR_SHAPE,
                    "fast style: the model's output %s is not an RGB image of the input's size %dx%d", sh, pw, ph);
        tiles_ok = FALSE;
        break;
      }
      cnnfx_tiles_weights(by, ny, ty, M / 2, y0, y1, wy, &ry0, &ry1);
      cnnfx_tiles_weights(bx, nx, tx, M / 2, x0, x1, wx, &rx0, &rx1);
      const float *yp = cnnfx_f32(yt);
      for (int c = 0; c < 3; c++)
        for (int y = MAX(ry0, y0); y < MIN(ry1, y1); y++)
          for (int xx = MAX(rx0, x0); xx < MIN(rx1, x1); xx++)
            acc[(size_t)c * hw + (size_t)y * W + xx] +=
              wy[y - y0] * wx[xx - x0] * yp[((size_t)c * ph + (y - y0)) * pw + (xx - x0)] / 255.f;
      if (run->progress) {
        char what[64];
        snprintf(what, sizeof what, _("tile %d/%d"), i + 1, ny * nx);
        run->progress((double)(i + 1) / (ny * nx), what, run->user);
      }
    }
    g_free(by);
    g_free(bx);
    g_free(wy);
    g_free(wx);
    if (tiles_ok) {
      ok = TRUE;
      break;
    }
    if (g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_SHAPE) && pm < 64) {
      g_debug("fast style: %s; padding tiles to multiples of %d", e->message, 2 * pm);
      g_error_free(e);
      pm *= 2;
      continue;
    }
    if (!g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_NOMEM) || T <= 2 * MIN_TILE) {
      g_propagate_error(error, e);
      break;
    }
    g_error_free(e);
    T = MAX(2 * MIN_TILE, MIN(T, MAX(H, W)) * 2 / 3);
    g_debug("fast style: out of memory, retrying with tile %d", T);
  }
  if (ok) {
    memcpy(img, acc, 3 * hw * sizeof(float));
    cnnfx_clamp(img, 3 * hw, 0.f, 1.f);
  }
  g_free(acc);
  return ok;
}

gboolean cnnfx_style(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     CnnfxTensor *const *styles, int n_styles, GError **error)
{
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r && style_run(net, p, r, image, styles, n_styles, error);
}

gboolean cnnfx_fast_style(const CnnfxModel *m, const CnnfxRun *run, CnnfxTensor *image, GError **error)
{
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r && fast_style_run(m, r, image, error);
}
