"""Tokenizer evaluation pieces the other test files leave open: which checkpoint a run names first, where a
tokenizer's statistics come from (its record, --ae_meta_dir, an official format's convention), code usage per residual
layer, the printed summary, condition labels training never saw, a body-part record's column order, and every caption
of a clip in the length estimator's data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from layout_helpers import WHOLE, write_dataset
from test_tokenizer_eval_contracts import _eval_cfg, _meta_folder, _stats

from utils import tokenizer_eval as TE
from utils.checkpoint import CheckpointError
from utils.conditions import write_conditions
from utils.dataset_specs import get_dataset_spec
from utils.length_data import caption_lengths
from utils.normalization import eval_normalization
from utils.tokenizer_eval_steps import body_part_columns

SPEC = get_dataset_spec("synthetic")

# ---------------------------------------------------------------------------------------------------------------------
# which checkpoint a run names
# ---------------------------------------------------------------------------------------------------------------------


def test_a_run_with_every_file_is_evaluated_on_its_best_fid_file(tmp_path):
    """net_best_fid.tar comes before net_best_loss.tar and latest.tar when all three exist."""
    model_dir = tmp_path / "ck" / "synthetic" / "ae" / "model"
    model_dir.mkdir(parents=True)
    for stem in ("latest", "net_best_loss", "net_best_fid"):
        (model_dir / f"{stem}.tar").write_bytes(b"x")
    cfg = _eval_cfg(name="ae", checkpoints_dir=str(tmp_path / "ck"))
    assert TE.resolve_checkpoint(cfg) == (str(model_dir / "net_best_fid.tar"), "ae", "net_best_fid")
    (model_dir / "net_best_fid.tar").unlink()
    (model_dir / "net_best_loss.tar").unlink()
    assert TE.resolve_checkpoint(cfg) == (str(model_dir / "latest.tar"), "ae", "latest")


def test_which_epoch_names_a_file_with_or_without_tar(tmp_path):
    """As sample.py and evaluation_MARDM.py read it (net_best_loss.tar was looked for as net_best_loss.tar.tar)."""
    model_dir = tmp_path / "ck" / "synthetic" / "ae" / "model"
    model_dir.mkdir(parents=True)
    (model_dir / "net_best_loss.tar").write_bytes(b"x")
    for which in ("net_best_loss", "net_best_loss.tar"):
        cfg = _eval_cfg(name="ae", checkpoints_dir=str(tmp_path / "ck"), which_epoch=which)
        assert TE.resolve_checkpoint(cfg) == (str(model_dir / "net_best_loss.tar"), "ae", "net_best_loss")


# ---------------------------------------------------------------------------------------------------------------------
# the statistics a tokenizer was trained with
# ---------------------------------------------------------------------------------------------------------------------


def _recorded(tmp_path, record, statistics_format="ours"):
    tok = SimpleNamespace(dataset=record, source_format=statistics_format, statistics_format=statistics_format,
                          source=str(tmp_path / "net.tar"))
    return TE.recorded_statistics(tok, SPEC, SimpleNamespace(ae_meta_dir=None, data_root=str(tmp_path)), None)


def test_the_checkpoints_own_statistics_come_back_as_mean_then_std(tmp_path):
    d = SPEC.dim_pose
    record = {"name": "synthetic", "mean": torch.full((d,), 0.5, dtype=torch.float64), "std": torch.full((d,), 2.0)}
    mean, std, where = _recorded(tmp_path, record)
    assert where == "checkpoint" and mean.dtype == std.dtype == np.float32
    assert np.all(mean == 0.5) and np.all(std == 2.0)


def test_statistics_recorded_for_another_dataset_are_refused_naming_the_file(tmp_path):
    d = SPEC.dim_pose
    record = {"name": "kit", "mean": torch.zeros(d), "std": torch.ones(d)}
    with pytest.raises(CheckpointError, match=r"net.tar: dataset name is 'kit' in the checkpoint but 'synthetic'"):
        _recorded(tmp_path, record)


def test_a_record_with_a_mean_but_no_std_is_a_record_without_statistics(tmp_path):
    record = {"name": "synthetic", "mean": torch.zeros(SPEC.dim_pose), "std": None}
    with pytest.raises(CheckpointError, match=r"net.tar: the checkpoint records no mean/std"):
        _recorded(tmp_path, record)


def test_statistics_from_ae_meta_dir_name_the_folder(tmp_path):
    d = SPEC.dim_pose
    folder = tmp_path / "given"
    _meta_folder(folder, d, 0.0)
    tok = SimpleNamespace(dataset=None, source_format="ours", statistics_format="ours", source="net.tar")
    _, _, where = TE.recorded_statistics(tok, SPEC, SimpleNamespace(ae_meta_dir=str(folder), data_root=None), None)
    assert where == f"--ae_meta_dir {folder}"


def _dataset_statistics(root, d):
    mean = np.linspace(-1, 1, d).astype(np.float32)
    std = np.linspace(0.5, 1.5, d).astype(np.float32)
    np.save(root / "Mean.npy", mean)
    np.save(root / "Std.npy", std)
    return mean, std


def test_an_evaluator_trained_here_gives_an_official_file_the_dataset_statistics_with_the_feature_bias(tmp_path,
                                                                                                      caplog):
    """Only a released evaluator's statistics are what T2M-GPT / MoMask files were trained with; one trained here
    leaves them the dataset Mean/Std with the evaluator feature bias, with a warning naming the file and evaluator."""
    mean, std = _dataset_statistics(tmp_path, SPEC.dim_pose)
    ev = SimpleNamespace(released=False, mean=np.zeros(SPEC.dim_pose, np.float32),
                         std=np.ones(SPEC.dim_pose, np.float32), path="here/finest.tar")
    with caplog.at_level("WARNING", logger="utils.tokenizer_eval"):
        got_mean, got_std, where = TE.convention_statistics("momask", "net.tar", SPEC, str(tmp_path), ev)
    want_mean, want_std = eval_normalization(mean, std, SPEC)
    assert not np.allclose(want_std, std)  # the bias changes some dims of this layout
    np.testing.assert_array_equal(got_mean, want_mean)
    np.testing.assert_array_equal(got_std, want_std)
    assert where == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    assert "net.tar: the evaluator here/finest.tar was trained here" in caplog.text


def test_mardm_files_use_the_dataset_statistics_as_they_are(tmp_path):
    mean, std = _dataset_statistics(tmp_path, SPEC.dim_pose)
    got_mean, got_std, where = TE.convention_statistics("mardm", "net.tar", SPEC, str(tmp_path), None)
    np.testing.assert_array_equal(got_mean, mean)
    np.testing.assert_array_equal(got_std, std)
    assert where == "dataset Mean/Std (mardm convention)"


# ---------------------------------------------------------------------------------------------------------------------
# reconstruction errors and code usage
# ---------------------------------------------------------------------------------------------------------------------


def test_every_residual_layer_counts_its_own_dead_codes():
    stats = _stats(codebook_size=4, unit_length=4)
    motion = torch.zeros(1, 8, SPEC.dim_pose)
    stats.update(motion, motion, torch.tensor([8]), torch.tensor([[[0, 3], [1, 3]]]))  # (B, N, Q)
    layers = stats.summary()["codebook"]["layers"]
    assert [(layer["used_codes"], layer["dead_codes"]) for layer in layers] == [(2, 2), (1, 3)]
    assert [layer["usage"] for layer in layers] == [0.5, 0.25]


def _result(rec, bps=45.0):
    return {"model_name": "FSQ", "kind": "fsq", "dataset": "beatx", "split": "test", "bits_per_second": bps,
            "reconstruction": rec}


def test_the_summary_table_prints_both_mpjpes_the_part_errors_and_code_usage():
    rec = {"frames": 120, "mpjpe_mm": 12.345, "mpjpe_seq_mm": 20.5, "group_mae": {"rot": 0.5},
           "group_mae_normalized": {"rot": 0.25}, "part_mae": {"face": 0.125, "hands": 0.5},
           "part_rotation_error_deg": {"face": 3.0, "hands": 4.5},
           "codebook": {"codebook_size": 8, "tokens": 30,
                        "layers": [{"layer": 0, "perplexity": 3.0, "usage": 0.5, "used_codes": 4, "dead_codes": 4}]}}
    assert TE.reconstruction_table(_result(rec)).splitlines() == [
        "FSQ (fsq) on beatx test, 120 frames",
        "  MPJPE per frame     12.35 mm",
        "  MPJPE per sequence  20.50 mm",
        "  MAE rot             0.50000 (0.2500 normalised)",
        "  part face           MAE 0.12500, rotation 3.00 deg",
        "  part hands          MAE 0.50000, rotation 4.50 deg",
        "  layer 0: perplexity 3.0, usage 0.500 (4/8), dead 4",
        "  bits per second     45.0",
    ]


def test_the_summary_table_of_a_continuous_part_tokenizer_has_no_mpjpe_rotation_or_bit_rate():
    rec = {"frames": 10, "mpjpe_mm": None, "mpjpe_seq_mm": None, "group_mae": {}, "group_mae_normalized": {},
           "part_mae": {"face": 0.25}, "codebook": None}
    assert TE.reconstruction_table(_result(rec, bps=None)).splitlines() == [
        "FSQ (fsq) on beatx test, 10 frames",
        "  MPJPE               n/a",
        "  part face           MAE 0.25000",
        "  bits per second     n/a (continuous)",
    ]


def test_evaluation_labels_training_never_saw_are_encoded_as_unknown_with_a_warning(tmp_path, caplog):
    """A clip labelled with a value outside the checkpoint's vocabulary gets id 0 and is listed in a warning; labels
    training knew raise none."""
    record = {"names": ["species"], "vocabularies": {"species": ["<unk>", "human", "robot"]}}
    write_conditions(str(tmp_path), {"c1": {"species": "robot"}, "c2": {"species": "human"}})
    with caplog.at_level("WARNING", logger="utils.tokenizer_eval"):
        labels = TE.evaluation_conditions(record, "net.tar", str(tmp_path))
    assert caplog.records == []
    assert TE.batch_conditions(labels, ["c1", "c2"])["species"].tolist() == [2, 1]
    write_conditions(str(tmp_path), {"c1": {"species": "robot"}, "c2": {"species": "alien"}})
    with caplog.at_level("WARNING", logger="utils.tokenizer_eval"):
        labels = TE.evaluation_conditions(record, "net.tar", str(tmp_path))
    assert "not trained with are encoded as unknown: species=alien (1 clips, e.g. c2)" in caplog.text
    assert TE.batch_conditions(labels, ["c1", "c2"])["species"].tolist() == [2, 0]


# ---------------------------------------------------------------------------------------------------------------------
# the body-part columns and the evaluator choice of evaluation_AE.py
# ---------------------------------------------------------------------------------------------------------------------


def test_a_part_record_of_every_column_in_another_order_is_read_in_its_own_order():
    """Only the identity column order is the whole body; a record of every column reordered keeps its order."""
    reordered = {"name": "mirrored", "indices": list(reversed(range(SPEC.dim_pose)))}
    assert body_part_columns({"body_part": reordered}, SPEC, SPEC.dim_pose, "run.tar") == \
        (reordered, reordered["indices"])


# ---------------------------------------------------------------------------------------------------------------------
# the length estimator's data
# ---------------------------------------------------------------------------------------------------------------------


def test_caption_lengths_give_every_caption_of_a_clip_its_own_row(tmp_path):
    """Two captions of one clip are two (caption, length) rows; a sub-clip caption gets the sub-clip's length."""
    write_dataset(tmp_path, {"a": 120, "b": 50}, {"train": ["a", "b"]},
                  texts={"a": [WHOLE, "a person runs.#a/DET person/NOUN run/VERB#0.0#0.0",
                               "a person jumps.#a/DET person/NOUN jump/VERB#1.0#4.0"]})
    pairs = caption_lengths(get_dataset_spec("t2m", str(tmp_path)), "train", str(tmp_path), progress=False)
    assert sorted(zip(pairs.captions, pairs.lengths.tolist())) == [
        ("a person jumps.", 60), ("a person runs.", 120), ("a person walks forward.", 50),
        ("a person walks forward.", 120)]
    assert pairs.lengths.dtype == np.int64
