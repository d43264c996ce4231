/* MaxPool's saved argmax (issue #14): for one MaxPool model, the CPU kernel run with the aux state its
 * definition asks for and without it must give the same Y (and Indices) and the same input gradient;
 * the backward without aux and without the input must fail cleanly; the definition keeps no tensor
 * for the backward.
 * Usage: test_pool_aux MODEL.onnx (test_pool_aux.py makes the models).  Exit 0 iff all checks pass. */
#include "cnnfx-private.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(c, ...)                                                                                      \
  do {                                                                                                     \
    if (!(c)) {                                                                                            \
      fprintf(stderr, "FAIL %s: ", path);                                                                  \
      fprintf(stderr, __VA_ARGS__);                                                                        \
      fprintf(stderr, "\n");                                                                               \
      failures++;                                                                                          \
    }                                                                                                      \
  } while (0)

int main(int argc, char **argv)
{
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
    return 2;
  }
  const char *path = argv[1];
  g_autofree gchar *buf = NULL;
  gsize len;
  g_autoptr(GError) err = NULL;
  if (!g_file_get_contents(path, &buf, &len, &err)) return fprintf(stderr, "%s\n", err->message), 1;
  g_autoptr(CnnfxModel) m = cnnfx_model_load(buf, len, &err);
  if (!m) return fprintf(stderr, "%s\n", err->message), 1;
  const CnnfxNode *n = NULL;
  for (int k = 0; k < m->n_nodes; k++)
    if (!strcmp(m->nodes[k].op_type, "MaxPool")) n = &m->nodes[k];
  if (!n) return fprintf(stderr, "no MaxPool in %s\n", path), 1;
  g_autoptr(CnnfxBackend) be = cnnfx_backend_new("cpu", &err);
  const CnnfxOpDef *def = cnnfx_opdef_lookup("MaxPool");
  const CnnfxKernel *kern = cnnfx_backend_kernel(be, "MaxPool");
  if (!def || !kern || !def->aux_bytes) return fprintf(stderr, "MaxPool is not split / has no aux\n"), 1;
  gboolean need1[1] = {TRUE};
  guint32 sv = def->saves_fn ? def->saves_fn(n, need1) : def->saves;
  CHECK(sv == 0, "MaxPool keeps tensors for its backward (saves 0x%x) although it saves its argmax", sv);

  CnnfxMem mem = {0};
  CnnfxExec x = {.mem = &mem, .n_threads = 2, .simd = cnnfx_backend_get_simd(be)};
  int64_t xd[CNNFX_MAX_DIMS];
  int nd = cnnfx_model_input_shape(m, 0, xd);
  g_autoptr(CnnfxTensor) X = cnnfx_tensor_new_f32(nd, xd, &err);
  float *xp = cnnfx_f32(X);
  srand(7);
  for (size_t i = 0; i < X->numel; i++) xp[i] = (float)(rand() % 2001 - 1000) / 100.f; /* ties happen */
  CnnfxTensor *in[1] = {X};
  CnnfxTensor meta[2] = {0}, *mp[2] = {&meta[0], &meta[1]};
  if (!def->infer(n, in, mp, &err)) return fprintf(stderr, "infer: %s\n", err->message), 1;
  CnnfxTensor *ya[2] = {0}, *yb[2] = {0};
  for (int o = 0; o < n->n_out; o++) {
    ya[o] = cnnfx_tensor_new(meta[o].dtype, meta[o].ndim, meta[o].dims, &err);
    yb[o] = cnnfx_tensor_new(meta[o].dtype, meta[o].ndim, meta[o].dims, &err);
  }
  size_t ab = def->aux_bytes(n, in, ya);
  CHECK(ab > 0, "aux_bytes is 0");
  void *aux = g_malloc(ab + 1);
  CHECK(kern->forward(&x, n, in, ya, aux, &err), "forward with aux: %s", err ? err->message : "");
  CHECK(kern->forward(&x, n, in, yb, NULL, &err), "forward without aux: %s", err ? err->message : "");
  for (int o = 0; o < n->n_out; o++)
    CHECK(!memcmp(ya[o]->data, yb[o]->data, ya[o]->numel * cnnfx_dtype_size(ya[o]->dtype)),
          "output %d differs with and without aux", o);

  g_autoptr(CnnfxTensor) G = cnnfx_tensor_new_f32(ya[0]->ndim, ya[0]->dims, &err);
  for (size_t i = 0; i < G->numel; i++) cnnfx_f32(G)[i] = (float)((i * 7919) % 13) - 6.f;
  g_autoptr(CnnfxTensor) ga = cnnfx_tensor_new_f32(nd, xd, &err);
  g_autoptr(CnnfxTensor) gb = cnnfx_tensor_new_f32(nd, xd, &err);
  memset(ga->data, 0, ga->numel * sizeof(float));
  memset(gb->data, 0, gb->numel * sizeof(float));
  CnnfxTensor *gout[1] = {G}, *gina[1] = {ga}, *ginb[1] = {gb};
  gboolean need[1] = {TRUE};
  /* with aux: the input's data is not needed */
  CnnfxTensor Xmeta = *X;
  Xmeta.data = NULL;
  CnnfxTensor *inm[1] = {&Xmeta};
  CHECK(kern->backward(&x, n, inm, ya, gout, need, gina, aux, &err), "backward with aux: %s",
        err ? err->message : "");
  CHECK(kern->backward(&x, n, in, yb, gout, need, ginb, NULL, &err), "backward without aux: %s",
        err ? err->message : "");
  double maxd = 0, sa = 0, sb = 0;
  for (size_t i = 0; i < ga->numel; i++) {
    maxd = fmax(maxd, fabs(cnnfx_f32(ga)[i] - cnnfx_f32(gb)[i]));
    sa += cnnfx_f32(ga)[i];
    sb += cnnfx_f32(gb)[i];
  }
  CHECK(maxd <= 1e-5, "input gradient differs with and without aux (max |diff| %g)", maxd);
  CHECK(fabs(sa - sb) < 1e-3, "gradient sums differ (%g, %g)", sa, sb);
  g_clear_error(&err);
  memset(gb->data, 0, gb->numel * sizeof(float));
  CHECK(!kern->backward(&x, n, inm, yb, gout, need, ginb, NULL, &err) && err, "backward without aux or input did not fail");
  g_free(aux);
  for (int o = 0; o < n->n_out; o++) {
    cnnfx_tensor_unref(ya[o]);
    cnnfx_tensor_unref(yb[o]);
  }
  cnnfx_mem_clear(&mem);
  if (!failures) printf("ok %s (aux %zu bytes, max |diff| %g)\n", path, ab, maxd);
  return failures ? 1 : 0;
}
