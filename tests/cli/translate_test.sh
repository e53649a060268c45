#!/usr/bin/env bash
# End to end on the real binary: `tfm prepare --demo`, a short `tfm train` on it that writes a
# checkpoint, then `tfm translate` (stdin/stdout and files, 1-best and n-best, empty lines) and
# `tfm eval --split test` from that checkpoint; bad input is refused naming what is wrong.
# Usage: translate_test.sh path/to/tfm
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
  "$tfm" "$@" </dev/null >"$work/out" 2>"$work/err"
  local rc=$?
  if [[ $rc -ne 0 ]] && grep -q -- "$pattern" "$work/err"; then echo "ok   $name"
  else echo "FAIL $name (exit $rc, stderr: $(head -c 300 "$work/err"))"; failures=$((failures + 1)); fi
}
lines() { wc -l <"$1" | tr -d ' '; }

"$tfm" translate --help >"$work/help"; check "translate --help exits 0" test $? -eq 0
for opt in "--checkpoint" "--input" "--output" "--beam arg (=4)" "--alpha arg (=0.6)" \
           "--n-best arg (=1)" "--max-extra-len arg (=50)" "--batch-sentences"; do
  check "translate --help documents $opt" grep -q -- "$opt" "$work/help"
done
"$tfm" eval --help >"$work/eval_help"; check "eval --help exits 0" test $? -eq 0
for opt in "--checkpoint" "--data" "--split arg (=valid)" "--beam arg (=4)" "--max-sentences"; do
  check "eval --help documents $opt" grep -q -- "$opt" "$work/eval_help"
done

expect_error "translate without --checkpoint" "--checkpoint" translate
expect_error "translate with a missing checkpoint names it" "$work/none" translate --checkpoint "$work/none"
expect_error "translate --beam 0" "--beam" translate --checkpoint "$work/none" --beam 0
expect_error "eval with a missing checkpoint names it" "$work/none" eval --checkpoint "$work/none" --data "$work/data"

# ---- A tiny model trained for a few steps on the demo corpus, checkpoint at the end.
"$tfm" prepare --demo --out "$work/data" >"$work/prepare.log" 2>&1
check "prepare --demo exits 0" test $? -eq 0
"$tfm" train --data "$work/data" --out "$work/run" --d-model 64 --d-ff 128 --heads 2 --layers 1 \
  --steps 30 --batch-tokens 2048 --warmup 15 --lr 1 --dropout 0 --eval-batches 1 --log-every 10 \
  --threads 2 --eval-every 15 --eval-bleu-sentences 16 --eval-beam 2 >"$work/train.log" 2>&1
check "train exits 0" test $? -eq 0
check "train wrote a checkpoint" test -s "$work/run/checkpoints/latest"
ckpt="$work/run/checkpoints/$(cat "$work/run/checkpoints/latest" 2>/dev/null)"
# --eval-every: validation loss and BLEU of 16 translated valid sentences, printed and logged.
check "--eval-every 15 evaluates at steps 15 and 30" test "$(grep -c '^eval step \(15\|30\) | loss ' "$work/train.log")" -eq 2
check "… with BLEU of the 16 valid sentences" grep -q "| BLEU [0-9.]* (16 valid sentences, beam 2" "$work/train.log"
check "… logged as eval_bleu in metrics.jsonl" test "$(grep -c '"eval_bleu": ' "$work/run/metrics.jsonl")" -eq 2
# The same sentences through `tfm eval` from the final checkpoint give the same BLEU.
# (sacreBLEU's whole line: score, n-gram precisions, hypothesis and reference lengths).
train_bleu=$(grep -A1 "^eval step 30 " "$work/train.log" | grep -o "BLEU|.*")
"$tfm" eval --checkpoint "$work/run" --data "$work/data" --split valid --beam 2 --max-sentences 16 \
  --batch-tokens 1024 --threads 2 >"$work/eval_valid.txt" 2>&1
eval_bleu=$(grep "^BLEU|" "$work/eval_valid.txt")
check "tfm eval agrees with the training's BLEU line ('${train_bleu:-?}' vs '${eval_bleu:-?}')" \
  test -n "$train_bleu" -a "$train_bleu" = "$eval_bleu"
check "… on non-empty translations" grep -qv "hyp_len = 0 " <<<"$train_bleu"

# ---- translate: stdin → stdout, one line per input line, empty lines stay empty.
{ head -n 4 "$work/data/raw/test.en"; echo; head -n 7 "$work/data/raw/test.en" | tail -n 3; } >"$work/in.txt"
"$tfm" translate --checkpoint "$work/run" --threads 2 <"$work/in.txt" >"$work/out.txt" 2>"$work/translate.err"
check "translate (run directory, stdin) exits 0" test $? -eq 0
check "translate writes one line per input line" test "$(lines "$work/out.txt")" -eq "$(lines "$work/in.txt")"
check "an empty input line gives an empty output line" test -z "$(sed -n 5p "$work/out.txt")"
"$tfm" translate --checkpoint "$ckpt" --input "$work/in.txt" --output "$work/out2.txt" --beam 2 \
  --max-extra-len 10 --batch-sentences 3 --threads 2 >/dev/null 2>"$work/translate2.err"
check "translate (checkpoint directory, files) exits 0" test $? -eq 0
check "translate --output has one line per input line" test "$(lines "$work/out2.txt")" -eq "$(lines "$work/in.txt")"
"$tfm" translate --checkpoint "$ckpt" --input "$work/in.txt" --beam 3 --n-best 3 \
  --max-extra-len 10 --threads 2 >"$work/nbest.txt" 2>/dev/null
check "translate --n-best 3 exits 0" test $? -eq 0
check "n-best lines are 'i ||| hyp ||| score'" \
  bash -c "grep -qvE '^[0-9]+ \|\|\| .* \|\|\| -?[0-9.]+$' '$work/nbest.txt' && exit 1 || exit 0"
check "n-best covers every input line" test "$(cut -d' ' -f1 "$work/nbest.txt" | sort -un | wc -l)" -eq "$(lines "$work/in.txt")"
check "n-best gives at most 3 lines per input" test "$(lines "$work/nbest.txt")" -le $((3 * $(lines "$work/in.txt")))

# ---- eval on the test split.
"$tfm" eval --checkpoint "$work/run" --data "$work/data" --split test --beam 2 --max-sentences 12 \
  --max-extra-len 10 --output "$work/hyps.txt" --threads 2 >"$work/eval.txt" 2>"$work/eval.err"
check "eval --split test exits 0" test $? -eq 0
check "eval prints loss, nll and ppl" grep -qE "^loss [0-9.]+ \| nll [0-9.]+ \| ppl [0-9.]+" "$work/eval.txt"
check "eval prints BLEU with sacreBLEU's signature" grep -q "^BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0 = " "$work/eval.txt"
check "eval evaluated 12 sentences" grep -q " 12 sentences" "$work/eval.txt"
check "eval --output has one line per sentence" test "$(lines "$work/hyps.txt")" -eq 12
expect_error "eval --split nonexistent names the split" "bogus" eval --checkpoint "$work/run" --data "$work/data" --split bogus

[[ $failures -eq 0 ]] || { echo "--- eval output"; cat "$work/eval.txt" "$work/eval.err"; echo "--- train log"; tail -5 "$work/train.log"; }
echo "$failures failed"
[[ $failures -eq 0 ]]
