/* cnnfx train: train a small classifier on Fashion-MNIST (or build a random-feature
 * network) with the library's own backward pass, and write it as an ONNX file. */
#include "cli.h"
#include "cnnfx-train.h"
#include "netload.h"
#include <errno.h>
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

int cmd_train(int argc, char **argv)
{
  g_autofree char *arch = NULL, *init = NULL, *data = NULL, *optim = NULL, *sched = NULL, *resume = NULL,
                  *out = NULL, *backend_name = NULL;
  int epochs = 10, batch = 64, ckpt_every = 0, limit = 0, test_limit = 0, step_epochs = 0;
  double lr = 0, momentum = 0.9, wd = 0, gamma = 0.1;
  gint64 seed = 1;
  gboolean eval_only = FALSE, quiet = FALSE, nesterov = FALSE;
  GOptionEntry entries[] = {
    {"arch", 0, 0, G_OPTION_ARG_STRING, &arch, "Built-in architecture: lenet5, lenet5-wide, random-style", "ARCH"},
    {"init", 0, 0, G_OPTION_ARG_FILENAME, &init, "Start from this ONNX model", "MODEL.onnx"},
    {"data", 0, 0, G_OPTION_ARG_STRING, &data, "Data set: fashion-mnist[:DIR] (default DIR " DEFAULT_FASHION_DIR ")",
     "SET"},
    {"epochs", 0, 0, G_OPTION_ARG_INT, &epochs, "Epochs (default 10)", "N"},
    {"batch-size", 0, 0, G_OPTION_ARG_INT, &batch, "Mini-batch size (default 64)", "B"},
    {"optimizer", 0, 0, G_OPTION_ARG_STRING, &optim, "sgd or adam (default adam)", "NAME"},
    {"lr", 0, 0, G_OPTION_ARG_DOUBLE, &lr, "Learning rate (default 1e-3 for adam, 0.05 for sgd)", "X"},
    {"momentum", 0, 0, G_OPTION_ARG_DOUBLE, &momentum, "SGD momentum (default 0.9)", "M"},
    {"nesterov", 0, 0, G_OPTION_ARG_NONE, &nesterov, "Nesterov momentum", NULL},
    {"weight-decay", 0, 0, G_OPTION_ARG_DOUBLE, &wd, "L2 weight decay (default 0)", "W"},
    {"schedule", 0, 0, G_OPTION_ARG_STRING, &sched, "Learning-rate schedule: constant, step, cosine (default cosine)",
     "NAME"},
    {"step-epochs", 0, 0, G_OPTION_ARG_INT, &step_epochs, "step schedule: epochs between decays (default epochs/3)",
     "N"},
    {"gamma", 0, 0, G_OPTION_ARG_DOUBLE, &gamma, "step schedule: decay factor (default 0.1)", "G"},
    {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "Seed for weights and shuffling (default 1)", "S"},
    {"checkpoint-every", 0, 0, G_OPTION_ARG_INT, &ckpt_every, "Write OUT.ckpt.onnx every N epochs", "N"},
    {"resume", 0, 0, G_OPTION_ARG_FILENAME, &resume, "Resume from a checkpoint (its .state file too)", "CKPT"},
    {"limit", 0, 0, G_OPTION_ARG_INT, &limit, "Use only the first N training images", "N"},
    {"test-limit", 0, 0, G_OPTION_ARG_INT, &test_limit, "Use only the first N test images", "N"},
    {"eval-only", 0, 0, G_OPTION_ARG_NONE, &eval_only, "Only measure test accuracy of --init", NULL},
    {"backend", 0, 0, G_OPTION_ARG_STRING, &backend_name, "cpu (default) or cuda", "NAME"},
    {"quiet", 'q', 0, G_OPTION_ARG_NONE, &quiet, "No progress output", NULL},
    {"output", 'o', 0, G_OPTION_ARG_FILENAME, &out, "Write the model here", "OUT.onnx"},
    G_OPTION_ENTRY_NULL,
  };
  if (!cli_parse(&argc, &argv, "- train a network (or build a random-feature one) and write ONNX", entries)) return 2;
  if (argc > 1) return cli_usage_error("train takes no positional arguments");
  if (!!arch + !!init + !!resume != 1) return cli_usage_error("train needs exactly one of --arch, --init, --resume");
  if (batch < 1 || batch > 65536 || epochs < 0 || epochs > 100000 || limit < 0 || test_limit < 0 || ckpt_every < 0)
    return cli_usage_error("bad --batch-size, --epochs, --limit or --checkpoint-every");
  CnnfxOptimConfig oc = {0};
  oc.momentum = momentum;
  oc.weight_decay = wd;
  oc.nesterov = nesterov;
  if (!optim || !strcmp(optim, "adam")) oc.kind = CNNFX_OPTIM_ADAM;
  else if (!strcmp(optim, "sgd")) oc.kind = CNNFX_OPTIM_SGD;
  else return cli_usage_error("--optimizer must be sgd or adam");
  if (lr == 0) lr = oc.kind == CNNFX_OPTIM_ADAM ? 1e-3 : 0.05;
  if (lr < 0 || momentum < 0 || momentum >= 1 || wd < 0) return cli_usage_error("bad --lr, --momentum or --weight-decay");
  CnnfxLrSchedule schedule = CNNFX_LR_COSINE;
  if (sched && !strcmp(sched, "step")) schedule = CNNFX_LR_STEP;
  else if (sched && !strcmp(sched, "constant")) schedule = CNNFX_LR_CONSTANT;
  else if (sched && strcmp(sched, "cosine")) return cli_usage_error("--schedule must be constant, step or cosine");
  if (!out && !eval_only) return cli_usage_error("train needs -o OUT.onnx");

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
    if (eval_only) return cli_usage_error("--eval-only needs --data");
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
    return cli_usage_error("--data must be fashion-mnist[:DIR]");
  }
  if (cnnfx_model_n_inputs(model) != 1 || cnnfx_model_n_outputs(model) < 1)
    return cli_usage_error("the model must have one input and its logits as first output");
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
