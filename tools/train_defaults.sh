#!/usr/bin/env bash
# Reproduce every committed default model from scratch on CPU (build host, export extra).
# Datasets are synthetic phantoms: training sets use set seeds < 100, held-out test
# sets seeds >= 100, so no test image is ever seen in training. Takes ~1-2 h on 2 cores.
#   bash tools/train_defaults.sh [TASK...]     (default: every task below)
set -euo pipefail
cd "$(dirname "$0")/.."
EDGERET=${EDGERET:-.venv-test/bin/edgeret}
OUT=${OUT:-out/train}
THREADS=${THREADS:-1}
tasks=("${@:-quality-fundus dr-grade quality-oct}")

synth() {  # synth NAME ARGS...: make a dataset once
  local name=$1; shift
  [ -f "$OUT/data/$name/labels.csv" ] || "$EDGERET" data synth --out "$OUT/data/$name" "$@"
}

merge() {  # merge NAME A B: one labels.csv over two synthetic sets (symlinked, no copies)
  local dir="$OUT/data/$1"
  [ -f "$dir/labels.csv" ] && return
  mkdir -p "$dir" && ln -sfn "../$2" "$dir/a" && ln -sfn "../$3" "$dir/b"
  { head -1 "$dir/a/labels.csv"; tail -n +2 "$dir/a/labels.csv" | sed 's#^#a/#'
    tail -n +2 "$dir/b/labels.csv" | sed 's#^#b/#'; } > "$dir/labels.csv.tmp"
  mv "$dir/labels.csv.tmp" "$dir/labels.csv"
}

for task in ${tasks[@]}; do
  case $task in
    quality-fundus)
      # imbalanced like the paper's Table 1 (poor:good about 1:27); two 6000-image sets, merged
      synth fundus-quality-train6k --modality fundus --n 6000 --seed 1 --quality-mix good=0.84,usable=0.13,poor=0.03
      synth fundus-quality-train6k-b --modality fundus --n 6000 --seed 4 --quality-mix good=0.84,usable=0.13,poor=0.03
      merge fundus-quality-train12k fundus-quality-train6k fundus-quality-train6k-b
      synth fundus-quality-test --modality fundus --n 600 --seed 101 --quality-mix good=1,usable=1,poor=1
      "$EDGERET" train quality-fundus --data "$OUT/data/fundus-quality-train12k" --out "$OUT/quality-fundus" --threads "$THREADS" --epochs 12 --variant weighted-center
      for v in softmax weighted; do  # the loss comparison (paper Tables 2-3), 8 epochs on 6000 as committed
        "$EDGERET" train quality-fundus --data "$OUT/data/fundus-quality-train6k" --out "$OUT/quality-fundus" --threads "$THREADS" --epochs 8 --variant $v
      done
      "$EDGERET" eval quality-fundus --data "$OUT/data/fundus-quality-test" --models "$OUT/quality-fundus"
      # the operating point: chosen on a validation set (rule in recipe.py), checked on a fresh test set
      synth fundus-quality-val3k --modality fundus --n 3000 --seed 52 --quality-mix good=1,usable=1,poor=1
      synth fundus-quality-test103 --modality fundus --n 600 --seed 103 --quality-mix good=1,usable=1,poor=1
      for set in val3k test103; do
        "$EDGERET" eval quality-fundus --data "$OUT/data/fundus-quality-$set" --models "$OUT/quality-fundus" --out "$OUT/quality-fundus-$set"
      done
      ;;
    dr-grade)
      synth fundus-dr-train --modality fundus --n 1600 --seed 2 --quality-mix good=0.7,usable=0.2,poor=0.1 --grade-mix 0=0.3,1=0.15,2=0.2,3=0.15,4=0.2
      synth fundus-dr-test --modality fundus --n 600 --seed 102 --quality-mix good=0.6,usable=0.2,poor=0.2 --grade-mix 0=0.3,1=0.15,2=0.2,3=0.15,4=0.2
      "$EDGERET" train dr-grade --data "$OUT/data/fundus-dr-train" --out "$OUT/dr-grade" --threads "$THREADS" --epochs 12
      "$EDGERET" eval dr-grade --data "$OUT/data/fundus-dr-test" --models "$OUT/dr-grade"
      ;;
    quality-oct)
      echo "quality-oct: see plugins/tasks/quality_oct/TRAINING.md" ;;
    *) echo "unknown task $task" >&2; exit 2 ;;
  esac
done
echo "copy the weights you want to ship into plugins/tasks/<task>/weights/"
