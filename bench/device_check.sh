#!/usr/bin/env bash
# On a machine with a CUDA GPU: the demo grid and the speed benchmark on it, each run's precision / peak GPU memory
# shown from its record. Without a GPU it says so and exits 0 (nothing here is needed on a CPU; CI stays CPU-only).
#   bash bench/device_check.sh [OUT]            (OUT defaults to device-out; run from the repository root)
set -euo pipefail
OUT="${1:-device-out}"
PY="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "device_check: no CUDA GPU visible to torch here; nothing to check (the CPU path is what make test covers)"
  exit 0
fi
"$PY" - <<'PY'
import torch
from peftlab.precision import resolve
print(f"device_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"--precision auto -> {resolve('auto')}")
PY
mkdir -p "$OUT"
start=$(date +%s)
"$PY" -m peftlab demo --out "$OUT/demo"
echo "device_check: demo grid in $(( $(date +%s) - start )) s"
"$PY" - "$OUT/demo/peftlab.db" <<'PY'
import sys
from peftlab.store import Store
for r in Store(sys.argv[1], read_only=True).records():
    speed = (r.time.train_samples_per_s if r.time else None) or 0
    gpu = r.memory.peak_gpu_mb if r.memory else None
    print(f"  {r.model:<14} {r.label:<12} s{r.seed} {r.status:<6} precision {r.config.get('precision')} "
          f"acc {r.accuracy or 0:.3f} train {speed:7.1f} samples/s peak GPU {gpu} MiB")
PY
"$PY" bench/speed.py --out "$OUT/speed" --repeats 1
echo "device_check: results in $OUT/demo/report.html and $OUT/speed/bench.md"
