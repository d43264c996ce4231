/* Pixel helpers of the GIMP plug-in that do not depend on libgimp: RGBA <-> tensor,
 * heat-map colouring, a transparent labels overlay and the built-in style pattern. */
#include "plugin-pixels.h"
#include <math.h>
#include <string.h>

CnnfxTensor *px_rgba_to_tensor(const float *rgba, int w, int h, GError **error)
{
  int64_t d[3] = {3, h, w};
  CnnfxTensor *t = cnnfx_tensor_new_f32(3, d, error);
  if (!t) return NULL;
  size_t hw = (size_t)w * h;
  float *o = cnnfx_f32(t);
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < 3; k++) o[k * hw + i] = CLAMP(rgba[i * 4 + k], 0.f, 1.f);
  return t;
}

void px_tensor_to_rgba(const CnnfxTensor *t, float *rgba, int w, int h)
{
  size_t hw = (size_t)w * h;
  const float *s = cnnfx_f32(t);
  for (size_t i = 0; i < hw; i++)
    for (int k = 0; k < 3; k++) rgba[i * 4 + k] = CLAMP(s[k * hw + i], 0.f, 1.f);
}

void px_colormap(const char *name, float v, float rgb[3])
{
  v = CLAMP(v, 0.f, 1.f);
  if (!g_strcmp0(name, "gray")) {
    rgb[0] = rgb[1] = rgb[2] = v;
  } else if (!g_strcmp0(name, "inferno") || !g_strcmp0(name, "viridis")) {
    /* the same 5-point approximations of matplotlib's maps as the CLI's heat maps */
    static const float inferno[5][3] = {{0, 0, 0.016f}, {0.341f, 0.063f, 0.431f}, {0.735f, 0.216f, 0.330f},
                                        {0.976f, 0.557f, 0.035f}, {0.988f, 1.0f, 0.643f}};
    static const float viridis[5][3] = {{0.267f, 0.005f, 0.329f}, {0.230f, 0.322f, 0.546f}, {0.128f, 0.567f, 0.551f},
                                        {0.369f, 0.789f, 0.383f}, {0.993f, 0.906f, 0.144f}};
    const float(*m)[3] = name[0] == 'i' ? inferno : viridis;
    float s = v * 4;
    int i = MIN((int)s, 3);
    float f = s - i;
    for (int c = 0; c < 3; c++) rgb[c] = m[i][c] + (m[i + 1][c] - m[i][c]) * f;
  } else { /* jet */
    rgb[0] = CLAMP(1.5f - fabsf(4 * v - 3), 0.f, 1.f);
    rgb[1] = CLAMP(1.5f - fabsf(4 * v - 2), 0.f, 1.f);
    rgb[2] = CLAMP(1.5f - fabsf(4 * v - 1), 0.f, 1.f);
  }
}

float *px_heatmap_rgba(const CnnfxTensor *map, const char *cmap, int w, int h)
{
  float *o = g_try_malloc((size_t)w * h * 4 * sizeof(float));
  if (!o) return NULL;
  int mh = (int)map->dims[map->ndim - 2], mw = (int)map->dims[map->ndim - 1];
  const float *m = cnnfx_f32(map);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float sy = (y + 0.5f) * mh / h - 0.5f, sx = (x + 0.5f) * mw / w - 0.5f;
      sy = CLAMP(sy, 0.f, mh - 1.f);
      sx = CLAMP(sx, 0.f, mw - 1.f);
      int y0 = (int)sy, x0 = (int)sx, y1 = MIN(y0 + 1, mh - 1), x1 = MIN(x0 + 1, mw - 1);
      float fy = sy - y0, fx = sx - x0;
      float v = (m[y0 * mw + x0] * (1 - fx) + m[y0 * mw + x1] * fx) * (1 - fy) +
                (m[y1 * mw + x0] * (1 - fx) + m[y1 * mw + x1] * fx) * fy;
      float *p = o + ((size_t)y * w + x) * 4;
      px_colormap(cmap, v, p);
      p[3] = 1;
    }
  return o;
}

float *px_labels_rgba(const CnnfxScore *top, int k, int w, int h, GError **error)
{
  /* cli_draw_labels blends onto an image; on a transparent one the result is the label box
   * with colour premultiplied by its alpha, undone here. */
  g_autoptr(CnnfxImage) blank = cnnfx_image_new(w, h, 4, 8, error);
  if (!blank) return NULL;
  memset(blank->px, 0, sizeof(float) * (size_t)w * h * 4);
  g_autoptr(CnnfxImage) li = cli_draw_labels(blank, top, k, error);
  if (!li) return NULL;
  float *o = g_steal_pointer(&li->px);
  for (size_t i = 0; i < (size_t)w * h; i++) {
    float a = o[i * 4 + 3];
    for (int c = 0; c < 3; c++) o[i * 4 + c] = a > 0 ? CLAMP(o[i * 4 + c] / a, 0.f, 1.f) : 0;
  }
  return o;
}

CnnfxTensor *px_builtin_style(int size, GError **error)
{
  int64_t d[3] = {3, size, size};
  CnnfxTensor *t = cnnfx_tensor_new_f32(3, d, error);
  if (!t) return NULL;
  float *o = cnnfx_f32(t);
  size_t hw = (size_t)size * size;
  /* bold swirling colour bands: strong, multi-scale texture for the Gram matrices */
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++) {
      double u = (double)x / size, v = (double)y / size;
      double a = 18 * u + 4 * sin(9 * v) + 2 * sin(23 * u * v);
      double b = 14 * v + 3 * sin(7 * u + 1);
      size_t i = (size_t)y * size + x;
      o[i] = (float)(0.5 + 0.5 * sin(a));
      o[hw + i] = (float)(0.5 + 0.5 * sin(b + 2 * sin(a)));
      o[2 * hw + i] = (float)(0.5 + 0.5 * cos(a - b));
    }
  return t;
}
