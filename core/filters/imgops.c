/* Small image operations shared by the filters. */
#include "imgops.h"
#include <math.h>
#include <string.h>

typedef struct {
  int i0, i1;
  float w1;
} Tap;

static void taps(int out, int in, Tap *t)
{
  double scale = (double)in / out;
  for (int i = 0; i < out; i++) {
    double s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int i0 = (int)s;
    if (i0 > in - 1) i0 = in - 1;
    int i1 = i0 + 1 < in ? i0 + 1 : in - 1;
    t[i].i0 = i0;
    t[i].i1 = i1;
    t[i].w1 = (float)(s - i0);
  }
}

void cnnfx_resize_bilinear(const float *src, int C, int H, int W, float *dst, int h, int w)
{
  Tap *ty = g_new(Tap, h), *tx = g_new(Tap, w);
  taps(h, H, ty);
  taps(w, W, tx);
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < C; c++)
    for (int y = 0; y < h; y++) {
      const float *r0 = src + ((size_t)c * H + ty[y].i0) * W, *r1 = src + ((size_t)c * H + ty[y].i1) * W;
      float wy = ty[y].w1;
      float *d = dst + ((size_t)c * h + y) * w;
      for (int x = 0; x < w; x++) {
        float a = r0[tx[x].i0] + (r0[tx[x].i1] - r0[tx[x].i0]) * tx[x].w1;
        float b = r1[tx[x].i0] + (r1[tx[x].i1] - r1[tx[x].i0]) * tx[x].w1;
        d[x] = a + (b - a) * wy;
      }
    }
  g_free(ty);
  g_free(tx);
}

void cnnfx_resize_bilinear_adjoint(const float *gdst, int C, int h, int w, float *gsrc, int H, int W)
{
  Tap *ty = g_new(Tap, h), *tx = g_new(Tap, w);
  taps(h, H, ty);
  taps(w, W, tx);
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    for (int y = 0; y < h; y++) {
      float *r0 = gsrc + ((size_t)c * H + ty[y].i0) * W, *r1 = gsrc + ((size_t)c * H + ty[y].i1) * W;
      float wy = ty[y].w1;
      const float *g = gdst + ((size_t)c * h + y) * w;
      for (int x = 0; x < w; x++) {
        float gx0 = g[x] * (1 - tx[x].w1), gx1 = g[x] * tx[x].w1;
        r0[tx[x].i0] += gx0 * (1 - wy);
        r0[tx[x].i1] += gx1 * (1 - wy);
        r1[tx[x].i0] += gx0 * wy;
        r1[tx[x].i1] += gx1 * wy;
      }
    }
  g_free(ty);
  g_free(tx);
}

CnnfxTensor *cnnfx_tensor_resized(const CnnfxTensor *t, int h, int w, GError **error)
{
  int C = (int)t->dims[t->ndim - 3], H = (int)t->dims[t->ndim - 2], W = (int)t->dims[t->ndim - 1];
  int64_t d[3] = {C, h, w};
  CnnfxTensor *r = cnnfx_tensor_new_f32(3, d, error);
  if (r) cnnfx_resize_bilinear(cnnfx_f32(t), C, H, W, cnnfx_f32(r), h, w);
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
