/* Image files: PNG 8/16-bit with alpha, JPEG, EXIF orientation, corrupt input, atomic and
 * non-clobbering writes. */
#include "image.h"
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

static CnnfxImage *pattern(int w, int h, int c)
{
  CnnfxImage *img = cnnfx_image_new(w, h, c, 16, NULL);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < c; k++)
        img->px[((size_t)y * w + x) * c + k] = (float)((x * 7 + y * 13 + k * 101) % 1000) / 999.0f;
  return img;
}

static double maxdiff(const CnnfxImage *a, const CnnfxImage *b)
{
  double d = 0;
  for (size_t i = 0; i < (size_t)a->width * a->height * a->channels; i++) d = fmax(d, fabs(a->px[i] - b->px[i]));
  return d;
}

static int count_entries(const char *dir)
{
  GDir *d = g_dir_open(dir, 0, NULL);
  int n = 0;
  while (g_dir_read_name(d)) n++;
  g_dir_close(d);
  return n;
}

int main(void)
{
  g_autofree char *dir = g_dir_make_tmp("cnnfx-image-XXXXXX", NULL);
  GError *err = NULL;

  /* PNG 16-bit RGBA round trip is exact to 1/65535; 8-bit to 1/255 */
  {
    g_autoptr(CnnfxImage) a = pattern(37, 23, 4);
    g_autofree char *p16 = g_build_filename(dir, "a16.png", NULL);
    g_autofree char *p8 = g_build_filename(dir, "a8.png", NULL);
    CHECK(cnnfx_image_save(a, p16, 16, 0, FALSE, &err), "save 16-bit png");
    g_clear_error(&err);
    CHECK(cnnfx_image_save(a, p8, 8, 0, FALSE, NULL), "save 8-bit png");
    g_autoptr(CnnfxImage) b = cnnfx_image_load(p16, &err);
    CHECK(b && b->depth == 16 && b->channels == 4 && b->width == 37 && b->height == 23, "16-bit RGBA header kept");
    CHECK(b && maxdiff(a, b) <= 0.6 / 65535, "16-bit values kept (%g)", b ? maxdiff(a, b) : -1);
    g_autoptr(CnnfxImage) c = cnnfx_image_load(p8, NULL);
    CHECK(c && c->depth == 8 && c->channels == 4 && maxdiff(a, c) <= 0.6 / 255, "8-bit values within 1/2 LSB");
    /* no overwrite without permission; the existing file is untouched */
    g_autofree char *before = NULL, *after = NULL;
    gsize lb, la;
    g_file_get_contents(p8, &before, &lb, NULL);
    g_autoptr(CnnfxImage) z = pattern(5, 5, 3);
    CHECK(!cnnfx_image_save(z, p8, 8, 0, FALSE, &err) && err, "refuses to overwrite");
    g_clear_error(&err);
    g_file_get_contents(p8, &after, &la, NULL);
    CHECK(lb == la && !memcmp(before, after, lb), "existing output untouched");
    CHECK(cnnfx_image_save(z, p8, 8, 0, TRUE, NULL), "overwrite when asked");
    g_autoptr(CnnfxImage) zz = cnnfx_image_load(p8, NULL);
    CHECK(zz && zz->width == 5 && zz->channels == 3, "overwritten");
  }
  /* JPEG round trip: close, 8-bit RGB */
  {
    g_autoptr(CnnfxImage) a = cnnfx_image_new(64, 48, 3, 8, NULL);
    for (int y = 0; y < 48; y++)
      for (int x = 0; x < 64; x++)
        for (int k = 0; k < 3; k++) a->px[(y * 64 + x) * 3 + k] = (float)(0.5 + 0.4 * sin(x * 0.1 + k) * cos(y * 0.13));
    g_autofree char *p = g_build_filename(dir, "a.jpg", NULL);
    CHECK(cnnfx_image_save(a, p, 8, 95, FALSE, NULL), "save jpeg");
    g_autoptr(CnnfxImage) b = cnnfx_image_load(p, NULL);
    CHECK(b && b->channels == 3 && b->depth == 8 && maxdiff(a, b) < 0.05, "jpeg round trip (%g)", b ? maxdiff(a, b) : -1);

    /* EXIF orientation 6 (rotate 90° clockwise to display): insert an APP1 segment after SOI */
    gchar *data;
    gsize len;
    g_file_get_contents(p, &data, &len, NULL);
    static const guint8 exif[] = {0xff, 0xe1, 0x00, 0x22, 'E', 'x', 'i', 'f', 0, 0,
                                  'I', 'I', 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, /* TIFF header, IFD at 8 */
                                  0x01, 0x00,                                   /* 1 entry */
                                  0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
                                  0x00, 0x00, 0x00, 0x00};
    GByteArray *o = g_byte_array_new();
    g_byte_array_append(o, (guint8 *)data, 2);
    g_byte_array_append(o, exif, sizeof exif);
    g_byte_array_append(o, (guint8 *)data + 2, (guint)(len - 2));
    g_autofree char *pr = g_build_filename(dir, "rot.jpg", NULL);
    g_file_set_contents(pr, (char *)o->data, o->len, NULL);
    g_byte_array_free(o, TRUE);
    g_autoptr(CnnfxImage) r = cnnfx_image_load(pr, &err);
    CHECK(r && r->width == 48 && r->height == 64, "EXIF orientation 6 rotates to 48x64 (%dx%d)", r ? r->width : 0,
          r ? r->height : 0);
    g_clear_error(&err);
    if (r && b) {
      /* displayed (x, y) = stored (y, H-1-x): top-left of the display is the stored bottom-left */
      double d = 0;
      for (int k = 0; k < 3; k++) d = fmax(d, fabs(r->px[k] - b->px[(47 * 64 + 0) * 3 + k]));
      CHECK(d < 1e-6, "rotation maps pixels correctly");
    }
    /* corrupt and truncated files: an error, never a crash */
    g_autofree char *pt = g_build_filename(dir, "trunc.jpg", NULL);
    g_file_set_contents(pt, data, (gssize)(len / 2), NULL);
    g_autoptr(CnnfxImage) t = cnnfx_image_load(pt, &err);
    /* libjpeg pads truncated data with a warning; either an error or a full-size image is fine */
    CHECK(t ? (t->width == 64 && t->height == 48) : err != NULL, "truncated jpeg handled");
    g_clear_error(&err);
    for (gsize i = 200; i < len; i += 37) data[i] ^= 0x5a;
    g_autofree char *pc = g_build_filename(dir, "corrupt.jpg", NULL);
    g_file_set_contents(pc, data, (gssize)len, NULL);
    g_autoptr(CnnfxImage) cc = cnnfx_image_load(pc, &err);
    /* libjpeg may decode damaged entropy data (with garbage pixels): then the full-size image and
     * no error; otherwise no image and an error with a message.  Never both, never neither. */
    CHECK(cc ? (!err && cc->width == 64 && cc->height == 48 && cc->channels == 3)
             : (err && err->message && err->message[0]),
          "corrupt jpeg handled (%s)", cc ? "decoded" : err ? err->message : "neither image nor error");
    g_clear_error(&err);
    /* a damaged header cannot be decoded: an error, always */
    data[2] ^= 0xff; /* the marker after SOI */
    data[3] ^= 0xff;
    g_autofree char *ph = g_build_filename(dir, "badheader.jpg", NULL);
    g_file_set_contents(ph, data, (gssize)len, NULL);
    g_autoptr(CnnfxImage) hh = cnnfx_image_load(ph, &err);
    CHECK(!hh && err && err->message[0], "corrupt jpeg header: error (%s)", err ? err->message : "none");
    g_clear_error(&err);
    g_free(data);
  }
  {
    g_autofree char *pe = g_build_filename(dir, "empty.png", NULL);
    g_file_set_contents(pe, "", 0, NULL);
    CHECK(!cnnfx_image_load(pe, &err) && err && strstr(err->message, "empty"), "empty file: clear error");
    g_clear_error(&err);
    g_autofree char *px = g_build_filename(dir, "text.png", NULL);
    g_file_set_contents(px, "hello, not an image\n", -1, NULL);
    CHECK(!cnnfx_image_load(px, &err) && err && strstr(err->message, "not a PNG or JPEG"), "text file: clear error");
    g_clear_error(&err);
    /* truncated PNG */
    g_autoptr(CnnfxImage) a = pattern(50, 50, 3);
    g_autofree char *pp = g_build_filename(dir, "full.png", NULL);
    cnnfx_image_save(a, pp, 8, 0, FALSE, NULL);
    gchar *data;
    gsize len;
    g_file_get_contents(pp, &data, &len, NULL);
    g_autofree char *ptp = g_build_filename(dir, "trunc.png", NULL);
    g_file_set_contents(ptp, data, (gssize)(len * 2 / 3), NULL);
    CHECK(!cnnfx_image_load(ptp, &err) && err, "truncated png: error");
    g_clear_error(&err);
    g_free(data);
  }
  /* no temporary files left behind */
  {
    int n = count_entries(dir);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *e;
    int hidden = 0;
    while ((e = g_dir_read_name(d))) hidden += e[0] == '.';
    g_dir_close(d);
    CHECK(hidden == 0, "no temporary files left (%d of %d)", hidden, n);
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
