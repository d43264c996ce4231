/* Sharding a batch over many workers (Slurm job arrays, Kubernetes indexed Jobs, GNU parallel).
 *
 * An input belongs to shard  1 + (first 8 bytes of SHA-1(rel), big-endian) mod N,  where rel is
 * its path relative to its input root (the name the output mirrors).  The split depends on
 * nothing but the names: the same on every run, machine and file order, and every input lands
 * in exactly one shard.  Python: 1 + int.from_bytes(hashlib.sha1(rel.encode()).digest()[:8], "big") % N */
#ifndef CNNFX_SHARD_H
#define CNNFX_SHARD_H

#include <glib.h>

typedef struct {
  int k, n;           /* 1 <= k <= n; n == 0: no sharding (every input) */
  char source[64];    /* what chose it: "--shard", "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX" */
} CliShard;

/* The shard of this process.  spec: the --shard "K/N" value or NULL; count: --shard-count or
 * <= 0 when not given; env: the environment (g_get_environ()).  Without spec: the Slurm array
 * variables (K = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1,
 * N = count or SLURM_ARRAY_TASK_COUNT or from _MIN/_MAX), else JOB_COMPLETION_INDEX (0-based,
 * N = count or CNNFX_SHARD_COUNT).  FALSE with a usage message on bad or contradictory values. */
gboolean cli_shard_resolve(const char *spec, int count, const char *const *env, CliShard *out, GError **error);

/* 1-based shard of a relative path among n. */
int cli_shard_of(const char *rel, int n);

/* Keep only the items of this process's shard, in their order (the others are freed with the
 * array's free function).  Each item is a struct holding a `char *` relative path at byte
 * offset rel_offset (G_STRUCT_OFFSET(Job, rel)).  Prints "shard K/N: M of T inputs" on stderr
 * unless quiet; with outdir, writes the shard's input list to OUTDIR/.cnnfx-shards/K-of-N.tsv
 * (read by `cnnfx report merge`).  FALSE (usage error, nothing filtered) on a bad shard. */
gboolean cli_shard_filter(GPtrArray *items, gsize rel_offset, const char *spec, int count, const char *outdir,
                          gboolean quiet, GError **error);

#define CLI_SHARD_DIR ".cnnfx-shards"

#endif
