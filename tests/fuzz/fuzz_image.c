/* Fuzz harness for the image decoders (batch/image.c: PNG, JPEG, EXIF orientation, size limits).
 *
 * Built two ways from this one file, like fuzz_onnx.c:
 *   - with -DCNNFX_LIBFUZZER and -fsanitize=fuzzer: libFuzzer supplies main();
 *   - without: `fuzz_image_replay [-v] FILE|DIR...` runs every file through the same function,
 *     and `fuzz_image_replay --seeds DIR` writes a small seed corpus (PNG 8/16-bit grey/RGB(A),
 *     interlaced, with eXIf; baseline, progressive and grey JPEG with EXIF; a truncated JPEG;
 *     headers declaring 65500x65500 and 30000x30000).
 * Per input: decode from memory (fmemopen) at full size and with DCT scaling, under a small
 * pixel limit and memory budget; a decoded image is saved again as PNG and JPEG (to /dev/null
 * through a temporary file would touch the disk: the save path is exercised by the unit tests).
 * Errors are expected; crashes, sanitizer reports, hangs and allocations beyond the budget
 * (libFuzzer -malloc_limit_mb) are findings. */
#include "image.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const uint8_t *data, size_t size, int min_side)
{
  if (!size) return;
  FILE *f = fmemopen((void *)data, size, "rb");
  if (!f) return;
  CnnfxImageLoadOptions o = {.max_pixels = 4 << 20, .max_bytes = 96 << 20, .min_side = min_side};
  GError *e = NULL;
  CnnfxImage *img = cnnfx_image_load_stream(f, "fuzz", &o, &e);
  fclose(f);
  if (!img) {
    if (!e || !e->message[0]) abort(); /* every failure says why */
    g_error_free(e);
    return;
  }
  if (img->width <= 0 || img->height <= 0 || (img->channels != 3 && img->channels != 4)) abort();
  float s = 0; /* touch every sample: a short buffer shows up under ASan */
  for (size_t i = 0; i < (size_t)img->width * img->height * img->channels; i++) s += img->px[i];
  if (s < 0 || (img->exif && !img->exif_len)) abort();
  cnnfx_image_free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  decode(data, size, 0);
  decode(data, size, 8);
  return 0;
}

#ifndef CNNFX_LIBFUZZER

static int write_seeds(const char *dir)
{
  if (g_mkdir_with_parents(dir, 0755) != 0) return 2;
  int n = 0;
  struct {
    int w, h, c, depth, gray;
    const char *name;
  } kinds[] = {{9, 7, 3, 8, 0, "rgb8.png"}, {5, 11, 4, 16, 0, "rgba16.png"}, {12, 4, 3, 8, 1, "gray8.png"},
               {6, 6, 4, 16, 1, "graya16.png"}, {17, 9, 3, 8, 0, "rgb.jpg"}, {16, 16, 3, 8, 1, "gray.jpg"}};
  for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
    CnnfxImage *img = cnnfx_image_new(kinds[k].w, kinds[k].h, kinds[k].c, kinds[k].depth, NULL);
    if (!img) return 1;
    for (size_t i = 0; i < (size_t)img->width * img->height * img->channels; i++) img->px[i] = (float)((i * 37) % 101) / 100.f;
    img->gray = kinds[k].gray;
    static const guint8 exif[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0};
    img->exif = g_memdup2(exif, sizeof exif);
    img->exif_len = sizeof exif;
    char *p = g_build_filename(dir, kinds[k].name, NULL);
    if (cnnfx_image_save(img, p, kinds[k].depth, 90, TRUE, NULL)) n++;
    /* a truncated copy */
    gchar *buf = NULL;
    gsize len = 0;
    if (g_file_get_contents(p, &buf, &len, NULL) && len > 40) {
      char *q = g_strconcat(p, ".trunc", NULL);
      g_file_set_contents(q, buf, (gssize)(len * 2 / 3), NULL);
      g_free(q);
      n++;
    }
    g_free(buf);
    g_free(p);
    cnnfx_image_free(img);
  }
  /* headers declaring bombs: PNG IHDR 65500x65500 grey, JPEG SOF2 30000x30000 */
  static const guint8 png_bomb[] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10, 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                                    0, 0, 0xff, 0xdc, 0, 0, 0xff, 0xdc, 8, 0, 0, 0, 0, 0x2d, 0x6b, 0x0f, 0x1a};
  static const guint8 jpg_bomb[] = {0xff, 0xd8, 0xff, 0xc2, 0, 11, 8, 0x75, 0x30, 0x75, 0x30, 1, 1, 0x11, 0,
                                    0xff, 0xd9};
  char *p = g_build_filename(dir, "bomb.png", NULL);
  if (g_file_set_contents(p, (const char *)png_bomb, sizeof png_bomb, NULL)) n++;
  g_free(p);
  p = g_build_filename(dir, "bomb.jpg", NULL);
  if (g_file_set_contents(p, (const char *)jpg_bomb, sizeof jpg_bomb, NULL)) n++;
  g_free(p);
  printf("fuzz_image: %d seeds in %s\n", n, dir);
  return 0;
}

static unsigned n_files, n_failed;

static void replay_path(const char *path, gboolean verbose, int depth)
{
  if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
    if (depth > 8) return;
    GDir *d = g_dir_open(path, 0, NULL);
    if (!d) {
      n_failed++;
      return;
    }
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    const char *e;
    while ((e = g_dir_read_name(d))) g_ptr_array_add(names, g_build_filename(path, e, NULL));
    g_dir_close(d);
    for (guint i = 0; i < names->len; i++)
      if (!g_file_test(names->pdata[i], G_FILE_TEST_IS_SYMLINK)) replay_path(names->pdata[i], verbose, depth + 1);
    g_ptr_array_free(names, TRUE);
    return;
  }
  gchar *buf = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &buf, &len, NULL)) {
    fprintf(stderr, "fuzz_image_replay: cannot read %s\n", path);
    n_failed++;
    return;
  }
  if (verbose) {
    fprintf(stderr, "replay %s (%zu bytes)\n", path, (size_t)len);
    fflush(stderr);
  }
  uint8_t *copy = g_malloc(len ? len : 1); /* exact size: ASan sees reads past the end */
  if (len) memcpy(copy, buf, len);
  g_free(buf);
  LLVMFuzzerTestOneInput(copy, len);
  g_free(copy);
  n_files++;
}

int main(int argc, char **argv)
{
  if (argc == 3 && !strcmp(argv[1], "--seeds")) return write_seeds(argv[2]);
  int first = 1;
  gboolean verbose = FALSE;
  if (argc > 1 && !strcmp(argv[1], "-v")) {
    verbose = TRUE;
    first = 2;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: %s [-v] FILE|DIR... | --seeds DIR\n", argv[0]);
    return 2;
  }
  for (int i = first; i < argc; i++) replay_path(argv[i], verbose, 0);
  printf("fuzz_image_replay: %u files replayed\n", n_files);
  return n_failed ? 1 : 0;
}

#endif
