#!/bin/bash
# stream.sh LABEL FIRST LAST [epp args...]
label=$1; first=$2; last=$3; shift 3
cd /work/wt/benchsnap4
export PYTHONPATH=$PWD/src INFERGATE_BENCH_VENVS=/work/main/.bench-venvs
for s in $(seq $first $last); do
  /work/main/.venv/bin/python /tmp/fc/probe2/probe.py $label $s "$@" 2>>/tmp/fc/probe2/log-$label
done
