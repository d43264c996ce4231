/* What this CPU can run, and what the BLAS runs on it.
 *
 * cnnfx's own kernels (Winograd, pooling, activations, elementwise, im2col) are compiled three
 * times (core/meson.build): for baseline x86-64, for AVX2+FMA and for AVX-512 (F/BW/VL/DQ/CD).
 * A backend picks one set when it is made (the best this CPU runs, or the level its creator
 * forces) and its sessions resolve operators from that set, so no kernel tests CPU features.
 *
 * OpenBLAS picks its kernels from the CPU at load time; an OpenBLAS older than the CPU falls back
 * to its generic ("Prescott" SSE3) kernels, 4-5x slower.  cnnfx_blas_check() names that case and
 * the core type to ask for instead (OPENBLAS_CORETYPE, read only when the library loads: the
 * command-line front-end starts itself again with it, see batch/main.c). */
#include "cnnfx-private.h"
#include <cblas.h>

#if defined(__x86_64__) || defined(__i386__)
#define CNNFX_X86 1
#endif

const char *cnnfx_simd_name(CnnfxSimd level)
{
  switch (level) {
  case CNNFX_SIMD_BASELINE: return "baseline";
  case CNNFX_SIMD_AVX2: return "avx2";
  case CNNFX_SIMD_AVX512: return "avx512";
  case CNNFX_SIMD_AUTO: break;
  }
  return "auto";
}

gboolean cnnfx_simd_parse(const char *s, CnnfxSimd *level, GError **error)
{
  static const CnnfxSimd all[] = {CNNFX_SIMD_AUTO, CNNFX_SIMD_BASELINE, CNNFX_SIMD_AVX2, CNNFX_SIMD_AVX512};
  for (size_t i = 0; s && i < G_N_ELEMENTS(all); i++)
    if (!g_ascii_strcasecmp(s, cnnfx_simd_name(all[i]))) {
      *level = all[i];
      return TRUE;
    }
  cnnfx_set_error(error, CNNFX_ERROR_ARG, "unknown SIMD level '%s' (expected auto, baseline, avx2 or avx512)",
                  s ? s : "");
  return FALSE;
}

G_GNUC_UNUSED static gboolean cpu_has_avx2(void)
{
#ifdef CNNFX_X86
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return FALSE;
#endif
}

G_GNUC_UNUSED static gboolean cpu_has_avx512(void)
{
#ifdef CNNFX_X86
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512cd");
#else
  return FALSE;
#endif
}

CnnfxSimd cnnfx_cpu_simd(void)
{
#ifdef CNNFX_HAVE_SIMD_VARIANTS
  if (cpu_has_avx512()) return CNNFX_SIMD_AVX512;
  if (cpu_has_avx2()) return CNNFX_SIMD_AVX2;
#endif
  return CNNFX_SIMD_BASELINE;
}

gboolean cnnfx_cpu_supports(CnnfxSimd level)
{
  switch (level) {
  case CNNFX_SIMD_AUTO:
  case CNNFX_SIMD_BASELINE: return TRUE;
#ifdef CNNFX_HAVE_SIMD_VARIANTS
  case CNNFX_SIMD_AVX2: return cpu_has_avx2();
  case CNNFX_SIMD_AVX512: return cpu_has_avx512();
#else
  default: return FALSE;
#endif
  }
  return FALSE;
}

char *cnnfx_cpu_model(void)
{
  g_autofree char *text = NULL;
  if (g_file_get_contents("/proc/cpuinfo", &text, NULL, NULL)) {
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++)
      if (g_str_has_prefix(*l, "model name")) {
        const char *c = strchr(*l, ':');
        if (c) return g_strstrip(g_strdup(c + 1));
      }
  }
  return g_strdup("unknown CPU");
}

/* ---- BLAS ------------------------------------------------------------------------------------- */

/* OpenBLAS core names by the widest vector kernels they run (x86).  Names not listed are treated
 * as AVX2-class (new cores are added to OpenBLAS with modern kernels). */
static const char *const blas_generic_cores[] = {
  "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine", "Northwood",
  "Banias", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Bobcat", "Nano", "Sandybridge", "Bulldozer",
  "Piledriver", "Steamroller", "generic", "Generic", "unknown", NULL,
};

static gboolean blas_core_is_generic(const char *core)
{
  if (!core || !*core) return TRUE;
  for (const char *const *c = blas_generic_cores; *c; c++)
    if (!g_ascii_strcasecmp(core, *c)) return TRUE;
  return FALSE;
}

void cnnfx_blas_check(CnnfxBlasInfo *info)
{
  memset(info, 0, sizeof *info);
  info->name = "OpenBLAS";
  info->config = openblas_get_config();
  info->core = openblas_get_corename();
  info->threads = openblas_get_num_threads();
  info->dynamic_arch = info->config && strstr(info->config, "DYNAMIC_ARCH") != NULL;
  info->generic = cpu_has_avx2() && blas_core_is_generic(info->core);
  if (info->generic) {
#ifdef CNNFX_X86
    if (cpu_has_avx512())
      info->suggest = "SkylakeX";
    else if (__builtin_cpu_is("amd"))
      info->suggest = "Zen";
    else
      info->suggest = "Haswell";
#endif
  }
}
