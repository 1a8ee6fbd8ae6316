#!/usr/bin/env bash
# The main job, end to end, on the embedded default: the synthetic corpus and
# Beam's local runner. Every step is resumable, so running it again only does
# what is missing. Called by `make demo`.
set -euo pipefail
out=${1:-demo-output}
videos=${2:-120}
seed=${3:-2026}
budget=${4:-480}
as=".venv/bin/audioscope"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/5 synthetic corpus ($videos videos, seed $seed)"
$as synth --out "$out/corpus" --videos "$videos" --seed "$seed"

step "2/5 ingest: corpus -> clip store"
$as ingest "$out/corpus/list.csv" --media-root "$out/corpus" --out "$out/clipstore"
$as clips stats --store "$out/clipstore"

step "3/5 train the coincidence model (at most ${budget} s of training)"
if [ -e "$out/model/saved_model.pb" ]; then
  echo "model already trained: $out/model (delete it to train again)"
else
  $as coincidence train --clips "$out/clipstore" --out "$out/model" --time-budget "$budget"
fi

step "4/5 score every clip"
$as score --store "$out/clipstore" --model "$out/model" --out "$out/scores"

step "5/5 filter: the subset Df, its splits and the report"
$as filter --scores "$out/scores" --store "$out/clipstore" --out "$out/df"

printf '\nDemo done.\n'
printf '  corpus:     %s\n  clip store: %s\n  model:      %s\n  scores:     %s\n  Df:         %s\n' \
  "$out/corpus" "$out/clipstore" "$out/model" "$out/scores/scores.parquet" "$out/df"
printf '  report:     %s (histogram: %s)\n' "$out/df/report.md" "$out/df/score_histogram.png"
