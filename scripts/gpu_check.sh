#!/usr/bin/env bash
# Every GPU measurement and CUDA test of realciao in one call (see scripts/gpu_check.py):
#
#   bash scripts/gpu_check.sh OUTDIR              # a machine with one CUDA GPU: under 8 minutes
#   bash scripts/gpu_check.sh OUTDIR --dry-run    # every check on the CPU at tiny sizes (CI)
#
# Writes OUTDIR/gpu_check.json and OUTDIR/gpu_check.md (plus logs/ and the checks' outputs).
# Exit status: 0 when every check is ok, 1 when one failed or ran out of time, 2 on misuse.
set -euo pipefail

if [[ $# -lt 1 || "$1" == -* ]]; then
    echo "usage: bash scripts/gpu_check.sh OUTDIR [--dry-run] [--only CHECK,...]" >&2
    exit 2
fi
out=$1
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python=${PYTHON:-python3}
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$root"
# the checkout's realciao, also where it is not installed (a copied working tree)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
if ! "$python" -c "import realciao" 2>/dev/null; then
    echo "gpu_check: realciao does not import with $python; install it first: pip install -e ." >&2
    exit 2
fi
exec "$python" scripts/gpu_check.py "$out" "$@"
