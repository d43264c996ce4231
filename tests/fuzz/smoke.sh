#!/bin/bash
# Fuzz smoke test for CI.
#
#   tests/fuzz/smoke.sh BUILD_DIR [--replay-only] [--image-only] [--time SECONDS]
#
# Two targets: fuzz_onnx (the ONNX loader) and fuzz_image (the PNG/JPEG decoders, seeds
# written by `fuzz_image_replay --seeds DIR`); --image-only runs only the latter.
# 1. generates the seed corpus (tests/fuzz/make_corpus.py, /usr/bin/python3 + onnx) in a temp dir;
# 2. unless --replay-only: if clang with libFuzzer works, configures BUILD_DIR-libfuzzer
#    (CC=clang, -Dfuzz=true; override with FUZZ_BUILD_DIR) and runs fuzz_onnx for SECONDS
#    (default 60) over the corpus with -rss_limit_mb=2048 -malloc_limit_mb=1024;
# 3. always: runs BUILD_DIR/tests/fuzz/fuzz_onnx_replay over the corpus (and over anything the
#    fuzzer added to it).
# Crashing inputs are kept in BUILD_DIR/fuzz-artifacts/.  Last line: "fuzz smoke: PASS ..." or
# "fuzz smoke: FAIL ..."; exit status 1 on any crash, 2 on usage/setup errors.
set -u

usage() { echo "usage: $0 BUILD_DIR [--replay-only] [--image-only] [--time SECONDS]" >&2; exit 2; }
[ $# -ge 1 ] || usage
BUILD=$(cd "$1" 2>/dev/null && pwd) || { echo "fuzz smoke: FAIL (no build dir '$1')"; exit 2; }
shift
REPLAY_ONLY=0
IMAGE_ONLY=0
FUZZ_TIME=60
while [ $# -gt 0 ]; do
  case "$1" in
    --replay-only) REPLAY_ONLY=1 ;;
    --image-only) IMAGE_ONLY=1 ;;
    --time) shift; FUZZ_TIME=${1:-60} ;;
    *) usage ;;
  esac
  shift
done

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cnnfx-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ART="$BUILD/fuzz-artifacts"
mkdir -p "$ART"

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# Hostile sizes must come back as NULL from malloc (the code handles that), not abort ASan.
case "${ASAN_OPTIONS:-}" in
  *allocator_may_return_null*) ;;
  *) export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1" ;;
esac
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

failures=()
notes=()

# ---- image decoders ------------------------------------------------------------------------
IREPLAY="$BUILD/tests/fuzz/fuzz_image_replay"
[ -x "$IREPLAY" ] || ninja -C "$BUILD" tests/fuzz/fuzz_image_replay >/dev/null 2>&1
mkdir -p "$WORK/img-corpus"
if [ ! -x "$IREPLAY" ]; then
  failures+=("$IREPLAY not built")
elif ! "$IREPLAY" --seeds "$WORK/img-seeds"; then
  failures+=("fuzz_image_replay --seeds failed")
else
  "$IREPLAY" "$WORK/img-seeds" "$WORK/img-corpus" >"$WORK/img-replay.log" 2>&1
  rc=$?
  tail -n 3 "$WORK/img-replay.log"
  if [ $rc -ne 0 ]; then failures+=("image replay failed (exit $rc)"); else notes+=("$(tail -n 1 "$WORK/img-replay.log")"); fi
fi
if [ "$IMAGE_ONLY" = 1 ]; then
  if [ ${#failures[@]} -eq 0 ]; then echo "fuzz smoke: PASS (${notes[*]})"; exit 0; fi
  echo "fuzz smoke: FAIL (${failures[*]})"
  exit 1
fi

echo "== generating seed corpus"
if ! "$PY" "$HERE/make_corpus.py" "$WORK/seeds"; then
  echo "fuzz smoke: FAIL (could not generate the corpus; needs /usr/bin/python3 with onnx)"
  exit 2
fi

# ---- libFuzzer ---------------------------------------------------------------------------
have_libfuzzer() {
  for c in "${CC_FUZZ:-}" clang clang-14 clang-15 clang-16; do
    [ -n "$c" ] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n){(void)d;(void)n;return 0;}\n' \
      > "$WORK/probe.c"
    if "$c" -fsanitize=fuzzer,address,undefined "$WORK/probe.c" -o "$WORK/probe" >/dev/null 2>&1; then
      FUZZ_CC=$c
      return 0
    fi
  done
  return 1
}

mkdir -p "$WORK/corpus"
if [ "$REPLAY_ONLY" = 0 ]; then
  if have_libfuzzer; then
    FB=${FUZZ_BUILD_DIR:-$BUILD-libfuzzer}
    echo "== building libFuzzer target in $FB with $FUZZ_CC"
    if [ ! -f "$FB/build.ninja" ]; then
      CC=$FUZZ_CC meson setup "$FB" "$SRC" -Dfuzz=true -Dbuildtype=debugoptimized -Db_lundef=false -Dwerror=false \
        >"$WORK/setup.log" 2>&1 || { cat "$WORK/setup.log"; failures+=("libFuzzer build setup failed"); }
    fi
    if [ -f "$FB/build.ninja" ] && ninja -C "$FB" tests/fuzz/fuzz_onnx >"$WORK/build.log" 2>&1; then
      echo "== fuzzing for ${FUZZ_TIME}s"
      # Run in $ART so that artifacts land there whatever libFuzzer decides to write.
      (cd "$ART" && "$FB/tests/fuzz/fuzz_onnx" -max_total_time="$FUZZ_TIME" -rss_limit_mb=2048 \
          -malloc_limit_mb=1024 -timeout=30 -print_final_stats=1 -artifact_prefix="$ART/" \
          "$WORK/corpus" "$WORK/seeds") >"$WORK/fuzz.log" 2>&1
      rc=$?
      tail -n 40 "$WORK/fuzz.log"
      if [ $rc -ne 0 ]; then
        failures+=("libFuzzer exit status $rc (artifacts in $ART)")
        cp "$WORK/fuzz.log" "$ART/fuzz.log"
      else
        notes+=("libFuzzer ${FUZZ_TIME}s clean, $(ls "$WORK/corpus" | wc -l) new corpus units")
      fi
      # the image decoders, half the time, with a memory budget well under the limits
      if ninja -C "$FB" tests/fuzz/fuzz_image >"$WORK/build-img.log" 2>&1; then
        ITIME=$(( FUZZ_TIME / 2 > 0 ? FUZZ_TIME / 2 : 1 ))
        echo "== fuzzing the image decoders for ${ITIME}s"
        (cd "$ART" && "$FB/tests/fuzz/fuzz_image" -max_total_time="$ITIME" -rss_limit_mb=2048 \
            -malloc_limit_mb=512 -timeout=30 -print_final_stats=1 -artifact_prefix="$ART/img-" \
            "$WORK/img-corpus" "$WORK/img-seeds") >"$WORK/fuzz-img.log" 2>&1
        rc=$?
        tail -n 20 "$WORK/fuzz-img.log"
        if [ $rc -ne 0 ]; then
          failures+=("fuzz_image exit status $rc (artifacts in $ART)")
          cp "$WORK/fuzz-img.log" "$ART/fuzz-img.log"
        else
          notes+=("fuzz_image ${ITIME}s clean")
        fi
      else
        tail -n 40 "$WORK/build-img.log"
        failures+=("fuzz_image did not build")
      fi
    else
      [ -f "$WORK/build.log" ] && tail -n 40 "$WORK/build.log"
      failures+=("libFuzzer target did not build")
    fi
  else
    notes+=("clang/libFuzzer not available: replay only")
  fi
fi

# ---- replay (gcc or whatever BUILD_DIR was built with) -----------------------------------
REPLAY="$BUILD/tests/fuzz/fuzz_onnx_replay"
if [ ! -x "$REPLAY" ]; then
  ninja -C "$BUILD" tests/fuzz/fuzz_onnx_replay >/dev/null 2>&1
fi
if [ ! -x "$REPLAY" ]; then
  failures+=("$REPLAY not built")
else
  echo "== replaying corpus with $REPLAY"
  "$REPLAY" "$WORK/seeds" "$WORK/corpus" >"$WORK/replay.log" 2>&1
  rc=$?
  tail -n 5 "$WORK/replay.log"
  if [ $rc -ne 0 ]; then
    # Find the input that crashed: rerun verbosely, the last file named is the culprit.
    "$REPLAY" -v "$WORK/seeds" "$WORK/corpus" >"$WORK/replay-v.log" 2>&1
    bad=$(grep '^replay ' "$WORK/replay-v.log" | tail -n 1 | sed 's/^replay \(.*\) ([0-9]* bytes)$/\1/')
    tail -n 60 "$WORK/replay-v.log"
    if [ -n "$bad" ] && [ -f "$bad" ]; then
      cp "$bad" "$ART/replay-crash-$(basename "$bad")"
      failures+=("replay crashed (exit $rc) on $(basename "$bad"), copied to $ART/")
    else
      failures+=("replay failed (exit $rc)")
    fi
  else
    notes+=("$(tail -n 1 "$WORK/replay.log")")
  fi
fi

if [ ${#failures[@]} -eq 0 ]; then
  echo "fuzz smoke: PASS (${notes[*]})"
  exit 0
fi
echo "fuzz smoke: FAIL (${failures[*]})"
exit 1
