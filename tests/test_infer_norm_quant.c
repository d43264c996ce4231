/* Unit test: shape inference of the norm and quant families (core/ops/norm.c, core/ops/quant.c) as the
 * session's planner runs it, before any data exists: every input is a bare header (data NULL, numel 0),
 * so an inference that reads values or relies on numel crashes or fails here.  Also the shape errors
 * keep the texts the kernels used.  Exit 0 iff every case passes. */
#include "cnnfx-private.h"
#include <stdio.h>

static int failures;

#define CHECK(cond, ...)                                                                                   \
  do {                                                                                                     \
    if (!(cond)) {                                                                                         \
      failures++;                                                                                          \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                 \
      fprintf(stderr, __VA_ARGS__);                                                                        \
      fprintf(stderr, "\n");                                                                               \
    }                                                                                                      \
  } while (0)

static CnnfxTensor hdr(int ndim, const int64_t *dims)
{
  CnnfxTensor t;
  memset(&t, 0, sizeof t);
  cnnfx_meta_set(&t, CNNFX_F32, ndim, dims);
  return t;
}

static CnnfxAttr attr_int(const char *name, int64_t v)
{
  CnnfxAttr a;
  memset(&a, 0, sizeof a);
  a.name = (char *)name;
  a.type = CNNFX_ATTR_INT;
  a.i = v;
  return a;
}

/* Infer op on `in`; expect output k to have dims e[k] (ne[k] of them), or failure whose message
 * contains `err`. */
static void run(const char *op, int opset, int n_in, CnnfxTensor **in, int n_attrs, CnnfxAttr *attrs, int n_out,
                const int *ne, const int64_t *const *e, const char *err)
{
  const CnnfxOpDef *def = cnnfx_opdef_lookup(op);
  CHECK(def && def->infer, "%s has no definition", op);
  if (!def || !def->infer) return;
  CnnfxNode n;
  memset(&n, 0, sizeof n);
  int ids[16], outs_id[4];
  for (int i = 0; i < 16; i++) ids[i] = i < n_in && in[i] ? i : -1;
  for (int i = 0; i < 4; i++) outs_id[i] = 100 + i;
  n.name = (char *)"node";
  n.op_type = (char *)op;
  n.domain = (char *)"";
  n.opset = opset;
  n.n_in = n_in;
  n.in = ids;
  n.n_out = n_out;
  n.out = outs_id;
  n.n_attrs = n_attrs;
  n.attrs = attrs;
  n.def = def;
  GError *error = NULL;
  if (def->check && !def->check(&n, &error)) {
    CHECK(err && strstr(error->message, err), "%s: check failed: %s", op, error->message);
    g_clear_error(&error);
    return;
  }
  CnnfxTensor outs[4], *outp[4];
  memset(outs, 0, sizeof outs);
  for (int k = 0; k < 4; k++) outp[k] = &outs[k];
  gboolean ok = def->infer(&n, in, outp, &error);
  if (err) {
    CHECK(!ok && error && strstr(error->message, err), "%s: expected an error with '%s', got %s", op, err,
          ok ? "success" : error ? error->message : "no message");
    g_clear_error(&error);
    return;
  }
  CHECK(ok, "%s: %s", op, error ? error->message : "failed without a message");
  g_clear_error(&error);
  if (!ok) return;
  for (int k = 0; k < n_out; k++) {
    gboolean same = outs[k].ndim == ne[k] && outs[k].dtype == CNNFX_F32;
    for (int j = 0; same && j < ne[k]; j++) same = outs[k].dims[j] == e[k][j];
    g_autofree char *got = cnnfx_shape_string(&outs[k]);
    CHECK(same, "%s: output %d inferred as %s (dtype %d)", op, k, got, outs[k].dtype);
  }
}

int main(void)
{
  const int64_t d2345[] = {2, 3, 4, 5}, d3[] = {3}, d4[] = {4}, d1[] = {1}, d8_3_3_3[] = {8, 3, 3, 3};
  const int64_t d8[] = {8}, d2_8_2_3[] = {2, 8, 2, 3}, d6_7[] = {6, 7}, d7_5[] = {7, 5}, d6_5[] = {6, 5};
  CnnfxTensor x = hdr(4, d2345), c3 = hdr(1, d3), c4 = hdr(1, d4), s = hdr(0, NULL), one = hdr(1, d1);
  const int one_out[] = {4}, three_out[] = {4, 1, 1};
  const int64_t *ex[] = {d2345, d3, d3};

  /* BatchNormalization: inference form, training form with running statistics, wrong parameter size */
  {
    CnnfxTensor *in[] = {&x, &c3, &c3, &c3, &c3};
    run("BatchNormalization", 15, 5, in, 0, NULL, 1, one_out, ex, NULL);
    CnnfxAttr tm = attr_int("training_mode", 1);
    run("BatchNormalization", 15, 5, in, 1, &tm, 3, three_out, ex, NULL);
    CnnfxTensor *bad[] = {&x, &c3, &c4, &c3, &c3};
    run("BatchNormalization", 15, 5, bad, 0, NULL, 1, one_out, ex, "parameter 2 has 4 values, expected 3");
  }
  /* InstanceNormalization, LRN, LpNormalization, MeanVarianceNormalization */
  {
    CnnfxTensor *in[] = {&x, &c3, &c3};
    run("InstanceNormalization", 6, 3, in, 0, NULL, 1, one_out, ex, NULL);
    CnnfxTensor *bad[] = {&x, &c4, &c3};
    run("InstanceNormalization", 6, 3, bad, 0, NULL, 1, one_out, ex, "scale/B must have 3 values");
    CnnfxAttr size = attr_int("size", 3);
    run("LRN", 13, 1, in, 1, &size, 1, one_out, ex, NULL);
    run("LRN", 13, 1, in, 0, NULL, 1, one_out, ex, "attribute size must be a positive int");
    run("LpNormalization", 1, 1, in, 0, NULL, 1, one_out, ex, NULL);
    run("MeanVarianceNormalization", 13, 1, in, 0, NULL, 1, one_out, ex, NULL);
  }
  /* QuantizeLinear / DequantizeLinear: per tensor, per axis, a scale that does not fit */
  {
    CnnfxTensor *pt[] = {&x, &s, &s}, *pa[] = {&x, &c3, &c3}, *bad[] = {&x, &c4, &c4};
    run("QuantizeLinear", 13, 3, pt, 0, NULL, 1, one_out, ex, NULL);
    run("DequantizeLinear", 13, 3, pa, 0, NULL, 1, one_out, ex, NULL);
    run("DequantizeLinear", 13, 3, bad, 0, NULL, 1, one_out, ex, "scale has 4 values, axis 1 has 3");
    const int dq_out[] = {4, 0, 0};
    run("DynamicQuantizeLinear", 11, 1, pt, 0, NULL, 3, dq_out, ex, NULL);
  }
  /* QLinearConv with a per-channel weight scale and an int32 bias; QLinearMatMul; QLinearAdd */
  {
    CnnfxTensor w = hdr(4, d8_3_3_3), c8 = hdr(1, d8), c2 = hdr(1, (const int64_t[]){2});
    CnnfxTensor *in[] = {&x, &s, &s, &w, &c8, &c8, &s, &s, &c8};
    CnnfxAttr pads[1];
    int64_t p4[] = {1, 1, 1, 1};
    memset(pads, 0, sizeof pads);
    pads[0].name = (char *)"pads";
    pads[0].type = CNNFX_ATTR_INTS;
    pads[0].n = 4;
    pads[0].ints = p4;
    const int64_t *eo[] = {(const int64_t[]){2, 8, 4, 5}};
    run("QLinearConv", 13, 9, in, 1, pads, 1, one_out, eo, NULL);
    const int64_t *ev[] = {d2_8_2_3};
    run("QLinearConv", 13, 9, in, 0, NULL, 1, one_out, ev, NULL);
    CnnfxTensor *badb[] = {&x, &s, &s, &w, &c8, &c8, &s, &s, &c2};
    run("QLinearConv", 13, 9, badb, 0, NULL, 1, one_out, ev, "bias must have 8 values");
    CnnfxTensor a = hdr(2, d6_7), b = hdr(2, d7_5);
    CnnfxTensor *mm[] = {&a, &s, &s, &b, &s, &s, &s, &s};
    const int two[] = {2};
    const int64_t *em[] = {d6_5};
    run("QLinearMatMul", 13, 8, mm, 0, NULL, 1, two, em, NULL);
    CnnfxTensor *add[] = {&x, &s, &s, &one, &s, &s, &s, &s};
    run("QLinearAdd", 13, 8, add, 0, NULL, 1, one_out, ex, NULL);
    CnnfxTensor *nonscalar[] = {&x, &s, &s, &one, &s, &s, &c3, &s};
    run("QLinearAdd", 13, 8, nonscalar, 0, NULL, 1, one_out, ex, "output scale and zero point must be scalars");
  }
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("norm/quant inference on bare headers: all cases passed\n");
  return 0;
}
