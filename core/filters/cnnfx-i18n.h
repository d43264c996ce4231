/* Messages of the filters and of the front-end library (batch/, shared by the CLI and the GIMP
 * plug-in): translated in the "cnnfx" domain whatever textdomain the program chose (the plug-in's
 * is GIMP's business).  N_() marks table strings that are translated where they are shown.  Not
 * installed. */
#ifndef CNNFX_I18N_H
#define CNNFX_I18N_H

#include "cnnfx-filters.h"

#undef _
#undef N_
#define _(s) g_dgettext(CNNFX_GETTEXT_DOMAIN, s)
#define N_(s) (s)

#endif
