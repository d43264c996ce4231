/* cnnfx model tools: check-onnx, info, bench, grad, check-grad. */
#include "cli.h"
#include <signal.h>
#include <unistd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

CnnfxModel *cli_load_model(const char *path, GError **error)
{
  g_autoptr(GMappedFile) mf = g_mapped_file_new(path, FALSE, error);
  if (!mf) return NULL;
  CnnfxModel *m = cnnfx_model_load(g_mapped_file_get_contents(mf), g_mapped_file_get_length(mf), error);
  if (!m) g_prefix_error(error, "%s: ", path);
  return m;
}

CnnfxTensor *cli_load_tensor_pb(const char *path, GError **error)
{
  g_autoptr(GMappedFile) mf = g_mapped_file_new(path, FALSE, error);
  if (!mf) return NULL;
  CnnfxTensor *t = cnnfx_tensor_from_proto(g_mapped_file_get_contents(mf), g_mapped_file_get_length(mf), NULL, error);
  if (!t) g_prefix_error(error, "%s: ", path);
  return t;
}

gboolean cli_parse_shape(const char *s, int *ndim, int64_t *dims, GError **error)
{
  g_auto(GStrv) parts = g_strsplit(s, ",", -1);
  int n = (int)g_strv_length(parts);
  if (n < 1 || n > CNNFX_MAX_DIMS) goto bad;
  for (int i = 0; i < n; i++) {
    char *end;
    gint64 v = g_ascii_strtoll(parts[i], &end, 10);
    if (end == parts[i] || *end || v <= 0 || v > (1 << 24)) goto bad;
    dims[i] = v;
  }
  *ndim = n;
  return TRUE;
bad:
  g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "bad shape '%s' (expected e.g. 1,3,224,224)", s);
  return FALSE;
}

/* Fill with uniform [lo, hi) from a seeded GRand. */
void cli_fill_uniform(CnnfxTensor *t, GRand *r, double lo, double hi)
{
  float *d = cnnfx_f32(t);
  for (size_t i = 0; i < t->numel; i++) d[i] = (float)g_rand_double_range(r, lo, hi);
}

/* ---- check-onnx ---------------------------------------------------------------- */

static gint cmp_names(gconstpointer a, gconstpointer b)
{
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  /* test_data_set_N: numeric order */
  size_t lx = strlen(x), ly = strlen(y);
  if (lx != ly) return lx < ly ? -1 : 1;
  return strcmp(x, y);
}

static gboolean compare_tensor(const CnnfxTensor *got, const CnnfxTensor *want, double rtol, double atol,
                               GString *why)
{
  if (got->ndim != want->ndim || !cnnfx_same_shape(got, want)) {
    /* Accept scalar vs [1] style mismatch only when element counts agree and ranks differ by size-1 dims. */
    g_autofree char *a = cnnfx_shape_string(got);
    g_autofree char *b = cnnfx_shape_string(want);
    if (got->numel != want->numel) {
      g_string_printf(why, "shape %s, expected %s", a, b);
      return FALSE;
    }
    gboolean only_ones = TRUE;
    for (int i = 0; i < got->ndim; i++) if (got->dims[i] != 1 && got->numel != 1) only_ones = FALSE;
    if (!only_ones) {
      g_string_printf(why, "shape %s, expected %s", a, b);
      return FALSE;
    }
  }
  /* Quantised tensors (QuantizeLinear, QLinearConv, ...) travel as floats holding integers:
   * compare them with an integer expectation by value. */
  gboolean int_as_float = got->dtype == CNNFX_F32 && want->dtype == CNNFX_I64;
  for (size_t i = 0; int_as_float && i < got->numel; i++)
    int_as_float = cnnfx_f32(got)[i] == nearbyintf(cnnfx_f32(got)[i]);
  if (got->dtype != want->dtype && !int_as_float) {
    g_string_printf(why, "data type %s, expected %s", got->dtype == CNNFX_F32 ? "float" : "int64",
                    want->dtype == CNNFX_F32 ? "float" : "int64");
    return FALSE;
  }
  size_t bad = 0, worst_i = 0;
  double worst = 0;
  for (size_t i = 0; i < got->numel; i++) {
    double g = got->dtype == CNNFX_F32 ? cnnfx_f32(got)[i] : (double)cnnfx_i64(got)[i];
    double w = want->dtype == CNNFX_F32 ? cnnfx_f32(want)[i] : (double)cnnfx_i64(want)[i];
    if (isnan(w) && isnan(g)) continue;
    if (isinf(w) && g == w) continue;
    double d = fabs(g - w);
    double excess = d - (atol + rtol * fabs(w));
    if (!(excess <= 0)) {
      if (!bad || excess > worst || isnan(excess)) {
        worst = isnan(excess) ? INFINITY : excess;
        worst_i = i;
      }
      bad++;
    }
  }
  if (bad) {
    double g = got->dtype == CNNFX_F32 ? cnnfx_f32(got)[worst_i] : (double)cnnfx_i64(got)[worst_i];
    double w = want->dtype == CNNFX_F32 ? cnnfx_f32(want)[worst_i] : (double)cnnfx_i64(want)[worst_i];
    g_string_printf(why, "%zu of %zu values differ; worst at [%zu]: got %.7g, expected %.7g", bad, got->numel,
                    worst_i, g, w);
    return FALSE;
  }
  return TRUE;
}

static gboolean run_data_set(const CnnfxModel *m, CnnfxBackend *be, const char *setdir, double rtol, double atol,
                             GString *why)
{
  g_autoptr(GError) err = NULL;
  int ni = cnnfx_model_n_inputs(m), no = cnnfx_model_n_outputs(m);
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, NULL, &err);
  if (!s) goto fail;
  for (int i = 0;; i++) {
    g_autofree char *p = g_strdup_printf("%s/input_%d.pb", setdir, i);
    if (!g_file_test(p, G_FILE_TEST_EXISTS)) {
      if (i < ni) {
        g_string_printf(why, "data set has %d inputs, model needs %d", i, ni);
        return FALSE;
      }
      break;
    }
    if (i >= ni) {
      g_string_printf(why, "data set has more inputs than the model (%d)", ni);
      return FALSE;
    }
    g_autoptr(CnnfxTensor) t = cli_load_tensor_pb(p, &err);
    if (!t || !cnnfx_session_set_input(s, cnnfx_model_input_name(m, i), t, &err)) goto fail;
  }
  if (!cnnfx_session_forward(s, &err)) goto fail;
  for (int k = 0; k < no; k++) {
    g_autofree char *p = g_strdup_printf("%s/output_%d.pb", setdir, k);
    g_autoptr(CnnfxTensor) want = cli_load_tensor_pb(p, &err);
    if (!want) goto fail;
    CnnfxTensor *got = cnnfx_session_get(s, cnnfx_model_output_name(m, k), &err);
    if (!got) goto fail;
    if (!compare_tensor(got, want, rtol, atol, why)) {
      g_string_prepend(why, ": ");
      g_string_prepend(why, cnnfx_model_output_name(m, k));
      g_string_prepend(why, "output ");
      return FALSE;
    }
  }
  return TRUE;
fail:
  g_string_assign(why, err ? err->message : "unknown error");
  return FALSE;
}

int cmd_check_onnx(int argc, char **argv)
{
  double rtol = 1e-3, atol = 1e-4;
  char *device = NULL;
  GOptionEntry entries[] = {
    {"rtol", 0, 0, G_OPTION_ARG_DOUBLE, &rtol, "Relative tolerance (default 1e-3)", "R"},
    {"atol", 0, 0, G_OPTION_ARG_DOUBLE, &atol, "Absolute tolerance (default 1e-4)", "A"},
    {"device", 0, 0, G_OPTION_ARG_STRING, &device, "auto|cpu|cuda|cuda:N|sim", "DEV"},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv, "DIR... — run ONNX backend-test directories and compare outputs", entries))
    return 2;
  if (argc < 2) return cli_usage_error("check-onnx needs at least one DIR");
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxBackend) be = cli_backend_new(device ? device : "auto", FALSE, &err);
  g_free(device);
  if (!be) return cli_usage_error(err->message);
  int failed = 0;
  for (int a = 1; a < argc; a++) {
    const char *dir = argv[a];
    g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    if (d) {
      const char *e;
      while ((e = g_dir_read_name(d)))
        if (g_str_has_prefix(e, "test_data_set_")) g_ptr_array_add(sets, g_strdup(e));
    }
    g_ptr_array_sort(sets, cmp_names);
    g_autofree char *mp = g_build_filename(dir, "model.onnx", NULL);
    g_autoptr(GError) lerr = NULL;
    g_autoptr(CnnfxModel) m = cli_load_model(mp, &lerr);
    if (!m || sets->len == 0) {
      if (sets->len == 0)
        printf("FAIL %s -: %s\n", dir, lerr ? lerr->message : "no test_data_set_* directories");
      for (guint i = 0; i < sets->len; i++)
        printf("FAIL %s %s: %s\n", dir, (char *)sets->pdata[i], lerr ? lerr->message : "?");
      failed++;
      fflush(stdout);
      continue;
    }
    for (guint i = 0; i < sets->len; i++) {
      g_autofree char *sd = g_build_filename(dir, sets->pdata[i], NULL);
      g_autoptr(GString) why = g_string_new(NULL);
      if (run_data_set(m, be, sd, rtol, atol, why))
        printf("PASS %s %s\n", dir, (char *)sets->pdata[i]);
      else {
        printf("FAIL %s %s: %s\n", dir, (char *)sets->pdata[i], why->str);
        failed++;
      }
      fflush(stdout);
    }
  }
  return failed ? 1 : 0;
}

/* ---- info ----------------------------------------------------------------------- */

static void print_shape(int nd, const int64_t *dims)
{
  if (nd < 0) {
    printf("?");
    return;
  }
  for (int i = 0; i < nd; i++) {
    if (dims[i] < 0) printf("%s?", i ? "x" : "");
    else printf("%s%" G_GINT64_FORMAT, i ? "x" : "", dims[i]);
  }
  if (nd == 0) printf("scalar");
}

static gboolean cli_numel(int nd, const int64_t *dims, size_t *n)
{
  *n = 1;
  for (int i = 0; i < nd; i++) {
    if (dims[i] < 0 || (dims[i] && *n > ((size_t)1 << 40) / (size_t)dims[i])) return FALSE;
    *n *= (size_t)dims[i];
  }
  return TRUE;
}

/* Input tensor for model input i: declared static shape, or --shape, or 1x3x224x224 fallback. */
CnnfxTensor *cli_make_input(const CnnfxModel *m, int i, const char *shape, GError **error)
{
  int64_t dims[CNNFX_MAX_DIMS];
  int nd = cnnfx_model_input_shape(m, i, dims);
  if (shape) {
    if (!cli_parse_shape(shape, &nd, dims, error)) return NULL;
  } else {
    gboolean dynamic = nd < 0;
    for (int k = 0; k < nd; k++) if (dims[k] < 0) dynamic = TRUE;
    if (dynamic) {
      int64_t def[4] = {1, 3, 224, 224};
      if (nd < 0) nd = 4;
      for (int k = 0; k < nd; k++) if (dims[k] < 0 || nd == 4) dims[k] = dims[k] >= 0 ? dims[k] : def[MIN(k, 3)];
    }
  }
  size_t numel;
  if (!cli_numel(nd, dims, &numel) || numel > ((size_t)1 << 28)) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_SHAPE, "input shape too large for a test input (give --shape)");
    return NULL;
  }
  return cnnfx_tensor_new_f32(nd, dims, error);
}

void cli_print_system(void)
{
  g_autofree char *cpu = cnnfx_cpu_model();
  g_autoptr(GString) sup = g_string_new(NULL);
  for (CnnfxSimd l = CNNFX_SIMD_BASELINE; l <= CNNFX_SIMD_AVX512; l++)
    if (cnnfx_cpu_supports(l)) g_string_append_printf(sup, " %s", cnnfx_simd_name(l));
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxBackend) be = cli_backend_new("cpu", FALSE, &err);
  CnnfxBlasInfo bi;
  cnnfx_blas_check(&bi);
  printf("cpu: %s\nsimd-supported:%s\n", cpu, sup->str);
  printf("kernels: %s\n", be ? cnnfx_simd_name(cnnfx_backend_get_simd(be)) : err->message);
  printf("blas: %s\nblas-config: %s\nblas-core: %s\nblas-threads: %d\n", bi.name, bi.config, bi.core, bi.threads);
  const char *ct = g_getenv("OPENBLAS_CORETYPE");
  if (bi.generic)
    printf("blas-status: GENERIC kernels on a CPU with AVX2%s%s%s\n", bi.suggest ? " (OPENBLAS_CORETYPE=" : "",
           bi.suggest ? bi.suggest : "", bi.suggest ? " would fix it)" : "");
  else
    printf("blas-status: ok\n");
  if (ct) printf("blas-coretype-env: %s\n", ct);
}

static volatile int info_timed_out;

static void on_info_alarm(int sig)
{
  (void)sig;
  info_timed_out = 1;
}

/* `info` runs the model once to learn every shape: a tiny hostile model (a Resize x800) must
 * not take gigabytes and minutes, so that run is bounded like the filters: --max-memory
 * (default 2048 MiB) and --time-limit (default 60 s); past them the shapes print as "?". */
int cmd_info(int argc, char **argv)
{
  char *shape = NULL;
  gint64 max_mem_mb = 2048;
  int time_limit = 60;
  gboolean sys = FALSE;
  GOptionEntry entries[] = {
    {"shape", 0, 0, G_OPTION_ARG_STRING, &shape, "Input shape for shape inference, e.g. 1,3,224,224", "N,C,H,W"},
    {"max-memory", 0, 0, G_OPTION_ARG_INT64, &max_mem_mb, "Tensor memory bound in MiB for shape inference (default 2048)", "MB"},
    {"time-limit", 0, 0, G_OPTION_ARG_INT, &time_limit, "Seconds allowed for shape inference (default 60)", "S"},
    {"system", 0, 0, G_OPTION_ARG_NONE, &sys, "Print the CPU, the SIMD level of cnnfx's kernels and the BLAS core", NULL},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv, "MODEL.onnx — list inputs, outputs and every tensor with its shape", entries))
    return 2;
  if (sys) {
    cli_print_system();
    g_free(shape);
    if (argc == 1) return 0;
  }
  if (argc != 2) return cli_usage_error("info needs exactly one MODEL.onnx");
  if (max_mem_mb <= 0 || time_limit <= 0) return cli_usage_error("--max-memory and --time-limit must be positive");
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxModel) m = cli_load_model(argv[1], &err);
  if (!m) {
    fprintf(stderr, "cnnfx: %s\n", err->message);
    return 1;
  }
  printf("model %s: opset %d, %d nodes\n", argv[1], cnnfx_model_opset(m), cnnfx_model_n_nodes(m));
  g_autoptr(CnnfxBackend) be = cli_backend_new("cpu", FALSE, &err);
  CnnfxSessionOptions so = {.mem_limit = (size_t)max_mem_mb << 20, .cancel = &info_timed_out};
  g_autoptr(CnnfxSession) s = be ? cnnfx_session_new(m, be, &so, &err) : NULL;
  gboolean ran = s != NULL;
  for (int i = 0; ran && i < cnnfx_model_n_inputs(m); i++) {
    g_autoptr(CnnfxTensor) t = cli_make_input(m, i, shape, &err);
    if (t && t->numel * cnnfx_dtype_size(t->dtype) > so.mem_limit) {
      g_clear_error(&err);
      g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "input %s needs more than --max-memory %" G_GINT64_FORMAT " MiB",
                  cnnfx_model_input_name(m, i), max_mem_mb);
      ran = FALSE;
    } else if (!t || !cnnfx_session_set_input(s, cnnfx_model_input_name(m, i), t, &err)) {
      ran = FALSE;
    }
  }
  struct sigaction sa = {0}, old;
  sa.sa_handler = on_info_alarm;
  sigaction(SIGALRM, &sa, &old);
  info_timed_out = 0;
  alarm((unsigned)time_limit);
  if (ran && !cnnfx_session_forward(s, &err)) ran = FALSE;
  alarm(0);
  sigaction(SIGALRM, &old, NULL);
  if (info_timed_out && err) g_prefix_error(&err, "over --time-limit %d s: ", time_limit);
  if (!ran) fprintf(stderr, "cnnfx: shapes unknown (%s)\n", err ? err->message : "");
  g_free(shape);
  int64_t dims[CNNFX_MAX_DIMS];
  int nd;
  for (int i = 0; i < cnnfx_model_n_inputs(m); i++) {
    const char *nm = cnnfx_model_input_name(m, i);
    printf("input   %-40s ", nm);
    if (ran && cnnfx_session_shape(s, nm, &nd, dims)) print_shape(nd, dims);
    else {
      nd = cnnfx_model_input_shape(m, i, dims);
      print_shape(nd, dims);
    }
    printf("\n");
  }
  for (int i = 0; i < cnnfx_model_n_outputs(m); i++) {
    const char *nm = cnnfx_model_output_name(m, i);
    printf("output  %-40s ", nm);
    if (ran && cnnfx_session_shape(s, nm, &nd, dims)) print_shape(nd, dims);
    else printf("?");
    printf("\n");
  }
  for (int k = 0; k < cnnfx_model_n_nodes(m); k++) {
    for (int o = 0; o < cnnfx_model_node_n_outputs(m, k); o++) {
      const char *nm = cnnfx_model_node_output(m, k, o);
      if (!nm[0]) continue;
      printf("tensor  %-40s ", nm);
      if (ran && cnnfx_session_shape(s, nm, &nd, dims)) print_shape(nd, dims);
      else printf("?");
      printf("  %s %s\n", cnnfx_model_node_op(m, k), cnnfx_model_node_name(m, k));
    }
  }
  return ran ? 0 : 1;
}

/* ---- bench -------------------------------------------------------------------- */

static gint cmp_double(gconstpointer a, gconstpointer b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* One forward (+ backward of 0.5*||y||^2 over output 0).  Output 0 is read back to the host also
 * without --grad, so that a step on an asynchronous device (cuda) is timed to its end. */
static gboolean bench_step(CnnfxSession *s, const CnnfxModel *m, gboolean grad, GError **error)
{
  if (!cnnfx_session_forward(s, error)) return FALSE;
  const char *out = cnnfx_model_output_name(m, 0);
  CnnfxTensor *y = cnnfx_session_get(s, out, error);
  if (!y) return FALSE;
  if (!grad) return TRUE;
  if (!cnnfx_session_backward(s, 1, &out, &y, error)) return FALSE;
  return cnnfx_session_grad(s, cnnfx_model_input_name(m, 0), error) != NULL;
}

int cmd_bench(int argc, char **argv)
{
  char *shape = NULL, *device = NULL;
  gboolean grad = FALSE, exact = FALSE, profile = FALSE;
  int runs = 5;
  gint64 max_mem_mb = 0;
  GOptionEntry entries[] = {
    {"shape", 0, 0, G_OPTION_ARG_STRING, &shape, "Input shape (default: the model's, else 1,3,224,224)", "N,C,H,W"},
    {"grad", 0, 0, G_OPTION_ARG_NONE, &grad, "Also time backward of 0.5*||y||^2 to the input", NULL},
    {"device", 0, 0, G_OPTION_ARG_STRING, &device, "auto|cpu|cuda|cuda:N|sim", "DEV"},
    {"runs", 0, 0, G_OPTION_ARG_INT, &runs, "Timed runs after one warm-up (default 5)", "N"},
    {"max-memory", 0, 0, G_OPTION_ARG_INT64, &max_mem_mb, "Memory limit in MiB (error when exceeded)", "MB"},
    {"exact", 0, 0, G_OPTION_ARG_NONE, &exact, "No Winograd or other approximate kernels", NULL},
    {"profile", 0, 0, G_OPTION_ARG_NONE, &profile, "Also print where the time goes: per operator type and the slowest nodes", NULL},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv, "MODEL.onnx — time forward (and backward) passes", entries)) return 2;
  if (argc != 2 || runs < 1) return cli_usage_error("bench needs exactly one MODEL.onnx and --runs >= 1");
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxBackend) be = cli_backend_new(device ? device : "auto", exact, &err);
  g_free(device);
  if (!be) return cli_usage_error(err->message);
  g_autoptr(CnnfxModel) m = cli_load_model(argv[1], &err);
  if (!m) {
    fprintf(stderr, "cnnfx: %s\n", err->message);
    return 1;
  }
  CnnfxSessionOptions o = {.grad = grad ? CNNFX_GRAD_INPUT : CNNFX_GRAD_NONE, .mem_limit = (size_t)max_mem_mb << 20,
                           .profile = profile};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
  g_autoptr(GArray) times = g_array_new(FALSE, FALSE, sizeof(double));
  if (!s) goto fail;
  {
    g_autoptr(GRand) r = g_rand_new_with_seed(1);
    for (int i = 0; i < cnnfx_model_n_inputs(m); i++) {
      g_autoptr(CnnfxTensor) t = cli_make_input(m, i, i == 0 ? shape : NULL, &err);
      if (!t) goto fail;
      cli_fill_uniform(t, r, 0.0, 1.0);
      if (!cnnfx_session_set_input(s, cnnfx_model_input_name(m, i), t, &err)) goto fail;
      if (i == 0) {
        g_autofree char *ss = cnnfx_shape_string(t);
        g_autofree char *desc = cnnfx_backend_describe(be);
        printf("model %s input %s %s\n%s\n", argv[1], ss, grad ? "forward+backward" : "forward", desc);
      }
    }
  }
  g_free(shape);
  shape = NULL;
  if (!bench_step(s, m, grad, &err)) goto fail; /* warm-up */
  cnnfx_session_profile_reset(s);
  for (int i = 0; i < runs; i++) {
    gint64 t0 = g_get_monotonic_time();
    if (!bench_step(s, m, grad, &err)) goto fail;
    double ms = (g_get_monotonic_time() - t0) / 1000.0;
    g_array_append_val(times, ms);
    printf("run %d: %.2f ms\n", i + 1, ms);
    fflush(stdout);
  }
  g_array_sort(times, cmp_double);
  double med = runs % 2 ? g_array_index(times, double, runs / 2)
                        : 0.5 * (g_array_index(times, double, runs / 2 - 1) + g_array_index(times, double, runs / 2));
  if (profile) cli_print_profile(s, runs);
  /* the plan (arena vs the largest sum of live tensors); the summary line stays last */
  CnnfxSessionStats st;
  cnnfx_session_stats(s, &st);
  printf("plan: arena_mb=%.1f max_live_mb=%.1f devices=%d nodes_device=%d nodes_cpu_fallback=%d nodes_folded=%d "
         "system_allocs=%" G_GUINT64_FORMAT "\n",
         st.arena_bytes / 1048576.0, st.max_live_bytes / 1048576.0, st.n_devices, st.nodes_device, st.nodes_fallback,
         st.nodes_folded, st.system_allocs);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%s: runs=%d min_ms=%.2f peak_tensor_mb=%.1f peak_rss_mb=%.1f median_ms=%.2f\n",
         grad ? "forward+backward" : "forward", runs, g_array_index(times, double, 0),
         cnnfx_session_peak_bytes(s) / 1048576.0, ru.ru_maxrss / 1024.0, med);
  return 0;
fail:
  g_free(shape);
  fprintf(stderr, "cnnfx: %s\n", err ? err->message : "failed");
  return 1;
}

/* ---- grad ------------------------------------------------------------------------ */

int cmd_grad(int argc, char **argv)
{
  char *input = NULL, *outp = NULL;
  char **taps = NULL;
  gboolean exact = FALSE;
  GOptionEntry entries[] = {
    {"input", 0, 0, G_OPTION_ARG_FILENAME, &input, "Input tensor (TensorProto .pb)", "FILE"},
    {"tap", 0, 0, G_OPTION_ARG_STRING_ARRAY, &taps, "Tensor(s) whose 0.5*||t||^2 is differentiated (default: output 0)", "NAME"},
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &outp, "Where to write the input gradient (TensorProto)", "FILE"},
    {"exact", 0, 0, G_OPTION_ARG_NONE, &exact, "No Winograd or other approximate kernels", NULL},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv, "MODEL.onnx — gradient of 0.5*sum ||tap||^2 w.r.t. the first input", entries))
    return 2;
  int rc = 1;
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxModel) m = NULL;
  g_autoptr(CnnfxBackend) be = NULL; /* freed after the session that uses it */
  g_autoptr(CnnfxSession) s = NULL;
  g_autoptr(GBytes) b = NULL;
  if (argc != 2 || !input || !outp) {
    rc = cli_usage_error("grad needs MODEL.onnx --input FILE -o FILE");
    goto out;
  }
  if (!(m = cli_load_model(argv[1], &err))) goto out;
  const char *def_tap[] = {cnnfx_model_output_name(m, 0), NULL};
  const char *const *t = taps ? (const char *const *)taps : def_tap;
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = t};
  be = cli_backend_new("auto", exact, &err);
  if (!be || !(s = cnnfx_session_new(m, be, &o, &err))) goto out;
  {
    g_autoptr(CnnfxTensor) x = cli_load_tensor_pb(input, &err);
    if (!x || !cnnfx_session_set_input(s, cnnfx_model_input_name(m, 0), x, &err)) goto out;
  }
  if (!cnnfx_session_forward(s, &err)) goto out;
  int nt = (int)g_strv_length((char **)t);
  CnnfxTensor **seeds = g_new0(CnnfxTensor *, nt + 1);
  for (int i = 0; i < nt; i++)
    if (!(seeds[i] = cnnfx_session_get(s, t[i], &err))) break;
  gboolean ok = !err && cnnfx_session_backward(s, nt, t, seeds, &err);
  g_free(seeds);
  if (!ok) goto out;
  CnnfxTensor *g = cnnfx_session_grad(s, cnnfx_model_input_name(m, 0), &err);
  if (!g) goto out;
  b = cnnfx_tensor_to_proto(g, "grad", &err);
  if (!b || !g_file_set_contents(outp, g_bytes_get_data(b, NULL), (gssize)g_bytes_get_size(b), &err)) goto out;
  rc = 0;
out:
  if (err) fprintf(stderr, "cnnfx: %s\n", err->message);
  g_free(input);
  g_free(outp);
  g_strfreev(taps);
  return rc;
}

/* ---- check-grad: finite differences --------------------------------------------- */

typedef struct {
  const CnnfxModel *m;
  CnnfxSession *fwd;
  CnnfxTensor **inputs;
  CnnfxTensor **r;   /* random projection per output */
} GradCheck;

static gboolean eval_loss(GradCheck *gc, double *loss, GError **error)
{
  if (!cnnfx_session_forward(gc->fwd, error)) return FALSE;
  double L = 0;
  for (int k = 0; k < cnnfx_model_n_outputs(gc->m); k++) {
    if (!gc->r[k]) continue;
    CnnfxTensor *y = cnnfx_session_get(gc->fwd, cnnfx_model_output_name(gc->m, k), error);
    if (!y) return FALSE;
    for (size_t i = 0; i < y->numel; i++) L += (double)cnnfx_f32(y)[i] * cnnfx_f32(gc->r[k])[i];
  }
  *loss = L;
  return TRUE;
}

int cmd_check_grad(int argc, char **argv)
{
  gint seed = 1, samples = 64;
  double eps = 1e-2, rtol = 1e-2, atol = 1e-3;
  gboolean exact = FALSE;
  g_autofree char *shape = NULL, *device = NULL;
  GOptionEntry entries[] = {
    {"seed", 0, 0, G_OPTION_ARG_INT, &seed, "Random seed", "N"},
    {"device", 0, 0, G_OPTION_ARG_STRING, &device, "auto|cpu|cuda|cuda:N|sim", "DEV"},
    {"shape", 0, 0, G_OPTION_ARG_STRING, &shape, "Shape of the first input when the model's is dynamic", "N,C,H,W"},
    {"eps", 0, 0, G_OPTION_ARG_DOUBLE, &eps, "Finite-difference step (default 1e-2)", "E"},
    {"rtol", 0, 0, G_OPTION_ARG_DOUBLE, &rtol, "Relative tolerance (default 1e-2)", "R"},
    {"atol", 0, 0, G_OPTION_ARG_DOUBLE, &atol, "Absolute tolerance (default 1e-3)", "A"},
    {"samples", 0, 0, G_OPTION_ARG_INT, &samples, "Elements checked per input (default 64)", "N"},
    {"exact", 0, 0, G_OPTION_ARG_NONE, &exact, "No Winograd or other approximate kernels", NULL},
    G_OPTION_ENTRY_NULL};
  if (!cli_parse(&argc, &argv, "MODEL.onnx — check analytic input gradients against central differences", entries))
    return 2;
  if (argc != 2) return cli_usage_error("check-grad needs exactly one MODEL.onnx");
  g_autoptr(GError) err = NULL;
  g_autoptr(CnnfxModel) m = cli_load_model(argv[1], &err);
  if (!m) {
    printf("FAIL %s: %s\n", argv[1], err->message);
    return 1;
  }
  int ni = cnnfx_model_n_inputs(m), no = cnnfx_model_n_outputs(m);
  g_autoptr(CnnfxBackend) be = cli_backend_new(device ? device : "auto", exact, &err);
  CnnfxSessionOptions og = {.grad = CNNFX_GRAD_INPUT};
  GradCheck gc = {m, NULL, g_new0(CnnfxTensor *, ni + 1), g_new0(CnnfxTensor *, no + 1)};
  g_autoptr(CnnfxSession) sg = be ? cnnfx_session_new(m, be, &og, &err) : NULL;
  g_autoptr(CnnfxSession) sf = be ? cnnfx_session_new(m, be, NULL, &err) : NULL;
  g_autoptr(GRand) r = g_rand_new_with_seed((guint32)seed);
  int failed = 0, checked = 0;
  gc.fwd = sf;
  if (!sg || !sf) goto fail;
  for (int i = 0; i < ni; i++) {
    int64_t dims[CNNFX_MAX_DIMS];
    int nd = cnnfx_model_input_shape(m, i, dims);
    const char *nm = cnnfx_model_input_name(m, i);
    if (i == 0 && shape && !cli_parse_shape(shape, &nd, dims, &err)) goto fail;
    for (int k = 0; k < nd; k++)
      if (dims[k] < 0) nd = -1;
    if (nd < 0) {
      g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "input '%s' needs a static declared shape", nm);
      goto fail;
    }
    if (!(gc.inputs[i] = cnnfx_tensor_new_f32(nd, dims, &err))) goto fail;
    if (g_str_has_suffix(nm, "_pos")) cli_fill_uniform(gc.inputs[i], r, 0.5, 1.5);
    else cli_fill_uniform(gc.inputs[i], r, -1.0, 1.0);
    if (!cnnfx_session_set_input(sg, nm, gc.inputs[i], &err) || !cnnfx_session_set_input(sf, nm, gc.inputs[i], &err))
      goto fail;
  }
  if (!cnnfx_session_forward(sg, &err)) goto fail;
  {
    const char **names = g_new0(const char *, no + 1);
    int ns = 0;
    for (int k = 0; k < no; k++) {
      CnnfxTensor *y = cnnfx_session_get(sg, cnnfx_model_output_name(m, k), &err);
      if (!y) {
        g_free(names);
        goto fail;
      }
      if (y->dtype != CNNFX_F32) continue;
      if (!(gc.r[k] = cnnfx_tensor_new_f32(y->ndim, y->dims, &err))) {
        g_free(names);
        goto fail;
      }
      cli_fill_uniform(gc.r[k], r, -1.0, 1.0);
      names[ns] = cnnfx_model_output_name(m, k);
      ns++;
    }
    CnnfxTensor **seeds = g_new0(CnnfxTensor *, no + 1);
    int j = 0;
    for (int k = 0; k < no; k++) if (gc.r[k]) seeds[j++] = gc.r[k];
    gboolean ok = cnnfx_session_backward(sg, ns, names, seeds, &err);
    g_free(seeds);
    g_free(names);
    if (!ok) goto fail;
  }
  for (int i = 0; i < ni; i++) {
    const char *nm = cnnfx_model_input_name(m, i);
    CnnfxTensor *g = cnnfx_session_grad(sg, nm, &err);
    if (!g) goto fail;
    CnnfxTensor *x = gc.inputs[i];
    size_t n = x->numel, ns = MIN((size_t)samples, n);
    double worst = 0;
    size_t worst_i = 0, bad = 0;
    double worst_a = 0, worst_n = 0;
    for (size_t sidx = 0; sidx < ns; sidx++) {
      size_t idx = ns == n ? sidx : (size_t)g_rand_int_range(r, 0, (gint32)MIN(n, G_MAXINT32));
      float *xp = cnnfx_f32(x) + idx;
      float orig = *xp;
      double lp, lm;
      *xp = orig + (float)eps;
      double hp = (double)*xp - orig;
      if (!eval_loss(&gc, &lp, &err)) goto fail;
      *xp = orig - (float)eps;
      double hm = orig - (double)*xp;
      if (!eval_loss(&gc, &lm, &err)) goto fail;
      *xp = orig;
      double num = (lp - lm) / (hp + hm);
      double ana = cnnfx_f32(g)[idx];
      double excess = fabs(ana - num) - (atol + rtol * MAX(fabs(ana), fabs(num)));
      if (!(excess <= 0)) bad++;
      if (!(excess <= worst) || sidx == 0) {
        worst = isnan(excess) ? INFINITY : excess;
        worst_i = idx;
        worst_a = ana;
        worst_n = num;
      }
    }
    checked++;
    if (bad) {
      failed++;
      printf("FAIL %s %s: %zu of %zu samples differ; worst [%zu] analytic %.6g numeric %.6g\n", argv[1], nm, bad, ns,
             worst_i, worst_a, worst_n);
    } else {
      printf("PASS %s %s (%zu samples)\n", argv[1], nm, ns);
    }
  }
  if (!checked) {
    printf("FAIL %s: no float inputs to check\n", argv[1]);
    failed++;
  }
  goto done;
fail:
  printf("FAIL %s: %s\n", argv[1], err ? err->message : "error");
  failed++;
done:
  for (int i = 0; i < ni; i++) if (gc.inputs[i]) cnnfx_tensor_unref(gc.inputs[i]);
  for (int k = 0; k < no; k++) if (gc.r[k]) cnnfx_tensor_unref(gc.r[k]);
  g_free(gc.inputs);
  g_free(gc.r);
  return failed ? 1 : 0;
}
