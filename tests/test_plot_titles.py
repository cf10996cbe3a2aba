"""Titles and captions of videos are free text (prompts, file names): drawn as written, never read as mathtext."""

import matplotlib
import numpy as np
import pytest
from PIL import Image

from utils import plot_script
from utils.paramutil import T2M_KINEMATIC_CHAIN

SMALL = {"dpi": 30, "figsize": 1.5, "fmt": "gif"}
TITLES = ["go $\\undefinedcmd$", "$5 and $10"]  # short enough to stay on one line


@pytest.fixture
def figures(monkeypatch):
    """Every figure handed to the encoder, kept after it is written."""
    seen = []
    original = plot_script._encode

    def encode(fig, *args):
        seen.append(fig)
        return original(fig, *args)

    monkeypatch.setattr(plot_script, "_encode", encode)
    return seen


def joints(frames: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(frames, 22, 3)).astype(np.float32)


def assert_literal(text, expected: str) -> None:
    assert text.get_text() == expected and text.get_parse_math() is False and text.get_usetex() is False


def assert_gif(path: str, frames: int = 2) -> None:
    with Image.open(path) as image:
        assert image.format == "GIF" and image.n_frames == frames


@pytest.mark.parametrize("title", TITLES)
def test_a_title_with_dollars_is_drawn_as_written(tmp_path, figures, title):
    """'$\\undefinedcmd$' lost the video to a mathtext parse error, and '$5 and $10' was drawn as maths."""
    path = plot_script.plot_3d_motion(str(tmp_path / "one.gif"), joints(), T2M_KINEMATIC_CHAIN, title=title,
                                      save_joints=False, **SMALL)
    assert_gif(path)
    assert_literal(figures[-1]._suptitle, title)
    path = plot_script.plot_multiple(str(tmp_path / "grid.gif"), [joints(), joints()], T2M_KINEMATIC_CHAIN,
                                     titles=[title, "plain"], title=title, save_joints=False, **SMALL)
    assert_gif(path)
    assert_literal(figures[-1]._suptitle, title)
    assert_literal(figures[-1].axes[0].title, title)
    path = plot_script.plot_frames(str(tmp_path / "frames.gif"), lambda f: np.full((44, 44, 3), 90 * f, np.uint8), 2,
                                   title=title, **SMALL)
    assert_gif(path)
    assert_literal(figures[-1]._suptitle, title)


def test_captions_with_dollars_are_drawn_as_written(tmp_path, figures):
    path = plot_script.plot_3d_motion(str(tmp_path / "seq.gif"), joints(3), T2M_KINEMATIC_CHAIN, save_joints=False,
                                      captions=[(0, TITLES[0]), (2, TITLES[1])], **SMALL)
    assert_gif(path, 3)
    assert_literal(figures[-1]._suptitle, TITLES[1])  # the caption of the last frame drawn


def test_titles_stay_literal_under_usetex(tmp_path, figures):
    """A user's matplotlibrc with text.usetex on (which needs a LaTeX install) does not reach the titles."""
    with matplotlib.rc_context({"text.usetex": True}):
        path = plot_script.plot_3d_motion(str(tmp_path / "tex.gif"), joints(), T2M_KINEMATIC_CHAIN,
                                          title=TITLES[1], save_joints=False, **SMALL)
    assert_gif(path)
    assert_literal(figures[-1]._suptitle, TITLES[1])
