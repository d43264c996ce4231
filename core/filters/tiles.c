/* Tiling helpers, see tiles.h. */
#include "tiles.h"
#include <string.h>

int cnnfx_tiles_split(int n, int T, int margin, int align, int **b)
{
  if (n <= T) {
    *b = g_new(int, 2);
    (*b)[0] = 0;
    (*b)[1] = n;
    return 1;
  }
  int nb = (n + align - 1) / align, cb = MAX(1, (T - 2 * margin) / align);
  int k = (nb + cb - 1) / cb;
  *b = g_new(int, k + 1);
  for (int i = 0; i <= k; i++) (*b)[i] = MIN(n, (int)((gint64)i * nb / k) * align);
  (*b)[k] = n;
  return k;
}

void cnnfx_tiles_extent(const int *b, int k, int i, int margin, int n, int *e0, int *e1)
{
  *e0 = k > 1 ? MAX(0, b[i] - margin) : 0;
  *e1 = k > 1 ? MIN(n, b[i + 1] + margin) : n;
}

/* Half-width of the linear blend across boundary i (1..k-1) between cores i-1 and i. */
static int blend_radius(const int *b, int i, int R)
{
  return MIN(R, MIN((b[i] - b[i - 1]) / 2, (b[i + 1] - b[i]) / 2));
}

void cnnfx_tiles_weights(const int *b, int k, int i, int R, int e0, int e1, float *w, int *r0, int *r1)
{
  int rl = i > 0 ? blend_radius(b, i, R) : 0, rr = i < k - 1 ? blend_radius(b, i + 1, R) : 0;
  *r0 = b[i] - rl;
  *r1 = b[i + 1] + rr;
  for (int y = e0; y < e1; y++) {
    float v = 1;
    if (y < b[i] - rl || y >= b[i + 1] + rr) v = 0;
    else if (rl && y < b[i] + rl) v = (y - (b[i] - rl) + 0.5f) / (2.f * rl);
    else if (rr && y >= b[i + 1] - rr) v = 1 - (y - (b[i + 1] - rr) + 0.5f) / (2.f * rr);
    w[y - e0] = v;
  }
}

static int mod(int a, int n)
{
  a %= n;
  return a < 0 ? a + n : a;
}

void cnnfx_tiles_extract(const float *img, int H, int W, int dy, int dx, int y0, int x0, int th, int tw, float *tile)
{
  int sx0 = mod(x0 - dx, W), first = MIN(tw, W - sx0);
#pragma omp parallel for collapse(2) schedule(static)
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < th; i++) {
      const float *s = img + ((size_t)c * H + mod(y0 + i - dy, H)) * W;
      float *d = tile + ((size_t)c * th + i) * tw;
      memcpy(d, s + sx0, (size_t)first * sizeof(float));
      if (tw > first) memcpy(d + first, s, (size_t)(tw - first) * sizeof(float));
    }
}
