/* cnnfx: neural image filters and model tools from the command line. */
#include "cli.h"
#include "cnnfx-filters.h"
#include <locale.h>
#include <malloc.h>
#include <stdio.h>
#include <unistd.h>

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *help;
} Command;

static const Command commands[] = {
  {"dream", cmd_filter, N_("Deep Dream: amplify what a layer sees")},
  {"style", cmd_filter, N_("style transfer (Gatys et al.) or a fast style network")},
  {"classify", cmd_filter, N_("top-k labels, Grad-CAM / saliency heat maps")},
  {"fool", cmd_filter, N_("adversarial noise that changes the label")},
  {"visualize", cmd_filter, N_("class visualisation, filters, activation maps")},
  {"train", cmd_train, N_("train a classifier (CIFAR-10, your own photo folders, Fashion-MNIST), fine-tune one, or build a random-feature network")},
  {"models", cmd_models, N_("list, fetch, verify downloadable models")},
  {"check-onnx", cmd_check_onnx, N_("run ONNX backend-test directories and compare outputs")},
  {"info", cmd_info, N_("list a model's inputs, outputs and tensors with shapes")},
  {"bench", cmd_bench, N_("time forward / forward+backward passes")},
  {"grad", cmd_grad, N_("write the gradient of 0.5*||tap||^2 w.r.t. the input")},
  {"check-grad", cmd_check_grad, N_("check gradients against finite differences")},
  {"report", cmd_report, N_("merge per-image reports of (sharded) runs: cnnfx report merge OUTDIR")},
  {"man", cmd_man, N_("print the manual page (roff; --markdown NAME: an option table)")},
};

gboolean cli_parse(int *argc, char ***argv, const char *summary, GOptionEntry *entries)
{
  g_autoptr(GOptionContext) ctx = g_option_context_new(_(summary)); /* N_() at the call sites */
  g_autoptr(GError) err = NULL;
  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, argc, argv, &err)) {
    fprintf(stderr, "cnnfx %s: %s\n", (*argv)[0], err->message);
    return FALSE;
  }
  return TRUE;
}

int cli_usage_error(const char *msg)
{
  fprintf(stderr, _("cnnfx: %s (see cnnfx --help)\n"), _(msg)); /* msg: N_() at the call sites */
  return 2;
}

/* Messages in the user's language: LANGUAGE / LC_ALL / LC_MESSAGES / LANG.  The catalogues are
 * the installed ones (CNNFX_LOCALEDIR), or the build tree's (BUILD/po/<lang>/LC_MESSAGES) when this
 * cnnfx runs from its build folder.  Output is UTF-8 whatever the locale's charset. */
static void init_i18n(const char *argv0)
{
  const char *dir = CNNFX_LOCALEDIR;
  g_autofree char *exe = g_file_read_link("/proc/self/exe", NULL);
  if (exe && g_str_has_prefix(exe, CNNFX_BUILD_ROOT "/") && g_file_test(CNNFX_BUILD_LOCALEDIR, G_FILE_TEST_IS_DIR))
    dir = CNNFX_BUILD_LOCALEDIR;
  (void)argv0;
  /* glibc ignores LANGUAGE under the "C" locale (no locale configured, as in containers and
   * CI); the C.UTF-8 locale is built in and behaves the same otherwise, so switch to it for
   * messages when LANGUAGE asks for a language. */
  const char *language = g_getenv("LANGUAGE");
  const char *msgs = setlocale(LC_MESSAGES, NULL);
  if (language && *language && msgs && (!strcmp(msgs, "C") || !strcmp(msgs, "POSIX")))
    if (!setlocale(LC_MESSAGES, "C.UTF-8")) setlocale(LC_MESSAGES, "C.utf8");
  /* No usable locale (none configured, or LANG names one that is not generated, e.g. ru_RU.UTF-8
   * on a fresh Debian): print UTF-8 rather than '?' for every non-ASCII character. */
  const char *ctype = setlocale(LC_CTYPE, NULL);
  if (ctype && (!strcmp(ctype, "C") || !strcmp(ctype, "POSIX")))
    if (!setlocale(LC_CTYPE, "C.UTF-8")) setlocale(LC_CTYPE, "C.utf8");
  bindtextdomain(CNNFX_GETTEXT_DOMAIN, dir);
  bind_textdomain_codeset(CNNFX_GETTEXT_DOMAIN, "UTF-8");
  textdomain(CNNFX_GETTEXT_DOMAIN);
}

static void usage(FILE *f)
{
  fprintf(f, "%s\n\n%s\n", _("Usage: cnnfx COMMAND [OPTIONS] ..."), _("Commands:"));
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) fprintf(f, "  %-12s %s\n", commands[i].name, _(commands[i].help));
  fprintf(f, "\n%s\n", _("'cnnfx COMMAND --help' shows a command's options."));
}

/* Chosen once at start (CNNFX_SIMD, OMP_WAIT_POLICY) and passed to every backend. */
static CnnfxSimd cli_simd = CNNFX_SIMD_AUTO;
static gboolean cli_passive_wait = FALSE;

CnnfxBackend *cli_backend_new(const char *name, gboolean exact, GError **error)
{
  CnnfxBackend *b = cnnfx_backend_new(name, error);
  if (!b) return NULL;
  cnnfx_backend_set_exact(b, exact);
  cnnfx_backend_set_passive_wait(b, cli_passive_wait);
  /* the CPU kernels' SIMD level (also those the simulated device runs) */
  if ((!strcmp(cnnfx_backend_name(b), "cpu") || !strcmp(cnnfx_backend_name(b), "sim")) &&
      !cnnfx_backend_set_simd(b, cli_simd, error)) {
    cnnfx_backend_free(b);
    return NULL;
  }
  return b;
}

/* Settings that the OpenMP runtime and OpenBLAS read only when they load: set them and start again,
 * once (CNNFX_RESTARTED guards against loops; a user's own setting is never overridden).
 * - OMP_WAIT_POLICY=passive: OpenMP regions alternate with OpenBLAS's own threads; libgomp's default
 *   busy-waiting makes the two fight for the cores (3-7x slower measured on 2 cores).
 * - OPENBLAS_CORETYPE: an OpenBLAS older than the CPU runs its generic SSE3 kernels ("Prescott"),
 *   4-5x slower than the AVX2 / AVX-512 ones it has; name the right core for this CPU. */
static void restart_tuned(char **argv)
{
  if (g_getenv("CNNFX_RESTARTED")) {
    g_unsetenv("CNNFX_RESTARTED"); /* children start clean */
    return;
  }
  gboolean again = FALSE;
  if (!g_getenv("OMP_WAIT_POLICY")) {
    g_setenv("OMP_WAIT_POLICY", "passive", TRUE);
    again = TRUE;
  }
  CnnfxBlasInfo bi;
  cnnfx_blas_check(&bi);
  if (bi.generic && bi.suggest && bi.dynamic_arch && !g_getenv("OPENBLAS_CORETYPE")) {
    g_setenv("OPENBLAS_CORETYPE", bi.suggest, TRUE);
    again = TRUE;
  }
  if (again) {
    g_setenv("CNNFX_RESTARTED", "1", TRUE);
    execv("/proc/self/exe", argv); /* on failure: carry on as we are */
    g_unsetenv("CNNFX_RESTARTED");
  }
}

int main(int argc, char **argv)
{
  restart_tuned(argv);
  const char *wp = g_getenv("OMP_WAIT_POLICY");
  cli_passive_wait = wp && !g_ascii_strcasecmp(wp, "passive");
  const char *simd = g_getenv("CNNFX_SIMD");
  if (simd && *simd) {
    g_autoptr(GError) serr = NULL;
    if (!cnnfx_simd_parse(simd, &cli_simd, &serr)) {
      fprintf(stderr, "cnnfx: CNNFX_SIMD: %s\n", serr->message);
      return 2;
    }
    if (!cnnfx_cpu_supports(cli_simd)) {
      fprintf(stderr, "cnnfx: CNNFX_SIMD=%s: this CPU or build cannot run it (best: %s)\n", simd,
              cnnfx_simd_name(cnnfx_cpu_simd()));
      return 2;
    }
  }
  /* Big tensors are freed and allocated again every iteration; glibc would hand each one back to
   * the kernel (mmap/munmap) and fault it in again.  Keep them in the heap (30% less time on a
   * style run, measured).  The library itself also reuses a session's blocks. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  setlocale(LC_ALL, "");
  init_i18n(argv[0]);
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("cnnfx 0.1.0\n");
    cli_print_system();
    return 0;
  }
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, _("cnnfx: unknown command '%s'\n"), argv[1]);
  usage(stderr);
  return 2;
}
