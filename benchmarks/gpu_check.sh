#!/usr/bin/env bash
# The GPU check, for a session that is lent a GPU machine: one short script (about 8 minutes on one GPU).
#   1. the rehearsal (hqsam rehearse + make reproduce PROFILE=paper, vit_b) on CUDA in fp32 and in bf16;
#   2. peak GPU memory and samples/s of a training step at batch_per_gpu 4 for vit_b and vit_l (1024 px);
#   3. latency of SAM against HQ-SAM (vit_l, one 1024-px image, box prompt);
#   4. the CUDA paths of the metrics (the tests that need CUDA).
# Figures go to $OUT (or ./gpu_check) as logs and JSON. Run from the repository root:
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu_check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 no_proxy=127.0.0.1 NO_PROXY=127.0.0.1
PY="${PY:-.venv/bin/python}"
if [ ! -x "$PY" ]; then
    python3 -m venv .venv && .venv/bin/pip install -q -c constraints.txt -e '.[test,notebooks]' >"$OUT/install.log" 2>&1
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))" \
    | tee "$OUT/device.txt" || exit 1
status=0
step() {  # step NAME COMMAND...: run, log to $OUT/NAME.log, time it, remember a failure
    local name=$1; shift
    local start=$SECONDS
    "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    [ $rc -eq 0 ] || status=1
}

REHEARSAL=$(mktemp -d)
"$PY" -m hqsam rehearse "$REHEARSAL/mirror" --no-serve --images-per-source 2 --coco-images 2 >/dev/null
"$PY" -m http.server --bind 127.0.0.1 --directory "$REHEARSAL/mirror" 8765 >/dev/null 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; rm -rf "$REHEARSAL"' EXIT
sleep 1
TRAIN="[epochs=1,batch_size=8,batch_per_gpu=4,max_val_images=2]"
for precision in fp32 bf16; do
    step "rehearsal_$precision" make -s reproduce PROFILE=paper MODEL_TYPE=vit_b DEVICE=cuda NGPUS=1 \
        MIRROR=http://127.0.0.1:8765 OUT="$REHEARSAL/run_$precision" PY="$PY" \
        ARGS="-p coco_detections=$REHEARSAL/mirror/focalnet_dino_val2017.json -p max_images=2 -p trials=1 \
              -p speed_repeats=3 -p precision=$precision -p train_overrides=$TRAIN"
    cp "$REHEARSAL/run_$precision/results/paper/hq_summary.csv" "$OUT/hq_summary_$precision.csv" 2>/dev/null
    cp "$REHEARSAL/run_$precision/results/paper/speed.json" "$OUT/speed_$precision.json" 2>/dev/null
done
for model in vit_b vit_l; do
    step "train_step_$model" "$PY" benchmarks/train_throughput.py --model-type "$model" --batch-size 4 \
        --loss-points 12544 --repeats 3 --device cuda --json "$OUT/train_step_$model.json"
done
step latency_vit_l "$PY" benchmarks/latency.py --model-type vit_l --device cuda --repeats 10 --json "$OUT/latency_vit_l.json"
step cuda_tests "$PY" -m pytest -q tests/test_metrics.py -k cuda
cat "$OUT/summary.txt"
exit $status
