"""Statistics, representation conversions and condition labels: contracts no other test pinned. Statistics files
(every entry checked, the group named in a message, the slice and dtype returned, meta folders), the feature bias
(copies, shapes, biases below one), the normaliser's feature axis, conversions of short and padded motions, their
input checks, renormalisation and report notes, and condition vocabularies, records, files, dropout bounds and
batches."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from layout_helpers import FakeWindows

from utils.conditions import (
    UNKNOWN,
    CollateConditions,
    ConditionedWindow,
    ConditionedWindowDataset,
    ConditionLabels,
    build_condition_labels,
    read_conditions,
    training_labels,
    write_conditions,
)
from utils.dataset_specs import DATASETS
from utils.normalization import (
    DatasetError,
    Normalizer,
    eval_normalization,
    feat_bias_normalization,
    load_mean_std,
    read_meta_statistics,
)
from utils.representation import get_conversion, joints_to_features, with_extrapolated_frame
from utils.synthetic import synthesize_motion

T2M = DATASETS["t2m"]


def _write_stats(root, mean, std) -> str:
    np.save(root / "Mean.npy", np.asarray(mean))
    np.save(root / "Std.npy", np.asarray(std))
    return str(root)


# ----------------------------------------------------------------------------------------------------------------------
# statistics files


def test_a_non_finite_std_in_the_last_feature_is_refused(tmp_path):
    std = np.ones(263, dtype=np.float32)
    std[262] = np.nan
    root = _write_stats(tmp_path, np.zeros(263, np.float32), std)
    with pytest.raises(DatasetError, match=r"Std\.npy has 1 non-finite entries \(first at index 262, group "
                                           r"'foot_contact'\)") as info:
        load_mean_std(T2M, root)
    assert info.value.kind == "stats_nonfinite"


def test_a_bad_entry_is_named_by_the_group_that_starts_at_it(tmp_path):
    std = np.ones(263, dtype=np.float32)
    std[4] = 0.0  # the first ric entry; root_y stops there
    root = _write_stats(tmp_path, np.zeros(263, np.float32), std)
    with pytest.raises(DatasetError, match=r"1 zero or negative entries \(first at index 4, group 'ric'\)"):
        load_mean_std(T2M, root)


def test_a_zero_std_is_refused_but_a_zero_mean_is_not(tmp_path):
    std = np.ones(263, dtype=np.float32)
    std[100] = 0.0
    root = _write_stats(tmp_path, np.zeros(263, np.float32), std)
    with pytest.raises(DatasetError, match=r"Std\.npy has 1 zero or negative entries") as info:
        load_mean_std(T2M, root)
    assert info.value.kind == "std_zero"


def test_statistics_come_back_float32_and_sliced_to_the_spec(tmp_path):
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=263), rng.uniform(0.5, 2.0, 263)  # float64 files
    root = _write_stats(tmp_path, mean, std)
    got_mean, got_std = load_mean_std(DATASETS["t2m_67"], root)
    assert got_mean.dtype == got_std.dtype == np.float32 and got_mean.shape == got_std.shape == (67,)
    np.testing.assert_array_equal(got_mean, mean[:67].astype(np.float32))
    np.testing.assert_array_equal(got_std, std[:67].astype(np.float32))


def test_a_truncated_statistics_file_names_the_file(tmp_path):
    np.save(tmp_path / "Mean.npy", np.zeros(263, np.float32))
    data = (tmp_path / "Mean.npy").read_bytes()
    (tmp_path / "Mean.npy").write_bytes(data[:-100])
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    with pytest.raises(DatasetError, match=r"Mean\.npy: cannot read as a \.npy array") as info:
        load_mean_std(T2M, str(tmp_path))
    assert info.value.kind == "stats_shape"


def test_a_folder_named_like_a_statistics_file_is_a_missing_file(tmp_path):
    (tmp_path / "Mean.npy").mkdir()
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    with pytest.raises(DatasetError, match=r"Mean\.npy: missing; expected the dataset mean of shape \(263,\)") as info:
        load_mean_std(T2M, str(tmp_path))
    assert info.value.kind == "missing_stats"


class _TouchOnLoad:
    """Unpickling it creates ``path``: shows whether a loader ran a pickle."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_a_pickled_statistics_file_is_refused_without_running_the_pickle(tmp_path):
    marker = tmp_path / "unpickled"
    np.save(tmp_path / "Mean.npy", np.array([_TouchOnLoad(marker)], dtype=object), allow_pickle=True)
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    with pytest.raises(DatasetError, match=r"Mean\.npy: cannot read as a \.npy array"):
        load_mean_std(T2M, str(tmp_path))
    assert not marker.exists()


def test_a_folder_named_like_a_meta_statistics_file_is_a_missing_file(tmp_path):
    np.save(tmp_path / "mean.npy", np.zeros(67, np.float32))
    (tmp_path / "std.npy").mkdir()
    with pytest.raises(FileNotFoundError, match=r"--meta_dir .*: std\.npy not found"):
        read_meta_statistics(str(tmp_path), "--meta_dir", 67)


def test_meta_statistics_of_exactly_the_width_are_read_as_they_are(tmp_path):
    mean, std = np.arange(67, dtype=np.float64), np.linspace(1.0, 2.0, 67)
    np.save(tmp_path / "mean.npy", mean)
    np.save(tmp_path / "std.npy", std)
    got_mean, got_std = read_meta_statistics(str(tmp_path), "--meta_dir", 67)
    assert got_mean.dtype == got_std.dtype == np.float32
    np.testing.assert_array_equal(got_mean, mean.astype(np.float32))
    np.testing.assert_array_equal(got_std, std.astype(np.float32))


# ----------------------------------------------------------------------------------------------------------------------
# feature bias and the normaliser


def test_the_feature_bias_leaves_its_inputs_unchanged():
    mean, std = np.zeros(263, np.float32), np.ones(263, np.float32)
    _, biased = eval_normalization(mean, std, T2M)
    assert biased[0] == pytest.approx(0.2) and (std == 1.0).all() and (mean == 0.0).all()


def test_the_feature_bias_divides_only_root_and_contact_std():
    mean, std = np.arange(263, dtype=np.float32), np.full(263, 2.0, np.float32)
    out_mean, out_std = feat_bias_normalization(mean, std, T2M, 4.0)
    np.testing.assert_array_equal(out_mean, mean)
    biased = np.zeros(263, bool)
    biased[:4] = biased[259:] = True
    np.testing.assert_array_equal(out_std[biased], 0.5)
    np.testing.assert_array_equal(out_std[~biased], 2.0)


def test_a_feature_bias_below_one_is_applied():
    _, std = feat_bias_normalization(np.zeros(263), np.ones(263), T2M, 0.5)
    assert std[0] == 2.0 and std[262] == 2.0 and std[100] == 1.0


def test_the_feature_bias_refuses_a_mean_of_another_width():
    with pytest.raises(ValueError, match=r"mean \(67,\) and std \(263,\); expected \(263,\) for dataset 't2m'"):
        feat_bias_normalization(np.zeros(67), np.ones(263), T2M, 5.0)


def test_a_zero_feature_bias_is_refused():
    with pytest.raises(ValueError, match="the feature bias must be > 0 and finite, got 0"):
        feat_bias_normalization(np.zeros(263), np.ones(263), T2M, 0.0)


def test_the_normalizer_checks_the_feature_axis_not_the_batch_axis():
    norm = Normalizer(np.zeros(3), np.full(3, 2.0))
    x = np.ones((3, 5), np.float32)  # 3 rows, but 5 features
    with pytest.raises(ValueError, match="input has 5 features in its last dim; expected 3"):
        norm.transform(x)
    np.testing.assert_array_equal(norm.inverse(norm.transform(np.ones((4, 3)))), np.ones((4, 3)))


# ----------------------------------------------------------------------------------------------------------------------
# representation conversions


def _joints(frames: int) -> np.ndarray:
    """A synthetic t2m-skeleton motion (frames, 22, 3)."""
    return synthesize_motion(np.random.default_rng(0)).joints[:frames]


def test_joints_to_features_gives_one_float32_row_per_frame():
    for spec in (T2M, DATASETS["t2m_67"]):
        features = joints_to_features(_joints(20), spec)
        assert features.shape == (20, spec.dim_pose) and features.dtype == np.float32


def test_joints_of_a_skeleton_without_a_target_are_refused():
    kit = DATASETS["kit"]  # HumanML3D layout, 21 joints
    with pytest.raises(ValueError, match=r"dataset 'kit' \(humanml3d, 21 joints\) has no feature extraction"):
        joints_to_features(np.zeros((10, 21, 3)), kit)


def test_two_frames_extrapolate_at_their_velocity():
    j = np.zeros((2, 22, 3))
    j[1, :, 1] = 0.5
    np.testing.assert_allclose(with_extrapolated_frame(j)[-1, :, 1], 1.0)


def test_a_one_frame_sample_converts_to_its_features():
    essential = torch.from_numpy(joints_to_features(_joints(4), DATASETS["t2m_67"]))
    conversion = get_conversion(DATASETS["t2m_67"], T2M)
    out, _ = conversion(essential[None], torch.tensor([1]))
    assert out[0, 0].abs().sum() > 0 and not out[0, 1:].any()
    alone, _ = conversion(essential[None, :1], torch.tensor([1]))
    np.testing.assert_allclose(out[:, :1].numpy(), alone.numpy(), rtol=1e-5, atol=1e-6)


def test_frames_past_a_length_do_not_change_the_converted_frames():
    essential = torch.from_numpy(joints_to_features(_joints(30), DATASETS["t2m_67"]))
    conversion = get_conversion(DATASETS["t2m_67"], T2M)
    padded = torch.cat([essential[:20], torch.randn(10, 67)])[None]
    out, lengths = conversion(padded, torch.tensor([20]))
    alone, _ = conversion(essential[None, :20], torch.tensor([20]))
    assert lengths.tolist() == [20] and not out[0, 20:].any()
    np.testing.assert_allclose(out[:, :20].numpy(), alone.numpy(), rtol=1e-5, atol=1e-6)


def test_a_conversion_refuses_features_without_a_batch_axis():
    conversion = get_conversion(T2M, DATASETS["t2m_67"])
    with pytest.raises(ValueError, match=r"conversion t2m -> t2m_67: expected features \(B, T, 263\), got \(8, 263\)"):
        conversion(torch.zeros(8, 263), torch.tensor([8]))


def test_the_essential_subset_must_have_the_same_skeleton():
    other = dataclasses.replace(DATASETS["t2m_67"], name="t2m_67_j23", joints_num=23)
    with pytest.raises(ValueError, match=r"'t2m_67_j23' \(67 dims, 23 joints\) is not the essential subset of 't2m'"):
        get_conversion(T2M, other)


def test_lossy_renormalisation_converts_the_denormalised_motion():
    essential = torch.from_numpy(joints_to_features(_joints(16), DATASETS["t2m_67"]))[None]
    conversion = get_conversion(DATASETS["t2m_67"], T2M)
    rng = np.random.default_rng(0)
    from_mean, from_std = rng.normal(size=67).astype(np.float32), rng.uniform(0.5, 2, 67).astype(np.float32)
    to_mean, to_std = rng.normal(size=263).astype(np.float32), rng.uniform(0.5, 2, 263).astype(np.float32)
    motion = (essential - torch.from_numpy(from_mean)) / torch.from_numpy(from_std)
    out, lengths = conversion.renormalize(motion, torch.tensor([16]), from_mean, from_std, to_mean, to_std)
    raw, _ = conversion(motion * torch.from_numpy(from_std) + torch.from_numpy(from_mean), torch.tensor([16]))
    assert lengths.tolist() == [16]
    expected = (raw - torch.from_numpy(to_mean)) / torch.from_numpy(to_std)
    np.testing.assert_allclose(out.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_only_a_lossy_conversion_warns_and_the_note_names_the_evaluator(caplog):
    log = logging.getLogger("test_conversion_note")
    caplog.set_level(logging.WARNING, logger="test_conversion_note")
    exact = get_conversion(T2M, DATASETS["t2m_67"])
    assert exact.title_note(log) == " | scored as t2m_67 through the exact conversion t2m -> t2m_67"
    assert not caplog.records
    lossy = get_conversion(DATASETS["t2m_67"], T2M)
    assert lossy.title_note(log, "reconstruction") == " | scored as t2m through the LOSSY conversion t2m_67 -> t2m"
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("t2m_67 reconstruction is scored by the t2m evaluator through a "
                                                     "lossy conversion")


# ----------------------------------------------------------------------------------------------------------------------
# condition labels


def test_condition_ids_follow_the_requested_name_order(tmp_path):
    path = write_conditions(str(tmp_path), {"a": {"species": "dog", "gender": "male"},
                                            "b": {"species": "cat", "gender": "female"}})
    labels = read_conditions(path, names=["species", "gender"])
    assert labels.names == ("species", "gender")
    assert labels.ids("a").tolist() == [2, 2] and labels.ids("b").tolist() == [1, 1]
    batch = ConditionedWindowDataset(FakeWindows(["a", "b"]), labels).collate
    assert batch.names == ("species", "gender")


def test_condition_names_default_to_sorted_order():
    names = ["zeta", "alpha", "mu", "beta", "omega", "kappa", "gamma", "delta"]
    labels = build_condition_labels({"a": {n: "x" for n in names}})
    assert labels.names == tuple(sorted(names))


def test_a_malformed_condition_record_names_its_source():
    for record in ({"names": 3, "vocabularies": {}}, {"names": ["species"], "vocabularies": ["species"]}):
        with pytest.raises(ValueError, match="ckpt: condition record needs 'names' and 'vocabularies'"):
            ConditionLabels.from_dict(record, source="ckpt")


def test_an_empty_label_is_refused_naming_clip_and_field():
    with pytest.raises(DatasetError, match=r"src: clip 'a', field 'species': expected a non-empty string label, "
                                           r"got ''"):
        build_condition_labels({"a": {"species": ""}}, source="src")


def test_a_training_label_spelled_like_the_unknown_token_is_not_reported_unseen():
    labels = build_condition_labels({"a": {"species": UNKNOWN}, "b": {"species": "dog"}, "c": {"species": UNKNOWN}})
    trained, unseen = training_labels(labels, ["a", "b"])
    assert unseen == {} and trained.vocabularies["species"] == (UNKNOWN, "dog")
    assert trained.ids("c").tolist() == [0] and trained.ids("b").tolist() == [1]


def test_labels_that_could_not_be_read_back_are_not_written(tmp_path):
    with pytest.raises(DatasetError, match="clip 'a', field 'species'"):
        write_conditions(str(tmp_path), {"a": {"species": 3}})
    assert not (tmp_path / "conditions.json").exists()
    path = write_conditions(str(tmp_path / "c.json"), {"b": {"species": "dog"}, "a": {"species": "cat"}})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": {"species": "cat"}, "b": {"species": "dog"}}
    assert path == str(tmp_path / "c.json")


def test_a_drop_probability_of_one_is_refused():
    labels = build_condition_labels({"a": {"species": "dog"}})
    with pytest.raises(ValueError, match=r"condition drop probability must be in \[0, 1\), got 1.0"):
        ConditionedWindowDataset(FakeWindows(["a"]), labels, drop_prob=1.0)


def test_a_single_unlabelled_clip_is_refused():
    labels = build_condition_labels({"a": {"species": "dog"}})
    with pytest.raises(DatasetError, match=r"1 of 2 train clips lack labels: b \(no species\); expected every clip "
                                           r"to have \['species'\]"):
        ConditionedWindowDataset(FakeWindows(["a", "b"]), labels)


def test_collate_gives_each_condition_its_ids_across_the_batch():
    collate = CollateConditions(("species", "gender"))
    items = [ConditionedWindow(torch.full((4, 3), float(i)), torch.tensor([i + 1, 10 + i])) for i in range(3)]
    batch = collate(items)
    assert batch.motion.shape == (3, 4, 3)
    assert batch.cond["species"].tolist() == [1, 2, 3] and batch.cond["gender"].tolist() == [10, 11, 12]
    with pytest.raises(ValueError, match=r"items carry 3 condition ids, expected 2 \(\['species', 'gender'\]\)"):
        collate([ConditionedWindow(torch.zeros(4, 3), torch.tensor([1, 2, 3])) for _ in range(2)])


def test_a_condition_name_given_twice_is_refused(tmp_path):
    path = write_conditions(str(tmp_path), {"a": {"species": "dog", "gender": "male"}})
    with pytest.raises(DatasetError, match=r"conditions\.json: condition names \['species'\] given more than once"):
        read_conditions(path, names=["species", "gender", "species"])
    with pytest.raises(DatasetError, match=r"src: condition names \['gender'\] given more than once"):
        build_condition_labels({"a": {"gender": "male"}}, names=["gender", "gender"], source="src")
