/* cnnfx: neural image filters and model tools from the command line. */
#include "cli.h"
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
  {"dream", cmd_filter, "Deep Dream: amplify what a layer sees"},
  {"style", cmd_filter, "style transfer (Gatys et al.) or a fast style network"},
  {"classify", cmd_filter, "top-k labels, Grad-CAM / saliency heat maps"},
  {"fool", cmd_filter, "adversarial noise that changes the label"},
  {"visualize", cmd_filter, "class visualisation, filters, activation maps"},
  {"train", cmd_train, "train a small network (Fashion-MNIST) or build a random-feature one"},
  {"models", cmd_models, "list, fetch, verify downloadable models"},
  {"check-onnx", cmd_check_onnx, "run ONNX backend-test directories and compare outputs"},
  {"info", cmd_info, "list a model's inputs, outputs and tensors with shapes"},
  {"bench", cmd_bench, "time forward / forward+backward passes"},
  {"grad", cmd_grad, "write the gradient of 0.5*||tap||^2 w.r.t. the input"},
  {"check-grad", cmd_check_grad, "check gradients against finite differences"},
  {"report", cmd_report, "merge per-image reports of (sharded) runs: cnnfx report merge OUTDIR"},
  {"man", cmd_man, "print the manual page (roff)"},
};

gboolean cli_parse(int *argc, char ***argv, const char *summary, GOptionEntry *entries)
{
  g_autoptr(GOptionContext) ctx = g_option_context_new(summary);
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
  fprintf(stderr, "cnnfx: %s (see cnnfx --help)\n", msg);
  return 2;
}

static void usage(FILE *f)
{
  fprintf(f, "Usage: cnnfx COMMAND [OPTIONS] ...\n\nCommands:\n");
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\n'cnnfx COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
  /* OpenMP regions alternate with OpenBLAS's own threads; libgomp's default busy-waiting makes
   * the two fight for the cores (3-7x slower measured on 2 cores).  libgomp reads the policy when
   * it loads, so set it and start again once. */
  if (!g_getenv("OMP_WAIT_POLICY")) {
    g_setenv("OMP_WAIT_POLICY", "passive", TRUE);
    execv("/proc/self/exe", argv); /* on failure: carry on with the default policy */
  }
  /* Big tensors are freed and allocated again every iteration; glibc would hand each one back to
   * the kernel (mmap/munmap) and fault it in again.  Keep them in the heap (30% less time on a
   * style run, measured).  The library itself also reuses a session's blocks. */
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  setlocale(LC_ALL, "");
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
    return 0;
  }
  for (size_t i = 0; i < G_N_ELEMENTS(commands); i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "cnnfx: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
