/* First-use download of a filter's preferred ImageNet model (dream: GoogLeNet, style: VGG-19,
 * classify: SqueezeNet 1.1 from the ONNX Model Zoo, pinned by sha256 in weights/models.ini). */
#ifndef CNNFX_AUTOFETCH_H
#define CNNFX_AUTOFETCH_H

#include <glib.h>

/* Manifest name of the filter's preferred model, or NULL when it has none. */
const char *cli_autofetch_preferred(const char *filter);

/* TRUE when downloads are forbidden: CNNFX_OFFLINE set (not "0"/""), or CNNFX_AUTOFETCH is not
 * "1" (first-use download is opt-in for now; tests never touch the internet). */
gboolean cli_autofetch_disabled(gboolean *explicit_offline);

/* For a run without --model: the name of the preferred model when it is present or was just
 * downloaded (verified size and sha256, progress bar on a terminal), else NULL: the caller
 * uses the offline default, and one line on stderr said why (offline, or the download failed). */
char *cli_autofetch(const char *filter);

#endif
