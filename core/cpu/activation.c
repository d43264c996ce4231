/* CPU kernels (activation family): forward and backward into preallocated tensors.
 * The definitions (shapes, attributes, what backward reads) are in core/ops/activation.c.
 *
 * Flat loops are split in blocks over OpenMP threads; exp() in sigmoid/tanh/softmax is a branch-free
 * polynomial that the compiler vectorises.  Compiled once per SIMD level (core/meson.build). */
#include "ops/activation.h"
#include <float.h>
#include <math.h>
#include <omp.h>

#define ACT_BLOCK 16384
#define ACT_PAR_MIN 32768

/* ---- vectorisable exp / tanh ------------------------------------------------------- */

static inline float bits_to_float(int32_t b)
{
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* exp(x) to ~2 ulp for x in [-87.3, 88.3] (clamped outside; NaN stays NaN). */
static inline float exp_fast(float x)
{
  x = x < -87.3f ? -87.3f : x;
  x = x > 88.3f ? 88.3f : x;
  /* round to nearest via the 1.5*2^23 trick (floorf would be a library call here) */
  float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r * r + r + 1.0f;
  /* NaN: keep the integer conversion defined (n = 0) and return the NaN itself. */
  float nn = n == n ? n : 0.f;
  int32_t e = (int32_t)(((uint32_t)((int32_t)nn + 127)) << 23);
  return x == x ? p * bits_to_float(e) : x;
}

static inline float tanh_fast(float x)
{
  float z = x * x;
  float s = ((((-5.70498872745E-3f * z + 2.06390887954E-2f) * z - 5.37397155531E-2f) * z + 1.33314422036E-1f) * z -
             3.33332819422E-1f) * z * x + x;
  float ax = fabsf(x);
  float l = 1.f - 2.f / (exp_fast(2.f * ax) + 1.f);
  l = x < 0.f ? -l : l;
  return ax < 0.625f ? s : l;
}

/* The standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 to ~1e-7 absolute: erfc(z) for z >= 0 as
 * t * poly(t) * exp(-z^2), t = 1 / (1 + p z) (Abramowitz & Stegun 7.1.26), mirrored for x > 0. */
static inline float phi_fast(float x)
{
  float z = fabsf(x) * 0.70710678118654752f;
  float t = 1.f / (1.f + 0.3275911f * z);
  float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  float h = 0.5f * poly * exp_fast(-z * z); /* Phi(-|x|) */
  return x > 0.f ? 1.f - h : h;
}

static inline float sigmoid_fast(float x)
{
  return 1.f / (1.f + exp_fast(-x));
}

/* fminf/fmaxf are library calls without -ffast-math; these vectorise. */
static inline float max_f(float a, float b) { return a > b ? a : b; }
static inline float min_f(float a, float b) { return a < b ? a : b; }

static inline float softplus(float x)
{
  return max_f(x, 0.f) + log1pf(expf(-fabsf(x)));
}

/* ---- unary framework --------------------------------------------------------------- */

typedef struct {
  float alpha, beta, gamma;
} UPrm;

typedef void (*UFwd)(size_t n, const float *restrict x, float *restrict y, const UPrm *p);
/* v is the saved input or output (see UnaryDesc). */
typedef void (*UBwd)(size_t n, const float *restrict g, const float *restrict v, float *restrict gx, const UPrm *p);
typedef void (*UFwdI)(size_t n, const int64_t *x, int64_t *y);

typedef struct {
  UFwd fwd;
  UBwd bwd_out;                          /* derivative from y, or NULL (see ops/activation.c) */
  UBwd bwd_in;                           /* derivative from x, or NULL */
  void (*params)(const CnnfxNode *n, UPrm *p);
  UFwdI fwd_i64;                         /* int64 forward, or NULL */
} UnaryDesc;

static void get_params(const UnaryDesc *d, const CnnfxNode *n, UPrm *p)
{
  p->alpha = p->beta = p->gamma = 0.f;
  if (d->params) d->params(n, p);
}

static void par_fwd(int nt, size_t n, UFwd f, const float *x, float *y, const UPrm *p)
{
  size_t nb = (n + ACT_BLOCK - 1) / ACT_BLOCK;
  if (n < ACT_PAR_MIN) nt = 1;
#pragma omp parallel for num_threads(MAX(nt, 1)) schedule(static)
  for (size_t b = 0; b < nb; b++) {
    size_t i0 = b * ACT_BLOCK;
    f(MIN((size_t)ACT_BLOCK, n - i0), x + i0, y + i0, p);
  }
}

static void par_bwd(int nt, size_t n, UBwd f, const float *g, const float *v, float *gx, const UPrm *p)
{
  size_t nb = (n + ACT_BLOCK - 1) / ACT_BLOCK;
  if (n < ACT_PAR_MIN) nt = 1;
#pragma omp parallel for num_threads(MAX(nt, 1)) schedule(static)
  for (size_t b = 0; b < nb; b++) {
    size_t i0 = b * ACT_BLOCK;
    f(MIN((size_t)ACT_BLOCK, n - i0), g + i0, v ? v + i0 : NULL, gx + i0, p);
  }
}

static gboolean unary_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, GError **error, const UnaryDesc *d)
{
  const CnnfxTensor *a = in[0];
  if (a->dtype == CNNFX_I64) {
    if (!d->fwd_i64) {
      cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': int64 tensors are not supported", n->op_type,
                      n->name);
      return FALSE;
    }
    d->fwd_i64(a->numel, cnnfx_i64(a), cnnfx_i64(out[0]));
    return TRUE;
  }
  UPrm p;
  get_params(d, n, &p);
  par_fwd(x->n_threads, a->numel, d->fwd, cnnfx_f32(a), cnnfx_f32(out[0]), &p);
  return TRUE;
}

static gboolean unary_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                               CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                               CnnfxTensor *const *gin, GError **error, const UnaryDesc *d)
{
  if (!need[0] || in[0]->dtype != CNNFX_F32 || !gout[0]) return TRUE; /* gin[0] is zero-filled */
  UPrm p;
  get_params(d, n, &p);
  CnnfxActReads reads = cnnfx_activation_backward_reads(n);
  gboolean use_in = reads == CNNFX_ACT_READS_INPUT;
  const CnnfxTensor *v = reads == CNNFX_ACT_READS_NOTHING ? NULL : use_in ? in[0] : out[0];
  if (reads != CNNFX_ACT_READS_NOTHING && (!v || !v->data)) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "%s '%s': saved %s is not available", n->op_type, n->name,
                    use_in ? "input" : "output");
    return FALSE;
  }
  UBwd f = use_in || !d->bwd_out ? d->bwd_in : d->bwd_out;
  if (!f) f = d->bwd_out;
  par_bwd(x->n_threads, gin[0]->numel, f, cnnfx_f32(gout[0]), v ? cnnfx_f32(v) : NULL, cnnfx_f32(gin[0]), &p);
  return TRUE;
}

/* Kernel definitions: FWD(name, expr in x) and BWD(name, expr in g and v). */
#define FWD(NAME, EXPR)                                                                 \
  static void NAME(size_t n, const float *restrict X, float *restrict Y, const UPrm *p) \
  {                                                                                     \
    const float alpha = p->alpha, beta = p->beta, gamma = p->gamma;                     \
    (void)alpha;                                                                        \
    (void)beta;                                                                         \
    (void)gamma;                                                                        \
    for (size_t i = 0; i < n; i++) {                                                    \
      const float x = X[i];                                                             \
      Y[i] = (EXPR);                                                                    \
    }                                                                                   \
  }
#define BWD(NAME, EXPR)                                                                                       \
  static void NAME(size_t n, const float *restrict G, const float *restrict V, float *restrict GX, const UPrm *p) \
  {                                                                                                           \
    const float alpha = p->alpha, beta = p->beta, gamma = p->gamma;                                           \
    (void)alpha;                                                                                              \
    (void)beta;                                                                                               \
    (void)gamma;                                                                                              \
    for (size_t i = 0; i < n; i++) {                                                                          \
      const float g = G[i], v = V ? V[i] : 0.f;                                                               \
      (void)v;                                                                                                \
      GX[i] = (EXPR);                                                                                         \
    }                                                                                                         \
  }

/* Relu */
FWD(relu_f, x > 0.f ? x : 0.f)
BWD(relu_b, v > 0.f ? g : 0.f)
static void relu_i(size_t n, const int64_t *x, int64_t *y)
{
  for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

/* LeakyRelu: from y when alpha >= 0 (sign of y = sign of x) */
static void leaky_p(const CnnfxNode *n, UPrm *p) { p->alpha = cnnfx_attr_float(n, "alpha", 0.01f); }
FWD(leaky_f, x > 0.f ? x : alpha * x)
BWD(leaky_bo, v > 0.f ? g : alpha * g)
BWD(leaky_bi, v > 0.f ? g : alpha * g)

/* Elu */
static void elu_p(const CnnfxNode *n, UPrm *p) { p->alpha = cnnfx_attr_float(n, "alpha", 1.0f); }
FWD(elu_f, x > 0.f ? x : alpha * (exp_fast(x) - 1.f))
BWD(elu_bo, v > 0.f ? g : g * (v + alpha))
BWD(elu_bi, v > 0.f ? g : g * alpha * exp_fast(v))

/* Selu */
static void selu_p(const CnnfxNode *n, UPrm *p)
{
  p->alpha = cnnfx_attr_float(n, "alpha", 1.67326319217681884765625f);
  p->gamma = cnnfx_attr_float(n, "gamma", 1.05070102214813232421875f);
}
FWD(selu_f, x > 0.f ? gamma * x : gamma * alpha * (exp_fast(x) - 1.f))
BWD(selu_bo, v > 0.f ? gamma * g : g * (v + gamma * alpha))
BWD(selu_bi, v > 0.f ? gamma * g : g * gamma * alpha * exp_fast(v))

/* Sigmoid, Tanh */
FWD(sigmoid_f, sigmoid_fast(x))
BWD(sigmoid_b, g * v * (1.f - v))
FWD(tanh_f, tanh_fast(x))
BWD(tanh_b, g * (1.f - v * v))

/* HardSigmoid: max(0, min(1, alpha x + beta)) */
static void hsig_p(const CnnfxNode *n, UPrm *p)
{
  p->alpha = cnnfx_attr_float(n, "alpha", 0.2f);
  p->beta = cnnfx_attr_float(n, "beta", 0.5f);
}
FWD(hsig_f, min_f(max_f(alpha * x + beta, 0.f), 1.f))
BWD(hsig_b, v > 0.f && v < 1.f ? alpha * g : 0.f)

/* HardSwish: x * max(0, min(1, x/6 + 1/2)) */
FWD(hswish_f, x * min_f(max_f(x * (1.f / 6.f) + 0.5f, 0.f), 1.f))
BWD(hswish_b, v < -3.f ? 0.f : v > 3.f ? g : g * (v * (1.f / 3.f) + 0.5f))

/* Softplus, Softsign, Mish, ThresholdedRelu */
FWD(softplus_f, softplus(x))
BWD(softplus_b, g * sigmoid_fast(v))
FWD(softsign_f, x / (1.f + fabsf(x)))
BWD(softsign_b, g / ((1.f + fabsf(v)) * (1.f + fabsf(v))))
FWD(mish_f, x * tanhf(softplus(x)))
static inline float mish_grad(float x)
{
  float t = tanhf(softplus(x));
  return t + x * (1.f - t * t) * sigmoid_fast(x);
}
BWD(mish_b, g * mish_grad(v))
static void thr_p(const CnnfxNode *n, UPrm *p) { p->alpha = cnnfx_attr_float(n, "alpha", 1.0f); }
FWD(thr_f, x > alpha ? x : 0.f)
BWD(thr_b, v > alpha ? g : 0.f)

/* Exp, Log, Sqrt, Neg, Abs, Reciprocal, Erf */
/* Exp: the fast polynomial inside the normal range, exact limits outside (denormal results flush to 0) */
FWD(exp_f, x > 88.72283f ? INFINITY : x < -87.3f ? 0.f : exp_fast(x))
BWD(exp_b, g * v)
FWD(log_f, logf(x))
BWD(log_b, g / v)
FWD(sqrt_f, sqrtf(x))
BWD(sqrt_b, 0.5f * g / v)
FWD(neg_f, -x)
BWD(neg_b, -g)
static void neg_i(size_t n, const int64_t *x, int64_t *y)
{
  for (size_t i = 0; i < n; i++) y[i] = (int64_t)(0 - (uint64_t)x[i]);
}
FWD(abs_f, fabsf(x))
BWD(abs_b, v > 0.f ? g : v < 0.f ? -g : 0.f)
static void abs_i(size_t n, const int64_t *x, int64_t *y)
{
  for (size_t i = 0; i < n; i++) y[i] = x[i] < 0 ? (int64_t)(0 - (uint64_t)x[i]) : x[i];
}
FWD(recip_f, 1.f / x)
BWD(recip_b, -g * v * v)
FWD(erf_f, erff(x))
BWD(erf_b, g * 1.1283791670955126f * expf(-v * v))

/* Gelu: x Phi(x) (approximate="none"), or with Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2
 * (approximate="tanh"); both from the input.  alpha = 1 selects tanh. */
static void gelu_p(const CnnfxNode *n, UPrm *p) { p->alpha = !strcmp(cnnfx_attr_string(n, "approximate", "none"), "tanh"); }
#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
FWD(gelu_erf_f, x * phi_fast(x))
BWD(gelu_erf_b, g * (phi_fast(v) + v * 0.3989422804014327f * exp_fast(-0.5f * v * v)))
FWD(gelu_tanh_f, 0.5f * x * (1.f + tanh_fast(GELU_K * (x + 0.044715f * x * x * x))))
static inline float gelu_tanh_grad(float x)
{
  float t = tanh_fast(GELU_K * (x + 0.044715f * x * x * x));
  return 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * GELU_K * (1.f + 3.f * 0.044715f * x * x);
}
BWD(gelu_tanh_b, g * gelu_tanh_grad(v))
static void gelu_f(size_t n, const float *restrict X, float *restrict Y, const UPrm *p)
{
  (p->alpha != 0.f ? gelu_tanh_f : gelu_erf_f)(n, X, Y, p);
}
static void gelu_b(size_t n, const float *restrict G, const float *restrict V, float *restrict GX, const UPrm *p)
{
  (p->alpha != 0.f ? gelu_tanh_b : gelu_erf_b)(n, G, V, GX, p);
}

static const UnaryDesc d_relu = {.fwd = relu_f, .bwd_out = relu_b, .fwd_i64 = relu_i};
static const UnaryDesc d_leaky = {.fwd = leaky_f, .bwd_out = leaky_bo, .bwd_in = leaky_bi,
                                  .params = leaky_p};
static const UnaryDesc d_elu = {.fwd = elu_f, .bwd_out = elu_bo, .bwd_in = elu_bi,
                                .params = elu_p};
static const UnaryDesc d_selu = {.fwd = selu_f, .bwd_out = selu_bo, .bwd_in = selu_bi,
                                 .params = selu_p};
static const UnaryDesc d_sigmoid = {.fwd = sigmoid_f, .bwd_out = sigmoid_b};
static const UnaryDesc d_tanh = {.fwd = tanh_f, .bwd_out = tanh_b};
static const UnaryDesc d_hsig = {.fwd = hsig_f, .bwd_out = hsig_b, .params = hsig_p};
static const UnaryDesc d_hswish = {.fwd = hswish_f, .bwd_in = hswish_b};
static const UnaryDesc d_softplus = {.fwd = softplus_f, .bwd_in = softplus_b};
static const UnaryDesc d_softsign = {.fwd = softsign_f, .bwd_in = softsign_b};
static const UnaryDesc d_mish = {.fwd = mish_f, .bwd_in = mish_b};
static const UnaryDesc d_thr = {.fwd = thr_f, .bwd_in = thr_b, .params = thr_p};
static const UnaryDesc d_exp = {.fwd = exp_f, .bwd_out = exp_b};
static const UnaryDesc d_log = {.fwd = log_f, .bwd_in = log_b};
static const UnaryDesc d_sqrt = {.fwd = sqrt_f, .bwd_out = sqrt_b};
static const UnaryDesc d_neg = {.fwd = neg_f, .bwd_in = neg_b, .fwd_i64 = neg_i};
static const UnaryDesc d_abs = {.fwd = abs_f, .bwd_in = abs_b, .fwd_i64 = abs_i};
static const UnaryDesc d_recip = {.fwd = recip_f, .bwd_out = recip_b};
static const UnaryDesc d_erf = {.fwd = erf_f, .bwd_in = erf_b};
static const UnaryDesc d_gelu = {.fwd = gelu_f, .bwd_in = gelu_b, .params = gelu_p};

#define UNARY_OP(ID, NAME)                                                                                      \
  static gboolean ID##_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,                  \
                               CnnfxTensor *const *out, void *aux, GError **error)                              \
  {                                                                                                             \
    (void)aux;                                                                                                  \
    return unary_forward(x, n, in, out, error, &d_##ID);                                                        \
  }                                                                                                             \
  static gboolean ID##_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,                 \
                                CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,        \
                                CnnfxTensor *const *gin, void *aux, GError **error)                             \
  {                                                                                                             \
    (void)aux;                                                                                                  \
    return unary_backward(x, n, in, out, gout, need, gin, error, &d_##ID);                                      \
  }                                                                                                             \
  static const CnnfxKernel k_##ID = {.name = NAME, .forward = ID##_forward, .backward = ID##_backward};

UNARY_OP(relu, "Relu")
UNARY_OP(leaky, "LeakyRelu")
UNARY_OP(elu, "Elu")
UNARY_OP(selu, "Selu")
UNARY_OP(sigmoid, "Sigmoid")
UNARY_OP(tanh, "Tanh")
UNARY_OP(hsig, "HardSigmoid")
UNARY_OP(hswish, "HardSwish")
UNARY_OP(softplus, "Softplus")
UNARY_OP(softsign, "Softsign")
UNARY_OP(mish, "Mish")
UNARY_OP(thr, "ThresholdedRelu")
UNARY_OP(exp, "Exp")
UNARY_OP(log, "Log")
UNARY_OP(sqrt, "Sqrt")
UNARY_OP(neg, "Neg")
UNARY_OP(abs, "Abs")
UNARY_OP(recip, "Reciprocal")
UNARY_OP(erf, "Erf")
UNARY_OP(gelu, "Gelu")

/* ---- Clip ------------------------------------------------------------------------- */

/* Bounds: attributes before opset 11, optional scalar inputs 1 and 2 from 11 on. */
static gboolean clip_bounds(const CnnfxNode *n, CnnfxTensor *const *in, double *lo, double *hi, GError **error)
{
  *lo = -INFINITY;
  *hi = INFINITY;
  if (n->opset < 11) {
    *lo = cnnfx_attr_float(n, "min", -FLT_MAX);
    *hi = cnnfx_attr_float(n, "max", FLT_MAX);
    return TRUE;
  }
  for (int i = 1; i <= 2 && i < n->n_in; i++) {
    const CnnfxTensor *t = in[i];
    if (!t || !t->numel) continue; /* absent */
    if (t->numel != 1) return cnnfx_fail_shape(error, n, "bound input %d must be a scalar", i);
    if (!t->data) {
      cnnfx_set_error(error, CNNFX_ERROR_ARG, "Clip '%s': bound input %d has no value", n->name, i);
      return FALSE;
    }
    double v = t->dtype == CNNFX_F32 ? (double)cnnfx_f32(t)[0] : (double)cnnfx_i64(t)[0];
    if (i == 1) *lo = v;
    else *hi = v;
  }
  return TRUE;
}

static gboolean clip_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                             CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)aux;
  const CnnfxTensor *a = in[0];
  size_t nn = a->numel;
  if (a->dtype == CNNFX_I64) {
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    for (int i = 1; i <= 2 && i < n->n_in && n->opset >= 11; i++) {
      const CnnfxTensor *t = in[i];
      if (!t || !t->numel) continue;
      int64_t v = t->dtype == CNNFX_I64 ? cnnfx_i64(t)[0] : cnnfx_f2i64(cnnfx_f32(t)[0]);
      if (i == 1) lo = v;
      else hi = v;
    }
    const int64_t *s = cnnfx_i64(a);
    int64_t *d = cnnfx_i64(out[0]);
    for (size_t i = 0; i < nn; i++) {
      int64_t v = s[i] < lo ? lo : s[i];
      d[i] = v > hi ? hi : v;
    }
    return TRUE;
  }
  double lod, hid;
  if (!clip_bounds(n, in, &lod, &hid, error)) return FALSE;
  const float lo = (float)lod, hi = (float)hid;
  const float *s = cnnfx_f32(a);
  float *d = cnnfx_f32(out[0]);
#pragma omp parallel for simd num_threads(MAX(x->n_threads, 1)) if (nn > ACT_PAR_MIN) schedule(static)
  for (size_t i = 0; i < nn; i++) {
    float v = s[i] < lo ? lo : s[i];
    d[i] = v > hi ? hi : v;
  }
  return TRUE;
}

static gboolean clip_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                              CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                              CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)aux;
  if (!need[0] || in[0]->dtype != CNNFX_F32 || !gout[0]) return TRUE; /* gin[0] is zero-filled */
  float *d = cnnfx_f32(gin[0]);
  size_t nn = gin[0]->numel;
  double lod, hid;
  if (!clip_bounds(n, in, &lod, &hid, error)) return FALSE;
  const float lo = (float)lod, hi = (float)hid;
  const float *y = cnnfx_f32(out[0]), *g = cnnfx_f32(gout[0]);
#pragma omp parallel for simd num_threads(MAX(x->n_threads, 1)) if (nn > ACT_PAR_MIN) schedule(static)
  for (size_t i = 0; i < nn; i++) d[i] = y[i] > lo && y[i] < hi ? g[i] : 0.f;
  return TRUE;
}

/* ---- Softmax / LogSoftmax ------------------------------------------------------------ */

#define SM_SB 64 /* positions handled together when S > 1 */

/* One (o, s-block) unit: rows of length D at stride S. */
static void softmax_unit(const float *X, float *Y, size_t D, size_t S, size_t ns, gboolean lg)
{
  float mx[SM_SB], sm[SM_SB];
  for (size_t j = 0; j < ns; j++) {
    mx[j] = -INFINITY;
    sm[j] = 0.f;
  }
  for (size_t d = 0; d < D; d++)
    for (size_t j = 0; j < ns; j++) mx[j] = max_f(X[d * S + j], mx[j]);
  for (size_t j = 0; j < ns; j++)
    if (isinf(mx[j])) mx[j] = mx[j] > 0 ? mx[j] : 0.f; /* all -inf: keep finite */
  for (size_t d = 0; d < D; d++)
    for (size_t j = 0; j < ns; j++) {
      float e = exp_fast(X[d * S + j] - mx[j]);
      if (!lg) Y[d * S + j] = e;
      sm[j] += e;
    }
  if (lg) {
    for (size_t j = 0; j < ns; j++) sm[j] = mx[j] + logf(sm[j]);
    for (size_t d = 0; d < D; d++)
      for (size_t j = 0; j < ns; j++) Y[d * S + j] = X[d * S + j] - sm[j];
  } else {
    for (size_t j = 0; j < ns; j++) sm[j] = 1.f / sm[j];
    for (size_t d = 0; d < D; d++)
      for (size_t j = 0; j < ns; j++) Y[d * S + j] *= sm[j];
  }
}

/* Contiguous row (S == 1). */
static void softmax_row(const float *X, float *Y, size_t D, gboolean lg)
{
  float mx = -INFINITY;
  for (size_t d = 0; d < D; d++) mx = max_f(X[d], mx);
  if (isinf(mx) && mx < 0) mx = 0.f;
  double sum = 0;
  for (size_t b = 0; b < D; b += 4096) {
    size_t e = MIN(D, b + 4096);
    float s = 0.f;
    if (lg) {
#pragma omp simd reduction(+ : s)
      for (size_t d = b; d < e; d++) s += exp_fast(X[d] - mx);
    } else {
#pragma omp simd reduction(+ : s)
      for (size_t d = b; d < e; d++) {
        float v = exp_fast(X[d] - mx);
        Y[d] = v;
        s += v;
      }
    }
    sum += s;
  }
  if (lg) {
    float l = mx + (float)log(sum);
    for (size_t d = 0; d < D; d++) Y[d] = X[d] - l;
  } else {
    float r = (float)(1.0 / sum);
    for (size_t d = 0; d < D; d++) Y[d] *= r;
  }
}

static gboolean softmax_any_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, GError **error, gboolean lg)
{
  const CnnfxTensor *a = in[0];
  if (a->dtype != CNNFX_F32) {
    cnnfx_set_error(error, CNNFX_ERROR_UNSUPPORTED, "%s '%s': only float tensors are supported", n->op_type,
                    n->name);
    return FALSE;
  }
  size_t O, D, S;
  if (!cnnfx_softmax_view(n, a, &O, &D, &S, error)) return FALSE;
  const float *X = cnnfx_f32(a);
  float *Y = cnnfx_f32(out[0]);
  if (!a->numel) return TRUE;
  int nt = a->numel < ACT_PAR_MIN ? 1 : MAX(x->n_threads, 1);
  if (S == 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t o = 0; o < O; o++) softmax_row(X + o * D, Y + o * D, D, lg);
  } else {
    size_t nb = (S + SM_SB - 1) / SM_SB, work = O * nb;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t w = 0; w < work; w++) {
      size_t o = w / nb, s0 = (w % nb) * SM_SB;
      size_t off = o * D * S + s0;
      softmax_unit(X + off, Y + off, D, S, MIN((size_t)SM_SB, S - s0), lg);
    }
  }
  return TRUE;
}

/* softmax: gx = y * (g - sum(g*y));  log-softmax: gx = g - exp(y) * sum(g) */
static void softmax_grad_unit(const float *G, const float *Yv, float *GX, size_t D, size_t S, size_t ns,
                              gboolean lg)
{
  float acc[SM_SB];
  for (size_t j = 0; j < ns; j++) acc[j] = 0.f;
  for (size_t d = 0; d < D; d++)
    for (size_t j = 0; j < ns; j++) acc[j] += lg ? G[d * S + j] : G[d * S + j] * Yv[d * S + j];
  for (size_t d = 0; d < D; d++)
    for (size_t j = 0; j < ns; j++) {
      size_t k = d * S + j;
      GX[k] = lg ? G[k] - exp_fast(Yv[k]) * acc[j] : Yv[k] * (G[k] - acc[j]);
    }
}

static void softmax_grad_row(const float *G, const float *Yv, float *GX, size_t D, gboolean lg)
{
  double acc = 0;
  for (size_t b = 0; b < D; b += 4096) {
    size_t e = MIN(D, b + 4096);
    float s = 0.f;
    if (lg) {
#pragma omp simd reduction(+ : s)
      for (size_t d = b; d < e; d++) s += G[d];
    } else {
#pragma omp simd reduction(+ : s)
      for (size_t d = b; d < e; d++) s += G[d] * Yv[d];
    }
    acc += s;
  }
  float a = (float)acc;
  if (lg)
    for (size_t d = 0; d < D; d++) GX[d] = G[d] - exp_fast(Yv[d]) * a;
  else
    for (size_t d = 0; d < D; d++) GX[d] = Yv[d] * (G[d] - a);
}

static gboolean softmax_any_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                     CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                     CnnfxTensor *const *gin, GError **error, gboolean lg)
{
  if (!need[0] || in[0]->dtype != CNNFX_F32 || !gout[0]) return TRUE; /* gin[0] is zero-filled */
  float *GX = cnnfx_f32(gin[0]);
  size_t O, D, S;
  if (!cnnfx_softmax_view(n, in[0], &O, &D, &S, error)) return FALSE;
  if (!out[0] || !out[0]->data) {
    cnnfx_set_error(error, CNNFX_ERROR_ARG, "%s '%s': saved output is not available", n->op_type, n->name);
    return FALSE;
  }
  const float *G = cnnfx_f32(gout[0]), *Yv = cnnfx_f32(out[0]);
  if (!gin[0]->numel) return TRUE;
  int nt = gin[0]->numel < ACT_PAR_MIN ? 1 : MAX(x->n_threads, 1);
  if (S == 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t o = 0; o < O; o++) softmax_grad_row(G + o * D, Yv + o * D, GX + o * D, D, lg);
  } else {
    size_t nb = (S + SM_SB - 1) / SM_SB, work = O * nb;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t w = 0; w < work; w++) {
      size_t o = w / nb, s0 = (w % nb) * SM_SB;
      size_t off = o * D * S + s0;
      softmax_grad_unit(G + off, Yv + off, GX + off, D, S, MIN((size_t)SM_SB, S - s0), lg);
    }
  }
  return TRUE;
}

static gboolean softmax_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)aux;
  return softmax_any_forward(x, n, in, out, error, FALSE);
}

static gboolean logsoftmax_forward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                   CnnfxTensor *const *out, void *aux, GError **error)
{
  (void)aux;
  return softmax_any_forward(x, n, in, out, error, TRUE);
}

static gboolean softmax_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                 CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                 CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)aux;
  return softmax_any_backward(x, n, in, out, gout, need, gin, error, FALSE);
}

static gboolean logsoftmax_backward(const CnnfxExec *x, const CnnfxNode *n, CnnfxTensor *const *in,
                                    CnnfxTensor *const *out, CnnfxTensor *const *gout, const gboolean *need,
                                    CnnfxTensor *const *gin, void *aux, GError **error)
{
  (void)aux;
  return softmax_any_backward(x, n, in, out, gout, need, gin, error, TRUE);
}

/* ---- table ---------------------------------------------------------------------------- */

static const CnnfxKernel k_clip = {.name = "Clip", .forward = clip_forward, .backward = clip_backward};
static const CnnfxKernel k_softmax = {.name = "Softmax", .forward = softmax_forward, .backward = softmax_backward};
static const CnnfxKernel k_logsoftmax = {.name = "LogSoftmax", .forward = logsoftmax_forward,
                                         .backward = logsoftmax_backward};

const CnnfxKernel *const cnnfx_cpu_kernels_activation[] = {
  &k_relu, &k_leaky, &k_elu, &k_selu, &k_sigmoid, &k_tanh, &k_hsig, &k_hswish, &k_softplus,
  &k_softsign, &k_mish, &k_thr, &k_exp, &k_log, &k_sqrt, &k_neg, &k_abs, &k_recip, &k_erf, &k_gelu,
  &k_clip, &k_softmax, &k_logsoftmax, NULL,
};
