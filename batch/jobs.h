/* The batch job list of the filter commands: collecting inputs, planning outputs, claiming
 * and committing items, progress.
 *
 *   cli_jobs_collect()  walk the inputs: folders (-r recurses; a directory is entered once, by
 *                       (device, inode), so symlink loops end), files that are neither an image
 *                       name (.png .jpg .jpeg ...) nor PNG/JPEG content are skipped and counted,
 *                       the same file met twice is taken once; the output folder's subtree is
 *                       never read when it lies inside an input folder.
 *   cli_jobs_plan()     output names.  Outputs are compared as paths, not input names: when two
 *                       inputs would write the same output (pic.jpg + pic.png), the first in name
 *                       order keeps it and the next gets "-EXT" added to its name ("pic-png.csv",
 *                       "pic-png.heatmap.png"; then "-EXT-2"...).  With --16bit a JPEG input's
 *                       image outputs are 16-bit PNG (NAME.png).  An output that resolves (same
 *                       inode, symlinks followed) to an input file is refused for that input; an
 *                       earlier cnnfx output met among the inputs (the planned output of another
 *                       input, marked as written by cnnfx) is not read back as an input.
 *   [filter hook]       cli_jobs_filter() keeps a subset (sharding), after planning, so output
 *                       names do not depend on the shard.
 *   cli_jobs_run()      the job loop.  Each item is claimed first (an flock'ed claim file
 *                       ".MAIN.cnnfx-claim" next to its main output; a dead worker's claim is
 *                       free again), so workers sharing an output folder split the work; an
 *                       item's stale temporary files ".NAME.XXXXXX" are removed; all of its
 *                       outputs are written to temporary files and renamed into place with the
 *                       main output LAST: an item is done exactly when its main output exists,
 *                       and a half-done item (side outputs only, e.g. after kill -9 or a full
 *                       disk) is simply redone.  On a terminal one progress bar sits on the
 *                       last line with result lines printed above it.
 */
#ifndef CNNFX_JOBS_H
#define CNNFX_JOBS_H

#include "netload.h"
#include <sys/types.h>

typedef struct {
  char *src;          /* input path */
  char *rel;          /* path relative to its input root (mirrored under OUTDIR) */
  char *out_rel;      /* output name (rel, renamed on collisions, .png for --16bit JPEG) */
  GPtrArray *outputs; /* every output path, main output last */
  char *error;        /* planning refused this input: reported as its failure */
  gboolean have_id;
  dev_t dev;
  ino_t ino;
} CliJob;

typedef struct {
  GPtrArray *jobs;     /* CliJob*, sorted by rel */
  int n_not_images;    /* files skipped: neither an image name nor image content */
  int n_duplicates;    /* the same file met again (symlinks, hard links, loops) */
  int n_own_outputs;   /* earlier outputs met among the inputs and not read back */
  /* private */
  GHashTable *files;   /* "dev:ino" -> CliFile of every file met in the inputs */
  gboolean have_outdir;
  dev_t out_dev;
  ino_t out_ino;
} CliJobList;

CliJobList *cli_jobs_collect(char **inputs, int n_inputs, gboolean recurse, const char *outdir);
void cli_jobs_plan(CliJobList *l, const FilterApp *app);
/* Keep the jobs for which keep() is TRUE (index: position in the full, sorted list). */
typedef gboolean (*CliJobKeep)(const CliJob *job, guint index, guint n_jobs, gpointer user);
void cli_jobs_filter(CliJobList *l, CliJobKeep keep, gpointer user);
void cli_jobs_free(CliJobList *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(CliJobList, cli_jobs_free)

typedef struct {
  gboolean quiet;
  gint64 max_pixels;          /* 0 = default */
  const volatile int *cancel;
} CliJobsOptions;

typedef struct {
  int done, failed, skipped, busy;
} CliJobsResult;

/* Runs every job; app->run.progress/user, app->say and app->pending are set here.
 * Failures are printed as "<path>: <reason>". */
void cli_jobs_run(CliJobList *l, FilterApp *app, const CliJobsOptions *o, CliJobsResult *r);
/* The summary line ("3 done, 1 failed, 2 skipped (not images) ..."). */
void cli_jobs_summary(const CliJobList *l, const CliJobsResult *r, const char *filter);

#endif
