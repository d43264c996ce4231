/* Applying each filter to one image file and writing its outputs. */
#include "netload.h"
#include "cli.h"
#include "render.h"
#include <errno.h>
#include <math.h>
#include <glib/gstdio.h>
#include <string.h>

static gboolean is_filter(const FilterApp *app, const char *name)
{
  return !strcmp(app->info->name, name);
}

/* The filter layer names a parameter by its (translated) label ("Target: ..."); on the command
 * line the flag says more: "--target: Target: ...". */
static void add_flag(const FilterApp *app, GError **error)
{
  if (!error || !*error || (*error)->domain != CNNFX_ERROR) return;
  const char *msg = (*error)->message;
  const CnnfxParam *best = NULL;
  size_t best_len = 0;
  for (int i = 0; i < cnnfx_params_count(app->params); i++) {
    const CnnfxParam *d = cnnfx_params_nth(app->params, i);
    const char *lab = cnnfx_param_text(d->label);
    size_t n = strlen(lab);
    if (n > best_len && !strncmp(msg, lab, n) && msg[n] == ':') {
      best = d;
      best_len = n;
    }
  }
  if (best) g_prefix_error(error, "--%s: ", cnnfx_param_flag(best));
}

void cli_pending_free(gpointer p)
{
  CliPending *c = p;
  if (!c) return;
  if (c->tmp) (void)g_unlink(c->tmp); /* never committed: remove the temporary file */
  g_free(c->tmp);
  g_free(c->final);
  g_free(c);
}

static void pend(FilterApp *app, char *tmp, const char *final)
{
  CliPending *c = g_new0(CliPending, 1);
  c->tmp = tmp;
  c->final = g_strdup(final);
  g_ptr_array_add(app->pending, c);
}

/* Text outputs (reports) are written like images: temporary name, then rename. */
static gboolean write_text_atomic(FilterApp *app, const char *path, const char *text, GError **error)
{
  if (app->pending) {
    char *tmp = NULL;
    if (!cnnfx_write_temp(path, text, strlen(text), &tmp, error)) return FALSE;
    pend(app, tmp, path);
    return TRUE;
  }
  if (!app->overwrite && g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST, "%s exists (use --overwrite)", path);
    return FALSE;
  }
  return g_file_set_contents(path, text, -1, error); /* writes a temporary file and renames it */
}

static gboolean save_image(FilterApp *app, const CnnfxImage *img, const char *path, int depth, GError **error)
{
  if (app->pending) {
    char *tmp = NULL;
    if (!cnnfx_image_save_temp(img, path, depth, app->jpeg_quality, &tmp, error)) return FALSE;
    pend(app, tmp, path);
    return TRUE;
  }
  return cnnfx_image_save(img, path, depth, app->jpeg_quality, app->overwrite, error);
}

static void say(FilterApp *app, FILE *stream, const char *line)
{
  if (app->say) app->say(app->say_user, stream, line);
  else {
    fputs(line, stream);
    fflush(stream);
  }
}

/* A JSON string: valid UTF-8 kept as is (non-ASCII file names stay readable), quotes,
 * backslashes and control characters escaped; bytes that are not UTF-8 (file names are
 * bytes) become U+FFFD. */
static void json_string(GString *s, const char *t)
{
  g_autofree char *v = g_utf8_make_valid(t ? t : "", -1);
  g_string_append_c(s, '"');
  for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
    if (*p == '"' || *p == '\\') {
      g_string_append_c(s, '\\');
      g_string_append_c(s, (char)*p);
    } else if (*p < 0x20) {
      g_string_append_printf(s, "\\u%04x", *p);
    } else {
      g_string_append_c(s, (char)*p);
    }
  }
  g_string_append_c(s, '"');
}

static gboolean filter_prepare(FilterApp *app, GError **error);

gboolean cli_filter_prepare(FilterApp *app, GError **error)
{
  gboolean ok = filter_prepare(app, error);
  if (!ok) add_flag(app, error);
  return ok;
}

static gboolean filter_prepare(FilterApp *app, GError **error)
{
  if (is_filter(app, "style")) {
    const char *fast = cnnfx_params_string(app->params, "fast-model");
    const char *const *st0 = cnnfx_params_strings(app->params, "style");
    if (fast && st0 && *st0) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                  "--style and --fast-model do not go together: a fast-style network has its style built in "
                  "(give --fast-model FILE alone, or --style FILE for optimisation with -m MODEL)");
      return FALSE;
    }
    if (fast) {
      g_autoptr(GMappedFile) mf = g_mapped_file_new(fast, FALSE, error);
      if (!mf) return FALSE;
      app->fast = cnnfx_model_load(g_mapped_file_get_contents(mf), g_mapped_file_get_length(mf), error);
      if (!app->fast) g_prefix_error(error, "%s: ", fast);
      return app->fast != NULL;
    }
    const char *const *st = cnnfx_params_strings(app->params, "style");
    app->n_styles = st ? (int)g_strv_length((char **)st) : 0;
    if (!app->n_styles && !app->net->style_layers) {
      /* a model without style layers and no style image: a feed-forward style network (-m style-mosaic) */
      app->fast_net = TRUE;
      return TRUE;
    }
    if (!app->n_styles) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG,
                  _("style needs --style FILE, or a fast-style network (--fast-model FILE, -m style-mosaic)"));
      return FALSE;
    }
    const char *const *bl = cnnfx_params_strings(app->params, "style-blend");
    if (bl && *bl && (int)g_strv_length((char **)bl) != app->n_styles) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, _("--style-blend has %u weights for %d style images"),
                  g_strv_length((char **)bl), app->n_styles);
      return FALSE;
    }
    app->styles = g_new0(CnnfxTensor *, app->n_styles + 1);
    for (int i = 0; i < app->n_styles; i++) {
      g_autoptr(CnnfxImage) img = cnnfx_image_load(st[i], error);
      if (!img || !(app->styles[i] = cli_image_to_tensor(img, error))) {
        g_prefix_error(error, "--style: ");
        return FALSE;
      }
    }
  }
  if (is_filter(app, "fool") && !app->aux_params) {
    app->aux_params = cnnfx_params_new(cnnfx_filter_info("classify"));
    if (!app->aux_params || !cnnfx_params_set(app->aux_params, "overlay", "none", error)) return FALSE;
  }
  if (is_filter(app, "dream")) {
    const char *g = cnnfx_params_string(app->params, "guide");
    if (g) {
      g_autoptr(CnnfxImage) img = cnnfx_image_load(g, error);
      if (!img || !(app->guide = cli_image_to_tensor(img, error))) return FALSE;
    }
  }
  return TRUE;
}

void cli_filter_finish(FilterApp *app, GError **error)
{
  (void)error;
  if (app->aux_params) cnnfx_params_free(app->aux_params);
  app->aux_params = NULL;
  for (int i = 0; i < app->n_styles; i++)
    if (app->styles && app->styles[i]) cnnfx_tensor_unref(app->styles[i]);
  g_free(app->styles);
  app->styles = NULL;
  if (app->guide) cnnfx_tensor_unref(app->guide);
  app->guide = NULL;
  if (app->fast) cnnfx_model_free(app->fast);
  app->fast = NULL;
}

char *cli_filter_main_output(const FilterApp *app, const char *rel)
{
  if (is_filter(app, "classify"))
    return cli_output_path(app->outdir, rel, NULL,
                           !g_strcmp0(cnnfx_params_string(app->params, "format"), "json") ? ".json" : ".csv");
  if (is_filter(app, "fool")) return cli_output_path(app->outdir, rel, NULL, ".png"); /* lossless: noise survives */
  return cli_output_path(app->outdir, rel, NULL, NULL);
}

GPtrArray *cli_filter_outputs(const FilterApp *app, const char *rel)
{
  GPtrArray *a = g_ptr_array_new_with_free_func(g_free);
  if (is_filter(app, "classify")) {
    if (g_strcmp0(cnnfx_params_string(app->params, "overlay"), "none") != 0)
      g_ptr_array_add(a, cli_output_path(app->outdir, rel, ".heatmap", NULL));
    if (cnnfx_params_bool(app->params, "labels-image"))
      g_ptr_array_add(a, cli_output_path(app->outdir, rel, ".labels", NULL));
  } else if (is_filter(app, "fool")) {
    g_ptr_array_add(a, cli_output_path(app->outdir, rel, ".noise", ".png"));
    g_ptr_array_add(a, cli_output_path(app->outdir, rel, ".fool", ".txt"));
  }
  g_ptr_array_add(a, cli_filter_main_output(app, rel));
  return a;
}

static int out_depth(const FilterApp *app, const CnnfxImage *img)
{
  return app->depth16 ? 16 : img->depth;
}

/* A single-channel map [1,H,W] or [H,W] 0..1 rendered with a colour map over the image. */
static CnnfxImage *render_heatmap(const CnnfxImage *img, const CnnfxTensor *map, const char *cmap, double opacity,
                                  GError **error);

static GString *csv_escape(GString *s, const char *t)
{
  g_string_append_c(s, '"');
  for (; t && *t; t++) {
    if (*t == '"') g_string_append_c(s, '"');
    g_string_append_c(s, *t);
  }
  g_string_append_c(s, '"');
  return s;
}

int cli_filter_reduced_side(const FilterApp *app)
{
  /* Four times the input size: libjpeg's reduced decode averages 8x8 (or 4x4, 2x2) blocks, and
   * with the resize after it still shrinking at least 4x, that box adds about 3% to the variance
   * of the antialiasing filter (twice the size: 13%, and top-1 probabilities of photos moved by
   * up to 5 points against a full-size decode; four times: about a point). */
  if (!is_filter(app, "classify") || !app->net || app->net->pre.fixed_h <= 0 || app->net->pre.fixed_w <= 0) return 0;
  return 4 * MAX(app->net->pre.fixed_h, app->net->pre.fixed_w);
}

static gboolean apply_classify(FilterApp *app, CnnfxImage *img, CnnfxTensor *x, const char *src, const char *rel,
                               GError **error)
{
  int k = cnnfx_params_int(app->params, "top");
  CnnfxTensor *heat = NULL;
  gboolean want_heat = g_strcmp0(cnnfx_params_string(app->params, "overlay"), "none") != 0;
  /* The scores come from the same pixels whatever is written: a JPEG that the run without heat
   * map and labels image decodes reduced (jobs.c) is decoded reduced here too for the network
   * (the overlays are drawn over the full-size image; the map is resampled onto it). */
  g_autoptr(CnnfxTensor) xr = NULL;
  const int side = cli_filter_reduced_side(app);
  if (side > 0 && src && img->jpeg && img->scale_denom == 1 && cnnfx_image_jpeg_denom(img->width, img->height, side) > 1) {
    CnnfxImageLoadOptions lo = app->load;
    lo.min_side = side;
    g_autoptr(CnnfxImage) r = cnnfx_image_load_with(src, &lo, error);
    if (!r || !(xr = cli_image_to_tensor(r, error))) return FALSE;
    x = xr;
  }
  CnnfxScore *top = g_new0(CnnfxScore, k);
  gboolean ok = cnnfx_classify(app->net, app->params, &app->run, x, top, k, want_heat ? &heat : NULL, error);
  while (ok && k > 1 && top[k - 1].index < 0) k--; /* default --top on a model with fewer classes */
  if (ok && heat) {
    g_autoptr(CnnfxImage) h = render_heatmap(img, heat, cnnfx_params_string(app->params, "colormap"),
                                             cnnfx_params_double(app->params, "opacity"), error);
    g_autofree char *hp = cli_output_path(app->outdir, rel, ".heatmap", NULL);
    if (h) cnnfx_image_copy_meta(h, img);
    if (h && g_strcmp0(cnnfx_params_string(app->params, "colormap"), "gray") != 0) h->gray = FALSE; /* colour map */
    ok = h && save_image(app, h, hp, out_depth(app, img), error);
  }
  if (ok && cnnfx_params_bool(app->params, "labels-image")) {
    g_autoptr(CnnfxImage) li = cli_draw_labels(img, top, k, error);
    g_autofree char *lp = cli_output_path(app->outdir, rel, ".labels", NULL);
    if (li) cnnfx_image_copy_meta(li, img);
    if (li) li->gray = FALSE; /* coloured labels box */
    ok = li && save_image(app, li, lp, out_depth(app, img), error);
  }
  if (ok) {
    gboolean json = !g_strcmp0(cnnfx_params_string(app->params, "format"), "json");
    g_autoptr(GString) s = g_string_new(NULL);
    if (json) {
      g_autofree char *disp = g_filename_display_name(src);
      g_string_append(s, "{\"file\": ");
      json_string(s, disp);
      g_string_append(s, ", \"model\": ");
      json_string(s, app->net->name);
      g_string_append(s, ", \"top\": [");
      for (int i = 0; i < k; i++) {
        g_string_append_printf(s, "%s\n  {\"rank\": %d, \"index\": %d, \"label\": ", i ? "," : "", i + 1,
                               top[i].index);
        json_string(s, top[i].label ? top[i].label : "");
        g_string_append_printf(s, ", \"prob\": %.6f}", top[i].prob);
      }
      g_string_append(s, "\n]}\n");
    } else {
      g_string_append(s, "file,rank,index,label,probability\n");
      for (int i = 0; i < k; i++) {
        csv_escape(s, src);
        g_string_append_printf(s, ",%d,%d,", i + 1, top[i].index);
        csv_escape(s, top[i].label ? top[i].label : "");
        g_string_append_printf(s, ",%.6f\n", top[i].prob);
      }
    }
    g_autofree char *rp = cli_filter_main_output(app, rel);
    ok = write_text_atomic(app, rp, s->str, error);
    g_autofree char *line = g_strdup_printf("%s: %s (%.1f%%)\n", src, top[0].label ? top[0].label : "?", 100 * top[0].prob);
    if (ok) say(app, stdout, line);
  }
  if (heat) cnnfx_tensor_unref(heat);
  g_free(top);
  return ok;
}

/* A greyscale photo stays grey: the adversarial image is averaged over R, G, B (every grey
 * sample stays within epsilon of the original, which is grey too) and re-quantised, then
 * classified again so that the report tells the truth about the grey file that is written. */
static gboolean fool_to_gray(FilterApp *app, const CnnfxImage *orig, CnnfxTensor *x, CnnfxTensor *noise,
                             CnnfxFoolReport *rep, GError **error)
{
  size_t hw = (size_t)x->dims[1] * x->dims[2];
  float *d = cnnfx_f32(x);
  double linf = 0;
  int c = orig->channels;
  for (size_t i = 0; i < hw; i++) {
    float g = roundf((d[i] + d[hw + i] + d[2 * hw + i]) / 3.f * 255.f) / 255.f;
    d[i] = d[hw + i] = d[2 * hw + i] = g;
    linf = MAX(linf, fabs((double)g - orig->px[i * c]) * 255.0);
  }
  if (noise) {
    float *n = cnnfx_f32(noise);
    size_t nhw = (size_t)noise->dims[1] * noise->dims[2];
    for (size_t i = 0; i < nhw; i++) n[i] = n[nhw + i] = n[2 * nhw + i] = (n[i] + n[nhw + i] + n[2 * nhw + i]) / 3.f;
  }
  int k = 1;
  if (app->net->labels) k = MAX(1, (int)g_strv_length(app->net->labels));
  CnnfxScore *top = g_new0(CnnfxScore, k);
  gboolean ok = cnnfx_classify(app->net, app->aux_params, &app->run, x, top, k, NULL, error);
  if (ok) {
    rep->after = top[0];
    rep->linf = linf;
    if (rep->target.index >= 0) {
      rep->fooled = top[0].index == rep->target.index;
      for (int i = 0; i < k; i++)
        if (top[i].index == rep->target.index) rep->target.prob = top[i].prob;
    } else {
      rep->fooled = top[0].index != rep->before.index;
    }
  }
  g_free(top);
  return ok;
}

static gboolean apply_fool(FilterApp *app, CnnfxImage *img, CnnfxTensor *x, const char *src, const char *rel,
                           GError **error)
{
  CnnfxTensor *noise = NULL;
  CnnfxFoolReport rep = {0};
  gboolean ok = cnnfx_fool(app->net, app->params, &app->run, x, &noise, &rep, error);
  if (ok && img->gray && app->aux_params) ok = fool_to_gray(app, img, x, noise, &rep, error);
  if (ok && noise) {
    g_autoptr(CnnfxImage) ni = cnnfx_image_new(img->width, img->height, 3, 8, error);
    if (!ni) ok = FALSE;
    else {
      cli_tensor_to_image(noise, ni);
      ni->gray = img->gray;
      g_autofree char *np = cli_output_path(app->outdir, rel, ".noise", ".png");
      ok = save_image(app, ni, np, 8, error);
    }
  }
  g_autofree char *text = NULL;
  if (ok) {
    g_autofree char *tgt = NULL;
    if (rep.target.index >= 0 && rep.target.label)
      tgt = g_strdup_printf(", target %s (%.1f%%)", rep.target.label, 100 * rep.target.prob);
    else if (rep.target.index >= 0)
      tgt = g_strdup_printf(", target class %d (%.1f%%)", rep.target.index, 100 * rep.target.prob);
    g_autofree char *lb =
      rep.before.label ? g_strdup(rep.before.label) : g_strdup_printf("class %d", rep.before.index);
    g_autofree char *la =
      rep.after.label ? g_strdup(rep.after.label) : g_strdup_printf("class %d", rep.after.index);
    text = g_strdup_printf(
      "%s: %s (%.1f%%) -> %s (%.1f%%)%s, L-inf %.0f/255 after 8-bit save, %d iterations, %s\n", src, lb,
      100 * rep.before.prob, la, 100 * rep.after.prob, tgt ? tgt : "", rep.linf, rep.iterations,
      rep.fooled ? "fooled" : "not fooled");
    g_autofree char *rp = cli_output_path(app->outdir, rel, ".fool", ".txt");
    ok = write_text_atomic(app, rp, text, error);
  }
  if (ok) {
    cli_tensor_to_image(x, img);
    g_autofree char *op = cli_filter_main_output(app, rel);
    ok = save_image(app, img, op, 8, error);
  }
  if (ok) say(app, stdout, text);
  if (noise) cnnfx_tensor_unref(noise);
  return ok;
}

static gboolean filter_apply(FilterApp *app, CnnfxImage *img, const char *src, const char *rel, GError **error);

gboolean cli_filter_apply(FilterApp *app, CnnfxImage *img, const char *src, const char *rel, GError **error)
{
  gboolean ok = filter_apply(app, img, src, rel, error);
  if (!ok) add_flag(app, error);
  return ok;
}

static gboolean filter_apply(FilterApp *app, CnnfxImage *img, const char *src, const char *rel, GError **error)
{
  g_autoptr(CnnfxTensor) x = cli_image_to_tensor(img, error);
  if (!x) return FALSE;
  g_autofree char *out = cli_filter_main_output(app, rel);
  if (is_filter(app, "classify")) return apply_classify(app, img, x, src, rel, error);
  if (is_filter(app, "fool")) return apply_fool(app, img, x, src, rel, error);
  gboolean ok;
  if (is_filter(app, "dream")) {
    ok = cnnfx_dream(app->net, app->params, &app->run, x, app->guide, error);
  } else if (is_filter(app, "style")) {
    ok = app->fast || app->fast_net
           ? cnnfx_fast_style(app->fast ? app->fast : app->net->model, &app->run, x, error)
                   : cnnfx_style(app->net, app->params, &app->run, x, app->styles, app->n_styles, error);
  } else {
    g_autoptr(CnnfxTensor) v = cnnfx_visualize(app->net, app->params, &app->run, x, error);
    if (!v) return FALSE;
    /* Visualisations have their own size. */
    g_autoptr(CnnfxImage) vi = cnnfx_image_new((int)v->dims[2], (int)v->dims[1], 3, 8, error);
    if (!vi) return FALSE;
    cli_tensor_to_image(v, vi);
    return save_image(app, vi, out, out_depth(app, img), error);
  }
  if (!ok) return FALSE;
  cli_tensor_to_image(x, img); /* grey sources are written grey again (image.c averages R, G, B) */
  return save_image(app, img, out, out_depth(app, img), error);
}

/* ---- heat maps ------------------------------------------------------------------------ */

static CnnfxImage *render_heatmap(const CnnfxImage *img, const CnnfxTensor *map, const char *cmap, double opacity,
                                  GError **error)
{
  CnnfxImage *o = cnnfx_image_new(img->width, img->height, img->channels, img->depth, error);
  if (!o) return NULL;
  if (!cnnfx_render_heatmap(img->px, img->width, img->height, img->channels, map, cmap, opacity, o->px, error)) {
    cnnfx_image_free(o);
    return NULL;
  }
  return o;
}
