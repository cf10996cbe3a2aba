"""Train a VQ tokenizer: T2M-GPT's VQ-VAE (``--num_quantizers 1``), MoMask's residual VQ-VAE or MotionMillion's FSQ.

Examples:
    python prepare_data.py synthetic --out dataset/Synthetic --num_motions 300 --seed 0
    python train_vq.py --config options/configs/tiny_vq.yaml --name RVQ_Tiny              # a minute on CPU
    python train_vq.py --config options/configs/momask_rvq.yaml --name rvq_nq6             # MoMask RVQ-VAE
    python train_vq.py --config options/configs/t2m_gpt_vq.yaml --name VQVAE               # T2M-GPT VQ-VAE
    python train_vq.py --config options/configs/motionmillion_fsq.yaml --name FSQ_MM       # MotionMillion tokenizer
    torchrun --nproc_per_node 2 train_vq.py --config options/configs/tiny_vq.yaml --name RVQ_ddp

Codebook EMA statistics are all-reduced across processes, so every GPU keeps the same codebook. The run is written to
checkpoints/<dataset_name>/<name>/.
"""

from __future__ import annotations

import sys

from models.tokenizers import VQ_MODELS, VQVAE
from options.config import parse_with_config
from options.tokenizer_options import get_train_vq_parser, model_overrides
from utils.cli import run_script
from utils.tokenizer_stage import train_tokenizer


def main(args) -> None:
    model_name = args.model or ("VQVAE" if args.num_quantizers == 1 else "RVQVAE")
    overrides = model_overrides(args)
    if getattr(VQ_MODELS.get(model_name), "func", None) is VQVAE:
        # T2M-GPT's VQ-VAE is the one-layer case; it has no residual-layer arguments.
        if overrides.pop("num_quantizers", 1) != 1:
            raise SystemExit("--model VQVAE has one codebook; drop --num_quantizers or use --model RVQVAE")
        for key in ("quantize_dropout_prob", "shared_codebook"):
            overrides.pop(key, None)
    train_tokenizer(args, model_name, overrides)


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_vq_parser(), sys.argv[1:])))
