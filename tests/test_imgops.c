/* Filters' image operations: the resize's adjoint is exact (<Rx, g> == <x, R^T g>), a constant
 * image stays constant at every scale, shrinking is antialiased (a fine checkerboard averages
 * to grey instead of aliasing), roll is a permutation, blur keeps the mean. */
#include "imgops.h"
#include <math.h>
#include <stdio.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

int main(void)
{
  int C = 2, H = 37, W = 53;
  int sizes[][2] = {{9, 11}, {37, 53}, {80, 120}, {20, 100}, {1, 1}};
  GRand *r = g_rand_new_with_seed(1);
  for (int t = 0; t < 5; t++) {
    int h = sizes[t][0], w = sizes[t][1];
    float *x = g_new(float, C * H * W), *y = g_new(float, C * h * w), *gy = g_new(float, C * h * w),
          *gx = g_new0(float, C * H * W);
    for (int i = 0; i < C * H * W; i++) x[i] = (float)g_rand_double(r);
    for (int i = 0; i < C * h * w; i++) gy[i] = (float)g_rand_double(r);
    cnnfx_resize_bilinear(x, C, H, W, y, h, w);
    cnnfx_resize_bilinear_adjoint(gy, C, h, w, gx, H, W);
    double a = 0, b = 0;
    for (int i = 0; i < C * h * w; i++) a += (double)y[i] * gy[i];
    for (int i = 0; i < C * H * W; i++) b += (double)x[i] * gx[i];
    CHECK(fabs(a - b) <= 1e-5 * fabs(a), "adjoint %dx%d: %.8g vs %.8g", h, w, a, b);
    for (int i = 0; i < C * H * W; i++) x[i] = 0.7f;
    cnnfx_resize_bilinear(x, C, H, W, y, h, w);
    double md = 0;
    for (int i = 0; i < C * h * w; i++) md = fmax(md, fabs(y[i] - 0.7));
    CHECK(md < 1e-5, "constant stays constant at %dx%d (%g)", h, w, md);
    g_free(x); g_free(y); g_free(gy); g_free(gx);
  }
  {
    /* 1-px checkerboard shrunk 8x: antialiased result is ~0.5 everywhere */
    int S = 256, s = 32;
    float *x = g_new(float, S * S), *y = g_new(float, s * s);
    for (int i = 0; i < S; i++)
      for (int j = 0; j < S; j++) x[i * S + j] = (float)((i + j) & 1);
    cnnfx_resize_bilinear(x, 1, S, S, y, s, s);
    double md = 0;
    for (int i = 0; i < s * s; i++) md = fmax(md, fabs(y[i] - 0.5));
    CHECK(md < 0.02, "shrinking is antialiased (max deviation %g)", md);
    g_free(x); g_free(y);
  }
  {
    int h = 5, w = 7;
    float x[35], sc[35], sum0 = 0, sum1 = 0;
    for (int i = 0; i < 35; i++) sum0 += x[i] = (float)i;
    cnnfx_roll(x, 1, h, w, 2, -3, sc);
    CHECK(x[(2 * w) + 4] == 0.f, "roll moves (0,0) to (2,4)");
    for (int i = 0; i < 35; i++) sum1 += x[i];
    CHECK(sum0 == sum1, "roll is a permutation");
    float b[64 * 64];
    double m0 = 0, m1 = 0;
    for (int i = 0; i < 64 * 64; i++) m0 += b[i] = (float)g_rand_double(r);
    cnnfx_blur(b, 1, 64, 64, 1.5, NULL);
    for (int i = 0; i < 64 * 64; i++) m1 += b[i];
    CHECK(fabs(m0 - m1) < 1e-2 * m0, "blur keeps the mean (%g vs %g)", m0, m1);
  }
  g_rand_free(r);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
