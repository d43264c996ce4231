/* The filters' command-line flags, generated from the parameter tables. */
#ifndef CNNFX_FILTER_OPTIONS_H
#define CNNFX_FILTER_OPTIONS_H

#include "cnnfx-filters.h"

/* A GOption context whose main group has one entry per CLI-visible parameter of `params`
 * (the filter's own, then cnnfx_common_params()); parsing stores the values in params. */
GOptionContext *cli_filter_option_context(const CnnfxFilterInfo *info, CnnfxParams *params);
/* Rewrite yes/no flags so GOption's optional arguments never swallow an input file. */
char **cli_normalise_bool_flags(const CnnfxParams *p, int argc, char **argv, int *argc_out);
/* "--help" / man / docs texts of one parameter (translated; g_free). */
char *cli_param_description(const CnnfxParam *d);
char *cli_param_metavar(const CnnfxParam *d);
char *cli_format_number(double x);

#endif
