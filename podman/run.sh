#!/usr/bin/env bash
# Run flyby's full-stack gates in the Isaac Sim 5.1 + PX4 container (podman/README.md).
#
#   podman/run.sh [--dry-run] [--image IMAGE] [PYTEST ARGS...]
#
# Every other argument goes to `pytest tests/fullstack` inside the container, e.g.
#   podman/run.sh -m phase1 -x
# --dry-run prints the exact podman command (one line, shell-quoted) and runs nothing.
# The report lands in the checkout's output/ (output/report.html), as outside the container.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
image="${FLYBY_IMAGE:-localhost/flyby-isaac:5.1.0}"
cache="${FLYBY_ISAAC_CACHE:-$HOME/docker/isaac-sim}"  # Isaac Sim's caches, kept between runs
dry_run=0
pytest_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --image)
            [ $# -ge 2 ] || { echo "run.sh: --image needs a value, e.g. --image $image" >&2; exit 2; }
            image="$2"
            shift
            ;;
        --image=*) image="${1#--image=}" ;;
        *) pytest_args+=("$1") ;;
    esac
    shift
done

# The Isaac Sim 5.x image runs as uid/gid 1234 with its home in /isaac-sim; keep-id maps the
# calling user onto it, so the container writes output/ and the caches as that user.
cmd=(
    podman run --rm
    --device nvidia.com/gpu=all
    --security-opt=label=disable
    --userns=keep-id:uid=1234,gid=1234
    --user 1234:1234
    --shm-size=8g
    -v "$repo/output:/workspace/flyby/output:rw"
    -v "$cache/cache/main:/isaac-sim/.cache:rw"
    -v "$cache/cache/computecache:/isaac-sim/.nv/ComputeCache:rw"
    -v "$cache/logs:/isaac-sim/.nvidia-omniverse/logs:rw"
    -v "$cache/config:/isaac-sim/.nvidia-omniverse/config:rw"
    -v "$cache/data:/isaac-sim/.local/share/ov/data:rw"
    -v "$cache/pkg:/isaac-sim/.local/share/ov/pkg:rw"
    "$image"
    tests/fullstack
    ${pytest_args[@]+"${pytest_args[@]}"}
)

if [ "$dry_run" = 1 ]; then
    line=$(printf '%q ' "${cmd[@]}")
    echo "${line% }"
    exit 0
fi
if ! command -v podman >/dev/null 2>&1; then
    echo "run.sh: podman is not installed; see podman/README.md (prerequisites: NVIDIA driver," \
        "nvidia-container-toolkit, 'nvidia-ctk cdi generate')" >&2
    exit 127
fi
mkdir -p "$repo/output" "$cache/cache/main" "$cache/cache/computecache" "$cache/logs" \
    "$cache/config" "$cache/data" "$cache/pkg"
exec "${cmd[@]}"
