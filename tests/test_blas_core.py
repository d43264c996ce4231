#!/usr/bin/python3
"""The BLAS must not run generic kernels on a CPU with AVX2.

1. `cnnfx info --system` with the real OpenBLAS: on a CPU with AVX2 the core must not be a generic
   or pre-AVX2 one (Prescott, Core2, Nehalem, Sandybridge, ...).  Skipped (with the reason) on a CPU
   without AVX2, or when the environment itself forces OPENBLAS_CORETYPE (a user's choice that cnnfx
   never overrides; the test does not change it either).
2. With an LD_PRELOAD stand-in for an OpenBLAS that does not know the CPU (tests/blas_shim.c):
   cnnfx restarts itself once with OPENBLAS_CORETYPE set to the best core for this CPU, and reports
   the core in use; a BLAS that ignores the setting does not make it loop; a user's
   OPENBLAS_CORETYPE from the environment is kept.
Prints "N passed, M failed"; exit 1 on failure, 77 if everything was skipped.
"""
import argparse
import os
import subprocess
import sys

GENERIC = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine", "northwood",
           "banias", "athlon", "opteron", "opteron_sse3", "barcelona", "bobcat", "nano", "sandybridge",
           "bulldozer", "piledriver", "steamroller", "generic", "unknown"}


def info(cnnfx, env):
    try:
        p = subprocess.run([cnnfx, "info", "--system"], env=env, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, {}, "timeout (restart loop?)"
    out = p.stdout + p.stderr
    kv = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(":")
        kv[k.strip()] = v.strip()
    return p.returncode, kv, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--shim", required=True)
    a = ap.parse_args()
    passed = failed = skipped = 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        print(f"{'PASS' if ok else 'FAIL'} {what}" + (f"\n  {detail.strip()}" if detail and not ok else ""))
        passed += bool(ok)
        failed += not ok

    def skip(why):
        nonlocal skipped
        skipped += 1
        print(f"skipped: {why}")

    env = dict(os.environ)
    user_ct = env.get("OPENBLAS_CORETYPE")
    rc, kv, out = info(a.cnnfx, env)
    check(rc == 0 and "blas-core" in kv and "kernels" in kv, "cnnfx info --system names the BLAS core and kernels",
          out)
    print("  " + out.strip().replace("\n", "\n  "))
    avx2 = "avx2" in kv.get("simd-supported", "").split()
    core = kv.get("blas-core", "")
    if not avx2:
        skip("this CPU has no AVX2 (or this build no x86 kernels): generic BLAS kernels are all it can run")
    elif user_ct and core.lower() in GENERIC:
        skip(f"OPENBLAS_CORETYPE={user_ct} is set by the environment and forces the {core} kernels")
    else:
        check(core.lower() not in GENERIC and kv.get("blas-status") == "ok",
              f"OpenBLAS runs non-generic kernels on this AVX2 CPU (core {core})", out)

    if not avx2:
        skip("restart with OPENBLAS_CORETYPE: CPU without AVX2")
    else:
        shim_env = dict(env, LD_PRELOAD=os.path.abspath(a.shim))
        rc, kv, out = info(a.cnnfx, shim_env)
        if "runtime does not come first" in out:
            skip("LD_PRELOAD shim under a sanitizer build")
        elif user_ct:
            check(rc == 0 and kv.get("blas-core") == user_ct,
                  f"a user's OPENBLAS_CORETYPE={user_ct} is kept (shim BLAS)", out)
        else:
            best = "SkylakeX" if "avx512" in kv.get("simd-supported", "").split() else ("Haswell", "Zen")
            ok = rc == 0 and kv.get("blas-status") == "ok" and kv.get("blas-coretype-env") == kv.get("blas-core")
            ok = ok and (kv.get("blas-core") == best if isinstance(best, str) else kv.get("blas-core") in best)
            check(ok, f"generic OpenBLAS (shim): cnnfx restarts with OPENBLAS_CORETYPE={kv.get('blas-core')}", out)
            rc, kv, out = info(a.cnnfx, dict(shim_env, CNNFX_TEST_SHIM_STUCK="1"))
            check(rc == 0 and kv.get("blas-core") == "Prescott" and kv.get("blas-status", "").startswith("GENERIC"),
                  "a BLAS that ignores OPENBLAS_CORETYPE: one restart, no loop, reported as GENERIC", out)
    print(f"{passed} passed, {failed} failed")
    if failed:
        return 1
    return 77 if passed <= 1 and skipped else 0


if __name__ == "__main__":
    sys.exit(main())
