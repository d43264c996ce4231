/* cnnfx train: train a classifier with the library's own backward pass and write it as an
 * ONNX file: a LeNet on Fashion-MNIST, a BatchNorm CIFAR network on an ImageFolder tree
 * (--data DIR), a new head on an existing model (--from, transfer learning), or build a
 * random-feature network. */
#include "cli.h"
#include "cnnfx-train.h"
#include "imagefolder.h"
#include "netload.h"
#include <errno.h>
#include <glib/gstdio.h>
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define DEFAULT_FASHION_DIR "/usr/share/datasets/fashion-mnist"

typedef struct {
  int n, h, w;
  float *x;     /* n*h*w, 0..1 */
  int *y;       /* n */
} Dataset;

static void dataset_clear(Dataset *d)
{
  g_free(d->x);
  g_free(d->y);
  memset(d, 0, sizeof *d);
}

/* Whole (gzip-compressed or plain) file into memory. */
static guint8 *read_gz(const char *path, size_t *len, GError **error)
{
  gzFile f = gzopen(path, "rb");
  if (!f) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot open %s: %s", path,
                g_strerror(errno));
    return NULL;
  }
  size_t cap = 1 << 20, n = 0;
  guint8 *buf = g_try_malloc(cap);
  for (;;) {
    if (!buf) {
      gzclose(f);
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory reading %s", path);
      return NULL;
    }
    if (n == cap) {
      if (cap > ((size_t)1 << 32)) {
        g_free(buf);
        gzclose(f);
        g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "%s is too large", path);
        return NULL;
      }
      cap *= 2;
      guint8 *nb = g_try_realloc(buf, cap);
      if (!nb) g_free(buf);
      buf = nb;
      continue;
    }
    int r = gzread(f, buf + n, (unsigned)MIN(cap - n, (size_t)1 << 30));
    if (r < 0) {
      int e;
      const char *msg = gzerror(f, &e);
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_PARSE, "%s: %s", path, msg);
      g_free(buf);
      gzclose(f);
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  gzclose(f);
  *len = n;
  return buf;
}

static guint32 be32(const guint8 *p) { return ((guint32)p[0] << 24) | ((guint32)p[1] << 16) | ((guint32)p[2] << 8) | p[3]; }

/* IDX files (LeCun's MNIST format): images magic 0x803, labels 0x801. */
static gboolean load_idx(const char *dir, const char *prefix, int limit, Dataset *d, GError **error)
{
  g_autofree char *ip = g_strdup_printf("%s/%s-images-idx3-ubyte.gz", dir, prefix);
  g_autofree char *lp = g_strdup_printf("%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  for (int k = 0; k < 2; k++) {
    char **p = k ? &lp : &ip;
    if (!g_file_test(*p, G_FILE_TEST_EXISTS)) {
      /* also accept the uncompressed names */
      char *plain = g_strndup(*p, strlen(*p) - 3);
      if (g_file_test(plain, G_FILE_TEST_EXISTS)) {
        g_free(*p);
        *p = plain;
      } else {
        g_free(plain);
      }
    }
  }
  size_t il, ll;
  g_autofree guint8 *ib = read_gz(ip, &il, error);
  if (!ib) return FALSE;
  g_autofree guint8 *lb = read_gz(lp, &ll, error);
  if (!lb) return FALSE;
  if (il < 16 || be32(ib) != 0x803 || ll < 8 || be32(lb) != 0x801) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_PARSE, "%s / %s: not IDX image/label files", ip, lp);
    return FALSE;
  }
  guint32 n = be32(ib + 4), h = be32(ib + 8), w = be32(ib + 12);
  if (be32(lb + 4) != n || h == 0 || w == 0 || h > 4096 || w > 4096 || n > 100000000 ||
      (il - 16) / ((size_t)h * w) < n || ll - 8 < n) {
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_PARSE, "%s / %s: sizes do not match", ip, lp);
    return FALSE;
  }
  if (limit > 0 && (guint32)limit < n) n = (guint32)limit;
  d->n = (int)n;
  d->h = (int)h;
  d->w = (int)w;
  size_t hw = (size_t)h * w;
  d->x = g_try_new(float, (size_t)n * hw + 1);
  d->y = g_try_new(int, n + 1);
  if (!d->x || !d->y) {
    dataset_clear(d);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_NOMEM, "out of memory for the data set");
    return FALSE;
  }
  for (size_t i = 0; i < (size_t)n * hw; i++) d->x[i] = ib[16 + i] * (1.0f / 255.0f);
  for (guint32 i = 0; i < n; i++) {
    d->y[i] = lb[8 + i];
    if (d->y[i] > 9) {
      dataset_clear(d);
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_PARSE, "%s: label %u out of range", lp, lb[8 + i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---- running batches ------------------------------------------------------------ */

typedef struct {
  CnnfxSession *s;
  const char *input, *output;
  CnnfxTensor *x;   /* [B,1,h,w] for the current batch size */
  int *y;
} Runner;

static gboolean fill_batch(Runner *r, const Dataset *d, const int *idx, int B, GError **error)
{
  size_t hw = (size_t)d->h * d->w;
  if (!r->x || r->x->dims[0] != B) {
    if (r->x) cnnfx_tensor_unref(r->x);
    int64_t dims[4] = {B, 1, d->h, d->w};
    if (!(r->x = cnnfx_tensor_new_f32(4, dims, error))) return FALSE;
    g_free(r->y);
    r->y = g_new(int, B);
  }
  float *x = cnnfx_f32(r->x);
  for (int b = 0; b < B; b++) {
    int i = idx ? idx[b] : b;
    memcpy(x + b * hw, d->x + (size_t)i * hw, hw * sizeof(float));
    r->y[b] = d->y[i];
  }
  return cnnfx_session_set_input(r->s, r->input, r->x, error);
}

/* Accuracy and mean loss over a data set (forward only). */
static gboolean evaluate(Runner *r, const Dataset *d, double *acc, double *loss, GError **error)
{
  const int B = 500;
  g_autofree int *idx = g_new(int, B);
  long correct = 0;
  double tl = 0;
  for (int start = 0; start < d->n; start += B) {
    int nb = MIN(B, d->n - start);
    for (int b = 0; b < nb; b++) idx[b] = start + b;
    if (!fill_batch(r, d, idx, nb, error) || !cnnfx_session_forward(r->s, error)) return FALSE;
    CnnfxTensor *z = cnnfx_session_get(r->s, r->output, error);
    if (!z) return FALSE;
    int c = 0;
    double l = cnnfx_softmax_xent(z, r->y, NULL, &c, error);
    if (l < 0) return FALSE;
    tl += l * nb;
    correct += c;
  }
  *acc = d->n ? (double)correct / d->n : 0;
  *loss = d->n ? tl / d->n : 0;
  return TRUE;
}

static void shuffle(int *idx, int n, guint64 seed, int epoch)
{
  guint32 s[3] = {(guint32)seed, (guint32)(seed >> 32), (guint32)epoch};
  g_autoptr(GRand) r = g_rand_new_with_seed_array(s, 3);
  for (int i = 0; i < n; i++) idx[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = g_rand_int_range(r, 0, i + 1);
    int t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

static char *state_path_for(const char *onnx_path)
{
  g_autofree char *base = g_str_has_suffix(onnx_path, ".onnx") ? g_strndup(onnx_path, strlen(onnx_path) - 5)
                                                                : g_strdup(onnx_path);
  return g_strconcat(base, ".state", NULL);
}

static gboolean save_model(const CnnfxModel *m, CnnfxSession *s, const char *path, GError **error)
{
  g_autoptr(GBytes) bytes = cnnfx_model_save(m, s, error);
  if (!bytes) return FALSE;
  return cnnfx_write_file_atomic(path, bytes, error);
}

/* OUT.ini beside OUT.onnx, so that `-m OUT.onnx` finds its preprocessing: the keys of the
 * weights/offline.ini section of the same kind of model (fashion_lenet for networks trained on
 * Fashion-MNIST, random_style for random-feature networks) or the sidecar of the --init model. */
static gboolean write_sidecar(const char *onnx_path, const char *section, const char *from_model, GError **error)
{
  g_autofree char *base = g_str_has_suffix(onnx_path, ".onnx") ? g_strndup(onnx_path, strlen(onnx_path) - 5)
                                                                : g_strdup(onnx_path);
  g_autofree char *side = g_strconcat(base, ".ini", NULL);
  g_autofree char *wdir = cli_weights_dir();
  g_autoptr(GKeyFile) src = g_key_file_new();
  g_autofree char *grp = NULL, *src_dir = NULL;
  if (section) {
    g_autofree char *off = g_build_filename(wdir, "offline.ini", NULL);
    if (!g_key_file_load_from_file(src, off, G_KEY_FILE_NONE, NULL) || !g_key_file_has_group(src, section))
      return TRUE; /* nothing known to write */
    grp = g_strdup(section);
    src_dir = g_strdup(wdir);
  } else if (from_model) {
    g_autofree char *fb = g_str_has_suffix(from_model, ".onnx") ? g_strndup(from_model, strlen(from_model) - 5)
                                                                 : g_strdup(from_model);
    g_autofree char *fs = g_strconcat(fb, ".ini", NULL);
    if (!g_key_file_load_from_file(src, fs, G_KEY_FILE_NONE, NULL) || !(grp = g_key_file_get_start_group(src)))
      return TRUE;
    src_dir = g_path_get_dirname(from_model);
  } else {
    return TRUE;
  }
  g_autofree char *name = g_path_get_basename(base);
  g_autoptr(GString) t = g_string_new(NULL);
  g_string_append_printf(t, "# Preprocessing of %s.onnx (written by cnnfx train; same keys as a weights/offline.ini "
                         "section)\n[model]\n", name);
  g_auto(GStrv) keys = g_key_file_get_keys(src, grp, NULL, NULL);
  for (char **k = keys; k && *k; k++) {
    if (!strcmp(*k, "file")) continue;
    g_autofree char *v = g_key_file_get_value(src, grp, *k, NULL);
    if (!strcmp(*k, "labels") && v && !g_path_is_absolute(v)) {
      g_autofree char *abs = g_build_filename(src_dir, v, NULL);
      g_string_append_printf(t, "labels=%s\n", abs);
    } else {
      g_string_append_printf(t, "%s=%s\n", *k, v ? v : "");
    }
  }
  g_autoptr(GBytes) b = g_bytes_new(t->str, t->len);
  return cnnfx_write_file_atomic(side, b, error);
}

static void progress(gboolean tty, int epoch, int epochs, int batch, int nbatches, double loss, double acc,
                     double ips)
{
  if (!tty) return;
  char bar[21];
  int fill = nbatches ? (int)(20.0 * batch / nbatches) : 20;
  for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
  bar[20] = 0;
  fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  acc %.2f%%  %.0f img/s", epoch, epochs, bar, batch,
          nbatches, loss, 100 * acc, ips);
  fflush(stderr);
}

/* ==== ImageFolder training (BatchNorm architectures, transfer learning) =================== */

typedef struct {
  const char *arch, *from, *resume, *dir, *out, *backend;
  int epochs, batch, per_class, test_per_class, train_blocks, pad, size, ckpt_every, warmup_pct, eval_every;
  int whiten_bias_epochs, bn_recal, ensemble, cutout;
  double lr, momentum, wd, smoothing, holdout, start_factor, end_factor, ema, bias_lr;
  gboolean nesterov, tta, tta_translate, no_flip, alt_flip, lookahead, zero_pad, quiet, exact;
  CnnfxLrSchedule schedule;
  CnnfxOptimKind optim;
  guint64 seed;
} FolderOpts;

typedef struct {
  CnnfxSession *s;
  const char *input, *output;
  CnnfxTensor *x;
  int *y;
} FRunner;

static gboolean frun_batch(FRunner *r, int B, int plane, GError **error)
{
  if (!r->x || r->x->dims[0] != B) {
    if (r->x) cnnfx_tensor_unref(r->x);
    int64_t dims[4] = {B, 3, plane, plane};
    if (!(r->x = cnnfx_tensor_new_f32(4, dims, error))) return FALSE;
    g_free(r->y);
    r->y = g_new(int, B);
  }
  return TRUE;
}

/* Index of the j-th of m images spread evenly over the n of a set (sorted by class: every
 * class gets its share). */
static int spread_index(int j, int m, int n)
{
  return (int)((gint64)j * n / MAX(m, 1));
}

/* BatchNorm recalibration: the running statistics of the final weights, measured.  The running
 * statistics kept during training follow the weights of the last few steps; with lookahead the
 * written weights are the slow ones, whose statistics differ.  So the training session runs
 * forward over n training images spread over the whole set (no augmentation; nb batches of B, batch
 * i holding the images i, i + nb, i + 2 nb, ... of them, so that every batch spans all classes of
 * the class-sorted set: batches of one class would measure the variance within a class) with
 * every given running statistic set to 0, so that each running-statistic output is (1 - momentum)
 * times the batch statistic; their mean over the batches becomes the running statistics
 * (like torch.optim.swa_utils.update_bn). */
static gboolean bn_recalibrate(FRunner *tr, const CnnfxModel *tmodel, char **pairs, const CnnfxImageSet *train,
                               int n, int B, int size, GError **error)
{
  const int np = (int)g_strv_length(pairs);
  if (np == 0) return TRUE; /* no BatchNorm: nothing to measure */
  const size_t per = (size_t)3 * size * size;
  const int nb = MAX(1, MIN(n, train->n) / B);
  g_autoptr(GPtrArray) acc = g_ptr_array_new_with_free_func((GDestroyNotify)cnnfx_tensor_unref);
  g_autofree double *mom = g_new(double, np / 2 + 1);
  for (int k = 0; k + 1 < np; k += 2) {
    CnnfxTensor *w = cnnfx_session_get(tr->s, pairs[k + 1], error);
    CnnfxTensor *z = w ? cnnfx_tensor_copy(w, error) : NULL;
    if (!z) return FALSE;
    memset(z->data, 0, z->numel * sizeof(float));
    g_ptr_array_add(acc, z);
    mom[k / 2] = cnnfx_train_bn_stat_momentum(tmodel, pairs[k]);
    if (mom[k / 2] < 0 || mom[k / 2] >= 1) {
      g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_ARG, "BatchNorm recalibration: %s has no usable momentum", pairs[k]);
      return FALSE;
    }
  }
  g_autoptr(GPtrArray) sums = g_ptr_array_new_with_free_func(g_free);
  for (int k = 0; k + 1 < np; k += 2)
    g_ptr_array_add(sums, g_new0(double, ((CnnfxTensor *)acc->pdata[k / 2])->numel));
  for (int bi = 0; bi < nb; bi++) {
    if (!frun_batch(tr, B, size, error)) return FALSE;
    float *x = cnnfx_f32(tr->x);
    for (int b = 0; b < B; b++)
      cnnfx_imageset_crop_flip(train, spread_index(b * nb + bi, nb * B, train->n), 0, 0, FALSE, TRUE, x + b * per);
    for (int k = 0; k + 1 < np; k += 2)
      if (!cnnfx_session_set_weight(tr->s, pairs[k + 1], acc->pdata[k / 2], error)) return FALSE; /* zeros */
    if (!cnnfx_session_set_input(tr->s, tr->input, tr->x, error) || !cnnfx_session_forward(tr->s, error)) return FALSE;
    for (int k = 0; k + 1 < np; k += 2) {
      CnnfxTensor *rs = cnnfx_session_get(tr->s, pairs[k], error);
      if (!rs) return FALSE;
      const float *r = cnnfx_f32(rs);
      double *sm = sums->pdata[k / 2];
      for (size_t i = 0; i < rs->numel; i++) sm[i] += r[i] / (1.0 - mom[k / 2]);
    }
  }
  for (int k = 0; k + 1 < np; k += 2) {
    CnnfxTensor *t = acc->pdata[k / 2];
    const double *sm = sums->pdata[k / 2];
    float *d = cnnfx_f32(t);
    for (size_t i = 0; i < t->numel; i++) d[i] = (float)(sm[i] / nb);
    if (!cnnfx_session_set_weight(tr->s, pairs[k + 1], t, error)) return FALSE;
  }
  return TRUE;
}

/* Accuracy (and mean loss) of the inference session over d with test-time augmentation tta
 * (cnnfx_tta_views: 0 the image, 1 + its mirror image, 2 + both moved by one pixel diagonally). */
static gboolean folder_eval(FRunner *r, const CnnfxImageSet *d, int tta, double *acc, double *loss,
                            GError **error)
{
  const int B = 250;
  size_t per = (size_t)3 * d->h * d->w;
  long correct = 0;
  double tl = 0;
  g_autoptr(CnnfxTensor) sum = NULL;
  const CnnfxTtaView *views;
  int nv = cnnfx_tta_views(tta, &views);
  for (int start = 0; start < d->n; start += B) {
    int nb = MIN(B, d->n - start);
    if (!frun_batch(r, nb, d->h, error)) return FALSE;
    float *x = cnnfx_f32(r->x);
    for (int b = 0; b < nb; b++) r->y[b] = d->y[start + b];
    for (int pass = 0; pass < nv; pass++) {
      const CnnfxTtaView *v = &views[pass];
      for (int b = 0; b < nb; b++) cnnfx_imageset_crop_flip(d, start + b, v->dx, v->dy, v->flip, TRUE, x + b * per);
      if (!cnnfx_session_set_input(r->s, r->input, r->x, error) || !cnnfx_session_forward(r->s, error)) return FALSE;
      CnnfxTensor *z = cnnfx_session_get(r->s, r->output, error);
      if (!z) return FALSE;
      if (pass == 0) {
        if (sum) cnnfx_tensor_unref(sum);
        if (!(sum = cnnfx_tensor_copy(z, error))) return FALSE;
        float *a = cnnfx_f32(sum);
        for (size_t i = 0; i < sum->numel; i++) a[i] *= v->weight;
      } else {
        float *a = cnnfx_f32(sum);
        const float *zz = cnnfx_f32(z);
        for (size_t i = 0; i < sum->numel; i++) a[i] += v->weight * zz[i];
      }
    }
    int c = 0;
    double l = cnnfx_softmax_xent(sum, r->y, NULL, &c, error);
    if (l < 0) return FALSE;
    tl += l * nb;
    correct += c;
  }
  *acc = d->n ? (double)correct / d->n : 0;
  *loss = d->n ? tl / d->n : 0;
  return TRUE;
}

static void fmt_secs(char *buf, size_t n, double s)
{
  if (s < 0 || !isfinite(s)) g_snprintf(buf, n, "--:--");
  else if (s >= 3600) g_snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)fmod(s / 60, 60), (int)fmod(s, 60));
  else g_snprintf(buf, n, "%d:%02d", (int)(s / 60), (int)fmod(s, 60));
}

static gboolean write_folder_sidecar(const char *out, const char *arch, const FolderOpts *o, char **classes,
                              const double mean[3], const double std[3], int size, const char *cam_layer,
                              const char *dream_layer, double test_acc, int n_test, const char *input,
                              const char *output, gboolean is_prob, gboolean bgr, GError **error)
{
  g_autofree char *base = g_str_has_suffix(out, ".onnx") ? g_strndup(out, strlen(out) - 5) : g_strdup(out);
  g_autofree char *ini = g_strconcat(base, ".ini", NULL);
  g_autofree char *lab = g_strconcat(base, ".labels", NULL);
  g_autofree char *labbase = g_path_get_basename(lab);
  g_autofree char *onnxbase = g_path_get_basename(out);
  GString *l = g_string_new(NULL);
  for (int i = 0; classes[i]; i++) g_string_append_printf(l, "%s\n", classes[i]);
  g_autoptr(GBytes) lb = g_string_free_to_bytes(l);
  if (!cnnfx_write_file_atomic(lab, lb, error)) return FALSE;
  int K = (int)g_strv_length(classes);
  GString *t = g_string_new(NULL);
  g_string_append_printf(t, "# Made by cnnfx train (%s, seed %" G_GUINT64_FORMAT "): %d classes, %dx%d RGB input.\n",
                         arch, o->seed, K, size, size);
  g_string_append_printf(t, "# Held-out accuracy %.4f on %d images%s.\n", test_acc, n_test,
                         o->tta_translate ? " (with flip and one-pixel-shift test-time augmentation)"
                         : o->tta ? " (with horizontal-flip test-time augmentation)" : "");
  /* group [model]: the sidecar form of ../shared/INTERFACE.md (same keys as an offline.ini section) */
  g_string_append_printf(t, "[model]\nfile=%s\ninput=%s\noutput=%s\noutput_is_prob=%s\nlabels=%s\n", onnxbase,
                         input, output, is_prob ? "true" : "false", labbase);
  if (bgr) g_string_append(t, "bgr=true\n");
  g_string_append_printf(t, "classes=%d\ninput_size=%d\nscale=1\nmean=%.6f;%.6f;%.6f\nstd=%.6f;%.6f;%.6f\n", K, size,
                         mean[0], mean[1], mean[2], std[0], std[1], std[2]);
  g_string_append_printf(t, "about=%d-class classifier (", K);
  for (int i = 0; i < K && i < 10; i++) g_string_append_printf(t, "%s%s", i ? ", " : "", classes[i]);
  g_string_append_printf(t, "%s) trained by cnnfx train, %s, %dx%d RGB\n", K > 10 ? ", ..." : "", arch, size, size);
  /* classify then scores as the accuracy above was measured */
  if (o->tta) g_string_append_printf(t, "tta=%s\n", o->tta_translate ? "flip-translate" : "flip");
  if (cam_layer) g_string_append_printf(t, "cam_layer=%s\n", cam_layer);
  if (dream_layer) g_string_append_printf(t, "dream_layers=%s\n", dream_layer);
  g_autoptr(GBytes) ib = g_string_free_to_bytes(t);
  return cnnfx_write_file_atomic(ini, ib, error);
}

/* Training allocates the same large activation tensors at every step.  glibc serves blocks
 * above 32 MB with fresh mmap()s, so every step page-faults and zeroes gigabytes (measured:
 * half of the wall time went to the kernel at batch 500).  Keep them in the heap instead. */
static void keep_memory_mapped(void)
{
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, INT_MAX);
  mallopt(M_TOP_PAD, 256 << 20);
#endif
}

/* Exponential moving average of the trained weights (evaluated and saved instead of the raw
 * ones).  The decay ramps up as min(ema, (1+t)/(10+t)) so early averages are not stuck at the
 * random start.  File OUT.ckpt.ema: "CNNFXEMA", u32 count, then each tensor's floats (LE). */
static gboolean ema_update(GPtrArray *ema, CnnfxOptimizer *opt, CnnfxSession *s, double decay, gint64 t,
                           GError **error)
{
  double d = MIN(decay, (1.0 + (double)t) / (10.0 + (double)t));
  for (guint i = 0; i < ema->len; i++) {
    CnnfxTensor *w = cnnfx_session_get(s, cnnfx_optimizer_param_name(opt, (int)i), error);
    if (!w) return FALSE;
    float *e = cnnfx_f32(ema->pdata[i]);
    const float *x = cnnfx_f32(w);
    size_t n = ((CnnfxTensor *)ema->pdata[i])->numel;
    for (size_t k = 0; k < n; k++) e[k] = (float)(d * e[k] + (1.0 - d) * x[k]);
  }
  return TRUE;
}

static gboolean ema_apply(GPtrArray *ema, CnnfxOptimizer *opt, CnnfxSession *is, GError **error)
{
  for (guint i = 0; i < ema->len; i++)
    if (!cnnfx_session_set_weight(is, cnnfx_optimizer_param_name(opt, (int)i), ema->pdata[i], error)) return FALSE;
  return TRUE;
}

static gboolean ema_save(GPtrArray *ema, const char *path, GError **error)
{
  GByteArray *a = g_byte_array_new();
  g_byte_array_append(a, (const guint8 *)"CNNFXEMA", 8);
  guint32 n = GUINT32_TO_LE(ema->len);
  g_byte_array_append(a, (const guint8 *)&n, 4);
  for (guint i = 0; i < ema->len; i++) {
    CnnfxTensor *t = ema->pdata[i];
    g_byte_array_append(a, t->data, (guint)(t->numel * sizeof(float)));
  }
  g_autoptr(GBytes) b = g_byte_array_free_to_bytes(a);
  return cnnfx_write_file_atomic(path, b, error);
}

static gboolean ema_load(GPtrArray *ema, const char *path, GError **error)
{
  gchar *c;
  gsize l;
  if (!g_file_get_contents(path, &c, &l, error)) return FALSE;
  gsize need = 12;
  for (guint i = 0; i < ema->len; i++) need += ((CnnfxTensor *)ema->pdata[i])->numel * sizeof(float);
  guint32 n = 0;
  if (l >= 12) memcpy(&n, c + 8, 4);
  if (l != need || memcmp(c, "CNNFXEMA", 8) || GUINT32_FROM_LE(n) != ema->len) {
    g_free(c);
    g_set_error(error, CNNFX_ERROR, CNNFX_ERROR_PARSE, "%s does not match the model's weights", path);
    return FALSE;
  }
  gsize off = 12;
  for (guint i = 0; i < ema->len; i++) {
    CnnfxTensor *t = ema->pdata[i];
    memcpy(t->data, c + off, t->numel * sizeof(float));
    off += t->numel * sizeof(float);
  }
  g_free(c);
  return TRUE;
}

/* The per-channel mean and std (for 0..1 pixels) a loaded net's preprocessing applies. */
static void net_norm(const CnnfxNet *net, double mean[3], double std[3])
{
  float sc = net->pre.scale != 0 ? net->pre.scale : 1.0f;
  for (int k = 0; k < 3; k++) {
    mean[k] = net->pre.mean[k] / sc;
    std[k] = (net->pre.std[k] != 0 ? net->pre.std[k] : 1.0f) / sc;
  }
}

static int train_folder(FolderOpts *o)
{
  g_autoptr(GError) err = NULL;
  gboolean tty = !o->quiet && isatty(fileno(stderr));
  CnnfxImageSet train = {0}, test = {0};
  g_autoptr(CnnfxModel) tmodel = NULL, imodel = NULL;
  g_autoptr(CnnfxBackend) be = NULL;
  CnnfxSession *ts = NULL, *is = NULL;
  CnnfxOptimizer *opt = NULL;
  FRunner tr = {0}, ir = {0};
  CnnfxTensor *seed_grad = NULL;
  g_auto(GStrv) pairs = NULL, head = NULL, blocks = NULL, targets = NULL;
  g_autofree int *idx = NULL;
  g_autofree char *src_input = NULL, *src_output = NULL, *ckpt = NULL, *train_dir = NULL, *test_dir = NULL;
  g_autoptr(GBytes) tb = NULL, ib = NULL;
  GHashTable *only = NULL, *skip = NULL, *scaled = NULL;
  GPtrArray *ema = NULL;
  g_autofree guint8 *flip0 = NULL;
  int rc = 1;
  double mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  int size = o->size;
  gboolean have_src_pre = FALSE;
  g_autoptr(CnnfxNet) src_net = NULL;
  const char *arch_label = o->arch ? o->arch : o->from;
  keep_memory_mapped();

  if (o->from) {
    /* a path (with its sidecar MODEL.ini), an offline default or a downloaded manifest model */
    if (!(src_net = cli_load_net(o->from, NULL, "classify", NULL, NULL, &err))) goto done;
    if (src_net->pre.gray) {
      g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_UNSUPPORTED, "%s: single-channel (grey) models are not supported "
                  "for transfer learning", o->from);
      goto done;
    }
    net_norm(src_net, mean, std);
    have_src_pre = TRUE;
    src_input = g_strdup(src_net->input);
    src_output = g_strdup(src_net->output);
    if (size <= 0) size = src_net->pre.fixed_h > 0 ? src_net->pre.fixed_h : 0;
    if (size <= 0) {
      int64_t d[8];
      int nd = cnnfx_model_input_shape(src_net->model, 0, d);
      size = nd == 4 && d[2] > 0 ? (int)d[2] : 224;
    }
  }
  if (size <= 0) size = 32;

  /* data */
  train_dir = g_build_filename(o->dir, "train", NULL);
  test_dir = g_build_filename(o->dir, "test", NULL);
  gboolean split = !g_file_test(train_dir, G_FILE_TEST_IS_DIR);
  const char *tdir = split ? o->dir : train_dir;
  gint64 tl0 = g_get_monotonic_time();
  if (!cnnfx_imagefolder_load(tdir, NULL, size, o->per_class, &train, &err)) goto done;
  if (split || !g_file_test(test_dir, G_FILE_TEST_IS_DIR)) {
    if (!cnnfx_imageset_split(&train, o->holdout, &test, &err)) goto done;
  } else if (!cnnfx_imagefolder_load(test_dir, train.classes, size, o->test_per_class, &test, &err)) {
    goto done;
  }
  if (!o->quiet)
    fprintf(stderr, "loaded %d training and %d %s images of %d classes (%dx%d) in %.1f s\n", train.n, test.n,
            split ? "held-out" : "test", train.n_classes, size, size, (g_get_monotonic_time() - tl0) / 1e6);
  if (src_net && src_net->pre.bgr) {
    cnnfx_imageset_swap_rb(&train);
    cnnfx_imageset_swap_rb(&test);
  }
  if (!have_src_pre) cnnfx_imageset_stats(&train, mean, std);
  cnnfx_imageset_normalise(&train, mean, std);
  cnnfx_imageset_normalise(&test, mean, std);
  int K = train.n_classes;

  /* models: training form and inference form */
  if (o->arch) {
    if (!(tb = cnnfx_arch_build_full(o->arch, o->seed, K, TRUE, &err))) goto done;
    if (!(ib = cnnfx_arch_build_full(o->arch, o->seed, K, FALSE, &err))) goto done;
  } else {
    int oldk = 0;
    if (!(ib = cnnfx_model_new_head(src_net->model, K, o->seed, &head, &oldk, &err))) goto done;
    tb = g_bytes_ref(ib);
    if (!o->quiet && cnnfx_model_is_ensemble(src_net->model))
      fprintf(stderr, "%s is an ensemble: its first network is fine-tuned\n", o->from);
    if (!o->quiet) fprintf(stderr, "%s: replaced its %d-class head with a %d-class one\n", o->from, oldk, K);
  }
  tmodel = cnnfx_model_load(g_bytes_get_data(tb, NULL), g_bytes_get_size(tb), &err);
  if (!tmodel) goto done;
  imodel = cnnfx_model_load(g_bytes_get_data(ib, NULL), g_bytes_get_size(ib), &err);
  if (!imodel) goto done;
  const char *input = src_input ? src_input : cnnfx_model_input_name(imodel, 0);
  const char *output = src_output ? src_output : cnnfx_model_output_name(imodel, 0);
  const char *saved_output = output;
  if (output) {
    /* a model ending in Softmax: train on its input (the logits) */
    int pk = cnnfx_model_producer(imodel, output);
    if (pk >= 0 && !strcmp(cnnfx_model_node_op(imodel, pk), "Softmax")) output = cnnfx_model_node_input(imodel, pk, 0);
  }
  if (!input || !output) {
    g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "the model needs an input and an output");
    goto done;
  }
  if (!(be = cnnfx_backend_new(o->backend ? o->backend : "cpu", &err))) goto done;
  if (o->exact) cnnfx_backend_set_exact(be, TRUE);
  pairs = cnnfx_train_bn_stat_pairs(tmodel);
  {
    int np = (int)g_strv_length(pairs);
    targets = g_new0(char *, np / 2 + 2);
    targets[0] = g_strdup(output);
    for (int i = 0; i < np / 2; i++) targets[i + 1] = g_strdup(pairs[2 * i]);
  }
  /* CNNFX_PROFILE=1: print where the training steps' time went (per operator type) at the end */
  const gboolean profile = g_strcmp0(g_getenv("CNNFX_PROFILE"), "1") == 0;
  CnnfxSessionOptions tso = {.grad = CNNFX_GRAD_WEIGHTS, .targets = (const char *const *)targets, .profile = profile};
  CnnfxSessionOptions iso = {.grad = CNNFX_GRAD_NONE, .targets = (const char *const[]){output, NULL}};
  if (!(ts = cnnfx_session_new(tmodel, be, &tso, &err))) goto done;
  if (!(is = cnnfx_session_new(imodel, be, &iso, &err))) goto done;
  if (o->resume) {
    g_autoptr(CnnfxModel) cm = cli_load_model(o->resume, &err);
    int nc = 0;
    if (!cm || !cnnfx_train_copy_weights(ts, tmodel, NULL, cm, &nc, &err)) goto done;
  }

  CnnfxOptimConfig oc = {0};
  oc.kind = o->optim;
  oc.momentum = o->momentum;
  oc.nesterov = o->nesterov;
  oc.weight_decay = o->wd;
  const gboolean whitened = o->arch && cnnfx_arch_is_whitened(o->arch);
  if (whitened && !o->resume) {
    /* the stem's weights: whitening of the 2x2 patches of the first (at most) 5000 training
     * images.  The set is sorted by class, so on CIFAR-10 these are the 5000 airplanes; airbench
     * takes 5000 of a shuffled set.  Spreading them over all classes was tried (weights/README.md:
     * not better) and is not done, so the shipped file stays reproducible. */
    CnnfxTensor *wt = cnnfx_session_get(ts, "whiten.weight", &err);
    g_autoptr(CnnfxTensor) wc = wt ? cnnfx_tensor_copy(wt, &err) : NULL;
    if (!wc || !cnnfx_whitening_weights(train.x, MIN(train.n, 5000), 3, size, size, 2, 5e-4, wc, &err) ||
        !cnnfx_session_set_weight(ts, "whiten.weight", wc, &err))
      goto done;
  }
  skip = g_hash_table_new(g_str_hash, g_str_equal);
  scaled = g_hash_table_new(g_str_hash, g_str_equal);
  for (int k = 0; k < cnnfx_model_n_nodes(tmodel); k++) {
    if (strcmp(cnnfx_model_node_op(tmodel, k), "BatchNormalization")) continue;
    if (whitened) g_hash_table_add(skip, (gpointer)cnnfx_model_node_input(tmodel, k, 1)); /* no BN scales */
    g_hash_table_add(scaled, (gpointer)cnnfx_model_node_input(tmodel, k, 2));
  }
  if (whitened) g_hash_table_add(skip, (gpointer) "whiten.weight");
  oc.skip = skip;
  if (o->bias_lr > 0) {
    oc.scaled = scaled;
    oc.scaled_lr = o->bias_lr;
  }
  if (o->from) {
    only = g_hash_table_new(g_str_hash, g_str_equal);
    for (int i = 0; head && head[i]; i++) g_hash_table_add(only, head[i]);
    if (o->train_blocks > 0) {
      blocks = cnnfx_model_last_layers_params(tmodel, o->train_blocks);
      for (int i = 0; blocks[i]; i++) g_hash_table_add(only, blocks[i]);
    }
    oc.only = only;
  }
  if (!(opt = cnnfx_optimizer_new(tmodel, ts, &oc, &err))) goto done;
  int first_epoch = 0;
  if (o->resume) {
    g_autofree char *sp = state_path_for(o->resume);
    gchar *st;
    gsize sl;
    gint64 de = 0;
    if (g_file_get_contents(sp, &st, &sl, NULL)) {
      gboolean ok = cnnfx_optimizer_load_state(opt, st, sl, &de, &err);
      g_free(st);
      if (!ok) {
        g_prefix_error(&err, "%s: ", sp);
        goto done;
      }
      first_epoch = (int)de;
      if (!o->quiet) fprintf(stderr, "resuming after epoch %d (%s)\n", first_epoch, sp);
    } else if (!o->quiet) {
      fprintf(stderr, "no optimizer state %s: resuming with fresh optimizer state at epoch 1\n", sp);
    }
  }
  if (o->ema > 0) {
    ema = g_ptr_array_new_with_free_func((GDestroyNotify)cnnfx_tensor_unref);
    for (int i = 0; i < cnnfx_optimizer_n_params(opt); i++) {
      CnnfxTensor *w = cnnfx_session_get(ts, cnnfx_optimizer_param_name(opt, i), &err);
      CnnfxTensor *c = w ? cnnfx_tensor_copy(w, &err) : NULL;
      if (!c) goto done;
      g_ptr_array_add(ema, c);
    }
    if (o->resume && first_epoch > 0) {
      g_autofree char *base = g_str_has_suffix(o->resume, ".onnx") ? g_strndup(o->resume, strlen(o->resume) - 5)
                                                                    : g_strdup(o->resume);
      g_autofree char *ep = g_strconcat(base, ".ema", NULL);
      if (g_file_test(ep, G_FILE_TEST_EXISTS) && !ema_load(ema, ep, &err)) goto done;
    }
  }
  tr = (FRunner){ts, input, output, NULL, NULL};
  ir = (FRunner){is, input, output, NULL, NULL};
  int nbatches = train.n / o->batch; /* full batches only: batch statistics of a tiny last batch are noise */
  if (nbatches < 1) nbatches = 1;
  int B = MIN(o->batch, train.n);
  gint64 total_steps = (gint64)nbatches * o->epochs;
  gint64 warm = total_steps * o->warmup_pct / 100;
  if (!o->quiet)
    fprintf(stderr,
            "training %s: %zu trainable weights, %d classes, %d train / %d test images, batch %d, %s%s lr %g (%s), "
            "label smoothing %g, %d epoch%s, seed %" G_GUINT64_FORMAT "\n",
            arch_label, cnnfx_optimizer_n_values(opt), K, train.n, test.n, B,
            o->optim == CNNFX_OPTIM_ADAM ? "adam" : "sgd", o->nesterov ? "+nesterov" : "", o->lr,
            o->schedule == CNNFX_LR_ONECYCLE ? "onecycle" : o->schedule == CNNFX_LR_COSINE ? "cosine" : o->schedule == CNNFX_LR_STEP ? "step" : "constant",
            o->smoothing, o->epochs, o->epochs == 1 ? "" : "s", o->seed);
  idx = g_new(int, MAX(train.n, 1));
  {
    g_autofree char *base = g_str_has_suffix(o->out, ".onnx") ? g_strndup(o->out, strlen(o->out) - 5) : g_strdup(o->out);
    ckpt = g_strconcat(base, ".ckpt.onnx", NULL);
  }
  size_t per = (size_t)3 * size * size;
  double test_acc = 0, test_loss = 0;
  gint64 t_start = g_get_monotonic_time();
  int np = (int)g_strv_length(pairs);
  const int tta = o->tta ? (o->tta_translate ? 2 : 1) : 0;
  const int la_every = 5, la_start = 3; /* lookahead: every 5 steps from the 4th epoch on (airbench) */
  if (o->alt_flip) {
    /* alternating flips (airbench): each image is flipped at random in the first epoch, then
     * exactly the other way round in every second epoch */
    guint32 fs[3] = {(guint32)o->seed, (guint32)(o->seed >> 32), 0x5f11bu};
    g_autoptr(GRand) fr = g_rand_new_with_seed_array(fs, 3);
    flip0 = g_new(guint8, MAX(train.n, 1));
    for (int i = 0; i < train.n; i++) flip0[i] = (guint8)g_rand_boolean(fr);
  }
  for (int ep = first_epoch; ep < o->epochs; ep++) {
    shuffle(idx, train.n, o->seed, ep);
    if (whitened && ep >= o->whiten_bias_epochs) cnnfx_optimizer_freeze(opt, "whiten.bias", TRUE);
    /* backward stops where nothing trains: the input, the frozen whitening (after its bias
     * epochs), the frozen layers of --from; the same weights, less work */
    if ((ep == first_epoch || (whitened && ep == o->whiten_bias_epochs)) && !cnnfx_optimizer_prune_grads(opt, &err))
      goto done;
    guint32 as[3] = {(guint32)o->seed, (guint32)(o->seed >> 32), (guint32)ep ^ 0xa5a5a5a5u};
    g_autoptr(GRand) aug = g_rand_new_with_seed_array(as, 3);
    gint64 t0 = g_get_monotonic_time();
    double sum_loss = 0, cur_lr = o->lr;
    long correct = 0, seen = 0;
    for (int bi = 0; bi < nbatches; bi++) {
      if (!frun_batch(&tr, B, size, &err)) goto done;
      float *x = cnnfx_f32(tr.x);
      for (int b = 0; b < B; b++) {
        int i = idx[(size_t)bi * B + b];
        int dx = o->pad ? g_rand_int_range(aug, -o->pad, o->pad + 1) : 0;
        int dy = o->pad ? g_rand_int_range(aug, -o->pad, o->pad + 1) : 0;
        gboolean flip = !o->no_flip && g_rand_boolean(aug);
        if (flip0) flip = (flip0[i] != 0) != (ep % 2 == 1);
        cnnfx_imageset_crop_flip(&train, i, dx, dy, flip, !o->zero_pad, x + b * per);
        if (o->cutout > 0) { /* a square wholly inside the photo (airbench96's cutout) */
          int cs = MIN(o->cutout, MIN(train.h, train.w));
          int cy = g_rand_int_range(aug, 0, train.h - cs + 1), cx = g_rand_int_range(aug, 0, train.w - cs + 1);
          cnnfx_imageset_cutout(x + b * per, train.h, train.w, cx, cy, cs);
        }
        tr.y[b] = train.y[i];
      }
      if (!cnnfx_session_set_input(ts, input, tr.x, &err) || !cnnfx_session_forward(ts, &err)) goto done;
      CnnfxTensor *z = cnnfx_session_get(ts, output, &err);
      if (!z) goto done;
      if (!seed_grad || !cnnfx_same_shape(seed_grad, z)) {
        if (seed_grad) cnnfx_tensor_unref(seed_grad);
        if (!(seed_grad = cnnfx_tensor_new_f32(z->ndim, z->dims, &err))) goto done;
      }
      int c = 0;
      double l = cnnfx_softmax_xent_smooth(z, tr.y, o->smoothing, seed_grad, &c, &err);
      if (l < 0) goto done;
      if (!isfinite(l)) {
        g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "the loss diverged (epoch %d, batch %d): lower --lr", ep + 1,
                    bi + 1);
        goto done;
      }
      /* running statistics: copy before backward/step (they are plain values) */
      for (int k = 0; k + 1 < np; k += 2) {
        CnnfxTensor *rs = cnnfx_session_get(ts, pairs[k], &err);
        if (!rs) goto done;
        g_autoptr(CnnfxTensor) cp = cnnfx_tensor_copy(rs, &err);
        if (!cp) goto done;
        if (!cnnfx_session_set_weight(ts, pairs[k + 1], cp, &err)) goto done;
      }
      if (!cnnfx_session_backward(ts, 1, (const char *const[]){output}, (CnnfxTensor *const[]){seed_grad}, &err))
        goto done;
      gint64 step = (gint64)ep * nbatches + bi;
      cur_lr = cnnfx_lr_at_end(o->schedule, o->lr, step, total_steps, o->schedule == CNNFX_LR_ONECYCLE ? warm : 0,
                               0.1, o->schedule == CNNFX_LR_ONECYCLE ? o->start_factor : 0.0, o->end_factor);
      if (!cnnfx_optimizer_step(opt, cur_lr, &err)) goto done;
      if (o->lookahead && ep >= la_start && (step + 1) % la_every == 0) {
        double rho = pow(0.95, la_every) * pow((double)(step + 1) / (double)total_steps, 3.0);
        if (!cnnfx_optimizer_lookahead(opt, rho, &err)) goto done;
      }
      if (ema && !ema_update(ema, opt, ts, o->ema, step, &err)) goto done;
      sum_loss += l * B;
      correct += c;
      seen += B;
      if (tty && (bi % 5 == 0 || bi == nbatches - 1)) {
        double secs = (g_get_monotonic_time() - t0) / 1e6;
        double total_secs = (g_get_monotonic_time() - t_start) / 1e6;
        double done_steps = (double)(step + 1 - (gint64)first_epoch * nbatches);
        double eta = total_secs / done_steps * (double)(total_steps - step - 1);
        char etab[32];
        fmt_secs(etab, sizeof etab, eta);
        char bar[21];
        int fill = (int)(20.0 * (bi + 1) / nbatches);
        for (int i = 0; i < 20; i++) bar[i] = i < fill ? '#' : '.';
        bar[20] = 0;
        fprintf(stderr, "\r\033[Kepoch %d/%d [%s] %d/%d  loss %.4f  acc %.2f%%  %.0f img/s  ETA %s", ep + 1,
                o->epochs, bar, bi + 1, nbatches, sum_loss / seen, 100.0 * correct / seen,
                secs > 0 ? seen / secs : 0, etab);
        fflush(stderr);
      }
    }
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    /* lookahead: the weights go back to the slow ones at the end of every epoch */
    if (o->lookahead && cnnfx_optimizer_lookahead_started(opt) && !cnnfx_optimizer_lookahead(opt, 1.0, &err))
      goto done;
    if (o->bn_recal > 0 && ep + 1 == o->epochs) {
      gint64 r0 = g_get_monotonic_time();
      if (!bn_recalibrate(&tr, tmodel, pairs, &train, o->bn_recal, B, size, &err)) goto done;
      if (!o->quiet)
        fprintf(stderr, "BatchNorm statistics recalibrated on %d training images in %.1f s\n",
                MAX(1, MIN(o->bn_recal, train.n) / B) * B, (g_get_monotonic_time() - r0) / 1e6);
    }
    if (!cnnfx_train_copy_weights(is, imodel, ts, tmodel, NULL, &err)) goto done;
    if (o->ckpt_every > 0 && ((ep + 1) % o->ckpt_every == 0) && ep + 1 < o->epochs) {
      /* the raw weights (not the average) and the optimizer state: --resume continues exactly */
      g_autofree char *sp = state_path_for(ckpt);
      g_autoptr(GBytes) st = cnnfx_optimizer_save_state(opt, ep + 1);
      if (!save_model(imodel, is, ckpt, &err) || !cnnfx_write_file_atomic(sp, st, &err)) goto done;
      if (ema) {
        g_autofree char *base = g_strndup(ckpt, strlen(ckpt) - 5);
        g_autofree char *ep_path = g_strconcat(base, ".ema", NULL);
        if (!ema_save(ema, ep_path, &err)) goto done;
      }
      if (!o->quiet) fprintf(stderr, "checkpoint %s\n", ckpt);
    }
    if (ema && !ema_apply(ema, opt, is, &err)) goto done;
    gboolean do_eval = ep + 1 == o->epochs || (o->eval_every > 0 && (ep + 1) % o->eval_every == 0);
    gint64 e0 = g_get_monotonic_time();
    /* test-time augmentation after the last epoch only: the others are progress reports */
    if (do_eval && !folder_eval(&ir, &test, ep + 1 == o->epochs ? tta : 0, &test_acc, &test_loss, &err)) goto done;
    double esecs = (g_get_monotonic_time() - e0) / 1e6;
    if (tty) fprintf(stderr, "\r\033[K");
    if (!o->quiet && do_eval)
      printf("epoch %d/%d  loss %.4f  train acc %.4f  test loss %.4f  test acc %.4f  lr %.3g  %.1f s (%.0f img/s) + "
             "eval %.1f s\n",
             ep + 1, o->epochs, seen ? sum_loss / seen : 0, seen ? (double)correct / seen : 0, test_loss, test_acc,
             cur_lr, secs, secs > 0 ? seen / secs : 0, esecs);
    else if (!o->quiet)
      printf("epoch %d/%d  loss %.4f  train acc %.4f  lr %.3g  %.1f s (%.0f img/s)\n", ep + 1, o->epochs,
             seen ? sum_loss / seen : 0, seen ? (double)correct / seen : 0, cur_lr, secs, secs > 0 ? seen / secs : 0);
    fflush(stdout);
  }
  if (first_epoch >= o->epochs) {
    if (!cnnfx_train_copy_weights(is, imodel, ts, tmodel, NULL, &err)) goto done;
    if (ema && !ema_apply(ema, opt, is, &err)) goto done;
    if (!folder_eval(&ir, &test, tta, &test_acc, &test_loss, &err)) goto done;
  }
  if (profile) cli_print_profile(ts, (int)MAX((gint64)1, (gint64)nbatches * (o->epochs - first_epoch)));
  if (!save_model(imodel, is, o->out, &err)) goto done;
  {
    const char *cam = o->arch && cnnfx_arch_has_batchnorm(o->arch) ? cnnfx_arch_cam_layer(o->arch)
                      : src_net ? src_net->cam_layer : NULL;
    const char *dream = o->arch && cnnfx_arch_has_batchnorm(o->arch) ? cnnfx_arch_dream_layer(o->arch)
                        : src_net && src_net->dream_layers ? src_net->dream_layers[0] : NULL;
    if (!write_folder_sidecar(o->out, arch_label, o, train.classes, mean, std, size, cam, dream, test_acc, test.n, input,
                       saved_output, src_net && src_net->output_is_prob, src_net && src_net->pre.bgr, &err))
      goto done;
  }
  if (!o->quiet) printf("wrote %s (+ .ini, .labels) after %.1f s\n", o->out, (g_get_monotonic_time() - t_start) / 1e6);
  printf("%s accuracy: %.4f (%ld/%d)\n", split ? "held-out" : "test", test_acc, lround(test_acc * test.n), test.n);
  rc = 0;
done:
  if (tty) fprintf(stderr, "\r\033[K");
  if (seed_grad) cnnfx_tensor_unref(seed_grad);
  if (tr.x) cnnfx_tensor_unref(tr.x);
  if (ir.x) cnnfx_tensor_unref(ir.x);
  g_free(tr.y);
  g_free(ir.y);
  if (only) g_hash_table_destroy(only);
  if (skip) g_hash_table_destroy(skip);
  if (scaled) g_hash_table_destroy(scaled);
  if (ema) g_ptr_array_free(ema, TRUE);
  cnnfx_optimizer_free(opt);
  cnnfx_session_free(ts);
  cnnfx_session_free(is);
  cnnfx_imageset_clear(&train);
  cnnfx_imageset_clear(&test);
  if (rc) fprintf(stderr, "cnnfx train: %s\n", err ? err->message : "failed");
  return rc;
}

/* --ensemble N: N networks of the same recipe with seeds seed, seed+1, ... (OUT.net1.onnx, ...,
 * each with its sidecar and log lines), then OUT.onnx: one graph whose logits are the mean of
 * theirs (cnnfx_model_save_mean), measured on the test split with the same test-time
 * augmentation, and its sidecar. */
/* What makes the members of an ensemble run the same networks: every option that changes the
 * result (not -q, --eval-every or --checkpoint-every) and the photos (data_fp: the fingerprint of
 * their names, sizes and times).  Written to OUT.ensemble while the run lasts, so that the same
 * command run again on the same photos after an interruption keeps the finished members. */
static char *ensemble_recipe(const FolderOpts *o, const char *data_fp)
{
  return g_strdup_printf(
    "cnnfx train --ensemble %d: arch=%s data=%s backend=%s epochs=%d batch=%d per_class=%d test_per_class=%d "
    "pad=%d cutout=%d size=%d warmup=%d whiten_bias_epochs=%d bn_recalibrate=%d lr=%.17g momentum=%.17g wd=%.17g "
    "smoothing=%.17g holdout=%.17g start=%.17g end=%.17g ema=%.17g bias_lr=%.17g nesterov=%d tta=%d%d "
    "no_flip=%d alt_flip=%d lookahead=%d zero_pad=%d exact=%d schedule=%d optimizer=%d seed=%" G_GUINT64_FORMAT " data_sha256=%s\n",
    o->ensemble, o->arch, o->dir, o->backend ? o->backend : "cpu", o->epochs, o->batch, o->per_class,
    o->test_per_class, o->pad, o->cutout, o->size, o->warmup_pct, o->whiten_bias_epochs, o->bn_recal, o->lr, o->momentum, o->wd,
    o->smoothing, o->holdout, o->start_factor, o->end_factor, o->ema, o->bias_lr, o->nesterov, o->tta,
    o->tta_translate, o->no_flip, o->alt_flip, o->lookahead, o->zero_pad, o->exact, (int)o->schedule, (int)o->optim,
    o->seed, data_fp);
}

static int train_ensemble(FolderOpts *o)
{
  const int n = o->ensemble;
  g_autoptr(GError) err = NULL;
  g_autofree char *base = g_str_has_suffix(o->out, ".onnx") ? g_strndup(o->out, strlen(o->out) - 5) : g_strdup(o->out);
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) nets = g_ptr_array_new_with_free_func((GDestroyNotify)cnnfx_net_free);
  g_autofree const CnnfxModel **models = g_new0(const CnnfxModel *, n);
  CnnfxImageSet test = {0};
  g_autoptr(CnnfxBackend) be = NULL;
  CnnfxSession *is = NULL;
  g_autoptr(CnnfxModel) em = NULL;
  FRunner ir = {0};
  int rc = 1;
  double mean[3], std[3];
  int size = 0;
  gint64 t0 = g_get_monotonic_time();
  /* the same command again after a kill: finished members are kept, the one in progress
   * continues from its last checkpoint (with --checkpoint-every) */
  g_autofree char *marker = g_strconcat(base, ".ensemble", NULL);
  g_autofree char *data_fp = cnnfx_imagefolder_fingerprint(o->dir, &err);
  if (!data_fp) {
    fprintf(stderr, "cnnfx train: %s\n", err->message);
    return 1;
  }
  g_autofree char *recipe = ensemble_recipe(o, data_fp);
  g_autofree char *before = NULL;
  const gboolean again = g_file_get_contents(marker, &before, NULL, NULL) && !strcmp(before, recipe);
  if (again) {
    if (!o->quiet) fprintf(stderr, "ensemble: %s: continuing an interrupted run of the same command\n", marker);
  } else {
    g_autoptr(GBytes) rb = g_bytes_new(recipe, strlen(recipe));
    if (!cnnfx_write_file_atomic(marker, rb, &err)) goto done;
  }
  for (int k = 0; k < n; k++) {
    FolderOpts mo = *o;
    char *p = g_strdup_printf("%s.net%d.onnx", base, k + 1);
    g_ptr_array_add(paths, p);
    mo.out = p;
    mo.seed = o->seed + (guint64)k;
    mo.ensemble = 1;
    g_autofree char *ini = g_strdup_printf("%s.net%d.ini", base, k + 1);
    g_autofree char *ckpt = g_strdup_printf("%s.net%d.ckpt.onnx", base, k + 1);
    g_autofree char *state = state_path_for(ckpt);
    if (again && g_file_test(p, G_FILE_TEST_IS_REGULAR) && g_file_test(ini, G_FILE_TEST_IS_REGULAR)) {
      if (!o->quiet) fprintf(stderr, "ensemble: network %d of %d: %s finished before; kept\n", k + 1, n, p);
    } else {
      if (again && g_file_test(ckpt, G_FILE_TEST_IS_REGULAR) && g_file_test(state, G_FILE_TEST_IS_REGULAR))
        mo.resume = ckpt;
      if (!o->quiet)
        fprintf(stderr, "ensemble: network %d of %d (seed %" G_GUINT64_FORMAT ") -> %s%s%s\n", k + 1, n, mo.seed, p,
                mo.resume ? ", from " : "", mo.resume ? mo.resume : "");
      fflush(stdout);
      if (train_folder(&mo)) return 1;
    }
    /* the member with its sidecar: the same preprocessing for all */
    CnnfxNet *net = cli_load_net(p, NULL, "classify", NULL, NULL, &err);
    if (!net) goto done;
    g_ptr_array_add(nets, net);
    models[k] = net->model;
    double m2[3], s2[3];
    net_norm(net, k ? m2 : mean, k ? s2 : std);
    if (!k) size = net->pre.fixed_h;
    if (k && (net->pre.fixed_h != size || memcmp(m2, mean, sizeof m2) || memcmp(s2, std, sizeof s2))) {
      g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "%s: its input normalisation differs from network 1's", p);
      goto done;
    }
  }
  {
    g_autoptr(GBytes) eb = cnnfx_model_save_mean(models, n, &err);
    if (!eb || !(em = cnnfx_model_load(g_bytes_get_data(eb, NULL), g_bytes_get_size(eb), &err))) goto done;
    /* measure before writing: OUT.onnx appears only complete and with its accuracy */
    g_autofree char *test_dir = g_build_filename(o->dir, "test", NULL);
    if (!cnnfx_imagefolder_load(test_dir, NULL, size, o->test_per_class, &test, &err)) goto done;
    cnnfx_imageset_normalise(&test, mean, std);
    const char *input = cnnfx_model_input_name(em, 0), *output = cnnfx_model_output_name(em, 0);
    if (!(be = cnnfx_backend_new(o->backend ? o->backend : "cpu", &err))) goto done;
    CnnfxSessionOptions iso = {.grad = CNNFX_GRAD_NONE, .targets = (const char *const[]){output, NULL}};
    if (!(is = cnnfx_session_new(em, be, &iso, &err))) goto done;
    ir = (FRunner){is, input, output, NULL, NULL};
    double acc = 0, loss = 0;
    const int tta = o->tta ? (o->tta_translate ? 2 : 1) : 0;
    if (!folder_eval(&ir, &test, tta, &acc, &loss, &err)) goto done;
    if (!cnnfx_write_file_atomic(o->out, eb, &err)) goto done;
    g_autofree char *label = g_strdup_printf("mean of %d %s networks", n, o->arch);
    const char *cam = o->arch ? cnnfx_arch_cam_layer(o->arch) : NULL;
    const char *dream = o->arch ? cnnfx_arch_dream_layer(o->arch) : NULL;
    if (!write_folder_sidecar(o->out, label, o, test.classes, mean, std, size, cam, dream, acc, test.n, input, output,
                              FALSE, FALSE, &err))
      goto done;
    printf("ensemble of %d: test loss %.4f  test acc %.4f%s  (%d images)  %.1f s in all\n", n, loss, acc,
           tta == 2 ? " (6-view TTA)" : tta == 1 ? " (flip TTA)" : "", test.n, (g_get_monotonic_time() - t0) / 1e6);
    if (!o->quiet) fprintf(stderr, "wrote %s (the mean of %s ... %s)\n", o->out, (char *)paths->pdata[0],
                           (char *)paths->pdata[n - 1]);
  }
  (void)g_unlink(marker); /* done: the same command again trains anew, as without --ensemble */
  rc = 0;
done:
  if (err) fprintf(stderr, "cnnfx train: %s\n", err->message);
  if (ir.x) cnnfx_tensor_unref(ir.x);
  g_free(ir.y);
  if (is) cnnfx_session_free(is);
  cnnfx_imageset_clear(&test);
  return rc;
}

int cmd_train(int argc, char **argv)
{
  g_autofree char *arch = NULL, *init = NULL, *data = NULL, *optim = NULL, *sched = NULL, *resume = NULL,
                  *out = NULL, *backend_name = NULL, *from = NULL;
  int epochs = 10, batch = 64, ckpt_every = 0, limit = 0, test_limit = 0, step_epochs = 0;
  int per_class = 0, test_per_class = 0, train_blocks = 0, pad = 2, cutout = 0, size = 0, warmup_pct = 25, eval_every = 1, ensemble = 1;
  double lr = 0, momentum = 0.9, wd = 0, gamma = 0.1, smoothing = 0, holdout = 0.2, start_factor = 0.1, ema_decay = 0;
  double end_factor = 0, bias_lr = 0;
  int whiten_bias_epochs = 3, bn_recal = 0;
  gboolean tta_translate = FALSE, alt_flip = FALSE, lookahead = FALSE, exact = FALSE;
  gint64 seed = 1;
  gboolean eval_only = FALSE, quiet = FALSE, nesterov = FALSE, tta = FALSE, no_flip = FALSE, zero_pad = FALSE;
  g_autofree char *arch_list = g_strjoinv(", ", (char **)cnnfx_arch_names());
  g_autofree char *arch_help = g_strdup_printf(_("Built-in architecture: %s"), arch_list);
  g_autofree char *data_help =
    g_strdup_printf(_("Data set: fashion-mnist[:DIR] (default DIR %s), or an ImageFolder DIR (DIR/train/CLASS/*.jpg|png "
                      "and DIR/test/CLASS/..., or DIR/CLASS/... with a held-out part)"),
                    DEFAULT_FASHION_DIR);
  GOptionEntry entries[] = {
    {"arch", 0, 0, G_OPTION_ARG_STRING, &arch, arch_help, "ARCH"},
    {"init", 0, 0, G_OPTION_ARG_FILENAME, &init, N_("Start from this ONNX model"), "MODEL.onnx"},
    {"from", 0, 0, G_OPTION_ARG_FILENAME, &from,
     N_("Transfer learning: fine-tune a new classifier head of this model on --data DIR"), "MODEL.onnx"},
    {"data", 0, 0, G_OPTION_ARG_STRING, &data, data_help, "SET"},
    {"train-blocks", 0, 0, G_OPTION_ARG_INT, &train_blocks, N_("--from: also train the last K weighted layers"), "K"},
    {"label-smoothing", 0, 0, G_OPTION_ARG_DOUBLE, &smoothing, N_("Label smoothing (ImageFolder, default 0)"), "S"},
    {"pad", 0, 0, G_OPTION_ARG_INT, &pad, N_("Random-crop padding in pixels (ImageFolder, default 2; 0 = no crop)"), "P"},
    {"cutout", 0, 0, G_OPTION_ARG_INT, &cutout,
     N_("Cutout: blank a random S x S square of each training photo (ImageFolder, default 0 = off)"), "S"},
    {"zero-pad", 0, 0, G_OPTION_ARG_NONE, &zero_pad, N_("Pad crops with zeros (mean colour), not by reflection"), NULL},
    {"no-flip", 0, 0, G_OPTION_ARG_NONE, &no_flip, N_("No random horizontal flips"), NULL},
    {"eval-every", 0, 0, G_OPTION_ARG_INT, &eval_every,
     N_("ImageFolder: measure test accuracy every N epochs (default 1; 0 = only after the last)"), "N"},
    {"ema", 0, 0, G_OPTION_ARG_DOUBLE, &ema_decay,
     N_("ImageFolder: evaluate and save an exponential moving average of the weights with this decay per step "
     "(e.g. 0.99; default 0 = off)"), "D"},
    {"tta", 0, 0, G_OPTION_ARG_NONE, &tta, N_("Evaluate with horizontal-flip test-time augmentation"), NULL},
    {"tta-translate", 0, 0, G_OPTION_ARG_NONE, &tta_translate,
     N_("With --tta: also the views moved one pixel up-left and down-right (6 views, airbench)"), NULL},
    {"alternate-flip", 0, 0, G_OPTION_ARG_NONE, &alt_flip,
     N_("Flip each image at random in the first epoch, then the other way round every second epoch"), NULL},
    {"lookahead", 0, 0, G_OPTION_ARG_NONE, &lookahead,
     N_("ImageFolder: lookahead every 5 steps from epoch 4, decay 0.95^5*(t/T)^3 (airbench)"), NULL},
    {"bias-lr-scale", 0, 0, G_OPTION_ARG_DOUBLE, &bias_lr,
     N_("ImageFolder: BatchNorm biases learn S times faster, with 1/S of the weight decay (e.g. 64; default 1)"), "S"},
    {"start-factor", 0, 0, G_OPTION_ARG_DOUBLE, &start_factor, N_("onecycle: first lr as a share of --lr (default 0.1)"),
     "F"},
    {"end-factor", 0, 0, G_OPTION_ARG_DOUBLE, &end_factor, N_("onecycle: last lr as a share of --lr (default 0)"), "F"},
    {"exact", 0, 0, G_OPTION_ARG_NONE, &exact,
     N_("ImageFolder: no Winograd convolutions or other approximations (slower; for comparisons)"), NULL},
    {"whiten-bias-epochs", 0, 0, G_OPTION_ARG_INT, &whiten_bias_epochs,
     N_("cifar-white: train the whitening layer's bias for the first N epochs only (default 3)"), "N"},
    {"bn-recalibrate", 0, 0, G_OPTION_ARG_INT, &bn_recal,
     N_("ImageFolder: after the last epoch, measure the BatchNorm running statistics of the final weights on N "
     "training images (no augmentation; default 0 = keep the running averages)"), "N"},
    {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup_pct, N_("onecycle: warm-up share of the steps in percent (default 25)"),
     "PCT"},
    {"per-class", 0, 0, G_OPTION_ARG_INT, &per_class, N_("ImageFolder: only the first N training images per class"),
     "N"},
    {"test-per-class", 0, 0, G_OPTION_ARG_INT, &test_per_class, N_("ImageFolder: only the first N test images per class"),
     "N"},
    {"holdout", 0, 0, G_OPTION_ARG_DOUBLE, &holdout,
     N_("ImageFolder without test/: share of each class held out (default 0.2)"), "F"},
    {"size", 0, 0, G_OPTION_ARG_INT, &size, N_("ImageFolder: image size (default 32 or the --from model's)"), "PX"},
    {"epochs", 0, 0, G_OPTION_ARG_INT, &epochs, N_("Epochs (default 10)"), "N"},
    {"batch-size", 0, 0, G_OPTION_ARG_INT, &batch, N_("Mini-batch size (default 64)"), "B"},
    {"optimizer", 0, 0, G_OPTION_ARG_STRING, &optim, N_("sgd or adam (default adam)"), "NAME"},
    {"lr", 0, 0, G_OPTION_ARG_DOUBLE, &lr, N_("Learning rate (default 1e-3 for adam, 0.05 for sgd)"), "X"},
    {"momentum", 0, 0, G_OPTION_ARG_DOUBLE, &momentum, N_("SGD momentum (default 0.9)"), "M"},
    {"nesterov", 0, 0, G_OPTION_ARG_NONE, &nesterov, N_("Nesterov momentum"), NULL},
    {"weight-decay", 0, 0, G_OPTION_ARG_DOUBLE, &wd, N_("L2 weight decay (default 0)"), "W"},
    {"schedule", 0, 0, G_OPTION_ARG_STRING, &sched, N_("Learning-rate schedule: constant, step, cosine, onecycle (default cosine; onecycle for ImageFolder)"),
     "NAME"},
    {"step-epochs", 0, 0, G_OPTION_ARG_INT, &step_epochs, N_("step schedule: epochs between decays (default epochs/3)"),
     "N"},
    {"gamma", 0, 0, G_OPTION_ARG_DOUBLE, &gamma, N_("step schedule: decay factor (default 0.1)"), "G"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, N_("Seed for weights and shuffling (default 1)"), "S"},
    {"checkpoint-every", 0, 0, G_OPTION_ARG_INT, &ckpt_every, N_("Write OUT.ckpt.onnx every N epochs"), "N"},
    {"resume", 0, 0, G_OPTION_ARG_FILENAME, &resume, N_("Resume from a checkpoint (its .state file too)"), "CKPT"},
    {"limit", 0, 0, G_OPTION_ARG_INT, &limit, N_("Use only the first N training images"), "N"},
    {"test-limit", 0, 0, G_OPTION_ARG_INT, &test_limit, N_("Use only the first N test images"), "N"},
    {"eval-only", 0, 0, G_OPTION_ARG_NONE, &eval_only, N_("Only measure test accuracy of --init"), NULL},
    {"backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, N_("cpu (default) or cuda"), "NAME"},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, N_("No progress output"), NULL},
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, N_("Write the model here"), "OUT.onnx"},
    {"ensemble", 0, 0, G_OPTION_ARG_INT, &ensemble,
     N_("ImageFolder: train N networks (seeds SEED, SEED+1, ...: OUT.net1.onnx ...) and write OUT.onnx, the mean of "
     "their logits, measured on the test split (default 1); after a kill, the same command keeps the finished "
     "networks"), "N"},
    G_OPTION_ENTRY_NULL,
  };
  if (!cli_parse(&argc, &argv, N_("- train a network (or build a random-feature one) and write ONNX"), entries)) return 2;
  if (argc > 1) return cli_usage_error(N_("train takes no positional arguments"));
  if (data && g_file_test(data, G_FILE_TEST_IS_DIR)) {
    FolderOpts fo = {0};
    if (!!arch + !!from != 1) return cli_usage_error(N_("ImageFolder training needs exactly one of --arch, --from"));
    if (init || eval_only) return cli_usage_error(N_("--init / --eval-only are not for ImageFolder data"));
    if (arch && !cnnfx_arch_has_batchnorm(arch)) return cli_usage_error(N_("ImageFolder training needs a cifar-* architecture"));
    if (!out) return cli_usage_error(N_("train needs -o OUT.onnx"));
    if (batch < 1 || batch > 65536 || epochs < 0 || epochs > 100000 || per_class < 0 || test_per_class < 0 ||
        ckpt_every < 0 || pad < 0 || pad > 64 || cutout < 0 || cutout > 4096 || train_blocks < 0 || size < 0 || size > 4096 || warmup_pct < 0 || eval_every < 0 || ema_decay < 0 || ema_decay >= 1 ||
        warmup_pct > 100 || smoothing < 0 || smoothing >= 1 || holdout <= 0 || holdout >= 1 || bias_lr < 0 ||
        start_factor < 0 || start_factor > 1 || end_factor < 0 || end_factor > 1 || whiten_bias_epochs < 0 || bn_recal < 0)
      return cli_usage_error(N_("bad numeric option"));
    fo.arch = arch;
    fo.from = from;
    fo.resume = resume;
    fo.dir = data;
    fo.out = out;
    fo.backend = backend_name;
    fo.epochs = epochs;
    fo.batch = batch;
    fo.per_class = per_class;
    fo.test_per_class = test_per_class;
    fo.train_blocks = train_blocks;
    fo.pad = pad;
    fo.cutout = cutout;
    fo.size = size;
    fo.ckpt_every = ckpt_every;
    fo.warmup_pct = warmup_pct;
    fo.eval_every = eval_every;
    fo.ema = ema_decay;
    fo.momentum = momentum;
    fo.wd = wd;
    fo.smoothing = smoothing;
    fo.holdout = holdout;
    fo.start_factor = start_factor;
    fo.nesterov = nesterov;
    fo.tta = tta || tta_translate;
    fo.tta_translate = tta_translate;
    fo.alt_flip = alt_flip;
    fo.lookahead = lookahead;
    fo.bias_lr = bias_lr;
    fo.end_factor = end_factor;
    fo.whiten_bias_epochs = whiten_bias_epochs;
    fo.bn_recal = bn_recal;
    fo.exact = exact;
    fo.no_flip = no_flip;
    fo.zero_pad = zero_pad;
    fo.quiet = quiet;
    fo.seed = (guint64)seed;
    fo.optim = optim && !strcmp(optim, "adam") ? CNNFX_OPTIM_ADAM : CNNFX_OPTIM_SGD;
    if (optim && strcmp(optim, "adam") && strcmp(optim, "sgd")) return cli_usage_error(N_("--optimizer must be sgd or adam"));
    fo.lr = lr > 0 ? lr : fo.optim == CNNFX_OPTIM_ADAM ? 1e-3 : 0.1;
    if (momentum < 0 || momentum >= 1 || wd < 0) return cli_usage_error(N_("bad --momentum or --weight-decay"));
    fo.schedule = CNNFX_LR_ONECYCLE;
    if (sched && !strcmp(sched, "step")) fo.schedule = CNNFX_LR_STEP;
    else if (sched && !strcmp(sched, "constant")) fo.schedule = CNNFX_LR_CONSTANT;
    else if (sched && !strcmp(sched, "cosine")) fo.schedule = CNNFX_LR_COSINE;
    else if (sched && strcmp(sched, "onecycle")) return cli_usage_error(N_("--schedule must be constant, step, cosine or onecycle"));
    fo.ensemble = ensemble;
    if (ensemble < 1 || ensemble > 64) return cli_usage_error(N_("--ensemble must be 1 to 64"));
    if (ensemble > 1 && (resume || from)) return cli_usage_error(N_("--ensemble trains --arch networks from the start"));
    return ensemble > 1 ? train_ensemble(&fo) : train_folder(&fo);
  }
  if (from) return cli_usage_error(N_("--from needs --data DIR (an ImageFolder tree)"));
  if (!!arch + !!init + !!resume != 1) return cli_usage_error(N_("train needs exactly one of --arch, --init, --resume"));
  if (batch < 1 || batch > 65536 || epochs < 0 || epochs > 100000 || limit < 0 || test_limit < 0 || ckpt_every < 0)
    return cli_usage_error(N_("bad --batch-size, --epochs, --limit or --checkpoint-every"));
  CnnfxOptimConfig oc = {0};
  oc.momentum = momentum;
  oc.weight_decay = wd;
  oc.nesterov = nesterov;
  if (!optim || !strcmp(optim, "adam")) oc.kind = CNNFX_OPTIM_ADAM;
  else if (!strcmp(optim, "sgd")) oc.kind = CNNFX_OPTIM_SGD;
  else return cli_usage_error(N_("--optimizer must be sgd or adam"));
  if (lr == 0) lr = oc.kind == CNNFX_OPTIM_ADAM ? 1e-3 : 0.05;
  if (lr < 0 || momentum < 0 || momentum >= 1 || wd < 0) return cli_usage_error(N_("bad --lr, --momentum or --weight-decay"));
  CnnfxLrSchedule schedule = CNNFX_LR_COSINE;
  if (sched && !strcmp(sched, "step")) schedule = CNNFX_LR_STEP;
  else if (sched && !strcmp(sched, "constant")) schedule = CNNFX_LR_CONSTANT;
  else if (sched && strcmp(sched, "cosine")) return cli_usage_error(N_("--schedule must be constant, step or cosine"));
  if (!out && !eval_only) return cli_usage_error(N_("train needs -o OUT.onnx"));

  g_autoptr(GError) err = NULL;
  gboolean tty = !quiet && isatty(fileno(stderr));
  g_autoptr(GBytes) mbytes = NULL;
  g_autoptr(CnnfxModel) model = NULL;
  g_autoptr(CnnfxBackend) be = NULL;
  g_autofree char *ckpt = NULL;
  Dataset train = {0}, test = {0};
  int rc = 1;
  CnnfxSession *s = NULL;
  CnnfxOptimizer *opt = NULL;
  Runner r = {0};
  int *idx = NULL;
  CnnfxTensor *seed_grad = NULL;
  const char *input = NULL, *output = NULL;

  /* The model */
  if (arch) {
    if (!(mbytes = cnnfx_arch_build(arch, (guint64)seed, &err))) goto done;
  } else {
    const char *p = init ? init : resume;
    gchar *c;
    gsize l;
    if (!g_file_get_contents(p, &c, &l, &err)) goto done;
    mbytes = g_bytes_new_take(c, l);
  }
  model = cnnfx_model_load(g_bytes_get_data(mbytes, NULL), g_bytes_get_size(mbytes), &err);
  if (!model) goto done;

  if (!data) {
    if (eval_only) return cli_usage_error(N_("--eval-only needs --data"));
    /* No data: write the initialised network as it is (random-feature networks). */
    if (arch) { /* the builder's bytes keep declared output shapes and metadata */
      if (!cnnfx_write_file_atomic(out, mbytes, &err)) goto done;
    } else if (!save_model(model, NULL, out, &err)) goto done;
    if (!write_sidecar(out, arch && !strcmp(arch, "random-style") ? "random_style" : NULL, init ? init : resume, &err))
      goto done;
    if (!quiet) printf("wrote %s (%s, untrained)\n", out, arch ? arch : "copy");
    rc = 0;
    goto done;
  }
  const char *dir = DEFAULT_FASHION_DIR;
  if (!strcmp(data, "fashion-mnist") || g_str_has_prefix(data, "fashion-mnist:")) {
    if (data[13] == ':') dir = data + 14;
  } else {
    return cli_usage_error(N_("--data must be fashion-mnist[:DIR]"));
  }
  if (cnnfx_model_n_inputs(model) != 1 || cnnfx_model_n_outputs(model) < 1)
    return cli_usage_error(N_("the model must have one input and its logits as first output"));
  input = cnnfx_model_input_name(model, 0);
  output = cnnfx_model_output_name(model, 0);

  if (!eval_only && !load_idx(dir, "train", limit, &train, &err)) goto done;
  if (!load_idx(dir, "t10k", test_limit, &test, &err)) goto done;
  if (!(be = cli_backend_new(backend_name ? backend_name : "cpu", FALSE, &err))) goto done;

  if (eval_only) {
    CnnfxSessionOptions so = {.grad = CNNFX_GRAD_NONE};
    if (!(s = cnnfx_session_new(model, be, &so, &err))) goto done;
    r = (Runner){s, input, output, NULL, NULL};
    double acc, loss;
    gint64 t0 = g_get_monotonic_time();
    if (!evaluate(&r, &test, &acc, &loss, &err)) goto done;
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    printf("test loss %.4f  %d images  %.1f s\n", loss, test.n, secs);
    printf("test accuracy: %.4f (%ld/%d)\n", acc, lround(acc * test.n), test.n);
    rc = 0;
    goto done;
  }

  CnnfxSessionOptions so = {.grad = CNNFX_GRAD_WEIGHTS};
  if (!(s = cnnfx_session_new(model, be, &so, &err))) goto done;
  if (!(opt = cnnfx_optimizer_new(model, s, &oc, &err))) goto done;
  if (!cnnfx_optimizer_prune_grads(opt, &err)) goto done; /* no gradient for the input images */
  r = (Runner){s, input, output, NULL, NULL};

  int first_epoch = 0;
  if (resume) {
    g_autofree char *sp = state_path_for(resume);
    gchar *st;
    gsize sl;
    gint64 done_epochs = 0;
    if (g_file_get_contents(sp, &st, &sl, NULL)) {
      gboolean ok = cnnfx_optimizer_load_state(opt, st, sl, &done_epochs, &err);
      g_free(st);
      if (!ok) {
        g_prefix_error(&err, "%s: ", sp);
        goto done;
      }
      first_epoch = (int)done_epochs;
      if (!quiet) fprintf(stderr, "resuming after epoch %d (%s)\n", first_epoch, sp);
    } else if (!quiet) {
      fprintf(stderr, "no optimizer state %s: resuming with fresh optimizer state at epoch 1\n", sp);
    }
  }
  if (!quiet)
    fprintf(stderr, "training %s: %zu weights, %d train / %d test images, batch %d, %s lr %g (%s), %d epoch%s\n",
            arch ? arch : (init ? init : resume), cnnfx_optimizer_n_values(opt), train.n, test.n, batch,
            oc.kind == CNNFX_OPTIM_ADAM ? "adam" : "sgd", lr,
            schedule == CNNFX_LR_COSINE ? "cosine" : schedule == CNNFX_LR_STEP ? "step" : "constant", epochs,
            epochs == 1 ? "" : "s");

  int nbatches = (train.n + batch - 1) / batch;
  gint64 total_steps = (gint64)nbatches * epochs;
  gint64 step_every = (gint64)nbatches * (step_epochs > 0 ? step_epochs : MAX(1, epochs / 3));
  idx = g_new(int, MAX(train.n, 1));
  {
    g_autofree char *base = g_str_has_suffix(out, ".onnx") ? g_strndup(out, strlen(out) - 5) : g_strdup(out);
    ckpt = g_strconcat(base, ".ckpt.onnx", NULL);
  }
  double test_acc = 0, test_loss = 0;
  gint64 t_start = g_get_monotonic_time();
  for (int ep = first_epoch; ep < epochs; ep++) {
    shuffle(idx, train.n, (guint64)seed, ep);
    gint64 t0 = g_get_monotonic_time();
    double sum_loss = 0;
    long correct = 0, seen = 0;
    double cur_lr = lr;
    for (int bi = 0; bi < nbatches; bi++) {
      int start = bi * batch, nb = MIN(batch, train.n - start);
      if (!fill_batch(&r, &train, idx + start, nb, &err) || !cnnfx_session_forward(s, &err)) goto done;
      CnnfxTensor *z = cnnfx_session_get(s, output, &err);
      if (!z) goto done;
      if (!seed_grad || !cnnfx_same_shape(seed_grad, z)) {
        if (seed_grad) cnnfx_tensor_unref(seed_grad);
        if (!(seed_grad = cnnfx_tensor_new_f32(z->ndim, z->dims, &err))) goto done;
      }
      int c = 0;
      double l = cnnfx_softmax_xent(z, r.y, seed_grad, &c, &err);
      if (l < 0) goto done;
      if (!isfinite(l)) {
        g_set_error(&err, CNNFX_ERROR, CNNFX_ERROR_ARG, "the loss diverged (epoch %d, batch %d): lower --lr", ep + 1,
                    bi + 1);
        goto done;
      }
      if (!cnnfx_session_backward(s, 1, (const char *const[]){output}, (CnnfxTensor *const[]){seed_grad}, &err))
        goto done;
      cur_lr = cnnfx_lr_at(schedule, lr, (gint64)ep * nbatches + bi, total_steps, step_every, gamma, 0.0);
      if (!cnnfx_optimizer_step(opt, cur_lr, &err)) goto done;
      sum_loss += l * nb;
      correct += c;
      seen += nb;
      if (tty && (bi % 10 == 0 || bi == nbatches - 1)) {
        double secs = (g_get_monotonic_time() - t0) / 1e6;
        progress(tty, ep + 1, epochs, bi + 1, nbatches, sum_loss / seen, (double)correct / seen,
                 secs > 0 ? seen / secs : 0);
      }
    }
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    if (!evaluate(&r, &test, &test_acc, &test_loss, &err)) goto done;
    if (tty) fprintf(stderr, "\r\033[K");
    if (!quiet)
      printf("epoch %d/%d  loss %.4f  train acc %.4f  test loss %.4f  test acc %.4f  lr %.3g  %.1f s (%.0f img/s)\n",
             ep + 1, epochs, seen ? sum_loss / seen : 0, seen ? (double)correct / seen : 0, test_loss, test_acc,
             cur_lr, secs, secs > 0 ? seen / secs : 0);
    fflush(stdout);
    if (ckpt_every > 0 && ((ep + 1) % ckpt_every == 0) && ep + 1 < epochs) {
      g_autofree char *sp = state_path_for(ckpt);
      g_autoptr(GBytes) st = cnnfx_optimizer_save_state(opt, ep + 1);
      if (!save_model(model, s, ckpt, &err) || !cnnfx_write_file_atomic(sp, st, &err) ||
          !write_sidecar(ckpt, "fashion_lenet", NULL, &err))
        goto done;
      if (!quiet) fprintf(stderr, "checkpoint %s\n", ckpt);
    }
  }
  if (first_epoch >= epochs && !evaluate(&r, &test, &test_acc, &test_loss, &err)) goto done;
  if (!save_model(model, s, out, &err)) goto done;
  /* trained on Fashion-MNIST (the only data set): its preprocessing */
  if (!write_sidecar(out, "fashion_lenet", NULL, &err)) goto done;
  if (!quiet)
    printf("wrote %s after %.1f s\n", out, (g_get_monotonic_time() - t_start) / 1e6);
  printf("test accuracy: %.4f (%ld/%d)\n", test_acc, lround(test_acc * test.n), test.n);
  rc = 0;
done:
  if (tty) fprintf(stderr, "\r\033[K");
  if (seed_grad) cnnfx_tensor_unref(seed_grad);
  if (r.x) cnnfx_tensor_unref(r.x);
  g_free(r.y);
  g_free(idx);
  cnnfx_optimizer_free(opt);
  cnnfx_session_free(s);
  dataset_clear(&train);
  dataset_clear(&test);
  if (rc) fprintf(stderr, "cnnfx train: %s\n", err ? err->message : "failed");
  return rc;
}
