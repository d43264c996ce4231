/* Pixel helpers of the GIMP plug-in that do not depend on libgimp: RGBA <-> tensor,
 * heat-map colouring, a transparent labels overlay and the built-in style pattern. */
#include "plugin-pixels.h"
#include "render.h"
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
  cnnfx_tensor_to_pixels(t, rgba, w, h, 4); /* alpha untouched */
}

float *px_heatmap_rgba(const CnnfxTensor *map, const char *cmap, int w, int h)
{
  /* the CLI's heat map (core/filters/render.c) at opacity 1 over an opaque image: the bare map */
  size_t n = (size_t)w * h;
  float *o = g_try_malloc0(n * 4 * sizeof(float));
  if (!o) return NULL;
  for (size_t i = 0; i < n; i++) o[i * 4 + 3] = 1;
  if (!cnnfx_render_heatmap(o, w, h, 4, map, cmap, 1.0, o, NULL)) {
    g_free(o);
    return NULL;
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
