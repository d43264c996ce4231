/* Unit test: shape inference of the shape family (core/ops/shape.c) as the session's planner runs it,
 * before any data exists.  Inputs whose values the inference reads (value_inputs) carry data; every
 * other input is a bare header (data NULL, numel 0), so an inference that touches data or relies on
 * numel crashes or fails here.  A value input without data must fail with CNNFX_ERROR_UNSUPPORTED.
 * Usage: test_infer_shape [SRCDIR]  (argument ignored).  Exit 0 iff every case passes. */
#include "cnnfx-private.h"
#include <stdio.h>
#include <stdlib.h>

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

/* A header without data (shape known, values not). */
static CnnfxTensor hdr(CnnfxDType dt, int ndim, const int64_t *dims)
{
  CnnfxTensor t;
  memset(&t, 0, sizeof t);
  cnnfx_meta_set(&t, dt, ndim, dims);
  return t;
}

/* A 1-D int64 tensor with values. */
static CnnfxTensor *ints(int n, const int64_t *v)
{
  int64_t d = n;
  CnnfxTensor *t = cnnfx_tensor_new(CNNFX_I64, 1, &d, NULL);
  g_assert(t);
  if (n) memcpy(t->data, v, sizeof(int64_t) * (size_t)n);
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

static CnnfxAttr attr_ints(const char *name, int n, int64_t *v)
{
  CnnfxAttr a;
  memset(&a, 0, sizeof a);
  a.name = (char *)name;
  a.type = CNNFX_ATTR_INTS;
  a.n = n;
  a.ints = v;
  return a;
}

/* Run the definition's inference; expect success with the given outputs, or failure with `code`. */
static void run(const char *op, int opset, int n_in, CnnfxTensor **in, int n_attrs, CnnfxAttr *attrs, int n_out,
                CnnfxDType dt, int ndim0, const int64_t *dims0, int ndim1, const int64_t *dims1, int code)
{
  const CnnfxOpDef *def = cnnfx_opdef_lookup(op);
  CHECK(def && def->infer, "%s has no definition", op);
  if (!def || !def->infer) return;
  CnnfxNode n;
  memset(&n, 0, sizeof n);
  n.name = (char *)"node";
  n.op_type = (char *)op;
  n.opset = opset;
  n.n_in = n_in;
  n.n_out = n_out;
  n.n_attrs = n_attrs;
  n.attrs = attrs;
  n.def = def;
  CnnfxTensor outs[2], *outp[2] = {&outs[0], &outs[1]};
  memset(outs, 0, sizeof outs);
  CnnfxTensor *inp[8] = {NULL};
  for (int i = 0; i < n_in; i++) inp[i] = in[i];
  GError *err = NULL;
  gboolean ok = def->infer(&n, inp, outp, &err);
  if (code) {
    CHECK(!ok && err && err->code == code, "%s (opset %d): expected error code %d, got %s (%s)", op, opset, code,
          ok ? "success" : "another error", err ? err->message : "no message");
    g_clear_error(&err);
    return;
  }
  CHECK(ok, "%s (opset %d): %s", op, opset, err ? err->message : "failed without a message");
  g_clear_error(&err);
  if (!ok) return;
  for (int k = 0; k < n_out; k++) {
    int nd = k ? ndim1 : ndim0;
    const int64_t *d = k ? dims1 : dims0;
    gboolean same = outs[k].ndim == nd && outs[k].dtype == dt;
    for (int j = 0; same && j < nd; j++) same = outs[k].dims[j] == d[j];
    g_autofree char *got = cnnfx_shape_string(&outs[k]);
    CHECK(same, "%s (opset %d): output %d inferred as %s (dtype %d)", op, opset, k, got, outs[k].dtype);
  }
}

int main(void)
{
  const int64_t d234[] = {2, 3, 4}, d34[] = {3, 4}, d108[] = {10, 8}, d56[] = {5, 6}, d23[] = {2, 3};
  const int64_t d25[] = {2, 5}, d31[] = {3, 1};
  CnnfxTensor x234 = hdr(CNNFX_F32, 3, d234), x34 = hdr(CNNFX_F32, 2, d34), x108 = hdr(CNNFX_F32, 2, d108);
  CnnfxTensor x56 = hdr(CNNFX_F32, 2, d56), i23 = hdr(CNNFX_I64, 2, d23), x23 = hdr(CNNFX_F32, 2, d23);
  CnnfxTensor x25 = hdr(CNNFX_F32, 2, d25), x31 = hdr(CNNFX_F32, 2, d31);
  const int64_t three = 3;
  CnnfxTensor unknown3 = hdr(CNNFX_I64, 1, &three); /* int64 computed from image data */

  /* Reshape: shape values are read; the data input is a header. */
  {
    int64_t v[] = {4, -1, 2}, e[] = {4, 3, 2};
    CnnfxTensor *s = ints(3, v), *in[] = {&x234, s}, *in_u[] = {&x234, &unknown3};
    run("Reshape", 14, 2, in, 0, NULL, 1, CNNFX_F32, 3, e, 0, NULL, 0);
    run("Reshape", 14, 2, in_u, 0, NULL, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_UNSUPPORTED);
    int64_t bad[] = {5, -1};
    CnnfxTensor *sb = ints(2, bad), *in_b[] = {&x234, sb};
    run("Reshape", 14, 2, in_b, 0, NULL, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_SHAPE);
    cnnfx_tensor_unref(s);
    cnnfx_tensor_unref(sb);
  }
  /* Shape / Size: dims only. */
  {
    CnnfxTensor *in[] = {&x234};
    int64_t e3 = 3, e2 = 2;
    run("Shape", 13, 1, in, 0, NULL, 1, CNNFX_I64, 1, &e3, 0, NULL, 0);
    CnnfxAttr a[] = {attr_int("start", 1)};
    run("Shape", 15, 1, in, 1, a, 1, CNNFX_I64, 1, &e2, 0, NULL, 0);
    run("Size", 13, 1, in, 0, NULL, 1, CNNFX_I64, 0, NULL, 0, NULL, 0);
  }
  /* Slice with starts / ends / axes / steps inputs. */
  {
    int64_t s[] = {1}, e[] = {-1}, ax[] = {1}, st[] = {2}, out[] = {10, 3};
    CnnfxTensor *ts = ints(1, s), *te = ints(1, e), *ta = ints(1, ax), *tst = ints(1, st);
    CnnfxTensor *in[] = {&x108, ts, te, ta, tst};
    run("Slice", 13, 5, in, 0, NULL, 1, CNNFX_F32, 2, out, 0, NULL, 0);
    const int64_t one = 1;
    CnnfxTensor unknown1 = hdr(CNNFX_I64, 1, &one), *in_u[] = {&x108, ts, &unknown1, ta, tst};
    run("Slice", 13, 5, in_u, 0, NULL, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_UNSUPPORTED);
    cnnfx_tensor_unref(ts);
    cnnfx_tensor_unref(te);
    cnnfx_tensor_unref(ta);
    cnnfx_tensor_unref(tst);
  }
  /* Gather: neither input's values are needed. */
  {
    CnnfxTensor *in[] = {&x56, &i23};
    CnnfxAttr a[] = {attr_int("axis", 1)};
    int64_t out[] = {5, 2, 3};
    run("Gather", 13, 2, in, 1, a, 1, CNNFX_F32, 3, out, 0, NULL, 0);
  }
  /* Concat, Transpose, Flatten */
  {
    CnnfxTensor *in[] = {&x23, &x25}, *in_b[] = {&x23, &x34};
    CnnfxAttr a[] = {attr_int("axis", 1)};
    int64_t out[] = {2, 8}, tr[] = {4, 3, 2}, fl[] = {2, 12};
    run("Concat", 13, 2, in, 1, a, 1, CNNFX_F32, 2, out, 0, NULL, 0);
    run("Concat", 13, 2, in_b, 1, a, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_SHAPE);
    CnnfxTensor *in1[] = {&x234};
    run("Transpose", 13, 1, in1, 0, NULL, 1, CNNFX_F32, 3, tr, 0, NULL, 0);
    run("Flatten", 13, 1, in1, 0, NULL, 1, CNNFX_F32, 2, fl, 0, NULL, 0);
  }
  /* Pad: pads read, constant value not needed (a header). */
  {
    int64_t p[] = {0, 1, 0, 2}, out[] = {3, 7};
    const int64_t none = 0;
    CnnfxTensor *tp = ints(4, p), cv = hdr(CNNFX_F32, 0, &none), *in[] = {&x34, tp, &cv};
    run("Pad", 13, 3, in, 0, NULL, 1, CNNFX_F32, 2, out, 0, NULL, 0);
    const int64_t four = 4;
    CnnfxTensor unknown4 = hdr(CNNFX_I64, 1, &four), *in_u[] = {&x34, &unknown4};
    run("Pad", 13, 2, in_u, 0, NULL, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_UNSUPPORTED);
    cnnfx_tensor_unref(tp);
  }
  /* Split with a split input; Unsqueeze / Squeeze axes; ReduceMean axes input (opset 18). */
  {
    int64_t sp[] = {1, 2}, o0[] = {1, 4}, o1[] = {2, 4};
    CnnfxTensor *ts = ints(2, sp), *in[] = {&x34, ts};
    run("Split", 13, 2, in, 0, NULL, 2, CNNFX_F32, 2, o0, 2, o1, 0);
    const int64_t two = 2;
    CnnfxTensor unknown2 = hdr(CNNFX_I64, 1, &two), *in_u[] = {&x34, &unknown2};
    run("Split", 13, 2, in_u, 0, NULL, 2, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_UNSUPPORTED);
    int64_t ax[] = {0, -1}, uo[] = {1, 3, 4, 1};
    CnnfxTensor *ta = ints(2, ax), *in2[] = {&x34, ta};
    run("Unsqueeze", 13, 2, in2, 0, NULL, 1, CNNFX_F32, 4, uo, 0, NULL, 0);
    int64_t sq[] = {1}, so[] = {3};
    CnnfxTensor *tq = ints(1, sq), *in3[] = {&x31, tq};
    run("Squeeze", 13, 2, in3, 0, NULL, 1, CNNFX_F32, 1, so, 0, NULL, 0);
    int64_t rax[] = {1}, ro[] = {2, 4};
    CnnfxTensor *tr = ints(1, rax), *in4[] = {&x234, tr};
    CnnfxAttr a[] = {attr_int("keepdims", 0)};
    run("ReduceMean", 18, 2, in4, 1, a, 1, CNNFX_F32, 2, ro, 0, NULL, 0);
    int64_t kax[] = {-1}, ko[] = {2, 3, 1};
    CnnfxAttr a13[] = {attr_ints("axes", 1, kax)};
    CnnfxTensor *in5[] = {&x234};
    run("ReduceMean", 13, 1, in5, 1, a13, 1, CNNFX_F32, 3, ko, 0, NULL, 0);
    cnnfx_tensor_unref(ts);
    cnnfx_tensor_unref(ta);
    cnnfx_tensor_unref(tq);
    cnnfx_tensor_unref(tr);
  }
  /* Expand, Range, ConstantOfShape */
  {
    int64_t sh[] = {2, 3, 4}, eo[] = {2, 3, 4};
    CnnfxTensor *ts = ints(3, sh), *in[] = {&x31, ts}, *in_u[] = {&x31, &unknown3};
    run("Expand", 13, 2, in, 0, NULL, 1, CNNFX_F32, 3, eo, 0, NULL, 0);
    run("Expand", 13, 2, in_u, 0, NULL, 1, CNNFX_F32, 0, NULL, 0, NULL, CNNFX_ERROR_UNSUPPORTED);
    CnnfxTensor *r0 = cnnfx_tensor_new(CNNFX_I64, 0, NULL, NULL), *r1 = cnnfx_tensor_new(CNNFX_I64, 0, NULL, NULL);
    CnnfxTensor *r2 = cnnfx_tensor_new(CNNFX_I64, 0, NULL, NULL);
    cnnfx_i64(r0)[0] = 0;
    cnnfx_i64(r1)[0] = 10;
    cnnfx_i64(r2)[0] = 3;
    CnnfxTensor *rin[] = {r0, r1, r2};
    int64_t four = 4;
    run("Range", 13, 3, rin, 0, NULL, 1, CNNFX_I64, 1, &four, 0, NULL, 0);
    int64_t cs[] = {2, 5};
    CnnfxTensor *tc = ints(2, cs), *cin[] = {tc};
    run("ConstantOfShape", 13, 1, cin, 0, NULL, 1, CNNFX_F32, 2, cs, 0, NULL, 0);
    cnnfx_tensor_unref(ts);
    cnnfx_tensor_unref(r0);
    cnnfx_tensor_unref(r1);
    cnnfx_tensor_unref(r2);
    cnnfx_tensor_unref(tc);
  }
  /* The planner's contract: exactly these inputs' values are read. */
  {
    static const struct {
      const char *op;
      guint32 values;
      gboolean diff;
    } want[] = {
      {"Concat", 0, TRUE}, {"Split", 1u << 1, TRUE}, {"Flatten", 0, TRUE}, {"Reshape", 1u << 1, TRUE},
      {"Squeeze", 1u << 1, TRUE}, {"Unsqueeze", 1u << 1, TRUE}, {"Transpose", 0, TRUE}, {"Slice", 0x1eu, TRUE},
      {"Gather", 0, TRUE}, {"Shape", 0, FALSE}, {"Size", 0, FALSE}, {"Pad", (1u << 1) | (1u << 3), TRUE},
      {"ReduceMean", 1u << 1, TRUE}, {"ConstantOfShape", 1u, FALSE}, {"Expand", 1u << 1, TRUE},
      {"Range", 7u, FALSE},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
      const CnnfxOpDef *def = cnnfx_opdef_lookup(want[i].op);
      CHECK(def && def->value_inputs == want[i].values && def->differentiable == want[i].diff,
            "%s: value_inputs / differentiable differ from the contract", want[i].op);
    }
  }
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("shape-family inference: all cases pass\n");
  return 0;
}
