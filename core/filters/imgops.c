/* Small image operations shared by the filters. */
#include "imgops.h"
#include <math.h>
#include <string.h>

/* Separable resampling with a triangle (tent) filter: bilinear when enlarging, and when
 * shrinking by a factor s the tent widens to s so every input pixel contributes (antialiased,
 * like PIL's BILINEAR).  Half-pixel centres, weights renormalised at the borders. */
typedef struct {
  int *start, *count; /* per output index */
  float *w;           /* count[i] weights from w[i * maxn] */
  int maxn;
} Taps;

static gboolean taps_make(int out, int in, Taps *t)
{
  double scale = (double)in / out, support = scale > 1 ? scale : 1.0;
  t->maxn = (int)ceil(support) * 2 + 1;
  t->start = g_try_new(int, out);
  t->count = g_try_new(int, out);
  t->w = g_try_new(float, (size_t)out * t->maxn);
  if (!t->start || !t->count || !t->w) return FALSE;
  for (int i = 0; i < out; i++) {
    double c = (i + 0.5) * scale;
    int lo = MAX(0, (int)floor(c - support)), hi = MIN(in, (int)ceil(c + support));
    double sum = 0;
    int n = 0;
    float *w = t->w + (size_t)i * t->maxn;
    for (int j = lo; j < hi && n < t->maxn; j++) {
      double x = fabs((j + 0.5 - c) / support);
      double v = x < 1 ? 1 - x : 0;
      w[n++] = (float)v;
      sum += v;
    }
    if (sum <= 0) { /* degenerate: nearest */
      lo = MIN(in - 1, MAX(0, (int)c));
      n = 1;
      w[0] = 1;
      sum = 1;
    }
    for (int k = 0; k < n; k++) w[k] = (float)(w[k] / sum);
    t->start[i] = lo;
    t->count[i] = n;
  }
  return TRUE;
}

static void taps_free(Taps *t)
{
  g_free(t->start);
  g_free(t->count);
  g_free(t->w);
}

/* dst[C,h,w] = Ry src Rx^T (rows then columns), adjoint = transpose. */
static gboolean resample(const float *src, int C, int H, int W, float *dst, int h, int w, gboolean adjoint)
{
  Taps ty = {0}, tx = {0};
  float *mid = NULL;
  gboolean ok = FALSE;
  if (!taps_make(h, H, &ty) || !taps_make(w, W, &tx)) goto out;
  if (!adjoint) {
    /* columns: [C,H,W] -> [C,H,w]; rows: [C,H,w] -> [C,h,w] */
    mid = g_try_new(float, (size_t)C * H * w);
    if (!mid) goto out;
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < H; y++) {
        const float *s = src + ((size_t)c * H + y) * W;
        float *d = mid + ((size_t)c * H + y) * w;
        for (int x = 0; x < w; x++) {
          const float *wt = tx.w + (size_t)x * tx.maxn;
          float a = 0;
          for (int k = 0; k < tx.count[x]; k++) a += wt[k] * s[tx.start[x] + k];
          d[x] = a;
        }
      }
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < h; y++) {
        float *d = dst + ((size_t)c * h + y) * w;
        const float *wt = ty.w + (size_t)y * ty.maxn;
        for (int x = 0; x < w; x++) d[x] = 0;
        for (int k = 0; k < ty.count[y]; k++) {
          const float *s = mid + ((size_t)c * H + ty.start[y] + k) * w;
          for (int x = 0; x < w; x++) d[x] += wt[k] * s[x];
        }
      }
  } else {
    /* src is the gradient [C,h,w] of the small image; dst [C,H,W] accumulates. */
    mid = g_try_new0(float, (size_t)C * H * w);
    if (!mid) goto out;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < h; y++) {
        const float *g = src + ((size_t)c * h + y) * w;
        const float *wt = ty.w + (size_t)y * ty.maxn;
        for (int k = 0; k < ty.count[y]; k++) {
          float *d = mid + ((size_t)c * H + ty.start[y] + k) * w;
          for (int x = 0; x < w; x++) d[x] += wt[k] * g[x];
        }
      }
#pragma omp parallel for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
      for (int y = 0; y < H; y++) {
        const float *g = mid + ((size_t)c * H + y) * w;
        float *d = dst + ((size_t)c * H + y) * W;
        for (int x = 0; x < w; x++) {
          const float *wt = tx.w + (size_t)x * tx.maxn;
          for (int k = 0; k < tx.count[x]; k++) d[tx.start[x] + k] += wt[k] * g[x];
        }
      }
  }
  ok = TRUE;
out:
  g_free(mid);
  taps_free(&ty);
  taps_free(&tx);
  return ok;
}

gboolean cnnfx_resize_bilinear(const float *src, int C, int H, int W, float *dst, int h, int w)
{
  return resample(src, C, H, W, dst, h, w, FALSE);
}

gboolean cnnfx_resize_bilinear_adjoint(const float *gdst, int C, int h, int w, float *gsrc, int H, int W)
{
  return resample(gdst, C, H, W, gsrc, h, w, TRUE);
}

CnnfxTensor *cnnfx_tensor_resized(const CnnfxTensor *t, int h, int w, GError **error)
{
  int C = (int)t->dims[t->ndim - 3], H = (int)t->dims[t->ndim - 2], W = (int)t->dims[t->ndim - 1];
  int64_t d[3] = {C, h, w};
  CnnfxTensor *r = cnnfx_tensor_new_f32(3, d, error);
  if (r && !cnnfx_resize_bilinear(cnnfx_f32(t), C, H, W, cnnfx_f32(r), h, w)) {
    cnnfx_tensor_unref(r);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory resizing an image");
    return NULL;
  }
  return r;
}

void cnnfx_roll(float *x, int C, int H, int W, int dy, int dx, float *scratch)
{
  dy = ((dy % H) + H) % H;
  dx = ((dx % W) + W) % W;
  if (!dy && !dx) return;
  for (int c = 0; c < C; c++) {
    float *p = x + (size_t)c * H * W;
    memcpy(scratch, p, (size_t)H * W * sizeof(float));
    for (int y = 0; y < H; y++) {
      const float *s = scratch + (size_t)y * W;
      float *d = p + (size_t)((y + dy) % H) * W;
      memcpy(d + dx, s, (size_t)(W - dx) * sizeof(float));
      memcpy(d, s + (W - dx), (size_t)dx * sizeof(float));
    }
  }
}

gboolean cnnfx_blur(float *x, int C, int H, int W, double sigma, GError **error)
{
  if (sigma <= 0) return TRUE;
  int r = (int)ceil(3 * sigma);
  float *k = g_new(float, 2 * r + 1);
  double s = 0;
  for (int i = -r; i <= r; i++) s += k[i + r] = (float)exp(-0.5 * i * i / (sigma * sigma));
  for (int i = 0; i <= 2 * r; i++) k[i] /= (float)s;
  float *tmp = g_try_malloc((size_t)H * W * sizeof(float) * 1);
  if (!tmp) {
    g_free(k);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory (blur)");
    return FALSE;
  }
  for (int c = 0; c < C; c++) {
    float *p = x + (size_t)c * H * W;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++) {
        float a = 0;
        for (int i = -r; i <= r; i++) a += k[i + r] * p[(size_t)y * W + CLAMP(xx + i, 0, W - 1)];
        tmp[(size_t)y * W + xx] = a;
      }
#pragma omp parallel for schedule(static)
    for (int y = 0; y < H; y++)
      for (int xx = 0; xx < W; xx++) {
        float a = 0;
        for (int i = -r; i <= r; i++) a += k[i + r] * tmp[(size_t)CLAMP(y + i, 0, H - 1) * W + xx];
        p[(size_t)y * W + xx] = a;
      }
  }
  g_free(tmp);
  g_free(k);
  return TRUE;
}

void cnnfx_clamp(float *x, size_t n, float lo, float hi)
{
#pragma omp parallel for if (n > 65536) schedule(static)
  for (size_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
}
