/* cnnfx command-line front-end: shared helpers. */
#ifndef CNNFX_CLI_H
#define CNNFX_CLI_H

#include "cnnfx.h"
#include <glib/gi18n.h> /* _() and N_(): the CLI's messages, domain "cnnfx" (textdomain in main.c) */

/* Parse GOption entries for a subcommand; prints the error and returns FALSE on bad usage. */
gboolean cli_parse(int *argc, char ***argv, const char *summary, GOptionEntry *entries);
/* Print a usage error; returns exit code 2. */
int cli_usage_error(const char *msg);

CnnfxModel *cli_load_model(const char *path, GError **error);
CnnfxTensor *cli_load_tensor_pb(const char *path, GError **error);
gboolean cli_parse_shape(const char *s, int *ndim, int64_t *dims, GError **error);
void cli_fill_uniform(CnnfxTensor *t, GRand *r, double lo, double hi);
CnnfxTensor *cli_make_input(const CnnfxModel *m, int i, const char *shape, GError **error);

/* A backend set up the way the front-end was started: SIMD level (CNNFX_SIMD, read once in main),
 * OpenMP wait policy, and exact mode as asked. */
CnnfxBackend *cli_backend_new(const char *name, gboolean exact, GError **error);
/* Print a session's profile (opts.profile) in ms per step: per operator type, then the slowest nodes. */
void cli_print_profile(const CnnfxSession *s, int steps);
/* `cnnfx --version` / `cnnfx info --system`: CPU, SIMD level of cnnfx's kernels, BLAS and its core. */
void cli_print_system(void);

int cmd_check_onnx(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_check_grad(int argc, char **argv);
int cmd_filter(int argc, char **argv);
int cmd_man(int argc, char **argv);  /* argv[0] names the filter */
int cmd_models(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif
