#!/usr/bin/env bash
# Regenerates the seed corpora (fuzz/corpus/<target>/) from real values:
# the ledger's consortium fixture, ../shared/vectors and the shipped config
# example. The seeds are committed; run this after a change to a format,
# then review and commit the diff. Fuzzing adds its own finds to the same
# directories; delete those before regenerating if you want only seeds.
set -euo pipefail
cd "$(dirname "$0")"
vectors=${QUORATE_VECTORS:-../../shared/vectors}
# A normal (uninstrumented) build: the generator is not a fuzz target.
cargo run --locked --quiet --example seeds -- corpus "$vectors" ..
