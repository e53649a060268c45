#!/usr/bin/env bash
# Data and tensor parallelism of `tfm train` on CPU, under mpirun --oversubscribe (DESIGN.md,
# Verification). Every run trains the same small model for 10 steps on the same global batch of
# 4 micro-batches, with dropout on everywhere (embeddings, residuals, attention probabilities,
# FFN hidden units), so a dropout mask that depended on the layout would show:
#   ref      one process, --accumulate 4
#   dp2      DP 2 × --accumulate 2          dp4     DP 4 × --accumulate 1
#   tp2      TP 2, --accumulate 4           dp2tp2  DP 2 × TP 2 × --accumulate 2
#   zero     DP 2, ZeRO-1                   zerotp  DP 2 × TP 2, ZeRO-1
# Each must match ref: the loss of every step, and the step-10 checkpoint (weights and Adam
# moments, written as full logical tensors) in norm, with no single tensor far off
# (tests/parallel/compare.py); ZeRO-1 must also equal plain DP. Then the DP 2 × TP 2 checkpoint
# of step 5 is resumed as DP 1 × TP 4, DP 4 × TP 1 and one process: steps 6..10 and the final
# checkpoint must match ref again.
#
# All of it twice: in fp64 (--precision fp64, the CPU's double-precision path) to 1e-10, where
# layouts differ only by the order of floating-point sums, and in fp32 to 1e-6. In fp32 two things
# limit what a comparison can show, so the fp32 runs use --adam-eps 1e-5 and the post-norm model:
#   - some gradients are zero in exact arithmetic but rounding noise in floating point (the key
#     projection's bias: softmax is shift-invariant); with ε = 1e-9 Adam turns that noise into
#     full-size steps whose sign depends on the order of summation; a larger ε does not;
#   - a ReLU input within rounding error of 0 can fall on either side in two layouts, changing
#     that unit's gradient by a whole token's contribution (~1e-5 of the loss a few steps later);
#     this happens in some fp32 configurations (the pre-norm one below, on this machine) and is
#     why pre-norm with unshared embeddings is compared in fp64 only.
# BLEU computed during a DP 2 × TP 2 run must equal `tfm eval`'s. Finally a rank is killed with
# SIGKILL mid-run (the job must end, non-zero, naming it; the same
# command then resumes), SIGTERM to every rank stops them after the same step with one
# checkpoint, and layouts the model cannot take are refused with a message.
#
# Usage: parallel_test.sh path/to/tfm      (KEEP_WORK=1 keeps the runs' directories)
set -uo pipefail
tfm=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
compare() { /usr/bin/python3 "$here/compare.py" "$@"; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpirun=(mpirun --oversubscribe -x OMP_NUM_THREADS)
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; [[ -n ${KEEP_WORK:-} ]] && echo "runs kept in $work" || rm -rf "$work"' EXIT
failures=0
check() {  # check NAME COMMAND…
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}

model=(--synthetic reverse --d-model 64 --d-ff 128 --layers 2 --dropout 0.1
       --attention-dropout 0.1 --relu-dropout 0.1 --eval-batches 2 --threads 1
       --lr-schedule constant --lr 1e-3 --seed 7 --comm-timeout 60)
ckpt() { printf '%s/checkpoints/step-%07d' "$1" "$2"; }

for precision in fp64 fp32; do
  if [[ $precision == fp64 ]]; then rtol=1e-10; else rtol=1e-6; fi
  common=("${model[@]}" --vocab-size 32 --heads 4 --batch-tokens 192 --steps 10 --log-every 1
          --save-every 5 --keep 5 --precision "$precision")
  [[ $precision == fp32 ]] && common+=(--adam-eps 1e-5)
  p=$precision

  # train NAME RANKS [options…]: one run into $work/$p-NAME, its output in $work/$p-NAME.log
  train() {
    local name=$p-$1 ranks=$2; shift 2
    if ((ranks == 1)); then
      "$tfm" train "${common[@]}" --out "$work/$name" "$@" >"$work/$name.log" 2>&1
    else
      "${mpirun[@]}" -np "$ranks" "$tfm" train "${common[@]}" --out "$work/$name" "$@" >"$work/$name.log" 2>&1
    fi
    local rc=$?
    if ((rc != 0)); then echo "--- $name exited $rc:"; tail -20 "$work/$name.log"; fi
    return $rc
  }
  matches() {  # matches RUN REFERENCE [FIRST_STEP]
    compare losses "$work/$p-$1" "$work/$p-$2" "$rtol" "${3:-1}" &&
      compare checkpoint "$(ckpt "$work/$p-$1" 10)" "$(ckpt "$work/$p-$2" 10)" "$rtol"
  }

  check "$p: reference run (1 process, accumulate 4)" train ref 1 --accumulate 4
  for run in "dp2 2 --accumulate 2" "dp4 4 --accumulate 1" "tp2 2 --tp 2 --accumulate 4" \
             "dp2tp2 4 --tp 2 --accumulate 2" "zero 2 --zero 1 --accumulate 2" \
             "zerotp 4 --tp 2 --zero 1 --accumulate 2"; do
    set -- $run
    name=$1
    if check "$p: $name trains ($*)" train "$@"; then
      check "$p: $name equals one process on the same global batch" matches "$name" ref
    fi
  done
  check "$p: ZeRO-1 equals plain DP" matches zero dp2
  check "$p: the DP 2 x TP 2 log names the layout" grep -q "4 ranks = DP 2 × TP 2" "$work/$p-dp2tp2.log"

  # Resharding resume: DP 2 × TP 2's step 5, continued under three other layouts.
  from=$(ckpt "$work/$p-dp2tp2" 5)
  for run in "tp4 4 --tp 4 --accumulate 4" "dp4 4 --tp 1 --accumulate 1" "one 1 --accumulate 4"; do
    set -- $run
    name=resume-$1; shift
    if check "$p: $name: step 5 of DP 2 x TP 2 resumed as ($*)" train "$name" "$@" --resume "$from"; then
      check "$p: $name continues from step 5" grep -q "resumed from .*step-0000005 (step 5)" "$work/$p-$name.log"
      check "$p: $name continues like the uninterrupted run" matches "$name" ref 6
    fi
  done

  # The other model variants under TP: pre-norm (final layer norms) and unshared embeddings (a
  # separate vocabulary-parallel output projection and target table). fp64 only (see above).
  if [[ $precision == fp64 ]]; then
    variant=(--norm pre --share-embeddings none)
    if check "$p: pre-norm, unshared embeddings: one process" train ref-pre 1 "${variant[@]}" --accumulate 2 &&
       check "$p: pre-norm, unshared embeddings: DP 2 x TP 2" train dp2tp2-pre 4 "${variant[@]}" --tp 2; then
      check "$p: pre-norm, unshared embeddings: DP 2 x TP 2 equals one process" matches dp2tp2-pre ref-pre
    fi
  fi
done

# BLEU during training under DP 2 × TP 2: each rank translates its share of the valid sentences
# with the gathered whole model and the statistics are summed; the line must equal what
# `tfm eval` prints from the final checkpoint in one process.
"$tfm" prepare --demo --out "$work/demo" --quiet >"$work/demo.log" 2>&1
bleu_run=(--data "$work/demo" --d-model 64 --d-ff 128 --heads 2 --layers 1 --steps 30
          --batch-tokens 2048 --warmup 15 --lr 1 --dropout 0 --eval-batches 2 --log-every 10
          --threads 1 --eval-every 30 --eval-bleu-sentences 16 --eval-beam 2 --tp 2)
"${mpirun[@]}" -np 4 "$tfm" train "${bleu_run[@]}" --out "$work/bleu" >"$work/bleu.log" 2>&1
check "DP 2 x TP 2 training on --data with BLEU exits 0" test $? -eq 0
train_bleu=$(grep -A1 "^eval step 30 " "$work/bleu.log" | grep -o "BLEU|.*")
eval_bleu=$("$tfm" eval --checkpoint "$work/bleu" --data "$work/demo" --split valid --beam 2 \
  --max-sentences 16 --batch-tokens 1024 --threads 1 2>&1 | grep "^BLEU|")
check "its BLEU equals tfm eval's in one process ('${train_bleu:-?}')" \
  test -n "$train_bleu" -a "$train_bleu" = "$eval_bleu"
check "… on non-empty translations" grep -qv "hyp_len = 0 " <<<"$train_bleu"

# A rank killed with SIGKILL: the job ends, non-zero, naming it; the same command resumes.
kill_cmd=("${mpirun[@]}" -np 2 "$tfm" train "${model[@]}" --vocab-size 32 --heads 4 --steps 150
          --batch-tokens 1024 --save-every 10 --log-every 1 --out "$work/killed")
"${kill_cmd[@]}" >"$work/killed.log" 2>&1 &
job=$!
rank1=
for _ in $(seq 1 600); do  # up to 60 s for step 12 (a checkpoint of step 10 exists by then)
  if grep -q '"step": 12,' "$work/killed/metrics.jsonl" 2>/dev/null; then
    for p in $(pgrep -f "$work/killed"); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then rank1=$p; fi
    done
    break
  fi
  sleep 0.1
done
check "found rank 1 of the running job" test -n "$rank1"
started=$SECONDS
[[ -n $rank1 ]] && kill -9 "$rank1"
wait "$job"
rc=$?
elapsed=$((SECONDS - started))
check "the job ended non-zero after rank 1 died (rc $rc)" test "$rc" -ne 0
check "it ended within the timeout (${elapsed}s <= 60s)" test "$elapsed" -le 60
check "the message names the dead rank" grep -Eq "rank 1 .*(signal 9|Killed|killed)|rank 1\b.*exited" "$work/killed.log"
"${kill_cmd[@]}" >"$work/killed2.log" 2>&1
rc=$?
check "relaunching the same command exits 0 (rc $rc)" test "$rc" -eq 0
check "… resuming from the last checkpoint" grep -Eq "resumed from .*step-00000[1-9]0 \(step [1-9]0\)" "$work/killed2.log"
check "… and finishing the run" test -d "$(ckpt "$work/killed" 150)"

# SIGTERM to every rank (what srun does on preemption): the ranks agree to stop after the same
# step, write one checkpoint of it and exit 0.
"${mpirun[@]}" -np 2 "$tfm" train "${model[@]}" --vocab-size 32 --heads 4 --steps 150 \
  --batch-tokens 1024 --save-every 100 --log-every 1 --out "$work/stopped" >"$work/stopped.log" 2>&1 &
job=$!
ranks=()
for _ in $(seq 1 600); do
  if grep -q '"step": 12,' "$work/stopped/metrics.jsonl" 2>/dev/null; then
    for p in $(pgrep -f "$work/stopped"); do
      tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -q "^OMPI_COMM_WORLD_RANK=" && ranks+=("$p")
    done
    break
  fi
  sleep 0.1
done
check "found both ranks of the running job" test "${#ranks[@]}" -eq 2
((${#ranks[@]})) && kill -TERM "${ranks[@]}"
wait "$job"
rc=$?
check "SIGTERM to every rank: exit 0 (rc $rc)" test "$rc" -eq 0
stopped_at=$(grep -o "stopped by SIGTERM at step [0-9]*" "$work/stopped.log" | grep -o "[0-9]*$")
check "… one line says where it stopped (step ${stopped_at:-?})" test -n "$stopped_at"
check "… and the checkpoint of that step is latest" test "$(cat "$work/stopped/checkpoints/latest" 2>/dev/null)" = "$(printf 'step-%07d' "${stopped_at:-0}")"

# Layouts the model cannot take are refused, naming the option.
refused() {  # refused RANKS MESSAGE [options…]
  local ranks=$1 message=$2; shift 2
  local out
  out=$("${mpirun[@]}" -np "$ranks" "$tfm" train "${model[@]}" --steps 2 --out "$work/refused" "$@" 2>&1)
  local rc=$?
  ((rc != 0)) && grep -q -- "$message" <<<"$out"
}
check "--tp that does not divide the ranks is refused" refused 2 "does not divide the 2 ranks" --tp 3 --heads 4
check "heads that do not split over --tp are refused" refused 4 "attention heads (--heads) do not divide" --tp 4 --heads 2
check "a vocabulary that does not split over --tp is refused" refused 4 "vocabulary of 30 tokens" --tp 4 --heads 4 --vocab-size 30

if ((failures)); then echo "$failures check(s) failed"; exit 1; fi
echo "all parallel checks passed"
