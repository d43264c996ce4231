#!/bin/bash
# A real Slurm job array over a folder of photos: this test starts munged, slurmctld and slurmd
# on localhost (Debian's slurm-wlm and munge) in a temporary configuration of its own (own key,
# sockets, state and spool folders, free TCP ports), submits
#   sbatch --array=1-3 --wait cnnfx-array.sbatch
# with the Slurm recipe of docs/scale-out.md exactly as written there (each task: one
# `cnnfx classify -r PHOTOS -o OUT`, no --shard), and checks that the three tasks took shards 1/3,
# 2/3, 3/3 from SLURM_ARRAY_TASK_ID, that every
# photo was processed exactly once (one report each, one "-> OUT" line in all task logs together),
# that each task's photos are those of the documented hash split (= --shard K/3), and that
# `cnnfx report merge` finds every shard complete.  It stops exactly the daemons it started (by
# PID) and removes its folder.  Exit 77 with "skipped: <why>" where slurm cannot be started
# (not installed, daemons fail to come up); exit 1 when it runs and something is wrong.
#
# Usage: tests/test_slurm.sh BUILD/batch/cnnfx docs/scale-out.md [--keep]
set -u
CNNFX=$(readlink -f "${1:?usage: test_slurm.sh CNNFX DOCS [--keep]}")
DOCS=${2:?usage: test_slurm.sh CNNFX DOCS [--keep]}
KEEP=${3:-}
PY=/usr/bin/python3
SBIN=/usr/sbin:/sbin:/usr/bin:/bin

skip() { echo "skipped: $*"; cleanup; exit 77; }
fail() { echo "FAIL $*"; FAILED=1; }
pass() { echo "PASS $*"; }

T=""
PIDS=""
CTLD_UP=""
FAILED=0
cleanup() {
  # jobs of our private cluster only (its own slurm.conf), e.g. after a timeout
  [ -n "$CTLD_UP" ] && SLURM_CONF="$T/slurm.conf" scancel --user="$(id -un)" 2>/dev/null && sleep 1
  # stop what we started, newest first, by PID; wait up to 10 s each, then SIGKILL
  for p in $PIDS; do
    kill -TERM "$p" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  PIDS=""
  if [ -n "$T" ]; then
    if [ -n "$KEEP" ]; then echo "kept $T"; else rm -rf "$T"; fi
  fi
}
trap 'cleanup; exit 130' INT TERM HUP PIPE

for prog in munged slurmctld slurmd; do
  PATH=$PATH:$SBIN command -v "$prog" >/dev/null || skip "$prog not installed (apt-get install slurm-wlm munge)"
done
for prog in sbatch scontrol sinfo scancel; do
  command -v "$prog" >/dev/null || skip "$prog not installed (apt-get install slurm-client)"
done
MUNGED=$(PATH=$PATH:$SBIN command -v munged)
SLURMCTLD=$(PATH=$PATH:$SBIN command -v slurmctld)
SLURMD=$(PATH=$PATH:$SBIN command -v slurmd)
[ -x "$CNNFX" ] || { echo "FAIL no cnnfx at $1"; exit 1; }

T=$(mktemp -d /tmp/cnnfx-slurm-XXXXXX) || exit 1
chmod 755 "$T"
mkdir -p "$T/munge" "$T/state" "$T/spool/$(hostname -s)" "$T/log" "$T/photos/sub" "$T/out"
chmod 700 "$T/munge"

# --- munge: its own key and socket ---------------------------------------------------------
head -c 1024 /dev/urandom >"$T/munge/munge.key"
chmod 400 "$T/munge/munge.key"
SOCK="$T/munge/munge.socket"
"$MUNGED" -F --force --key-file="$T/munge/munge.key" --socket="$SOCK" --pid-file="$T/munge/munged.pid" \
  --log-file="$T/log/munged.log" --seed-file="$T/munge/seed" >"$T/log/munged.out" 2>&1 &
PIDS="$! $PIDS"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || skip "munged did not start: $(tail -n 3 "$T/log/munged.out" "$T/log/munged.log" 2>/dev/null | tr '\n' ' ')"

# --- slurm.conf: this host as controller and one node, on two free ports -----------------------
read -r P1 P2 < <($PY -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
HOST=$(hostname -s)
USER_NAME=$(id -un)
CPUS=$(nproc)
[ "$CPUS" -ge 3 ] && CPUS=3 # three tasks side by side at most
cat >"$T/slurm.conf" <<EOF
ClusterName=cnnfxtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$P1
SlurmdPort=$P2
SlurmUser=$USER_NAME
SlurmdUser=$USER_NAME
AuthType=auth/munge
AuthInfo=socket=$SOCK
CredType=cred/munge
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MailProg=/bin/true
SlurmdTimeout=30
InactiveLimit=0
KillWait=2
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=cnnfx Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"

"$SLURMCTLD" -D -c -f "$SLURM_CONF" >"$T/log/slurmctld.out" 2>&1 &
PIDS="$! $PIDS"
CTLD_UP=1
"$SLURMD" -D -f "$SLURM_CONF" -N "$HOST" >"$T/log/slurmd.out" 2>&1 &
PIDS="$! $PIDS"
up=""
for _ in $(seq 150); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null)
  case "$state" in idle*|mix*|alloc*) up=1; break ;; esac
  sleep 0.2
done
[ -n "$up" ] || skip "slurmctld/slurmd did not come up (node state '${state:-none}'): $(tail -n 2 "$T/log/slurmctld.out" \
  "$T/log/slurmctld.log" "$T/log/slurmd.out" "$T/log/slurmd.log" 2>/dev/null | grep -v '^$' | tail -n 4 | tr '\n' ' ')"
pass "munged, slurmctld and slurmd up on localhost (ports $P1, $P2)"

# --- photos: 9 small ones (darknet's, shrunk; two flipped copies in sub/) -------------------
$PY - "$T/photos" <<'EOF' || { fail "cannot make photos"; cleanup; exit 1; }
import glob, os, sys
from PIL import Image
d = sys.argv[1]
fs = sorted(glob.glob("/usr/share/darknet/data/*.jpg"))
if len(fs) < 7:
    # fall back to generated pictures when darknet's photos are missing
    fs = [None] * 7
for i, f in enumerate(fs[:7]):
    im = Image.open(f).convert("RGB") if f else Image.new("RGB", (64, 48), (30 * i, 90, 200 - 20 * i))
    im.thumbnail((80, 80))
    im.save(os.path.join(d, f"p{i:02d}.jpg"), quality=90)
    if i < 2:
        im.transpose(Image.FLIP_LEFT_RIGHT).save(os.path.join(d, "sub", f"f{i:02d}.jpg"), quality=90)
EOF

# --- the job array: the recipe of docs/scale-out.md ----------------------------------------------
$PY - "$DOCS" >"$T/cnnfx-array.sbatch" <<'EOF'
import re, sys
for m in re.finditer(r"^```[a-z]*\n(.*?)^```", open(sys.argv[1]).read(), re.M | re.S):
    if re.search(r"^# recipe: slurm\b", m[1], re.M):
        sys.stdout.write(m[1])
        break
else:
    sys.exit(1)
EOF
if [ $? = 0 ] && grep -q '^#SBATCH --array' "$T/cnnfx-array.sbatch"; then
  pass "Slurm recipe found in $DOCS"
else
  fail "no '# recipe: slurm' block with #SBATCH --array in $DOCS"; cleanup; exit 1
fi
# the recipe's cnnfx is this build, its folders are ours; 1 CPU a task fits this small node
export PATH="$(dirname "$CNNFX"):$PATH" PHOTOS="$T/photos" OUT="$T/out" OMP_WAIT_POLICY=passive
out=$(cd "$T" && timeout 240 sbatch --parsable --array=1-3 --cpus-per-task=1 --wait -o "$T/log/task-%a.out" \
  -e "$T/log/task-%a.err" "$T/cnnfx-array.sbatch" 2>&1)
rc=$?
[ $rc = 0 ] && pass "sbatch --array=1-3 --wait: exit 0 (job $out)" || fail "sbatch --array=1-3 --wait: exit $rc: $out"

$PY - "$T" "$CNNFX" <<'EOF' || FAILED=1
import hashlib, os, re, subprocess, sys
T, cnnfx = sys.argv[1], sys.argv[2]
bad = 0
def check(ok, name, detail=""):
    global bad
    print(("PASS " if ok else "FAIL ") + name + ("" if ok else f" ({detail})"))
    bad += not ok
photos = sorted(os.path.relpath(os.path.join(d, f), f"{T}/photos")
                for d, _, fs in os.walk(f"{T}/photos") for f in fs)
shard = lambda rel: 1 + int.from_bytes(hashlib.sha1(rel.encode()).digest()[:8], "big") % 3
done = []
for k in (1, 2, 3):
    err = open(f"{T}/log/task-{k}.err").read() if os.path.exists(f"{T}/log/task-{k}.err") else ""
    m = re.search(r"^shard (\d+)/(\d+): (\d+) of (\d+) inputs$", err, re.M)
    check(m and (int(m[1]), int(m[2]), int(m[4])) == (k, 3, len(photos)),
          f"array task {k} is shard {k}/3 of {len(photos)} inputs (from SLURM_ARRAY_TASK_ID)", err[-500:])
    mine = sorted(os.path.relpath(l.split(" -> ")[0], f"{T}/photos") for l in err.splitlines() if " -> " in l)
    check(mine == sorted(p for p in photos if shard(p) == k), f"array task {k} processed its hash shard", str(mine))
    done += mine
check(sorted(done) == photos, f"every photo processed exactly once over the array ({len(photos)} photos)",
      f"{sorted(done)} vs {photos}")
reports = sorted(os.path.relpath(os.path.join(d, f), f"{T}/out")[:-4] for d, ds, fs in os.walk(f"{T}/out")
                 for f in fs if f.endswith(".csv") and not d.endswith(".cnnfx-shards"))
check(reports == sorted(os.path.splitext(p)[0] for p in photos), "one report per photo in the shared output tree",
      str(reports))
p = subprocess.run([cnnfx, "report", "merge", f"{T}/out"], capture_output=True, text=True)
check(p.returncode == 0 and all(f"shard {k}/3:" in p.stdout and "0 missing" in p.stdout for k in (1, 2, 3)),
      "cnnfx report merge: every shard complete", p.stdout + p.stderr)
sys.exit(1 if bad else 0)
EOF

if [ "$FAILED" != 0 ]; then
  echo "--- logs"
  tail -n 20 "$T"/log/*.log "$T"/log/task-*.err 2>/dev/null
fi
STARTED=$PIDS
cleanup
for p in $STARTED; do kill -0 "$p" 2>/dev/null && fail "daemon $p still running after the test stopped it"; done
if [ "$FAILED" = 0 ]; then echo "slurm test passed"; exit 0; fi
echo "slurm test FAILED"
exit 1
