#!/usr/bin/env bash
# Crash safety and preemption of `tfm train`, on the real binary with a tiny model:
#   1. SIGKILL while a checkpoint is being written (TFM_TEST_SLOW_CHECKPOINT_MS stretches the
#      write so the kill lands inside it): `latest` still names a complete checkpoint that loads,
#      and relaunching the same command resumes from it and finishes.
#   2. SIGTERM (and SIGINT): the step finishes, a checkpoint of that step is written, exit 0; the
#      next run continues from that step.
#   3. A second SIGTERM while that checkpoint is being written exits at once (143) and leaves the
#      previous checkpoint intact; the next run resumes from it.
# Usage: resume_test.sh path/to/tfm
set -uo pipefail
tfm=$1
work=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
check() {  # check NAME CONDITION-COMMAND…
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}
# wait_for SECONDS COMMAND…: polls COMMAND every 50 ms while the trainer ($pid) runs.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.05
  done
}
has_temporary() { compgen -G "$1/checkpoints/step-*.tmp-*" >/dev/null; }
latest_name() { cat "$1/checkpoints/latest" 2>/dev/null; }
step_name() { printf 'step-%07d' "$1"; }
training_started() { grep -q "^step " "$1"; }

common=(--synthetic copy --d-model 32 --d-ff 64 --heads 2 --layers 1 --batch-tokens 256
        --eval-batches 1 --warmup 10 --threads 1)

# ---- 1. SIGKILL in the middle of writing a checkpoint.
run=$work/crash
crash_cmd=("$tfm" train "${common[@]}" --out "$run" --steps 30 --save-every 3 --keep 2)
TFM_TEST_SLOW_CHECKPOINT_MS=400 "${crash_cmd[@]}" >"$work/crash.log" 2>&1 &
pid=$!
# A first checkpoint is complete and the next one is half-written.
wait_for 120 bash -c "test -f '$run/checkpoints/latest' && compgen -G '$run/checkpoints/step-*.tmp-*' >/dev/null"
check "crash: killed while a checkpoint was being written" has_temporary "$run"
kill -9 "$pid"; wait "$pid" 2>/dev/null; pid=
latest=$(latest_name "$run")
echo "     killed with latest = $latest, writing $(cd "$run/checkpoints" && ls -d step-*.tmp-* 2>/dev/null)"
check "crash: latest names a complete checkpoint" test -f "$run/checkpoints/$latest/manifest.json"
"$tfm" average --checkpoints "$run/checkpoints/$latest" --out "$work/crash-loaded" >"$work/crash-load.log" 2>&1
check "crash: that checkpoint loads (checksums and shapes verified)" test $? -eq 0
"${crash_cmd[@]}" >"$work/crash-relaunch.log" 2>&1
check "crash: relaunching the same command exits 0" test $? -eq 0
check "crash: the relaunch resumed from latest" grep -q "resumed from .*$latest (step" "$work/crash-relaunch.log"
check "crash: the relaunch finished" test "$(latest_name "$run")" = "$(step_name 30)"
check "crash: the half-written directory was cleaned up" bash -c "! compgen -G '$run/checkpoints/step-*.tmp-*' >/dev/null"
check "crash: --keep 2 kept two checkpoints" test "$(cd "$run/checkpoints" && ls -d step-* | wc -l)" -eq 2

# ---- 2. SIGTERM, then SIGINT: finish the step, save it, exit 0; resume from that step.
run=$work/term
"$tfm" train "${common[@]}" --out "$run" --steps 1000000 --save-every 0 >"$work/term.log" 2>&1 &
pid=$!
wait_for 120 training_started "$work/term.log"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
check "SIGTERM: exit 0" test $rc -eq 0
stopped=$(sed -n 's/.*stopped by SIGTERM at step \([0-9]*\);.*/\1/p' "$work/term.log")
echo "     stopped at step ${stopped:-?}"
check "SIGTERM: message names the step" test -n "$stopped"
check "SIGTERM: a checkpoint of that step is latest" test "$(latest_name "$run")" = "$(step_name "${stopped:-0}")"
"$tfm" train "${common[@]}" --out "$run" --steps $((stopped + 1000000)) --save-every 0 >"$work/term2.log" 2>&1 &
pid=$!
wait_for 120 training_started "$work/term2.log"
kill -INT "$pid"; wait "$pid"; rc=$?; pid=
check "SIGINT: exit 0" test $rc -eq 0
check "SIGINT: the run had resumed from the SIGTERM checkpoint" grep -q "(step $stopped)" "$work/term2.log"
stopped2=$(sed -n 's/.*stopped by SIGINT at step \([0-9]*\);.*/\1/p' "$work/term2.log")
check "SIGINT: a checkpoint of the step reached is latest" test "$(latest_name "$run")" = "$(step_name "${stopped2:-0}")"
"$tfm" train "${common[@]}" --out "$run" --steps $((stopped2 + 2)) >"$work/term3.log" 2>&1
check "SIGINT: the next run continues from that step and finishes" \
  bash -c "grep -q '(step $stopped2)' '$work/term3.log' && grep -q '^step $((stopped2 + 2))/' '$work/term3.log'"

# ---- 3. A second signal while the stop checkpoint is being written: exit at once, nothing lost.
run=$work/twice
"$tfm" train "${common[@]}" --out "$run" --steps 3 >"$work/twice0.log" 2>&1
check "twice: a first run leaves step 3" test "$(latest_name "$run")" = "$(step_name 3)"
TFM_TEST_SLOW_CHECKPOINT_MS=1000 "$tfm" train "${common[@]}" --out "$run" --steps 1000000 --save-every 0 \
  >"$work/twice.log" 2>&1 &
pid=$!
wait_for 120 training_started "$work/twice.log"
kill -TERM "$pid"
wait_for 60 has_temporary "$run"
start=$SECONDS
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
check "twice: the second signal exits at once with 143" test $rc -eq 143 -a $((SECONDS - start)) -le 2
check "twice: latest still names step 3" test "$(latest_name "$run")" = "$(step_name 3)"
"$tfm" train "${common[@]}" --out "$run" --steps 5 >"$work/twice2.log" 2>&1
check "twice: the next run resumes from step 3 and finishes" \
  bash -c "grep -q '(step 3)' '$work/twice2.log' && test \"\$(cat '$run/checkpoints/latest')\" = $(step_name 5)"

if ((failures > 0)); then
  for f in "$work"/*.log; do echo "---- $f"; tail -n 5 "$f"; done
fi
echo "$failures failed"
[[ $failures -eq 0 ]]
