#!/usr/bin/env bash
# The main job, end to end, on the embedded default: the synthetic corpus and
# Beam's local runner. Every step is resumable, so running it again only does
# what is missing. Called by `make demo`.
set -euo pipefail
out=${1:-demo-output}
videos=${2:-24}
seed=${3:-2026}
as=".venv/bin/audioscope"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1/2 synthetic corpus ($videos videos, seed $seed)"
$as synth --out "$out/corpus" --videos "$videos" --seed "$seed"

step "2/2 ingest: corpus -> clip store"
$as ingest "$out/corpus/list.csv" --media-root "$out/corpus" --out "$out/clipstore"
$as clips stats --store "$out/clipstore"

printf '\nDemo done.\n  corpus:     %s\n  clip store: %s\n' "$out/corpus" "$out/clipstore"
