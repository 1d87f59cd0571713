#!/usr/bin/env bash
# The seed plan's interface to the Phase 4 pipeline: train -> evaluate -> video -> report.
#   scripts/run_full_pipeline.sh NAME [TRAINING_STEPS] [EVAL_EPISODES]
# A thin wrapper over `flyby pipeline` (see `flyby pipeline --help`); extra options after the
# three positionals are passed through. Exit codes are flyby pipeline's: 0 done, 1 a stage failed,
# 2 bad input, 3 NAME exists with another config, 130 interrupted (rerun to resume).
set -euo pipefail
if [ $# -lt 1 ] || [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    [ $# -ge 1 ] && exit 0 || exit 2
fi
name=$1; shift
args=("$name")
if [ $# -ge 1 ] && [[ $1 != -* ]]; then
    [[ $1 =~ ^[0-9]+$ ]] || { echo "run_full_pipeline.sh: TRAINING_STEPS must be a positive integer, got '$1'" >&2; exit 2; }
    args+=(--total-steps "$1"); shift
fi
if [ $# -ge 1 ] && [[ $1 != -* ]]; then
    [[ $1 =~ ^[0-9]+$ ]] || { echo "run_full_pipeline.sh: EVAL_EPISODES must be a positive integer, got '$1'" >&2; exit 2; }
    args+=(--eval-episodes "$1"); shift
fi
here=$(cd "$(dirname "$0")/.." && pwd)
flyby=${FLYBY:-}
if [ -z "$flyby" ]; then
    if [ -x "$here/.venv/bin/flyby" ]; then flyby="$here/.venv/bin/flyby"; else flyby=flyby; fi
fi
exec "$flyby" pipeline "${args[@]}" "$@"
