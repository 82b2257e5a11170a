#!/usr/bin/env bash
# How the bundled synthetic-city models were made (robustseg demo's models), exactly.
# Run from the repository root inside the project's venv (make venv; . .venv/bin/activate).
# On the 2-core CPU machine both trainings ran side by side with one thread each
# (OMP_NUM_THREADS=1); on a GPU drop that and add --device cuda. (The runs were made when the
# architectures were registered as segformer-b0.synthetic / deeplabv3plus-mobilenetv2.synthetic,
# the names their config.json files record; the models and every number are the same.)
set -euo pipefail
DATA=${DATA:-data/synthetic-512}
RUNS=${RUNS:-runs/synthetic}
ASSETS=robustbench_seg/assets

# 1. The synthetic city: 1000 train + 100 val images at 512x256 (val image i is the demo's image i).
robustseg make-synthetic-city --out "$DATA" --train 1000 --val 100 --size 512x256 --seed 0

# 2. Stage 1, from random initialisation (no ImageNet weights): crops 256x256 of the 512x256
#    images resized by 0.75-1.5, flip, photometric distortion, batch 4, AdamW, poly decay.
#    Stopped halfway through the schedule (--stop-after), where rare classes were still at 0 IoU.
OMP_NUM_THREADS=1 robustseg train -m segformer-b0 --cityscapes-root "$DATA" \
  --out "$RUNS/b0" --init none --iters 4000 --stop-after 2000 --batch-size 4 --samples-per-gpu 4 \
  --crop 256,256 --scale 512,256 --ratio-range 0.75,1.5 --lr 8e-4 --head-lr-mult 1 \
  --warmup-iters 100 --eval-every 500 --eval-mode whole --checkpoint-every 500 --workers 1 \
  --log-every 25 &
OMP_NUM_THREADS=1 robustseg train -m deeplabv3plus-mobilenetv2-w256-os16 --cityscapes-root "$DATA" \
  --out "$RUNS/dl" --init none --iters 2000 --stop-after 1000 --batch-size 4 --samples-per-gpu 4 \
  --crop 256,256 --scale 512,256 --ratio-range 0.75,1.5 --optimizer adamw --lr 1e-3 \
  --weight-decay 0.01 --head-lr-mult 1 --poly-power 1.0 --min-lr 0 --warmup-iters 100 \
  --eval-every 500 --eval-mode whole --checkpoint-every 500 --workers 1 --log-every 25 &
wait

# 3. Stage 2, from stage 1's weights, with ENet class weights (1 / ln(1.02 + class frequency))
#    so that the rare classes (poles, signs, lights, riders, two-wheelers) are learned.
OMP_NUM_THREADS=1 robustseg train -m segformer-b0 --cityscapes-root "$DATA" \
  --out "$RUNS/b0-stage2" --init "$RUNS/b0/weights.safetensors" --iters 2600 --batch-size 4 \
  --samples-per-gpu 4 --crop 256,256 --scale 512,256 --ratio-range 0.75,1.5 --lr 6e-4 \
  --head-lr-mult 1 --warmup-iters 50 --class-weight enet --eval-every 500 --eval-mode whole \
  --checkpoint-every 250 --workers 1 --log-every 25 &
OMP_NUM_THREADS=1 robustseg train -m deeplabv3plus-mobilenetv2-w256-os16 --cityscapes-root "$DATA" \
  --out "$RUNS/dl-stage2" --init "$RUNS/dl/weights.safetensors" --iters 1200 --batch-size 4 \
  --samples-per-gpu 4 --crop 256,256 --scale 512,256 --ratio-range 0.75,1.5 --optimizer adamw \
  --lr 8e-4 --weight-decay 0.01 --head-lr-mult 1 --poly-power 1.0 --min-lr 0 --warmup-iters 50 \
  --class-weight enet --eval-every 400 --eval-mode whole --checkpoint-every 200 --workers 1 \
  --log-every 25 &
wait

# 4. Ship in fp16 and measure on the whole val split with the shipped file.
python - "$RUNS" "$ASSETS" <<'PY'
import sys
from robustbench_seg.models.weights import export_weights
runs, assets = sys.argv[1:]
export_weights(f"{runs}/b0-stage2/weights.safetensors", f"{assets}/segformer-b0.synthetic.safetensors")
export_weights(f"{runs}/dl-stage2/weights.safetensors",
               f"{assets}/deeplabv3plus-mobilenetv2-w256-os16.synthetic.safetensors")
PY
for m in segformer-b0 deeplabv3plus-mobilenetv2-w256-os16; do
  robustseg evaluate -m "$m" --weights "$ASSETS/$m.synthetic.safetensors" --cityscapes-root "$DATA" \
    --corruptions none --inference whole --out "$RUNS/val-$m"
done
