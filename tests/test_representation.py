"""Conversions between representations (``utils.representation``): the exact essential slice, the lossy
essential -> HumanML3D re-extraction on real HumanML3D clips, and the refusals."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.dataset_specs import DATASETS, get_dataset_spec
from utils.eval_protocol import renormalize
from utils.motion_process import to_essential
from utils.representation import check_same_clips, conversion_for_evaluation, get_conversion, tokenizer_conversions

H3D_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "humanml3d-samples"
# The IK's forward direction is smoothed with a Gaussian of sigma 20 frames cut at 4 sigma: rows further than this
# from the end do not see the extrapolated last frame.
SMOOTHING_REACH = 80


def test_the_essential_slice_is_to_essential_and_commutes_with_normalisation():
    conversion = get_conversion(DATASETS["t2m"], DATASETS["t2m_67"])
    assert conversion.exact and conversion.to_dict() == {
        "from": "t2m", "to": "t2m_67", "from_representation": "humanml3d", "to_representation": "essential",
        "exact": True, "description": conversion.conversion.description}
    torch.manual_seed(0)
    raw, lengths = torch.randn(3, 12, 263), torch.tensor([12, 8, 4])
    out, out_lengths = conversion(raw, lengths)
    assert torch.equal(out, to_essential(raw, 22)) and out.shape == (3, 12, 67) and torch.equal(out_lengths, lengths)

    mean, std = np.random.default_rng(0).normal(size=263), np.random.default_rng(1).uniform(0.5, 2, 263)
    ev_mean, ev_std = np.random.default_rng(2).normal(size=67), np.random.default_rng(3).uniform(0.5, 2, 67)
    motion = (raw - torch.as_tensor(mean, dtype=torch.float32)) / torch.as_tensor(std, dtype=torch.float32)
    converted, _ = conversion.renormalize(motion, lengths, mean, std, ev_mean, ev_std)
    # Bit for bit what a generator whose output was sliced beforehand gets (same statistics, sliced).
    assert torch.equal(converted, renormalize(motion[..., :67], mean[:67], std[:67], ev_mean, ev_std))
    torch.testing.assert_close(converted, (out - torch.as_tensor(ev_mean, dtype=torch.float32))
                               / torch.as_tensor(ev_std, dtype=torch.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not (H3D_SAMPLES / "new_joint_vecs").is_dir(),
                    reason=f"real HumanML3D samples not found in {H3D_SAMPLES} (see ../shared/data/SOURCES.md)")
def test_essential_to_humanml3d_recovers_real_clips_positions():
    """67 -> joints -> 263 on the real clips gives back the original root and ric dims: exact to float rounding away
    from the end, within a few cm near it (the IK's smoothed facing direction reaches past the end, where the true
    frame is replaced by an extrapolated one).

    Measured on the 6 samples (float32 input), root and ric dims: rows before the last 80, max abs 8.4e-7 on 5 clips
    and 1.8e-3 on 000612 (whose file seems cut from a longer processed clip); all rows, max abs <= 5e-3 on 5 clips
    and 8.6e-2 on 000612 (its root yaw velocity; 3.5e-2 on the ric dims), mean abs <= 4.6e-4; foot contacts agree on
    >= 99.7% of the rows."""
    conversion = get_conversion(DATASETS["t2m_67"], DATASETS["t2m"])
    assert not conversion.exact
    clips = [np.load(path).astype(np.float32) for path in sorted((H3D_SAMPLES / "new_joint_vecs").glob("*.npy"))]
    assert len(clips) >= 2
    lengths = torch.tensor([len(c) for c in clips])
    essential = torch.zeros(len(clips), int(lengths.max()) + 3, 67)  # a few frames of padding past the longest
    for i, clip in enumerate(clips):
        essential[i, :len(clip)] = torch.from_numpy(clip[:, :67])
    out, out_lengths = conversion(essential, lengths)
    assert out.shape == (len(clips), essential.shape[1], 263) and out.dtype == torch.float32
    assert torch.equal(out_lengths, lengths)
    for i, clip in enumerate(clips):
        n = len(clip)
        assert not out[i, n:].any()  # past the length: zero, as the protocol pads
        error = np.abs(out[i, :n, :67].numpy() - clip[:, :67])
        assert error[:n - SMOOTHING_REACH].max() < 5e-3
        assert error.max() < 0.1 and error.mean() < 1e-3
        contacts = out[i, :n, 259:].numpy()
        assert set(np.unique(contacts)) <= {0.0, 1.0} and (contacts == clip[:, 259:]).mean() > 0.95


def test_pairs_without_a_conversion_are_refused_naming_those_that_exist():
    with pytest.raises(ValueError, match=r"no conversion from 't2m' \(humanml3d, 263 dims\) to 'motionmillion' "
                                         r"\(vector_272, 272 dims\): no conversion is registered\. Conversions: "
                                         r"humanml3d -> essential \(exact.*essential -> humanml3d \(lossy"):
        get_conversion(DATASETS["t2m"], DATASETS["motionmillion"])
    with pytest.raises(ValueError, match="'t2m_67' .* is not the essential subset of 'kit'"):
        get_conversion(DATASETS["kit"], DATASETS["t2m_67"])
    kit_64 = DATASETS["kit_64"]  # MARDM's KIT-ML subset
    assert get_conversion(DATASETS["kit"], kit_64).exact
    with pytest.raises(ValueError, match=r"built in only for 22 joints \(t2m\); 'kit_64' has 21"):
        get_conversion(kit_64, DATASETS["kit"])
    with pytest.raises(ValueError, match="reads 263-dim files, not the 251-dim files"):
        get_conversion(DATASETS["kit"], dataclasses.replace(kit_64, source_dim=263))


def test_datasets_of_other_clips_or_token_lengths_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--eval_dataset t2m_67: its clips cannot be those of the generator's "
                                         r"dataset 'synthetic' \(data folder dataset/Synthetic vs dataset/HumanML3D\)"):
        conversion_for_evaluation("synthetic", "t2m_67", 4)
    assert conversion_for_evaluation("synthetic", "t2m_67", 4, str(tmp_path)).target.root == str(tmp_path)
    t2m, t2m_67 = DATASETS["t2m"], DATASETS["t2m_67"]
    with pytest.raises(ValueError, match=r"fps 20 vs 30; text_fps 20 vs 30"):
        check_same_clips(t2m, dataclasses.replace(t2m_67, fps=30.0, text_fps=30.0), 4)
    with pytest.raises(ValueError, match="GT lengths are multiples of 4 frames, but the generator makes tokens of 2"):
        check_same_clips(t2m, t2m_67, 2)
    check_same_clips(t2m, get_dataset_spec("t2m_67"), 4)


def test_datasets_of_other_clips_are_refused_for_that_whatever_their_representations():
    """Two datasets of one representation with no conversion between them (synthetic and t2m, both humanml3d) were
    refused as lacking a conversion, which no conversion could fix: their clips differ, and that is the reason."""
    for eval_name, folder in (("t2m", "dataset/HumanML3D"), ("kit", "dataset/KIT-ML; fps 20 vs 12.5")):
        for role, check in (("generator", conversion_for_evaluation), ("tokenizer", tokenizer_conversions)):
            with pytest.raises(ValueError, match=rf"^--eval_dataset {eval_name}: its clips cannot be those of the "
                                                 rf"{role}'s dataset 'synthetic' \(data folder dataset/Synthetic vs "
                                                 rf"{folder}\)"):
                check("synthetic", eval_name, 4)
