"""Train a VQ tokenizer: T2M-GPT's VQ-VAE (``--num_quantizers 1``), MoMask's residual VQ-VAE or MotionMillion's FSQ.

Examples:
    python prepare_data.py synthetic --out dataset/Synthetic --num_motions 400 --seed 0
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
from utils.cli import RESUME_TRAINING, run_script
from utils.tokenizer_stage import train_tokenizer


def main(args) -> None:
    model_name = args.model or ("VQVAE" if args.num_quantizers == 1 else "RVQVAE")
    overrides = model_overrides(args)
    if getattr(VQ_MODELS.get(model_name), "func", None) is VQVAE:
        # T2M-GPT's VQ-VAE is the one-layer case; it has no residual-layer arguments.
        if overrides.pop("num_quantizers", 1) != 1:
            raise SystemExit(f"--model {model_name} has one codebook; drop --num_quantizers or use --model RVQVAE")
        residual = [f"--{key}" for key in ("quantize_dropout_prob", "shared_codebook") if key in overrides]
        if residual:
            raise SystemExit(f"{' and '.join(residual)}: residual-layer settings, but --model {model_name} has one "
                             "codebook; drop them or use --model RVQVAE")
    elif "quantizer_type" in overrides:
        raise SystemExit(f"--quantizer {args.quantizer}: the codebook update rule is a setting of T2M-GPT's VQ-VAE "
                         f"(--model VQVAE or --num_quantizers 1), not of {model_name}")
    train_tokenizer(args, model_name, overrides)


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_train_vq_parser(), sys.argv[1:])), resume=RESUME_TRAINING)
