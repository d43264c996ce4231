/* PNG and JPEG reading/writing for the front-ends. */
#include "image.h"
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define IMG_ERROR g_quark_from_static_string("cnnfx-image-error")
#define MAX_PIXELS ((gint64)1 << 30) /* 1 Gpx: beyond any photo, below overflow */

CnnfxImage *cnnfx_image_new(int width, int height, int channels, int depth, GError **error)
{
  if (width <= 0 || height <= 0 || (gint64)width * height > MAX_PIXELS || channels < 3 || channels > 4) {
    g_set_error(error, IMG_ERROR, 1, "unsupported image size %dx%d", width, height);
    return NULL;
  }
  CnnfxImage *img = g_new0(CnnfxImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->depth = depth;
  img->px = g_try_malloc((gsize)width * height * channels * sizeof(float));
  if (!img->px) {
    g_free(img);
    g_set_error(error, IMG_ERROR, 2, "out of memory for a %dx%d image", width, height);
    return NULL;
  }
  return img;
}

void cnnfx_image_free(CnnfxImage *img)
{
  if (!img) return;
  g_free(img->px);
  g_free(img);
}

/* ---- EXIF orientation ------------------------------------------------------------ */

/* Orientation tag (1..8) from a TIFF/EXIF block ("Exif\0\0" already stripped); 1 if absent. */
static int exif_orientation(const guint8 *d, size_t n)
{
  if (n < 8) return 1;
  gboolean le = d[0] == 'I' && d[1] == 'I';
  if (!le && !(d[0] == 'M' && d[1] == 'M')) return 1;
#define U16(p) (le ? (guint)((p)[0] | (p)[1] << 8) : (guint)((p)[0] << 8 | (p)[1]))
#define U32(p) (le ? ((guint32)(p)[0] | (guint32)(p)[1] << 8 | (guint32)(p)[2] << 16 | (guint32)(p)[3] << 24) \
                   : ((guint32)(p)[0] << 24 | (guint32)(p)[1] << 16 | (guint32)(p)[2] << 8 | (guint32)(p)[3]))
  guint32 ifd = U32(d + 4);
  if (ifd > n - 2 || ifd < 8) return 1;
  guint cnt = U16(d + ifd);
  for (guint i = 0; i < cnt; i++) {
    size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
    if (e + 12 > n) break;
    if (U16(d + e) == 0x0112) {
      guint v = U16(d + e + 8);
      return v >= 1 && v <= 8 ? (int)v : 1;
    }
  }
  return 1;
#undef U16
#undef U32
}

/* Apply EXIF orientation in place (replaces img->px). */
static gboolean apply_orientation(CnnfxImage *img, int o, GError **error)
{
  if (o <= 1) return TRUE;
  int w = img->width, h = img->height, c = img->channels;
  gboolean swap = o >= 5;
  int nw = swap ? h : w, nh = swap ? w : h;
  float *dst = g_try_malloc((gsize)w * h * c * sizeof(float));
  if (!dst) {
    g_set_error(error, IMG_ERROR, 2, "out of memory rotating the image");
    return FALSE;
  }
  for (int y = 0; y < nh; y++)
    for (int x = 0; x < nw; x++) {
      int sx, sy;
      switch (o) {
      case 2: sx = w - 1 - x; sy = y; break;
      case 3: sx = w - 1 - x; sy = h - 1 - y; break;
      case 4: sx = x; sy = h - 1 - y; break;
      case 5: sx = y; sy = x; break;
      case 6: sx = y; sy = h - 1 - x; break;
      case 7: sx = w - 1 - y; sy = h - 1 - x; break;
      default: sx = w - 1 - y; sy = x; break; /* 8 */
      }
      memcpy(dst + ((size_t)y * nw + x) * c, img->px + ((size_t)sy * w + sx) * c, c * sizeof(float));
    }
  g_free(img->px);
  img->px = dst;
  img->width = nw;
  img->height = nh;
  return TRUE;
}

/* ---- PNG ------------------------------------------------------------------------- */

typedef struct {
  jmp_buf jb;
  char msg[200];
} PngErr;

static void png_err_fn(png_structp p, png_const_charp msg)
{
  PngErr *e = png_get_error_ptr(p);
  g_strlcpy(e->msg, msg, sizeof e->msg);
  longjmp(e->jb, 1);
}

static void png_warn_fn(png_structp p, png_const_charp msg)
{
  (void)p;
  (void)msg;
}

static CnnfxImage *load_png(FILE *f, const char *path, GError **error)
{
  PngErr e = {.msg = ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_err_fn, png_warn_fn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  CnnfxImage *volatile img = NULL;
  png_bytep volatile row = NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    g_set_error(error, IMG_ERROR, 2, "%s: out of memory", path);
    return NULL;
  }
  if (setjmp(e.jb)) {
    png_destroy_read_struct(&png, &info, NULL);
    g_free(row);
    cnnfx_image_free(img);
    g_set_error(error, IMG_ERROR, 3, "%s: corrupt PNG file (%s)", path, e.msg);
    return NULL;
  }
  png_set_user_limits(png, 1 << 20, 1 << 20);
  png_init_io(png, f);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
  if ((gint64)w * h > MAX_PIXELS) png_error(png, "image too large");
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (bd == 16) png_set_swap(png); /* host order (little endian) */
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int ch = png_get_channels(png, info), depth = png_get_bit_depth(png, info);
  if (ch < 3 || ch > 4 || (depth != 8 && depth != 16)) png_error(png, "unexpected pixel layout");
  GError *ie = NULL;
  img = cnnfx_image_new((int)w, (int)h, ch, depth, &ie);
  if (!img) {
    g_strlcpy(e.msg, ie->message, sizeof e.msg);
    g_error_free(ie);
    png_error(png, e.msg);
  }
  size_t rb = png_get_rowbytes(png, info);
  int passes = png_set_interlace_handling(png);
  /* Interlaced files need the whole image; read row by row into the float buffer via a full
   * 8/16-bit copy only when interlaced. */
  if (passes > 1) {
    png_bytep all = g_try_malloc(rb * h);
    png_bytepp rows = g_try_new(png_bytep, h);
    if (!all || !rows) {
      g_free(all);
      g_free(rows);
      png_error(png, "out of memory");
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = all + rb * y;
    row = all;
    png_read_image(png, rows);
    g_free(rows);
  } else {
    row = g_try_malloc(rb);
    if (!row) png_error(png, "out of memory");
  }
  for (png_uint_32 y = 0; y < h; y++) {
    png_bytep r = passes > 1 ? row + rb * y : row;
    if (passes <= 1) png_read_row(png, r, NULL);
    float *dst = img->px + (size_t)y * w * ch;
    if (depth == 16) {
      const guint16 *s = (const guint16 *)r;
      for (size_t i = 0; i < (size_t)w * ch; i++) dst[i] = s[i] / 65535.0f;
    } else {
      for (size_t i = 0; i < (size_t)w * ch; i++) dst[i] = r[i] / 255.0f;
    }
  }
  png_read_end(png, NULL);
  int orient = 1;
#ifdef PNG_eXIf_SUPPORTED
  png_bytep exif = NULL;
  png_uint_32 exif_len = 0;
  if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif) orient = exif_orientation(exif, exif_len);
#endif
  png_destroy_read_struct(&png, &info, NULL);
  g_free(row);
  CnnfxImage *res = img;
  if (!apply_orientation(res, orient, error)) {
    cnnfx_image_free(res);
    return NULL;
  }
  return res;
}

static gboolean save_png(const CnnfxImage *img, FILE *f, int depth, GError **error)
{
  PngErr e = {.msg = ""};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &e, png_err_fn, png_warn_fn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  guint8 *volatile row = NULL;
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    g_set_error(error, IMG_ERROR, 2, "out of memory");
    return FALSE;
  }
  if (setjmp(e.jb)) {
    png_destroy_write_struct(&png, &info);
    g_free(row);
    g_set_error(error, IMG_ERROR, 4, "cannot write PNG: %s", e.msg);
    return FALSE;
  }
  int w = img->width, h = img->height, c = img->channels;
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, depth, c == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  png_write_info(png, info);
  if (depth == 16) png_set_swap(png);
  row = g_try_malloc((size_t)w * c * (depth / 8));
  if (!row) png_error(png, "out of memory");
  for (int y = 0; y < h; y++) {
    const float *s = img->px + (size_t)y * w * c;
    if (depth == 16) {
      guint16 *d = (guint16 *)row;
      for (size_t i = 0; i < (size_t)w * c; i++) d[i] = (guint16)(CLAMP(s[i], 0.f, 1.f) * 65535.f + 0.5f);
    } else {
      for (size_t i = 0; i < (size_t)w * c; i++) row[i] = (guint8)(CLAMP(s[i], 0.f, 1.f) * 255.f + 0.5f);
    }
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  g_free(row);
  return TRUE;
}

/* ---- JPEG ------------------------------------------------------------------------ */

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_err_exit(j_common_ptr c)
{
  JpegErr *e = (JpegErr *)c->err;
  c->err->format_message(c, e->msg);
  longjmp(e->jb, 1);
}

static void jpeg_no_output(j_common_ptr c)
{
  (void)c;
}

static CnnfxImage *load_jpeg(FILE *f, const char *path, GError **error)
{
  struct jpeg_decompress_struct ci;
  JpegErr e;
  CnnfxImage *volatile img = NULL;
  JSAMPLE *volatile row = NULL;
  ci.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_err_exit;
  e.pub.output_message = jpeg_no_output;
  if (setjmp(e.jb)) {
    jpeg_destroy_decompress(&ci);
    g_free(row);
    cnnfx_image_free(img);
    g_set_error(error, IMG_ERROR, 3, "%s: corrupt JPEG file (%s)", path, e.msg);
    return NULL;
  }
  jpeg_create_decompress(&ci);
  jpeg_stdio_src(&ci, f);
  jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xffff);
  jpeg_read_header(&ci, TRUE);
  ci.out_color_space = JCS_RGB;
  jpeg_start_decompress(&ci);
  if (ci.output_components != 3) {
    g_strlcpy(e.msg, "unsupported colour layout", sizeof e.msg);
    longjmp(e.jb, 1);
  }
  GError *ie = NULL;
  img = cnnfx_image_new((int)ci.output_width, (int)ci.output_height, 3, 8, &ie);
  if (!img) {
    g_strlcpy(e.msg, ie->message, sizeof e.msg);
    g_error_free(ie);
    longjmp(e.jb, 1);
  }
  row = g_try_malloc((size_t)ci.output_width * 3);
  if (!row) {
    g_strlcpy(e.msg, "out of memory", sizeof e.msg);
    longjmp(e.jb, 1);
  }
  while (ci.output_scanline < ci.output_height) {
    JSAMPROW rp = row;
    size_t y = ci.output_scanline;
    jpeg_read_scanlines(&ci, &rp, 1);
    float *dst = img->px + y * ci.output_width * 3;
    for (size_t i = 0; i < (size_t)ci.output_width * 3; i++) dst[i] = row[i] / 255.0f;
  }
  int orient = 1;
  for (jpeg_saved_marker_ptr mk = ci.marker_list; mk; mk = mk->next)
    if (mk->marker == JPEG_APP0 + 1 && mk->data_length > 6 && !memcmp(mk->data, "Exif\0\0", 6))
      orient = exif_orientation(mk->data + 6, mk->data_length - 6);
  jpeg_finish_decompress(&ci);
  jpeg_destroy_decompress(&ci);
  g_free(row);
  CnnfxImage *res = img;
  if (!apply_orientation(res, orient, error)) {
    cnnfx_image_free(res);
    return NULL;
  }
  return res;
}

static gboolean save_jpeg(const CnnfxImage *img, FILE *f, int quality, GError **error)
{
  struct jpeg_compress_struct ci;
  JpegErr e;
  JSAMPLE *volatile row = NULL;
  ci.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_err_exit;
  e.pub.output_message = jpeg_no_output;
  if (setjmp(e.jb)) {
    jpeg_destroy_compress(&ci);
    g_free(row);
    g_set_error(error, IMG_ERROR, 4, "cannot write JPEG: %s", e.msg);
    return FALSE;
  }
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = img->width;
  ci.image_height = img->height;
  ci.input_components = 3;
  ci.in_color_space = JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, quality, TRUE);
  jpeg_start_compress(&ci, TRUE);
  row = g_try_malloc((size_t)img->width * 3);
  if (!row) {
    g_strlcpy(e.msg, "out of memory", sizeof e.msg);
    longjmp(e.jb, 1);
  }
  int c = img->channels;
  while (ci.next_scanline < ci.image_height) {
    const float *s = img->px + (size_t)ci.next_scanline * img->width * c;
    for (int x = 0; x < img->width; x++)
      for (int k = 0; k < 3; k++) {
        float v = s[(size_t)x * c + k];
        if (c == 4) v = v * s[(size_t)x * c + 3] + (1 - s[(size_t)x * c + 3]); /* flatten on white */
        row[x * 3 + k] = (JSAMPLE)(CLAMP(v, 0.f, 1.f) * 255.f + 0.5f);
      }
    JSAMPROW rp = row;
    jpeg_write_scanlines(&ci, &rp, 1);
  }
  jpeg_finish_compress(&ci);
  jpeg_destroy_compress(&ci);
  g_free(row);
  return TRUE;
}

/* ---- entry points ---------------------------------------------------------------- */

CnnfxImage *cnnfx_image_load(const char *path, GError **error)
{
  FILE *f = g_fopen(path, "rb");
  if (!f) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s", path, g_strerror(errno));
    return NULL;
  }
  guint8 sig[8] = {0};
  size_t n = fread(sig, 1, 8, f);
  rewind(f);
  CnnfxImage *img = NULL;
  if (n == 0)
    g_set_error(error, IMG_ERROR, 5, "%s: empty file", path);
  else if (n == 8 && !png_sig_cmp(sig, 0, 8))
    img = load_png(f, path, error);
  else if (n >= 3 && sig[0] == 0xff && sig[1] == 0xd8 && sig[2] == 0xff)
    img = load_jpeg(f, path, error);
  else
    g_set_error(error, IMG_ERROR, 5, "%s: not a PNG or JPEG image", path);
  fclose(f);
  return img;
}

gboolean cnnfx_image_save(const CnnfxImage *img, const char *path, int depth, int jpeg_quality, gboolean overwrite,
                          GError **error)
{
  g_autofree char *lower = g_ascii_strdown(path, -1);
  gboolean jpeg = g_str_has_suffix(lower, ".jpg") || g_str_has_suffix(lower, ".jpeg");
  if (!jpeg && !g_str_has_suffix(lower, ".png")) {
    g_set_error(error, IMG_ERROR, 6, "%s: output must end in .png, .jpg or .jpeg", path);
    return FALSE;
  }
  if (!overwrite && g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST, "%s exists (use --overwrite)", path);
    return FALSE;
  }
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *base = g_path_get_basename(path);
  g_autofree char *tmpl = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
  int fd = g_mkstemp(tmpl);
  if (fd < 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot create a file in %s: %s", dir,
                g_strerror(errno));
    return FALSE;
  }
  /* mkstemp makes 0600; outputs get the usual 0666 less the umask, like any file a program writes */
  mode_t um = umask(0);
  umask(um);
  if (fchmod(fd, 0666 & ~um) != 0) g_debug("fchmod %s: %s", tmpl, g_strerror(errno));
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    g_unlink(tmpl);
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s", g_strerror(errno));
    return FALSE;
  }
  gboolean ok = jpeg ? save_jpeg(img, f, CLAMP(jpeg_quality, 1, 100), error)
                     : save_png(img, f, depth == 16 ? 16 : 8, error);
  if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s", path, g_strerror(errno));
    ok = FALSE;
  }
  if (fclose(f) != 0 && ok) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s", path, g_strerror(errno));
    ok = FALSE;
  }
  if (ok && !overwrite) {
    /* link() fails if the name appeared meanwhile: never clobber an existing file. */
    if (link(tmpl, path) != 0) {
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s", path, g_strerror(errno));
      ok = FALSE;
    }
    g_unlink(tmpl);
    return ok;
  }
  if (ok && g_rename(tmpl, path) != 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s", path, g_strerror(errno));
    ok = FALSE;
  }
  if (!ok) g_unlink(tmpl);
  return ok;
}
