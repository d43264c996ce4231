/* Micro-benchmark: 3x3 stride-1 pad-1 convolution, Winograd F(4x4,3x3) vs im2col + sgemm.
 *
 *   bench_winograd [--runs N] [--threads T] [--cpu-time] [--winograd-only] [C K H W]...
 *
 * Without shapes it runs the 3x3 layers of VGG19 (up to conv5_1) at a 512x512 input.  Prints the
 * median time of each method, the speed-up, and "effective" GFLOP/s (direct-convolution FLOPs,
 * 2·K·C·9·H·W, divided by time; Winograd can exceed the machine's sgemm peak on that scale). */
#include "cnnfx-private.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
  struct timespec ts;
  clock_gettime(clock_id, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* im2col over bands of output rows (pad 1), then one sgemm per band; bias added at the end. */
static gboolean conv_im2col(int C, int H, int W, const float *x, const float *w, int K, const float *bias,
                            float *y, CnnfxMem *mem)
{
  const int CKK = C * 9;
  int rows = (int)MAX(1, MIN((int64_t)H, ((int64_t)8 << 20) / ((int64_t)CKK * W)));
  const size_t ncol = (size_t)CKK * rows * W;
  float *col = cnnfx_scratch_f32(mem, ncol, NULL);
  if (!col) return FALSE;
  for (int r0 = 0; r0 < H; r0 += rows) {
    const int nr = MIN(rows, H - r0), nb = nr * W;
#pragma omp parallel for schedule(static)
    for (int q = 0; q < CKK; q++) {
      const int c = q / 9, ky = q % 9 / 3, kx = q % 3;
      float *dst = col + (size_t)q * nb;
      for (int oy = r0; oy < r0 + nr; oy++) {
        const int iy = oy - 1 + ky;
        float *d = dst + (size_t)(oy - r0) * W;
        if (iy < 0 || iy >= H) {
          memset(d, 0, (size_t)W * sizeof(float));
          continue;
        }
        const float *s = x + ((size_t)c * H + iy) * W;
        for (int ox = 0; ox < W; ox++) {
          const int ix = ox - 1 + kx;
          d[ox] = ix >= 0 && ix < W ? s[ix] : 0.f;
        }
      }
    }
    cnnfx_sgemm(FALSE, FALSE, K, nb, CKK, 1.f, w, CKK, col, nb, 0.f, y + (size_t)r0 * W, H * W);
  }
#pragma omp parallel for schedule(static)
  for (int k = 0; k < K; k++)
    for (size_t i = 0; i < (size_t)H * W; i++) y[(size_t)k * H * W + i] += bias[k];
  cnnfx_scratch_free(mem, col, ncol);
  return TRUE;
}

static double median_time(int runs, int which, int C, int H, int W, const float *x, const float *w, int K,
                          const float *b, float *y, CnnfxExec *ex)
{
  double t[64];
  runs = MIN(runs, 64);
  for (int r = -1; r < runs; r++) {
    const double t0 = now();
    gboolean ok = which ? cnnfx_conv3x3_winograd(ex, x, 1, C, H, W, w, K, b, 1, 1, H, W, y, NULL)
                        : conv_im2col(C, H, W, x, w, K, b, y, ex->mem);
    if (!ok) {
      fprintf(stderr, "allocation failed\n");
      exit(1);
    }
    if (r >= 0) t[r] = now() - t0;
  }
  qsort(t, runs, sizeof t[0], cmp_double);
  return t[runs / 2];
}

int main(int argc, char **argv)
{
  int runs = 5, threads = omp_get_max_threads(), skip_im2col = 0;
  int shapes[64][4], ns = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--runs") && i + 1 < argc)
      runs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--cpu-time")) /* process CPU time: for tuning on a busy machine */
      clock_id = CLOCK_PROCESS_CPUTIME_ID;
    else if (!strcmp(argv[i], "--winograd-only"))
      skip_im2col = 1;
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = atoi(argv[++i]);
    else if (i + 3 < argc && ns < 64) {
      for (int j = 0; j < 4; j++) shapes[ns][j] = atoi(argv[i + j]);
      ns++;
      i += 3;
    } else {
      fprintf(stderr, "usage: %s [--runs N] [--threads T] [--cpu-time] [--winograd-only] [C K H W]...\n", argv[0]);
      return 2;
    }
  }
  if (!ns) {
    static const int vgg[][4] = {{3, 64, 512, 512},   {64, 64, 512, 512},   {64, 128, 256, 256},
                                 {128, 128, 256, 256}, {128, 256, 128, 128}, {256, 256, 128, 128},
                                 {256, 512, 64, 64},   {512, 512, 64, 64},   {512, 512, 32, 32}};
    ns = (int)G_N_ELEMENTS(vgg);
    memcpy(shapes, vgg, sizeof vgg);
  }
  printf("| C | K | H x W | im2col ms | Winograd ms | speed-up | im2col GFLOP/s | Winograd eff. GFLOP/s | scratch MiB |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int s = 0; s < ns; s++) {
    const int C = shapes[s][0], K = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
    const size_t nx = (size_t)C * H * W, nw = (size_t)K * C * 9, ny = (size_t)K * H * W;
    float *x = g_new(float, nx), *w = g_new(float, nw), *b = g_new(float, K), *y = g_new(float, ny);
    for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
    for (size_t i = 0; i < nw; i++) w[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
    for (int i = 0; i < K; i++) b[i] = 0.1f;
    CnnfxMem mem = {0};
    CnnfxExec ex = {.mem = &mem, .n_threads = threads};
    const double ti = skip_im2col ? NAN : median_time(runs, 0, C, H, W, x, w, K, b, y, &ex);
    mem.peak = 0;
    const double tw = median_time(runs, 1, C, H, W, x, w, K, b, y, &ex);
    const double flops = 2.0 * K * C * 9 * (double)H * W;
    printf("| %d | %d | %dx%d | %.2f | %.2f | %.2fx | %.0f | %.0f | %.1f |\n", C, K, H, W, ti * 1e3, tw * 1e3,
           ti / tw, flops / ti * 1e-9, flops / tw * 1e-9, mem.peak / 1048576.0);
    fflush(stdout);
    g_free(x);
    g_free(w);
    g_free(b);
    g_free(y);
  }
  return 0;
}
