/* `cnnfx man`: the manual page, generated from the filters' parameter tables so it never
 * drifts from the flags. */
#include "cli.h"
#include "cnnfx-filters.h"
#include "filter_options.h"
#include <string.h>
#include <stdio.h>

static void roff_escape(const char *s)
{
  for (; *s; s++) {
    if (*s == '\\') fputs("\\e", stdout);
    else if (*s == '-') fputs("\\-", stdout);
    else putchar(*s);
  }
}

static void roff_option(const CnnfxParam *p)
{
  printf(".TP\n");
  if (p->short_name) printf("\\fB\\-%c\\fR, ", p->short_name);
  printf("\\fB\\-\\-");
  roff_escape(cnnfx_param_flag(p));
  printf("\\fR ");
  g_autofree char *mv = cli_param_metavar(p);
  roff_escape(mv);
  printf("\n");
  g_autofree char *desc = cli_param_description(p);
  roff_escape(desc);
  puts(".");
}

/* Markdown option table of one filter ("common": the shared options), for docs/filters.md.
 * tests/test_docs.py checks that the generated blocks in docs/filters.md match this output. */
static void md_cell(GString *s, const char *t)
{
  for (; t && *t; t++) {
    if (*t == '|') g_string_append(s, "\\|");
    else g_string_append_c(s, *t);
  }
}

static void md_table(const CnnfxParam *params)
{
  GString *s = g_string_new("| option | label (GIMP) | default | range / choices | meaning |\n|---|---|---|---|---|\n");
  for (const CnnfxParam *p = params; p->name; p++) {
    g_string_append(s, "| `");
    if (p->short_name) g_string_append_printf(s, "-%c`, `", p->short_name);
    g_autofree char *mv = cli_param_metavar(p);
    g_string_append_printf(s, "--%s ", cnnfx_param_flag(p));
    md_cell(s, mv);
    g_string_append(s, "` | ");
    if (p->scope == CNNFX_SCOPE_CLI) g_string_append(s, "(CLI only)");
    else {
      md_cell(s, cnnfx_param_text(p->label));
      if (p->group && !strcmp(p->group, "Advanced")) g_string_append_printf(s, " (%s)", cnnfx_param_text(p->group));
    }
    g_string_append(s, " | ");
    g_autofree char *def = NULL;
    g_autofree char *range = NULL;
    switch (p->type) {
    case CNNFX_P_INT:
    case CNNFX_P_DOUBLE: {
      g_autofree char *lo = cli_format_number(p->min), *hi = cli_format_number(p->max);
      def = cli_format_number(p->def);
      range = g_strdup_printf("%s – %s%s", lo, hi, p->log_scale ? " (log)" : "");
      break;
    }
    case CNNFX_P_BOOL: def = g_strdup(p->def ? "yes" : "no"); break;
    case CNNFX_P_CHOICE: {
      def = g_strdup(p->def_str);
      GString *r = g_string_new(NULL);
      g_auto(GStrv) ch = g_strsplit(p->choices, "|", -1);
      for (int i = 0; ch[i]; i++) {
        g_autofree char *lab = cnnfx_param_choice_label(p, ch[i]);
        g_string_append_printf(r, "%s`%s`", i ? ", " : "", ch[i]);
        if (strcmp(lab, ch[i])) g_string_append_printf(r, " (%s)", lab);
      }
      if (p->choice_index) g_string_append(r, ", `cuda:N`");
      range = g_string_free(r, FALSE);
      break;
    }
    default: def = g_strdup(p->def_str);
    }
    md_cell(s, def ? def : "—");
    g_string_append(s, " | ");
    md_cell(s, range ? range : "");
    g_string_append(s, " | ");
    md_cell(s, cnnfx_param_text(p->help));
    if (p->sensitive_if) {
      g_string_append(s, "; used when `");
      md_cell(s, p->sensitive_if);
      g_string_append(s, "`");
    }
    g_string_append(s, " |\n");
  }
  fputs(s->str, stdout);
  g_string_free(s, TRUE);
}

static int man_markdown(const char *which)
{
  if (!which || !strcmp(which, "common")) {
    md_table(cnnfx_common_params());
    return 0;
  }
  const CnnfxFilterInfo *f = cnnfx_filter_info(which);
  if (!f) {
    fprintf(stderr, _("cnnfx man: no filter '%s' (dream, style, classify, fool, visualize or common)\n"), which);
    return 2;
  }
  md_table(f->params);
  return 0;
}

/* cnnfx man                 the manual page (roff)
 * cnnfx man --markdown NAME  the option table of filter NAME ("common": the shared options) in Markdown */
int cmd_man(int argc, char **argv)
{
  if (argc >= 2 && !strcmp(argv[1], "--markdown")) return man_markdown(argc >= 3 ? argv[2] : NULL);
  if (argc >= 2) {
    fprintf(stderr, "%s\n", _("usage: cnnfx man [--markdown dream|style|classify|fool|visualize|common]"));
    return 2;
  }
  puts(".TH CNNFX 1 \"\" \"cnnfx 0.1.0\" \"User Commands\"");
  puts(".SH NAME\ncnnfx \\- neural image filters and model tools");
  puts(".SH SYNOPSIS\n.B cnnfx\n.RI { dream | style | classify | fool | visualize } \" [OPTIONS] INPUT... \\-o OUTDIR\"");
  puts(".br\n.B cnnfx\n.RI { info | check\\-onnx | bench | grad | check\\-grad | models | train } \" ...\"");
  puts(".SH DESCRIPTION\ncnnfx runs convolutional networks from ONNX files forward and backward to the input "
       "image and applies neural filters to image files and whole folders. Inputs are PNG (8/16-bit, alpha kept) "
       "and JPEG files or folders (\\fB\\-r\\fR recurses); outputs mirror the input tree under OUTDIR, are written "
       "to a temporary name and renamed (never partial), and existing outputs are skipped unless "
       "\\fB\\-\\-overwrite\\fR, so an interrupted run resumes. Inputs are never modified.");
  puts(".SH COMMON FILTER OPTIONS");
  for (const CnnfxParam *p = cnnfx_common_params(); p->name; p++)
    if (p->scope != CNNFX_SCOPE_GUI) roff_option(p);
  for (const CnnfxFilterInfo *const *f = cnnfx_filter_infos(); *f; f++) {
    printf(".SH %s (cnnfx %s)\n", cnnfx_param_text((*f)->title), (*f)->name);
    roff_escape(cnnfx_param_text((*f)->help));
    puts(".");
    for (const CnnfxParam *p = (*f)->params; p->name; p++)
      if (p->scope != CNNFX_SCOPE_GUI) roff_option(p);
  }
  puts(".SH MODEL TOOLS");
  puts(".TP\n\\fBcnnfx info\\fR MODEL.onnx [\\-\\-shape N,C,H,W]\nInputs, outputs and every tensor with its shape "
       "(the names layer options accept).");
  puts(".TP\n\\fBcnnfx check\\-onnx\\fR DIR...\nRun ONNX backend-test folders; PASS/FAIL per data set.");
  puts(".TP\n\\fBcnnfx bench\\fR MODEL.onnx [\\-\\-shape ...] [\\-\\-grad] [\\-\\-runs N]\nTime forward "
       "(and backward) passes; the last line has median_ms=.");
  puts(".TP\n\\fBcnnfx models\\fR list|fetch NAME|verify|path NAME\nDownloadable models, sha256-verified.");
  puts(".TP\n\\fBcnnfx train\\fR \\-\\-arch lenet5 \\-\\-data fashion\\-mnist \\-o OUT.onnx\nTrain a small network.");
  puts(".SH EXIT STATUS\n0 every input done; 1 some inputs failed (each printed as \"path: reason\"); "
       "2 usage error (nothing processed); 130 interrupted.");
  puts(".SH FILES\n\\fIweights/offline.ini\\fR offline default models; "
       "\\fI$XDG_DATA_HOME/cnnfx/models\\fR downloaded models.");
  return 0;
}
