#!/usr/bin/env bash
# The GPU rows of docs/performance.md in one device run (about 6 minutes on an H200, 72 s of it the
# embtune --compile row; add --no-compile to skip that row):
# embtune vs sentence-transformers, random-init BERT-base from a config (no download), 40,000 bundled
# sentences, fp32 and bf16, encode and training, a profile, then the --compile row. Results under $OUT (results.json is written
# row by row, so a run cut short still leaves its rows; table.md and profile.txt at the end).
#   OUT=/tmp/out bash bench/gpu_run.sh            (on the device: $OUT is set by the device tool)
#   OUT=/tmp/out bash bench/gpu_run.sh --sentences 300 --layers 2 --hidden 64 --heads 2   (a quick try)
set -u
OUT=${OUT:-bench-device-out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc; } > "$OUT/machine.txt" 2>&1
"${PYTHON:-python}" -c "import torch, transformers, sentence_transformers as st; print('torch', torch.__version__, 'transformers', transformers.__version__, 'sentence-transformers', st.__version__, 'cuda', torch.cuda.is_available())" > "$OUT/versions.txt" 2>&1
DEVICE=cuda
"${PYTHON:-python}" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || DEVICE=cpu
PYTHONPATH=. timeout "${BENCH_TIMEOUT:-420}" "${PYTHON:-python}" -m bench.performance --device "$DEVICE" --one-process \
  --sentences 40000 --batch-sizes 128,512 --st-batch-sizes 128,512 --token-budget 32768 --repeats 2 \
  --train-steps 150 --warmup-steps 10 --out "$OUT" "$@" 2>&1 | grep -v "Loading weights\|Writing model" | tail -c 200000 > "$OUT/stdout.txt"
echo "exit ${PIPESTATUS[0]}" >> "$OUT/stdout.txt"
tail -60 "$OUT/stdout.txt"
