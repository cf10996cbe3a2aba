"""Train a motion autoencoder: MARDM's continuous AE, the FSQ autoencoders (FSQ-MARDM), the LFQ autoencoders
(lookup-free quantization, MAGVIT-v2) or the VQ ablation.

Examples:
    python prepare_data.py synthetic --out dataset/Synthetic --num_motions 400 --seed 0
    python train_AE.py --config options/configs/tiny_ae.yaml --name FSQ_Tiny           # a minute on CPU
    python train_AE.py --config options/configs/fsq_ae_high.yaml --name FSQ_AE_High    # the FSQ-MARDM recipe
    python train_AE.py --config options/configs/mardm_ae.yaml --name AE                # MARDM's AE on t2m_67
    accelerate launch --multi_gpu --num_processes 4 train_AE.py --config options/configs/fsq_ae_high.yaml --name F
    python train_AE.py --config options/configs/fsq_ae_high.yaml --name FSQ_AE_High --is_continue

The run is written to checkpoints/<dataset_name>/<name>/ (model/latest.tar, model/net_best_loss.tar or, with
--need_evaluation, model/net_best_fid.tar, TensorBoard events in model/, opt.yaml). ``--batch_size`` is the global
batch over all processes.
"""

from __future__ import annotations

import sys

from options.config import parse_with_config
from options.tokenizer_options import get_train_ae_parser, model_overrides
from utils.cli import RESUME_TRAINING, run_script
from utils.tokenizer_stage import train_tokenizer


def main(args) -> None:
    train_tokenizer(args, args.model, model_overrides(args))


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_ae_parser(), sys.argv[1:])), resume=RESUME_TRAINING)
