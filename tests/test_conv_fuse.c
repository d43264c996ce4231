/* Conv + Relu fusion in the CPU Conv kernel (CnnfxExec.fuse_relu), through the private kernel API:
 *
 *   fused forward                  == Relu(unfused forward)                       bitwise
 *   fused backward (dX, dW, dB)    == unfused backward fed with Relu's backward    bitwise
 *
 * on 1x1, 3x3 (Winograd and exact im2col), 7x7/2 stem, grouped, depthwise, dilated, strided,
 * with and without bias, batch 2, every SIMD level this CPU runs.  The reference Relu is the
 * Relu operator's own CPU kernel.  Each comparison is itself checked to catch a one-ulp change.
 *
 * Usage: test_conv_fuse [SRCDIR]          the checks (exit 0 iff all pass)
 *        test_conv_fuse --bench [REPS [THREADS]]   also time fused vs separate Conv+Relu (GoogLeNet-like
 *                                                  layers; THREADS: the kernels' OpenMP threads, default 2;
 *                                                  set OPENBLAS_NUM_THREADS to match) */
#include "cnnfx-private.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  const char *what;
  int N, C, H, W, M, k, s, p, d, G, bias, exact;
} Case;

static guint32 rng_state = 4242u;

static float frand(void)
{
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)((rng_state >> 8) * (1.0 / 16777216.0)) * 2.f - 1.f;
}

/* A Conv node with kernel_shape, strides, pads, dilations, group. */
typedef struct {
  CnnfxNode n;
  CnnfxAttr a[5];
  int64_t ks[2], st[2], pd[4], dl[2];
} ConvNode;

static void conv_node(ConvNode *c, const Case *t)
{
  memset(c, 0, sizeof *c);
  c->ks[0] = c->ks[1] = t->k;
  c->st[0] = c->st[1] = t->s;
  c->pd[0] = c->pd[1] = c->pd[2] = c->pd[3] = t->p;
  c->dl[0] = c->dl[1] = t->d;
  c->a[0] = (CnnfxAttr){.name = (char *)"kernel_shape", .type = CNNFX_ATTR_INTS, .n = 2, .ints = c->ks};
  c->a[1] = (CnnfxAttr){.name = (char *)"strides", .type = CNNFX_ATTR_INTS, .n = 2, .ints = c->st};
  c->a[2] = (CnnfxAttr){.name = (char *)"pads", .type = CNNFX_ATTR_INTS, .n = 4, .ints = c->pd};
  c->a[3] = (CnnfxAttr){.name = (char *)"dilations", .type = CNNFX_ATTR_INTS, .n = 2, .ints = c->dl};
  c->a[4] = (CnnfxAttr){.name = (char *)"group", .type = CNNFX_ATTR_INT, .i = t->G};
  c->n.name = (char *)"conv";
  c->n.op_type = (char *)"Conv";
  c->n.domain = (char *)"";
  c->n.opset = 13;
  c->n.n_in = t->bias ? 3 : 2;
  c->n.n_out = 1;
  c->n.n_attrs = 5;
  c->n.attrs = c->a;
}

static CnnfxNode relu_node(void)
{
  CnnfxNode n = {.name = (char *)"relu", .op_type = (char *)"Relu", .domain = (char *)"", .opset = 13, .n_in = 1,
                 .n_out = 1};
  return n;
}

static CnnfxTensor *tnew(int nd, const int64_t *dims)
{
  CnnfxTensor *t = cnnfx_tensor_new_f32(nd, dims, NULL);
  if (!t) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return t;
}

static void fill(CnnfxTensor *t)
{
  float *p = t->data;
  for (size_t i = 0; i < t->numel; i++) p[i] = frand();
}

static void zero(CnnfxTensor *t)
{
  memset(t->data, 0, t->numel * sizeof(float));
}

/* Bitwise equality; also proves it would see a one-ulp change in the first element. */
static gboolean same(const char *what, const CnnfxTensor *a, const CnnfxTensor *b)
{
  if (a->numel != b->numel) {
    printf("  %s: numel %zu vs %zu\n", what, a->numel, b->numel);
    return FALSE;
  }
  const size_t bytes = a->numel * sizeof(float);
  if (memcmp(a->data, b->data, bytes)) {
    const float *x = a->data, *y = b->data;
    size_t i = 0;
    while (i < a->numel && !memcmp(&x[i], &y[i], sizeof(float))) i++;
    printf("  %s differs: first at %zu: %.9g vs %.9g\n", what, i, (double)x[i], (double)y[i]);
    return FALSE;
  }
  if (a->numel) {
    float *x = a->data;
    const float keep = x[0];
    x[0] = nextafterf(x[0], INFINITY);
    const gboolean caught = memcmp(a->data, b->data, bytes) != 0;
    x[0] = keep;
    if (!caught) {
      printf("  %s: the comparison does not see a one-ulp change\n", what);
      return FALSE;
    }
  }
  return TRUE;
}

typedef struct {
  const CnnfxKernel *conv, *relu;
  CnnfxExec ex;
} Kset;

static gboolean kcall_fwd(const CnnfxKernel *k, const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor **in,
                          CnnfxTensor **out)
{
  GError *err = NULL;
  if (!k->forward(x, n, in, out, NULL, &err)) {
    printf("  %s forward: %s\n", n->op_type, err ? err->message : "?");
    g_clear_error(&err);
    return FALSE;
  }
  return TRUE;
}

static gboolean kcall_bwd(const CnnfxKernel *k, const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor **in,
                          CnnfxTensor **out, CnnfxTensor **gout, const gboolean *need, CnnfxTensor **gin)
{
  GError *err = NULL;
  if (!k->backward(x, n, in, out, gout, need, gin, NULL, &err)) {
    printf("  %s backward: %s\n", n->op_type, err ? err->message : "?");
    g_clear_error(&err);
    return FALSE;
  }
  return TRUE;
}

static gboolean run_case(const Case *t, CnnfxSimd lv)
{
  Kset ks = {.conv = cnnfx_cpu_kernel(lv, "Conv"), .relu = cnnfx_cpu_kernel(lv, "Relu")};
  CnnfxMem mem = {0};
  ks.ex = (CnnfxExec){.mem = &mem, .n_threads = 2, .simd = lv, .exact = t->exact};
  if (!ks.conv || !ks.relu || !cnnfx_kernel_fuses_relu(ks.conv) || cnnfx_kernel_fuses_relu(ks.relu)) {
    printf("FAIL %s: kernels / cnnfx_kernel_fuses_relu\n", t->what);
    return FALSE;
  }
  ConvNode cn;
  conv_node(&cn, t);
  CnnfxNode rn = relu_node();
  const int64_t ek = (int64_t)t->d * (t->k - 1) + 1;
  const int64_t OH = (t->H + 2 * t->p - ek) / t->s + 1, OW = (t->W + 2 * t->p - ek) / t->s + 1;
  const int64_t xd[4] = {t->N, t->C, t->H, t->W}, wd[4] = {t->M, t->C / t->G, t->k, t->k}, bd[1] = {t->M};
  const int64_t yd[4] = {t->N, t->M, OH, OW};
  CnnfxTensor *X = tnew(4, xd), *W = tnew(4, wd), *B = tnew(1, bd), *G = tnew(4, yd);
  fill(X);
  fill(W);
  fill(B);
  fill(G);
  CnnfxTensor *y0 = tnew(4, yd), *r = tnew(4, yd), *yf = tnew(4, yd), *dm = tnew(4, yd), *Gcopy = NULL;
  CnnfxTensor *g0[3] = {tnew(4, xd), tnew(4, wd), tnew(1, bd)}, *gf[3] = {tnew(4, xd), tnew(4, wd), tnew(1, bd)};
  CnnfxTensor *in[3] = {X, W, t->bias ? B : NULL};
  gboolean ok = TRUE;
  char msg[64] = "";

  /* separate: Conv, then the Relu operator */
  CnnfxExec xs = ks.ex, xf = ks.ex;
  xf.fuse_relu = TRUE;
  ok = ok && kcall_fwd(ks.conv, &xs, &cn.n, in, &y0);
  ok = ok && kcall_fwd(ks.relu, &xs, &rn, &y0, &r);
  /* fused */
  for (size_t i = 0; i < yf->numel; i++) ((float *)yf->data)[i] = NAN; /* every element must be written */
  ok = ok && kcall_fwd(ks.conv, &xf, &cn.n, in, &yf);
  ok = ok && same("forward", yf, r);
  /* the ReLU must have had something to do */
  size_t pos = 0;
  for (size_t i = 0; ok && i < y0->numel; i++) pos += ((float *)y0->data)[i] > 0.f;
  if (ok && (pos == 0 || pos == y0->numel)) {
    printf("  forward: %zu of %zu outputs positive: ReLU not exercised\n", pos, y0->numel);
    ok = FALSE;
  }

  const gboolean need[3] = {TRUE, TRUE, t->bias};
  if (ok) {
    /* separate backward: Relu's backward into dm, Conv's backward from dm */
    zero(dm);
    const gboolean rneed[1] = {TRUE};
    ok = kcall_bwd(ks.relu, &xs, &rn, &y0, &r, &G, rneed, &dm);
    for (int i = 0; i < 3; i++) zero(g0[i]), zero(gf[i]);
    CnnfxTensor *gin0[3] = {g0[0], g0[1], t->bias ? g0[2] : NULL}, *ginf[3] = {gf[0], gf[1], t->bias ? gf[2] : NULL};
    ok = ok && kcall_bwd(ks.conv, &xs, &cn.n, in, &y0, &dm, need, gin0);
    Gcopy = cnnfx_tensor_copy(G, NULL);
    ok = ok && Gcopy && kcall_bwd(ks.conv, &xf, &cn.n, in, &yf, &G, need, ginf);
    ok = ok && same("dX", gf[0], g0[0]) && same("dW", gf[1], g0[1]) && (!t->bias || same("dB", gf[2], g0[2]));
    ok = ok && same("gout left untouched", G, Gcopy);
  }
  if (ok && mem.current != 0) {
    printf("  scratch leak: %zu bytes\n", mem.current);
    ok = FALSE;
  }
  if (ok) g_snprintf(msg, sizeof msg, "%zu/%zu positive", pos, y0->numel);
  printf("%s %-8s %-34s N=%d C=%d %dx%d M=%d k=%d s=%d p=%d d=%d G=%d bias=%d exact=%d  %s\n", ok ? "ok  " : "FAIL",
         cnnfx_simd_name(lv), t->what, t->N, t->C, t->H, t->W, t->M, t->k, t->s, t->p, t->d, t->G, t->bias, t->exact,
         msg);
  CnnfxTensor *all[] = {X, W, B, G, y0, r, yf, dm, Gcopy, g0[0], g0[1], g0[2], gf[0], gf[1], gf[2]};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++)
    if (all[i]) cnnfx_tensor_unref(all[i]);
  return ok;
}

/* ---- timing: fused vs separate Conv + Relu, forward + backward --------------------------------- */

/* One thread: the calling thread's CPU time (robust on a loaded machine); else wall time. */
static gboolean bench_cpu_clock;

static double now(void)
{
  if (bench_cpu_clock) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  return g_get_monotonic_time() * 1e-6;
}

static void bench(const Case *t, CnnfxSimd lv, int reps, int threads, gboolean wgrad)
{
  const CnnfxKernel *kc = cnnfx_cpu_kernel(lv, "Conv"), *kr = cnnfx_cpu_kernel(lv, "Relu");
  CnnfxMem mem = {.cache = TRUE}; /* scratch blocks reused as a session's arena would */
  CnnfxExec xs = {.mem = &mem, .n_threads = threads, .simd = lv}, xf = xs;
  xf.fuse_relu = TRUE;
  ConvNode cn;
  conv_node(&cn, t);
  CnnfxNode rn = relu_node();
  const int64_t OH = (t->H + 2 * t->p - t->k) / t->s + 1, OW = (t->W + 2 * t->p - t->k) / t->s + 1;
  const int64_t xd[4] = {t->N, t->C, t->H, t->W}, wd[4] = {t->M, t->C / t->G, t->k, t->k}, bd[1] = {t->M};
  const int64_t yd[4] = {t->N, t->M, OH, OW};
  CnnfxTensor *X = tnew(4, xd), *W = tnew(4, wd), *B = tnew(1, bd), *G = tnew(4, yd), *y0 = tnew(4, yd);
  CnnfxTensor *r = tnew(4, yd), *dm = tnew(4, yd), *dX = tnew(4, xd), *dW = tnew(4, wd), *dB = tnew(1, bd);
  fill(X);
  fill(W);
  fill(B);
  fill(G);
  CnnfxTensor *in[3] = {X, W, B}, *gin[3] = {dX, dW, dB};
  const gboolean need[3] = {TRUE, wgrad, wgrad}, rneed[1] = {TRUE};
  /* best of reps (after one warm-up) for: separate forward, separate backward, fused forward, fused backward */
  double best[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
  for (int it = 0; it <= reps; it++) {
    double t[5];
    t[0] = now();
    /* separate: Conv -> y0, Relu -> r; backward: Relu into its zero-filled gin dm, Conv from dm */
    kc->forward(&xs, &cn.n, in, &y0, NULL, NULL);
    kr->forward(&xs, &rn, &y0, &r, NULL, NULL);
    t[1] = now();
    zero(dm);
    kr->backward(&xs, &rn, &y0, &r, &G, rneed, &dm, NULL, NULL);
    zero(dX);
    kc->backward(&xs, &cn.n, in, &y0, &dm, need, gin, NULL, NULL);
    t[2] = now();
    /* fused: Conv+Relu -> r; backward with the mask inside */
    kc->forward(&xf, &cn.n, in, &r, NULL, NULL);
    t[3] = now();
    zero(dX);
    kc->backward(&xf, &cn.n, in, &r, &G, need, gin, NULL, NULL);
    t[4] = now();
    if (it == 0) continue; /* warm-up */
    for (int k = 0; k < 4; k++) best[k] = MIN(best[k], t[k + 1] - t[k]);
  }
  const double sep = best[0] + best[1], fus = best[2] + best[3];
  printf("bench %-6s %d thr %-34s %s: separate fwd %6.2f + bwd %6.2f = %6.2f ms, fused fwd %6.2f + bwd %6.2f = "
         "%6.2f ms: %.2f ms (%.1f%%) less\n",
         cnnfx_simd_name(lv), threads, t->what, wgrad ? "dX+dW+dB" : "dX only ", best[0] * 1e3, best[1] * 1e3,
         sep * 1e3, best[2] * 1e3, best[3] * 1e3, fus * 1e3, (sep - fus) * 1e3, 100.0 * (1.0 - fus / sep));
  cnnfx_mem_clear(&mem);
  CnnfxTensor *all[] = {X, W, B, G, y0, r, dm, dX, dW, dB};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++) cnnfx_tensor_unref(all[i]);
}

int main(int argc, char **argv)
{
  const gboolean do_bench = argc > 1 && !strcmp(argv[1], "--bench");
  static const Case cases[] = {
    {"1x1", 2, 32, 20, 20, 24, 1, 1, 0, 1, 1, 1, 0},
    {"1x1 no bias", 2, 32, 20, 20, 24, 1, 1, 0, 1, 1, 0, 0},
    {"1x1 large", 1, 520, 36, 36, 520, 1, 1, 0, 1, 1, 1, 0},
    {"1x1 grouped", 2, 32, 9, 11, 48, 1, 1, 0, 1, 4, 1, 0},
    {"1x1 stride 2 (im2col)", 2, 16, 13, 13, 24, 1, 2, 0, 1, 1, 1, 0},
    {"3x3 s1 Winograd", 2, 32, 20, 20, 32, 3, 1, 1, 1, 1, 1, 0},
    {"3x3 s1 Winograd no bias, odd", 1, 17, 23, 29, 19, 3, 1, 1, 1, 1, 0, 0},
    {"3x3 s1 Winograd valid", 2, 24, 22, 22, 16, 3, 1, 0, 1, 1, 1, 0},
    {"3x3 s1 exact im2col", 2, 32, 20, 20, 32, 3, 1, 1, 1, 1, 1, 1},
    {"3x3 s1 small (im2col)", 2, 5, 9, 8, 7, 3, 1, 1, 1, 1, 1, 0},
    {"5x5 several column bands", 1, 8, 56, 56, 8, 5, 1, 2, 1, 1, 1, 0},
    {"7x7 s2 p3 stem on 3 channels", 2, 3, 32, 32, 16, 7, 2, 3, 1, 1, 1, 0},
    {"7x7 s2 p3 stem no bias", 1, 3, 33, 31, 8, 7, 2, 3, 1, 1, 0, 0},
    {"3x3 grouped G=4", 2, 16, 12, 12, 24, 3, 1, 1, 1, 4, 1, 0},
    {"3x3 grouped Winograd G=2", 1, 32, 20, 20, 32, 3, 1, 1, 1, 2, 1, 0},
    {"3x3 depthwise", 2, 16, 15, 15, 16, 3, 1, 1, 1, 16, 1, 0},
    {"3x3 depthwise s2 no bias", 2, 8, 16, 17, 8, 3, 2, 1, 1, 8, 0, 0},
    {"5x5 depthwise multiplier 2", 1, 6, 11, 10, 12, 5, 1, 2, 1, 6, 1, 0},
    {"3x3 dilated d=2", 2, 8, 14, 14, 8, 3, 1, 2, 2, 1, 1, 0},
    {"3x3 dilated depthwise d=2", 1, 4, 14, 13, 4, 3, 1, 2, 2, 4, 1, 0},
  };
  int passed = 0, failed = 0;
  for (CnnfxSimd lv = CNNFX_SIMD_BASELINE; lv <= CNNFX_SIMD_AVX512; lv++) {
    if (!cnnfx_cpu_supports(lv)) {
      printf("skipped level %s: not supported by this CPU or build\n", cnnfx_simd_name(lv));
      continue;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
      if (run_case(&cases[i], lv))
        passed++;
      else
        failed++;
    }
  }
  if (cnnfx_kernel_fuses_relu(NULL)) {
    printf("FAIL cnnfx_kernel_fuses_relu(NULL)\n");
    failed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  if (do_bench) {
    const int reps = argc > 2 ? atoi(argv[2]) : 5, threads = argc > 3 ? MAX(atoi(argv[3]), 1) : 2;
    bench_cpu_clock = threads == 1;
    printf("bench timing: %s\n", bench_cpu_clock ? "thread CPU time (set OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1)"
                                                  : "wall time");
    CnnfxSimd best = CNNFX_SIMD_BASELINE;
    for (CnnfxSimd lv = CNNFX_SIMD_BASELINE; lv <= CNNFX_SIMD_AVX512; lv++)
      if (cnnfx_cpu_supports(lv)) best = lv;
    /* GoogLeNet inception_3a at a 768x1024 input: 96x128 feature maps */
    static const Case layers[] = {
      {"googlenet 3a 3x3 96->128 @96x128", 1, 96, 96, 128, 128, 3, 1, 1, 1, 1, 1, 0},
      {"googlenet 3a 1x1 192->64 @96x128", 1, 192, 96, 128, 64, 1, 1, 0, 1, 1, 1, 0},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(layers); i++) {
      bench(&layers[i], best, MAX(reps, 1), threads, FALSE);
      bench(&layers[i], best, MAX(reps, 1), threads, TRUE);
    }
  }
  return failed ? 1 : 0;
}
