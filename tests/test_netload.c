/* batch/netload.c: preprocessing overrides (the text of --mean/--std/--scale/--bgr/--input-size/
 * --output-is-prob), their precedence over a sidecar MODEL.ini and the guess, Softmax outputs
 * recognised from the graph, and the one-line summary.  argv[1]: the source tree's weights/. */
#include "netload.h"
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static int passed, failed;
#define CHECK(cond, ...) do { if (cond) passed++; else { failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
  printf(__VA_ARGS__); printf("\n"); } } while (0)

static gboolean set(NetOverrides *ov, const char *k, const char *v)
{
  g_autoptr(GError) e = NULL;
  gboolean ok = cli_net_overrides_set(ov, k, v, &e);
  if (!ok && (!e || !e->message[0])) printf("FAIL: %s=%s refused without a message\n", k, v);
  return ok;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    printf("usage: %s WEIGHTS_DIR\n", argv[0]);
    return 2;
  }
  const char *wdir = argv[1];
  /* ---- parsing ---- */
  NetOverrides ov = {0};
  CHECK(set(&ov, "mean", "0.1,0.2,0.3") && ov.mean[0] == 0.1 && ov.mean[2] == 0.3 && (ov.set & NET_OV_MEAN),
        "mean: three values");
  CHECK(set(&ov, "std", "0.5") && ov.std[0] == 0.5 && ov.std[1] == 0.5 && ov.std[2] == 0.5, "std: one value for all");
  CHECK(set(&ov, "std", "0.2;0.3;0.4") && ov.std[1] == 0.3, "std: ';' separators");
  CHECK(!set(&ov, "std", "0,1,1"), "std 0 refused");
  CHECK(!set(&ov, "mean", "1,2"), "two means refused");
  CHECK(!set(&ov, "mean", "a,b,c"), "non-numbers refused");
  CHECK(!set(&ov, "mean", "1,2,3,4"), "four means refused");
  CHECK(set(&ov, "scale", "255") && ov.scale == 255.f && (ov.set & NET_OV_SCALE), "scale 255");
  CHECK(!set(&ov, "scale", "0") && !set(&ov, "scale", "x") && !set(&ov, "scale", ""), "bad scales refused");
  CHECK(set(&ov, "bgr", "yes") && ov.bgr && (ov.set & NET_OV_BGR), "bgr yes");
  CHECK(set(&ov, "bgr", "0") && !ov.bgr, "bgr 0");
  CHECK(!set(&ov, "bgr", "maybe"), "bgr maybe refused");
  CHECK(set(&ov, "output_is_prob", "true") && ov.output_is_prob && (ov.set & NET_OV_OUTPUT_IS_PROB),
        "output_is_prob (underscores) true");
  CHECK(set(&ov, "input-size", "224") && ov.input_h == 224 && ov.input_w == 224, "input-size N");
  CHECK(set(&ov, "input-size", "240,320") && ov.input_h == 240 && ov.input_w == 320, "input-size H,W");
  CHECK(set(&ov, "input-size", "0") && ov.input_h == 0 && ov.input_w == 0, "input-size 0 = any");
  CHECK(!set(&ov, "input-size", "-3") && !set(&ov, "input-size", "1,2,3") && !set(&ov, "input-size", "0,5"),
        "bad input sizes refused");
  CHECK(!set(&ov, "colour", "1"), "unknown key refused");

  /* ---- precedence: CLI over sidecar over guess, on a copy of the offline LeNet ---- */
  g_autofree char *dir = g_dir_make_tmp("cnnfx-netload-XXXXXX", NULL);
  g_autofree char *src = g_build_filename(wdir, "fashion_lenet.onnx", NULL);
  g_autofree char *mp = g_build_filename(dir, "m.onnx", NULL);
  g_autofree char *side = g_build_filename(dir, "m.ini", NULL);
  gchar *bytes = NULL;
  gsize len = 0;
  CHECK(g_file_get_contents(src, &bytes, &len, NULL) && g_file_set_contents(mp, bytes, (gssize)len, NULL),
        "model copied");
  g_free(bytes);
  {
    g_autoptr(GError) e = NULL;
    g_autofree char *sum = NULL;
    g_autoptr(CnnfxNet) n = cli_load_net(mp, NULL, "classify", NULL, &sum, &e);
    CHECK(n && n->pre.gray && n->pre.fixed_h == 28 && !n->output_is_prob, "guess: 1-channel model, 28x28");
    CHECK(sum && !strchr(sum, '\n') && strstr(sum, mp) && strstr(sum, "guessed") && strstr(sum, "m.ini"),
          "guess: one line naming the model, the guess and the sidecar to write (%s)", sum ? sum : "-");
  }
  CHECK(g_file_set_contents(side, "[model]\nscale=-1\nmean=-1\nstd=1\ninput_size=32\n", -1, NULL), "sidecar written");
  {
    g_autoptr(GError) e = NULL;
    g_autofree char *sum = NULL;
    g_autoptr(CnnfxNet) n = cli_load_net(mp, NULL, "classify", NULL, &sum, &e);
    CHECK(n && n->pre.scale == -1.f && n->pre.mean[0] == -1.f && n->pre.fixed_h == 32, "sidecar applied");
    CHECK(sum && strstr(sum, "m.ini") && !strstr(sum, "guessed"), "summary names the sidecar (%s)", sum ? sum : "-");
  }
  {
    NetOverrides o = {0};
    set(&o, "mean", "0.5");
    set(&o, "input-size", "40,48");
    set(&o, "output-is-prob", "yes");
    g_autoptr(GError) e = NULL;
    g_autofree char *sum = NULL;
    g_autoptr(CnnfxNet) n = cli_load_net(mp, NULL, "classify", &o, &sum, &e);
    CHECK(n && n->pre.mean[1] == 0.5f && n->pre.scale == -1.f && n->pre.fixed_h == 40 && n->pre.fixed_w == 48 &&
              n->output_is_prob,
          "command line over the sidecar (the rest of the sidecar kept)");
    CHECK(sum && strstr(sum, "command-line") && strstr(sum, "input 48x40") && strstr(sum, "probabilities"),
          "summary says so (%s)", sum ? sum : "-");
  }
  g_unlink(side);
  g_unlink(mp);
  g_rmdir(dir);
  printf("%d passed, %d failed\n", passed, failed);
  return failed || !passed ? 1 : 0;
}
