/* Deep Dream (Mordvintsev, Olah, Tyka 2015), the classic octave algorithm, tiled.
 *
 * For octaves k = K-1 .. 0 (coarse to fine; octave k is the image scaled by 1/scale^k):
 *   src_k = base_k + upscale(detail_{k+1})
 *   repeat `iterations` times:
 *     random roll (dy, dx) in [-jitter, jitter]
 *     g = dL/dsrc of the rolled image, computed tile by tile (below), unrolled
 *     src_k += step/255 * g / mean|g|      (mean over the whole octave image)
 *     clip src_k to 0..1
 *   detail_k = src_k - base_k
 * Octave 0 works directly on the caller's image.
 *
 * Objective: L = sum_l w_l * 0.5 * ||a_l||^2 over the selected channels of each layer,
 * w_l = 1 / (elements of layer l per input pixel), i.e. the per-element mean, so several
 * layers weigh alike.  With a guide image: L = sum_l w_l * sum_p <a_l(p), y_l(j*(p))>, where
 * y_l are the guide's features and j*(p) = argmax_j <a_l(p), y_l(j)> is the guide position that
 * matches position p best (the "best match per position" objective of the original notebook,
 * no Gram matrices).
 *
 * Tiling: the rolled image is cut into tiles of at most T x T pixels whose cores (the parts
 * written) are aligned to 32 px and surrounded by a margin M (64 px for T >= 320, else 32) of
 * context; each tile's input gradient is computed by one forward+backward and added into the
 * image gradient with weights that are 1 on its core and ramp linearly across each core boundary
 * (over +-M/4 px, the neighbour's weight ramping up so they add up to 1): no hard seams.  The
 * roll is virtual (tiles read the image with wrap-around indexing), so no rolled copy is made;
 * it moves the tile boundaries every step.
 *
 * Whole-image memory (12 bytes per pixel for one float RGB copy, N = 12*H*W):
 *   octave 0: the image + gradient = 2 N;  octave k >= 1: image + src_k + grad_k = (1 + 2/s^2k) N;
 *   peak = N * (1 + max(1, 2/s^2)) + network tensors of one tile (bounded by run->max_memory)
 *          + ~40 bytes per tile pixel of tile buffers.
 * The octave bases are never stored: they are area-resampled from the image when needed. */
#include "cnnfx-filters.h"
#include "netutil.h"
#include <cblas.h>
#include "imgops.h"
#include "tiles.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN 32     /* tile cores start at multiples of this (network stride phase) */
#define MIN_SIDE 32  /* octaves smaller than this are skipped */
#define MIN_IMAGE 8
#define MIN_TILE 96
#define GUIDE_MAX 512

typedef struct {
  char *name;
  int C;           /* channels */
  double per_px;   /* elements per input pixel (measured on the probe) */
  float weight;
  gboolean *mask;  /* selected channels, [C] */
  float *guide;    /* guide features [C, guide_n] (masked), or NULL */
  int guide_n;
} Layer;

typedef struct {
  const CnnfxNet *net;
  const CnnfxRun *run;
  CnnfxSession *s;
  int n_layers;
  Layer *layers;
  const char **names;  /* NULL-terminated layer names */
  int tile, margin;
  double bytes_per_px; /* memory model of one tile: mem_fixed + bytes_per_px * pixels */
  double mem_fixed;
  /* progress */
  double work_done, work_total;
  int octave, n_octaves, iter, n_iters;
} Dream;

/* "12", "3,40", "8-15,20" -> sorted unique list */
static GArray *parse_channels(const char *s, GError **error)
{
  GArray *a = g_array_new(FALSE, FALSE, sizeof(int));
  g_auto(GStrv) parts = g_strsplit(s, ",", -1);
  for (char **p = parts; *p; p++) {
    char *t = g_strstrip(*p), *end;
    if (!*t) continue;
    long lo = strtol(t, &end, 10), hi = lo;
    if (end != t && *end == '-') {
      char *t2 = end + 1;
      hi = strtol(t2, &end, 10);
      if (end == t2) end = t2 - 1; /* force the error below */
    }
    if (end == t || *end || lo < 0 || hi < lo || hi > 1000000) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Channels: '%s' is not a channel number or range"), t);
      g_array_free(a, TRUE);
      return NULL;
    }
    for (long c = lo; c <= hi; c++) {
      int ci = (int)c;
      g_array_append_val(a, ci);
    }
  }
  if (!a->len) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Channels: no channel given"));
    g_array_free(a, TRUE);
    return NULL;
  }
  return a;
}

/* ---- resampling ------------------------------------------------------------------ */

/* 1-D area (box) weights from n_in samples to n_out: CSR lists. */
typedef struct {
  int *start, *count, *idx;
  float *w;
} Area;

static void area_free(Area *a)
{
  g_free(a->start);
  g_free(a->count);
  g_free(a->idx);
  g_free(a->w);
}

static void area_weights(int n_out, int n_in, Area *a)
{
  double f = (double)n_in / n_out;
  int max_taps = (int)ceil(f) + 2;
  a->start = g_new(int, n_out);
  a->count = g_new(int, n_out);
  a->idx = g_new(int, (size_t)n_out * max_taps);
  a->w = g_new(float, (size_t)n_out * max_taps);
  for (int i = 0; i < n_out; i++) {
    double lo = i * f, hi = (i + 1) * f;
    int j0 = (int)floor(lo), j1 = (int)ceil(hi);
    if (j1 > n_in) j1 = n_in;
    int k = 0;
    a->start[i] = i * max_taps;
    for (int j = j0; j < j1 && k < max_taps; j++) {
      double ov = MIN(hi, j + 1.0) - MAX(lo, (double)j);
      if (ov <= 0) continue;
      a->idx[i * max_taps + k] = j;
      a->w[i * max_taps + k] = (float)(ov / f);
      k++;
    }
    a->count[i] = k;
  }
}

/* dst[C,h,w] = (accumulate ? dst : 0) + alpha * area_resize(src[C,H,W]) */
static void area_resize(const float *src, int C, int H, int W, float *dst, int h, int w, gboolean accumulate,
                        float alpha)
{
  Area ay, ax;
  area_weights(h, H, &ay);
  area_weights(w, W, &ax);
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < C; c++)
    for (int y = 0; y < h; y++) {
      float *d = dst + ((size_t)c * h + y) * w;
      if (!accumulate) memset(d, 0, (size_t)w * sizeof(float));
      for (int t = 0; t < ay.count[y]; t++) {
        const float *s = src + ((size_t)c * H + ay.idx[ay.start[y] + t]) * W;
        float wy = alpha * ay.w[ay.start[y] + t];
        for (int x = 0; x < w; x++) {
          const int *ix = ax.idx + ax.start[x];
          const float *wx = ax.w + ax.start[x];
          float acc = 0;
          for (int u = 0; u < ax.count[x]; u++) acc += wx[u] * s[ix[u]];
          d[x] += wy * acc;
        }
      }
    }
  area_free(&ay);
  area_free(&ax);
}

typedef struct {
  int i0, i1;
  float w1;
} Tap;

/* Same convention as cnnfx_resize_bilinear (half-pixel centres). */
static Tap *bilinear_taps(int out, int in)
{
  Tap *t = g_new(Tap, out);
  double scale = (double)in / out;
  for (int i = 0; i < out; i++) {
    double s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int i0 = (int)s;
    if (i0 > in - 1) i0 = in - 1;
    t[i].i0 = i0;
    t[i].i1 = i0 + 1 < in ? i0 + 1 : in - 1;
    t[i].w1 = (float)(s - i0);
  }
  return t;
}

/* dst[C,H,W] += bilinear upscale of src[C,h,w] (no full-size temporary). */
static void bilinear_add(const float *src, int C, int h, int w, float *dst, int H, int W)
{
  Tap *ty = bilinear_taps(H, h), *tx = bilinear_taps(W, w);
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < C; c++)
    for (int y = 0; y < H; y++) {
      const float *r0 = src + ((size_t)c * h + ty[y].i0) * w, *r1 = src + ((size_t)c * h + ty[y].i1) * w;
      float wy = ty[y].w1;
      float *d = dst + ((size_t)c * H + y) * W;
      for (int x = 0; x < W; x++) {
        float a = r0[tx[x].i0] + (r0[tx[x].i1] - r0[tx[x].i0]) * tx[x].w1;
        float b = r1[tx[x].i0] + (r1[tx[x].i1] - r1[tx[x].i0]) * tx[x].w1;
        d[x] += a + (b - a) * wy;
      }
    }
  g_free(ty);
  g_free(tx);
}

/* ---- one forward + backward on a tile ----------------------------------------------- */

static int mod(int a, int n)
{
  a %= n;
  return a < 0 ? a + n : a;
}

/* grad[c, (y-dy) mod H, (x-dx) mod W] += wy[y-y0] * wx[x-x0] * tg[c, y-y0, x-x0] over [ry0,ry1) x [rx0,rx1) */
static void scatter_add(const float *tg, int th, int tw, int y0, int x0, const float *wy, const float *wx, int ry0,
                        int ry1, int rx0, int rx1, float *grad, int H, int W, int dy, int dx)
{
  int sx0 = mod(rx0 - dx, W);
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < 3; c++)
    for (int y = ry0; y < ry1; y++) {
      const float *s = tg + ((size_t)c * th + (y - y0)) * tw - x0;
      float *d = grad + ((size_t)c * H + mod(y - dy, H)) * W;
      float a = wy[y - y0];
      const float *w = wx - x0;
      int sx = sx0;
      for (int x = rx0; x < rx1; x++) {
        d[sx] += a * w[x] * s[x];
        if (++sx == W) sx = 0;
      }
    }
}

/* Seed gradient for layer l from its activation a [1,C,h,w] (or [C,...]). */
static gboolean layer_seed(const Layer *L, const CnnfxTensor *a, CnnfxTensor *g, GError **error)
{
  size_t P = a->numel / (size_t)L->C;
  const float *x = cnnfx_f32(a);
  float *o = cnnfx_f32(g);
  if (!L->guide) {
    for (int c = 0; c < L->C; c++) {
      float *oc = o + (size_t)c * P;
      const float *xc = x + (size_t)c * P;
      if (!L->mask[c]) {
        memset(oc, 0, P * sizeof(float));
        continue;
      }
      for (size_t i = 0; i < P; i++) oc[i] = L->weight * xc[i];
    }
    return TRUE;
  }
  /* best match per position: A = X^T Y in chunks of positions */
  int N = L->guide_n;
  size_t chunk = MAX((size_t)1, MIN(P, (size_t)(16u << 20) / sizeof(float) / (size_t)N));
  float *A = g_try_malloc(chunk * N * sizeof(float));
  int *best = g_try_malloc(P * sizeof(int));
  if (!A || !best) {
    g_free(A);
    g_free(best);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (dream guide matching)");
    return FALSE;
  }
  for (size_t p0 = 0; p0 < P; p0 += chunk) {
    int m = (int)MIN(chunk, P - p0);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, N, L->C, 1.0f, x + p0, (int)P, L->guide, N, 0.0f, A,
                N);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
      const float *r = A + (size_t)i * N;
      int bj = 0;
      for (int j = 1; j < N; j++)
        if (r[j] > r[bj]) bj = j;
      best[p0 + i] = bj;
    }
  }
#pragma omp parallel for schedule(static)
  for (int c = 0; c < L->C; c++) {
    const float *y = L->guide + (size_t)c * N;
    float *oc = o + (size_t)c * P;
    for (size_t i = 0; i < P; i++) oc[i] = L->weight * y[best[i]];
  }
  g_free(A);
  g_free(best);
  return TRUE;
}

/* grgb [3,th,tw] = dL/d(rgb tile) */
static gboolean tile_grad(Dream *d, CnnfxTensor *rgb, CnnfxTensor *grgb, GError **error)
{
  const CnnfxNet *net = d->net;
  if (!cnnfx_net_forward(net, d->s, rgb, error)) return FALSE;
  CnnfxTensor **seeds = g_new0(CnnfxTensor *, d->n_layers + 1);
  gboolean ok = TRUE;
  for (int l = 0; l < d->n_layers && ok; l++) {
    CnnfxTensor *a = cnnfx_session_get(d->s, d->layers[l].name, error);
    ok = a && (seeds[l] = cnnfx_tensor_new_f32(a->ndim, a->dims, error)) && layer_seed(&d->layers[l], a, seeds[l], error);
  }
  ok = ok && cnnfx_session_backward(d->s, d->n_layers, d->names, seeds, error);
  for (int l = 0; l < d->n_layers; l++)
    if (seeds[l]) cnnfx_tensor_unref(seeds[l]);
  g_free(seeds);
  if (!ok) return FALSE;
  CnnfxTensor *gx = cnnfx_session_grad(d->s, net->input, error);
  return gx && cnnfx_net_grad_to_rgb(net, gx, grgb, error);
}

static void report(Dream *d, double frac_of_step, double step_work, int tile, int n_tiles)
{
  if (!d->run->progress) return;
  char what[96];
  /* TRANSLATORS: Deep Dream progress */
  snprintf(what, sizeof what, _("octave %d/%d, iteration %d/%d, tile %d/%d"), d->octave, d->n_octaves, d->iter, d->n_iters,
           tile, n_tiles);
  d->run->progress(MIN(1.0, (d->work_done + frac_of_step * step_work) / d->work_total), what, d->run->user);
}

/* grad[3,H,W] = dL/dimg for the image rolled by (dy, dx), tile by tile. */
static gboolean image_grad(Dream *d, const float *img, int H, int W, int dy, int dx, float *grad, GError **error)
{
  int T = d->tile, M = d->margin, R = d->margin / 4;
  g_autofree int *by = NULL, *bx = NULL;
  int ny = cnnfx_tiles_split(H, T, M, ALIGN, &by), nx = cnnfx_tiles_split(W, T, M, ALIGN, &bx), n = ny * nx;
  g_autofree float *wy = g_new(float, MIN(T, H)), *wx = g_new(float, MIN(T, W));
  memset(grad, 0, (size_t)3 * H * W * sizeof(float));
  for (int ty = 0; ty < ny; ty++)
    for (int tx = 0; tx < nx; tx++) {
      if (cnnfx_run_cancelled(d->run, error)) return FALSE;
      int y0, y1, x0, x1, ry0, ry1, rx0, rx1;
      cnnfx_tiles_extent(by, ny, ty, M, H, &y0, &y1);
      cnnfx_tiles_extent(bx, nx, tx, M, W, &x0, &x1);
      int th = y1 - y0, tw = x1 - x0;
      int64_t dims[3] = {3, th, tw};
      g_autoptr(CnnfxTensor) rgb = cnnfx_tensor_new_f32(3, dims, error);
      g_autoptr(CnnfxTensor) grgb = rgb ? cnnfx_tensor_new_f32(3, dims, error) : NULL;
      if (!grgb) return FALSE;
      cnnfx_tiles_extract(img, H, W, dy, dx, y0, x0, th, tw, cnnfx_f32(rgb));
      if (!tile_grad(d, rgb, grgb, error)) return FALSE;
      cnnfx_tiles_weights(by, ny, ty, R, y0, y1, wy, &ry0, &ry1);
      cnnfx_tiles_weights(bx, nx, tx, R, x0, x1, wx, &rx0, &rx1);
      scatter_add(cnnfx_f32(grgb), th, tw, y0, x0, wy, wx, ry0, ry1, rx0, rx1, grad, H, W, dy, dx);
      report(d, (double)(ty * nx + tx + 1) / n, (double)H * W, ty * nx + tx + 1, n);
    }
  return TRUE;
}

static void set_tile(Dream *d, int T)
{
  d->tile = MAX(MIN_TILE, T / ALIGN * ALIGN);
  d->margin = d->tile >= 320 ? 64 : 32;
}

/* One gradient-ascent step on img [3,H,W]; shrinks the tile and retries when memory runs out. */
static gboolean dream_step(Dream *d, GRand *rng, int jitter, double step, gboolean clip, float *img, float *grad,
                           int H, int W, GError **error)
{
  int dy = jitter ? g_rand_int_range(rng, -jitter, jitter + 1) : 0;
  int dx = jitter ? g_rand_int_range(rng, -jitter, jitter + 1) : 0;
  for (;;) {
    GError *e = NULL;
    if (image_grad(d, img, H, W, dy, dx, grad, &e)) break;
    if (!g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_NOMEM) || d->tile <= MIN_TILE) {
      g_propagate_error(error, e);
      return FALSE;
    }
    g_error_free(e);
    set_tile(d, d->tile * 3 / 4);
    g_debug("dream: out of memory, retrying with tile %d", d->tile);
  }
  /* mean |g| over the whole image; per-row sums added in a fixed order (reproducible) */
  size_t rows = (size_t)3 * H, n = rows * W;
  double *rs = g_try_malloc(rows * sizeof(double));
  if (!rs) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (dream)");
    return FALSE;
  }
#pragma omp parallel for schedule(static)
  for (size_t r = 0; r < rows; r++) {
    const float *g = grad + r * W;
    double s = 0;
    for (int x = 0; x < W; x++) s += fabsf(g[x]);
    rs[r] = s;
  }
  double sum = 0;
  for (size_t r = 0; r < rows; r++) sum += rs[r];
  g_free(rs);
  double mean = sum / (double)n;
  if (!(mean > 0) || !isfinite(mean)) return TRUE; /* the layer does not depend on the image here */
  float a = (float)(step / 255.0 / mean);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) {
    float v = img[i] + a * grad[i];
    img[i] = clip ? (v < 0 ? 0 : v > 1 ? 1 : v) : v;
  }
  return TRUE;
}

/* ---- setup: probe (layer shapes, memory per pixel) and guide features ---------------- */

/* One forward + backward of 0.5*||a||^2 on a ph x pw crop (memory and shape probe). */
static gboolean probe_run(Dream *d, const CnnfxTensor *image, int ph, int pw, GError **error)
{
  int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  int64_t dims[3] = {3, ph, pw};
  g_autoptr(CnnfxTensor) rgb = cnnfx_tensor_new_f32(3, dims, error);
  g_autoptr(CnnfxTensor) grgb = rgb ? cnnfx_tensor_new_f32(3, dims, error) : NULL;
  if (!grgb) return FALSE;
  cnnfx_tiles_extract(cnnfx_f32(image), H, W, 0, 0, 0, 0, ph, pw, cnnfx_f32(rgb));
  if (!cnnfx_net_forward(d->net, d->s, rgb, error)) return FALSE;
  CnnfxTensor **seeds = g_new0(CnnfxTensor *, d->n_layers + 1);
  gboolean ok = TRUE;
  for (int l = 0; l < d->n_layers && ok; l++) {
    CnnfxTensor *a = cnnfx_session_get(d->s, d->layers[l].name, error);
    if (a && (a->dtype != CNNFX_F32 || a->ndim < 2 || a->numel == 0)) {
      g_autofree char *sh = cnnfx_shape_string(a);
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "dream: layer '%s' (%s) is not a float feature map",
                  d->layers[l].name, sh);
      a = NULL;
    }
    ok = a && (seeds[l] = cnnfx_tensor_new_f32(a->ndim, a->dims, error));
    if (ok) memcpy(cnnfx_f32(seeds[l]), cnnfx_f32(a), a->numel * sizeof(float));
  }
  ok = ok && cnnfx_session_backward(d->s, d->n_layers, d->names, seeds, error);
  for (int l = 0; l < d->n_layers; l++)
    if (seeds[l]) cnnfx_tensor_unref(seeds[l]);
  g_free(seeds);
  CnnfxTensor *gx = ok ? cnnfx_session_grad(d->s, d->net->input, error) : NULL;
  return gx && cnnfx_net_grad_to_rgb(d->net, gx, grgb, error);
}

/* Layer shapes and channel masks, and the memory model of one tile: session peak = fixed + per_px * pixels,
 * fitted on two crop sizes (the session's peak only grows, so the second run's peak is its own). */
static gboolean probe(Dream *d, const CnnfxTensor *image, const GArray *chans, GError **error)
{
  int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  int h1 = MIN(H, 64), w1 = MIN(W, 64), h2 = MIN(H, 128), w2 = MIN(W, 128);
  if (!probe_run(d, image, h1, w1, error)) return FALSE;
  double p1 = (double)cnnfx_session_peak_bytes(d->s), n1 = (double)h1 * w1;
  if (!probe_run(d, image, h2, w2, error)) return FALSE;
  double p2 = (double)cnnfx_session_peak_bytes(d->s), n2 = (double)h2 * w2;
  double per_px = n2 > n1 ? (p2 - p1) / (n2 - n1) : p2 / n2;
  if (per_px < 0.25 * p2 / n2) per_px = p2 / n2; /* implausible fit: be conservative */
  d->mem_fixed = MAX(0.0, p2 - per_px * n2);
  size_t seed_bytes = 0;
  for (int l = 0; l < d->n_layers; l++) {
    Layer *L = &d->layers[l];
    CnnfxTensor *a = cnnfx_session_get(d->s, L->name, error);
    if (!a) return FALSE;
    L->C = (int)(a->ndim >= 3 ? a->dims[a->ndim - 3] : a->dims[1]); /* [1,C,h,w], [C,h,w]; [N,C] vectors */
    L->per_px = (double)a->numel / n2;
    L->weight = (float)(1.0 / L->per_px);
    seed_bytes += a->numel * sizeof(float);
    L->mask = g_new0(gboolean, L->C);
    for (int c = 0; c < L->C; c++) L->mask[c] = chans == NULL;
    for (guint i = 0; chans && i < chans->len; i++) {
      int c = g_array_index(chans, int, i);
      if (c >= L->C) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("Channels: channel %d: layer '%s' has %d channels (0..%d)"), c,
                    L->name, L->C, L->C - 1);
        return FALSE;
      }
      L->mask[c] = TRUE;
    }
  }
  /* + our tile buffers: rgb tile, network input, rgb gradient (3 floats each), seeds */
  d->bytes_per_px = per_px + (double)seed_bytes / n2 + 3 * 3 * 4;
  return TRUE;
}

static gboolean guide_features(Dream *d, const CnnfxTensor *guide, GError **error)
{
  if (guide->dtype != CNNFX_F32 || guide->ndim < 3 || guide->dims[guide->ndim - 3] != 3) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "dream: the guide must be an RGB image [3,H,W]");
    return FALSE;
  }
  int gh = (int)guide->dims[guide->ndim - 2], gw = (int)guide->dims[guide->ndim - 1];
  double sc = MIN(1.0, (double)GUIDE_MAX / MAX(gh, gw));
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_NONE, .targets = d->names, .mem_limit = d->run->max_memory,
                           .cancel = d->run->cancel};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(d->net->model, d->run->backend, &o, error);
  if (!s) return FALSE;
  for (;;) {
    int h = MAX(MIN_SIDE, (int)lround(gh * sc)), w = MAX(MIN_SIDE, (int)lround(gw * sc));
    g_autoptr(CnnfxTensor) rs = cnnfx_tensor_resized(guide, h, w, error);
    if (!rs) return FALSE;
    g_autoptr(CnnfxTensor) x = cnnfx_net_preprocess(d->net, rs, error);
    GError *e = NULL;
    if (x && cnnfx_session_set_input(s, d->net->input, x, &e) && cnnfx_session_forward(s, &e)) break;
    if (!x) return FALSE;
    if (!g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_NOMEM) || MAX(h, w) <= MIN_TILE) {
      g_propagate_prefixed_error(error, e, "dream guide: ");
      return FALSE;
    }
    g_error_free(e);
    sc *= 0.75;
  }
  for (int l = 0; l < d->n_layers; l++) {
    Layer *L = &d->layers[l];
    CnnfxTensor *a = cnnfx_session_get(s, L->name, error);
    if (!a) return FALSE;
    L->guide_n = (int)(a->numel / (size_t)L->C);
    L->guide = g_try_malloc(a->numel * sizeof(float));
    if (!L->guide || L->guide_n < 1) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (dream guide features)");
      return FALSE;
    }
    const float *y = cnnfx_f32(a);
    for (int c = 0; c < L->C; c++)
      for (int j = 0; j < L->guide_n; j++)
        L->guide[(size_t)c * L->guide_n + j] = L->mask[c] ? y[(size_t)c * L->guide_n + j] : 0.f;
  }
  return TRUE;
}

static void dream_clear(Dream *d)
{
  for (int l = 0; l < d->n_layers; l++) {
    g_free(d->layers[l].name);
    g_free(d->layers[l].mask);
    g_free(d->layers[l].guide);
  }
  g_free(d->layers);
  g_free(d->names);
  if (d->s) cnnfx_session_free(d->s);
}

/* ---- the filter ----------------------------------------------------------------------- */

static gboolean dream_run(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                          const CnnfxTensor *guide, GError **error)
{
  g_return_val_if_fail(net && p && run && image, FALSE);
  if (image->dtype != CNNFX_F32 || !(image->ndim == 3 || (image->ndim == 4 && image->dims[0] == 1)) ||
      image->dims[image->ndim - 3] != 3) {
    g_autofree char *sh = cnnfx_shape_string(image);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "dream needs an RGB image [3,H,W], got %s", sh);
    return FALSE;
  }
  const int H = (int)image->dims[image->ndim - 2], W = (int)image->dims[image->ndim - 1];
  if (H < MIN_IMAGE || W < MIN_IMAGE) { /* smaller images run at one octave if the network takes them */
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "dream: image %dx%d is too small (at least %d px a side)", W,
                H, MIN_IMAGE);
    return FALSE;
  }
  const int octaves = cnnfx_params_int(p, "octaves"), iters = cnnfx_params_int(p, "iterations");
  const int jitter = cnnfx_params_int(p, "jitter");
  const double oscale = cnnfx_params_double(p, "octave-scale"), step = cnnfx_params_double(p, "step");
  const gboolean clip = cnnfx_params_bool(p, "clip");

  Dream d = {.net = net, .run = run};
  gboolean ok = FALSE;
  GRand *rng = NULL;
  float *grad = NULL, *src = NULL, *detail = NULL;
  g_autoptr(GArray) chans = NULL;
  const char *chs = cnnfx_params_string(p, "channel");
  if (chs && *chs && !(chans = parse_channels(chs, error))) return FALSE;

  /* layers */
  const char *const *want = cnnfx_params_strings(p, "layer");
  if (!want || !*want) want = (const char *const *)net->dream_layers;
  if (!want || !*want) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                _("Layers: model %s has no default dream layer; choose one of its layers"),
                net->name ? net->name : "");
    return FALSE;
  }
  d.n_layers = (int)g_strv_length((char **)want);
  d.layers = g_new0(Layer, d.n_layers);
  d.names = g_new0(const char *, d.n_layers + 1);
  for (int l = 0; l < d.n_layers; l++) {
    if (!(d.layers[l].name = cnnfx_net_resolve_layer(net, want[l], error))) goto out;
    d.names[l] = d.layers[l].name;
  }
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = d.names, .mem_limit = run->max_memory,
                           .cancel = run->cancel};
  if (!(d.s = cnnfx_session_new(net->model, run->backend, &o, error))) goto out;
  if (!probe(&d, image, chans, error)) {
    if (error && *error && (*error)->domain == CNNFX_ERROR && (*error)->code == CNNFX_ERROR_SHAPE &&
        !(net->pre.fixed_h && net->pre.fixed_w))
      g_prefix_error(error, "dream: model %s cannot run at any image size up to layer %s (it needs the input size "
                     "it was exported with, e.g. fully connected layers after a Flatten): choose an earlier "
                     "convolutional layer with --layer, or give --input-size H,W (input_size= in its .ini) to dream "
                     "at that fixed size.  Details: ", net->name ? net->name : "", d.names[d.n_layers - 1]);
    else if (error && *error && (*error)->domain == CNNFX_ERROR && (*error)->code != CNNFX_ERROR_ARG)
      g_prefix_error(error, "dream (trying the model on a 128 px crop): ");
    goto out;
  }

  /* tile size: the parameter, or smaller when the estimate says it would not fit */
  int T = cnnfx_params_int(p, "tile");
  if (run->max_memory) {
    double fit = sqrt(MAX(0.0, 0.9 * (double)run->max_memory - d.mem_fixed) / d.bytes_per_px);
    if (fit < MIN_TILE) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM,
                  _("Memory bound (MiB): %zu MiB is too small for this model and layer (a %d px tile needs "
                    "about %.0f MiB)"),
                  run->max_memory >> 20, MIN_TILE,
                  (d.mem_fixed + d.bytes_per_px * MIN_TILE * MIN_TILE) / 1048576.0 / 0.9);
      goto out;
    }
    T = MIN(T, (int)fit);
  }
  set_tile(&d, T);
  g_debug("dream: tile memory %.1f MiB + %.0f bytes/px (probe), tile %d, margin %d, limit %zu MiB",
          d.mem_fixed / 1048576.0, d.bytes_per_px, d.tile, d.margin, run->max_memory >> 20);
  if (guide && !guide_features(&d, guide, error)) goto out;

  /* octave sizes (octave 0 = the image) */
  int K = 1;
  while (K < octaves && MIN(H, W) / pow(oscale, K) >= MIN_SIDE) K++;
  int *oh = g_newa(int, K), *ow = g_newa(int, K);
  d.work_total = 0;
  for (int k = 0; k < K; k++) {
    double f = pow(oscale, k);
    oh[k] = MAX(1, (int)lround(H / f));
    ow[k] = MAX(1, (int)lround(W / f));
    d.work_total += (double)iters * oh[k] * ow[k];
  }
  d.n_octaves = K;
  d.n_iters = iters;
  guint32 sd[2] = {(guint32)(run->seed & 0xffffffffu), (guint32)(run->seed >> 32)};
  rng = g_rand_new_with_seed_array(sd, 2);

  float *img = cnnfx_f32(image);
  for (int k = K - 1; k >= 0; k--) {
    int h = oh[k], w = ow[k];
    size_t n = (size_t)3 * h * w;
    float *x;
    if (k > 0) {
      if (!(src = g_try_malloc(n * sizeof(float)))) goto nomem;
      area_resize(img, 3, H, W, src, h, w, FALSE, 1.0f); /* the octave's base */
      x = src;
    } else {
      x = img;
    }
    if (detail) {
      bilinear_add(detail, 3, oh[k + 1], ow[k + 1], x, h, w);
      g_free(detail);
      detail = NULL;
      if (clip) cnnfx_clamp(x, n, 0.f, 1.f);
    }
    if (!(grad = g_try_malloc(n * sizeof(float)))) goto nomem;
    d.octave = K - k;
    for (int i = 0; i < iters; i++) {
      d.iter = i + 1;
      if (!dream_step(&d, rng, jitter, step, clip, x, grad, h, w, error)) goto out;
      d.work_done += (double)h * w;
    }
    g_free(grad);
    grad = NULL;
    if (k > 0) {
      area_resize(img, 3, H, W, src, h, w, TRUE, -1.0f); /* detail = src - base */
      detail = src;
      src = NULL;
    }
  }
  g_debug("dream: session peak %.1f MiB, final tile %d", cnnfx_session_peak_bytes(d.s) / 1048576.0, d.tile);
  if (run->progress) run->progress(1.0, _("done"), run->user);
  ok = TRUE;
  goto out;
nomem:
  g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (dream, %dx%d image)", W, H);
out:
  if (rng) g_rand_free(rng);
  g_free(grad);
  g_free(src);
  g_free(detail);
  dream_clear(&d);
  return ok;
}

gboolean cnnfx_dream(const CnnfxNet *net, const CnnfxParams *p, const CnnfxRun *run, CnnfxTensor *image,
                     const CnnfxTensor *guide, GError **error)
{
  CnnfxRun local;
  g_autoptr(CnnfxBackend) own = NULL;
  const CnnfxRun *r = cnnfx_run_resolve(run, &local, &own, error); /* no backend: the CPU */
  return r && dream_run(net, p, r, image, guide, error);
}
