"""reproduce.py and its recipes: every command parses, the report compares honestly, a quick run goes end to end and
continues where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reproduce_helpers import fake_pipeline_python, two_stage_recipe

import reproduce
from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from options.eval_options import get_evaluation_ae_parser, get_train_evaluator_parser
from options.generator_options import get_train_mardm_parser
from options.token_generator_options import get_train_res_transformer_parser, get_train_t2m_transformer_parser
from options.tokenizer_options import get_train_ae_parser, get_train_vq_parser
from utils import assets
from utils.cli import TRACEBACK_ENV
from utils.dataset_specs import get_dataset_spec
from utils.evaluator import build_evaluator, save_evaluator
from utils.normalization import eval_normalization, load_mean_std
from utils.recipe_plan import REPO, Step, plan, preflight
from utils.recipes import RECIPES, Published, Recipe, Stage
from utils.reproduce_report import compare, format_markdown, measured
from utils.synthetic import generate_synthetic_dataset
from utils.word_vectorizer import LearnedVocab

PARSERS = {"train_vq.py": get_train_vq_parser, "train_AE.py": get_train_ae_parser,
           "train_MARDM.py": get_train_mardm_parser, "train_t2m_transformer.py": get_train_t2m_transformer_parser,
           "train_res_transformer.py": get_train_res_transformer_parser,
           "evaluation_AE.py": get_evaluation_ae_parser, "evaluation_MARDM.py": get_evaluation_generator_parser,
           "train_evaluator.py": get_train_evaluator_parser}


def _args(*extra: str, ckpt: str = "ck"):
    return reproduce.get_parser().parse_args(["x", "--checkpoints_dir", ckpt, *extra])


def _planned(recipe: Recipe, quick: bool) -> list[tuple[str, Step]]:
    out = []
    for dataset in (["synthetic"] if quick else recipe.datasets):
        args = _args(*(["--quick"] if quick else []))
        if quick:
            args.data_root = "dataset/Synthetic"
        out += [(dataset, step) for step in plan(args, recipe, dataset)]
    return out


@pytest.mark.parametrize("quick", [False, True], ids=["paper", "quick"])
@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_stage_command_parses_with_its_script(name, quick):
    """Each command is what its script accepts (flags, presets, choices), placeholders are filled, and a generator
    names the tokenizer model its recipe trains."""
    recipe = RECIPES[name]
    parsed = {}
    for dataset, step in _planned(recipe, quick):
        script = Path(step.argv[1]).name
        if script == "prepare_data.py":
            continue
        assert not any("{" in a for a in step.argv), step.argv
        flags = [a for a in step.argv[2:] if a.startswith("--")]
        assert len(flags) == len(set(flags)), f"a flag given twice (the last one wins): {shlex.join(step.argv)}"
        args = parse_with_config(PARSERS[script](), step.argv[2:])
        assert args.dataset_name == dataset
        parsed[(dataset, step.name)] = args
        if step.evaluation:
            assert args.is_continue and args.report_json.endswith(f"reproduce/{name}/{step.name}.json")
    for (dataset, stage), args in parsed.items():
        tokenizer_model = getattr(parsed.get((dataset, "tokenizer")), "model", None)
        wanted = getattr(args, "ae_model", None) or getattr(args, "vq_model", None)
        if stage in ("generator", "mask_transformer", "residual_transformer") and wanted:
            assert wanted == tokenizer_model, (dataset, stage)


def test_recipes_are_consistent():
    for recipe in RECIPES.values():
        runs = {s.run for s in recipe.stages if not s.evaluation}
        for stage in recipe.stages:
            if stage.evaluation:
                assert stage.run in runs, (recipe.name, stage.name)
            assert set(stage.published) <= set(recipe.datasets), (recipe.name, stage.name)
            assert set(stage.dataset_args) <= set(recipe.datasets)
        assert len({s.name for s in recipe.stages}) == len(recipe.stages)


def test_paper_settings_are_the_papers():
    planned = _planned(RECIPES["momask"], False)
    evaluate = {d: step.argv for d, step in planned if step.name == "evaluate"}
    # MoMask's eval_t2m_trans_res.py: latest masked transformer, best-FID residual, 10 steps, guidance 4 (KIT 2).
    t2m = parse_with_config(get_evaluation_generator_parser(), evaluate["t2m"][2:])
    kit = parse_with_config(get_evaluation_generator_parser(), evaluate["kit"][2:])
    assert (t2m.which_epoch, t2m.time_steps, t2m.cfg, kit.cfg) == ("latest", 10, 4.0, 2.0)
    assert t2m.res_ckpt == "ck/t2m/tres_nlayer8_ld384_ff1024_rvq6ns_cdp0.2_sw/model/net_best_fid.tar"
    # MoMask's README: batch 64 for both transformers on HumanML3D, 16 on KIT-ML.
    for stage, parser in (("mask_transformer", get_train_t2m_transformer_parser),
                          ("residual_transformer", get_train_res_transformer_parser)):
        batch = {d: parse_with_config(parser(), step.argv[2:]).batch_size for d, step in planned if step.name == stage}
        assert batch == {"t2m": 64, "kit": 16}, stage
    rvq = {step.name: step.argv for d, step in planned if d == "t2m"}
    assert parse_with_config(get_evaluation_ae_parser(), rvq["evaluate_tokenizer"][2:]).which_epoch == "net_best_fid"
    # MARDM: the generator's EMA latest.tar, 18 steps, guidance 4.5 (2.5 on KIT-ML); the AE's latest.tar on HumanML3D
    # and its best validation FID on KIT-ML, where the AE trains at batch 512, lr decay 0.1, and the generator at
    # batch 16 with its milestone at 20000.
    for dataset, cfg, ae_file, ae_batch, ae_decay, gen_batch, milestones in (
            ("t2m_67", 4.5, "latest", 256, 0.05, 64, [50000]), ("kit_64", 2.5, "net_best_fid", 512, 0.1, 16, [20000])):
        mardm = {step.name: step.argv for d, step in _planned(RECIPES["mardm_sit_xl"], False) if d == dataset}
        args = parse_with_config(get_evaluation_generator_parser(), mardm["evaluate"][2:])
        assert (args.which_epoch, args.time_steps, args.cfg) == ("latest", 18, cfg)
        ae = parse_with_config(get_train_ae_parser(), mardm["tokenizer"][2:])
        assert (ae.batch_size, ae.lr_decay, ae.need_evaluation) == (ae_batch, ae_decay, dataset == "kit_64")
        ae_eval = parse_with_config(get_evaluation_ae_parser(), mardm["evaluate_tokenizer"][2:])
        gen = parse_with_config(get_train_mardm_parser(), mardm["generator"][2:])
        assert (gen.model, gen.batch_size, gen.lr, gen.milestones) == ("MARDM-SiT-XL", gen_batch, 2e-4, milestones)
        assert ae_eval.which_epoch == ae_file and gen.ae_ckpt == f"ck/{dataset}/AE/model/{ae_file}.tar"


@pytest.mark.parametrize("quick", [False, True], ids=["paper", "quick"])
def test_evaluations_use_the_papers_seed(quick):
    """Every evaluation runs with the seed of its paper's evaluation code, in quick mode too: MoMask's 10107 (its
    eval_option), T2M-GPT's 123 (VQ_eval.py's torch.manual_seed of option_vq's default), MARDM's 3407 (our default)."""
    seeds = {"momask": 10107, "momask_rvq": 10107, "t2m_gpt_vq": 123, "mardm_sit_xl": 3407, "mardm_ddpm_xl": 3407,
             "fsq_mardm": 3407, "vq_mardm": 3407}
    assert set(seeds) <= set(RECIPES)
    for name, seed in seeds.items():
        for dataset, step in _planned(RECIPES[name], quick):
            if step.evaluation:
                args = parse_with_config(PARSERS[Path(step.argv[1]).name](), step.argv[2:])
                assert args.seed == seed, (name, dataset, step.name)


def test_unknown_published_metric_is_refused():
    with pytest.raises(ValueError, match="published metric 'R@1'"):
        Published("R@1", 0.5, "x")


def test_compare_verdicts():
    published = (Published("fid", 0.045, "paper"), Published("top1", 0.52, "memo", verified=False),
                 Published("multimodality", 1.2, "paper"), Published("mpjpe_mm", 29.5, "paper"),
                 Published("matching_score", 3.0, "paper"))
    values = {"fid": (0.050, 0.004), "top1": (0.525, 0.01), "multimodality": (1.5, 0.05), "mpjpe_mm": (25.0, None),
              "diversity": (9.5, 0.1)}
    rows = {r.metric: r for r in compare(published, values, {"top1": 0.51})}
    assert rows["fid"].verdict == "above (worse)" and rows["fid"].difference == pytest.approx(0.005)
    assert rows["top1"].verdict == "within the 95% CI" and rows["top1"].verified is False and rows["top1"].real == 0.51
    assert rows["multimodality"].verdict == "above"  # no better side
    assert rows["mpjpe_mm"].verdict == "below (better)" and rows["mpjpe_mm"].ci is None
    assert rows["matching_score"].verdict == "not measured" and rows["matching_score"].mean is None
    assert rows["diversity"].published is None and rows["diversity"].verdict == ""
    order = [r.metric for r in compare(published, values)]
    assert order == ["fid", "diversity", "top1", "matching_score", "multimodality", "mpjpe_mm"]


def test_measured_reads_both_evaluation_scripts():
    generator = {"protocol": {"metrics": {"fid": {"mean": 1.0, "ci": 0.1}, "multimodality": {"mean": 2.0, "ci": 0.2}}}}
    tokenizer = {"protocol": {"metrics": {"fid": {"mean": 0.5, "ci": 0.05}}},
                 "reconstruction": {"mpjpe_mm": 30.0, "mpjpe_seq_mm": None}}
    assert measured(generator) == {"fid": (1.0, 0.1), "multimodality": (2.0, 0.2)}
    assert measured(tokenizer) == {"fid": (0.5, 0.05), "mpjpe_mm": (30.0, None)}
    assert measured({"protocol": None, "reconstruction": {"mpjpe_mm": 40.0}}) == {"mpjpe_mm": (40.0, None)}


def test_markdown_marks_unverified_numbers():
    env = {"date": "d", "torch": "t", "cuda": None, "git_commit": "abc", "git_dirty": False}
    report = {"title": "T", "recipe": "r", "paper": "P", "dataset": "t2m", "quick": False,
              "published_datasets": ["t2m"], "notes": "", "environment": env,
              "stages": [{"name": "evaluate", "status": "done", "seconds": 3.0, "command": "python e.py"}],
              "evaluations": {"evaluate": {"evaluation": {}, "rows": [
                  {"metric": "fid", "mean": 0.1, "ci": 0.01, "real": None, "published": 0.114, "source": "memory",
                   "verified": False, "difference": -0.014, "verdict": "below (better)"}]}}}
    text = format_markdown(report)
    assert "| FID | - | 0.1000 ± 0.0100 | 0.114 * | -0.0140 | below (better) | memory |" in text
    assert "unverified" in text.splitlines()[-1]
    official = {"path": "ck/t2m/text_mot_match/model/finest.tar", "sha256": "ab" * 32, "source": "official GloVe",
                "released": True}
    report["evaluations"]["evaluate"]["evaluation"] = {"protocol": {"evaluator": official}}
    assert (f"scored by the evaluator `{official['path']}` (SHA-256 {'ab' * 8}...): the official evaluator (released "
            f"weights, official GloVe vectors)") in format_markdown(report)


def test_arguments_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit, match="name a recipe"):
        reproduce.main([])
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        reproduce.main(["nope"])
    with pytest.raises(SystemExit, match="published on t2m_67, kit_64, not --dataset_name t2m"):
        reproduce.main(["mardm_sit_xl", "--dataset_name", "t2m"])
    with pytest.raises(SystemExit, match="--quick runs on the synthetic dataset"):
        reproduce.main(["momask", "--quick", "--dataset_name", "t2m"])
    # A paper run without its dataset and evaluator stops before running anything; a dry run warns and prints.
    absent = ["momask_rvq", "--checkpoints_dir", str(tmp_path), "--data_root", str(tmp_path / "nothing")]
    with pytest.raises(SystemExit, match="(?s)cannot start:\n- dataset t2m new_joint_vecs: .*nothing/new_joint_vecs "
                                         "is missing.*\n- evaluator t2m: .*text_mot_match/model/finest.tar is missing"
                                         ".*pass another with --evaluator_dir"):
        reproduce.main(absent)
    reproduce.main([*absent, "--dry_run"])
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("# WARNING: dataset t2m new_joint_vecs") and out[8].startswith("# WARNING: evaluator t2m")
    assert "train_vq.py" in out[9] and "evaluation_AE.py" in out[10]
    assert shlex.split(out[9])[0] == sys.executable
    reproduce.main(["--list"])
    assert "momask: MoMask" in capsys.readouterr().out


def test_a_failed_stage_stops_the_chain_and_reports_it(tmp_path, monkeypatch):
    bad = Recipe("bad", "a failing recipe", "none", ("synthetic",), (
        Stage("tokenizer", "train_vq.py", "r", ("--no_such_flag",), ("--no_such_flag",)),
        Stage("evaluate", "evaluation_AE.py", "r", (), (), evaluation=True)))
    monkeypatch.setitem(RECIPES, "bad", bad)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")  # the data step is skipped once the statistics exist
    argv = ["bad", "--quick", "--checkpoints_dir", str(tmp_path / "ck"), "--data_root", str(tmp_path / "data"),
            "--evaluator_dir", str(tmp_path / "ev")]
    failed = r"(?s)stage tokenizer failed \(exit status 2\).*run the same reproduce.py command"
    with pytest.raises(SystemExit, match=failed):
        reproduce.main(argv)
    folder = tmp_path / "ck" / "synthetic" / "reproduce" / "bad"
    report = json.loads((folder / "report.json").read_text())
    assert [s["status"] for s in report["stages"]] == ["skipped (done)", "failed (exit 2)", "not run"]
    assert report["evaluations"] == {}
    assert "failed (exit 2)" in (folder / "report.md").read_text()


@pytest.fixture(scope="module")
def quick_env(tmp_path_factory):
    """A synthetic dataset with a full evaluation batch in its test split, and a tiny (untrained) evaluator in the
    checkpoints folder."""
    synthetic_root = str(tmp_path_factory.mktemp("reproduce_data") / "Synthetic")
    generate_synthetic_dataset(synthetic_root, num_motions=160, seed=0)
    ck = tmp_path_factory.mktemp("reproduce_ck")
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = load_mean_std(spec, synthetic_root)
    torch.manual_seed(0)
    vocab = LearnedVocab.from_split(synthetic_root, "train", dim_word=8)
    ev = build_evaluator("synthetic", *eval_normalization(mean, std, spec), word_vectors=vocab, sizes="tiny",
                         data_root=synthetic_root)
    save_evaluator(str(ck / "synthetic" / "text_mot_match" / "model" / "finest.tar"), ev)
    return synthetic_root, ck


def test_quick_recipe_runs_end_to_end_and_continues(quick_env, monkeypatch, capsys):
    """momask_rvq --quick: the RVQ trains with validation FID, its best-FID weights are evaluated, the report holds
    the evaluation's numbers and checkpoint; a second call skips every stage and writes the same numbers."""
    root, ck = quick_env
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["momask_rvq", "--quick", "--checkpoints_dir", str(ck), "--data_root", root]
    report = reproduce.main(argv)
    assert [s["status"] for s in report["stages"]] == ["skipped (done)", "skipped (done)", "done", "done"]
    block = report["evaluations"]["evaluate_tokenizer"]
    run = ck / "synthetic" / "rvq_nq6_dc512_nc512_noshare_qdp0.2"
    assert block["evaluation"]["checkpoint"] == str((run / "model" / "net_best_fid.tar").resolve())
    rows = {r["metric"]: r for r in block["rows"]}
    assert set(rows) >= {"fid", "top1", "top3", "matching_score", "diversity", "mpjpe_mm"}
    assert all(r["published"] is None for r in rows.values())  # a quick run compares with nothing
    folder = ck / "synthetic" / "reproduce" / "momask_rvq"
    result = json.loads((folder / "evaluate_tokenizer.json").read_text())
    assert rows["fid"]["mean"] == result["protocol"]["metrics"]["fid"]["mean"]
    assert result["protocol"]["meta"]["protocol"]["replications"] == 3
    assert "quick" in (folder / "report.md").read_text()
    # The report names the evaluator that scored the numbers, and which it is.
    evaluator = result["protocol"]["meta"]["protocol"]["evaluator"]
    assert evaluator["released"] is False and evaluator["path"] == str(ck / "synthetic" / "text_mot_match" / "model"
                                                                       / "finest.tar")
    assert (f"scored by the evaluator `{evaluator['path']}` (SHA-256 {evaluator['sha256'][:16]}...): trained with "
            f"train_evaluator.py (word vectors: learned vocabulary), not the papers' evaluator"
            in (folder / "report.md").read_text())

    again = reproduce.main(argv)
    assert [s["status"] for s in again["stages"]][2:] == ["skipped (done)", "skipped (done)"]
    assert "| tokenizer | skipped (done) |" in (folder / "report.md").read_text()
    assert " (an earlier call) |" in (folder / "report.md").read_text()   # its time is the run's that did it
    assert again["evaluations"]["evaluate_tokenizer"]["rows"] == block["rows"]
    # The state records each finished command: another flag on a stage runs it again (continuing its run).
    state = json.loads((folder / "state.json").read_text())
    assert state["stages"]["tokenizer"]["status"] == "done"
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and "WARNING" not in printed[0] and "--report_json" in printed[-1]


def test_a_paper_run_checks_everything_it_needs_first(quick_env, tmp_path, monkeypatch):
    """Dataset files, evaluator, the GloVe vectors a GloVe evaluator reads and the CLIP files of the generator stages
    are checked before any stage runs, and named together."""
    root, ck = quick_env
    clip = tmp_path / "deps" / "ViT-B-32.pt"
    paper = Recipe("paper", "a paper run on the synthetic data", "none", ("synthetic",), (
        Stage("generator", "train_MARDM.py", "g", ("--clip_path", str(clip)), ()),
        Stage("evaluate", "evaluation_MARDM.py", "g", (), (), evaluation=True)))
    monkeypatch.setitem(RECIPES, "paper", paper)
    monkeypatch.setenv("FSQ_MARDM_HOME", str(tmp_path))       # GloVe is looked for in $FSQ_MARDM_HOME/glove
    # The evaluator in place is one train_evaluator.py wrote, which a paper run uses only when named.
    argv = ["paper", "--checkpoints_dir", str(ck), "--data_root", root, "--evaluator_dir",
            str(ck / "synthetic" / "text_mot_match"), "--dry_run"]

    def problems() -> list[str]:
        args = reproduce.get_parser().parse_args(argv)
        return preflight(args, paper, "synthetic", plan(args, paper, "synthetic"))

    found = problems()
    assert len(found) == 2 and found[0].startswith(f"CLIP weights: {clip} is missing")
    assert found[1].startswith(f"CLIP vocabulary: {clip.parent / 'bpe_simple_vocab_16e6.txt.gz'} is missing")
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    (clip.parent / "bpe_simple_vocab_16e6.txt.gz").write_bytes(b"x")
    # Files that are not OpenAI's are refused by their size, then by their SHA-256.
    assert [p.split(":")[0] for p in problems()] == ["CLIP weights", "CLIP vocabulary"]
    for name in ("ViT-B-32.pt", "bpe_simple_vocab_16e6.txt.gz"):
        monkeypatch.setitem(assets.PUBLISHED, name, assets.Published(hashlib.sha256(b"x").hexdigest(), 1, name))
    assert problems() == []
    # An evaluator reading GloVe needs the vectors (the learned-vocabulary one above does not).
    spec = get_dataset_spec("synthetic", root)
    mean, std = load_mean_std(spec, root)
    glove_ev = build_evaluator("synthetic", *eval_normalization(mean, std, spec), dim_word=8, sizes="tiny",
                               data_root=root)
    save_evaluator(str(tmp_path / "glove_ev" / "model" / "finest.tar"), glove_ev)
    argv[-1:] = ["--evaluator_dir", str(tmp_path / "glove_ev")]
    found = problems()
    assert len(found) == 1 and found[0].startswith("GloVe vectors: ") and "our_vab_data.npy" in found[0]


def test_a_trained_evaluator_at_the_default_place_is_used_only_when_named(quick_env):
    """train_evaluator.py --dataset_name X writes where a paper run looks for the official evaluator: found there, it
    is refused (by the dry run too, which does not load it), naming the file, why and the flag that uses it anyway;
    named by --evaluator_dir, it is used."""
    root, ck = quick_env
    paper = Recipe("paper", "a paper run on the synthetic data", "none", ("synthetic",), (
        Stage("tokenizer", "train_AE.py", "a", (), ()), Stage("evaluate", "evaluation_AE.py", "a", (), (),
                                                                evaluation=True)))
    default = ck / "synthetic" / "text_mot_match"
    for dry_run in ([], ["--dry_run"]):
        args = _args("--data_root", root, *dry_run, ckpt=str(ck))
        assert preflight(args, paper, "synthetic", plan(args, paper, "synthetic")) == [
            f"evaluator synthetic: {default}/model/finest.tar was trained with train_evaluator.py (word vectors: "
            f"learned vocabulary), not released with the papers: the published numbers were measured with the "
            f"official evaluator, and this one's are not comparable with them, so it is used only when named: pass "
            f"--evaluator_dir {default} to use it anyway, or put the official evaluator there "
            f"({assets.README_SECTION})"]
        args = _args("--data_root", root, "--evaluator_dir", str(default), *dry_run, ckpt=str(ck))
        assert preflight(args, paper, "synthetic", plan(args, paper, "synthetic")) == []


def test_an_interrupted_quick_evaluator_is_continued_not_taken_as_done(tmp_path, monkeypatch):
    """train_evaluator.py writes finest.tar at every better validation and latest.tar as it goes: a killed run leaves
    both, and the next call continues it rather than skipping it with a half-trained evaluator, as it does a run
    killed in its first stage. An evaluator placed by hand (finest.tar alone) is used as it is."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    fake_pipeline_python(fake, log)
    one = Recipe("one", "one training stage", "none", ("synthetic",),
                 (Stage("tokenizer", "train_vq.py", "r", (), ()),))
    monkeypatch.setitem(RECIPES, "one", one)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Mean.npy").write_bytes(b"")
    model = tmp_path / "ck" / "synthetic" / "text_mot_match" / "model"
    model.mkdir(parents=True)
    argv = ["one", "--quick", "--checkpoints_dir", str(tmp_path / "ck"), "--data_root", str(tmp_path / "data"),
            "--python", str(fake), "--rerun"]

    def evaluator_status() -> tuple[str, list[str]]:
        log.write_text("")
        report = reproduce.main(argv)
        calls = [line.split() for line in log.read_text().splitlines() if "train_evaluator.py" in line]
        return report["stages"][1]["status"], calls[0] if calls else []

    (model / "finest.tar").write_bytes(b"")
    assert evaluator_status() == ("skipped (done)", [])  # placed by hand
    (model / "latest.tar").write_bytes(b"")  # killed after a validation
    status, call = evaluator_status()
    assert status == "done" and call[-1] == "--is_continue"
    (model / "finest.tar").unlink()  # killed before the first validation
    status, call = evaluator_status()
    assert status == "done" and call[-1] == "--is_continue"
    (model / "latest.tar").unlink()  # killed in the first stage, the movement autoencoder's run
    decomp = model.parent.parent / "text_mot_match_decomp" / "model"
    decomp.mkdir(parents=True)
    (decomp / "latest.tar").write_bytes(b"")
    status, call = evaluator_status()
    assert status == "done" and call[-1] == "--is_continue"
    (model.parent / "eval").mkdir()
    (model.parent / "eval" / "evaluator_val.json").write_text("{}")  # finished
    assert evaluator_status() == ("skipped (done)", [])


@pytest.mark.parametrize("quick", [False, True], ids=["paper", "quick"])
def test_evaluator_dir_reaches_the_training_stages_that_validate_with_it(quick):
    """--evaluator_dir is the evaluator of every evaluation, the FID validation of --need_evaluation training
    included (MoMask's RVQ, MARDM's AE on KIT-ML): otherwise that stage looks for the default one and either stops or
    picks its best checkpoint under another evaluator than the one the evaluations use."""
    for name, dataset in (("momask_rvq", "t2m"), ("mardm_sit_xl", "kit_64")):
        args = _args("--evaluator_dir", "official/ev", *(["--quick"] if quick else []))
        if quick:
            args.data_root, dataset = "dataset/Synthetic", "synthetic"
        steps = {step.name: step for step in plan(args, RECIPES[name], dataset)}
        tokenizer = parse_with_config(PARSERS[Path(steps["tokenizer"].argv[1]).name](), steps["tokenizer"].argv[2:])
        if tokenizer.need_evaluation:
            assert tokenizer.evaluator_dir == "official/ev", (name, dataset)
        for step in steps.values():
            if "--need_evaluation" not in step.argv and not step.evaluation:
                assert "--evaluator_dir" not in step.argv, (name, step.name)


def test_a_stage_after_one_that_ran_again_is_not_skipped(tmp_path, monkeypatch):
    """A run deleted to train it afresh (README) is trained again, and the evaluation recorded as finished with the
    same command is then run again too: its result file is the deleted model's, not this one's."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)

    def statuses() -> list[str]:
        return [s["status"] for s in reproduce.main(argv)["stages"]][1:]

    assert statuses() == ["done", "done"]
    assert statuses() == ["skipped (done)", "skipped (done)"]
    (tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar").unlink()  # trained afresh, evaluated afresh
    log.write_text("")
    assert statuses() == ["done", "done"]
    assert [line.split()[0].endswith(script) for line, script in
            zip(log.read_text().splitlines(), ("train_vq.py", "evaluation_AE.py"))] == [True, True]


def test_a_stage_that_failed_after_its_earlier_success_is_not_skipped(tmp_path, monkeypatch):
    """A stage recorded as finished by an earlier call that then starts again (its run deleted to train it afresh) and
    fails after writing latest.tar is continued by the next call, not skipped as finished on the earlier record; the
    evaluation after it is run again, not reported from the deleted model's result file."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    assert [s["status"] for s in reproduce.main(argv)["stages"]][1:] == ["done", "done"]
    (tmp_path / "ck" / "synthetic" / "r" / "model" / "latest.tar").unlink()  # trained afresh; this time it fails
    (tmp_path / "fail").write_text("")
    with pytest.raises(SystemExit, match="stage tokenizer failed"):
        reproduce.main(argv)
    (tmp_path / "fail").unlink()
    log.write_text("")
    assert [s["status"] for s in reproduce.main(argv)["stages"]][1:] == ["done", "done"]
    calls = log.read_text().splitlines()
    assert len(calls) == 2 and calls[0].endswith("--is_continue") and "--report_json" in calls[1]


def test_the_dry_run_prints_what_the_same_call_would_run(tmp_path, monkeypatch, capsys):
    """After a stop, --dry_run prints the commands the call without it would run, and nothing else: a finished step
    as a comment, a stopped training with --is_continue; once everything is finished, only comments."""
    log, argv = two_stage_recipe(tmp_path, monkeypatch)
    (tmp_path / "fail").write_text("")  # the training writes latest.tar, then fails
    with pytest.raises(SystemExit, match="stage tokenizer failed"):
        reproduce.main(argv)
    (tmp_path / "fail").unlink()
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()[1:]
    assert printed[0].startswith("# done, skipped: ") and "prepare_data.py" in printed[0]
    commands = [shlex.split(line) for line in printed if not line.startswith("#")]
    assert commands[0][-1] == "--is_continue"
    log.write_text("")
    reproduce.main(argv)
    assert [c[1:] for c in commands] == [line.split() for line in log.read_text().splitlines()]
    capsys.readouterr()
    reproduce.main([*argv, "--dry_run"])
    printed = capsys.readouterr().out.splitlines()[1:]
    assert len(printed) == 3 and all(line.startswith("# done, skipped: ") for line in printed)


def test_the_pipeline_script_continues_an_interrupted_length_estimator(tmp_path):
    """train_fsq_pipeline.sh on a rerun: finished stages are skipped, a length estimator killed while training (its
    latest.tar written, not finished) is continued rather than taken as done, and the evaluations reuse their finished
    replications."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "python"
    fake_pipeline_python(fake, log)
    data, runs = tmp_path / "data", tmp_path / "ck" / "synthetic"
    data.mkdir()
    (data / "Mean.npy").write_bytes(b"")
    (runs / "text_mot_match" / "eval").mkdir(parents=True)
    (runs / "text_mot_match" / "eval" / "evaluator_val.json").write_text("{}")
    for run in ("FSQ_AE", "FSQ_MARDM", "length_estimator"):
        (runs / run / "model").mkdir(parents=True)
        (runs / run / "model" / "latest.tar").write_bytes(b"")
    (runs / "length_estimator" / ".running").write_bytes(b"")  # killed while training
    script = Path(REPO) / "train_fsq_pipeline.sh"
    subprocess.run(["bash", str(script), "--quick", "--python", str(fake), "--checkpoints_dir", str(tmp_path / "ck"),
                    "--data_root", str(data)], check=True, capture_output=True)
    calls = {line.split()[0]: line.split() for line in log.read_text().splitlines()}
    assert set(calls) == {"prepare_data.py", "train_length_estimator.py", "evaluation_AE.py", "evaluation_MARDM.py",
                          "sample.py"}
    assert calls["prepare_data.py"][-1] == "--keep_existing"  # the finished data is kept
    assert calls["train_length_estimator.py"][-1] == "--is_continue"
    assert "--is_continue" in calls["evaluation_AE.py"] and "--is_continue" in calls["evaluation_MARDM.py"]
    assert not (runs / "length_estimator" / ".running").exists()


def test_the_pipeline_script_runs_from_another_directory_with_relative_paths(tmp_path):
    """train_fsq_pipeline.sh started from another folder (its path relative, with a space): --help prints the usage,
    and relative --python, --data_root and --checkpoints_dir name folders of the caller's working directory, not of
    the repository the script moves into."""
    cwd = tmp_path / "my work"
    (cwd / "bin").mkdir(parents=True)
    log = tmp_path / "argv.log"
    fake = cwd / "bin" / "python"
    fake_pipeline_python(fake, log, "if [ -n \"$FAIL_SAMPLE\" ] && [ \"$1\" = sample.py ]; then exit 3; fi\n")
    (cwd / "my data").mkdir()
    (cwd / "my data" / "Mean.npy").write_bytes(b"")
    runs = cwd / "my ck" / "synthetic"
    (runs / "text_mot_match" / "eval").mkdir(parents=True)
    (runs / "text_mot_match" / "eval" / "evaluator_val.json").write_text("{}")
    for run in ("FSQ_AE", "FSQ_MARDM", "length_estimator"):
        (runs / run / "model").mkdir(parents=True)
        (runs / run / "model" / "latest.tar").write_bytes(b"")
    (cwd / "the repo").symlink_to(REPO)
    script = os.path.join("the repo", "train_fsq_pipeline.sh")
    usage = subprocess.run(["bash", script, "--help"], cwd=cwd, capture_output=True, text=True)
    assert usage.returncode == 0 and "--checkpoints_dir DIR" in usage.stdout, usage.stderr
    subprocess.run(["bash", script, "--quick", "--python", "bin/python", "--checkpoints_dir", "my ck",
                    "--data_root", "my data"], cwd=cwd, check=True, capture_output=True)
    calls = {line.split()[0]: line for line in log.read_text().splitlines()}
    # All else found done (the finished data kept by prepare_data.py --keep_existing).
    assert set(calls) == {"prepare_data.py", "evaluation_AE.py", "evaluation_MARDM.py", "sample.py"}
    assert calls["prepare_data.py"].endswith(f"--out {cwd / 'my data'} --num_motions 400 --seed 0 --keep_existing")
    assert f"--checkpoints_dir {cwd / 'my ck'} " in calls["evaluation_AE.py"]
    assert f"--data_root {cwd / 'my data'} " in calls["evaluation_AE.py"]
    # A failed sample.py stops the script with its status and leaves no prompts file behind.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    failed = subprocess.run(["bash", script, "--quick", "--python", "bin/python", "--checkpoints_dir", "my ck",
                             "--data_root", "my data"], cwd=cwd, capture_output=True,
                            env={**os.environ, "FAIL_SAMPLE": "1", "TMPDIR": str(scratch)})
    assert failed.returncode == 3 and not list(scratch.iterdir())


def test_the_stated_python_version_installs_the_pinned_requirements():
    """The oldest Python that pyproject.toml and the README's setup name is one every pinned requirement installs on
    (their Requires-Python, read from the installed copies of the pinned versions)."""
    from importlib.metadata import PackageNotFoundError, metadata, version

    from packaging.specifiers import SpecifierSet

    repo = Path(REPO)
    stated = re.search(r'requires-python = ">=(\d+\.\d+)"', (repo / "pyproject.toml").read_text()).group(1)
    assert f"Python {stated}+" in (repo / "README.md").read_text()
    checked = 0
    for line in (repo / "requirements.txt").read_text().splitlines():
        if line.startswith("#") or "==" not in line:
            continue
        name, pinned = line.split("==")
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        requires = metadata(name).get("Requires-Python")
        if installed.split("+")[0] == pinned and requires:
            assert SpecifierSet(requires).contains(stated), f"{name}=={pinned} needs Python {requires}"
            checked += 1
    assert checked


def test_an_unknown_recipe_is_one_line_from_the_shell():
    script = Path(reproduce.__file__)
    env = {k: v for k, v in os.environ.items() if k != TRACEBACK_ENV}
    done = subprocess.run([sys.executable, str(script), "nope"], cwd=script.parent, capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "reproduce.py: error: unknown recipe 'nope'; expected one of" in done.stderr
