/* ImageFolder data sets (batch/imagefolder.c): listing of classes and photos, the folder's
 * fingerprint, and the training augmentations crop + flip, cutout. */
#include "imagefolder.h"
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

enum { H = 7, W = 9 };

static void put(const char *root, const char *rel, const char *text)
{
  g_autofree char *p = g_build_filename(root, rel, NULL);
  g_autofree char *d = g_path_get_dirname(p);
  g_mkdir_with_parents(d, 0700);
  g_file_set_contents(p, text, -1, NULL);
}

/* "REL\tSIZE\tMTIME\n": the documented line of one photo in the fingerprint */
static void line(GString *s, const char *root, const char *rel)
{
  g_autofree char *p = g_build_filename(root, rel, NULL);
  GStatBuf st;
  if (g_stat(p, &st) != 0) return;
  g_string_append_printf(s, "./%s\t%" G_GINT64_FORMAT "\t%" G_GINT64_FORMAT "\n", rel, (gint64)st.st_size,
                         (gint64)st.st_mtime);
}

/* Class folders hold photos (any case of .jpg/.jpeg/.png, regular files or links to them);
 * hidden entries, other files, folders named like photos and dangling links are not photos; a
 * folder without photos is no class.  The fingerprint hashes each photo's path, size and mtime,
 * sorted by name, down to DIR/split/class/. */
static void test_listing(void)
{
  g_autofree char *root = g_dir_make_tmp("cnnfx-imagefolder-XXXXXX", NULL);
  CHECK(root != NULL, "temporary folder");
  if (!root) return;
  g_autofree char *tr = g_build_filename(root, "train", NULL);
  put(root, "train/cat/2.JPG", "bb");
  put(root, "train/cat/1.jpg", "a");
  put(root, "train/cat/.hidden.jpg", "x");
  put(root, "train/cat/notes.txt", "x");
  put(root, "train/cat/dir.png/inner.png", "x");
  put(root, "train/dog/x.jpeg", "ccc");
  put(root, "train/empty/readme", "x");
  put(root, "top.png", "dd");
  g_autofree char *dangling = g_build_filename(root, "train/dog/gone.jpg", NULL);
  g_autofree char *target = g_build_filename(root, "train/cat/1.jpg", NULL);
  g_autofree char *link = g_build_filename(root, "train/dog/link.png", NULL);
  CHECK(symlink("/nonexistent/cnnfx", dangling) == 0 && symlink(target, link) == 0, "symlinks");

  g_auto(GStrv) cls = cnnfx_imagefolder_classes(tr, NULL);
  g_autofree char *names = cls ? g_strjoinv(",", cls) : g_strdup("(error)");
  CHECK(!g_strcmp0(names, "cat,dog"), "classes: the folders with photos, sorted (got %s)", names);

  g_autoptr(GString) want = g_string_new(NULL);
  line(want, root, "top.png");
  line(want, root, "train/cat/1.jpg");
  line(want, root, "train/cat/2.JPG");
  line(want, root, "train/dog/link.png");
  line(want, root, "train/dog/x.jpeg");
  g_autofree char *want_sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, want->str, -1);
  g_autofree char *fp = cnnfx_imagefolder_fingerprint(root, NULL);
  CHECK(!g_strcmp0(fp, want_sum), "fingerprint: sha256 of the photos' path, size, mtime lines (got %s)", fp);

  g_autofree char *again = cnnfx_imagefolder_fingerprint(root, NULL);
  put(root, "train/empty/new.txt", "not a photo");
  g_autofree char *other = cnnfx_imagefolder_fingerprint(root, NULL);
  put(root, "train/dog/x.jpeg", "cccc");
  g_autofree char *grown = cnnfx_imagefolder_fingerprint(root, NULL);
  CHECK(!g_strcmp0(fp, again) && !g_strcmp0(fp, other) && g_strcmp0(fp, grown),
        "fingerprint: stable, blind to other files, changes with a photo's size");

  g_autoptr(GError) err = NULL;
  g_autofree char *missing = g_build_filename(root, "nope", NULL);
  g_autofree char *none = cnnfx_imagefolder_fingerprint(missing, &err);
  CHECK(none == NULL && err != NULL, "fingerprint of a missing folder: an error");

  const char *rm[] = {"train/cat/2.JPG", "train/cat/1.jpg", "train/cat/.hidden.jpg", "train/cat/notes.txt",
                      "train/cat/dir.png/inner.png", "train/cat/dir.png", "train/dog/x.jpeg", "train/dog/gone.jpg",
                      "train/dog/link.png", "train/empty/readme", "train/empty/new.txt", "train/cat", "train/dog",
                      "train/empty", "train", "top.png", NULL};
  for (int i = 0; rm[i]; i++) {
    g_autofree char *p = g_build_filename(root, rm[i], NULL);
    g_remove(p);
  }
  CHECK(g_rmdir(root) == 0, "temporary folder removed");
}

int main(void)
{
  test_listing();

  float img[3 * H * W], ref[3 * H * W];
  for (int i = 0; i < 3 * H * W; i++) img[i] = ref[i] = 1.0f + (float)i;

  /* cutout (train --cutout): exactly the square, in every channel */
  cnnfx_imageset_cutout(img, H, W, 2, 1, 3);
  int bad = 0, zeros = 0;
  for (int k = 0; k < 3; k++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int in = x >= 2 && x < 5 && y >= 1 && y < 4, j = (k * H + y) * W + x;
        zeros += img[j] == 0.0f;
        bad += in ? img[j] != 0.0f : img[j] != ref[j];
      }
  CHECK(bad == 0 && zeros == 27, "cutout blanks the 3x3 square only (%d wrong, %d zeros)", bad, zeros);

  /* clipped at the border: of a 4x4 square at (7, 5) only x 7..8, y 5..6 lie inside */
  memcpy(img, ref, sizeof img);
  cnnfx_imageset_cutout(img, H, W, 7, 5, 4);
  zeros = 0;
  for (int i = 0; i < 3 * H * W; i++) zeros += img[i] == 0.0f;
  CHECK(zeros == 12 && img[(0 * H + 6) * W + 8] == 0.0f && img[(2 * H + 5) * W + 7] == 0.0f &&
          img[(1 * H + 4) * W + 8] != 0.0f && img[(1 * H + 6) * W + 6] != 0.0f,
        "cutout clipped at the border (%d zeros)", zeros);

  /* wholly outside: nothing changes */
  memcpy(img, ref, sizeof img);
  cnnfx_imageset_cutout(img, H, W, -5, 0, 4);
  cnnfx_imageset_cutout(img, H, W, 0, H, 3);
  CHECK(!memcmp(img, ref, sizeof img), "cutout outside the image changes nothing");

  /* crop + flip: a shift by (1, 0) mirrored; the reflected border repeats column W-2 */
  CnnfxImageSet d = {0};
  d.n = 1;
  d.h = H;
  d.w = W;
  d.x = ref;
  float out[3 * H * W];
  cnnfx_imageset_crop_flip(&d, 0, 1, 0, TRUE, TRUE, out);
  bad = 0;
  for (int k = 0; k < 3; k++)
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int sx = W - 1 - x + 1;
        if (sx >= W) sx = 2 * W - 2 - sx;
        bad += out[(k * H + y) * W + x] != ref[(k * H + y) * W + sx];
      }
  CHECK(bad == 0, "crop_flip: mirrored, shifted, reflected border (%d wrong)", bad);

  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
