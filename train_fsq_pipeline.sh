#!/usr/bin/env bash
# The FSQ-MARDM pipeline in one command: FSQ-AE -> evaluate -> FSQ-MARDM -> evaluate -> sample.
#
#   bash train_fsq_pipeline.sh --quick                     # synthetic data, tiny models, CPU, about 4 minutes
#   bash train_fsq_pipeline.sh --dataset_name t2m_67       # the paper recipe (GPU; needs dataset/HumanML3D and
#                                                          # checkpoints/t2m_67/text_mot_match from train_evaluator.py)
#
# Options: --quick, --dataset_name NAME, --data_root DIR, --checkpoints_dir DIR (default ./checkpoints),
#          --prefix NAME (run-name prefix, default FSQ), --python PATH (default: .venv, created on first use).
# The tokenizer file evaluated and generated from is the one of `reproduce.py fsq_mardm` (MARDM's choice): latest.tar,
# and on kit_64 the best validation FID (net_best_fid.tar; its training then validates with the evaluator), with the
# recipe's KIT-ML batch sizes and schedules. --quick runs on the synthetic dataset only. Every training stage skips
# itself when its run is finished and continues one that was stopped, and the evaluations reuse their finished
# replications, so a rerun continues where a failed one stopped. Relative paths given on the command line are the
# caller's; the defaults are the repository's.
set -euo pipefail

# The stages run from the repository, so a relative path given here is made absolute against the caller's folder
# first (a --python without a slash is a command on PATH).
absolute() { case "$1" in /*|"") echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
QUICK=0
DATASET=""
DATA_ROOT=""
CKPT=./checkpoints
PREFIX=FSQ
PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --dataset_name) DATASET=$2; shift ;;
    --data_root) DATA_ROOT=$(absolute "$2"); shift ;;
    --checkpoints_dir) CKPT=$(absolute "$2"); shift ;;
    --prefix) PREFIX=$2; shift ;;
    --python) case "$2" in */*) PY=$(absolute "$2") ;; *) PY=$2 ;; esac; shift ;;
    -h|--help) sed -n 2,15p "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# As reproduce.py refuses it, before anything is made: the quick settings, data and evaluator are the synthetic ones.
if [ "$QUICK" = 1 ] && [ -n "$DATASET" ] && [ "$DATASET" != synthetic ]; then
  echo "--quick runs on the synthetic dataset, not --dataset_name $DATASET" >&2
  exit 2
fi
cd "$(dirname "$0")"

if [ -z "$PY" ]; then
  bash tools/setup_env.sh
  PY=.venv/bin/python
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONUNBUFFERED=1
start=$(date +%s)
stage() { echo; echo "=== [$(( $(date +%s) - start ))s] $*"; }

if [ "$QUICK" = 1 ]; then
  DATASET=${DATASET:-synthetic}
  DATA_ROOT=${DATA_ROOT:-dataset/Synthetic}
  AE_ARGS=(--config options/configs/tiny_ae.yaml --max_iters 600 --eval_every 200 --save_every 200)
  EV_ARGS=(--sizes small --max_iters 200 --pretrain_iters 60 --batch_size 32 --num_workers 0 --eval_every 50)
  LE_ARGS=(--max_iters 200 --batch_size 32 --num_workers 0)
  GEN_ARGS=(--config options/configs/tiny_mardm.yaml --max_iters 800 --milestones 600 --eval_every 200
            --save_every 200)
  AE_EVAL_ARGS=(--replications 3)
  EVAL_ARGS=(--replications 3 --mm_batches 1 --mm_repeats 11 --time_steps 8 --cfg 2.5)
  SAMPLE_ARGS=(--time_steps 8 --cfg 2.5)
  AE_MODEL=FSQ_AE_Tiny
  # A finished dataset there is kept (with a warning when it was built with other settings than these).
  stage "synthetic data -> $DATA_ROOT"
  "$PY" prepare_data.py synthetic --out "$DATA_ROOT" --num_motions 400 --seed 0 --keep_existing
else
  DATASET=${DATASET:-t2m_67}
  AE_ARGS=(--config options/configs/fsq_ae_high.yaml)
  EV_ARGS=()
  # MoMask's and MARDM's estimator reads the CLIP text feature, the generator preset's encoder (both from --clip_path's
  # default, deps/ViT-B-32.pt, under $FSQ_MARDM_HOME when set).
  LE_ARGS=(--text_encoder clip)
  GEN_ARGS=(--config options/configs/fsq_mardm_sit_xl.yaml)
  AE_EVAL_ARGS=()
  EVAL_ARGS=()
  SAMPLE_ARGS=()
  AE_MODEL=FSQ_AE_High
fi

# The dataset name resolves as every stage resolves it (registered, or a folder with a spec.json), so a misspelt one
# fails in the stages' words before the evaluator or a run folder is looked for.
"$PY" -c 'import sys
from utils.dataset_specs import get_dataset_spec
try:
    get_dataset_spec(sys.argv[1], sys.argv[2] or None)
except ValueError as e:
    print(f"train_fsq_pipeline.sh: error: --dataset_name: {e}", file=sys.stderr)
    sys.exit(2)' "$DATASET" "$DATA_ROOT"

# The tokenizer file the evaluation reads and the generator trains on, as utils/recipes.py's fsq_mardm recipe (MARDM's
# scripts): latest.tar, on KIT-ML the best validation FID, which its training then has to compute; KIT-ML also trains
# the AE with batch 512 and learning-rate decay 0.1, the generator with batch 16 and its milestone at 20000.
AE_FILE=latest
if [ "$DATASET" = kit_64 ]; then
  AE_FILE=net_best_fid
  AE_ARGS+=(--batch_size 512 --lr_decay 0.1 --need_evaluation)
  GEN_ARGS+=(--batch_size 16 --milestones 20000)
fi
ROOT_ARGS=(--dataset_name "$DATASET" --checkpoints_dir "$CKPT")
[ -n "$DATA_ROOT" ] && ROOT_ARGS+=(--data_root "$DATA_ROOT")
AE_NAME=${PREFIX}_AE
GEN_NAME=${PREFIX}_MARDM
RUNS=$CKPT/$DATASET

# The evaluator is done once train_evaluator.py has written its final validation (finest.tar is written at every better
# validation, long before the end), or when its files were placed by hand (finest.tar without a run's latest.tar).
EV_RUN=$RUNS/text_mot_match
evaluator_done() {
  [ -f "$EV_RUN/eval/evaluator_val.json" ] || { [ -f "$EV_RUN/model/finest.tar" ] && [ ! -f "$EV_RUN/model/latest.tar" ]; }
}
if ! evaluator_done; then
  if [ "$QUICK" = 1 ]; then
    stage "evaluator (text-motion matching) on $DATASET"
    cont=()  # a run stopped in either of its two stages continues
    if [ -f "$EV_RUN/model/latest.tar" ] || [ -f "${EV_RUN}_decomp/model/latest.tar" ]; then cont=(--is_continue); fi
    "$PY" train_evaluator.py "${ROOT_ARGS[@]}" "${EV_ARGS[@]}" "${cont[@]}"
  else
    echo "no finished evaluator at $EV_RUN: place the official files there, or run (or finish, with --is_continue)" \
         "train_evaluator.py" >&2
    exit 1
  fi
fi

if [ ! -f "$RUNS/$AE_NAME/model/latest.tar" ] || [ -f "$RUNS/$AE_NAME/.running" ]; then
  stage "FSQ autoencoder $AE_MODEL -> $RUNS/$AE_NAME"
  cont=(); [ -f "$RUNS/$AE_NAME/model/latest.tar" ] && cont=(--is_continue)
  mkdir -p "$RUNS/$AE_NAME" && touch "$RUNS/$AE_NAME/.running"
  "$PY" train_AE.py "${ROOT_ARGS[@]}" "${AE_ARGS[@]}" --model "$AE_MODEL" --name "$AE_NAME" "${cont[@]}"
  rm -f "$RUNS/$AE_NAME/.running"
fi

stage "evaluate the FSQ autoencoder"
"$PY" evaluation_AE.py "${ROOT_ARGS[@]}" --name "$AE_NAME" --which_epoch "$AE_FILE" "${AE_EVAL_ARGS[@]}" --is_continue

LE_RUN=$RUNS/length_estimator
if [ ! -f "$LE_RUN/model/latest.tar" ] || [ -f "$LE_RUN/.running" ]; then
  stage "length estimator"
  cont=(); [ -f "$LE_RUN/model/latest.tar" ] && cont=(--is_continue)
  mkdir -p "$LE_RUN" && touch "$LE_RUN/.running"
  "$PY" train_length_estimator.py "${ROOT_ARGS[@]}" "${LE_ARGS[@]}" "${cont[@]}"
  rm -f "$LE_RUN/.running"
fi

if [ ! -f "$RUNS/$GEN_NAME/model/latest.tar" ] || [ -f "$RUNS/$GEN_NAME/.running" ]; then
  stage "FSQ-MARDM -> $RUNS/$GEN_NAME"
  cont=(); [ -f "$RUNS/$GEN_NAME/model/latest.tar" ] && cont=(--is_continue)
  mkdir -p "$RUNS/$GEN_NAME" && touch "$RUNS/$GEN_NAME/.running"
  "$PY" train_MARDM.py "${ROOT_ARGS[@]}" "${GEN_ARGS[@]}" --ae_name "$AE_NAME" --ae_model "$AE_MODEL" \
      --ae_ckpt "$RUNS/$AE_NAME/model/$AE_FILE.tar" --name "$GEN_NAME" "${cont[@]}"
  rm -f "$RUNS/$GEN_NAME/.running"
fi

stage "evaluate FSQ-MARDM"
"$PY" evaluation_MARDM.py "${ROOT_ARGS[@]}" --name "$GEN_NAME" "${EVAL_ARGS[@]}" --is_continue

stage "sample"
PROMPTS=$(mktemp)
trap 'rm -f "$PROMPTS"' EXIT  # also when sample.py fails
cat > "$PROMPTS" <<'EOF'
a person walks forward slowly#120
a person jumps in place#80
someone waves with their right hand#100
a person runs forward quickly#100
EOF
"$PY" sample.py --dataset_name "$DATASET" --checkpoints_dir "$CKPT" --name "$GEN_NAME" --text_path "$PROMPTS" "${SAMPLE_ARGS[@]}"
stage "done: runs in $RUNS, samples in generation/${GEN_NAME}_${DATASET}/"
