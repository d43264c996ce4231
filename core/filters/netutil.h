/* Internal helpers shared by the filters that read a classifier's scores (classify, visualize).
 * Not installed; the implementations live in net.c. */
#ifndef CNNFX_NETUTIL_H
#define CNNFX_NETUTIL_H

#include "cnnfx-filters.h"
#include "cnnfx-i18n.h" /* _() and N_() in the cnnfx domain */

/* The tensor whose entries are the class scores to differentiate (logits): net->output, or for
 * a probability output produced by a Softmax (possibly followed by Reshape / Flatten / Squeeze /
 * Unsqueeze / Identity) the Softmax input.  Borrowed from the model. */
const char *cnnfx_net_score_tensor(const CnnfxNet *net);

/* A "class" parameter -> class index: an exact label, a label ignoring case, one of a label's
 * comma-separated synonyms ("tabby, tabby cat") ignoring case, or an index 0..n_classes-1.
 * Errors name the option (--class). */
gboolean cnnfx_net_parse_class(const CnnfxNet *net, const char *s, int n_classes, int *out, GError **error);

/* For a net without a fixed input size (pre.fixed_h/w unset) whose graph input declares a
 * static H x W (the model zoo's [1,3,224,224]), set pre.fixed_h/w to it: classifiers run at the
 * size they were trained at.  Works on a shallow copy of the caller's net. */
void cnnfx_net_pin_input_size(CnnfxNet *eff);

/* The run a filter works with: a copy of *run (or of an empty run when NULL) in *local whose
 * backend is the caller's, or a CPU backend made here (*own, the caller frees it) when the caller
 * gave none: a front-end without a device never crashes.  NULL + error if no CPU backend. */
const CnnfxRun *cnnfx_run_resolve(const CnnfxRun *run, CnnfxRun *local, CnnfxBackend **own, GError **error);

#endif
