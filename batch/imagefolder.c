/* ImageFolder data sets: DIR/<class>/IMAGE (.jpg, .png) in memory, augmentation by random crop
 * (shift with padding) and horizontal flip. */
#include "imagefolder.h"
#include "image.h"
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

void cnnfx_imageset_clear(CnnfxImageSet *d)
{
  g_free(d->x);
  g_free(d->y);
  g_strfreev(d->classes);
  memset(d, 0, sizeof *d);
}

static gboolean is_image_name(const char *n)
{
  g_autofree char *l = g_ascii_strdown(n, -1);
  return g_str_has_suffix(l, ".jpg") || g_str_has_suffix(l, ".jpeg") || g_str_has_suffix(l, ".png");
}

typedef struct {
  char *name;
  gint64 size, mtime;
} Entry;

static void entry_free(gpointer p)
{
  Entry *e = p;
  g_free(e->name);
  g_free(e);
}

static gint cmp_entry(gconstpointer a, gconstpointer b)
{
  return strcmp((*(Entry *const *)a)->name, (*(Entry *const *)b)->name);
}

/* One pass over dir, one stat per entry (a folder of 10^5 photos is read once): the image files
 * (.jpg/.jpeg/.png, regular; with size and mtime) into *files and the sub-folders into *dirs (either
 * may be NULL), each sorted by name.  Hidden entries are skipped. */
static gboolean scan_dir(const char *dir, GPtrArray **files, GPtrArray **dirs, GError **error)
{
  g_autoptr(GDir) dh = g_dir_open(dir, 0, error);
  if (!dh) return FALSE;
  g_autoptr(GPtrArray) f = g_ptr_array_new_with_free_func(entry_free);
  g_autoptr(GPtrArray) d = g_ptr_array_new_with_free_func(entry_free);
  const char *n;
  while ((n = g_dir_read_name(dh))) {
    if (n[0] == '.') continue;
    gboolean img = files && is_image_name(n);
    if (!img && !dirs) continue;
    g_autofree char *p = g_build_filename(dir, n, NULL);
    GStatBuf st;
    if (g_stat(p, &st) != 0) continue; /* a dangling link or an entry gone since the listing */
    GPtrArray *to = img && S_ISREG(st.st_mode) ? f : dirs && S_ISDIR(st.st_mode) ? d : NULL;
    if (!to) continue;
    Entry *e = g_new0(Entry, 1);
    e->name = g_strdup(n);
    e->size = (gint64)st.st_size;
    e->mtime = (gint64)st.st_mtime;
    g_ptr_array_add(to, e);
  }
  g_ptr_array_sort(f, cmp_entry);
  g_ptr_array_sort(d, cmp_entry);
  if (files) *files = g_steal_pointer(&f);
  if (dirs) *dirs = g_steal_pointer(&d);
  return TRUE;
}

/* Sorted entries of dir; want_dirs: sub-folders, else image files. */
static GPtrArray *list_dir(const char *dir, gboolean want_dirs, GError **error)
{
  GPtrArray *a = NULL;
  if (!scan_dir(dir, want_dirs ? NULL : &a, want_dirs ? &a : NULL, error)) return NULL;
  return a;
}

char **cnnfx_imagefolder_classes(const char *dir, GError **error)
{
  g_autoptr(GPtrArray) d = list_dir(dir, TRUE, error);
  if (!d) return NULL;
  GPtrArray *out = g_ptr_array_new();
  for (guint i = 0; i < d->len; i++) {
    const char *name = ((const Entry *)d->pdata[i])->name;
    g_autofree char *p = g_build_filename(dir, name, NULL);
    g_autoptr(GPtrArray) f = list_dir(p, FALSE, NULL);
    if (f && f->len) g_ptr_array_add(out, g_strdup(name));
  }
  g_ptr_array_add(out, NULL);
  char **v = (char **)g_ptr_array_free(out, FALSE);
  if (!v[0]) {
    g_strfreev(v);
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s: no class folders with .jpg/.png images", dir);
    return NULL;
  }
  return v;
}

static gboolean fingerprint_dir(GChecksum *ck, const char *dir, const char *rel, int depth, GError **error)
{
  g_autoptr(GPtrArray) files = NULL, sub = NULL;
  if (!scan_dir(dir, &files, depth > 0 ? &sub : NULL, error)) return FALSE;
  for (guint i = 0; i < files->len; i++) {
    const Entry *e = files->pdata[i];
    g_autofree char *line = g_strdup_printf("%s/%s\t%" G_GINT64_FORMAT "\t%" G_GINT64_FORMAT "\n", rel, e->name,
                                            e->size, e->mtime);
    g_checksum_update(ck, (const guchar *)line, (gssize)strlen(line));
  }
  for (guint i = 0; sub && i < sub->len; i++) {
    const char *name = ((const Entry *)sub->pdata[i])->name;
    g_autofree char *p = g_build_filename(dir, name, NULL);
    g_autofree char *r = g_strconcat(rel, "/", name, NULL);
    if (!fingerprint_dir(ck, p, r, depth - 1, error)) return FALSE;
  }
  return TRUE;
}

char *cnnfx_imagefolder_fingerprint(const char *dir, GError **error)
{
  g_autoptr(GChecksum) ck = g_checksum_new(G_CHECKSUM_SHA256);
  if (!fingerprint_dir(ck, dir, ".", 2, error)) return NULL;
  return g_strdup(g_checksum_get_string(ck));
}

/* Resample an interleaved image into size x size planar floats: box average when shrinking,
 * bilinear when enlarging (per axis). */
static void resize_into(const CnnfxImage *img, int size, float *dst)
{
  int W = img->width, H = img->height, C = img->channels;
  size_t hw = (size_t)size * size;
  if (W == size && H == size) {
    for (size_t i = 0; i < hw; i++)
      for (int k = 0; k < 3; k++) dst[k * hw + i] = img->px[i * C + k];
    return;
  }
  double sx = (double)W / size, sy = (double)H / size;
  for (int oy = 0; oy < size; oy++)
    for (int ox = 0; ox < size; ox++) {
      double acc[3] = {0, 0, 0}, wsum = 0;
      if (sx > 1 || sy > 1) {
        int x0 = (int)floor(ox * sx), x1 = MAX(x0 + 1, (int)ceil((ox + 1) * sx));
        int y0 = (int)floor(oy * sy), y1 = MAX(y0 + 1, (int)ceil((oy + 1) * sy));
        for (int y = y0; y < MIN(y1, H); y++)
          for (int x = x0; x < MIN(x1, W); x++) {
            const float *p = img->px + ((size_t)y * W + x) * C;
            for (int k = 0; k < 3; k++) acc[k] += p[k];
            wsum += 1;
          }
      } else {
        double fx = (ox + 0.5) * sx - 0.5, fy = (oy + 0.5) * sy - 0.5;
        int x0 = (int)floor(fx), y0 = (int)floor(fy);
        double ax = fx - x0, ay = fy - y0;
        for (int j = 0; j < 2; j++)
          for (int i = 0; i < 2; i++) {
            int x = CLAMP(x0 + i, 0, W - 1), y = CLAMP(y0 + j, 0, H - 1);
            double wgt = (i ? ax : 1 - ax) * (j ? ay : 1 - ay);
            const float *p = img->px + ((size_t)y * W + x) * C;
            for (int k = 0; k < 3; k++) acc[k] += wgt * p[k];
            wsum += wgt;
          }
      }
      for (int k = 0; k < 3; k++) dst[k * hw + (size_t)oy * size + ox] = (float)(wsum > 0 ? acc[k] / wsum : 0);
    }
}

gboolean cnnfx_imagefolder_load(const char *dir, char **classes, int size, int per_class, CnnfxImageSet *d,
                                GError **error)
{
  memset(d, 0, sizeof *d);
  if (size < 1 || size > 4096) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "image size %d out of range", size);
    return FALSE;
  }
  g_auto(GStrv) cls = classes ? g_strdupv(classes) : cnnfx_imagefolder_classes(dir, error);
  if (!cls) return FALSE;
  int K = (int)g_strv_length(cls);
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GArray) labels = g_array_new(FALSE, FALSE, sizeof(int));
  for (int k = 0; k < K; k++) {
    g_autofree char *cd = g_build_filename(dir, cls[k], NULL);
    g_autoptr(GPtrArray) f = list_dir(cd, FALSE, NULL);
    if (!f) continue; /* a class absent here (e.g. from a test split) */
    for (guint i = 0; i < f->len && (per_class <= 0 || (int)i < per_class); i++) {
      g_ptr_array_add(paths, g_build_filename(cd, ((const Entry *)f->pdata[i])->name, NULL));
      g_array_append_val(labels, k);
    }
  }
  if (paths->len == 0) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "%s: no images", dir);
    return FALSE;
  }
  size_t n = paths->len, per = (size_t)3 * size * size;
  if (n > G_MAXINT || per > ((size_t)1 << 40) / n) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOMEM, "%s: too many images", dir);
    return FALSE;
  }
  d->x = g_try_new(float, n * per);
  d->y = g_try_new(int, n);
  if (!d->x || !d->y) {
    cnnfx_imageset_clear(d);
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOMEM, "out of memory for %zu images", n);
    return FALSE;
  }
  d->n = (int)n;
  d->h = d->w = size;
  memcpy(d->y, labels->data, n * sizeof(int));
  GError **errs = g_new0(GError *, n);
#pragma omp parallel for schedule(dynamic, 64)
  for (size_t i = 0; i < n; i++) {
    CnnfxImage *img = cnnfx_image_load(paths->pdata[i], &errs[i]);
    if (!img) continue;
    resize_into(img, size, d->x + i * per);
    cnnfx_image_free(img);
  }
  gboolean ok = TRUE;
  for (size_t i = 0; i < n; i++)
    if (errs[i]) {
      if (ok) g_propagate_error(error, errs[i]);
      else g_error_free(errs[i]);
      ok = FALSE;
    }
  g_free(errs);
  if (!ok) {
    cnnfx_imageset_clear(d);
    return FALSE;
  }
  d->classes = g_steal_pointer(&cls);
  d->n_classes = K;
  return TRUE;
}

gboolean cnnfx_imageset_split(CnnfxImageSet *d, double fraction, CnnfxImageSet *held, GError **error)
{
  memset(held, 0, sizeof *held);
  int every = fraction > 0 ? (int)lround(1.0 / fraction) : 0;
  if (every < 2) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "hold-out fraction %g out of range", fraction);
    return FALSE;
  }
  size_t per = (size_t)3 * d->h * d->w;
  int nh = 0, nk = 0;
  g_autofree int *seen = g_new0(int, d->n_classes + 1);
  g_autofree gboolean *hold = g_new0(gboolean, d->n + 1);
  for (int i = 0; i < d->n; i++) {
    hold[i] = (seen[d->y[i]]++ % every) == every - 1;
    nh += hold[i];
  }
  if (nh == 0 || nh == d->n) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "too few images to hold out 1 in %d", every);
    return FALSE;
  }
  held->x = g_try_new(float, (size_t)nh * per);
  held->y = g_new(int, nh);
  if (!held->x) {
    cnnfx_imageset_clear(held);
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOMEM, "out of memory");
    return FALSE;
  }
  int ih = 0;
  for (int i = 0; i < d->n; i++) {
    float *src = d->x + (size_t)i * per;
    if (hold[i]) {
      memcpy(held->x + (size_t)ih * per, src, per * sizeof(float));
      held->y[ih++] = d->y[i];
    } else {
      if (nk != i) memmove(d->x + (size_t)nk * per, src, per * sizeof(float));
      d->y[nk++] = d->y[i];
    }
  }
  held->n = nh;
  d->n = nk;
  held->h = d->h;
  held->w = d->w;
  held->classes = g_strdupv(d->classes);
  held->n_classes = d->n_classes;
  return TRUE;
}

void cnnfx_imageset_stats(const CnnfxImageSet *d, double mean[3], double std[3])
{
  size_t hw = (size_t)d->h * d->w;
  for (int k = 0; k < 3; k++) {
    double s = 0, ss = 0;
    for (int i = 0; i < d->n; i++) {
      const float *p = d->x + ((size_t)i * 3 + k) * hw;
      double a = 0, b = 0;
      for (size_t j = 0; j < hw; j++) {
        a += p[j];
        b += (double)p[j] * p[j];
      }
      s += a;
      ss += b;
    }
    double cnt = (double)d->n * hw;
    mean[k] = cnt > 0 ? s / cnt : 0;
    double v = cnt > 0 ? ss / cnt - mean[k] * mean[k] : 1;
    std[k] = v > 1e-12 ? sqrt(v) : 1;
  }
}

void cnnfx_imageset_normalise(CnnfxImageSet *d, const double mean[3], const double std[3])
{
  size_t hw = (size_t)d->h * d->w;
  for (int i = 0; i < d->n; i++)
    for (int k = 0; k < 3; k++) {
      float *p = d->x + ((size_t)i * 3 + k) * hw;
      float m = (float)mean[k], is = (float)(1.0 / std[k]);
      for (size_t j = 0; j < hw; j++) p[j] = (p[j] - m) * is;
    }
}

static inline int reflect_idx(int i, int n)
{
  if (n == 1) return 0;
  while (i < 0 || i >= n) i = i < 0 ? -i : 2 * (n - 1) - i;
  return i;
}

void cnnfx_imageset_crop_flip(const CnnfxImageSet *d, int i, int dx, int dy, gboolean flip, gboolean reflect,
                              float *dst)
{
  int H = d->h, W = d->w;
  size_t hw = (size_t)H * W;
  for (int k = 0; k < 3; k++) {
    const float *src = d->x + ((size_t)i * 3 + k) * hw;
    float *o = dst + k * hw;
    for (int y = 0; y < H; y++) {
      int sy = y + dy;
      if (sy < 0 || sy >= H) {
        if (!reflect) {
          memset(o + (size_t)y * W, 0, W * sizeof(float));
          continue;
        }
        sy = reflect_idx(sy, H);
      }
      const float *row = src + (size_t)sy * W;
      for (int x = 0; x < W; x++) {
        int xx = flip ? W - 1 - x : x;
        int sx = xx + dx;
        if (sx < 0 || sx >= W) {
          if (!reflect) {
            o[(size_t)y * W + x] = 0;
            continue;
          }
          sx = reflect_idx(sx, W);
        }
        o[(size_t)y * W + x] = row[sx];
      }
    }
  }
}

void cnnfx_imageset_cutout(float *img, int h, int w, int x0, int y0, int size)
{
  int xa = MAX(x0, 0), xb = MIN(x0 + size, w), ya = MAX(y0, 0), yb = MIN(y0 + size, h);
  if (xa >= xb || ya >= yb) return;
  for (int k = 0; k < 3; k++)
    for (int y = ya; y < yb; y++) memset(img + ((size_t)k * h + y) * w + xa, 0, (size_t)(xb - xa) * sizeof(float));
}

void cnnfx_imageset_swap_rb(CnnfxImageSet *d)
{
  size_t hw = (size_t)d->h * d->w;
  for (int i = 0; i < d->n; i++) {
    float *r = d->x + (size_t)i * 3 * hw, *b = r + 2 * hw;
    for (size_t j = 0; j < hw; j++) {
      float t = r[j];
      r[j] = b[j];
      b[j] = t;
    }
  }
}
