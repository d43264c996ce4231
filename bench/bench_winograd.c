/* Micro-benchmark: 3x3 stride-1 pad-1 convolution, Winograd F(4x4,3x3) vs im2col + sgemm.
 *
 *   bench_winograd [--runs N] [--threads T] [--cpu-time] [--winograd-only] [C K H W]...
 *   bench_winograd --train BATCH [--runs N] [--threads T] [C K H W]...
 *
 * Without shapes it runs the 3x3 layers of VGG19 (up to conv5_1) at a 512x512 input.  Prints the
 * median time of each method, the speed-up, and "effective" GFLOP/s (direct-convolution FLOPs,
 * 2·K·C·9·H·W, divided by time; Winograd can exceed the machine's sgemm peak on that scale).
 * --train times a training step's three Winograd passes over a batch instead (forward, input
 * gradient, weight gradient); without shapes, the 3x3 layers of the default CIFAR-10 network
 * (cifar-white-gelu: 64/256/256 channels on 31x31, 15x15, 7x7 and 3x3 planes). */
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

/* Median times of the forward, the input gradient (the adjoint: a convolution of dy with the flipped,
 * transposed kernel, timed with the same weights) and the weight gradient of one layer over a batch. */
static void train_pass(int runs, int N, int C, int K, int H, int W, CnnfxExec *ex)
{
  const size_t nx = (size_t)N * C * H * W, ny = (size_t)N * K * H * W, nw = (size_t)K * C * 9;
  float *x = g_new(float, nx), *y = g_new(float, ny), *dx = g_new(float, nx), *w = g_new(float, nw);
  float *dw = g_new(float, nw);
  for (size_t i = 0; i < nx; i++) x[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (size_t i = 0; i < nw; i++) w[i] = (float)((i * 40503u) % 1000) * 1e-3f - 0.5f;
  double t[3][64];
  runs = MIN(runs, 64);
  for (int r = -1; r < runs; r++) {
    double t0 = now();
    gboolean ok = cnnfx_conv3x3_winograd(ex, x, N, C, H, W, w, K, NULL, 1, 1, H, W, y, NULL);
    const double t1 = now();
    ok = ok && cnnfx_conv3x3_winograd(ex, y, N, K, H, W, w, C, NULL, 1, 1, H, W, dx, NULL);
    const double t2 = now();
    ok = ok && cnnfx_conv3x3_winograd_wgrad(ex, x, N, C, H, W, y, K, 1, 1, H, W, dw, NULL);
    const double t3 = now();
    if (!ok) {
      fprintf(stderr, "allocation failed\n");
      exit(1);
    }
    if (r >= 0) {
      t[0][r] = t1 - t0;
      t[1][r] = t2 - t1;
      t[2][r] = t3 - t2;
    }
  }
  const double flops = 2.0 * K * C * 9 * (double)H * W * N;
  printf("| %d | %d | %d | %dx%d |", N, C, K, H, W);
  for (int j = 0; j < 3; j++) {
    qsort(t[j], runs, sizeof t[j][0], cmp_double);
    printf(" %.1f (%.0f) |", t[j][runs / 2] * 1e3, flops / t[j][runs / 2] * 1e-9);
  }
  printf("\n");
  fflush(stdout);
  g_free(x);
  g_free(y);
  g_free(dx);
  g_free(w);
  g_free(dw);
}

int main(int argc, char **argv)
{
  int runs = 5, threads = omp_get_max_threads(), skip_im2col = 0, train = 0;
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
    else if (!strcmp(argv[i], "--train") && i + 1 < argc)
      train = atoi(argv[++i]);
    else if (i + 3 < argc && ns < 64) {
      for (int j = 0; j < 4; j++) shapes[ns][j] = atoi(argv[i + j]);
      ns++;
      i += 3;
    } else {
      fprintf(stderr, "usage: %s [--runs N] [--threads T] [--cpu-time] [--winograd-only | --train BATCH] [C K H W]...\n",
              argv[0]);
      return 2;
    }
  }
  if (train > 0) {
    static const int cifar[][4] = {{24, 64, 31, 31}, {64, 64, 15, 15}, {64, 256, 15, 15},
                                   {256, 256, 7, 7}, {256, 256, 7, 7}, {256, 256, 3, 3}};
    if (!ns) {
      ns = (int)G_N_ELEMENTS(cifar);
      memcpy(shapes, cifar, sizeof cifar);
    }
    CnnfxMem mem = {0};
    CnnfxExec ex = {.mem = &mem, .n_threads = threads};
    printf("| batch | C | K | H x W | forward ms (eff. GFLOP/s) | input gradient | weight gradient |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (int s = 0; s < ns; s++) train_pass(runs, train, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], &ex);
    return 0;
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
