/* OpenBLAS sgemm peak on this machine: C = A·B with square N x N matrices (default 4096), all
 * OpenBLAS threads (OPENBLAS_NUM_THREADS to change).  Prints GFLOP/s of the median and best run.
 *
 *   cc -O2 bench/sgemm_peak.c -o sgemm_peak $(pkg-config --cflags --libs openblas) && ./sgemm_peak [N] [runs] */
#define _GNU_SOURCE
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
  const int n = argc > 1 ? atoi(argv[1]) : 4096;
  int runs = argc > 2 ? atoi(argv[2]) : 7;
  if (n <= 0 || runs <= 0 || runs > 100) {
    fprintf(stderr, "usage: %s [N] [runs<=100]\n", argv[0]);
    return 2;
  }
  const size_t nn = (size_t)n * n;
  float *a = malloc(nn * sizeof(float)), *b = malloc(nn * sizeof(float)), *c = malloc(nn * sizeof(float));
  if (!a || !b || !c) {
    fprintf(stderr, "out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < nn; i++) {
    a[i] = (float)(i % 97) * 0.01f;
    b[i] = (float)(i % 89) * 0.01f;
  }
  double t[100];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n); /* warm-up */
  for (int r = 0; r < runs; r++) {
    const double t0 = now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, a, n, b, n, 0.f, c, n);
    t[r] = now() - t0;
  }
  qsort(t, runs, sizeof t[0], cmp_double);
  const double flop = 2.0 * n * (double)n * n;
  printf("sgemm %dx%dx%d core=%s threads=%d: median %.1f ms = %.1f GFLOP/s, best %.1f GFLOP/s\n", n, n, n,
         openblas_get_corename(), openblas_get_num_threads(), t[runs / 2] * 1e3, flop / t[runs / 2] * 1e-9, flop / t[0] * 1e-9);
  free(a);
  free(b);
  free(c);
  return 0;
}
