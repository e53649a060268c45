#!/usr/bin/env bash
# The main job on its embedded default: installs what is missing, builds, generates and prepares
# the bundled demo corpus (short English sentences about numbers → German), trains the tiny model
# on it (CPU when there is no GPU) with checkpoints, evaluates BLEU on the test split, and
# translates a few test sentences.
#   bash launch/demo.sh [extra tfm train options, e.g. --steps 200]
# Re-running continues the same run from its latest checkpoint (RUN defaults to runs/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup.sh
bash launch/build.sh tfm
data=runs/demo-data
run=${RUN:-runs/demo}
if [[ ! -f $data/manifest.json ]]; then
  ./build/tfm prepare --demo --out "$data"
fi
# Defaults in launch/demo.cfg; options given to this script override them.
./build/tfm train --config launch/demo.cfg --data "$data" --out "$run" "$@"
echo
echo "== BLEU on the test split (beam 4, alpha 0.6)"
./build/tfm eval --checkpoint "$run" --data "$data" --split test --max-sentences 300
echo
echo "== a few translations"
head -n 5 "$data/raw/test.en" > "$run/sample.en"
./build/tfm translate --checkpoint "$run" --input "$run/sample.en" --output "$run/sample.de"
paste -d '\n' "$run/sample.en" "$run/sample.de" | sed 'N;s/\n/  →  /'
echo
echo "run directory: $run (metrics.jsonl; tensorboard --logdir $run)"
