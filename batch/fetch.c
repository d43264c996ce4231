/* cnnfx: model manifest, local model store and verified, resumable downloads. */
#include "fetch.h"
#include "cnnfx-i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef HAVE_LIBCURL
#include <curl/curl.h>
#endif

#ifndef CNNFX_FETCH_VERSION
#define CNNFX_FETCH_VERSION "0.1.0"
#endif

#ifndef CNNFX_MANIFEST_INSTALLED
#define CNNFX_MANIFEST_INSTALLED "/usr/local/share/cnnfx/models.ini"
#endif

G_DEFINE_QUARK(cnnfx-fetch-error-quark, cnnfx_fetch_error)

/* ---- manifest ------------------------------------------------------------------- */

char *cnnfx_manifest_locate(const char *explicit_path)
{
  if (explicit_path && *explicit_path) return g_strdup(explicit_path);
  const char *env = g_getenv("CNNFX_MODELS_MANIFEST");
  if (env && *env) return g_strdup(env);
  if (g_file_test(CNNFX_MANIFEST_INSTALLED, G_FILE_TEST_IS_REGULAR)) return g_strdup(CNNFX_MANIFEST_INSTALLED);
#ifdef CNNFX_MANIFEST_SOURCE
  if (g_file_test(CNNFX_MANIFEST_SOURCE, G_FILE_TEST_IS_REGULAR)) return g_strdup(CNNFX_MANIFEST_SOURCE);
#endif
  return g_strdup(CNNFX_MANIFEST_INSTALLED);
}

static void entry_free(gpointer p)
{
  CnnfxModelEntry *e = p;
  if (!e) return;
  g_free(e->name);
  g_free(e->title);
  g_free(e->use);
  g_free(e->license);
  g_strfreev(e->urls);
  g_free(e->sha256);
  g_free(e);
}

void cnnfx_manifest_free(CnnfxManifest *m)
{
  if (!m) return;
  if (m->models) g_ptr_array_unref(m->models);
  if (m->kf) g_key_file_unref(m->kf);
  g_free(m->path);
  g_free(m);
}

static gboolean valid_name(const char *s)
{
  if (!*s || *s == '.' || *s == '-') return FALSE;
  for (; *s; s++)
    if (!g_ascii_isalnum(*s) && *s != '-' && *s != '_' && *s != '.') return FALSE;
  return TRUE;
}

static gboolean valid_sha256(const char *s)
{
  if (strlen(s) != 64) return FALSE;
  for (; *s; s++)
    if (!g_ascii_isxdigit(*s)) return FALSE;
  return TRUE;
}

static char *get_opt(GKeyFile *kf, const char *group, const char *key)
{
  char *v = g_key_file_get_string(kf, group, key, NULL);
  if (v) g_strstrip(v);
  return v;
}

CnnfxManifest *cnnfx_manifest_load(const char *explicit_path, GError **error)
{
  g_autoptr(CnnfxManifest) m = g_new0(CnnfxManifest, 1);
  m->path = cnnfx_manifest_locate(explicit_path);
  m->kf = g_key_file_new();
  m->models = g_ptr_array_new_with_free_func(entry_free);
  g_autoptr(GError) err = NULL;
  if (!g_key_file_load_from_file(m->kf, m->path, G_KEY_FILE_NONE, &err)) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_MANIFEST, "model manifest %s: %s", m->path, err->message);
    return NULL;
  }
  gsize ngroups = 0;
  g_auto(GStrv) groups = g_key_file_get_groups(m->kf, &ngroups);
  for (gsize i = 0; i < ngroups; i++) {
    const char *g = groups[i];
    if (g_str_has_prefix(g, "cnnfx")) continue; /* [cnnfx-manifest] header and similar */
    if (!valid_name(g)) {
      g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_MANIFEST,
                  "model manifest %s: bad model name [%s] (letters, digits, '-', '_', '.')", m->path, g);
      return NULL;
    }
    CnnfxModelEntry *e = g_new0(CnnfxModelEntry, 1);
    g_ptr_array_add(m->models, e);
    e->kf = m->kf;
    e->name = g_strdup(g);
    e->title = get_opt(m->kf, g, "title");
    if (!e->title) e->title = g_strdup(g);
    e->use = get_opt(m->kf, g, "use");
    if (!e->use) e->use = g_strdup("");
    e->license = get_opt(m->kf, g, "license");
    if (!e->license) e->license = g_strdup("?");
    e->urls = g_key_file_get_string_list(m->kf, g, "urls", NULL, NULL);
    if (e->urls)
      for (char **u = e->urls; *u; u++) g_strstrip(*u);
    e->sha256 = get_opt(m->kf, g, "sha256");
    g_autofree char *size = get_opt(m->kf, g, "size");
    char *end = NULL;
    if (size) e->size = g_ascii_strtoll(size, &end, 10);
    if (!e->urls || !e->urls[0] || !*e->urls[0] || !e->sha256 || !valid_sha256(e->sha256) || !size || end == size ||
        *end || e->size <= 0) {
      g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_MANIFEST,
                  "model manifest %s: [%s] needs urls, size (bytes) and sha256 (64 hex digits)", m->path, g);
      return NULL;
    }
    for (char *c = e->sha256; *c; c++) *c = g_ascii_tolower(*c);
  }
  return g_steal_pointer(&m);
}

const CnnfxModelEntry *cnnfx_manifest_find(const CnnfxManifest *m, const char *name, GError **error)
{
  for (guint i = 0; i < m->models->len; i++) {
    const CnnfxModelEntry *e = g_ptr_array_index(m->models, i);
    if (!strcmp(e->name, name)) return e;
  }
  g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_UNKNOWN, "no model '%s' in %s (see 'cnnfx models list')",
              name, m->path);
  return NULL;
}

/* ---- local store ---------------------------------------------------------------- */

char *cnnfx_models_dir(void)
{
  const char *env = g_getenv("CNNFX_DATA_DIR");
  if (env && *env) return g_build_filename(env, "models", NULL);
  return g_build_filename(g_get_user_data_dir(), "cnnfx", "models", NULL);
}

char *cnnfx_model_file(const char *name)
{
  g_autofree char *dir = cnnfx_models_dir();
  g_autofree char *file = g_strconcat(name, ".onnx", NULL);
  return g_build_filename(dir, file, NULL);
}

char *cnnfx_model_present(const CnnfxModelEntry *e, GError **error)
{
  g_autofree char *path = cnnfx_model_file(e->name);
  GStatBuf st;
  if (g_stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "model '%s' is not downloaded (cnnfx models fetch %s)",
                e->name, e->name);
    return NULL;
  }
  if ((gint64)st.st_size != e->size) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_CHECKSUM,
                "%s has %" G_GINT64_FORMAT " bytes, expected %" G_GINT64_FORMAT " (cnnfx models fetch %s)", path,
                (gint64)st.st_size, e->size, e->name);
    return NULL;
  }
  return g_steal_pointer(&path);
}

char *cnnfx_sha256_file(const char *path, gint64 *size, GError **error)
{
  int fd = g_open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "%s: %s", path, g_strerror(e));
    return NULL;
  }
  g_autoptr(GChecksum) ck = g_checksum_new(G_CHECKSUM_SHA256);
  enum { BUF = 1 << 20 };
  guchar *buf = g_try_malloc(BUF);
  if (!buf) {
    close(fd);
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "out of memory");
    return NULL;
  }
  gint64 total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, BUF);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      g_free(buf);
      close(fd);
      g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "reading %s: %s", path, g_strerror(e));
      return NULL;
    }
    if (n == 0) break;
    g_checksum_update(ck, buf, (gssize)n);
    total += n;
  }
  g_free(buf);
  close(fd);
  if (size) *size = total;
  return g_strdup(g_checksum_get_string(ck));
}

static gboolean verify_file(const char *path, gint64 size, const char *sha256, GError **error)
{
  GStatBuf st;
  if (g_stat(path, &st) != 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "%s: %s", path, g_strerror(e));
    return FALSE;
  }
  if ((gint64)st.st_size != size) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_CHECKSUM,
                "%s: size %" G_GINT64_FORMAT " bytes, expected %" G_GINT64_FORMAT, path, (gint64)st.st_size, size);
    return FALSE;
  }
  gint64 got_size = 0;
  g_autofree char *got = cnnfx_sha256_file(path, &got_size, error);
  if (!got) return FALSE;
  if (got_size != size || g_ascii_strcasecmp(got, sha256) != 0) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_CHECKSUM, "%s: SHA-256 mismatch (expected %s, got %s)",
                path, sha256, got);
    return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_model_verify_file(const CnnfxModelEntry *e, const char *path, GError **error)
{
  return verify_file(path, e->size, e->sha256, error);
}

/* ---- download ------------------------------------------------------------------- */

G_GNUC_UNUSED static gboolean mkdir_for(const char *dest, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(dest);
  if (g_mkdir_with_parents(dir, 0755) != 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "cannot create %s: %s", dir, g_strerror(e));
    return FALSE;
  }
  return TRUE;
}

/* Atomically move a verified .part onto dest (after flushing it to disk). */
static gboolean commit_part(const char *part, const char *dest, GError **error)
{
  int fd = g_open(part, O_RDONLY | O_CLOEXEC, 0);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  if (g_rename(part, dest) != 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "cannot rename %s to %s: %s", part, dest,
                g_strerror(e));
    return FALSE;
  }
  g_autofree char *dir = g_path_get_dirname(dest);
  int dfd = g_open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dfd >= 0) {
    (void)fsync(dfd);
    close(dfd);
  }
  return TRUE;
}

/* Verify a .part that has reached the full size: rename on success, delete on mismatch. */
static gboolean finish_part(const CnnfxFetchRequest *req, const char *part, GError **error)
{
  g_autoptr(GError) err = NULL;
  if (!verify_file(part, req->size, req->sha256, &err)) {
    if (g_error_matches(err, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_CHECKSUM)) (void)g_unlink(part);
    g_propagate_prefixed_error(error, g_steal_pointer(&err), "%s: download rejected, ", req->label);
    return FALSE;
  }
  return commit_part(part, req->dest, error);
}

#ifdef HAVE_LIBCURL

typedef struct {
  CURL *curl;
  int fd;
  const char *part;
  gint64 offset;  /* bytes of .part on disk before this transfer */
  gint64 written; /* bytes written by this transfer */
  gint64 expect;  /* full size */
  gboolean checked_status;
  int write_errno;
  gboolean too_big;
  gboolean restarted; /* server ignored Range: .part truncated to 0 */
  gboolean progress;
  const char *label;
  gint64 last_progress_us;
} Transfer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
  Transfer *t = user;
  size_t len = size * nmemb;
  if (!t->checked_status) {
    t->checked_status = TRUE;
    long code = 0;
    curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
    if (t->offset > 0 && code != 206) {
      /* Range not honoured: the body is the whole file, start the .part over. */
      if (ftruncate(t->fd, 0) != 0 || lseek(t->fd, 0, SEEK_SET) < 0) {
        t->write_errno = errno;
        return 0;
      }
      t->offset = 0;
      t->restarted = TRUE;
    }
  }
  if (t->offset + t->written + (gint64)len > t->expect) {
    t->too_big = TRUE;
    return 0;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = write(t->fd, ptr + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      t->write_errno = errno;
      return 0;
    }
    done += (size_t)n;
    t->written += n;
  }
  return len;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  Transfer *t = user;
  if (!t->progress) return 0;
  gint64 now = g_get_monotonic_time();
  if (now - t->last_progress_us < 250000) return 0;
  t->last_progress_us = now;
  double have = (double)(t->offset + t->written), all = (double)t->expect;
  fprintf(stderr, "\r%s: %.1f / %.1f MB (%.0f%%)   ", t->label, have / 1e6, all / 1e6, all > 0 ? 100.0 * have / all : 0.0);
  fflush(stderr);
  return 0;
}

static gboolean curl_ready(GError **error)
{
  static gsize once = 0;
  static CURLcode rc = CURLE_OK;
  if (g_once_init_enter(&once)) {
    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    g_once_init_leave(&once, 1);
  }
  if (rc != CURLE_OK) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_NETWORK, "cannot initialise libcurl: %s",
                curl_easy_strerror(rc));
    return FALSE;
  }
  return TRUE;
}

/* Limits of one transfer.  A server that trickles (1 byte every 0.5 s) must not hold a fetch
 * forever: the transfer is aborted when it stays below a realistic minimum speed for a while,
 * and in any case after an overall deadline derived from the bytes still to come at that
 * speed.  The environment overrides them (tests): CNNFX_FETCH_MIN_SPEED (bytes/s, default
 * 4096), CNNFX_FETCH_STALL_SECONDS (default 60), CNNFX_FETCH_GRACE_SECONDS (default 120). */
static long env_long(const char *name, long def)
{
  const char *v = g_getenv(name);
  if (!v || !*v) return def;
  gint64 x = g_ascii_strtoll(v, NULL, 10);
  return x > 0 && x < G_MAXINT32 ? (long)x : def;
}

/* One transfer from one URL, appending to the open .part (fd) from its current size. */
static gboolean transfer_once(const CnnfxFetchRequest *req, const char *url, const char *part, int fd,
                              GError **error)
{
  GStatBuf st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "%s: %s", part, g_strerror(e));
    return FALSE;
  }
  Transfer t = {0};
  t.fd = fd;
  t.part = part;
  t.offset = (gint64)st.st_size;
  t.expect = req->size;
  t.progress = req->progress;
  t.label = req->label;
  if (t.offset >= req->size) return TRUE; /* nothing left to fetch: verify */
  if (lseek(fd, 0, SEEK_END) < 0) {
    int e = errno;
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "%s: %s", part, g_strerror(e));
    return FALSE;
  }

  CURL *c = curl_easy_init();
  if (!c) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_NETWORK, "cannot create a libcurl handle");
    return FALSE;
  }
  t.curl = c;
  char errbuf[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  long min_speed = env_long("CNNFX_FETCH_MIN_SPEED", 4096), stall = env_long("CNNFX_FETCH_STALL_SECONDS", 60);
  long deadline = env_long("CNNFX_FETCH_GRACE_SECONDS", 120) + (long)MIN((req->size - t.offset) / min_speed, (gint64)G_MAXINT32 / 2);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, min_speed); /* slower than this for `stall` s: abort */
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, deadline); /* the whole transfer */
  curl_easy_setopt(c, CURLOPT_USERAGENT, "cnnfx/" CNNFX_FETCH_VERSION);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  /* An explicit Range header rather than CURLOPT_RESUME_FROM: a server that ignores it and
   * sends the whole file (200) is handled in on_data instead of failing the transfer. */
  char range[64] = "";
  if (t.offset > 0) {
    g_snprintf(range, sizeof range, "%" G_GINT64_FORMAT "-", t.offset);
    curl_easy_setopt(c, CURLOPT_RANGE, range);
  }

  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  if (req->progress) fprintf(stderr, "\r%*s\r", 60, "");

  if (t.write_errno) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "writing %s: %s", part, g_strerror(t.write_errno));
    return FALSE;
  }
  if (t.too_big) {
    /* More bytes than the manifest says: this is not the file we want. */
    (void)g_unlink(part);
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_CHECKSUM,
                "%s sends more than the expected %" G_GINT64_FORMAT " bytes; download rejected", url, req->size);
    return FALSE;
  }
  if (rc == CURLE_HTTP_RETURNED_ERROR || (rc == CURLE_OK && code >= 400)) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_HTTP, "%s: HTTP error %ld%s", url, code,
                code == 404 ? " (not found)" : code == 416 ? " (range not satisfiable)" : "");
    return FALSE;
  }
  if (rc == CURLE_RANGE_ERROR) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_HTTP, "%s: server does not support resuming", url);
    return FALSE;
  }
  if (rc != CURLE_OK) {
    const char *hint = "";
    if (rc == CURLE_COULDNT_CONNECT) hint = _(" (server down or unreachable?)");
    else if (rc == CURLE_COULDNT_RESOLVE_HOST) hint = _(" (no network or DNS?)");
    g_autofree char *slow = NULL;
    if (rc == CURLE_OPERATION_TIMEDOUT)
      hint = slow = g_strdup_printf(_(" (timed out: slower than %ld bytes/s for %ld s, or past the %ld s deadline; "
                                      "partial file kept, run fetch again to resume)"),
                                    min_speed, stall, deadline);
    else if (rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR) hint = _(" (connection dropped; run fetch again to resume)");
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_NETWORK, "%s: %s%s", url, *errbuf ? errbuf : curl_easy_strerror(rc),
                hint);
    return FALSE;
  }
  gint64 have = t.offset + t.written;
  if (have < req->size) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_TRUNCATED,
                "%s: transfer ended after %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                " bytes; partial file kept, run fetch again to resume",
                url, have, req->size);
    return FALSE;
  }
  return TRUE;
}

gboolean cnnfx_fetch(const CnnfxFetchRequest *req, GError **error)
{
  if (!req->urls || !req->urls[0]) {
    g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_MANIFEST, "%s: no download URL", req->label);
    return FALSE;
  }
  if (!curl_ready(error) || !mkdir_for(req->dest, error)) return FALSE;
  g_autofree char *part = g_strconcat(req->dest, ".part", NULL);
  g_autoptr(GError) last = NULL;

  for (const char *const *u = req->urls; *u; u++) {
    int fd = g_open(part, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      int e = errno;
      g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "cannot open %s: %s", part, g_strerror(e));
      return FALSE;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_BUSY, "%s is being downloaded by another process (%s)",
                  req->label, part);
      return FALSE;
    }
    GStatBuf st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (gint64)st.st_size > req->size) {
      if (ftruncate(fd, 0) != 0) { /* cannot be ours: start over */
        int e = errno;
        close(fd);
        g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK, "%s: %s", part, g_strerror(e));
        return FALSE;
      }
    }
    g_clear_error(&last);
    gboolean ok = transfer_once(req, *u, part, fd, &last);
    /* Verify and rename while still holding the lock, so no other process can append to
     * the .part between the check and the rename. */
    if (ok) ok = finish_part(req, part, &last);
    if (close(fd) != 0 && ok) { /* cannot happen after a successful fsync + rename, but be safe */
      int e = errno;
      g_printerr("cnnfx: closing %s: %s\n", part, g_strerror(e));
    }
    if (ok) return TRUE;
    /* Do not leave an empty .part behind (nothing was received). */
    GStatBuf pst;
    if (g_stat(part, &pst) == 0 && pst.st_size == 0) (void)g_unlink(part);
    /* Local problems will not go away with another mirror. */
    if (g_error_matches(last, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_DISK)) break;
    if (u[1]) g_printerr(_("cnnfx: %s; trying next URL\n"), last->message);
  }
  g_propagate_error(error, g_steal_pointer(&last));
  return FALSE;
}

#else /* !HAVE_LIBCURL */

gboolean cnnfx_fetch(const CnnfxFetchRequest *req, GError **error)
{
  g_autofree char *part = g_strconcat(req->dest, ".part", NULL);
  /* A complete .part placed by hand (e.g. downloaded with a browser) can still be checked in. */
  GStatBuf st;
  if (g_stat(part, &st) == 0 && (gint64)st.st_size == req->size) return finish_part(req, part, error);
  g_set_error(error, CNNFX_FETCH_ERROR, CNNFX_FETCH_ERROR_UNSUPPORTED,
              "cnnfx was built without libcurl: download %s yourself and save it as %s", req->urls ? req->urls[0] : "?",
              part);
  return FALSE;
}

#endif
