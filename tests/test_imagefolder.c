/* ImageFolder training augmentations (batch/imagefolder.c): crop + flip, cutout. */
#include "imagefolder.h"
#include <stdio.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

enum { H = 7, W = 9 };

int main(void)
{
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
