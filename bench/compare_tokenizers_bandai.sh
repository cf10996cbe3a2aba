#!/usr/bin/env bash
# First tokenizer comparison on real motion: FSQ_AE_High, VQ_AE_Model and a 6-layer RVQ-VAE, all at a small width,
# each trained for the same number of steps on the Bandai Namco clips imported from BVH, then evaluated on the test
# split (MPJPE, codebook usage). Prints one table; the numbers in the README come from this script.
#
#   bash bench/compare_tokenizers_bandai.sh [BVH_DIR] [STEPS]
#
# BVH_DIR defaults to ../shared/data/bandai-namco-1/bvh (not part of the repository; CC BY-NC 4.0).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-../shared/data/bandai-namco-1/bvh}
STEPS=${2:-1000}
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK:-runs/bandai_compare}
DATA=$WORK/bandai
CKPT=$WORK/checkpoints
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -d "$SRC" ] || { echo "no BVH folder at $SRC" >&2; exit 1; }
[ -f "$DATA/spec.json" ] || "$PY" prepare_data.py bvh --src "$SRC" --out "$DATA" --skeleton bandai
COMMON=(--dataset_name bandai --data_root "$DATA" --checkpoints_dir "$CKPT" --max_iters "$STEPS" --batch_size 64
        --lr 2e-4 --warm_up_iter 100 --milestones $((STEPS * 8 / 10)) --lr_decay 0.1 --num_workers 0
        --width 128 --depth 2 --eval_every $((STEPS / 2)) --save_every $((STEPS / 2)) --log_every 100 --seed 0)
run() {  # name script args...
  local name=$1 script=$2; shift 2
  # A run folder from an interrupted call holds a latest.tar short of STEPS (one is written at step 0):
  # --is_continue trains it on to STEPS, and does nothing for a finished run.
  local resume=()
  [ -f "$CKPT/bandai/$name/model/latest.tar" ] && resume=(--is_continue)
  "$PY" "$script" "${COMMON[@]}" --name "$name" "${resume[@]}" "$@"
  "$PY" evaluation_AE.py --dataset_name bandai --data_root "$DATA" --checkpoints_dir "$CKPT" --name "$name" \
      --which_epoch latest --replications 1 > "$WORK/$name.eval.txt"
}
run FSQ_AE_High train_AE.py --model FSQ_AE_High --code_dim 128
run VQ_AE_Model train_AE.py --model VQ_AE_Model --code_dim 128 --nb_code 512
run RVQ6 train_vq.py --model RVQVAE --num_quantizers 6 --code_dim 128 --nb_code 512
"$PY" - "$CKPT/bandai" <<'PY'
import glob, json, os, sys
print(f"{'tokenizer':<14}{'codes':>10}{'MPJPE/frame mm':>16}{'MPJPE/seq mm':>14}{'usage':>22}{'bits/s':>9}")
for name in ("FSQ_AE_High", "VQ_AE_Model", "RVQ6"):
    path = sorted(glob.glob(os.path.join(sys.argv[1], name, "eval", "eval_*.json")))[-1]
    r = json.load(open(path))
    rec = r["reconstruction"]
    usage = ", ".join(f"{u['usage']:.2f}" for u in rec["codebook"]["layers"])
    print(f"{name:<14}{rec['codebook']['codebook_size']:>10}{rec['mpjpe_mm']:>16.1f}{rec['mpjpe_seq_mm']:>14.1f}"
          f"{usage:>22}{r['bits_per_second']:>9.1f}")
PY
