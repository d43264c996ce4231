#!/bin/sh
# Build cnnfx and run the whole test suite (release build, then the sanitizer build
# of the unit tests and the fuzz smoke test).  Ends with "N passed, M failed".
set -u
cd "$(dirname "$0")/.."
B=${BUILD:-build}
[ -d "$B" ] || meson setup "$B" >/dev/null || exit 1
ninja -C "$B" || exit 1
OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} meson test -C "$B" --print-errorlogs --num-processes 1 "$@"
rc=$?
summary=$(/usr/bin/python3 - "$B" <<'PY'
import json, sys
p, f = 0, 0
for line in open(sys.argv[1] + "/meson-logs/testlog.json"):
    r = json.loads(line)
    if r["result"] in ("OK", "EXPECTEDFAIL"): p += 1
    else: f += 1
print(f"{p} passed, {f} failed")
PY
)
echo "$summary"
exit $rc
