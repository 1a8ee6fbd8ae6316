#!/usr/bin/env bash
# The main job, end to end, on the embedded default: the synthetic corpus and
# Beam's local runner. Every step is resumable, so running it again only does
# what is missing. Called by `make demo`.
set -euo pipefail
out=${1:-demo-output}
videos=${2:-120}
seed=${3:-2026}
budget=${4:-}      # seconds; empty: the coincidence training ends by steps only
as_budget=${5:-}   # seconds; empty: the AudioScope training ends by steps only
examples=${6:-2048}
steps=${7:-3000}
as=".venv/bin/audioscope"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/9 synthetic corpus ($videos videos, seed $seed)"
$as synth --out "$out/corpus" --videos "$videos" --seed "$seed"

step "2/9 ingest: corpus -> clip store"
$as ingest "$out/corpus/list.csv" --media-root "$out/corpus" --store "$out/clipstore"
$as clips stats --store "$out/clipstore"

# A time budget also shapes the learning-rate schedule by the clock (a budgeted run anneals fully),
# so with one the same seed no longer gives the same model: the demo's trainings end by steps.
budget_flag() { printf -- '--time-budget %s' "${1:-none}"; }

step "3/9 train the coincidence model ($steps steps${budget:+, at most $budget s})"
if [ -e "$out/model/saved_model.pb" ]; then
  echo "model already trained: $out/model (delete it to train again)"
else
  $as coincidence train --store "$out/clipstore" --out "$out/model" --steps "$steps" $(budget_flag "$budget")
fi

step "4/9 score every clip"
$as score --store "$out/clipstore" --model "$out/model" --out "$out/scores"

step "5/9 filter: the subset Df, its splits and the report"
$as filter --scores "$out/scores" --store "$out/clipstore" --out "$out/df"

step "6/9 annotate: Label Studio on 127.0.0.1, five demo raters (three per clip) answer from the ground truth"
mkdir -p "$out/annotation/media"
$as annotate server --data-dir "$out/labelstudio" --document-root "$out/annotation/media" --port 0 \
  --raters rater1,rater2,rater3,rater4,rater5 --detach
$as annotate onboard --server-dir "$out/labelstudio"
$as annotate sample --store "$out/clipstore" --df "$out/df" --annotations "$out/annotation" \
  --unfiltered-train 20 --filtered-train 40 --filtered-eval 80 --unfiltered-eval 160
$as annotate render --annotations "$out/annotation" --media "$out/annotation/media"
$as annotate push --annotations "$out/annotation" --media "$out/annotation/media" --server-dir "$out/labelstudio"
$as annotate demo-raters --annotations "$out/annotation" --server-dir "$out/labelstudio" --error-rates 0.05,0.1,0.15,0.05,0.1
$as annotate pull --annotations "$out/annotation" --server-dir "$out/labelstudio"
$as annotate status --annotations "$out/annotation"

step "7/9 mix: mixture-of-mixtures training shards (three recipes) and the four evaluation sets"
$as mix --store "$out/clipstore" --df "$out/df" --labels "$out/annotation" --out "$out/mix" --examples "$examples"

step "8/9 release: publish audioscope-demo 1.0.0, list, pull the evaluation sets, verify"
if [ -e "$out/releases/audioscope-demo/1.0.0/manifest.json" ]; then
  echo "audioscope-demo:1.0.0 is published already ($out/releases)"
else
  $as release publish --mix "$out/mix" --df "$out/df" --labels "$out/annotation" \
    --name audioscope-demo --version 1.0.0 --root "$out/releases"
fi
$as release list --root "$out/releases"
$as release pull audioscope-demo:1.0.0 --root "$out/releases" --to "$out/pulled" --only eval
$as release verify "$out/pulled"

step "9/9 train the reference AudioScope model (tiny, 4,000 steps${as_budget:+, at most $as_budget s}), evaluate it, and write the HTML report of the run"
$as train --data "$out/mix" --out "$out/audioscope-run" --config tiny --recipe semi-supervised $(budget_flag "$as_budget")
$as evaluate --model "$out/audioscope-run" --data "$out/mix" --out "$out/evaluation" --split test
$as report "$out"

printf '\nDemo done.\n'
printf '  corpus:     %s\n  clip store: %s\n  model:      %s\n  scores:     %s\n  Df:         %s\n' \
  "$out/corpus" "$out/clipstore" "$out/model" "$out/scores/scores.parquet" "$out/df"
printf '  report:     %s (histogram: %s)\n' "$out/df/report.md" "$out/df/score_histogram.png"
printf '  labels:     %s (agreement: %s)\n' "$out/annotation/labels.parquet" "$out/annotation/status.png"
printf '  Label Studio: still running (stop: %s annotate server --data-dir %s --stop)\n' "$as" "$out/labelstudio"
printf '  mixtures:   %s\n  release:    %s (pulled evaluation sets: %s)\n' "$out/mix" "$out/releases" "$out/pulled"
printf '  AudioScope: %s (evaluation: %s)\n' "$out/audioscope-run" "$out/evaluation/report.md"
printf '  the whole run on one page: %s\n' "$out/report/report.html"
