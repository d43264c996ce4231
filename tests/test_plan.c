/* The session's plan (issue #11): static memory arena, no allocation in a steady-state step, the
 * simulated device `sim` gives the same numbers as the CPU, and its memory is unreachable from host
 * code.
 *
 *   test_plan MODEL.onnx INPUT N,C,H,W TARGET [TARGET...]
 *
 * Each step is what a dream/style iteration does with the core: forward to the targets, backward
 * from gradients at the targets, read the input gradient.  Prints one line per check; exit 1 on any
 * failure. */
#include "cnnfx-private.h"
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                                                         \
  do {                                                                                                           \
    gboolean ok_ = (cond);                                                                                       \
    printf("%s: ", ok_ ? "ok" : "FAIL");                                                                         \
    printf(__VA_ARGS__);                                                                                         \
    printf("\n");                                                                                                \
    if (!ok_) failures++;                                                                                        \
  } while (0)

/* ---- counting every heap allocation of the process (glibc), while `counting` is set ------------ */
#if !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
#define COUNT_MALLOC 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
#include <execinfo.h>
static volatile int counting;
static volatile long n_mallocs;  /* made by cnnfx code (the executable, or GLib called from it) */
static volatile long n_runtime;  /* made inside libgomp / OpenBLAS for their own bookkeeping */
static int trace_mallocs;        /* TEST_PLAN_TRACE=1: print where cnnfx's steady-state allocations come from */
static __thread int busy;
extern char __executable_start, etext;
static gboolean ours(const void *pc)
{
  return (const char *)pc >= &__executable_start && (const char *)pc < &etext;
}
/* Attribute an allocation: cnnfx's if its caller, or its caller's caller (g_malloc -> malloc), is in
 * the executable (libcnnfx is linked in statically); else a runtime library's. */
static void count(void)
{
  if (!counting || busy) return;
  busy = 1;
  void *bt[8];
  int n = backtrace(bt, 8);
  if ((n > 2 && ours(bt[2])) || (n > 3 && ours(bt[3]))) {
    __atomic_add_fetch(&n_mallocs, 1, __ATOMIC_RELAXED);
    if (trace_mallocs && n_mallocs < 40) {
      backtrace_symbols_fd(bt + 1, n - 1, 2);
      if (write(2, "--\n", 3) < 0) busy = 1;
    }
  } else {
    __atomic_add_fetch(&n_runtime, 1, __ATOMIC_RELAXED);
  }
  busy = 0;
}
void *malloc(size_t n)
{
  count();
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
  count();
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
  count();
  return __libc_realloc(p, n);
}
int posix_memalign(void **p, size_t align, size_t n)
{
  count();
  *p = __libc_memalign(align, n);
  return *p ? 0 : 12;
}
void *aligned_alloc(size_t align, size_t n)
{
  count();
  return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n)
{
  count();
  return __libc_memalign(align, n);
}
void free(void *p)
{
  __libc_free(p);
}
#endif

typedef struct {
  CnnfxTensor *out0; /* first target after the last step (host copy) */
  CnnfxTensor *grad; /* input gradient after the last step (host copy) */
  guint64 allocs_steady;
  long mallocs_steady, runtime_steady;
  CnnfxSessionStats st;
} Run;

static gboolean step(CnnfxSession *s, const char *input, CnnfxTensor *x, char **targets, int nt, GError **error)
{
  if (!cnnfx_session_set_input(s, input, x, error) || !cnnfx_session_forward(s, error)) return FALSE;
  CnnfxTensor *seeds[16];
  for (int i = 0; i < nt; i++)
    if (!(seeds[i] = cnnfx_session_get(s, targets[i], error))) return FALSE;
  /* d(0.5 ||y||^2)/dy = y, as dream does */
  if (!cnnfx_session_backward(s, nt, (const char *const *)targets, seeds, error)) return FALSE;
  return cnnfx_session_grad(s, input, error) != NULL;
}

static gboolean run(const CnnfxModel *m, const char *device, const char *input, CnnfxTensor *x, char **targets,
                    int nt, int steps, Run *r, GError **error)
{
  g_autoptr(CnnfxBackend) be = cnnfx_backend_new(device, error);
  if (!be) return FALSE;
  const char *tg[17];
  for (int i = 0; i < nt; i++) tg[i] = targets[i];
  tg[nt] = NULL;
  CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = tg};
  g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, error);
  if (!s) return FALSE;
  CnnfxSessionStats st;
  for (int i = 0; i < steps; i++) {
    if (i == 3) {
      cnnfx_session_stats(s, &st);
      r->allocs_steady = st.system_allocs;
#ifdef COUNT_MALLOC
      n_mallocs = n_runtime = 0;
      counting = 1;
#endif
    }
    gboolean ok = step(s, input, x, targets, nt, error);
#ifdef COUNT_MALLOC
    if (i == steps - 1) counting = 0;
#endif
    if (!ok) return FALSE;
  }
#ifdef COUNT_MALLOC
  counting = 0;
  r->mallocs_steady = n_mallocs;
  r->runtime_steady = n_runtime;
#else
  r->mallocs_steady = -1;
#endif
  cnnfx_session_stats(s, &r->st);
  r->allocs_steady = r->st.system_allocs - r->allocs_steady;
  r->out0 = cnnfx_tensor_copy(cnnfx_session_get(s, targets[0], error), error);
  r->grad = cnnfx_tensor_copy(cnnfx_session_grad(s, input, error), error);
  return r->out0 && r->grad;
}

static double max_diff(const CnnfxTensor *a, const CnnfxTensor *b)
{
  if (!a || !b || a->numel != b->numel) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < a->numel; i++) d = fmax(d, fabs((double)cnnfx_f32(a)[i] - cnnfx_f32(b)[i]));
  return d;
}

/* A device buffer touched by host code outside the device's own calls must crash the process. */
static void sim_guard(void)
{
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    GError *e = NULL;
    CnnfxBackend *b = cnnfx_backend_new("sim", &e);
    if (!b) _exit(3);
    float *p = b->iface->buf_alloc(b, 4096, &e);
    if (!p) _exit(4);
    float one = 1.f;
    b->iface->upload(b, p, &one, sizeof one, &e); /* allowed: a device call */
    volatile float v = p[0];                      /* not allowed: host read of device memory */
    (void)v;
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
#if defined(__SANITIZE_ADDRESS__)
  /* AddressSanitizer catches the SEGV itself, reports it and exits with status 1 */
  CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) || (WIFEXITED(status) && WEXITSTATUS(status) == 1),
        "sim: a host read of device memory crashes (SEGV, reported by AddressSanitizer) instead of silently working");
#else
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
        "sim: a host read of device memory crashes (SIGSEGV) instead of silently working");
#endif
}

int main(int argc, char **argv)
{
  if (argc < 5) {
    fprintf(stderr, "usage: test_plan MODEL.onnx INPUT N,C,H,W TARGET...\n");
    return 2;
  }
  g_autoptr(GError) err = NULL;
  gchar *data = NULL;
  gsize len = 0;
  if (!g_file_get_contents(argv[1], &data, &len, &err)) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  g_autoptr(CnnfxModel) m = cnnfx_model_load(data, len, &err);
  g_free(data);
  if (!m) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  int64_t dims[4];
  if (sscanf(argv[3], "%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT, &dims[0],
             &dims[1], &dims[2], &dims[3]) != 4)
    return 2;
  g_autoptr(CnnfxTensor) x = cnnfx_tensor_new_f32(4, dims, &err);
  g_autoptr(GRand) rnd = g_rand_new_with_seed(7);
  for (size_t i = 0; i < x->numel; i++) cnnfx_f32(x)[i] = (float)g_rand_double_range(rnd, -1, 1);
  char **targets = argv + 4;
  int nt = MIN(argc - 4, 16);

#ifdef COUNT_MALLOC
  if (g_getenv("TEST_PLAN_TRACE")) {
    void *bt[2];
    backtrace(bt, 2); /* loads libgcc now, not while counting */
    trace_mallocs = 1;
  }
#endif
  Run cpu = {0}, sim = {0};
  gboolean ok = run(m, "cpu", argv[2], x, targets, nt, 6, &cpu, &err);
  CHECK(ok, "cpu: 6 steps of forward + backward (%s)", ok ? "ran" : err->message);
  if (!ok) return 1;
  CHECK(cpu.allocs_steady == 0, "cpu: steps 4-6 take no block from the system (%" G_GUINT64_FORMAT ")",
        cpu.allocs_steady);
  if (cpu.mallocs_steady >= 0)
    CHECK(cpu.mallocs_steady == 0,
          "cpu: cnnfx calls malloc/calloc/realloc/posix_memalign %ld times in steps 4-6 (want 0; libgomp and "
          "OpenBLAS allocate %ld small blocks of their own bookkeeping, not counted)",
          cpu.mallocs_steady, cpu.runtime_steady);
  else
    printf("skipped: malloc counting (sanitizer build)\n");
  CHECK(cpu.st.arena_bytes > 0 && cpu.st.arena_bytes >= cpu.st.max_live_bytes &&
            cpu.st.arena_bytes <= cpu.st.max_live_bytes + cpu.st.max_live_bytes / 4,
        "cpu: one arena of %.2f MiB for %.2f MiB of tensors alive at the peak (ratio %.3f, <= 1.25)",
        cpu.st.arena_bytes / 1048576.0, cpu.st.max_live_bytes / 1048576.0,
        (double)cpu.st.arena_bytes / (double)MAX(cpu.st.max_live_bytes, 1));

  ok = run(m, "sim", argv[2], x, targets, nt, 6, &sim, &err);
  CHECK(ok, "sim: 6 steps of forward + backward (%s)", ok ? "ran" : err->message);
  if (ok) {
    CHECK(sim.st.n_devices == 2 && sim.st.nodes_device > 0 && sim.st.nodes_fallback > 0,
          "sim: %d nodes on the device, %d fall back to the CPU, %d folded while planning", sim.st.nodes_device,
          sim.st.nodes_fallback, sim.st.nodes_folded);
    CHECK(max_diff(cpu.out0, sim.out0) == 0, "sim: forward output equals the CPU's exactly (max diff %g)",
          max_diff(cpu.out0, sim.out0));
    CHECK(max_diff(cpu.grad, sim.grad) == 0, "sim: input gradient equals the CPU's exactly (max diff %g)",
          max_diff(cpu.grad, sim.grad));
    CHECK(sim.allocs_steady == 0, "sim: steps 4-6 take no block from the system (%" G_GUINT64_FORMAT ")",
          sim.allocs_steady);
  }
  /* A new input size plans again and still gives the right numbers. */
  {
    int64_t d2[4] = {dims[0], dims[1], dims[2] + 8, dims[3] + 16};
    g_autoptr(CnnfxTensor) x2 = cnnfx_tensor_new_f32(4, d2, &err);
    for (size_t i = 0; i < x2->numel; i++) cnnfx_f32(x2)[i] = (float)g_rand_double_range(rnd, -1, 1);
    Run a = {0}, b = {0};
    g_autoptr(CnnfxBackend) be = cnnfx_backend_new("cpu", NULL);
    const char *tg[17];
    for (int i = 0; i < nt; i++) tg[i] = targets[i];
    tg[nt] = NULL;
    CnnfxSessionOptions o = {.grad = CNNFX_GRAD_INPUT, .targets = tg};
    g_autoptr(CnnfxSession) s = cnnfx_session_new(m, be, &o, &err);
    gboolean ok2 = s && step(s, argv[2], x, targets, nt, &err) && step(s, argv[2], x, targets, nt, &err) &&
                   step(s, argv[2], x2, targets, nt, &err);
    CnnfxTensor *g = ok2 ? cnnfx_session_grad(s, argv[2], &err) : NULL;
    ok2 = ok2 && run(m, "cpu", argv[2], x2, targets, nt, 1, &a, &err) && g;
    CHECK(ok2 && max_diff(g, a.grad) == 0, "a new input size re-plans: gradient equals a fresh session's (%g)",
          ok2 ? max_diff(g, a.grad) : -1.0);
    if (a.out0) cnnfx_tensor_unref(a.out0);
    if (a.grad) cnnfx_tensor_unref(a.grad);
    (void)b;
  }
  sim_guard();
  if (cpu.out0) cnnfx_tensor_unref(cpu.out0);
  if (cpu.grad) cnnfx_tensor_unref(cpu.grad);
  if (sim.out0) cnnfx_tensor_unref(sim.out0);
  if (sim.grad) cnnfx_tensor_unref(sim.grad);
  printf("%s\n", failures ? "FAILED" : "all passed");
  return failures ? 1 : 0;
}
