/* Fuzz harness for the ONNX loader (and, for small models, the executor).
 *
 * Built two ways from this one file:
 *   - with -DCNNFX_LIBFUZZER and -fsanitize=fuzzer: libFuzzer supplies main();
 *   - without: a plain replay driver, `fuzz_onnx_replay [-v] FILE|DIR...`, that runs
 *     every file (a directory: every regular file in it, recursively) through the same
 *     function.  gcc CI builds this and replays the seed corpus, under ASan/UBSan when
 *     the build has -Db_sanitize=address,undefined.
 *
 * Per input: cnnfx_model_load() on the bytes; cnnfx_tensor_from_proto() on the bytes
 * (plus a to_proto/from_proto round trip when it parses); and, when a model loads and is
 * small (<= 50 nodes, every input with a static declared shape of <= 65536 elements), a
 * session with gradients, zero inputs, forward, backward from every float output, and the
 * input gradients.  Errors are expected and ignored; only crashes, sanitizer reports and
 * hangs are findings.
 */
#include "cnnfx.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_NODES 50
#define FUZZ_MAX_INPUT_ELEMS 65536
#define FUZZ_MEM_LIMIT ((size_t)256 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_tensor(const uint8_t *data, size_t size)
{
  GError *err = NULL;
  char *name = NULL;
  CnnfxTensor *t = cnnfx_tensor_from_proto(data, size, &name, &err);
  if (!t) {
    g_clear_error(&err);
    return;
  }
  char *shape = cnnfx_shape_string(t);
  g_free(shape);
  GBytes *b = cnnfx_tensor_to_proto(t, name, &err);
  if (b) {
    gsize n;
    const void *p = g_bytes_get_data(b, &n);
    char *name2 = NULL;
    CnnfxTensor *t2 = cnnfx_tensor_from_proto(p, n, &name2, &err);
    if (!t2) {
      fprintf(stderr, "fuzz_onnx: round trip of a parsed tensor failed: %s\n", err ? err->message : "?");
      abort();
    }
    if (t2->dtype != t->dtype || !cnnfx_same_shape(t, t2) || t2->numel != t->numel ||
        memcmp(t->data, t2->data, t->numel * cnnfx_dtype_size(t->dtype)) != 0 ||
        g_strcmp0(name, name2) != 0) {
      fprintf(stderr, "fuzz_onnx: tensor round trip changed the tensor\n");
      abort();
    }
    cnnfx_tensor_unref(t2);
    g_free(name2);
    g_bytes_unref(b);
  }
  g_clear_error(&err);
  g_free(name);
  cnnfx_tensor_unref(t);
}

/* Walk the public accessors the way `cnnfx info` does. */
static void fuzz_accessors(const CnnfxModel *m)
{
  int64_t dims[CNNFX_MAX_DIMS];
  volatile size_t sink = 0;
  sink += (size_t)cnnfx_model_opset(m);
  for (int i = 0; i < cnnfx_model_n_inputs(m); i++) {
    const char *nm = cnnfx_model_input_name(m, i);
    sink += strlen(nm);
    int nd = cnnfx_model_input_shape(m, i, dims);
    if (nd > CNNFX_MAX_DIMS) abort();
    sink += cnnfx_model_has_value(m, nm) ? 1 : 0;
    if (!cnnfx_model_has_value(m, nm)) abort();
  }
  for (int i = 0; i < cnnfx_model_n_outputs(m); i++) sink += strlen(cnnfx_model_output_name(m, i));
  for (int k = 0; k < cnnfx_model_n_nodes(m); k++) {
    sink += strlen(cnnfx_model_node_op(m, k)) + strlen(cnnfx_model_node_name(m, k));
    for (int o = 0; o < cnnfx_model_node_n_outputs(m, k); o++) {
      const char *nm = cnnfx_model_node_output(m, k, o);
      sink += strlen(nm);
      if (nm[0]) {
        const CnnfxTensor *w = cnnfx_model_initializer(m, nm);
        if (w) sink += w->numel;
      }
    }
  }
  (void)sink;
}

static void fuzz_session(const CnnfxModel *m)
{
  int ni = cnnfx_model_n_inputs(m), no = cnnfx_model_n_outputs(m);
  if (cnnfx_model_n_nodes(m) > FUZZ_MAX_NODES || ni < 1 || ni > 16 || no < 1 || no > 16) return;
  CnnfxTensor *inputs[16] = {0};
  int64_t dims[CNNFX_MAX_DIMS];
  for (int i = 0; i < ni; i++) {
    int nd = cnnfx_model_input_shape(m, i, dims);
    size_t n = 1;
    if (nd < 0 || nd > CNNFX_MAX_DIMS) goto out;
    for (int k = 0; k < nd; k++) {
      if (dims[k] < 0 || dims[k] > FUZZ_MAX_INPUT_ELEMS) goto out;
      n *= (size_t)dims[k];
      if (n > FUZZ_MAX_INPUT_ELEMS) goto out;
    }
    if (!(inputs[i] = cnnfx_tensor_new_f32(nd, dims, NULL))) goto out; /* zeros */
  }

  GError *err = NULL;
  CnnfxBackend *be = cnnfx_backend_new("cpu", &err);
  if (!be) goto out_err;
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .mem_limit = FUZZ_MEM_LIMIT};
  CnnfxSession *s = cnnfx_session_new(m, be, &o, &err);
  if (s) {
    gboolean ok = TRUE;
    for (int i = 0; ok && i < ni; i++) ok = cnnfx_session_set_input(s, cnnfx_model_input_name(m, i), inputs[i], &err);
    if (ok) ok = cnnfx_session_forward(s, &err);
    if (ok) {
      const char *names[16];
      CnnfxTensor *seeds[16];
      int ns = 0;
      for (int k = 0; k < no; k++) {
        const char *nm = cnnfx_model_output_name(m, k);
        CnnfxTensor *y = cnnfx_session_get(s, nm, &err);
        g_clear_error(&err);
        if (!y || y->dtype != CNNFX_F32) continue;
        int nd;
        int64_t sd[CNNFX_MAX_DIMS];
        if (!cnnfx_session_shape(s, nm, &nd, sd) || nd != y->ndim) abort();
        CnnfxTensor *g = cnnfx_tensor_new_f32(y->ndim, y->dims, NULL);
        if (!g) continue;
        for (size_t e = 0; e < g->numel; e++) ((float *)g->data)[e] = 1.0f;
        names[ns] = nm;
        seeds[ns++] = g;
      }
      if (ns && cnnfx_session_backward(s, ns, names, seeds, &err)) {
        for (int i = 0; i < ni; i++) {
          CnnfxTensor *g = cnnfx_session_grad(s, cnnfx_model_input_name(m, i), &err);
          g_clear_error(&err);
          if (g && (g->dtype != CNNFX_F32 || !cnnfx_same_shape(g, inputs[i]))) {
            fprintf(stderr, "fuzz_onnx: gradient of input %d has the wrong shape\n", i);
            abort();
          }
        }
      }
      g_clear_error(&err);
      for (int k = 0; k < ns; k++) cnnfx_tensor_unref(seeds[k]);
      /* A second forward on the same session must work the same way (planner reuse). */
      if (cnnfx_session_forward(s, &err)) (void)cnnfx_session_get(s, cnnfx_model_output_name(m, 0), NULL);
    }
    (void)cnnfx_session_peak_bytes(s);
    if (cnnfx_session_current_bytes(s) > FUZZ_MEM_LIMIT) {
      fprintf(stderr, "fuzz_onnx: session holds more than its memory limit\n");
      abort();
    }
    cnnfx_session_free(s);
  }
  cnnfx_backend_free(be);
out_err:
  g_clear_error(&err);
out:
  for (int i = 0; i < ni && i < 16; i++)
    if (inputs[i]) cnnfx_tensor_unref(inputs[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  GError *err = NULL;
  CnnfxModel *m = cnnfx_model_load(data, size, &err);
  if (!m) {
    /* Every failure must say why. */
    if (!err || !err->message || !err->message[0]) {
      fprintf(stderr, "fuzz_onnx: cnnfx_model_load failed without an error message\n");
      abort();
    }
    g_error_free(err);
    /* Not a model: maybe a TensorProto (input_0.pb). */
    fuzz_tensor(data, size);
    return 0;
  }
  if (err) abort(); /* success with an error set */
  fuzz_accessors(m);
  fuzz_tensor(data, size);
  fuzz_session(m);
  cnnfx_model_free(m);
  return 0;
}

#ifndef CNNFX_LIBFUZZER

typedef struct {
  gboolean verbose;
  unsigned n_files;
  unsigned n_failed_read;
} Replay;

static void replay_file(Replay *r, const char *path)
{
  gchar *buf = NULL;
  gsize len = 0;
  GError *err = NULL;
  if (!g_file_get_contents(path, &buf, &len, &err)) {
    fprintf(stderr, "fuzz_onnx_replay: %s\n", err->message);
    g_error_free(err);
    r->n_failed_read++;
    return;
  }
  if (r->verbose) {
    fprintf(stderr, "replay %s (%zu bytes)\n", path, (size_t)len);
    fflush(stderr);
  }
  /* Exact-size heap copy so ASan sees reads past the end. */
  uint8_t *copy = g_malloc(len ? len : 1);
  if (len) memcpy(copy, buf, len);
  g_free(buf);
  LLVMFuzzerTestOneInput(copy, len);
  g_free(copy);
  r->n_files++;
}

static gint cmp_paths(gconstpointer a, gconstpointer b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void replay_path(Replay *r, const char *path, int depth)
{
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    if (depth > 8) return;
    GError *err = NULL;
    GDir *d = g_dir_open(path, 0, &err);
    if (!d) {
      fprintf(stderr, "fuzz_onnx_replay: %s\n", err->message);
      g_error_free(err);
      r->n_failed_read++;
      return;
    }
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *e;
    while ((e = g_dir_read_name(d))) g_ptr_array_add(names, g_build_filename(path, e, NULL));
    g_dir_close(d);
    g_ptr_array_sort(names, cmp_paths); /* stable order across runs */
    for (guint i = 0; i < names->len; i++) {
      const char *p = g_ptr_array_index(names, i);
      if (!g_file_test(p, G_FILE_TEST_IS_SYMLINK)) replay_path(r, p, depth + 1);
    }
    g_ptr_array_free(names, TRUE);
  } else if (g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    replay_file(r, path);
  } else {
    fprintf(stderr, "fuzz_onnx_replay: %s: no such file or directory\n", path);
    r->n_failed_read++;
  }
}

int main(int argc, char **argv)
{
  Replay r = {0};
  int first = 1;
  if (argc > 1 && !strcmp(argv[1], "-v")) {
    r.verbose = TRUE;
    first = 2;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: %s [-v] FILE|DIR...\n"
                    "Runs every file through the cnnfx ONNX fuzz target; exits non-zero if a file\n"
                    "cannot be read or there is none (crashes abort the process).\n", argv[0]);
    return 2;
  }
  for (int a = first; a < argc; a++) replay_path(&r, argv[a], 0);
  printf("fuzz_onnx_replay: %u files ran without crashing%s\n", r.n_files,
         r.n_failed_read ? " (some paths could not be read)" : "");
  if (r.n_files == 0) {
    fprintf(stderr, "fuzz_onnx_replay: no files to replay (an empty corpus checks nothing)\n");
    return 1;
  }
  return r.n_failed_read ? 1 : 0;
}

#endif
