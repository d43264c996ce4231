/* The batch job list: collection, output planning, claims, atomic commit, progress (jobs.h). */
#include "jobs.h"
#include "cnnfx-i18n.h"
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
  char *path;
  gboolean candidate; /* became a job */
  gboolean own_output;
} CliFile;

static void file_free(gpointer p)
{
  CliFile *f = p;
  g_free(f->path);
  g_free(f);
}

static void job_free(gpointer p)
{
  CliJob *j = p;
  g_free(j->src);
  g_free(j->rel);
  g_free(j->out_rel);
  if (j->outputs) g_ptr_array_unref(j->outputs);
  g_free(j->error);
  g_free(j);
}

static char *id_key(dev_t dev, ino_t ino)
{
  return g_strdup_printf("%llu:%llu", (unsigned long long)dev, (unsigned long long)ino);
}

static const char *file_ext(const char *name)
{
  const char *slash = strrchr(name, '/'), *dot = strrchr(name, '.');
  return dot && (!slash || dot > slash) && dot != (slash ? slash + 1 : name) ? dot : NULL;
}

/* Image by name: formats cnnfx reads, and other image formats (reported as unsupported). */
static gboolean image_name(const char *name)
{
  static const char *const ext[] = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".gif", ".bmp", ".tif", ".tiff",
                                    ".webp", ".heic", ".heif", ".avif", NULL};
  const char *e = file_ext(name);
  if (!e) return FALSE;
  for (int i = 0; ext[i]; i++)
    if (!g_ascii_strcasecmp(e, ext[i])) return TRUE;
  return FALSE;
}

static gint job_cmp(gconstpointer a, gconstpointer b)
{
  const CliJob *x = *(CliJob *const *)a, *y = *(CliJob *const *)b;
  int c = strcmp(x->rel, y->rel);
  return c ? c : strcmp(x->src, y->src);
}

static void add_job(CliJobList *l, const char *src, const char *rel, const struct stat *st)
{
  CliJob *j = g_new0(CliJob, 1);
  j->src = g_strdup(src);
  j->rel = g_strdup(rel);
  if (st) {
    j->have_id = TRUE;
    j->dev = st->st_dev;
    j->ino = st->st_ino;
  }
  g_ptr_array_add(l->jobs, j);
}

/* A regular file met in the inputs.  explicit: named on the command line (always a job). */
static void add_file(CliJobList *l, const char *path, const char *rel, const struct stat *st, gboolean explicit)
{
  char *key = id_key(st->st_dev, st->st_ino);
  CliFile *f = g_hash_table_lookup(l->files, key);
  if (f) {
    g_free(key);
    if (f->candidate || explicit || image_name(path)) l->n_duplicates++;
    return;
  }
  f = g_new0(CliFile, 1);
  f->path = g_strdup(path);
  f->candidate = explicit || image_name(path) || cnnfx_image_sniff(path);
  g_hash_table_insert(l->files, key, f);
  if (f->candidate) add_job(l, path, rel, st);
  else l->n_not_images++;
}

static gint str_cmp(gconstpointer a, gconstpointer b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* dir: the folder to read; prefix: its path relative to the input root ("" at the root). */
static void walk(CliJobList *l, const char *dir, const char *prefix, gboolean recurse, GHashTable *seen_dirs)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  if (!d) return;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
  const char *e;
  while ((e = g_dir_read_name(d)))
    if (e[0] != '.') g_ptr_array_add(names, g_strdup(e)); /* hidden files: ours (claims, temporaries) or private */
  g_ptr_array_sort(names, str_cmp);
  for (guint i = 0; i < names->len; i++) {
    const char *name = names->pdata[i];
    g_autofree char *p = g_build_filename(dir, name, NULL);
    g_autofree char *rel = *prefix ? g_strconcat(prefix, "/", name, NULL) : g_strdup(name);
    struct stat st;
    if (stat(p, &st) != 0) continue; /* dangling symlink */
    if (S_ISDIR(st.st_mode)) {
      if (!recurse) continue;
      if (l->have_outdir && st.st_dev == l->out_dev && st.st_ino == l->out_ino) continue; /* never read outputs */
      char *key = id_key(st.st_dev, st.st_ino);
      if (!g_hash_table_add(seen_dirs, key)) continue; /* met before: symlink loop or second path */
      walk(l, p, rel, recurse, seen_dirs);
    } else if (S_ISREG(st.st_mode)) {
      add_file(l, p, rel, &st, FALSE);
    }
  }
}

CliJobList *cli_jobs_collect(char **inputs, int n, gboolean recurse, const char *outdir)
{
  CliJobList *l = g_new0(CliJobList, 1);
  l->jobs = g_ptr_array_new_with_free_func(job_free);
  l->files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, file_free);
  struct stat st;
  if (outdir && stat(outdir, &st) == 0 && S_ISDIR(st.st_mode)) {
    l->have_outdir = TRUE;
    l->out_dev = st.st_dev;
    l->out_ino = st.st_ino;
  }
  g_autoptr(GHashTable) seen_dirs = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  gboolean separator = FALSE;
  for (int i = 0; i < n; i++) {
    const char *in = inputs[i];
    if (!separator && !strcmp(in, "--")) { /* "--" ends the options: what follows are inputs */
      separator = TRUE;
      continue;
    }
    if (stat(in, &st) == 0 && S_ISDIR(st.st_mode)) {
      char *key = id_key(st.st_dev, st.st_ino);
      if (!g_hash_table_add(seen_dirs, key)) continue;
      walk(l, in, "", recurse, seen_dirs);
    } else if (stat(in, &st) == 0 && S_ISREG(st.st_mode)) {
      g_autofree char *base = g_path_get_basename(in);
      add_file(l, in, base, &st, TRUE);
    } else {
      g_autofree char *base = g_path_get_basename(in); /* missing: reported when loading */
      add_job(l, in, base, NULL);
    }
  }
  g_ptr_array_sort(l->jobs, job_cmp);
  return l;
}

/* ---- planning ----------------------------------------------------------------------- */

static gboolean is_jpeg_name(const char *name)
{
  const char *e = file_ext(name);
  return e && (!g_ascii_strcasecmp(e, ".jpg") || !g_ascii_strcasecmp(e, ".jpeg") || !g_ascii_strcasecmp(e, ".jpe") ||
               !g_ascii_strcasecmp(e, ".jfif"));
}

/* Output name number k of rel: k = 0 rel itself; 1 "STEM-EXT.EXT"; k > 1 "STEM-EXT-k.EXT". */
static char *variant(const char *rel, const char *src_ext, int k)
{
  if (k == 0) return g_strdup(rel);
  const char *e = file_ext(rel);
  g_autofree char *stem = e ? g_strndup(rel, (gsize)(e - rel)) : g_strdup(rel);
  g_autofree char *tag = src_ext && src_ext[1] ? g_strdup(src_ext + 1) : g_strdup("file");
  return k == 1 ? g_strdup_printf("%s-%s%s", stem, tag, e ? e : "")
                : g_strdup_printf("%s-%s-%d%s", stem, tag, k, e ? e : "");
}

/* A report cnnfx wrote (CSV / JSON / fool text), recognised by its content. */
static gboolean text_is_ours(const char *path)
{
  char buf[4096];
  FILE *f = g_fopen(path, "rb");
  if (!f) return FALSE;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  gboolean small = n < sizeof buf - 1;
  fclose(f);
  buf[n] = 0;
  if (g_str_has_prefix(buf, "file,rank,index,label,probability\n") || g_str_has_prefix(buf, "{\"file\": "))
    return TRUE;
  return small && g_str_has_suffix(path, ".fool.txt") && strstr(buf, " -> ") && g_str_has_suffix(buf, "fooled\n");
}

static gboolean file_is_ours(const char *path)
{
  return cnnfx_image_sniff(path) ? cnnfx_image_file_is_ours(path) : text_is_ours(path);
}

static void plan_names(CliJobList *l, const FilterApp *app)
{
  g_autoptr(GHashTable) taken = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < l->jobs->len; i++) {
    CliJob *j = l->jobs->pdata[i];
    g_autofree char *base = NULL;
    if (app->depth16 && is_jpeg_name(j->rel)) { /* 16-bit output: PNG */
      const char *e = file_ext(j->rel);
      g_autofree char *stem = g_strndup(j->rel, (gsize)(e - j->rel));
      base = g_strconcat(stem, ".png", NULL);
    } else {
      base = g_strdup(j->rel);
    }
    g_clear_pointer(&j->out_rel, g_free);
    if (j->outputs) g_ptr_array_unref(j->outputs);
    j->outputs = NULL;
    for (int k = 0; k < 1000 && !j->outputs; k++) {
      char *v = variant(base, file_ext(j->rel), k);
      GPtrArray *outs = cli_filter_outputs(app, v);
      gboolean clash = FALSE;
      for (guint o = 0; o < outs->len && !clash; o++) clash = g_hash_table_contains(taken, outs->pdata[o]);
      if (clash) {
        g_ptr_array_unref(outs);
        g_free(v);
      } else {
        j->outputs = outs;
        j->out_rel = v;
      }
    }
    if (!j->outputs) { /* cannot happen in practice: 1000 clashing names */
      j->out_rel = g_strdup(base);
      j->outputs = cli_filter_outputs(app, base);
      if (!j->error) j->error = g_strdup("no free output name");
    }
    for (guint o = 0; o < j->outputs->len; o++) g_hash_table_add(taken, j->outputs->pdata[o]);
  }
}

void cli_jobs_plan(CliJobList *l, const FilterApp *app)
{
  for (;;) { /* each round drops jobs, so this ends */
    plan_names(l, app);
    /* Outputs against the files met in the inputs (same inode, symlinks followed). */
    g_autoptr(GHashTable) drop = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < l->jobs->len; i++) {
      CliJob *j = l->jobs->pdata[i];
      for (guint o = 0; o < j->outputs->len; o++) {
        const char *out = j->outputs->pdata[o];
        struct stat st;
        if (stat(out, &st) != 0) continue;
        char *key = id_key(st.st_dev, st.st_ino);
        CliFile *f = g_hash_table_lookup(l->files, key);
        gboolean own_input = j->have_id && st.st_dev == j->dev && st.st_ino == j->ino;
        if (!f && !own_input) {
          g_free(key);
          continue;
        }
        if (!own_input && (f->own_output || file_is_ours(out))) {
          /* an earlier output of ours found among the inputs: not an input */
          if (!f->own_output) {
            f->own_output = TRUE;
            if (f->candidate) g_hash_table_add(drop, g_strdup(key));
            else l->n_not_images--;
            l->n_own_outputs++;
          }
          g_free(key);
          continue;
        }
        g_free(key);
        if (!j->error)
          j->error = g_strdup_printf(_("output %s would replace the input file %s; nothing written (choose an "
                                       "output folder outside the inputs)"),
                                     out, f ? f->path : j->src);
      }
    }
    if (!g_hash_table_size(drop)) return;
    for (guint i = l->jobs->len; i-- > 0;) {
      CliJob *j = l->jobs->pdata[i];
      if (!j->have_id) continue;
      g_autofree char *key = id_key(j->dev, j->ino);
      if (g_hash_table_contains(drop, key)) g_ptr_array_remove_index(l->jobs, i); /* keeps the order */
      else g_clear_pointer(&j->error, g_free); /* re-planned below */
    }
  }
}

void cli_jobs_filter(CliJobList *l, CliJobKeep keep, gpointer user)
{
  guint n = l->jobs->len, k = 0;
  for (guint i = 0; i < n; i++) {
    CliJob *j = l->jobs->pdata[i];
    if (keep(j, i, n, user)) l->jobs->pdata[k++] = j;
    else job_free(j);
  }
  l->jobs->len = k;
}

void cli_jobs_free(CliJobList *l)
{
  if (!l) return;
  g_ptr_array_unref(l->jobs);
  g_hash_table_unref(l->files);
  g_free(l);
}

/* ---- progress ---------------------------------------------------------------------- */

typedef struct {
  gboolean tty, shown;
  int file_i, n_files;
  const char *name;
  gint64 last;
} Bar;

static void bar_clear(Bar *b)
{
  if (!b->shown) return;
  fputs("\r\033[K", stderr);
  fflush(stderr);
  b->shown = FALSE;
}

static void bar_draw(Bar *b, double frac, const char *what)
{
  int cols = 80;
  struct winsize ws;
  if (ioctl(2, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) cols = ws.ws_col;
  int w = 20, fill = (int)(CLAMP(frac, 0, 1) * w);
  char bar[32];
  for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '-';
  bar[w] = 0;
  g_autofree char *head = g_strdup_printf("[%d/%d] [%s] %3.0f%% ", b->file_i, b->n_files, bar, CLAMP(frac, 0, 1) * 100);
  g_autofree char *tail = g_strdup_printf("%s%s%s", b->name ? b->name : "", what && *what ? " " : "", what ? what : "");
  /* one terminal line: a wrapped bar could not be erased with \r */
  glong room = cols - 1 - (glong)strlen(head);
  g_autofree char *t = g_utf8_make_valid(tail, -1);
  if (room < 0) room = 0;
  if (g_utf8_strlen(t, -1) > room) {
    char *end = g_utf8_offset_to_pointer(t, room);
    *end = 0;
  }
  fprintf(stderr, "\r\033[K%s%s", head, t);
  fflush(stderr);
  b->shown = TRUE;
}

static void progress_cb(double frac, const char *what, gpointer user)
{
  Bar *b = user;
  if (!b->tty) return;
  gint64 now = g_get_monotonic_time();
  if (now - b->last < 100000 && frac < 1) return;
  b->last = now;
  bar_draw(b, frac, what);
}

/* Result lines go above the bar: clear it, print, and let the next update redraw it. */
static void say_cb(gpointer user, FILE *stream, const char *line)
{
  Bar *b = user;
  bar_clear(b);
  fflush(stdout);
  fputs(line, stream);
  fflush(stream);
}

static void sayf(Bar *b, FILE *stream, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void sayf(Bar *b, FILE *stream, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *s = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  say_cb(b, stream, s);
}

/* ---- claims, stale temporaries, commit ---------------------------------------------- */

static gboolean ensure_parent(const char *path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot create %s: %s", dir, g_strerror(e));
    return FALSE;
  }
  return TRUE;
}

static char *claim_path(const char *main_out)
{
  g_autofree char *dir = g_path_get_dirname(main_out);
  g_autofree char *base = g_path_get_basename(main_out);
  g_autofree char *name = g_strdup_printf(".%s.cnnfx-claim", base);
  return g_build_filename(dir, name, NULL);
}

/* fd of the held claim, -1 with *busy when another live process holds it, -1 on error. */
static int claim(const char *path, gboolean *busy, GError **error)
{
  *busy = FALSE;
  for (int tries = 0; tries < 10; tries++) {
    /* O_NOFOLLOW: a symlink planted under the claim's name is never followed; nothing is
     * ever written into the claim file (its lock is the claim) */
    int fd = g_open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 && errno == ELOOP && g_unlink(path) == 0) continue; /* a symlink is no claim of ours */
    if (fd < 0) {
      int e = errno;
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot create %s: %s", path, g_strerror(e));
      return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int e = errno;
      close(fd);
      if (e == EWOULDBLOCK) {
        *busy = TRUE;
        return -1;
      }
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot lock %s: %s", path, g_strerror(e));
      return -1;
    }
    /* the holder before us may have removed the file between our open and lock: retry */
    struct stat a, b;
    if (fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) return fd;
    close(fd);
  }
  g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot claim %s", path);
  return -1;
}

static void unclaim(const char *path, int fd)
{
  if (fd < 0) return;
  (void)g_unlink(path); /* while still locked */
  close(fd);
}

/* Temporary files ".NAME.XXXXXX" left by a killed run, for the outputs of a claimed item. */
static void remove_stale_temps(GHashTable *dir_cache, const CliJob *j)
{
  for (guint o = 0; o < j->outputs->len; o++) {
    const char *out = j->outputs->pdata[o];
    g_autofree char *dir = g_path_get_dirname(out);
    g_autofree char *base = g_path_get_basename(out);
    GPtrArray *names = g_hash_table_lookup(dir_cache, dir);
    if (!names) {
      names = g_ptr_array_new_with_free_func(g_free);
      g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
      const char *e;
      while (d && (e = g_dir_read_name(d)))
        if (e[0] == '.' && strlen(e) > 8) g_ptr_array_add(names, g_strdup(e));
      g_hash_table_insert(dir_cache, g_strdup(dir), names);
    }
    for (guint i = 0; i < names->len; i++) {
      const char *nm = names->pdata[i];
      if (!cnnfx_is_temp_name_of(nm, base)) continue;
      /* a hidden ".a.csv.backup" of the user's is no temporary file: mkstemp's six random
       * characters are almost never all lower-case letters */
      const char *x = nm + strlen(nm) - 6;
      gboolean word = TRUE;
      for (int k = 0; k < 6; k++) word = word && g_ascii_islower(x[k]);
      g_autofree char *p = g_build_filename(dir, nm, NULL);
      struct stat st;
      if (!word && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) (void)g_unlink(p);
    }
  }
}

/* Rename an item's temporary files into place, the main output last. */
static gboolean commit(FilterApp *app, const char *main_out, GError **error)
{
  GPtrArray *p = app->pending;
  for (guint pass = 0; pass < 2; pass++)
    for (guint i = 0; i < p->len; i++) {
      CliPending *c = p->pdata[i];
      gboolean is_main = !strcmp(c->final, main_out);
      if (!c->tmp || is_main != (pass == 1)) continue;
      int rc;
      if (is_main && !app->overwrite) {
        rc = link(c->tmp, c->final); /* fails if the name appeared meanwhile: never clobber */
        if (rc == 0) (void)g_unlink(c->tmp);
      } else {
        rc = g_rename(c->tmp, c->final);
      }
      if (rc != 0) {
        int e = errno;
        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", c->final, g_strerror(e));
        return FALSE; /* the rest are removed by cli_pending_free */
      }
      g_clear_pointer(&c->tmp, g_free);
    }
  return TRUE;
}

static CnnfxImageLoadOptions load_options(const FilterApp *app, const CliJobsOptions *o)
{
  /* Decoding is counted against the memory bound too, with the default (2 GiB) as its floor:
   * --max-memory bounds the network tensors, which are tiled, so a photo may need more for its
   * whole-image buffers than a small --max-memory (24 MiB tiles of a 6000x4000 photo). */
  CnnfxImageLoadOptions lo = {.max_pixels = o->max_pixels,
                              .max_bytes = MAX((gint64)app->run.max_memory, (gint64)2048 << 20)};
  /* classify without a heat map or labels image only needs the network's input size: decode
   * JPEG reduced (DCT scaling); with them, apply_classify reads the reduced copy for the scores */
  int side = cli_filter_reduced_side(app); /* 0 unless classify */
  if (side > 0 && !g_strcmp0(cnnfx_params_string(app->params, "overlay"), "none") &&
      !cnnfx_params_bool(app->params, "labels-image"))
    lo.min_side = side;
  return lo;
}

void cli_jobs_run(CliJobList *l, FilterApp *app, const CliJobsOptions *o, CliJobsResult *r)
{
  memset(r, 0, sizeof *r);
  Bar bar = {.tty = !o->quiet && isatty(2), .n_files = (int)l->jobs->len};
  app->run.progress = progress_cb;
  app->run.user = &bar;
  app->say = say_cb;
  app->say_user = &bar;
  CnnfxImageLoadOptions lo = load_options(app, o);
  app->load = lo;
  app->load.min_side = 0;
  gint64 started = g_get_real_time(); /* microseconds */
  g_autoptr(GHashTable) dir_cache =
    g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
  for (guint i = 0; i < l->jobs->len && !(o->cancel && *o->cancel); i++) {
    CliJob *j = l->jobs->pdata[i];
    bar.file_i = (int)i + 1;
    bar.name = j->rel;
    if (j->error) {
      r->failed++;
      sayf(&bar, stderr, "%s: %s\n", j->src, j->error);
      continue;
    }
    const char *main_out = j->outputs->pdata[j->outputs->len - 1];
    g_autoptr(GError) e = NULL;
    g_autofree char *cp = claim_path(main_out);
    gboolean busy = FALSE;
    int fd = ensure_parent(main_out, &e) ? claim(cp, &busy, &e) : -1;
    if (fd < 0 && busy) {
      r->busy++; /* another worker has it */
      continue;
    }
    if (fd < 0) {
      r->failed++;
      sayf(&bar, stderr, "%s: %s\n", j->src, e->message);
      continue;
    }
    remove_stale_temps(dir_cache, j);
    struct stat ms;
    gboolean exists = stat(main_out, &ms) == 0;
    gint64 mtime = exists ? (gint64)ms.st_mtim.tv_sec * G_USEC_PER_SEC + ms.st_mtim.tv_nsec / 1000 : 0;
    if (exists && (!app->overwrite || mtime > started)) {
      /* resume: finished before (the main output is renamed last); with --overwrite, an item
       * another worker on this folder finished after this run started is not done twice */
      unclaim(cp, fd);
      if (app->overwrite) r->busy++;
      else r->skipped++;
      continue;
    }
    if (bar.tty) bar_draw(&bar, 0, NULL);
    g_autoptr(GPtrArray) pending = g_ptr_array_new_with_free_func(cli_pending_free);
    app->pending = pending;
    g_autoptr(CnnfxImage) img = cnnfx_image_load_with(j->src, &lo, &e);
    gboolean ok = img && cli_filter_apply(app, img, j->src, j->out_rel, &e) && commit(app, main_out, &e);
    app->pending = NULL;
    g_clear_pointer(&pending, g_ptr_array_unref); /* removes uncommitted temporaries */
    unclaim(cp, fd);
    if (ok) {
      r->done++;
      if (!o->quiet) sayf(&bar, stderr, "%s -> %s\n", j->src, main_out);
    } else if (e && g_error_matches(e, CNNFX_ERROR, CNNFX_ERROR_CANCELLED)) {
      break;
    } else {
      r->failed++;
      sayf(&bar, stderr, "%s: %s\n", j->src, e ? e->message : "failed");
    }
  }
  bar_clear(&bar);
  app->run.progress = NULL;
  app->run.user = NULL;
  app->say = NULL;
}

void cli_jobs_summary(const CliJobList *l, const CliJobsResult *r, const char *filter)
{
  g_autoptr(GString) s = g_string_new(NULL);
  g_string_append_printf(s, _("cnnfx %s: %d done, %d failed"), filter, r->done, r->failed);
  if (r->skipped) g_string_append_printf(s, _(", %d already done (skipped; --overwrite redoes them)"), r->skipped);
  if (r->busy) g_string_append_printf(s, _(", %d left to another worker on this folder"), r->busy);
  if (l->n_not_images) g_string_append_printf(s, _(", %d skipped (not images)"), l->n_not_images);
  if (l->n_duplicates) g_string_append_printf(s, _(", %d duplicates skipped (same file twice)"), l->n_duplicates);
  if (l->n_own_outputs) g_string_append_printf(s, _(", %d earlier outputs not read as inputs"), l->n_own_outputs);
  fprintf(stderr, "%s\n", s->str);
}
