/* test_backend_ops — every operator on two backends, forward and backward, compared.
 *
 * In the spirit of ggml's test-backend-ops.  The cases are small ONNX models written at test time
 * by tests/backend_ops/gen.py (the models of tests/gradcheck/gen_*.py, forward + backward, and ONNX
 * node tests, forward only, for operators the gradcheck models do not cover).  Each case runs on
 * the reference backend (first -b, default cpu) and on the backend under test (second -b, default
 * sim) with the same inputs; all forward outputs and the gradients at every float graph input
 * (seeded with a fixed pseudo-random gradient at every float output) must agree within the
 * tolerance of the backend pair: exact equality for cpu vs sim (and cpu vs cpu), rtol 1e-3 when
 * CUDA takes part.
 *
 *   test_backend_ops [-b cpu] [-b sim|cuda|cpu:exact] [-o OP] [--list] [--self-test]
 *
 * A backend spec is a name for cnnfx_backend_new(), optionally followed by ":exact"
 * (cnnfx_backend_set_exact).  Exit: 0 all passed, 1 a failure, 77 a backend cannot be created.
 * Every case also checks that neither backend wrote into the input tensors it was given.
 * --self-test first proves that the comparison can fail (cpu vs cpu with one backend's results
 * perturbed must FAIL every case; cpu vs cpu:exact must FAIL the Winograd convolutions), then runs
 * the requested pair.
 */
#include "cnnfx.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef TBO_PYTHON
#define TBO_PYTHON "/usr/bin/python3"
#endif
#ifndef TBO_GEN
#define TBO_GEN "tests/backend_ops/gen.py"
#endif
#ifndef TBO_WORKDIR
#define TBO_WORKDIR "backend_ops"
#endif

typedef struct {
  char *op, *name;
  gboolean grad;
  char *model;
  GPtrArray *pbs; /* char* input TensorProto files, empty: fill from declared shapes */
} Case;

typedef struct {
  char *spec;
  CnnfxBackend *b;
} Be;

typedef struct {
  int n_out, n_in;
  CnnfxTensor **out;  /* copies, NULL where unavailable */
  CnnfxTensor **grad; /* copies, NULL where no gradient (non-float input) */
} Result;

typedef struct {
  double rtol, atol;
} Tol;

static void result_clear(Result *r)
{
  for (int i = 0; i < r->n_out; i++)
    if (r->out[i]) cnnfx_tensor_unref(r->out[i]);
  for (int i = 0; i < r->n_in; i++)
    if (r->grad && r->grad[i]) cnnfx_tensor_unref(r->grad[i]);
  g_free(r->out);
  g_free(r->grad);
  memset(r, 0, sizeof *r);
}

static void case_free(gpointer p)
{
  Case *c = p;
  g_free(c->op);
  g_free(c->name);
  g_free(c->model);
  g_ptr_array_unref(c->pbs);
  g_free(c);
}

static Be *be_new(const char *spec, GError **error)
{
  g_auto(GStrv) parts = g_strsplit(spec, ":", 2);
  CnnfxBackend *b = cnnfx_backend_new(parts[0], error);
  if (!b) return NULL;
  if (parts[1]) {
    if (strcmp(parts[1], "exact")) {
      cnnfx_backend_free(b);
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "unknown backend option '%s' (only ':exact')", parts[1]);
      return NULL;
    }
    cnnfx_backend_set_exact(b, TRUE);
  }
  Be *be = g_new0(Be, 1);
  be->spec = g_strdup(spec);
  be->b = b;
  return be;
}

static void be_free(Be *be)
{
  if (!be) return;
  cnnfx_backend_free(be->b);
  g_free(be->spec);
  g_free(be);
}

static Tol pair_tol(const char *a, const char *b)
{
  if (g_str_has_prefix(a, "cuda") || g_str_has_prefix(b, "cuda")) return (Tol){1e-3, 1e-5};
  return (Tol){0, 0}; /* cpu vs sim, cpu vs cpu: the same kernels, bit for bit */
}

/* ---- cases ------------------------------------------------------------------------------------ */

static gboolean generate(const char *python, const char *gen, const char *dir, GError **error)
{
  const char *argv[] = {python, gen, dir, NULL};
  gint status = 0;
  g_autofree char *err_out = NULL;
  if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, NULL, &err_out, &status, error))
    return FALSE;
  if (!g_spawn_check_wait_status(status, error)) {
    g_prefix_error(error, "%s %s %s: %s: ", python, gen, dir, err_out ? err_out : "");
    return FALSE;
  }
  return TRUE;
}

static GPtrArray *read_cases(const char *path, GError **error)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, error)) return NULL;
  GPtrArray *cases = g_ptr_array_new_with_free_func(case_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l; l++) {
    if (!**l) continue;
    g_auto(GStrv) f = g_strsplit(*l, "\t", -1);
    if (g_strv_length(f) < 4) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: bad line '%s'", path, *l);
      g_ptr_array_unref(cases);
      return NULL;
    }
    Case *c = g_new0(Case, 1);
    c->op = g_strdup(f[0]);
    c->name = g_strdup(f[1]);
    c->grad = !strcmp(f[2], "grad");
    c->model = g_strdup(f[3]);
    c->pbs = g_ptr_array_new_with_free_func(g_free);
    for (int i = 4; f[i]; i++) g_ptr_array_add(c->pbs, g_strdup(f[i]));
    g_ptr_array_add(cases, c);
  }
  return cases;
}

static CnnfxModel *load_model(const char *path, GError **error)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &data, &len, error)) return NULL;
  return cnnfx_model_load(data, len, error);
}

/* Operators cnnfx_model_load accepts: a one-node probe model per ONNX operator. */
static GPtrArray *registered_ops(const char *path, GError **error)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, error)) return NULL;
  GPtrArray *ops = g_ptr_array_new_with_free_func(g_free);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto(GStrv) f = g_strsplit(*l, "\t", 2);
    if (!f[0] || !f[1]) continue;
    g_autoptr(GError) err = NULL;
    g_autoptr(CnnfxModel) m = load_model(f[1], &err);
    if (m || !(err->domain == CNNFX_ERROR && err->code == CNNFX_ERROR_UNSUPPORTED && strstr(err->message, "operator ") &&
               strstr(err->message, "is not supported")))
      g_ptr_array_add(ops, g_strdup(f[0]));
  }
  return ops;
}

/* ---- running one case on one backend ------------------------------------------------------------ */

static void fill_uniform(CnnfxTensor *t, GRand *r, double lo, double hi)
{
  float *d = cnnfx_f32(t);
  for (size_t i = 0; i < t->numel; i++) d[i] = (float)g_rand_double_range(r, lo, hi);
}

static CnnfxTensor **make_inputs(const Case *c, const CnnfxModel *m, guint32 seed, GError **error)
{
  int ni = cnnfx_model_n_inputs(m);
  CnnfxTensor **in = g_new0(CnnfxTensor *, ni + 1);
  g_autoptr(GRand) r = g_rand_new_with_seed(seed);
  for (int i = 0; i < ni; i++) {
    const char *nm = cnnfx_model_input_name(m, i);
    if (c->pbs->len) {
      if ((guint)i >= c->pbs->len) {
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "no data for input '%s'", nm);
        goto fail;
      }
      g_autofree char *data = NULL;
      gsize len = 0;
      if (!g_file_get_contents(c->pbs->pdata[i], &data, &len, error)) goto fail;
      if (!(in[i] = cnnfx_tensor_from_proto(data, len, NULL, error))) goto fail;
      continue;
    }
    int64_t dims[CNNFX_MAX_DIMS];
    int nd = cnnfx_model_input_shape(m, i, dims);
    for (int k = 0; k < nd; k++)
      if (dims[k] < 0) nd = -1;
    if (nd < 0) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "input '%s' needs a static declared shape", nm);
      goto fail;
    }
    if (!(in[i] = cnnfx_tensor_new_f32(nd, dims, error))) goto fail;
    if (g_str_has_suffix(nm, "_pos")) fill_uniform(in[i], r, 0.5, 1.5);
    else fill_uniform(in[i], r, -1.0, 1.0);
  }
  return in;
fail:
  for (int i = 0; i < ni; i++)
    if (in[i]) cnnfx_tensor_unref(in[i]);
  g_free(in);
  return NULL;
}

/* seeds: NULL on the reference run, which creates them (*seeds_out) from its output shapes. */
static gboolean run_case(const Case *c, const CnnfxModel *m, Be *be, CnnfxTensor **in, CnnfxTensor ***seeds,
                         guint32 seed, Result *res, GError **error)
{
  int ni = cnnfx_model_n_inputs(m), no = cnnfx_model_n_outputs(m);
  CnnfxSessionOptions o = {.grad = c->grad ? CNNFX_GRAD_INPUT : CNNFX_GRAD_NONE};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be->b, &o, error);
  if (!s) return FALSE;
  res->n_out = no;
  res->n_in = ni;
  res->out = g_new0(CnnfxTensor *, no + 1);
  res->grad = g_new0(CnnfxTensor *, ni + 1);
  for (int i = 0; i < ni; i++)
    if (!cnnfx_session_set_input(s, cnnfx_model_input_name(m, i), in[i], error)) return FALSE;
  if (!cnnfx_session_forward(s, error)) return FALSE;
  for (int k = 0; k < no; k++) {
    CnnfxTensor *y = cnnfx_session_get(s, cnnfx_model_output_name(m, k), error);
    if (!y || !(res->out[k] = cnnfx_tensor_copy(y, error))) return FALSE;
  }
  if (!c->grad) return TRUE;
  if (!*seeds) {
    g_autoptr(GRand) r = g_rand_new_with_seed(seed ^ 0x5eedu);
    *seeds = g_new0(CnnfxTensor *, no + 1);
    for (int k = 0; k < no; k++) {
      if (res->out[k]->dtype != CNNFX_F32) continue;
      if (!((*seeds)[k] = cnnfx_tensor_new_f32(res->out[k]->ndim, res->out[k]->dims, error))) return FALSE;
      fill_uniform((*seeds)[k], r, -1.0, 1.0);
    }
  }
  const char **names = g_new0(const char *, no + 1);
  CnnfxTensor **g = g_new0(CnnfxTensor *, no + 1);
  int n = 0;
  for (int k = 0; k < no; k++)
    if ((*seeds)[k]) {
      names[n] = cnnfx_model_output_name(m, k);
      g[n++] = (*seeds)[k];
    }
  gboolean ok = n == 0 || cnnfx_session_backward(s, n, names, g, error);
  g_free(names);
  g_free(g);
  if (!ok || n == 0) return ok;
  for (int i = 0; i < ni; i++) {
    if (in[i]->dtype != CNNFX_F32) continue;
    g_autoptr(GError) gerr = NULL;
    CnnfxTensor *gi = cnnfx_session_grad(s, cnnfx_model_input_name(m, i), &gerr);
    if (!gi) continue; /* no gradient reaches this input: checked below (both must agree) */
    if (!(res->grad[i] = cnnfx_tensor_copy(gi, error))) return FALSE;
  }
  return TRUE;
}

/* ---- comparison ------------------------------------------------------------------------------- */

/* TRUE when b matches reference a; *maxerr = max |a - b| (inf on a shape/NaN/inf mismatch). */
static gboolean compare(const CnnfxTensor *a, const CnnfxTensor *b, Tol tol, double *maxerr, char *why, size_t whylen)
{
  if (!a && !b) return TRUE;
  if (!a || !b) {
    g_snprintf(why, whylen, "%s", a ? "missing on the test backend" : "only on the test backend");
    *maxerr = INFINITY;
    return FALSE;
  }
  if (a->dtype != b->dtype || !cnnfx_same_shape(a, b)) {
    g_autofree char *sa = cnnfx_shape_string(a);
    g_autofree char *sb = cnnfx_shape_string(b);
    g_snprintf(why, whylen, "shape/type %s/%d vs %s/%d", sa, a->dtype, sb, b->dtype);
    *maxerr = INFINITY;
    return FALSE;
  }
  gboolean ok = TRUE;
  if (a->dtype == CNNFX_I64) {
    for (size_t i = 0; i < a->numel; i++)
      if (cnnfx_i64(a)[i] != cnnfx_i64(b)[i]) {
        double d = fabs((double)cnnfx_i64(a)[i] - (double)cnnfx_i64(b)[i]);
        if (d > *maxerr) *maxerr = d;
        if (ok) g_snprintf(why, whylen, "element %zu", i);
        ok = FALSE;
      }
    return ok;
  }
  const float *x = cnnfx_f32(a), *y = cnnfx_f32(b);
  for (size_t i = 0; i < a->numel; i++) {
    double u = x[i], v = y[i];
    gboolean good;
    double d;
    if (isnan(u) || isnan(v)) {
      good = isnan(u) && isnan(v);
      d = good ? 0 : INFINITY;
    } else if (isinf(u) || isinf(v)) {
      good = u == v;
      d = good ? 0 : INFINITY;
    } else {
      d = fabs(u - v);
      good = d <= tol.atol + tol.rtol * fabs(u);
    }
    if (d > *maxerr) *maxerr = d;
    if (!good && ok) g_snprintf(why, whylen, "element %zu: %.9g vs %.9g", i, u, v);
    ok = ok && good;
  }
  return ok;
}

/* Perturb the test backend's results (--self-test): one element of every non-empty result.
 * FALSE when there was nothing to perturb (all results empty). */
static gboolean perturb(Result *r)
{
  gboolean changed = FALSE;
  for (int k = 0; k < r->n_out + r->n_in; k++) {
    CnnfxTensor *t = k < r->n_out ? r->out[k] : r->grad[k - r->n_out];
    if (!t || !t->numel) continue;
    if (t->dtype == CNNFX_I64) {
      cnnfx_i64(t)[t->numel / 2] += 1;
      changed = TRUE;
    } else if (t->dtype == CNNFX_F32) {
      float *v = &cnnfx_f32(t)[t->numel / 2];
      *v = isfinite(*v) ? *v + 1e-3f * (1.0f + fabsf(*v)) : 0.0f;
      changed = TRUE;
    }
  }
  return changed;
}

typedef enum { CASE_OK, CASE_FAIL, CASE_UNSUPPORTED } CaseStatus;

/* One case on one pair: prints its line.  perturbed: also compare a perturbed copy (self-test) and
 * report in *perturbed_failed whether that comparison failed. */
static CaseStatus test_case(const Case *c, guint32 idx, Be *ref, Be *test, Tol tol, gboolean verbose,
                            gboolean self_perturb, gboolean *perturbed_failed)
{
  g_autoptr(GError) err = NULL;
  guint32 seed = 0x9e3779b9u * (idx + 1);
  g_autoptr(CnnfxModel) m = load_model(c->model, &err);
  CnnfxTensor **in = m ? make_inputs(c, m, seed, &err) : NULL;
  if (!in) {
    printf("  %s(%s): not supported (%s)\n", c->op, c->name, err->message);
    return CASE_UNSUPPORTED;
  }
  int ni = cnnfx_model_n_inputs(m);
  CnnfxTensor **in0 = g_new0(CnnfxTensor *, ni + 1); /* pristine copies of the inputs */
  for (int i = 0; i < ni; i++)
    if (!(in0[i] = cnnfx_tensor_copy(in[i], &err))) {
      printf("  %s(%s): FAIL: %s\n", c->op, c->name, err->message);
      for (int j = 0; j < ni; j++) {
        if (in0[j]) cnnfx_tensor_unref(in0[j]);
        cnnfx_tensor_unref(in[j]);
      }
      g_free(in0);
      g_free(in);
      return CASE_FAIL;
    }
  CnnfxTensor **seeds = NULL;
  Result ra = {0}, rb = {0};
  CaseStatus st = CASE_OK;
  GString *line = g_string_new(NULL);
  g_string_printf(line, "  %s(%s):", c->op, c->name);
  if (!run_case(c, m, ref, in, &seeds, seed, &ra, &err)) {
    if (!ra.out || !ra.out[ra.n_out ? ra.n_out - 1 : 0]) {
      g_string_append_printf(line, " not supported on %s (%s)", ref->spec, err->message);
      st = CASE_UNSUPPORTED;
    } else {
      g_string_append_printf(line, " FAIL: reference %s backward: %s", ref->spec, err->message);
      st = CASE_FAIL;
    }
    goto done;
  }
  if (!run_case(c, m, test, in, &seeds, seed, &rb, &err)) {
    g_string_append_printf(line, " FAIL: %s: %s", test->spec, err->message);
    st = CASE_FAIL;
    goto done;
  }
  /* neither backend may write into the caller's input tensors */
  for (int i = 0; i < ni; i++) {
    double d = 0;
    char w[200] = "";
    if (!compare(in0[i], in[i], (Tol){0, 0}, &d, w, sizeof w)) {
      g_string_append_printf(line, " FAIL: input '%s' was modified (%s)", cnnfx_model_input_name(m, i), w);
      st = CASE_FAIL;
      goto done;
    }
  }
  for (int pass = 0; pass < (self_perturb ? 2 : 1); pass++) {
    if (pass == 1 && !perturb(&rb)) {
      *perturbed_failed = TRUE; /* only empty results: nothing a comparison could catch */
      break;
    }
    gboolean all_ok = TRUE;
    GString *part = g_string_new(NULL);
    for (int phase = 0; phase < (c->grad ? 2 : 1); phase++) {
      double maxerr = 0;
      gboolean ok = TRUE;
      char why[200] = "";
      int n = phase == 0 ? ra.n_out : ra.n_in;
      for (int k = 0; k < n; k++) {
        char w[200] = "";
        gboolean o = phase == 0 ? compare(ra.out[k], rb.out[k], tol, &maxerr, w, sizeof w)
                                : compare(ra.grad[k], rb.grad[k], tol, &maxerr, w, sizeof w);
        if (!o && ok)
          g_snprintf(why, sizeof why, "%s '%s' %s", phase == 0 ? "output" : "gradient at",
                     phase == 0 ? cnnfx_model_output_name(m, k) : cnnfx_model_input_name(m, k), w);
        ok = ok && o;
      }
      g_string_append_printf(part, " %s %s max_err=%.3e%s%s", phase == 0 ? "fwd" : "bwd", ok ? "OK" : "FAIL", maxerr,
                             ok ? "" : " ", why);
      all_ok = all_ok && ok;
    }
    if (pass == 0) {
      g_string_append(line, part->str);
      if (!all_ok) st = CASE_FAIL;
    } else {
      *perturbed_failed = !all_ok;
      if (verbose) g_string_append_printf(line, "  | perturbed:%s", part->str);
    }
    g_string_free(part, TRUE);
  }
done:
  if (verbose || st != CASE_OK) printf("%s\n", line->str);
  g_string_free(line, TRUE);
  result_clear(&ra);
  result_clear(&rb);
  if (seeds) {
    for (int k = 0; k < cnnfx_model_n_outputs(m); k++)
      if (seeds[k]) cnnfx_tensor_unref(seeds[k]);
    g_free(seeds);
  }
  for (int i = 0; i < ni; i++) {
    cnnfx_tensor_unref(in[i]);
    cnnfx_tensor_unref(in0[i]);
  }
  g_free(in);
  g_free(in0);
  return st;
}

static gboolean case_selected(const Case *c, GHashTable *reg, const char *only)
{
  if (only && strcmp(c->op, only)) return FALSE;
  return g_hash_table_contains(reg, c->op);
}

/* Runs every selected case on (ref, test); prints lines and the summary; returns failures. */
static int run_pair(GPtrArray *cases, GHashTable *reg, GPtrArray *reg_ops, const char *only, Be *ref, Be *test,
                    gboolean quiet, double rtol, double atol)
{
  Tol tol = pair_tol(ref->spec, test->spec);
  if (rtol >= 0) tol.rtol = rtol;
  if (atol >= 0) tol.atol = atol;
  printf("Testing %s vs %s (rtol %g, atol %g)\n", ref->spec, test->spec, tol.rtol, tol.atol);
  g_autoptr(GHashTable) op_ok = g_hash_table_new(g_str_hash, g_str_equal);
  int run = 0, ok = 0, unsup = 0;
  for (guint i = 0; i < cases->len; i++) {
    Case *c = cases->pdata[i];
    if (!case_selected(c, reg, only)) continue;
    gboolean dummy = FALSE;
    CaseStatus st = test_case(c, i, ref, test, tol, !quiet, FALSE, &dummy);
    if (st == CASE_UNSUPPORTED) {
      unsup++;
      continue;
    }
    run++;
    gpointer prev = NULL;
    gboolean had = g_hash_table_lookup_extended(op_ok, c->op, NULL, &prev);
    gboolean good = (had ? GPOINTER_TO_INT(prev) : 1) && st == CASE_OK;
    g_hash_table_insert(op_ok, c->op, GINT_TO_POINTER(good));
    if (st == CASE_OK) ok++;
  }
  int n_ops = (int)g_hash_table_size(op_ok), ops_ok = 0;
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init(&it, op_ok);
  while (g_hash_table_iter_next(&it, &k, &v)) ops_ok += GPOINTER_TO_INT(v);
  GString *missing = g_string_new(NULL);
  int n_missing = 0;
  for (guint i = 0; i < reg_ops->len; i++) {
    const char *op = reg_ops->pdata[i];
    if (only && strcmp(op, only)) continue;
    if (!g_hash_table_contains(op_ok, op)) {
      g_string_append_printf(missing, " %s", op);
      n_missing++;
    }
  }
  printf("%s vs %s: %d/%d ops passed, %d/%d cases passed, %d cases not supported\n", ref->spec, test->spec, ops_ok,
         n_ops, ok, run, unsup);
  if (n_missing) printf("MISSING (%d registered ops without a case that runs):%s\n", n_missing, missing->str);
  g_string_free(missing, TRUE);
  if (run == 0) {
    printf("FAIL: no case ran\n");
    return 1;
  }
  return run - ok;
}

/* cpu vs cpu: all OK; every case FAILs once the test side is perturbed; cpu vs cpu:exact FAILs
 * somewhere (Winograd).  Returns TRUE when the comparison proved able to fail. */
static gboolean self_test(GPtrArray *cases, GHashTable *reg, GPtrArray *reg_ops)
{
  g_autoptr(GError) err = NULL;
  g_autoptr(GHashTable) conv = g_hash_table_new(g_str_hash, g_str_equal);
  int n = 0, caught = 0, clean_fail = 0, fails = 0;
  Be *a = be_new("cpu", &err), *b = a ? be_new("cpu", &err) : NULL, *x = b ? be_new("cpu:exact", &err) : NULL;
  gboolean good = TRUE;
  if (!x) {
    printf("self-test FAIL: %s\n", err->message);
    good = FALSE;
    goto out;
  }
  printf("self-test: cpu vs cpu, unperturbed and with one element of each result perturbed\n");
  for (guint i = 0; i < cases->len; i++) {
    Case *c = cases->pdata[i];
    if (!case_selected(c, reg, NULL)) continue;
    gboolean pf = FALSE;
    CaseStatus st = test_case(c, i, a, b, pair_tol("cpu", "cpu"), FALSE, TRUE, &pf);
    if (st == CASE_UNSUPPORTED) continue;
    n++;
    if (st != CASE_OK) clean_fail++;
    if (pf) caught++;
    else printf("  self-test: perturbing %s(%s) went unnoticed\n", c->op, c->name);
  }
  printf("self-test: %d cases, %d FAIL unperturbed (want 0), %d FAIL perturbed (want %d)\n", n, clean_fail, caught, n);
  if (n == 0 || clean_fail || caught != n) good = FALSE;
  /* cpu vs cpu:exact (no Winograd): convolution results differ in the last bits */
  g_hash_table_add(conv, "Conv");
  printf("self-test: cpu vs cpu:exact on Conv (expected: FAIL where Winograd runs)\n");
  for (guint i = 0; i < cases->len; i++) {
    Case *c = cases->pdata[i];
    if (!case_selected(c, conv, NULL) || !strstr(c->name, "wino")) continue;
    gboolean dummy = FALSE;
    if (test_case(c, i, a, x, pair_tol("cpu", "cpu:exact"), TRUE, FALSE, &dummy) == CASE_FAIL) fails++;
  }
  printf("self-test: cpu vs cpu:exact: %d Winograd cases FAIL (want > 0)\n", fails);
  if (!fails) good = FALSE;
  (void)reg_ops;
out:
  printf("self-test: %s\n", good ? "OK" : "FAIL");
  be_free(a);
  be_free(b);
  be_free(x);
  return good;
}

int main(int argc, char **argv)
{
  g_autofree char *only = NULL, *workdir = NULL, *python = NULL, *gen = NULL;
  g_auto(GStrv) backends = NULL;
  gboolean list = FALSE, selftest = FALSE, no_gen = FALSE, quiet = FALSE;
  double rtol = -1, atol = -1;
  GOptionEntry entries[] = {
    {"backend", 'b', 0, G_OPTION_ARG_STRING_ARRAY, &backends, "Backend: twice = reference, then under test; once = under test against cpu (default cpu vs sim)", "NAME[:exact]"},
    {"op", 'o', 0, G_OPTION_ARG_STRING, &only, "Only this operator", "OP"},
    {"list", 0, 0, G_OPTION_ARG_NONE, &list, "List the registered operators and their cases", NULL},
    {"self-test", 0, 0, G_OPTION_ARG_NONE, &selftest, "First prove that the comparison can fail", NULL},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "Print only failing cases and the summary", NULL},
    {"rtol", 0, 0, G_OPTION_ARG_DOUBLE, &rtol, "Relative tolerance (default: per backend pair)", "R"},
    {"atol", 0, 0, G_OPTION_ARG_DOUBLE, &atol, "Absolute tolerance (default: per backend pair)", "A"},
    {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir, "Where the case models are generated (default " TBO_WORKDIR ")", "DIR"},
    {"python", 0, 0, G_OPTION_ARG_FILENAME, &python, "Python with onnx (default " TBO_PYTHON ")", "PY"},
    {"generator", 0, 0, G_OPTION_ARG_FILENAME, &gen, "Case generator (default " TBO_GEN ")", "GEN.py"},
    {"no-gen", 0, 0, G_OPTION_ARG_NONE, &no_gen, "Use the cases already in --workdir", NULL},
    G_OPTION_ENTRY_NULL};
  g_autoptr(GOptionContext) ctx = g_option_context_new("— compare every operator on two backends");
  g_option_context_add_main_entries(ctx, entries, NULL);
  g_autoptr(GError) err = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &err)) {
    fprintf(stderr, "test_backend_ops: %s\n", err->message);
    return 2;
  }
  guint nb = backends ? g_strv_length(backends) : 0;
  if (nb > 2) {
    fprintf(stderr, "test_backend_ops: at most two -b\n");
    return 2;
  }
  const char *ref_spec = nb == 2 ? backends[0] : "cpu";
  const char *test_spec = nb == 2 ? backends[1] : nb == 1 ? backends[0] : "sim";
  if (!workdir) workdir = g_strdup(TBO_WORKDIR);
  if (!python) python = g_strdup(TBO_PYTHON);
  if (!gen) gen = g_strdup(TBO_GEN);
  if (!no_gen && !generate(python, gen, workdir, &err)) {
    printf("FAIL: generating the cases: %s\n", err->message);
    return 1;
  }
  g_autofree char *cases_path = g_build_filename(workdir, "cases.tsv", NULL);
  g_autofree char *probes_path = g_build_filename(workdir, "probes.tsv", NULL);
  g_autoptr(GPtrArray) cases = read_cases(cases_path, &err);
  g_autoptr(GPtrArray) reg_ops = cases ? registered_ops(probes_path, &err) : NULL;
  if (!reg_ops) {
    printf("FAIL: %s\n", err->message);
    return 1;
  }
  g_autoptr(GHashTable) reg = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < reg_ops->len; i++) g_hash_table_add(reg, reg_ops->pdata[i]);
  if (list) {
    for (guint i = 0; i < reg_ops->len; i++) {
      const char *op = reg_ops->pdata[i];
      int nf = 0, ng = 0;
      for (guint j = 0; j < cases->len; j++) {
        Case *c = cases->pdata[j];
        if (!strcmp(c->op, op)) *(c->grad ? &ng : &nf) += 1;
      }
      if (ng + nf) printf("%-28s %3d cases (%d forward+backward, %d forward)\n", op, ng + nf, ng, nf);
      else printf("%-28s MISSING\n", op);
    }
    return 0;
  }
  if (selftest && !self_test(cases, reg, reg_ops)) return 1;
  Be *ref = be_new(ref_spec, &err);
  if (!ref) {
    printf("skipped: backend %s is not available in this build/machine (%s)\n", ref_spec, err->message);
    return 77;
  }
  Be *test = be_new(test_spec, &err);
  if (!test) {
    printf("skipped: backend %s is not available in this build/machine (%s)\n", test_spec, err->message);
    be_free(ref);
    return 77;
  }
  int fails = run_pair(cases, reg, reg_ops, only, ref, test, quiet, rtol, atol);
  be_free(ref);
  be_free(test);
  return fails ? 1 : 0;
}
