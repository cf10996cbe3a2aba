"""render.py's files beside a video when the disk is full: the earlier ones stay whole, and the error names them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_render import random_walk

import render


def test_a_joints_file_that_cannot_be_written_leaves_the_earlier_one_whole(tmp_path):
    """A full disk (here a file-size limit) while the joints beside a video are saved: the joints file of an earlier
    render stays whole, no temporary is left, and render.py says which file in one line. The joints used to be
    written in place, cut short, with a traceback."""
    import resource

    from utils.motion_process import extract_features

    np.save(tmp_path / "walk.npy", extract_features(random_walk(frames=41)))  # 40 frames: 10 KiB of joints
    out = tmp_path / "videos"
    out.mkdir()
    (out / "walk_joints.npy").write_bytes(b"an earlier render's joints")
    done = subprocess.run([sys.executable, "render.py", str(tmp_path / "walk.npy"), "--dataset_name", "t2m",
                           "--format", "gif", "--dpi", "20", "--out", str(out), "--overwrite"],
                          cwd=Path(render.__file__).parent,
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("render:")]
    assert lines[0] == "render.py: error: 1 of 1 videos failed:", done.stderr[-2000:]
    assert lines[1].startswith(f"cannot save the joints to {out / 'walk_joints.npy'} (") and \
        lines[1].endswith("written); nothing was drawn") and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["walk_joints.npy"]
    assert (out / "walk_joints.npy").read_bytes() == b"an earlier render's joints"


def test_an_existing_video_is_replaced_only_with_overwrite(monkeypatch, tmp_path):
    """The video beside a sample's joints is sample.py's (titled with its prompt, listed in its manifest): render.py
    on those joints replaced it without a word. It is now refused, before any file is written, unless --overwrite."""
    from utils import plot_script

    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)  # no ffmpeg: auto writes GIF
    np.save(tmp_path / "a_person_walks_r00.npy", random_walk())
    np.save(tmp_path / "batch.npy", np.stack([random_walk(), random_walk(seed=2)]))
    video = tmp_path / "a_person_walks_r00.gif"
    video.write_bytes(b"sample.py's video")
    (tmp_path / "batch_1.gif").write_bytes(b"an earlier render")
    (tmp_path / "batch_0.mp4").write_bytes(b"an MP4 this run cannot write without ffmpeg")
    before = sorted(p.name for p in tmp_path.iterdir())
    inputs = [str(tmp_path / "a_person_walks_r00.npy"), str(tmp_path / "batch.npy"), "--dataset_name", "t2m",
              "--dpi", "20"]
    with pytest.raises(FileExistsError) as refused:
        render.main(render.parse_args(inputs))
    assert str(refused.value) == (f"2 file(s) exist already and would be replaced: {video}, {tmp_path / 'batch_1.gif'}"
                                  f"; pass --overwrite to replace them, or --out another folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == before and video.read_bytes() == b"sample.py's video"

    written = render.main(render.parse_args([*inputs, "--overwrite"]))
    assert written == [str(video), str(tmp_path / "batch_0.gif"), str(tmp_path / "batch_1.gif")]
    with Image.open(video) as image:
        assert image.format == "GIF"
    assert (tmp_path / "batch_0.mp4").read_bytes() == b"an MP4 this run cannot write without ffmpeg"


def test_joints_a_features_render_would_save_are_replaced_only_with_overwrite(monkeypatch, tmp_path):
    """A features input saves its joints as <name>_joints.npy beside the video: a file of that name that is not an
    input (the user's own joints) was replaced without a word."""
    from utils import plot_script
    from utils.synthetic import generate_synthetic_dataset

    monkeypatch.setattr(plot_script.shutil, "which", lambda *args, **kwargs: None)
    data = tmp_path / "Synthetic"
    generate_synthetic_dataset(str(data), num_motions=3, seed=0)
    clip = tmp_path / "clip.npy"
    clip.write_bytes(next((data / "new_joint_vecs").iterdir()).read_bytes())
    mine = tmp_path / "clip_joints.npy"
    np.save(mine, np.zeros((2, 1, 3)))
    before = mine.read_bytes()
    args = [str(clip), "--dataset_name", "synthetic", "--data_root", str(data), "--dpi", "20"]
    with pytest.raises(FileExistsError, match=r"1 file\(s\) exist already and would be replaced: .*clip_joints\.npy; "
                                              r"pass --overwrite"):
        render.main(render.parse_args(args))
    assert mine.read_bytes() == before and not (tmp_path / "clip.gif").exists()
    assert render.main(render.parse_args([*args, "--overwrite"])) == [str(tmp_path / "clip.gif")]
    assert np.load(mine).shape[1:] == (22, 3)
