/* Unit test: Winograd F(4x4,3x3) and its weight gradient against a direct convolution in double precision.
 * Usage: test_winograd [SRCDIR]  (argument ignored).  Exit 0 iff every case passes. */
#include "cnnfx-private.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  int N, C, H, W, K, pt, pl, pb, pr, bias;
} Case;

static guint32 rng_state = 12345u;
static CnnfxSimd test_simd = CNNFX_SIMD_AUTO; /* kernel set under test */

static float frand(void)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) * (1.0 / 16777216.0)) * 2.f - 1.f;
}

static void direct(const Case *t, int OH, int OW, const float *x, const float *w, const float *b, double *y)
{
  for (int n = 0; n < t->N; n++)
    for (int k = 0; k < t->K; k++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          double s = b ? b[k] : 0.0;
          for (int c = 0; c < t->C; c++)
            for (int ky = 0; ky < 3; ky++) {
              const int iy = oy - t->pt + ky;
              if (iy < 0 || iy >= t->H) continue;
              for (int kx = 0; kx < 3; kx++) {
                const int ix = ox - t->pl + kx;
                if (ix < 0 || ix >= t->W) continue;
                s += (double)x[(((size_t)n * t->C + c) * t->H + iy) * t->W + ix] *
                     (double)w[(((size_t)k * t->C + c) * 3 + ky) * 3 + kx];
              }
            }
          y[(((size_t)n * t->K + k) * OH + oy) * OW + ox] = s;
        }
}

/* dw[k][c][ky][kx] = sum over images and outputs of dy * x: the weight gradient, in double. */
static void direct_wgrad(const Case *t, int OH, int OW, const float *x, const float *dy, double *dw)
{
  for (int k = 0; k < t->K; k++)
    for (int c = 0; c < t->C; c++)
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) {
          double s = 0.0;
          for (int n = 0; n < t->N; n++)
            for (int oy = 0; oy < OH; oy++) {
              const int iy = oy - t->pt + ky;
              if (iy < 0 || iy >= t->H) continue;
              const float *xr = x + (((size_t)n * t->C + c) * t->H + iy) * t->W;
              const float *dr = dy + (((size_t)n * t->K + k) * OH + oy) * OW;
              for (int ox = 0; ox < OW; ox++) {
                const int ix = ox - t->pl + kx;
                if (ix >= 0 && ix < t->W) s += (double)dr[ox] * (double)xr[ix];
              }
            }
          dw[((size_t)k * t->C + c) * 9 + ky * 3 + kx] = s;
        }
}

/* Largest |a - ref| over the largest |ref| (Winograd's error is absolute, about eps * sum |x w|);
 * NaN gives infinity. */
static double rel_err(const float *a, const double *ref, size_t n)
{
  double maxerr = 0, maxref = 0;
  for (size_t i = 0; i < n; i++) {
    maxref = fmax(maxref, fabs(ref[i]));
    const double e = fabs((double)a[i] - ref[i]);
    if (!(e <= maxerr)) maxerr = isnan(e) ? INFINITY : e;
  }
  return maxerr / fmax(maxref, 1e-30);
}

static gboolean run_case(const Case *t, int n_threads)
{
  const int OH = t->H + t->pt + t->pb - 2, OW = t->W + t->pl + t->pr - 2;
  const size_t nx = (size_t)t->N * t->C * t->H * t->W, nw = (size_t)t->K * t->C * 9;
  const size_t ny = (size_t)t->N * t->K * OH * OW;
  float *x = g_new(float, nx + 1), *w = g_new(float, nw + 1), *b = g_new(float, t->K);
  float *y = g_new(float, ny + 1);
  double *ref = g_new(double, ny + 1);
  for (size_t i = 0; i < nx; i++) x[i] = frand();
  for (size_t i = 0; i < nw; i++) w[i] = frand();
  for (int i = 0; i < t->K; i++) b[i] = frand();
  for (size_t i = 0; i < ny; i++) y[i] = NAN;
  direct(t, OH, OW, x, w, t->bias ? b : NULL, ref);

  CnnfxMem mem = {0};
  CnnfxExec ex = {.mem = &mem, .n_threads = n_threads, .simd = test_simd};
  GError *err = NULL;
  gboolean ok = cnnfx_conv3x3_winograd(&ex, x, t->N, t->C, t->H, t->W, w, t->K, t->bias ? b : NULL, t->pt, t->pl,
                                       OH, OW, y, &err);
  /* the weight gradient for a random output gradient (written over a NaN-filled dw) */
  float *dy = g_new(float, ny + 1), *dw = g_new(float, nw + 1);
  double *dwref = g_new(double, nw + 1);
  for (size_t i = 0; i < ny; i++) dy[i] = frand();
  for (size_t i = 0; i < nw; i++) dw[i] = NAN;
  direct_wgrad(t, OH, OW, x, dy, dwref);
  if (ok)
    ok = cnnfx_conv3x3_winograd_wgrad(&ex, x, t->N, t->C, t->H, t->W, dy, t->K, t->pt, t->pl, OH, OW, dw, &err);
  if (!ok) {
    fprintf(stderr, "  error: %s\n", err ? err->message : "?");
    g_clear_error(&err);
  } else {
    const double rel = rel_err(y, ref, ny), relw = rel_err(dw, dwref, nw);
    if (!(rel < 1e-4) || !(relw < 1e-4)) ok = FALSE;
    if (mem.current != 0) {
      fprintf(stderr, "  scratch leak: %zu bytes\n", mem.current);
      ok = FALSE;
    }
    printf("%s %s N=%d C=%d H=%d W=%d K=%d pads=(%d,%d,%d,%d) bias=%d threads=%d -> %dx%d  rel.err %.2e, dw %.2e  peak %.1f MiB\n",
           ok ? "ok  " : "FAIL", cnnfx_simd_name(test_simd), t->N, t->C, t->H, t->W, t->K, t->pt, t->pl, t->pb, t->pr, t->bias, n_threads, OH,
           OW, rel, relw, mem.peak / 1048576.0);
  }
  g_free(dy);
  g_free(dw);
  g_free(dwref);
  g_free(x);
  g_free(w);
  g_free(b);
  g_free(y);
  g_free(ref);
  return ok;
}

/* Usage: test_winograd [SRCDIR] — every case with each SIMD level this CPU runs (CNNFX_SIMD=LEVEL: that
 * level only, as the command-line front-end reads it). */
int main(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  CnnfxSimd only = CNNFX_SIMD_AUTO;
  const char *env = g_getenv("CNNFX_SIMD");
  if (env && *env && !cnnfx_simd_parse(env, &only, NULL)) {
    printf("FAIL: bad CNNFX_SIMD=%s\n", env);
    return 1;
  }
  static const Case cases[] = {
    {1, 1, 3, 3, 1, 0, 0, 0, 0, 0},      /* single output pixel */
    {1, 1, 1, 1, 1, 1, 1, 1, 1, 1},      /* 1x1 image, pad 1 */
    {1, 3, 5, 7, 2, 1, 1, 1, 1, 1},
    {1, 4, 8, 8, 4, 0, 0, 0, 0, 0},
    {1, 5, 9, 11, 3, 1, 1, 1, 1, 0},
    {2, 3, 13, 6, 5, 1, 1, 1, 1, 1},     /* N=2 */
    {1, 7, 17, 19, 9, 2, 2, 2, 2, 1},    /* pad 2 (adjoint of a valid conv) */
    {1, 6, 10, 10, 6, 2, 0, 1, 2, 1},    /* asymmetric pads */
    {1, 6, 10, 12, 6, 0, 2, 2, 0, 0},
    {1, 8, 12, 9, 7, 1, 2, 0, 1, 1},
    {1, 9, 6, 30, 11, 0, 1, 0, 0, 1},    /* cropped right side (negative implied pad) */
    {2, 17, 23, 29, 19, 1, 1, 1, 1, 1},  /* C, K not multiples of 8 */
    {1, 33, 37, 70, 35, 1, 1, 1, 1, 1},  /* more than one vector group per row */
    {1, 16, 4, 300, 16, 1, 1, 1, 1, 0},  /* rows longer than one segment */
    {1, 3, 64, 2, 3, 1, 1, 1, 1, 1},     /* narrow: one partial tile column */
    {2, 64, 33, 31, 40, 1, 1, 1, 1, 1},
    {1, 130, 20, 21, 70, 1, 1, 1, 1, 1},
    {1, 64, 150, 150, 32, 1, 1, 1, 1, 1}, /* several tile blocks */
    {3, 2, 96, 100, 3, 0, 0, 2, 2, 1},
    {1, 600, 9, 9, 500, 1, 1, 1, 1, 1},  /* K processed in chunks */
    {1, 16, 17, 19, 24, 1, 1, 1, 1, 1},  /* tests/gradcheck conv3x3_s1_wino */
    {1, 24, 17, 19, 16, 1, 1, 1, 1, 0},  /* its adjoint */
    {8, 3, 256, 256, 5, 1, 1, 1, 1, 0},  /* weight gradient: several tile blocks, K and C below 4 */
  };
  int passed = 0, failed = 0;
  for (CnnfxSimd lv = CNNFX_SIMD_BASELINE; lv <= CNNFX_SIMD_AVX512; lv++) {
    if (only != CNNFX_SIMD_AUTO && lv != only) continue;
    if (!cnnfx_cpu_supports(lv)) {
      printf("skipped level %s: not supported by this CPU or build\n", cnnfx_simd_name(lv));
      continue;
    }
    test_simd = lv;
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++)
      for (int thr = 1; thr <= 2; thr++) {
        if (run_case(&cases[i], thr))
          passed++;
        else
          failed++;
      }
  }
  /* Output count <= 0, or no channels: nothing to do / bias only. */
  {
    CnnfxExec ex = {.mem = NULL, .n_threads = 1};
    float y[4] = {NAN, NAN, NAN, NAN}, b[1] = {0.5f};
    if (cnnfx_conv3x3_winograd(&ex, NULL, 1, 1, 2, 2, NULL, 1, NULL, 0, 0, 0, 0, y, NULL) && isnan(y[0]))
      passed++;
    else
      failed++;
    if (cnnfx_conv3x3_winograd(&ex, NULL, 1, 0, 2, 2, NULL, 1, b, 0, 0, 2, 2, y, NULL) && y[0] == 0.5f &&
        y[3] == 0.5f)
      passed++;
    else {
      printf("FAIL C=0 bias-only case\n");
      failed++;
    }
  }
  /* Allocation failure: FALSE with CNNFX_ERROR_NOMEM, nothing left allocated. */
  static const size_t limits[] = {1000, 200000, 400000, 800000}; /* fail at U, V, V, M */
  for (size_t li = 0; li < G_N_ELEMENTS(limits); li++) {
    const size_t limit = limits[li];
    enum { C = 32, K = 40, H = 30, W = 30 };
    float *x = g_new0(float, C * H * W), *w = g_new0(float, K * C * 9), *y = g_new0(float, K * H * W);
    CnnfxMem mem = {.limit = limit};
    CnnfxExec ex = {.mem = &mem, .n_threads = 2};
    GError *err = NULL;
    const gboolean ok = cnnfx_conv3x3_winograd(&ex, x, 1, C, H, W, w, K, NULL, 1, 1, H, W, y, &err);
    if (!ok && g_error_matches(err, CNNFX_ERROR, CNNFX_ERROR_NOMEM) && mem.current == 0) {
      passed++;
    } else {
      printf("FAIL allocation limit %zu: ok=%d current=%zu\n", limit, ok, mem.current);
      failed++;
    }
    g_clear_error(&err);
    g_free(x);
    g_free(w);
    g_free(y);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
