#!/bin/sh
# The quick set of benchmarks, for comparing two commits: every printed number other
# than a time should agree when a change is not meant to change behaviour.
# Usage: benchmarks/quick.sh OUTDIR [TAG]   (from a checkout; PYTHON defaults to python)
set -e
out=$1; tag=${2:-quick}
mkdir -p "$out"
PY=${PYTHON:-python}
export OPENBLAS_NUM_THREADS=1 MPLBACKEND=Agg
$PY benchmarks/seed.py > "$out/seed.txt" 2>&1
$PY benchmarks/varcomp.py --sizes 1000 > "$out/varcomp.txt" 2>&1
$PY benchmarks/units.py --problems 20 > "$out/units.txt" 2>&1
$PY benchmarks/null_model.py --replicates 50 > "$out/null.txt" 2>&1
$PY benchmarks/accuracy.py --setting s1 --reps 20 --tag "_$tag" > "$out/acc.txt" 2>&1
$PY benchmarks/interval_coverage.py --setting tutorial --reps 20 > "$out/cov.txt" 2>&1
$PY benchmarks/scale.py --growth --scale 0.1 > "$out/scale.txt" 2>&1
