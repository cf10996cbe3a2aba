"""The import's wrong-``up_axis`` check (``utils.bvh_import.body_extent``): a clip is reported when, in its median
frame, the body is lower than it is wide with the trunk more than 45 degrees from vertical. Upright clips (walking,
running, bowing, squatting, sitting) are not reported, the same clips lying flat are, and so is every real Bandai clip
read with the wrong up axis, none read with the right one."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from test_bvh import BANDAI

from utils.bvh import SKELETON_DIR, load_skeleton_map, read_bvh_smpl22
from utils.bvh_import import SourceClip, body_extent, import_bvh_folder, import_clip_folder
from utils.synthetic import synthesize_motion

H3D_JOINTS = BANDAI.parents[1] / "humanml3d-samples" / "new_joints"
UPRIGHT = ("walk", "run", "jump", "kick", "bow", "squat", "sit", "wave", "walk_sit")


def _on_back(joints: np.ndarray) -> np.ndarray:
    """The body turned about X to lie face up: Z (forward) becomes up, as a Y-up file read with ``up_axis: z``."""
    return joints[..., [0, 2, 1]] * np.array([1.0, 1.0, -1.0])


def _on_side(joints: np.ndarray) -> np.ndarray:
    """The body turned about Z to lie on its side: X (its left) becomes up."""
    return joints[..., [1, 0, 2]] * np.array([-1.0, 1.0, 1.0])


def _bandai_files() -> list[Path]:
    if not BANDAI.is_dir():
        pytest.skip(f"real Bandai Namco BVH clips not found in {BANDAI} (see ../shared/data/SOURCES.md)")
    return sorted(BANDAI.glob("*.bvh"))


def _z_up_bandai(tmp_path: Path) -> str:
    """``options/skeletons/bandai.yaml`` with the wrong ``up_axis: z``, as a user's copy would have it."""
    text = (SKELETON_DIR / "bandai.yaml").read_text()
    assert "\nup_axis: y\n" in text
    path = tmp_path / "bandai_z.yaml"
    path.write_text(text.replace("\nup_axis: y\n", "\nup_axis: z\n"))
    return str(path)


def test_upright_clips_are_not_reported_and_the_same_clips_lying_flat_are(tmp_path, caplog):
    joints = {}
    for action in UPRIGHT:
        for seed in (0, 3):
            upright = synthesize_motion(np.random.default_rng(seed), action).joints
            joints[f"{action}{seed}"] = upright
            joints[f"{action}{seed}_back"] = _on_back(upright)
            joints[f"{action}{seed}_side"] = _on_side(upright)
    # Lying clips that are more than 0.4 times as high as wide (an earlier check's bound), as a walk with its strides
    # and arm swings upward is, are among them.
    assert any(0.4 < body_extent(j).height_ratio < 1.0 for name, j in joints.items() if name.endswith(("_back",
                                                                                                       "_side")))
    src = tmp_path / "src"
    files = [src / f"{name}.bvh" for name in joints]

    def read_clip(path: Path) -> SourceClip:
        return SourceClip(path.stem, path.stem, joints[path.stem], 20.0, len(joints[path.stem]))

    with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
        summary = import_clip_folder(files, str(src), str(tmp_path / "Mixed"), read_clip, target_fps=20.0,
                                     labels=None, seed=0, progress=None, lying_hint="check the up axis",
                                     size_hint="")
    assert sorted(summary.lying) == sorted(name for name in joints if name.endswith(("_back", "_side")))
    warned = [r.getMessage() for r in caplog.records if "check the up axis" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith(f"{len(summary.lying)} clips are lower than they are wide, with "
                                                     f"the trunk more than 45 degrees from vertical")


def test_a_body_without_extent_is_not_called_lying():
    """Every joint on one point: no posture to judge (the size check reports the clip)."""
    extent = body_extent(np.zeros((10, 22, 3)))
    assert extent.height == extent.span == 0.0 and not extent.lies_down


def test_sitting_on_the_floor_is_not_reported():
    """A real HumanML3D clip of a person sitting on the floor, legs stretched, is lower than it is wide, but its trunk
    is upright."""
    path = H3D_JOINTS / "011673.npy"
    if not path.is_file():
        pytest.skip(f"real HumanML3D joints not found: {path} (see ../shared/data/SOURCES.md)")
    extent = body_extent(np.load(path))
    assert extent.height_ratio < 1.0 and extent.trunk_rise > 0.9 and not extent.lies_down


def test_every_real_bandai_clip_is_reported_with_the_wrong_up_axis_and_none_with_the_right_one(tmp_path):
    files = _bandai_files()
    assert len(files) == 174
    right, wrong = load_skeleton_map("bandai"), load_skeleton_map(_z_up_bandai(tmp_path))
    upright = [p.stem for p in files if body_extent(read_bvh_smpl22(p, right, 20.0)[0]).lies_down]
    flat = [p.stem for p in files if body_extent(read_bvh_smpl22(p, wrong, 20.0)[0]).lies_down]
    assert upright == [] and flat == [p.stem for p in files]


def test_a_bandai_import_with_the_wrong_up_axis_reports_every_clip(tmp_path, caplog):
    """A walk read Z up lies flat in every frame (0.46 as high as wide): it is reported with the bow and the dash."""
    names = ["dataset-1_bow_active_001", "dataset-1_dash_old_001", "dataset-1_walk_happy_001"]
    _bandai_files()
    src = tmp_path / "src"
    src.mkdir()
    for name in names:
        (src / f"{name}.bvh").symlink_to(BANDAI / f"{name}.bvh")  # the data stays where it is
    with caplog.at_level(logging.WARNING, logger="utils.bvh_import"):
        summary = import_bvh_folder(str(src), str(tmp_path / "BandaiZ"), _z_up_bandai(tmp_path))
    assert sorted(summary.lying) == names
    assert any(r.getMessage().startswith("3 clips are lower than they are wide") and "up_axis is wrong" in
               r.getMessage() for r in caplog.records)
