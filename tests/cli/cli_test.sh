#!/usr/bin/env bash
# The tfm binary's command line: help documents every option with its default, bad input is
# rejected with a message naming the option and a non-zero exit, a short synthetic run writes
# metrics.jsonl and a checkpoint, --resume/--overwrite behave, and `tfm average` works.
set -uo pipefail
tfm=$1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
failures=0
check() {  # check NAME CONDITION-COMMAND…
  local name=$1; shift
  if "$@"; then echo "ok   $name"; else echo "FAIL $name"; failures=$((failures + 1)); fi
}
expect_error() {  # expect_error NAME PATTERN ARGS…: non-zero exit, stderr matching PATTERN
  local name=$1 pattern=$2; shift 2
  "$tfm" "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc -ne 0 ]] && grep -q -- "$pattern" "$work/err"; then echo "ok   $name"
  else echo "FAIL $name (exit $rc, stderr: $(head -c 300 "$work/err"))"; failures=$((failures + 1)); fi
}

"$tfm" --help >"$work/help"; check "tfm --help exits 0" test $? -eq 0
check "tfm --help lists train" grep -q "train" "$work/help"
"$tfm" train --help >"$work/train_help"; check "train --help exits 0" test $? -eq 0
for opt in --preset --data --synthetic --out --steps --batch-tokens --accumulate --lr --warmup \
           --lr-schedule --dropout --label-smoothing --seed --device --precision --config \
           --log-every --clip-norm --norm --share-embeddings --save-every --keep --resume \
           --overwrite; do
  check "train --help documents $opt" grep -q -- "$opt" "$work/train_help"
done
check "train --help shows defaults" grep -q -- "--steps arg (=1000)" "$work/train_help"

expect_error "unknown command" "unknown command" frobnicate
expect_error "unknown option" "bogus" train --synthetic reverse --out "$work/r" --bogus 3
expect_error "negative steps" "--steps" train --synthetic reverse --out "$work/r" --steps -4
expect_error "non-numeric steps" "steps" train --synthetic reverse --out "$work/r" --steps many
expect_error "unknown preset" "--preset" train --synthetic reverse --out "$work/r" --preset huge
expect_error "heads not dividing d_model" "--heads" train --synthetic reverse --out "$work/r" --heads 3
expect_error "missing config file" "--config" train --synthetic reverse --out "$work/r" --config "$work/none.cfg"
expect_error "reduced precision on the CPU" "--precision bf16" train --synthetic reverse --out "$work/r" --device cpu --precision bf16
expect_error "--zero other than 0 or 1" "--zero" train --synthetic reverse --out "$work/r" --zero 2
expect_error "--tp not dividing one process" "--tp 2 does not divide" train --synthetic reverse --out "$work/r" --tp 2
if [[ -z $(command -v nvidia-smi) ]] || ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "--device cuda without a GPU" "--device cuda" train --synthetic reverse --out "$work/r" --device cuda
fi

"$tfm" train --synthetic copy --out "$work/run" --d-model 32 --d-ff 64 --heads 2 --layers 1 \
  --steps 6 --log-every 2 --batch-tokens 256 --eval-batches 1 >"$work/train_out" 2>&1
check "short synthetic run exits 0" test $? -eq 0
check "progress line shows tokens/s" grep -q "tok/s" "$work/train_out"
check "metrics.jsonl written" test -s "$work/run/metrics.jsonl"
check "metrics.jsonl has step, loss, lr, tokens_per_s" \
  bash -c "grep '\"tokens_per_s\"' '$work/run/metrics.jsonl' | grep '\"loss\"' | grep '\"lr\"' | grep -q '\"step\"'"
check "resolved config saved" grep -q "steps = 6" "$work/run/config"

# Checkpoints: one at the end; --resume none refuses the run (naming it) and touches nothing;
# the same command again has nothing to do; more --steps resume from the checkpoint.
tiny=(--synthetic copy --out "$work/run" --d-model 32 --d-ff 64 --heads 2 --layers 1
      --log-every 2 --batch-tokens 256 --eval-batches 1)
check "checkpoint written at the end" test "$(cat "$work/run/checkpoints/latest")" = step-0000006
check "checkpoint holds the resolved config" cmp -s "$work/run/config" "$work/run/checkpoints/step-0000006/config"
expect_error "--resume none refuses a run with checkpoints" "$work/run" train "${tiny[@]}" --steps 6 --resume none
check "--resume none left the checkpoint alone" test -f "$work/run/checkpoints/step-0000006/manifest.json"
expect_error "--resume with a missing path" "$work/nope" train "${tiny[@]}" --steps 6 --resume "$work/nope"
expect_error "--keep 0" "--keep" train "${tiny[@]}" --keep 0
"$tfm" train "${tiny[@]}" --steps 6 >"$work/again" 2>&1
check "finished run: the same command exits 0 with nothing to do" \
  bash -c "test $? -eq 0 && grep -q 'nothing to do' '$work/again'"
"$tfm" train "${tiny[@]}" --steps 8 >"$work/more" 2>&1
check "more --steps resume from the checkpoint" \
  bash -c "test $? -eq 0 && grep -q 'resumed from .*step-0000006 (step 6)' '$work/more' && grep -q '^step 8/8' '$work/more'"
check "metrics.jsonl continued" bash -c "grep -c '\"loss\"' '$work/run/metrics.jsonl' | grep -qx 6"
expect_error "a different model is refused naming the tensor" "embed.weight" \
  train --synthetic copy --out "$work/run" --d-model 64 --d-ff 64 --heads 2 --layers 1 --steps 9
"$tfm" train "${tiny[@]}" --steps 6 --resume none --overwrite >"$work/over" 2>&1
check "--resume none --overwrite starts over" \
  bash -c "test $? -eq 0 && test \"\$(cat '$work/run/checkpoints/latest')\" = step-0000006 && ! test -d '$work/run/checkpoints/step-0000008'"

check "tfm --help lists average" grep -q "average" "$work/help"
"$tfm" average --checkpoints "$work/run/checkpoints/step-0000006" "$work/run/checkpoints/step-0000006" \
  --out "$work/avg" >"$work/avg_out" 2>&1
check "average writes a checkpoint" bash -c "test $? -eq 0 && test -f '$work/avg/model.h5' && test ! -e '$work/avg/optimizer.h5'"
expect_error "average refuses an existing --out" "already exists" average --last 1 --run "$work/run" --out "$work/avg"
expect_error "average --last more than there are" "only 1" average --last 3 --run "$work/run" --out "$work/avg2"

echo "$failures failed"
[[ $failures -eq 0 ]]
