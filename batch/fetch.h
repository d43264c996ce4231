/* cnnfx: model manifest, local model store and verified, resumable downloads.
 *
 * Models live in the user's data dir: $CNNFX_DATA_DIR/models if that variable is set,
 * else g_get_user_data_dir()/cnnfx/models ($XDG_DATA_HOME/cnnfx/models).  A model NAME is
 * stored as NAME.onnx; a download in progress is NAME.onnx.part and is only renamed to
 * NAME.onnx once its size and SHA-256 match the manifest.
 */
#ifndef CNNFX_FETCH_H
#define CNNFX_FETCH_H

#include <glib.h>

#define CNNFX_FETCH_ERROR (cnnfx_fetch_error_quark())
GQuark cnnfx_fetch_error_quark(void);

typedef enum {
  CNNFX_FETCH_ERROR_MANIFEST,  /* manifest missing, unreadable or malformed */
  CNNFX_FETCH_ERROR_UNKNOWN,   /* no such model in the manifest */
  CNNFX_FETCH_ERROR_NETWORK,   /* could not connect, timeout, connection reset */
  CNNFX_FETCH_ERROR_HTTP,      /* server answered with an HTTP error (404, 500...) */
  CNNFX_FETCH_ERROR_TRUNCATED, /* transfer ended before the expected size */
  CNNFX_FETCH_ERROR_CHECKSUM,  /* size or SHA-256 does not match the manifest */
  CNNFX_FETCH_ERROR_DISK,      /* local file system error (disk full, permissions) */
  CNNFX_FETCH_ERROR_BUSY,      /* another process is downloading the same file */
  CNNFX_FETCH_ERROR_UNSUPPORTED /* built without libcurl */
} CnnfxFetchError;

/* One [section] of weights/models.ini. */
typedef struct {
  char *name;    /* section name, e.g. "vgg19" */
  char *title;   /* human-readable name */
  char *use;     /* comma list: dream, style, classify, fast-style */
  char *license;
  char **urls;   /* NULL-terminated, tried in order */
  gint64 size;   /* bytes */
  char *sha256;  /* 64 lowercase hex digits */
  GKeyFile *kf;  /* the whole manifest (borrowed reference, for other keys) */
} CnnfxModelEntry;

typedef struct {
  GKeyFile *kf;
  char *path;
  GPtrArray *models; /* of CnnfxModelEntry*, manifest order */
} CnnfxManifest;

/* Manifest location: explicit path, else $CNNFX_MODELS_MANIFEST, else the installed copy,
 * else the source tree's weights/models.ini. */
char *cnnfx_manifest_locate(const char *explicit_path);
CnnfxManifest *cnnfx_manifest_load(const char *explicit_path, GError **error);
void cnnfx_manifest_free(CnnfxManifest *m);
const CnnfxModelEntry *cnnfx_manifest_find(const CnnfxManifest *m, const char *name, GError **error);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CnnfxManifest, cnnfx_manifest_free)

/* Directory holding downloaded models (not created). */
char *cnnfx_models_dir(void);
/* Where model NAME is (or would be) stored. */
char *cnnfx_model_file(const char *name);
/* Path of a present model whose size matches the manifest entry (cheap check, no hash);
 * NULL with an error otherwise. */
char *cnnfx_model_present(const CnnfxModelEntry *e, GError **error);

/* Lowercase hex SHA-256 of a file (g_free the result); also returns its size. */
char *cnnfx_sha256_file(const char *path, gint64 *size, GError **error);
/* TRUE if path exists with the entry's size and SHA-256. */
gboolean cnnfx_model_verify_file(const CnnfxModelEntry *e, const char *path, GError **error);

typedef struct {
  const char *const *urls; /* tried in order; NULL-terminated */
  const char *dest;        /* final path; DEST.part is the download in progress */
  gint64 size;
  const char *sha256;
  gboolean progress;       /* progress line on stderr */
  const char *label;       /* for messages */
} CnnfxFetchRequest;

/* Download with resume (HTTP Range into DEST.part), verify size and SHA-256, then rename
 * atomically onto DEST.  An existing DEST is only ever replaced by a verified file.  A .part
 * whose hash does not match is removed; a truncated .part is kept so a later call resumes. */
gboolean cnnfx_fetch(const CnnfxFetchRequest *req, GError **error);

/* The `cnnfx models` command (also declared for batch/main.c's command table). */

#endif
