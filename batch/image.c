/* PNG and JPEG reading/writing for the front-ends. */
#include "image.h"
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define IMG_ERROR g_quark_from_static_string("cnnfx-image-error")
#define MAX_PIXELS ((gint64)1 << 30) /* 1 Gpx: hard ceiling of cnnfx_image_new, below overflow */
#define DEFAULT_MAX_BYTES ((gint64)2 << 30)
#define CNNFX_TAG "cnnfx" /* PNG tEXt Software / JPEG COM: marks files cnnfx wrote */

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
  g_free(img->exif);
  g_free(img);
}

void cnnfx_image_copy_meta(CnnfxImage *dst, const CnnfxImage *src)
{
  dst->gray = src->gray;
  g_free(dst->exif);
  dst->exif = src->exif ? g_memdup2(src->exif, src->exif_len) : NULL;
  dst->exif_len = src->exif ? src->exif_len : 0;
}

static gint64 opt_max_pixels(const CnnfxImageLoadOptions *o)
{
  return o && o->max_pixels > 0 ? o->max_pixels : CNNFX_IMAGE_DEFAULT_MAX_PIXELS;
}

static gint64 opt_max_bytes(const CnnfxImageLoadOptions *o)
{
  return o && o->max_bytes > 0 ? o->max_bytes : DEFAULT_MAX_BYTES;
}

/* Declared size against the limits, before any pixel buffer exists.  extra: decoder state. */
static gboolean check_size(const char *path, gint64 w, gint64 h, gint64 dw, gint64 dh, int ch, gint64 extra,
                           const CnnfxImageLoadOptions *o, char *msg, size_t msglen)
{
  gint64 px = w * h, lim = opt_max_pixels(o);
  if (w <= 0 || h <= 0) {
    g_snprintf(msg, msglen, "invalid image size %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT, w, h);
    return FALSE;
  }
  if (px > lim) {
    g_snprintf(msg, msglen,
               "image declares %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " = %.1f Mpx, above the limit of %.1f Mpx "
               "(possible decompression bomb; --max-pixels raises the limit)",
               w, h, px / 1e6, lim / 1e6);
    return FALSE;
  }
  gint64 bytes = dw * dh * ch * (gint64)sizeof(float) + extra;
  if (bytes > opt_max_bytes(o)) {
    g_snprintf(msg, msglen,
               "decoding %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " needs %" G_GINT64_FORMAT " MiB, above the memory "
               "limit of %" G_GINT64_FORMAT " MiB (--max-memory)",
               w, h, bytes >> 20, opt_max_bytes(o) >> 20);
    return FALSE;
  }
  (void)path;
  return TRUE;
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

/* A copy of a TIFF/EXIF block with the orientation tag set to 1 (the pixels are already
 * rotated when they reach an output). */
static guint8 *exif_copy_upright(const guint8 *d, size_t n)
{
  if (n < 8 || n > 65000) return NULL;
  gboolean le = d[0] == 'I' && d[1] == 'I';
  if (!le && !(d[0] == 'M' && d[1] == 'M')) return NULL;
  guint8 *c = g_memdup2(d, n);
  guint32 ifd = le ? ((guint32)d[4] | (guint32)d[5] << 8 | (guint32)d[6] << 16 | (guint32)d[7] << 24)
                   : ((guint32)d[4] << 24 | (guint32)d[5] << 16 | (guint32)d[6] << 8 | (guint32)d[7]);
  if (ifd < 8 || ifd > n - 2) return c;
  guint cnt = le ? (guint)(d[ifd] | d[ifd + 1] << 8) : (guint)(d[ifd] << 8 | d[ifd + 1]);
  for (guint i = 0; i < cnt; i++) {
    size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
    if (e + 12 > n) break;
    guint tag = le ? (guint)(d[e] | d[e + 1] << 8) : (guint)(d[e] << 8 | d[e + 1]);
    if (tag == 0x0112) {
      c[e + 8] = le ? 1 : 0;
      c[e + 9] = le ? 0 : 1;
    }
  }
  return c;
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

/* libpng allocates an ancillary chunk (eXIf, tEXt...) at its declared length before reading
 * it, whatever png_set_chunk_malloc_max says: a 60-byte file declaring a 1 GB eXIf costs 1 GB.
 * So the reader follows the chunk structure itself and refuses a non-IDAT chunk above 8 MiB
 * (an eXIf above 1 MiB) before libpng sees its header. */
typedef struct {
  FILE *f;
  int phase;      /* 0 signature, 1 chunk header, 2 chunk body + CRC */
  guint64 left;   /* bytes left in the current phase */
  guint8 hdr[8];
} PngReader;

static void png_read_cb(png_structp png, png_bytep data, size_t n)
{
  PngReader *r = png_get_io_ptr(png);
  if (fread(data, 1, n, r->f) != n) png_error(png, "unexpected end of file");
  for (size_t i = 0; i < n;) {
    size_t take = (size_t)MIN((guint64)(n - i), r->left);
    if (r->phase == 1) memcpy(r->hdr + (8 - r->left), data + i, take);
    i += take;
    r->left -= take;
    if (r->left) continue;
    if (r->phase == 1) {
      guint32 len = (guint32)r->hdr[0] << 24 | (guint32)r->hdr[1] << 16 | (guint32)r->hdr[2] << 8 | r->hdr[3];
      gboolean idat = !memcmp(r->hdr + 4, "IDAT", 4), exif = !memcmp(r->hdr + 4, "eXIf", 4);
      if (len > 0x7fffffffu || (!idat && len > (exif ? 1u << 20 : 8u << 20))) png_error(png, "chunk data is too large");
      r->phase = 2;
      r->left = (guint64)len + 4;
    } else {
      r->phase = 1;
      r->left = 8;
    }
  }
}

static CnnfxImage *load_png(FILE *f, const char *path, const CnnfxImageLoadOptions *o, GError **error)
{
  PngErr e = {.msg = ""};
  PngReader rd = {.f = f, .phase = 0, .left = 8};
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
  /* ancillary chunks (iCCP, zTXt, eXIf...) are decompressed into memory: bound them, and
   * their number, so a zlib bomb in a text chunk cannot grow without limit */
  png_set_chunk_malloc_max(png, 8 << 20);
  png_set_chunk_cache_max(png, 1000);
  /* text, colour-profile and palette-suggestion chunks are never used here: skip them unread
   * (a forged length in one of them would otherwise be allocated before it is read) */
  static const png_byte skip[] = {'t', 'E', 'X', 't', 0, 'z', 'T', 'X', 't', 0, 'i', 'T', 'X', 't', 0,
                                  'i', 'C', 'C', 'P', 0, 's', 'P', 'L', 'T', 0, 'h', 'I', 'S', 'T', 0};
  png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
  png_set_read_fn(png, &rd, png_read_cb);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int ct = png_get_color_type(png, info), bd = png_get_bit_depth(png, info);
  int il = png_get_interlace_type(png, info);
  gboolean gray = ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_GRAY_ALPHA;
  int out_ch = (ct & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS) ? 4 : 3;
  /* interlaced files are read whole (8/16-bit rows) before conversion */
  gint64 extra = il != PNG_INTERLACE_NONE ? (gint64)w * h * out_ch * (bd == 16 ? 2 : 1) : 0;
  if (!check_size(path, w, h, w, h, out_ch, extra, o, e.msg, sizeof e.msg)) longjmp(e.jb, 1);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (gray) png_set_gray_to_rgb(png);
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
  img->gray = gray;
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
  png_read_end(png, info);
  int orient = 1;
#ifdef PNG_eXIf_SUPPORTED
  png_bytep exif = NULL;
  png_uint_32 exif_len = 0;
  if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif) {
    orient = exif_orientation(exif, exif_len);
    img->exif = exif_copy_upright(exif, exif_len);
    img->exif_len = img->exif ? exif_len : 0;
  }
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

static float gray_of(const float *s)
{
  return (s[0] + s[1] + s[2]) * (1.0f / 3.0f);
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
  int oc = img->gray ? c - 2 : c; /* grey: 1 or 2 (grey + alpha) samples per pixel */
  int ct = img->gray ? (c == 4 ? PNG_COLOR_TYPE_GRAY_ALPHA : PNG_COLOR_TYPE_GRAY)
                     : (c == 4 ? PNG_COLOR_TYPE_RGB_ALPHA : PNG_COLOR_TYPE_RGB);
  png_init_io(png, f);
  png_set_IHDR(png, info, w, h, depth, ct, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, 6);
  png_text txt = {.compression = PNG_TEXT_COMPRESSION_NONE, .key = (char *)"Software", .text = (char *)CNNFX_TAG};
  png_set_text(png, info, &txt, 1);
#ifdef PNG_eXIf_SUPPORTED
  if (img->exif && img->exif_len) png_set_eXIf_1(png, info, (png_uint_32)img->exif_len, img->exif);
#endif
  png_write_info(png, info);
  if (depth == 16) png_set_swap(png);
  row = g_try_malloc((size_t)w * oc * (depth / 8));
  if (!row) png_error(png, "out of memory");
  float *vals = g_try_new(float, (size_t)w * oc);
  if (!vals) png_error(png, "out of memory");
  for (int y = 0; y < h; y++) {
    const float *s = img->px + (size_t)y * w * c;
    if (img->gray)
      for (int x = 0; x < w; x++) {
        vals[(size_t)x * oc] = gray_of(s + (size_t)x * c);
        if (c == 4) vals[(size_t)x * oc + 1] = s[(size_t)x * c + 3];
      }
    else
      memcpy(vals, s, sizeof(float) * w * c);
    if (depth == 16) {
      guint16 *d = (guint16 *)row;
      for (size_t i = 0; i < (size_t)w * oc; i++) d[i] = (guint16)(CLAMP(vals[i], 0.f, 1.f) * 65535.f + 0.5f);
    } else {
      for (size_t i = 0; i < (size_t)w * oc; i++) row[i] = (guint8)(CLAMP(vals[i], 0.f, 1.f) * 255.f + 0.5f);
    }
    png_write_row(png, row);
  }
  g_free(vals);
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
  j_decompress_ptr d;    /* decoding: where the data ran out */
  int eof_row;           /* output row being decoded when the file ended, -1 if it did not */
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

/* Warnings: a file that ends early (libjpeg pads it with grey) is an error, not a result;
 * load_jpeg judges where it ended (a missing end marker after the last rows is harmless). */
static void jpeg_emit(j_common_ptr c, int level)
{
  JpegErr *e = (JpegErr *)c->err;
  if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF && e->eof_row < 0)
    e->eof_row = e->d ? (int)e->d->output_scanline : 0;
}

int cnnfx_image_jpeg_denom(gint64 width, gint64 height, int min_side)
{
  int d = 8;
  while (d > 1 && (width + d - 1) / d < min_side) d /= 2;
  while (d > 1 && (height + d - 1) / d < min_side) d /= 2;
  return d;
}

static CnnfxImage *load_jpeg(FILE *f, const char *path, const CnnfxImageLoadOptions *o, GError **error)
{
  struct jpeg_decompress_struct ci;
  JpegErr e;
  e.d = &ci;
  e.eof_row = -1;
  CnnfxImage *volatile img = NULL;
  JSAMPLE *volatile row = NULL;
  ci.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_err_exit;
  e.pub.output_message = jpeg_no_output;
  e.pub.emit_message = jpeg_emit;
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
  gint64 budget = opt_max_bytes(o);
  /* libjpeg's own allocations (progressive coefficient buffers above all) stop at the budget:
   * without backing store this is an error, not a 12 GB allocation */
  ci.mem->max_memory_to_use = (long)MIN(budget, (gint64)G_MAXLONG);
  ci.out_color_space = JCS_RGB;
  gboolean gray = ci.jpeg_color_space == JCS_GRAYSCALE;
  if (o && o->min_side > 0) {
    ci.scale_num = 1;
    ci.scale_denom = (unsigned)cnnfx_image_jpeg_denom(ci.image_width, ci.image_height, o->min_side);
  }
  jpeg_calc_output_dimensions(&ci);
  /* a progressive file keeps every DCT coefficient (2 bytes per sample per component) */
  gint64 coef = jpeg_has_multiple_scans(&ci) || ci.progressive_mode
                  ? (gint64)ci.image_width * ci.image_height * ci.num_components * 2 : 0;
  if (!check_size(path, ci.image_width, ci.image_height, ci.output_width, ci.output_height, 3, coef, o, e.msg,
                  sizeof e.msg))
    longjmp(e.jb, 1);
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
  img->gray = gray;
  img->scale_denom = (int)ci.scale_denom / (int)MAX(1u, ci.scale_num);
  img->jpeg = TRUE;
  row = g_try_malloc((size_t)ci.output_width * 3);
  if (!row) {
    g_strlcpy(e.msg, "out of memory", sizeof e.msg);
    longjmp(e.jb, 1);
  }
  while (ci.output_scanline < ci.output_height) {
    JSAMPROW rp = row;
    size_t y = ci.output_scanline;
    if (jpeg_read_scanlines(&ci, &rp, 1) != 1) {
      g_strlcpy(e.msg, "no more image data", sizeof e.msg);
      longjmp(e.jb, 1);
    }
    float *dst = img->px + y * ci.output_width * 3;
    for (size_t i = 0; i < (size_t)ci.output_width * 3; i++) dst[i] = row[i] / 255.0f;
  }
  /* the entropy decoder reads ahead: the end of data may be met in the last MCU rows of a file
   * that only lacks its end marker; earlier, rows were made up */
  int tol = 2 * MAX(1, ci.max_v_samp_factor) * DCTSIZE;
  if (e.eof_row >= 0 && e.eof_row + tol < (int)ci.output_height) {
    g_snprintf(e.msg, sizeof e.msg, "truncated file: the image data ends at row %d of %u", e.eof_row,
               ci.output_height);
    longjmp(e.jb, 1);
  }
  int orient = 1;
  for (jpeg_saved_marker_ptr mk = ci.marker_list; mk; mk = mk->next)
    if (mk->marker == JPEG_APP0 + 1 && mk->data_length > 6 && !memcmp(mk->data, "Exif\0\0", 6) && !img->exif) {
      orient = exif_orientation(mk->data + 6, mk->data_length - 6);
      img->exif = exif_copy_upright(mk->data + 6, mk->data_length - 6);
      img->exif_len = img->exif ? mk->data_length - 6 : 0;
    }
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
  JpegErr e = {.d = NULL, .eof_row = -1};
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
  int oc = img->gray ? 1 : 3;
  jpeg_create_compress(&ci);
  jpeg_stdio_dest(&ci, f);
  ci.image_width = img->width;
  ci.image_height = img->height;
  ci.input_components = oc;
  ci.in_color_space = img->gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&ci);
  jpeg_set_quality(&ci, quality, TRUE);
  if (img->exif) ci.write_JFIF_header = FALSE; /* Exif files carry APP1 instead of APP0 */
  jpeg_start_compress(&ci, TRUE);
  if (img->exif && img->exif_len + 6 <= 65533) {
    guint8 *m = g_malloc(img->exif_len + 6);
    memcpy(m, "Exif\0\0", 6);
    memcpy(m + 6, img->exif, img->exif_len);
    jpeg_write_marker(&ci, JPEG_APP0 + 1, m, (unsigned)(img->exif_len + 6));
    g_free(m);
  }
  jpeg_write_marker(&ci, JPEG_COM, (const JOCTET *)CNNFX_TAG, (unsigned)strlen(CNNFX_TAG));
  row = g_try_malloc((size_t)img->width * 3);
  if (!row) {
    g_strlcpy(e.msg, "out of memory", sizeof e.msg);
    longjmp(e.jb, 1);
  }
  int c = img->channels;
  while (ci.next_scanline < ci.image_height) {
    const float *s = img->px + (size_t)ci.next_scanline * img->width * c;
    for (int x = 0; x < img->width; x++) {
      float v3[3];
      for (int k = 0; k < 3; k++) {
        float v = s[(size_t)x * c + k];
        if (c == 4) v = v * s[(size_t)x * c + 3] + (1 - s[(size_t)x * c + 3]); /* flatten on white */
        v3[k] = v;
      }
      if (img->gray)
        row[x] = (JSAMPLE)(CLAMP(gray_of(v3), 0.f, 1.f) * 255.f + 0.5f);
      else
        for (int k = 0; k < 3; k++) row[x * 3 + k] = (JSAMPLE)(CLAMP(v3[k], 0.f, 1.f) * 255.f + 0.5f);
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

CnnfxImage *cnnfx_image_load_stream(FILE *f, const char *path, const CnnfxImageLoadOptions *o, GError **error)
{
  guint8 sig[8] = {0};
  size_t n = fread(sig, 1, 8, f);
  rewind(f);
  CnnfxImage *img = NULL;
  if (n == 0)
    g_set_error(error, IMG_ERROR, 5, "%s: empty file", path);
  else if (n == 8 && !png_sig_cmp(sig, 0, 8))
    img = load_png(f, path, o, error);
  else if (n >= 3 && sig[0] == 0xff && sig[1] == 0xd8 && sig[2] == 0xff)
    img = load_jpeg(f, path, o, error);
  else
    g_set_error(error, IMG_ERROR, 5, "%s: not a PNG or JPEG image", path);
  if (img && !img->scale_denom) img->scale_denom = 1;
  return img;
}

CnnfxImage *cnnfx_image_load_with(const char *path, const CnnfxImageLoadOptions *o, GError **error)
{
  FILE *f = g_fopen(path, "rb");
  if (!f) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
    return NULL;
  }
  CnnfxImage *img = cnnfx_image_load_stream(f, path, o, error);
  fclose(f);
  return img;
}

CnnfxImage *cnnfx_image_load(const char *path, GError **error)
{
  return cnnfx_image_load_with(path, NULL, error);
}

gboolean cnnfx_is_temp_name_of(const char *name, const char *final)
{
  size_t nf = strlen(final), nn = strlen(name);
  if (nn != nf + 8 || name[0] != '.' || strncmp(name + 1, final, nf) != 0 || name[nf + 1] != '.') return FALSE;
  for (size_t i = nf + 2; i < nn; i++)
    if (!g_ascii_isalnum(name[i])) return FALSE;
  return TRUE;
}

/* A new temporary ".NAME.XXXXXX" next to path, with the usual permissions; open for writing. */
static FILE *open_temp(const char *path, char **tmp_path, GError **error)
{
  g_autofree char *dir = g_path_get_dirname(path);
  g_autofree char *base = g_path_get_basename(path);
  char *tmpl = g_strdup_printf("%s/.%s.XXXXXX", dir, base);
  int fd = g_mkstemp(tmpl);
  if (fd < 0) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "cannot create a file in %s: %s", dir,
                g_strerror(e));
    g_free(tmpl);
    return NULL;
  }
  /* mkstemp makes 0600; outputs get the usual 0666 less the umask, like any file a program writes */
  mode_t um = umask(0);
  umask(um);
  if (fchmod(fd, 0666 & ~um) != 0) g_debug("fchmod %s: %s", tmpl, g_strerror(errno));
  FILE *f = fdopen(fd, "wb");
  if (!f) {
    int e = errno;
    close(fd);
    g_unlink(tmpl);
    g_free(tmpl);
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s", g_strerror(e));
    return NULL;
  }
  *tmp_path = tmpl;
  return f;
}

/* Flush, fsync and close a temporary file; on failure remove it. */
static gboolean close_temp(FILE *f, char **tmp_path, gboolean ok, const char *path, GError **error)
{
  if (ok && (fflush(f) != 0 || fsync(fileno(f)) != 0)) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
    ok = FALSE;
  }
  if (fclose(f) != 0 && ok) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
    ok = FALSE;
  }
  if (!ok) {
    g_unlink(*tmp_path);
    g_clear_pointer(tmp_path, g_free);
  }
  return ok;
}

gboolean cnnfx_write_temp(const char *path, const void *data, gsize len, char **tmp_path, GError **error)
{
  FILE *f = open_temp(path, tmp_path, error);
  if (!f) return FALSE;
  gboolean ok = fwrite(data, 1, len, f) == len;
  if (!ok) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
  }
  return close_temp(f, tmp_path, ok, path, error);
}

gboolean cnnfx_image_save_temp(const CnnfxImage *img, const char *path, int depth, int jpeg_quality,
                               char **tmp_path, GError **error)
{
  g_autofree char *lower = g_ascii_strdown(path, -1);
  gboolean jpeg = g_str_has_suffix(lower, ".jpg") || g_str_has_suffix(lower, ".jpeg");
  if (!jpeg && !g_str_has_suffix(lower, ".png")) {
    g_set_error(error, IMG_ERROR, 6, "%s: output must end in .png, .jpg or .jpeg", path);
    return FALSE;
  }
  FILE *f = open_temp(path, tmp_path, error);
  if (!f) return FALSE;
  gboolean ok = jpeg ? save_jpeg(img, f, CLAMP(jpeg_quality, 1, 100), error)
                     : save_png(img, f, depth == 16 ? 16 : 8, error);
  return close_temp(f, tmp_path, ok, path, error);
}

gboolean cnnfx_image_save(const CnnfxImage *img, const char *path, int depth, int jpeg_quality, gboolean overwrite,
                          GError **error)
{
  if (!overwrite && g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST, "%s exists (use --overwrite)", path);
    return FALSE;
  }
  g_autofree char *tmpl = NULL;
  if (!cnnfx_image_save_temp(img, path, depth, jpeg_quality, &tmpl, error)) return FALSE;
  gboolean ok = TRUE;
  if (!overwrite) {
    /* link() fails if the name appeared meanwhile: never clobber an existing file. */
    if (link(tmpl, path) != 0) {
      int e = errno;
      g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
      ok = FALSE;
    }
    g_unlink(tmpl);
    return ok;
  }
  if (g_rename(tmpl, path) != 0) {
    int e = errno;
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(e), "%s: %s", path, g_strerror(e));
    ok = FALSE;
  }
  if (!ok) g_unlink(tmpl);
  return ok;
}

/* ---- provenance ------------------------------------------------------------------ */

gboolean cnnfx_image_sniff(const char *path)
{
  guint8 sig[8] = {0};
  FILE *f = g_fopen(path, "rb");
  if (!f) return FALSE;
  size_t n = fread(sig, 1, 8, f);
  fclose(f);
  return (n == 8 && !png_sig_cmp(sig, 0, 8)) || (n >= 3 && sig[0] == 0xff && sig[1] == 0xd8 && sig[2] == 0xff);
}

gboolean cnnfx_image_file_is_ours(const char *path)
{
  guint8 buf[65536];
  FILE *f = g_fopen(path, "rb");
  if (!f) return FALSE;
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  static const char tag[] = "Software\0" CNNFX_TAG;
  size_t tl = sizeof tag - 1;
  if (n >= 8 && !png_sig_cmp(buf, 0, 8)) {
    for (size_t p = 8; p + 8 <= n;) {
      guint32 len = (guint32)buf[p] << 24 | (guint32)buf[p + 1] << 16 | (guint32)buf[p + 2] << 8 | buf[p + 3];
      if (!memcmp(buf + p + 4, "IDAT", 4) || len > n) break;
      if (!memcmp(buf + p + 4, "tEXt", 4) && len == tl && p + 8 + len <= n && !memcmp(buf + p + 8, tag, tl))
        return TRUE;
      p += 12 + (size_t)len;
    }
    return FALSE;
  }
  if (n >= 4 && buf[0] == 0xff && buf[1] == 0xd8) {
    size_t tg = strlen(CNNFX_TAG);
    for (size_t p = 2; p + 4 <= n && buf[p] == 0xff;) {
      int m = buf[p + 1];
      size_t len = (size_t)buf[p + 2] << 8 | buf[p + 3];
      if (m == 0xda || len < 2) break;
      if (m == 0xfe && len - 2 == tg && p + 4 + tg <= n && !memcmp(buf + p + 4, CNNFX_TAG, tg)) return TRUE;
      p += 2 + len;
    }
  }
  return FALSE;
}
