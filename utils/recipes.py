"""Paper recipes: the stages that reproduce a published row, and the numbers the paper reported for it.

A recipe is data: each stage names the script, its run folder and the flags it runs with, once for the published
setting (the shipped ``options/configs`` presets on the paper's dataset) and once for ``--quick`` (the tiny presets on
the synthetic dataset, a few minutes on a CPU, to check the chain before spending GPU days on it). The evaluation
stages carry the published numbers with where each comes from; numbers quoted from an aggregator or from memory are
marked unverified and say so in every report. ``reproduce.py`` plans the stages (``utils/recipe_plan.py``), runs
them (``utils/recipe_runner.py``) and writes the report (``utils/reproduce_report.py``).

The checkpoint each evaluation reads follows the paper's own code: MARDM evaluates ``latest.tar`` with its EMA
weights; MoMask the masked transformer's ``latest.tar`` with the residual transformer's and the RVQ's
``net_best_fid.tar`` (both chosen on the val split); T2M-GPT its VQ-VAE's last weights. So does the evaluation seed:
MoMask's 10107 (its ``eval_option`` default), T2M-GPT's 123 (the ``option_vq`` default ``VQ_eval.py`` seeds torch
with), MARDM's 3407 (the scripts' default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

QUICK_DATASET = "synthetic"
QUICK_DATA_ROOT = "dataset/Synthetic"
EVALUATOR_RUN = "text_mot_match"

# Metrics a report can compare: the protocol's (utils.eval_report.METRICS) and the tokenizers' MPJPE. ``lower`` and
# ``higher`` say which way is better; diversity and multimodality have no better side of the published value.
BETTER = {"fid": "lower", "matching_score": "lower", "mpjpe_mm": "lower", "mpjpe_seq_mm": "lower",
          "top1": "higher", "top2": "higher", "top3": "higher", "diversity": None, "multimodality": None}


@dataclass(frozen=True)
class Published:
    """One published number. ``verified`` is False where it was quoted from an aggregator or from memory, not read in
    the paper or reproduced from the released checkpoint: ``source`` says which."""

    metric: str
    value: float
    source: str
    verified: bool = True

    def __post_init__(self) -> None:
        if self.metric not in BETTER:
            raise ValueError(f"published metric {self.metric!r}: expected one of {sorted(BETTER)}")


@dataclass(frozen=True)
class Stage:
    """One command of a recipe.

    ``run``: the run folder under ``<checkpoints_dir>/<dataset>/`` the stage trains (or, for an evaluation, reads).
    ``args`` / ``quick_args``: the flags besides ``--dataset_name``, ``--checkpoints_dir``, ``--data_root`` and
    ``--name``, which every stage gets. They may name other stages' runs as ``{stage name}`` and the dataset's run
    folder as ``{runs}``. ``dataset_args``: extra flags on one dataset (KIT's guidance and batch size).
    ``published``: for an evaluation, the paper's numbers per dataset.
    """

    name: str
    script: str
    run: str
    args: tuple[str, ...]
    quick_args: tuple[str, ...]
    evaluation: bool = False
    dataset_args: dict[str, tuple[str, ...]] = field(default_factory=dict)
    published: dict[str, tuple[Published, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Recipe:
    """A published row: its stages in order, the datasets it was published on (the first is the default)."""

    name: str
    title: str
    paper: str
    datasets: tuple[str, ...]
    stages: tuple[Stage, ...]
    notes: str = ""

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"recipe {self.name!r} has no stage {name!r}")

    def published(self, dataset: str) -> dict[str, tuple[Published, ...]]:
        """The published numbers on ``dataset``, per evaluation stage (stages without any are left out)."""
        return {s.name: s.published[dataset] for s in self.stages if s.evaluation and s.published.get(dataset)}


def _cfg(preset: str) -> tuple[str, str]:
    return "--config", f"options/configs/{preset}.yaml"


# Reproduction counts: the tokenizer evaluations of the papers and the generator ones share the Guo et al. protocol
# (20 replications; multimodality over 3 batches x 30 repeats for generators, the defaults of our scripts).
_QUICK_AE_EVAL = ("--replications", "3")
_QUICK_GEN_EVAL = ("--replications", "2", "--mm_batches", "1", "--mm_repeats", "11")
_QUICK_TOKENIZER = ("--max_iters", "300", "--eval_every", "100", "--save_every", "100")
_QUICK_GENERATOR = ("--max_iters", "200", "--eval_every", "100", "--save_every", "100")
_CLIP = ("--clip_path", "{clip_path}")  # the default CLIP file, under $FSQ_MARDM_HOME when set
# Evaluation seeds of the papers' code (reference/generators-and-evaluation.md §3.5 and MoMask's eval_option: 10107;
# T2M-GPT's VQ_eval.py seeds torch with option_vq's default 123, reference/tokenizers.md §2.4); MARDM's 3407 is the
# scripts' default.
_MOMASK_EVAL_SEED = ("--seed", "10107")
_T2M_GPT_EVAL_SEED = ("--seed", "123")

_MEMORY_T2M_GPT = "T2M-GPT paper, quoted from memory (not checked against the paper)"
_MEMORY_MOMASK = "MoMask paper, quoted from memory (not checked against the paper)"
_MEMORY_MARDM = "MARDM paper (arXiv 2411.16575) Table 2, quoted from memory: check before relying on it"

# --------------------------------------------------------------------------------------------------------------------
# stages shared by several recipes
# --------------------------------------------------------------------------------------------------------------------
T2M_GPT_VQ = Stage("tokenizer", "train_vq.py", "VQVAE_t2m_gpt", _cfg("t2m_gpt_vq"),
                   (*_cfg("tiny_vq"), "--model", "VQVAE_Tiny", "--num_quantizers", "1", "--quantizer", "ema_reset",
                    *_QUICK_TOKENIZER))
# T2M-GPT evaluates its tokenizer one motion at a time, each cut to its length (--per_motion).
T2M_GPT_VQ_EVAL = Stage(
    "evaluate", "evaluation_AE.py", "VQVAE_t2m_gpt", ("--which_epoch", "latest", "--per_motion", *_T2M_GPT_EVAL_SEED),
    ("--which_epoch", "latest", "--per_motion", *_T2M_GPT_EVAL_SEED, *_QUICK_AE_EVAL), evaluation=True,
    published={
        "t2m": (Published("fid", 0.070, "T2M-GPT paper via an aggregator (wizwand, 'HumanML3D FID 0.07') and a blog "
                                        "citing it", verified=False),
                Published("top1", 0.501, _MEMORY_T2M_GPT, verified=False),
                Published("matching_score", 3.072, _MEMORY_T2M_GPT, verified=False),
                Published("diversity", 9.593, _MEMORY_T2M_GPT, verified=False)),
        "kit": (Published("fid", 0.472, _MEMORY_T2M_GPT, verified=False),),
    })

MOMASK_RVQ = Stage("tokenizer", "train_vq.py", "rvq_nq6_dc512_nc512_noshare_qdp0.2",
                   (*_cfg("momask_rvq"), "--need_evaluation"),
                   (*_cfg("tiny_vq"), "--need_evaluation", *_QUICK_TOKENIZER))
MOMASK_RVQ_EVAL = Stage(
    "evaluate_tokenizer", "evaluation_AE.py", "rvq_nq6_dc512_nc512_noshare_qdp0.2",
    ("--which_epoch", "net_best_fid", *_MOMASK_EVAL_SEED), ("--which_epoch", "net_best_fid", *_MOMASK_EVAL_SEED,
                                                            *_QUICK_AE_EVAL), evaluation=True,
    published={
        "t2m": (Published("fid", 0.019, "MoMask paper; the released checkpoint also evaluates to 0.019 "
                                        "(momask-codes issue #8)"),
                Published("mpjpe_mm", 29.5, _MEMORY_MOMASK, verified=False)),
        "kit": (Published("fid", 0.112, _MEMORY_MOMASK, verified=False),
                Published("mpjpe_mm", 37.2, _MEMORY_MOMASK, verified=False)),
    })


# MARDM on its two datasets. The AE weights its scripts load (train_MARDM.py, evaluation, sampling) are latest.tar on
# HumanML3D and the best validation FID on KIT-ML, which needs the evaluator while the AE trains; on KIT-ML the AE
# trains at batch 512 with lr decay 0.1 and the generator at batch 16 with its milestone at 20000 (MARDM's README).
_MARDM_AE_FILE = {"t2m_67": "latest", "kit_64": "net_best_fid"}
_MARDM_KIT_AE = ("--batch_size", "512", "--lr_decay", "0.1", "--need_evaluation")
_MARDM_KIT_GENERATOR = ("--batch_size", "16", "--milestones", "20000")


def _ae_file(which: str) -> tuple[str, str]:
    return "--ae_ckpt", f"{{runs}}/{{tokenizer}}/model/{which}.tar"


def _mardm_stages(tokenizer: str, tokenizer_run: str, tiny_tokenizer: str, generator: str, generator_run: str,
                  tiny_generator: str, tokenizer_script: str = "train_AE.py", tokenizer_preset: str = "mardm_ae",
                  tokenizer_model: tuple[str, ...] = (),
                  published: dict[str, tuple[Published, ...]] | None = None) -> tuple[Stage, ...]:
    """Tokenizer, its evaluation, the MARDM-family generator on it and the generator's evaluation (MARDM's settings:
    the AE file of ``_MARDM_AE_FILE``, the EMA weights of the generator's ``latest.tar``, 18 steps, guidance 4.5 on
    HumanML3D and 2.5 on KIT-ML)."""
    return (
        Stage("tokenizer", tokenizer_script, tokenizer_run, (*_cfg(tokenizer_preset), *tokenizer_model),
              (*_cfg("tiny_ae"), "--model", tiny_tokenizer, *_QUICK_TOKENIZER),
              dataset_args={"kit_64": _MARDM_KIT_AE}),
        Stage("evaluate_tokenizer", "evaluation_AE.py", tokenizer_run, (),
              ("--which_epoch", "latest", *_QUICK_AE_EVAL), evaluation=True,
              dataset_args={d: ("--which_epoch", which) for d, which in _MARDM_AE_FILE.items()}),
        Stage("generator", "train_MARDM.py", generator_run,
              (*_cfg(generator), "--ae_name", "{tokenizer}", "--ae_model", tokenizer, *_CLIP),
              (*_cfg("tiny_mardm"), "--model", tiny_generator, "--ae_name", "{tokenizer}", "--ae_model",
               tiny_tokenizer, *_ae_file("latest"), *_QUICK_GENERATOR),
              dataset_args={"t2m_67": _ae_file("latest"),
                            "kit_64": (*_ae_file("net_best_fid"), *_MARDM_KIT_GENERATOR)}),
        Stage("evaluate", "evaluation_MARDM.py", generator_run, ("--which_epoch", "latest", "--time_steps", "18"),
              ("--which_epoch", "latest", "--time_steps", "4", "--cfg", "2.5", *_QUICK_GEN_EVAL), evaluation=True,
              dataset_args={"t2m_67": ("--cfg", "4.5"), "kit_64": ("--cfg", "2.5")}, published=published or {}),
    )


# MoMask's README: the masked and residual transformers train with batch 64 on HumanML3D (the presets) and 16 on KIT-ML.
_MOMASK_KIT_BATCH = {"kit": ("--batch_size", "16")}

_MOMASK_STAGES = (
    MOMASK_RVQ,
    MOMASK_RVQ_EVAL,
    Stage("mask_transformer", "train_t2m_transformer.py", "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
          (*_cfg("momask_mask"), "--vq_name", "{tokenizer}", "--need_evaluation", *_CLIP),
          (*_cfg("tiny_momask"), "--vq_name", "{tokenizer}", "--need_evaluation", *_QUICK_GENERATOR),
          dataset_args=_MOMASK_KIT_BATCH),
    Stage("residual_transformer", "train_res_transformer.py", "tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw",
          (*_cfg("momask_res"), "--vq_name", "{tokenizer}", "--need_evaluation", *_CLIP),
          (*_cfg("tiny_momask"), "--vq_name", "{tokenizer}", "--need_evaluation", *_QUICK_GENERATOR),
          dataset_args=_MOMASK_KIT_BATCH),
    Stage("evaluate", "evaluation_MARDM.py", "t2m_nlayer8_nhead6_ld384_ff1024_cdp0.1_rvq6ns",
          ("--which_epoch", "latest", "--res_ckpt", "{runs}/{residual_transformer}/model/net_best_fid.tar",
           "--time_steps", "10", *_MOMASK_EVAL_SEED),
          ("--which_epoch", "latest", "--res_ckpt", "{runs}/{residual_transformer}/model/net_best_fid.tar",
           "--time_steps", "4", "--cfg", "2.5", *_MOMASK_EVAL_SEED, *_QUICK_GEN_EVAL),
          evaluation=True, dataset_args={"t2m": ("--cfg", "4"), "kit": ("--cfg", "2")},
          published={
              "t2m": (Published("fid", 0.045, "MoMask paper (confirmed on a paperswithcode mirror)"),
                      Published("top3", 0.807, "MoMask paper (confirmed on a paperswithcode mirror)"),
                      Published("multimodality", 1.241, "MoMask paper (confirmed on a paperswithcode mirror)"),
                      Published("top1", 0.521, "MoMask paper, reported second-hand (unverified)", verified=False),
                      Published("matching_score", 2.958, "MoMask paper, reported second-hand (unverified)",
                                verified=False)),
              "kit": (Published("fid", 0.204, "MoMask paper (confirmed on a paperswithcode mirror)"),
                      Published("top3", 0.781, "MoMask paper (confirmed on a paperswithcode mirror)"),
                      Published("multimodality", 1.131, "MoMask paper (confirmed on a paperswithcode mirror)")),
          }),
)

_MARDM_PUBLISHED = {"t2m_67": (Published("fid", 0.114, _MEMORY_MARDM, verified=False),
                               Published("top1", 0.500, _MEMORY_MARDM, verified=False),
                               Published("top3", 0.795, _MEMORY_MARDM, verified=False),
                               Published("matching_score", 3.27, _MEMORY_MARDM, verified=False))}

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("t2m_gpt_vq", "T2M-GPT VQ-VAE (512 codes, EMA reset), reconstruction",
           "Zhang et al., T2M-GPT, CVPR 2023", ("t2m", "kit"), (T2M_GPT_VQ, T2M_GPT_VQ_EVAL),
           notes="T2M-GPT evaluates its last weights (net_last.pth), each motion reconstructed alone, seed 123."),
    Recipe("momask_rvq", "MoMask residual VQ-VAE (6 layers x 512 codes), reconstruction",
           "Guo et al., MoMask, CVPR 2024", ("t2m", "kit"), (MOMASK_RVQ, MOMASK_RVQ_EVAL),
           notes="MoMask evaluates the RVQ's best val-FID weights (net_best_fid.tar), seed 10107."),
    Recipe("momask", "MoMask: RVQ-VAE, masked and residual transformers, generation",
           "Guo et al., MoMask, CVPR 2024", ("t2m", "kit"), _MOMASK_STAGES,
           notes="Evaluated as MoMask's eval_t2m_trans_res.py: the masked transformer's latest.tar, the residual "
                 "transformer's net_best_fid.tar, 10 steps, guidance 4 (2 on KIT), residual guidance 5, seed "
                 "10107."),
    Recipe("mardm_sit_xl", "MARDM-SiT-XL on MARDM's continuous AE, generation",
           "Rethinking Diffusion for Text-Driven Human Motion Generation (MARDM), CVPR 2025, arXiv 2411.16575",
           ("t2m_67", "kit_64"),
           _mardm_stages("AE_Model", "AE", "AE_Tiny", "mardm_sit_xl", "MARDM_SiT_XL", "MARDM-SiT-Tiny",
                                      published=_MARDM_PUBLISHED),
           notes="MARDM's numbers use its own 67-dim evaluator: not comparable with the 263-dim protocol."),
    Recipe("mardm_ddpm_xl", "MARDM-DDPM-XL on MARDM's continuous AE, generation",
           "MARDM, CVPR 2025, arXiv 2411.16575", ("t2m_67", "kit_64"),
           _mardm_stages("AE_Model", "AE", "AE_Tiny", "mardm_ddpm_xl", "MARDM_DDPM_XL", "MARDM-DDPM-Tiny"),
           notes="No DDPM-XL numbers are recorded here (the paper reports it slightly behind SiT-XL)."),
    Recipe("fsq_mardm", "FSQ-MARDM-SiT-XL on FSQ_AE_High (levels 8,8,8,5,5,5), generation",
           "this project (denoising to grid)", ("t2m_67", "kit_64"),
           _mardm_stages("FSQ_AE_High", "FSQ_AE_High", "FSQ_AE_Tiny", "fsq_mardm_sit_xl", "FSQ_MARDM_SiT_XL",
                         "FSQ-MARDM-SiT-Tiny", tokenizer_preset="fsq_ae_high"),
           notes="MARDM's recipe and evaluation with the FSQ tokenizer, so the row compares with mardm_sit_xl."),
    Recipe("vq_mardm", "VQ-MARDM-SiT-XL ablation on a 512-code VQ autoencoder, generation",
           "this project (ablation of FSQ-MARDM)", ("t2m_67", "kit_64"),
           _mardm_stages("VQ_AE_Model", "VQ_AE_Model", "VQ_AE_Tiny", "vq_mardm_sit_xl", "VQ_MARDM_SiT_XL",
                         "VQ-MARDM-SiT-Tiny", tokenizer_model=("--model", "VQ_AE_Model")),
           notes="The MARDM AE recipe with a VQ bottleneck, then MARDM's generator recipe on its codes."),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)} (reproduce.py --list)")
    return RECIPES[name]


def list_recipes() -> str:
    """The recipe table as ``reproduce.py --list`` prints it: each recipe with its datasets, stages and published
    numbers, unverified ones marked ``*``."""
    lines = []
    for recipe in RECIPES.values():
        lines.append(f"{recipe.name}: {recipe.title} [{recipe.paper}]")
        lines.append(f"    datasets: {', '.join(recipe.datasets)}; stages: "
                     f"{', '.join(s.name for s in recipe.stages)}")
        for dataset in recipe.datasets:
            for stage, numbers in recipe.published(dataset).items():
                shown = ", ".join(f"{p.metric} {p.value:g}{'' if p.verified else '*'}" for p in numbers)
                lines.append(f"    published on {dataset} ({stage}): {shown}")
    lines.append("* unverified (quoted from an aggregator or from memory; the report says where from)")
    return "\n".join(lines)
