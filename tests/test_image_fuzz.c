/* Seeded mutation fuzzing of the image readers (PNG, JPEG with EXIF): thousands of bit-flipped,
 * truncated, spliced and header-forged files must each load to a sane image or fail with an
 * error — never crash, hang or trip ASan/UBSan (the suite runs this in the sanitizer build too).
 *
 *   test_image_fuzz [N_PER_SEED]      (default 1500 mutants per seed file)
 */
#include "image.h"
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

static guint32 crc_table[256];

static void crc_init(void)
{
  for (guint32 n = 0; n < 256; n++) {
    guint32 c = n;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
}

static guint32 crc32_of(const guint8 *d, size_t n)
{
  guint32 c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) c = crc_table[(c ^ d[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static void put32(guint8 *p, guint32 v)
{
  p[0] = (guint8)(v >> 24);
  p[1] = (guint8)(v >> 16);
  p[2] = (guint8)(v >> 8);
  p[3] = (guint8)v;
}

/* A seed file written by the library itself. */
static GBytes *seed_file(const char *dir, const char *name, int w, int h, int c, int depth)
{
  CnnfxImage *img = cnnfx_image_new(w, h, c, depth, NULL);
  for (size_t i = 0; i < (size_t)w * h * c; i++) img->px[i] = (float)((i * 37) % 255) / 255.0f;
  g_autofree char *p = g_build_filename(dir, name, NULL);
  g_autoptr(GError) e = NULL;
  gboolean ok = cnnfx_image_save(img, p, depth, 90, TRUE, &e);
  cnnfx_image_free(img);
  if (!ok) {
    printf("FAIL cannot write seed %s: %s\n", name, e->message);
    return NULL;
  }
  gchar *data;
  gsize len;
  if (!g_file_get_contents(p, &data, &len, NULL)) return NULL;
  return g_bytes_new_take(data, len);
}

/* A JPEG with an APP1 EXIF block (big-endian TIFF, one Orientation entry) spliced after SOI. */
static GBytes *with_exif(GBytes *jpeg, int orientation)
{
  gsize n;
  const guint8 *j = g_bytes_get_data(jpeg, &n);
  static const guint8 tiff[] = {'E', 'x', 'i', 'f', 0, 0, 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1,
                                0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  guint8 *o = g_malloc(n + 4 + sizeof tiff);
  memcpy(o, j, 2);
  o[2] = 0xff;
  o[3] = 0xe1;
  o[4] = 0;
  o[5] = (guint8)(2 + sizeof tiff);
  memcpy(o + 6, tiff, sizeof tiff);
  o[6 + 24] = 0;
  o[6 + 25] = (guint8)orientation;
  memcpy(o + 6 + sizeof tiff, j + 2, n - 2);
  return g_bytes_new_take(o, n + 4 + sizeof tiff);
}

typedef struct {
  int loaded, rejected;
} Stats;

static gboolean try_load(const char *path, const guint8 *d, size_t n, Stats *st)
{
  FILE *f = fopen(path, "wb"); /* plain stdio: g_file_set_contents would fsync every mutant */
  if (!f || (n && fwrite(d, 1, n, f) != n) || fclose(f) != 0) {
    printf("FAIL cannot write %s\n", path);
    return FALSE;
  }
  GError *e = NULL;
  CnnfxImage *img = cnnfx_image_load(path, &e);
  if (img) {
    gboolean sane = img->width > 0 && img->height > 0 && (img->channels == 3 || img->channels == 4) &&
                    (img->depth == 8 || img->depth == 16) && img->px;
    /* touch every sample: a short buffer shows up under ASan */
    double s = 0;
    for (size_t i = 0; sane && i < (size_t)img->width * img->height * img->channels; i++) s += img->px[i];
    cnnfx_image_free(img);
    if (!sane || s < 0) {
      printf("FAIL %s: loaded an insane image\n", path);
      return FALSE;
    }
    st->loaded++;
  } else {
    if (!e || !e->message || !*e->message) {
      printf("FAIL %s: no image and no error message\n", path);
      return FALSE;
    }
    st->rejected++;
    g_error_free(e);
  }
  return TRUE;
}

int main(int argc, char **argv)
{
  int per = argc > 1 ? atoi(argv[1]) : 1500;
  crc_init();
  g_autofree char *dir = g_dir_make_tmp("cnnfx-imgfuzz-XXXXXX", NULL);
  if (!dir) return 1;
  GBytes *seeds[6] = {
    seed_file(dir, "a.png", 37, 23, 3, 8), seed_file(dir, "b.png", 19, 31, 4, 16),
    seed_file(dir, "c.jpg", 40, 24, 3, 8), NULL, NULL, NULL,
  };
  if (!seeds[0] || !seeds[1] || !seeds[2]) return 1;
  seeds[3] = with_exif(seeds[2], 6);
  seeds[4] = with_exif(seeds[2], 8);
  seeds[5] = with_exif(seeds[2], 255); /* out-of-range orientation */
  g_autofree char *path = g_build_filename(dir, "mutant", NULL);
  GRand *r = g_rand_new_with_seed(1);
  Stats st = {0};
  int bad = 0, total = 0;
  for (int s = 0; s < 6; s++) {
    gsize n;
    const guint8 *d = g_bytes_get_data(seeds[s], &n);
    guint8 *m = g_malloc(n + 64);
    for (int i = 0; i < per; i++) {
      size_t len = n;
      memcpy(m, d, n);
      switch (i % 4) {
      case 0: /* bit flips */
        for (int k = g_rand_int_range(r, 1, 9); k > 0; k--) m[g_rand_int_range(r, 0, (gint32)n)] ^= (guint8)(1u << g_rand_int_range(r, 0, 8));
        break;
      case 1: /* truncation */
        len = (size_t)g_rand_int_range(r, 0, (gint32)n);
        break;
      case 2: /* overwrite a run with random or extreme bytes */
      {
        size_t at = (size_t)g_rand_int_range(r, 0, (gint32)n), k = MIN(n - at, (size_t)g_rand_int_range(r, 1, 16));
        guint8 v = (guint8)(g_rand_boolean(r) ? 0xff : g_rand_int_range(r, 0, 256));
        for (size_t q = 0; q < k; q++) m[at + q] = g_rand_boolean(r) ? v : (guint8)g_rand_int_range(r, 0, 256);
        break;
      }
      default: /* forged header: PNG IHDR with huge / zero sizes and a valid CRC; JPEG: flips in the first 200 bytes */
        if (s < 2) {
          static const guint32 dims[] = {0, 1, 65535, 100000, 0x7fffffffu, 0x80000000u, 0xffffffffu};
          put32(m + 16, dims[g_rand_int_range(r, 0, G_N_ELEMENTS(dims))]);
          put32(m + 20, dims[g_rand_int_range(r, 0, G_N_ELEMENTS(dims))]);
          if (g_rand_boolean(r)) m[24] = (guint8)g_rand_int_range(r, 0, 256); /* bit depth */
          if (g_rand_boolean(r)) m[25] = (guint8)g_rand_int_range(r, 0, 256); /* colour type */
          put32(m + 29, crc32_of(m + 12, 17));
        } else {
          for (int k = g_rand_int_range(r, 1, 5); k > 0; k--) m[g_rand_int_range(r, 0, (gint32)MIN(n, 200))] ^= (guint8)g_rand_int_range(r, 1, 256);
        }
      }
      total++;
      if (!try_load(path, m, len, &st)) bad++;
    }
    g_free(m);
  }
  for (int s = 0; s < 6; s++) g_bytes_unref(seeds[s]);
  g_rand_free(r);
  g_autofree char *a = g_build_filename(dir, "a.png", NULL), *b = g_build_filename(dir, "b.png", NULL),
                   *c = g_build_filename(dir, "c.jpg", NULL);
  g_unlink(a);
  g_unlink(b);
  g_unlink(c);
  g_unlink(path);
  g_rmdir(dir);
  printf("image fuzz: %d mutants, %d loaded, %d rejected with a message, %d bad\n", total, st.loaded, st.rejected, bad);
  printf("%d passed, %d failed\n", total - bad, bad);
  return bad ? 1 : 0;
}
