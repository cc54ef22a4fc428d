#!/bin/bash
# stream.sh OUT_DIR LABEL FIRST LAST [infergate epp flags...]: probe.py for seeds FIRST..LAST, one after the
# other (this run: 4 streams at once, 2 per variant); the p90s go to OUT_DIR/log-LABEL
out=$1; label=$2; first=$3; last=$4; shift 4
here=$(dirname "$0")
for s in $(seq "$first" "$last"); do
  python "$here/../probe.py" "$out" "$label" "$s" "$@" 2>>"$out/log-$label"
done
