/* Training: built-in architectures, optimizers (SGD with momentum, Adam), learning-rate
 * schedules, softmax cross-entropy.  The update rules follow torch.optim exactly
 * (L2 weight decay added to the gradient; SGD's momentum buffer starts as the first
 * gradient; Adam with bias correction), so results can be compared with PyTorch. */
#include "cnnfx-private.h"
#include "cnnfx-train.h"
#include <math.h>

/* ---- random numbers ------------------------------------------------------------- */

static GRand *seeded_rand(guint64 seed)
{
  guint32 s[2] = {(guint32)seed, (guint32)(seed >> 32)};
  return g_rand_new_with_seed_array(s, 2);
}

static double rand_normal(GRand *r)
{
  double u1 = g_rand_double(r), u2 = g_rand_double(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
}

/* ---- architectures --------------------------------------------------------------- */

typedef struct {
  CnnfxBuilder *b;
  GRand *rng;
  GError **error;
  gboolean ok;
  double wscale;   /* multiplies the He standard deviation; 0 = 1 */
  gboolean dirac;  /* 3x3 convolutions: PyTorch's default uniform init, identity on the first channels */
  float bn_momentum; /* ONNX momentum of the BatchNorms (0: 0.5) */
} Arch;

/* He-normal weights [dims], std sqrt(2/fan_in); zero_mean: each output filter centred
 * and rescaled so that flat input regions give no response (random-feature nets). */
static void arch_weight(Arch *a, const char *name, int ndim, const int64_t *dims, gboolean zero_mean)
{
  if (!a->ok) return;
  g_autoptr(CnnfxTensor) t = cnnfx_tensor_new_f32(ndim, dims, a->error);
  if (!t) {
    a->ok = FALSE;
    return;
  }
  size_t fan_in = t->numel / (size_t)dims[0];
  double sd = sqrt(2.0 / (double)fan_in) * (a->wscale > 0 ? a->wscale : 1.0);
  float *w = cnnfx_f32(t);
  for (size_t i = 0; i < t->numel; i++) w[i] = (float)(sd * rand_normal(a->rng));
  if (zero_mean) {
    for (int64_t o = 0; o < dims[0]; o++) {
      float *f = w + o * fan_in;
      double mean = 0, ss = 0;
      for (size_t i = 0; i < fan_in; i++) mean += f[i];
      mean /= (double)fan_in;
      for (size_t i = 0; i < fan_in; i++) {
        f[i] -= (float)mean;
        ss += (double)f[i] * f[i];
      }
      /* unit-variance response to white unit-variance input, times He's sqrt(2) */
      double k = ss > 0 ? sqrt(2.0 / ss) : 0;
      for (size_t i = 0; i < fan_in; i++) f[i] = (float)(f[i] * k);
    }
  }
  a->ok = cnnfx_builder_initializer(a->b, name, t, a->error);
}

static void arch_zeros(Arch *a, const char *name, int64_t n)
{
  if (!a->ok) return;
  g_autoptr(CnnfxTensor) t = cnnfx_tensor_new_f32(1, &n, a->error);
  if (!t) {
    a->ok = FALSE;
    return;
  }
  memset(t->data, 0, t->numel * sizeof(float));
  a->ok = cnnfx_builder_initializer(a->b, name, t, a->error);
}

static void arch_conv(Arch *a, const char *name, const char *in, const char *out, int cin, int cout, int k, int pad,
                      int dil, gboolean zero_mean)
{
  g_autofree char *wn = g_strdup_printf("%s.weight", name);
  g_autofree char *bn = g_strdup_printf("%s.bias", name);
  int64_t wd[4] = {cout, cin, k, k};
  arch_weight(a, wn, 4, wd, zero_mean);
  arch_zeros(a, bn, cout);
  cnnfx_builder_node(a->b, "Conv", name, (const char *[]){in, wn, bn, NULL}, (const char *[]){out, NULL});
  cnnfx_builder_attr_ints(a->b, "kernel_shape", 2, (const int64_t[]){k, k});
  cnnfx_builder_attr_ints(a->b, "pads", 4, (const int64_t[]){pad, pad, pad, pad});
  cnnfx_builder_attr_ints(a->b, "strides", 2, (const int64_t[]){1, 1});
  cnnfx_builder_attr_ints(a->b, "dilations", 2, (const int64_t[]){dil, dil});
  cnnfx_builder_attr_int(a->b, "group", 1);
}

static void arch_unary(Arch *a, const char *op, const char *in, const char *out)
{
  cnnfx_builder_node(a->b, op, out, (const char *[]){in, NULL}, (const char *[]){out, NULL});
}

static void arch_maxpool2(Arch *a, const char *in, const char *out)
{
  cnnfx_builder_node(a->b, "MaxPool", out, (const char *[]){in, NULL}, (const char *[]){out, NULL});
  cnnfx_builder_attr_ints(a->b, "kernel_shape", 2, (const int64_t[]){2, 2});
  cnnfx_builder_attr_ints(a->b, "strides", 2, (const int64_t[]){2, 2});
}

static void arch_fc_alpha(Arch *a, const char *name, const char *in, const char *out, int nin, int nout, float alpha)
{
  g_autofree char *wn = g_strdup_printf("%s.weight", name);
  g_autofree char *bn = g_strdup_printf("%s.bias", name);
  int64_t wd[2] = {nout, nin};
  arch_weight(a, wn, 2, wd, FALSE);
  arch_zeros(a, bn, nout);
  cnnfx_builder_node(a->b, "Gemm", name, (const char *[]){in, wn, bn, NULL}, (const char *[]){out, NULL});
  cnnfx_builder_attr_float(a->b, "alpha", alpha);
  cnnfx_builder_attr_float(a->b, "beta", 1.0f);
  cnnfx_builder_attr_int(a->b, "transB", 1);
}

static void arch_fc(Arch *a, const char *name, const char *in, const char *out, int nin, int nout)
{
  arch_fc_alpha(a, name, in, out, nin, nout, 1.0f);
}

static void build_lenet(Arch *a, int c1, int c2, int f1, int f2)
{
  int64_t in_dims[4] = {-1, 1, 28, 28}, out_dims[2] = {-1, 10};
  cnnfx_builder_input(a->b, "input", CNNFX_F32, 4, in_dims);
  arch_conv(a, "conv1", "input", "conv1", 1, c1, 5, 2, 1, FALSE);
  arch_unary(a, "Relu", "conv1", "relu1");
  arch_maxpool2(a, "relu1", "pool1");
  arch_conv(a, "conv2", "pool1", "conv2", c1, c2, 5, 0, 1, FALSE);
  arch_unary(a, "Relu", "conv2", "relu2");
  arch_maxpool2(a, "relu2", "pool2");
  cnnfx_builder_node(a->b, "Flatten", "flatten", (const char *[]){"pool2", NULL}, (const char *[]){"flat", NULL});
  cnnfx_builder_attr_int(a->b, "axis", 1);
  arch_fc(a, "fc1", "flat", "fc1", c2 * 25, f1);
  arch_unary(a, "Relu", "fc1", "relu3");
  arch_fc(a, "fc2", "relu3", "fc2", f1, f2);
  arch_unary(a, "Relu", "fc2", "relu4");
  arch_fc(a, "fc3", "relu4", "logits", f2, 10);
  cnnfx_builder_output(a->b, "logits", CNNFX_F32, 2, out_dims);
}

static void build_random_style(Arch *a)
{
  static const struct { const char *name; int k, dil, ch; } banks[] = {
    {"rf3", 3, 1, 64}, {"rf5", 5, 1, 64}, {"rf7", 7, 1, 64},
    {"rf11", 11, 1, 64}, {"rf7d2", 7, 2, 64}, {"rf7d4", 7, 4, 64},
  };
  int64_t in_dims[4] = {-1, 3, -1, -1};
  cnnfx_builder_input(a->b, "input", CNNFX_F32, 4, in_dims);
  for (size_t i = 0; i < G_N_ELEMENTS(banks); i++) {
    g_autofree char *conv = g_strdup_printf("%s_conv", banks[i].name);
    int pad = banks[i].dil * (banks[i].k - 1) / 2;
    arch_conv(a, conv, "input", conv, 3, banks[i].ch, banks[i].k, pad, banks[i].dil, TRUE);
    arch_unary(a, "Relu", conv, banks[i].name);
  }
  /* Coarse scale: 4x4 average pooling, then a 7x7 bank dilated by 2 (about 52 px wide at
   * full resolution), for the large structures of a style image. */
  cnnfx_builder_node(a->b, "AveragePool", "pool4", (const char *[]){"input", NULL}, (const char *[]){"pool4", NULL});
  cnnfx_builder_attr_ints(a->b, "kernel_shape", 2, (const int64_t[]){4, 4});
  cnnfx_builder_attr_ints(a->b, "strides", 2, (const int64_t[]){4, 4});
  arch_conv(a, "rfp4_conv", "pool4", "rfp4_conv", 3, 64, 7, 6, 2, TRUE);
  arch_unary(a, "Relu", "rfp4_conv", "rfp4");
  for (size_t i = 0; i < G_N_ELEMENTS(banks); i++) {
    int64_t od[4] = {-1, banks[i].ch, -1, -1};
    cnnfx_builder_output(a->b, banks[i].name, CNNFX_F32, 4, od);
  }
  cnnfx_builder_output(a->b, "rfp4", CNNFX_F32, 4, (const int64_t[]){-1, 64, -1, -1});
}


/* ---- CIFAR-style networks with BatchNorm (airbench-like) ----------------------------- */

static void arch_const(Arch *a, const char *name, int64_t n, float v)
{
  if (!a->ok) return;
  g_autoptr(CnnfxTensor) t = cnnfx_tensor_new_f32(1, &n, a->error);
  if (!t) {
    a->ok = FALSE;
    return;
  }
  float *p = cnnfx_f32(t);
  for (int64_t i = 0; i < n; i++) p[i] = v;
  a->ok = cnnfx_builder_initializer(a->b, name, t, a->error);
}

/* Identity ("dirac") start for a conv3x3 [cout,cin,3,3]: PyTorch's default uniform weights
 * (bound 1/sqrt(fan_in)), then output channel o < cin passes input channel o through unchanged,
 * an implicit residual connection (airbench). */
static void arch_weight_dirac(Arch *a, const char *name, int cout, int cin)
{
  if (!a->ok) return;
  int64_t dims[4] = {cout, cin, 3, 3};
  g_autoptr(CnnfxTensor) t = cnnfx_tensor_new_f32(4, dims, a->error);
  if (!t) {
    a->ok = FALSE;
    return;
  }
  float *w = cnnfx_f32(t);
  double bound = 1.0 / sqrt((double)cin * 9);
  for (size_t i = 0; i < t->numel; i++) w[i] = (float)(bound * (2.0 * g_rand_double(a->rng) - 1.0));
  for (int o = 0; o < MIN(cin, cout); o++) {
    memset(w + (size_t)o * cin * 9, 0, (size_t)cin * 9 * sizeof(float));
    w[((size_t)o * cin + o) * 9 + 4] = 1.0f;
  }
  a->ok = cnnfx_builder_initializer(a->b, name, t, a->error);
}

/* conv3x3 pad 1 without bias */
static void arch_conv3(Arch *a, const char *name, const char *in, const char *out, int cin, int cout)
{
  g_autofree char *wn = g_strdup_printf("%s.weight", name);
  int64_t wd[4] = {cout, cin, 3, 3};
  if (a->dirac) arch_weight_dirac(a, wn, cout, cin);
  else arch_weight(a, wn, 4, wd, FALSE);
  cnnfx_builder_node(a->b, "Conv", name, (const char *[]){in, wn, NULL}, (const char *[]){out, NULL});
  cnnfx_builder_attr_ints(a->b, "kernel_shape", 2, (const int64_t[]){3, 3});
  cnnfx_builder_attr_ints(a->b, "pads", 4, (const int64_t[]){1, 1, 1, 1});
  cnnfx_builder_attr_ints(a->b, "strides", 2, (const int64_t[]){1, 1});
}

/* BatchNormalization; training: batch statistics, running statistics as extra outputs
 * NAME.running_mean / NAME.running_var that the trainer copies into NAME.mean / NAME.var. */
static void arch_bn(Arch *a, const char *name, const char *in, const char *out, int c, gboolean training)
{
  g_autofree char *sn = g_strdup_printf("%s.scale", name);
  g_autofree char *bn = g_strdup_printf("%s.bias", name);
  g_autofree char *mn = g_strdup_printf("%s.mean", name);
  g_autofree char *vn = g_strdup_printf("%s.var", name);
  g_autofree char *rm = g_strdup_printf("%s.running_mean", name);
  g_autofree char *rv = g_strdup_printf("%s.running_var", name);
  arch_const(a, sn, c, 1.0f);
  arch_const(a, bn, c, 0.0f);
  arch_const(a, mn, c, 0.0f);
  arch_const(a, vn, c, 1.0f);
  if (training)
    cnnfx_builder_node(a->b, "BatchNormalization", name, (const char *[]){in, sn, bn, mn, vn, NULL},
                       (const char *[]){out, rm, rv, NULL});
  else
    cnnfx_builder_node(a->b, "BatchNormalization", name, (const char *[]){in, sn, bn, mn, vn, NULL},
                       (const char *[]){out, NULL});
  cnnfx_builder_attr_float(a->b, "epsilon", 1e-5f);
  /* ONNX: running = momentum * running + (1 - momentum) * batch; 0.5 unless the arch says (airbench: 0.4) */
  cnnfx_builder_attr_float(a->b, "momentum", a->bn_momentum > 0 ? a->bn_momentum : 0.5f);
  if (training) cnnfx_builder_attr_int(a->b, "training_mode", 1);
}

/* stem conv3x3 + BN + ReLU at 32x32; three blocks (conv3x3, 2x2 max-pool, BN, ReLU,
 * conv3x3, BN, ReLU) halving the size each; global max-pool; Gemm to the classes.
 * deep: each block also has airbench96's third conv with a residual: after the second
 * activation conv3x3 + BN, plus the first activation's output, then the activation
 * (bK.<act>3, the block's output). */
static void build_cifar(Arch *a, int w0, int w1, int w2, int w3, const char *act, gboolean deep, int classes,
                        gboolean training)
{
  /* act: "Relu" or "Gelu"; the activations' outputs are named after it (stem.relu, b1.relu1 / b1.gelu1 ...) */
  const char *an = !strcmp(act, "Gelu") ? "gelu" : "relu";
  char stem_act[32];
  g_snprintf(stem_act, sizeof stem_act, "stem.%s", an);
  int64_t in_dims[4] = {-1, 3, 32, 32}, out_dims[2] = {-1, classes};
  cnnfx_builder_input(a->b, "input", CNNFX_F32, 4, in_dims);
  if (w0 > 0) {
    arch_conv3(a, "stem.conv", "input", "stem.conv", 3, w0);
    arch_bn(a, "stem.bn", "stem.conv", "stem.bn", w0, training);
    arch_unary(a, act, "stem.bn", stem_act);
  } else {
    /* whitening stem (Page 2018, airbench): a 2x2 conv 3 -> 24 without padding whose weights
     * are the training patches' whitening matrix and its negation (set by the trainer from the
     * data, cnnfx_whitening_weights, and not trained), with a bias, then ReLU.  32 -> 31 px. */
    w0 = CNNFX_WHITEN_WIDTH;
    arch_conv(a, "whiten", "input", "whiten", 3, w0, 2, 0, 1, FALSE);
    arch_unary(a, act, "whiten", stem_act);
  }
  const int widths[3] = {w1, w2, w3};
  char prev[32];
  g_strlcpy(prev, stem_act, sizeof prev);
  int cin = w0;
  for (int k = 0; k < 3; k++) {
    char c1[32], p1[32], b1[32], r1[32], c2[32], b2[32], r2[32];
    g_snprintf(c1, sizeof c1, "b%d.conv1", k + 1);
    g_snprintf(p1, sizeof p1, "b%d.pool", k + 1);
    g_snprintf(b1, sizeof b1, "b%d.bn1", k + 1);
    g_snprintf(r1, sizeof r1, "b%d.%s1", k + 1, an);
    g_snprintf(c2, sizeof c2, "b%d.conv2", k + 1);
    g_snprintf(b2, sizeof b2, "b%d.bn2", k + 1);
    g_snprintf(r2, sizeof r2, "b%d.%s2", k + 1, an);
    arch_conv3(a, c1, prev, c1, cin, widths[k]);
    arch_maxpool2(a, c1, p1);
    arch_bn(a, b1, p1, b1, widths[k], training);
    arch_unary(a, act, b1, r1);
    arch_conv3(a, c2, r1, c2, widths[k], widths[k]);
    arch_bn(a, b2, c2, b2, widths[k], training);
    arch_unary(a, act, b2, r2);
    g_strlcpy(prev, r2, sizeof prev);
    if (deep) {
      char c3[32], b3[32], s3[32], r3[32];
      g_snprintf(c3, sizeof c3, "b%d.conv3", k + 1);
      g_snprintf(b3, sizeof b3, "b%d.bn3", k + 1);
      g_snprintf(s3, sizeof s3, "b%d.add", k + 1);
      g_snprintf(r3, sizeof r3, "b%d.%s3", k + 1, an);
      arch_conv3(a, c3, r2, c3, widths[k], widths[k]);
      arch_bn(a, b3, c3, b3, widths[k], training);
      cnnfx_builder_node(a->b, "Add", s3, (const char *[]){b3, r1, NULL}, (const char *[]){s3, NULL});
      arch_unary(a, act, s3, r3);
      g_strlcpy(prev, r3, sizeof prev);
    }
    cin = widths[k];
  }
  cnnfx_builder_node(a->b, "GlobalMaxPool", "gpool", (const char *[]){prev, NULL}, (const char *[]){"gpool", NULL});
  cnnfx_builder_node(a->b, "Flatten", "flatten", (const char *[]){"gpool", NULL}, (const char *[]){"flat", NULL});
  cnnfx_builder_attr_int(a->b, "axis", 1);
  /* The head's product is scaled by 1/9 (Gemm alpha), as airbench scales its head's output:
   * otherwise the head learns far faster than the rest and the logits blow up early. */
  arch_fc_alpha(a, "fc", "flat", "logits", w3, classes, 1.0f / 9.0f);
  cnnfx_builder_output(a->b, "logits", CNNFX_F32, 2, out_dims);
}

typedef struct {
  const char *name;
  int w0, w1, w2, w3;
  const char *act;
  gboolean deep;
} CifarArch;

static const CifarArch cifar_archs[] = {
  {"cifar-net", 32, 64, 256, 256, "Relu", FALSE},  /* airbench94-like widths, 0.29 GFLOP per 32x32 image */
  {"cifar-white", 0, 64, 256, 256, "Relu", FALSE}, /* airbench94: whitening stem, identity init, BN without scale */
  {"cifar-white-gelu", 0, 64, 256, 256, "Gelu", FALSE}, /* the same with airbench94's GELU (opset 20) */
  {"cifar-white-gelu-wide", 0, 128, 384, 384, "Gelu", FALSE}, /* airbench95's widths: 2.6x the work per image */
  {"cifar-white-gelu-mid", 0, 96, 320, 320, "Gelu", FALSE},   /* between the two: 1.7x the work per image */
  /* airbench96's depth (a third conv per block, residual): 1.35x the 64/256/256 network's work,
   * about the mid network's time per image (the shipped default) */
  {"cifar-white-gelu-deep", 0, 64, 256, 256, "Gelu", TRUE},
  {"cifar-net-m", 24, 48, 128, 192, "Relu", FALSE},
  {"cifar-net-s", 16, 32, 64, 128, "Relu", FALSE},
  {"cifar-tiny", 8, 16, 32, 32, "Relu", FALSE},
  {"cifar-tiny-gelu", 0, 16, 32, 32, "Gelu", FALSE}, /* tests: whitened and GELU, tiny */
};

static const char *const arch_names[] = {"lenet5", "lenet5-wide", "random-style", "cifar-net", "cifar-white",
                                         "cifar-white-gelu", "cifar-white-gelu-wide", "cifar-white-gelu-mid", "cifar-white-gelu-deep", "cifar-net-m", "cifar-net-s", "cifar-tiny",
                                         "cifar-tiny-gelu", NULL};

const char *const *cnnfx_arch_names(void) { return arch_names; }

GBytes *cnnfx_arch_build(const char *arch, guint64 seed, GError **error)
{
  return cnnfx_arch_build_full(arch, seed, 10, FALSE, error);
}

/* The CIFAR table's entry for arch, NULL for the other architectures. */
static const CifarArch *cifar_arch(const char *arch)
{
  for (size_t i = 0; i < G_N_ELEMENTS(cifar_archs); i++)
    if (!strcmp(arch, cifar_archs[i].name)) return &cifar_archs[i];
  return NULL;
}

gboolean cnnfx_arch_is_whitened(const char *arch)
{
  const CifarArch *c = cifar_arch(arch);
  return c && c->w0 == 0;
}

gboolean cnnfx_arch_uses_gelu(const char *arch)
{
  const CifarArch *c = cifar_arch(arch);
  return c && !strcmp(c->act, "Gelu");
}

/* the last block's output (Grad-CAM) and the middle block's (dream): the second activation, or
 * the third (after the residual) in the deep networks */
const char *cnnfx_arch_cam_layer(const char *arch)
{
  const CifarArch *c = cifar_arch(arch);
  if (!c) return NULL;
  gboolean gelu = !strcmp(c->act, "Gelu");
  return c->deep ? (gelu ? "b3.gelu3" : "b3.relu3") : (gelu ? "b3.gelu2" : "b3.relu2");
}

const char *cnnfx_arch_dream_layer(const char *arch)
{
  const CifarArch *c = cifar_arch(arch);
  if (!c) return NULL;
  gboolean gelu = !strcmp(c->act, "Gelu");
  return c->deep ? (gelu ? "b2.gelu3" : "b2.relu3") : (gelu ? "b2.gelu2" : "b2.relu2");
}

gboolean cnnfx_arch_has_batchnorm(const char *arch) { return cifar_arch(arch) != NULL; }

GBytes *cnnfx_arch_build_full(const char *arch, guint64 seed, int classes, gboolean training, GError **error)
{
  const CifarArch *cifar = cifar_arch(arch);
  gboolean bn = cifar != NULL;
  if (classes < 2 || classes > 100000) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "class count %d out of range", classes);
    return NULL;
  }
  /* Gelu is an operator from opset 20 on; BatchNormalization in training form needs 14, Relu-only 15 */
  g_autoptr(CnnfxBuilder) b = cnnfx_builder_new(cnnfx_arch_uses_gelu(arch) ? 20 : bn ? 15 : 13);
  Arch a = {.b = b, .rng = seeded_rand(seed), .error = error, .ok = TRUE};
  char seedtxt[32];
  g_snprintf(seedtxt, sizeof seedtxt, "%" G_GUINT64_FORMAT, seed);
  if (!strcmp(arch, "lenet5")) {
    build_lenet(&a, 6, 16, 120, 84);
  } else if (!strcmp(arch, "lenet5-wide")) {
    build_lenet(&a, 32, 64, 256, 128);
  } else if (!strcmp(arch, "random-style")) {
    build_random_style(&a);
    cnnfx_builder_doc(b, "Weight-free multi-scale random-feature network for texture and style "
                         "(Ustyuzhaninov et al. 2016, He et al. 2016).  Zero-mean Gaussian filters, "
                         "regenerate with: cnnfx train --arch random-style --seed SEED");
  } else if (bn) {
    if (cnnfx_arch_is_whitened(arch)) {
      a.dirac = TRUE;
      a.bn_momentum = 0.4f;
    }
    build_cifar(&a, cifar->w0, cifar->w1, cifar->w2, cifar->w3, cifar->act, cifar->deep, classes, training);
  } else {
    g_rand_free(a.rng);
    g_autofree char *list = g_strjoinv(", ", (char **)arch_names);
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "unknown architecture '%s' (known: %s)", arch, list);
    return NULL;
  }
  g_rand_free(a.rng);
  if (!a.ok) return NULL;
  cnnfx_builder_metadata(b, "cnnfx.arch", arch);
  cnnfx_builder_metadata(b, "cnnfx.seed", seedtxt);
  return cnnfx_builder_finish(b, arch, error);
}

/* ---- patch whitening ------------------------------------------------------------------ */

/* Eigen-decomposition of a symmetric n x n matrix a (destroyed) by cyclic Jacobi rotations:
 * eigenvalues in val[n], eigenvectors in the columns of vec[n*n]. */
static void jacobi_eigen(double *a, int n, double *val, double *vec)
{
  for (int i = 0; i < n * n; i++) vec[i] = 0;
  for (int i = 0; i < n; i++) vec[i * n + i] = 1;
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0, diag = 0;
    for (int p = 0; p < n; p++) {
      diag += a[p * n + p] * a[p * n + p];
      for (int q = p + 1; q < n; q++) off += a[p * n + q] * a[p * n + q];
    }
    if (off <= 1e-30 * diag || off == 0) break;
    for (int p = 0; p < n; p++)
      for (int q = p + 1; q < n; q++) {
        double apq = a[p * n + q];
        if (apq == 0) continue;
        double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
        double c = 1 / sqrt(t * t + 1), s = t * c;
        for (int k = 0; k < n; k++) { /* A <- A J */
          double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (int k = 0; k < n; k++) { /* A <- J^T A */
          double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (int k = 0; k < n; k++) {
          double vkp = vec[k * n + p], vkq = vec[k * n + q];
          vec[k * n + p] = c * vkp - s * vkq;
          vec[k * n + q] = s * vkp + c * vkq;
        }
      }
  }
  for (int i = 0; i < n; i++) val[i] = a[i * n + i];
}

gboolean cnnfx_whitening_weights(const float *x, int n, int c, int h, int w, int k, double eps, CnnfxTensor *out,
                                 GError **error)
{
  const int d = c * k * k;
  if (n < 1 || c < 1 || k < 1 || h < k || w < k || d > 64 || !out || out->dtype != CNNFX_F32 || out->ndim != 4 ||
      out->dims[0] != 2 * d || out->dims[1] != c || out->dims[2] != k || out->dims[3] != k) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "whitening: needs a [%d,%d,%d,%d] weight and images of at least %dx%d",
                    2 * d, c, k, k, k, k);
    return FALSE;
  }
  g_autofree double *cov = g_try_new0(double, (size_t)d * d);
  g_autofree double *vec = g_try_new(double, (size_t)d * d);
  g_autofree double *val = g_try_new(double, d);
  if (!cov || !vec || !val) {
    cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory (whitening)");
    return FALSE;
  }
  /* second moments of all k x k patches, in the conv weight's (channel, row, column) order */
  const size_t hw = (size_t)h * w;
  double v[64];
  size_t count = 0;
  for (int i = 0; i < n; i++)
    for (int y = 0; y + k <= h; y++)
      for (int xx = 0; xx + k <= w; xx++) {
        int j = 0;
        for (int ch = 0; ch < c; ch++)
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++)
              v[j++] = x[((size_t)i * c + ch) * hw + (size_t)(y + ky) * w + xx + kx];
        for (int p = 0; p < d; p++)
          for (int q = p; q < d; q++) cov[p * d + q] += v[p] * v[q];
        count++;
      }
  for (int p = 0; p < d; p++)
    for (int q = p; q < d; q++) cov[q * d + p] = cov[p * d + q] /= (double)count;
  jacobi_eigen(cov, d, val, vec);
  /* largest eigenvalue first; each eigenvector's sign fixed so its largest entry is positive */
  int order[64];
  for (int i = 0; i < d; i++) order[i] = i;
  for (int i = 0; i < d; i++)
    for (int j = i + 1; j < d; j++)
      if (val[order[j]] > val[order[i]]) {
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
  float *wt = cnnfx_f32(out);
  for (int r = 0; r < d; r++) {
    int e = order[r];
    int big = 0;
    for (int p = 1; p < d; p++)
      if (fabs(vec[p * d + e]) > fabs(vec[big * d + e])) big = p;
    double sgn = vec[big * d + e] < 0 ? -1.0 : 1.0;
    double sc = sgn / sqrt(MAX(val[e], 0.0) + eps);
    for (int p = 0; p < d; p++) {
      wt[(size_t)r * d + p] = (float)(vec[p * d + e] * sc);
      wt[(size_t)(r + d) * d + p] = (float)(-vec[p * d + e] * sc);
    }
  }
  return TRUE;
}

/* ---- BatchNorm training support ---------------------------------------------------- */

char **cnnfx_train_bn_stat_pairs(const CnnfxModel *m)
{
  GPtrArray *a = g_ptr_array_new();
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (strcmp(n->op_type, "BatchNormalization") || n->opset < 14 || !cnnfx_attr_int(n, "training_mode", 0))
      continue;
    for (int o = 1; o < MIN(n->n_out, 3); o++) {
      if (n->out[o] < 0 || n->in[2 + o] < 0 || !m->values[n->in[2 + o]].init) continue;
      g_ptr_array_add(a, g_strdup(m->values[n->out[o]].name));
      g_ptr_array_add(a, g_strdup(m->values[n->in[2 + o]].name));
    }
  }
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}

double cnnfx_train_bn_stat_momentum(const CnnfxModel *m, const char *stat_output)
{
  int v = stat_output ? cnnfx_model_value_id(m, stat_output) : -1;
  if (v < 0) return -1;
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    if (strcmp(n->op_type, "BatchNormalization") || !cnnfx_attr_int(n, "training_mode", 0)) continue;
    for (int o = 1; o < MIN(n->n_out, 3); o++)
      if (n->out[o] == v) return cnnfx_attr_float(n, "momentum", 0.9f);
  }
  return -1;
}

gboolean cnnfx_train_copy_weights(CnnfxSession *dst, const CnnfxModel *dst_model, CnnfxSession *src,
                                  const CnnfxModel *src_model, int *n_copied, GError **error)
{
  int copied = 0;
  for (int v = 0; v < dst_model->n_values; v++) {
    const CnnfxValue *val = &dst_model->values[v];
    if (!val->init || val->init->dtype != CNNFX_F32) continue;
    int sv = cnnfx_model_value_id(src_model, val->name);
    if (sv < 0 || !src_model->values[sv].init) continue;
    const CnnfxTensor *t = src ? cnnfx_session_get(src, val->name, error) : src_model->values[sv].init;
    if (!t) return FALSE;
    if (!cnnfx_same_shape(t, val->init)) continue;
    if (!cnnfx_session_set_weight(dst, val->name, t, error)) return FALSE;
    copied++;
  }
  if (n_copied) *n_copied = copied;
  return TRUE;
}

/* ---- optimizers ------------------------------------------------------------------ */

typedef struct {
  char *name;
  CnnfxTensor *w;   /* current value (our copy) */
  float *m, *v;     /* momentum buffer / Adam moments */
  float *slow;      /* lookahead's slow weights (after its first call) */
  double lr_mult, wd_mult;
  gboolean frozen;
} Param;

struct CnnfxOptimizer {
  CnnfxSession *s;
  CnnfxOptimConfig cfg;
  GArray *params;   /* Param */
  gint64 steps;
};

static void param_clear(gpointer p)
{
  Param *q = p;
  g_free(q->name);
  if (q->w) cnnfx_tensor_unref(q->w);
  g_free(q->m);
  g_free(q->v);
  g_free(q->slow);
}

void cnnfx_optimizer_free(CnnfxOptimizer *o)
{
  if (!o) return;
  g_array_free(o->params, TRUE);
  g_free(o);
}

/* Is float initializer v read by some node at a differentiable input? */
static gboolean trainable(const CnnfxModel *m, int v)
{
  for (int k = 0; k < m->n_nodes; k++) {
    const CnnfxNode *n = &m->nodes[k];
    gboolean bn_train = !strcmp(n->op_type, "BatchNormalization") && n->opset >= 14 &&
                        cnnfx_attr_int(n, "training_mode", 0) != 0;
    for (int i = 0; i < n->n_in; i++) {
      if (bn_train && i >= 3) continue; /* running statistics: updated from the batch, not by gradients */
      if (n->in[i] == v && cnnfx_node_input_differentiable(n, i)) return TRUE;
    }
  }
  return FALSE;
}

CnnfxOptimizer *cnnfx_optimizer_new(const CnnfxModel *m, CnnfxSession *s, const CnnfxOptimConfig *cfg,
                                    GError **error)
{
  if (cfg->momentum < 0 || cfg->weight_decay < 0 || cfg->beta1 < 0 || cfg->beta1 >= 1 || cfg->beta2 < 0 ||
      cfg->beta2 >= 1 || cfg->eps < 0) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "optimizer settings out of range");
    return NULL;
  }
  g_autoptr(CnnfxOptimizer) o = g_new0(CnnfxOptimizer, 1);
  o->s = s;
  o->cfg = *cfg;
  if (o->cfg.beta1 == 0) o->cfg.beta1 = 0.9;
  if (o->cfg.beta2 == 0) o->cfg.beta2 = 0.999;
  if (o->cfg.eps == 0) o->cfg.eps = 1e-8;
  o->params = g_array_new(FALSE, TRUE, sizeof(Param));
  g_array_set_clear_func(o->params, param_clear);
  for (int v = 0; v < m->n_values; v++) {
    const CnnfxValue *val = &m->values[v];
    if (!val->init || val->init->dtype != CNNFX_F32 || !trainable(m, v)) continue;
    if (cfg->only && !g_hash_table_contains(cfg->only, val->name)) continue;
    if (cfg->skip && g_hash_table_contains(cfg->skip, val->name)) continue;
    const CnnfxTensor *cur = cnnfx_session_get(s, val->name, error);
    if (!cur) return NULL;
    Param p = {0};
    p.name = g_strdup(val->name);
    p.lr_mult = p.wd_mult = 1.0;
    if (cfg->scaled && cfg->scaled_lr > 0 && g_hash_table_contains(cfg->scaled, val->name)) {
      p.lr_mult = cfg->scaled_lr;
      p.wd_mult = 1.0 / cfg->scaled_lr;
    }
    g_array_append_val(o->params, p);
    Param *q = &g_array_index(o->params, Param, o->params->len - 1);
    if (!(q->w = cnnfx_tensor_copy(cur, error))) return NULL;
    q->m = g_try_new0(float, q->w->numel + 1);
    if (cfg->kind == CNNFX_OPTIM_ADAM) q->v = g_try_new0(float, q->w->numel + 1);
    if (!q->m || (cfg->kind == CNNFX_OPTIM_ADAM && !q->v)) {
      cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory for optimizer state");
      return NULL;
    }
  }
  if (o->params->len == 0) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "the model has no trainable float weights");
    return NULL;
  }
  return g_steal_pointer(&o);
}

int cnnfx_optimizer_n_params(const CnnfxOptimizer *o) { return (int)o->params->len; }
const char *cnnfx_optimizer_param_name(const CnnfxOptimizer *o, int i)
{
  return g_array_index(o->params, Param, i).name;
}
gint64 cnnfx_optimizer_steps(const CnnfxOptimizer *o) { return o->steps; }
size_t cnnfx_optimizer_n_values(const CnnfxOptimizer *o)
{
  size_t n = 0;
  for (guint i = 0; i < o->params->len; i++) n += g_array_index(o->params, Param, i).w->numel;
  return n;
}

gboolean cnnfx_optimizer_step(CnnfxOptimizer *o, double lr, GError **error)
{
  const CnnfxOptimConfig *c = &o->cfg;
  gint64 t = o->steps + 1;
  double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
  for (guint pi = 0; pi < o->params->len; pi++) {
    Param *p = &g_array_index(o->params, Param, pi);
    if (p->frozen) continue;
    CnnfxTensor *gt = cnnfx_session_grad(o->s, p->name, error);
    if (!gt) return FALSE;
    if (!cnnfx_same_shape(gt, p->w)) {
      cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "gradient of '%s' has the wrong shape", p->name);
      return FALSE;
    }
    const float *g = cnnfx_f32(gt);
    float *w = cnnfx_f32(p->w), *m = p->m, *v = p->v;
    ptrdiff_t n = (ptrdiff_t)p->w->numel;
    float wd = (float)(c->weight_decay * p->wd_mult);
    if (c->kind == CNNFX_OPTIM_SGD) {
      float mu = (float)c->momentum, flr = (float)(lr * p->lr_mult);
      gboolean first = o->steps == 0, nest = c->nesterov;
#pragma omp parallel for if (n > 65536) schedule(static)
      for (ptrdiff_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        if (mu != 0) {
          m[i] = first ? d : mu * m[i] + d;
          d = nest ? d + mu * m[i] : m[i];
        }
        w[i] -= flr * d;
      }
    } else {
      float b1 = (float)c->beta1, b2 = (float)c->beta2;
      double step = lr * p->lr_mult / bc1, sbc2 = sqrt(bc2);
      float fstep = (float)step, fs2 = (float)sbc2, eps = (float)c->eps;
#pragma omp parallel for if (n > 65536) schedule(static)
      for (ptrdiff_t i = 0; i < n; i++) {
        float d = g[i] + wd * w[i];
        m[i] = b1 * m[i] + (1 - b1) * d;
        v[i] = b2 * v[i] + (1 - b2) * d * d;
        w[i] -= fstep * m[i] / (sqrtf(v[i]) / fs2 + eps);
      }
    }
    if (!cnnfx_session_set_weight(o->s, p->name, p->w, error)) return FALSE;
  }
  o->steps = t;
  return TRUE;
}

gboolean cnnfx_optimizer_prune_grads(CnnfxOptimizer *o, GError **error)
{
  g_autoptr(GPtrArray) names = g_ptr_array_new();
  for (guint i = 0; i < o->params->len; i++) {
    const Param *p = &g_array_index(o->params, Param, i);
    if (!p->frozen) g_ptr_array_add(names, (gpointer)p->name);
  }
  g_ptr_array_add(names, NULL);
  return cnnfx_session_want_grads(o->s, (const char *const *)names->pdata, error);
}

gboolean cnnfx_optimizer_freeze(CnnfxOptimizer *o, const char *name, gboolean frozen)
{
  for (guint i = 0; i < o->params->len; i++) {
    Param *p = &g_array_index(o->params, Param, i);
    if (!strcmp(p->name, name)) {
      p->frozen = frozen;
      return TRUE;
    }
  }
  return FALSE;
}

gboolean cnnfx_optimizer_lookahead(CnnfxOptimizer *o, double decay, GError **error)
{
  for (guint pi = 0; pi < o->params->len; pi++) {
    Param *p = &g_array_index(o->params, Param, pi);
    float *w = cnnfx_f32(p->w);
    size_t n = p->w->numel;
    if (!p->slow) {
      if (!(p->slow = g_try_new(float, n + 1))) {
        cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory for the lookahead weights");
        return FALSE;
      }
      memcpy(p->slow, w, n * sizeof(float));
      continue;
    }
    float a = (float)(1.0 - decay);
    for (size_t i = 0; i < n; i++) {
      p->slow[i] += a * (w[i] - p->slow[i]);
      w[i] = p->slow[i];
    }
    if (!cnnfx_session_set_weight(o->s, p->name, p->w, error)) return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_optimizer_lookahead_started(const CnnfxOptimizer *o)
{
  return o->params->len > 0 && g_array_index(o->params, Param, 0).slow != NULL;
}

/* State file: "CNNFXOPT" u32 version, u32 kind, i64 user counter, i64 steps, u32 n, then per
 * parameter u32 name length, name, u64 numel, m[numel] (and v[numel] for Adam), all LE.
 * Version 2 adds per parameter u32 flags (1: frozen, 2: slow weights follow) and slow[numel]. */
#define STATE_MAGIC "CNNFXOPT"

GBytes *cnnfx_optimizer_save_state(const CnnfxOptimizer *o, gint64 user_counter)
{
  GByteArray *a = g_byte_array_new();
  guint32 u32;
  guint64 u64;
  g_byte_array_append(a, (const guint8 *)STATE_MAGIC, 8);
#define PUT32(x) (u32 = GUINT32_TO_LE((guint32)(x)), g_byte_array_append(a, (const guint8 *)&u32, 4))
#define PUT64(x) (u64 = GUINT64_TO_LE((guint64)(x)), g_byte_array_append(a, (const guint8 *)&u64, 8))
  PUT32(2);
  PUT32(o->cfg.kind);
  PUT64(user_counter);
  PUT64(o->steps);
  PUT32(o->params->len);
  for (guint i = 0; i < o->params->len; i++) {
    const Param *p = &g_array_index(o->params, Param, i);
    PUT32(strlen(p->name));
    g_byte_array_append(a, (const guint8 *)p->name, (guint)strlen(p->name));
    PUT64(p->w->numel);
    g_byte_array_append(a, (const guint8 *)p->m, (guint)(p->w->numel * 4));
    if (p->v) g_byte_array_append(a, (const guint8 *)p->v, (guint)(p->w->numel * 4));
    PUT32((p->frozen ? 1 : 0) | (p->slow ? 2 : 0));
    if (p->slow) g_byte_array_append(a, (const guint8 *)p->slow, (guint)(p->w->numel * 4));
  }
#undef PUT32
#undef PUT64
  return g_byte_array_free_to_bytes(a);
}

gboolean cnnfx_optimizer_load_state(CnnfxOptimizer *o, const void *data, size_t len, gint64 *user_counter,
                                    GError **error)
{
  const guint8 *p = data, *end = p + len;
  guint32 u32;
  guint64 u64;
#define GET(dst, n) do { if ((size_t)(end - p) < (n)) goto bad; memcpy((dst), p, (n)); p += (n); } while (0)
  char magic[8];
  GET(magic, 8);
  if (memcmp(magic, STATE_MAGIC, 8)) goto bad;
  GET(&u32, 4);
  guint32 version = GUINT32_FROM_LE(u32);
  if (version != 1 && version != 2) goto bad;
  GET(&u32, 4);
  if (GUINT32_FROM_LE(u32) != (guint32)o->cfg.kind) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "optimizer state was saved by a different optimizer");
    return FALSE;
  }
  GET(&u64, 8);
  gint64 counter = (gint64)GUINT64_FROM_LE(u64);
  GET(&u64, 8);
  gint64 steps = (gint64)GUINT64_FROM_LE(u64);
  GET(&u32, 4);
  guint32 n = GUINT32_FROM_LE(u32);
  if (n != o->params->len) goto mismatch;
  for (guint i = 0; i < n; i++) {
    Param *q = &g_array_index(o->params, Param, i);
    GET(&u32, 4);
    guint32 nl = GUINT32_FROM_LE(u32);
    if ((size_t)(end - p) < nl) goto bad;
    if (nl != strlen(q->name) || memcmp(p, q->name, nl)) goto mismatch;
    p += nl;
    GET(&u64, 8);
    if (GUINT64_FROM_LE(u64) != q->w->numel) goto mismatch;
    size_t bytes = q->w->numel * 4;
    GET(q->m, bytes);
    if (q->v) GET(q->v, bytes);
    if (version >= 2) {
      GET(&u32, 4);
      guint32 flags = GUINT32_FROM_LE(u32);
      q->frozen = (flags & 1) != 0;
      if (flags & 2) {
        if (!q->slow && !(q->slow = g_try_new(float, q->w->numel + 1))) {
          cnnfx_set_error(error, CNNFX_ERROR_NOMEM, "out of memory for the lookahead weights");
          return FALSE;
        }
        GET(q->slow, bytes);
      }
    }
  }
#undef GET
  o->steps = steps;
  if (user_counter) *user_counter = counter;
  return TRUE;
bad:
  cnnfx_set_error(error, CNNFX_ERROR_PARSE, "optimizer state file is damaged");
  return FALSE;
mismatch:
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "optimizer state does not match the model's weights");
  return FALSE;
}

/* ---- schedules -------------------------------------------------------------------- */

double cnnfx_lr_at(CnnfxLrSchedule kind, double base, gint64 done, gint64 total, gint64 step_every, double gamma,
                   double min_factor)
{
  return cnnfx_lr_at_end(kind, base, done, total, step_every, gamma, min_factor, 0.0);
}

double cnnfx_lr_at_end(CnnfxLrSchedule kind, double base, gint64 done, gint64 total, gint64 step_every, double gamma,
                       double min_factor, double end_factor)
{
  switch (kind) {
  case CNNFX_LR_STEP:
    if (step_every <= 0) return base;
    return base * pow(gamma, (double)(done / step_every));
  case CNNFX_LR_COSINE: {
    if (total <= 0) return base;
    double t = CLAMP((double)done / (double)total, 0.0, 1.0);
    return base * (min_factor + (1.0 - min_factor) * 0.5 * (1.0 + cos(G_PI * t)));
  }
  case CNNFX_LR_ONECYCLE: {
    /* linear from base*min_factor up to base over step_every steps, then linearly down to 0 */
    if (total <= 0) return base;
    gint64 warm = CLAMP(step_every, 0, total);
    if (done < warm) return base * (min_factor + (1.0 - min_factor) * (double)done / (double)warm);
    if (total == warm) return base;
    double f = MAX(0.0, (double)(total - done) / (double)(total - warm));
    return base * (end_factor + (1.0 - end_factor) * f);
  }
  default:
    return base;
  }
}

/* ---- loss ---------------------------------------------------------------------------- */

static gboolean logits_shape(const CnnfxTensor *t, int *B, int *K)
{
  if (t->dtype != CNNFX_F32 || t->ndim < 2 || !t->data) return FALSE;
  for (int i = 2; i < t->ndim; i++)
    if (t->dims[i] != 1) return FALSE;
  *B = (int)t->dims[0];
  *K = (int)t->dims[1];
  return *B > 0 && *K > 0;
}

double cnnfx_softmax_xent(const CnnfxTensor *logits, const int *labels, CnnfxTensor *grad, int *n_correct,
                          GError **error)
{
  return cnnfx_softmax_xent_smooth(logits, labels, 0.0, grad, n_correct, error);
}

double cnnfx_softmax_xent_smooth(const CnnfxTensor *logits, const int *labels, double smoothing, CnnfxTensor *grad,
                                 int *n_correct, GError **error)
{
  int B, K;
  if (!logits_shape(logits, &B, &K)) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "cross-entropy needs float logits [B,K]");
    return -1;
  }
  if (grad && (grad->numel != logits->numel || grad->dtype != CNNFX_F32 || !grad->data)) {
    cnnfx_set_error(error, CNNFX_ERROR_SHAPE, "cross-entropy gradient buffer has the wrong size");
    return -1;
  }
  for (int b = 0; b < B; b++)
    if (labels[b] < 0 || labels[b] >= K) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "label %d out of range [0,%d)", labels[b], K);
      return -1;
    }
  const float *z = cnnfx_f32(logits);
  float *g = grad ? cnnfx_f32(grad) : NULL;
  double total = 0;
  int correct = 0;
  for (int b = 0; b < B; b++) {
    const float *zb = z + (size_t)b * K;
    int arg = 0;
    float mx = zb[0];
    for (int k = 1; k < K; k++)
      if (zb[k] > mx) mx = zb[k], arg = k;
    double sum = 0;
    for (int k = 0; k < K; k++) sum += exp((double)zb[k] - mx);
    double lse = mx + log(sum);
    double sum_z = 0;
    if (smoothing > 0)
      for (int k = 0; k < K; k++) sum_z += zb[k];
    total += (1.0 - smoothing) * (lse - zb[labels[b]]) + (smoothing > 0 ? smoothing * (lse - sum_z / K) : 0.0);
    correct += arg == labels[b];
    if (g) {
      float *gb = g + (size_t)b * K;
      for (int k = 0; k < K; k++)
        gb[k] = (float)((exp((double)zb[k] - lse) - (1.0 - smoothing) * (k == labels[b]) - smoothing / K) / B);
    }
  }
  if (n_correct) *n_correct = correct;
  return total / B;
}

int cnnfx_count_correct(const CnnfxTensor *logits, const int *labels)
{
  int B, K, correct = 0;
  if (!logits_shape(logits, &B, &K)) return 0;
  const float *z = cnnfx_f32(logits);
  for (int b = 0; b < B; b++) {
    const float *zb = z + (size_t)b * K;
    int arg = 0;
    for (int k = 1; k < K; k++)
      if (zb[k] > zb[arg]) arg = k;
    correct += arg == labels[b];
  }
  return correct;
}


/* ---- transfer learning: a new classifier head ------------------------------------------ */

static gboolean passthrough_op(const char *op)
{
  static const char *const ops[] = {"Softmax", "LogSoftmax", "Flatten", "Reshape", "Identity", "Squeeze", "Dropout",
                                    "Relu", "GlobalAveragePool", "AveragePool", "GlobalMaxPool",
                                    NULL};
  for (int i = 0; ops[i]; i++)
    if (!strcmp(op, ops[i])) return TRUE;
  return FALSE;
}

static CnnfxTensor *head_tensor(int ndim, const int64_t *dims, GRand *r, double sd, GError **error)
{
  CnnfxTensor *t = cnnfx_tensor_new_f32(ndim, dims, error);
  if (!t) return NULL;
  float *p = cnnfx_f32(t);
  for (size_t i = 0; i < t->numel; i++) p[i] = sd > 0 ? (float)(sd * rand_normal(r)) : 0.0f;
  return t;
}

static gboolean set_init(CnnfxModel *m, int v, CnnfxTensor *t, GPtrArray *names)
{
  if (m->values[v].init) cnnfx_tensor_unref(m->values[v].init);
  m->values[v].init = t;
  g_ptr_array_add(names, g_strdup(m->values[v].name));
  return TRUE;
}

GBytes *cnnfx_model_new_head(const CnnfxModel *src, int classes, guint64 seed, char ***head_params, int *old_classes,
                             GError **error)
{
  if (classes < 2) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "a classifier needs at least 2 classes");
    return NULL;
  }
  /* an ensemble (cnnfx train --ensemble): its first network gets the new head */
  g_autoptr(GBytes) copy = cnnfx_model_is_ensemble(src) ? cnnfx_model_save_first_member(src, error)
                                                        : cnnfx_model_save(src, NULL, error);
  if (!copy) return NULL;
  g_autoptr(CnnfxModel) m = cnnfx_model_load(g_bytes_get_data(copy, NULL), g_bytes_get_size(copy), error);
  if (!m) return NULL;
  if (m->n_outputs < 1) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "the model has no output");
    return NULL;
  }
  int v = m->outputs[0], k = -1;
  for (int guard = 0; guard < 64; guard++) {
    k = m->values[v].producer;
    if (k < 0) break;
    const CnnfxNode *n = &m->nodes[k];
    if (passthrough_op(n->op_type) && n->n_in > 0 && n->in[0] >= 0) {
      v = n->in[0];
      continue;
    }
    break;
  }
  g_autoptr(GRand) r = seeded_rand(seed ^ G_GUINT64_CONSTANT(0x9e3779b97f4a7c15));
  GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
  int K = -1;
  const CnnfxNode *n = k >= 0 ? &m->nodes[k] : NULL;
  const CnnfxNode *mm = NULL;
  int bias_v = -1;
  if (n && !strcmp(n->op_type, "Add") && n->n_in == 2) {
    /* MatMul + Add(bias) */
    for (int i = 0; i < 2; i++) {
      int pv = n->in[i], ov = n->in[1 - i];
      if (pv >= 0 && ov >= 0 && m->values[pv].init && m->values[ov].producer >= 0 &&
          !strcmp(m->nodes[m->values[ov].producer].op_type, "MatMul")) {
        mm = &m->nodes[m->values[ov].producer];
        bias_v = pv;
      }
    }
    if (!mm) n = NULL;
  } else if (n && !strcmp(n->op_type, "MatMul")) {
    mm = n;
  }
  GError *e = NULL;
  if (mm) {
    int wv = mm->in[1];
    const CnnfxTensor *w = wv >= 0 ? m->values[wv].init : NULL;
    if (!w || w->ndim != 2) goto unsupported;
    K = (int)w->dims[1];
    int64_t d[2] = {w->dims[0], classes};
    CnnfxTensor *t = head_tensor(2, d, r, 0.01, &e);
    if (!t) goto fail;
    set_init(m, wv, t, names);
    if (bias_v >= 0) {
      int64_t bd = classes;
      if (!(t = head_tensor(1, &bd, r, 0, &e))) goto fail;
      set_init(m, bias_v, t, names);
    }
  } else if (n && !strcmp(n->op_type, "Gemm")) {
    int wv = n->in[1];
    const CnnfxTensor *w = wv >= 0 ? m->values[wv].init : NULL;
    if (!w || w->ndim != 2) goto unsupported;
    gboolean tb = cnnfx_attr_int(n, "transB", 0) != 0;
    K = (int)(tb ? w->dims[0] : w->dims[1]);
    int64_t d[2] = {tb ? classes : w->dims[0], tb ? w->dims[1] : classes};
    CnnfxTensor *t = head_tensor(2, d, r, 0.01, &e);
    if (!t) goto fail;
    set_init(m, wv, t, names);
    if (n->n_in > 2 && n->in[2] >= 0 && m->values[n->in[2]].init) {
      int64_t bd = classes;
      if (!(t = head_tensor(1, &bd, r, 0, &e))) goto fail;
      set_init(m, n->in[2], t, names);
    }
  } else if (n && !strcmp(n->op_type, "Conv")) {
    int wv = n->in[1];
    const CnnfxTensor *w = wv >= 0 ? m->values[wv].init : NULL;
    if (!w || w->ndim != 4 || w->dims[2] != 1 || w->dims[3] != 1 || cnnfx_attr_int(n, "group", 1) != 1)
      goto unsupported;
    K = (int)w->dims[0];
    int64_t d[4] = {classes, w->dims[1], 1, 1};
    CnnfxTensor *t = head_tensor(4, d, r, 0.01, &e);
    if (!t) goto fail;
    set_init(m, wv, t, names);
    if (n->n_in > 2 && n->in[2] >= 0 && m->values[n->in[2]].init) {
      int64_t bd = classes;
      if (!(t = head_tensor(1, &bd, r, 0, &e))) goto fail;
      set_init(m, n->in[2], t, names);
    }
  } else {
    goto unsupported;
  }
  /* declared output shapes: the class dimension changes */
  for (int o = 0; o < m->n_outputs; o++) {
    CnnfxValue *ov = &m->values[m->outputs[o]];
    if (ov->decl_ndim >= 2 && ov->decl_dims[1] == K) ov->decl_dims[1] = classes;
  }
  GBytes *out = cnnfx_model_save(m, NULL, error);
  if (!out) {
    g_ptr_array_free(names, TRUE);
    return NULL;
  }
  if (old_classes) *old_classes = K;
  if (head_params) {
    g_ptr_array_add(names, NULL);
    *head_params = (char **)g_ptr_array_free(names, FALSE);
  } else {
    g_ptr_array_free(names, TRUE);
  }
  return out;
unsupported:
  g_ptr_array_free(names, TRUE);
  cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED,
                  "cannot find the classifier head: the first output must come from a Gemm, a MatMul(+Add) or "
                  "a 1x1 Conv (through Softmax/Flatten/Reshape only)");
  return NULL;
fail:
  g_ptr_array_free(names, TRUE);
  g_propagate_error(error, e);
  return NULL;
}

char **cnnfx_model_last_layers_params(const CnnfxModel *m, int k)
{
  GPtrArray *a = g_ptr_array_new();
  int taken = 0;
  for (int i = m->n_nodes - 1; i >= 0 && taken <= k; i--) {
    const CnnfxNode *n = &m->nodes[i];
    gboolean weighted = !strcmp(n->op_type, "Conv") || !strcmp(n->op_type, "Gemm") || !strcmp(n->op_type, "MatMul");
    if (weighted) taken++;
    if (taken > k + 1) break;
    if (!weighted && strcmp(n->op_type, "BatchNormalization") && strcmp(n->op_type, "Add")) continue;
    if (taken == 0) continue;
    for (int j = 0; j < n->n_in; j++) {
      if (n->in[j] < 0 || !m->values[n->in[j]].init || m->values[n->in[j]].init->dtype != CNNFX_F32) continue;
      if (!strcmp(n->op_type, "BatchNormalization") && j >= 3) continue;
      g_ptr_array_add(a, g_strdup(m->values[n->in[j]].name));
    }
  }
  g_ptr_array_add(a, NULL);
  return (char **)g_ptr_array_free(a, FALSE);
}
