/* `cnnfx man`: the manual page, generated from the filters' parameter tables so it never
 * drifts from the flags. */
#include "cli.h"
#include "cnnfx-filters.h"
#include <stdio.h>

static void roff_escape(const char *s)
{
  for (; *s; s++) {
    if (*s == '\\') fputs("\\e", stdout);
    else if (*s == '-') fputs("\\-", stdout);
    else putchar(*s);
  }
}

int cmd_man(int argc, char **argv)
{
  (void)argc;
  (void)argv;
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
  puts(".TP\n\\fB\\-o\\fR, \\fB\\-\\-output\\fR OUTDIR\nOutput folder (required).");
  puts(".TP\n\\fB\\-m\\fR, \\fB\\-\\-model\\fR NAME|PATH\nModel from \\fBcnnfx models list\\fR or an ONNX file; "
       "default: the filter's offline default.");
  puts(".TP\n\\fB\\-\\-device\\fR auto|cpu|cuda\nWhere to run.");
  puts(".TP\n\\fB\\-\\-seed\\fR N\nRandom seed; the same seed gives the same output.");
  puts(".TP\n\\fB\\-\\-overwrite\\fR\nReplace existing outputs.");
  puts(".TP\n\\fB\\-r\\fR, \\fB\\-\\-recursive\\fR\nRecurse into sub-folders.");
  puts(".TP\n\\fB\\-\\-max\\-memory\\fR MB\nTensor memory bound; big photos are processed in tiles to fit.");
  puts(".TP\n\\fB\\-\\-max\\-pixels\\fR N\nRefuse images declaring more pixels than N before decoding (default "
       "178956970, like Pillow): a decompression-bomb guard.");
  for (const CnnfxFilterInfo *const *f = cnnfx_filter_infos(); *f; f++) {
    printf(".SH %s (cnnfx %s)\n", (*f)->title, (*f)->name);
    roff_escape((*f)->help);
    puts(".");
    for (const CnnfxParam *p = (*f)->params; p->name; p++) {
      printf(".TP\n\\fB\\-\\-");
      roff_escape(p->name);
      printf("\\fR");
      switch (p->type) {
      case CNNFX_P_INT:
      case CNNFX_P_DOUBLE: printf(" N\n"); break;
      case CNNFX_P_CHOICE: printf(" "); roff_escape(p->choices); printf("\n"); break;
      case CNNFX_P_BOOL: printf(" [yes|no]\n"); break;
      case CNNFX_P_FILE:
      case CNNFX_P_FILES: printf(" FILE\n"); break;
      default: printf(" VALUE\n");
      }
      roff_escape(p->help);
      if (p->type == CNNFX_P_INT || p->type == CNNFX_P_DOUBLE) printf(" (%g to %g, default %g)", p->min, p->max, p->def);
      else if (p->def_str) {
        printf(" (default ");
        roff_escape(p->def_str);
        printf(")");
      } else if (p->type == CNNFX_P_BOOL)
        printf(" (default %s)", p->def ? "yes" : "no");
      puts(".");
    }
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
