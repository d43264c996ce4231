/* `--profile` (cnnfx bench) and CNNFX_PROFILE=1 (cnnfx train): where a step's time goes, per operator
 * type and for the slowest nodes, from the session's per-node kernel times. */
#include "cli.h"
#include <stdio.h>
#include <stdlib.h>

static int cmp_node_time(const void *a, const void *b)
{
  const CnnfxNodeTime *x = a, *y = b;
  const double tx = x->fwd_s + x->bwd_s, ty = y->fwd_s + y->bwd_s;
  return (tx < ty) - (tx > ty);
}

void cli_print_profile(const CnnfxSession *s, int runs)
{
  int nn = 0;
  g_autofree CnnfxNodeTime *t = cnnfx_session_profile(s, &nn);
  if (!t) return;
  g_autoptr(GHashTable) by_op = g_hash_table_new(g_str_hash, g_str_equal);
  g_autoptr(GArray) ops = g_array_new(FALSE, TRUE, sizeof(CnnfxNodeTime));
  double total = 0;
  for (int k = 0; k < nn; k++) {
    total += t[k].fwd_s + t[k].bwd_s;
    gpointer idx;
    if (!g_hash_table_lookup_extended(by_op, t[k].op, NULL, &idx)) {
      CnnfxNodeTime z = {.op = t[k].op, .name = t[k].op}; /* per type, fwd_calls counts the nodes that ran */
      g_array_append_val(ops, z);
      idx = GINT_TO_POINTER(ops->len - 1);
      g_hash_table_insert(by_op, (gpointer)t[k].op, idx);
    }
    CnnfxNodeTime *o = &g_array_index(ops, CnnfxNodeTime, GPOINTER_TO_INT(idx));
    o->fwd_s += t[k].fwd_s;
    o->bwd_s += t[k].bwd_s;
    o->fwd_calls += t[k].fwd_calls > 0;
  }
  if (total <= 0) return;
  g_array_sort(ops, cmp_node_time);
  qsort(t, (size_t)nn, sizeof *t, cmp_node_time);
  printf("profile: ms per step in kernels (forward / backward), %.2f ms in all\n", total * 1e3 / runs);
  for (guint i = 0; i < ops->len; i++) {
    const CnnfxNodeTime *o = &g_array_index(ops, CnnfxNodeTime, i);
    printf("  op %-22s %9.2f / %9.2f  %5.1f%%  (%d nodes)\n", o->op, o->fwd_s * 1e3 / runs, o->bwd_s * 1e3 / runs,
           100 * (o->fwd_s + o->bwd_s) / total, o->fwd_calls);
  }
  for (int k = 0; k < MIN(nn, 15); k++)
    printf("  node %-20s %-30s %9.2f / %9.2f  %5.1f%%\n", t[k].op, t[k].name, t[k].fwd_s * 1e3 / runs,
           t[k].bwd_s * 1e3 / runs, 100 * (t[k].fwd_s + t[k].bwd_s) / total);
}
