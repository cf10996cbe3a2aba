"""A MoMask tokenizer file in its run folder is read with the statistics that run wrote beside it
(``<run>/meta/{mean,std}.npy``), by ``evaluation_AE.py`` and by ``tools/import_checkpoint.py``."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_evaluation_AE import _momask_file, env, run_eval  # noqa: F401  (env: the module's fixture)
from tool_helpers import load_tool

from models.loader import load_tokenizer
from utils.normalization import load_mean_std


def _momask_run(tmp_path, spec, root) -> tuple[str, str, np.ndarray, np.ndarray]:
    """(checkpoint, meta folder, mean, std) of a MoMask run laid out as MoMask writes it."""
    run = tmp_path / "rvq_nq2"
    (run / "model").mkdir(parents=True)
    src = str(run / "model" / "net_best_fid.tar")
    shutil.move(_momask_file(tmp_path), src)
    mean, std = load_mean_std(spec, str(root))
    std = (std * np.linspace(0.5, 2.0, std.shape[0])).astype(np.float32)  # neither the dataset's nor a convention's
    (run / "meta").mkdir()
    np.save(run / "meta" / "mean.npy", mean)
    np.save(run / "meta" / "std.npy", std)
    return src, str(run / "meta"), mean, std


def test_evaluation_reads_a_momask_run_s_own_meta_folder(env, tmp_path):  # noqa: F811
    """Without --ae_meta_dir an official MoMask file was evaluated under the evaluator's statistics even when its
    run's meta folder (what it was trained with) lay beside it; it now gives what --ae_meta_dir with that folder
    gives, and says where the statistics came from. An explicit --ae_meta_dir still wins."""
    root, _, spec = env
    src, meta, _, _ = _momask_run(tmp_path, spec, root)
    found = run_eval(env, "--ckpt", src, "--name", "own_meta", "--no_gt_cache")
    assert found["tokenizer_statistics"] == f"the run's meta folder {meta}"
    explicit = run_eval(env, "--ckpt", src, "--name", "flag_meta", "--no_gt_cache", "--ae_meta_dir", meta)
    assert explicit["tokenizer_statistics"] == f"--ae_meta_dir {meta}"
    assert found["reconstruction"]["mpjpe_mm"] == pytest.approx(explicit["reconstruction"]["mpjpe_mm"])
    assert found["protocol"]["metrics"]["fid"]["mean"] == pytest.approx(explicit["protocol"]["metrics"]["fid"]["mean"])

    shutil.rmtree(meta)  # without it: the format's convention, as before
    convention = run_eval(env, "--ckpt", src, "--name", "no_meta", "--no_gt_cache")
    assert "momask convention" in convention["tokenizer_statistics"]
    assert convention["reconstruction"]["mpjpe_mm"] != pytest.approx(found["reconstruction"]["mpjpe_mm"])


def test_import_records_a_momask_run_s_own_meta_folder(env, tmp_path):  # noqa: F811
    root, ck, spec = env
    src, meta, mean, std = _momask_run(tmp_path, spec, root)
    tool = load_tool("import_checkpoint")
    base = ["--src", src, "--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(ck)]
    tool.main(tool.get_parser().parse_args([*base, "--name", "imp_own_meta"]))
    imported = load_tokenizer(str(ck / "synthetic" / "imp_own_meta" / "model" / "latest.tar"))
    assert imported.dataset["statistics"] == f"the run's meta folder {meta}"
    assert torch.equal(imported.dataset["mean"], torch.from_numpy(mean))
    assert torch.equal(imported.dataset["std"], torch.from_numpy(std))

    other = tmp_path / "other_meta"
    other.mkdir()
    np.save(other / "mean.npy", np.zeros(263, np.float32))
    np.save(other / "std.npy", np.ones(263, np.float32))
    tool.main(tool.get_parser().parse_args([*base, "--name", "imp_flag_meta", "--meta_dir", str(other)]))
    flagged = load_tokenizer(str(ck / "synthetic" / "imp_flag_meta" / "model" / "latest.tar"))
    assert flagged.dataset["statistics"] == f"--meta_dir {other}"
    assert torch.equal(flagged.dataset["std"], torch.ones(263))

    np.save(f"{meta}/std.npy", np.r_[np.ones(262), 0.0].astype(np.float32))  # a damaged one is named, not used
    with pytest.raises(ValueError, match=rf"the run's meta folder {meta}: std.npy: mean and std must be finite"):
        tool.main(tool.get_parser().parse_args([*base, "--name", "imp_bad_meta"]))
    assert not (ck / "synthetic" / "imp_bad_meta").exists()
