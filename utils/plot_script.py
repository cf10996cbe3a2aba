"""Stick-figure animations of joint positions.

``plot_3d_motion`` draws one motion, ``plot_multiple`` a grid of motions (ground truth next to a reconstruction) in one
file. Joints are ``(T, J, 3)`` in the dataset's units with Y up. The view follows the root: the skeleton stays in the
middle, the floor and the root trajectory drawn on it slide underneath. ``plot_frames`` writes images drawn by another
renderer (``utils.mesh_render``) with the same formats and titles. A title (or caption) is wrapped to the figure's
width and keeps its own line breaks; the band above the drawing grows with its lines, so a long one never covers it.
Titles are drawn as written: a ``$`` in a prompt is a dollar sign, not mathtext.

The joints are written to disk before any drawing starts, so a broken video encoder never loses a generated motion.
Videos are MP4 through ffmpeg when the ``ffmpeg`` executable is found and GIF through Pillow otherwise (or when ffmpeg
fails in ``fmt="auto"``); the returned path carries the extension actually written. Each video is encoded into a
hidden temporary file next to it (``utils.atomic_io.atomic_path``) and moved into place, so a failed or killed encode
leaves an earlier video of that name whole. GIFs play in real time at
up to 50 fps: above that, frames are dropped to 50 fps (a GIF delay is whole centiseconds). MP4 is H.264 in
yuv420p, which needs an even width and height: matplotlib rounds an odd figure down to even pixels, and
``plot_frames`` lays its images out in even pixels so that they reach the encoder unscaled.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import textwrap
from collections.abc import Callable, Sequence
from typing import IO

import matplotlib
import numpy as np
from matplotlib import animation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from tqdm import tqdm

from utils.atomic_io import atomic_path, atomic_write

logger = logging.getLogger(__name__)

FORMATS = ("auto", "mp4", "gif")
# HumanML3D and KIT chains come in the order right leg, left leg, spine, right arm, left arm: warm colours mark the
# right side and cool colours the left, so a mirrored motion is visible at a glance. Further chains (SMPL-X head
# joints, imported skeletons) take the colours that follow.
CHAIN_COLORS = ("#d62728", "#1f77b4", "#404040", "#ff7f0e", "#17becf", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
                "#bcbd22")
FLOOR_COLOR = (0.55, 0.55, 0.55, 0.35)
TRAJECTORY_COLOR = "#2b2bd9"
MAX_GIF_FPS = 50.0  # a GIF delay is whole centiseconds, and viewers slow down delays under 2 cs
TITLE_BAND = 0.4  # inches above the panels: two lines of 9 pt text
TITLE_LINE = 0.17  # inches each further line of the title adds: a 9 pt line at 1.2 spacing takes 0.15
PANELS_TOP = 0.9  # of a figure with a band of TITLE_BAND: where the panels end
# Titles and captions are free text (prompts, file names): drawn as written, never as mathtext or LaTeX, so that
# "$5 and $10" shows its dollars and a stray "$\\foo$" cannot fail the video.
LITERAL_TEXT = {"parse_math": False, "usetex": False}


class RenderError(RuntimeError):
    """The animation could not be written (with ``save_joints`` the motion was saved before this was raised)."""


def ffmpeg_available() -> bool:
    """Whether matplotlib's ffmpeg executable (``rcParams['animation.ffmpeg_path']``) is on the PATH."""
    return shutil.which(matplotlib.rcParams["animation.ffmpeg_path"]) is not None


def resolve_format(fmt: str = "auto") -> str:
    """The container a render will try first: ``"mp4"`` or ``"gif"``.

    ``"auto"`` picks MP4 when ffmpeg is available and GIF otherwise; an explicit ``"mp4"`` without ffmpeg is an error.
    """
    if fmt not in FORMATS:
        raise ValueError(f"video format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "mp4" and not ffmpeg_available():
        raise RenderError("MP4 output needs the ffmpeg executable, which is not on the PATH; "
                          "install ffmpeg or ask for GIF output (format 'gif' or 'auto')")
    if fmt == "auto":
        return "mp4" if ffmpeg_available() else "gif"
    return fmt


def video_formats(fmt: str = "auto") -> list[str]:
    """The containers a render of ``fmt`` may write, in the order tried: "auto" with ffmpeg tries MP4 and falls
    back to GIF. Raises as ``resolve_format``."""
    first = resolve_format(fmt)
    return [first] if fmt != "auto" or first == "gif" else ["mp4", "gif"]


def check_joints(joints: np.ndarray, kinematic_chain: Sequence[Sequence[int]], name: str = "joints") -> np.ndarray:
    """Validate a motion ``(T, J, 3)`` against its chain; returns it as float64."""
    joints = np.asarray(joints)
    if joints.ndim != 3 or joints.shape[-1] != 3 or joints.shape[0] < 1:
        raise ValueError(f"{name}: expected joint positions (T, J, 3) with T >= 1, got shape {tuple(joints.shape)}")
    finite = np.isfinite(joints)
    if not finite.all():
        frame, joint, _ = np.argwhere(~finite)[0]
        raise ValueError(f"{name}: joint positions contain NaN or Inf ({int((~finite).any(-1).any(-1).sum())} of "
                         f"{len(joints)} frames; first at frame {frame}, joint {joint})")
    used = [int(j) for chain in kinematic_chain for j in chain]
    if not used or min(used) < 0:
        raise ValueError(f"{name}: a kinematic chain lists joint indices >= 0, got {list(kinematic_chain)}")
    if max(used) >= joints.shape[1]:
        raise ValueError(f"{name}: the kinematic chain uses joint {max(used)} but the motion has {joints.shape[1]} "
                         f"joints")
    return joints.astype(np.float64)


def check_video_settings(save_path: str, fps: float, dpi: float, figsize: float, radius: float | None = None,
                         fmt: str = "auto") -> None:
    """``ValueError`` naming ``save_path`` unless ``fps``, ``dpi``, ``figsize`` and ``radius`` (None: fitted) are
    finite and > 0 and ``fmt`` is a format: the encoders fail on them only after the joints are saved, with a message
    about neither (fps 0 divides by zero), and a negative radius turns the view inside out, a video of an empty
    floor. (Whether ffmpeg is there for an MP4 is the encoder's question: the joints are saved first then.)"""
    if fmt not in FORMATS:
        raise ValueError(f"{save_path}: video format must be one of {FORMATS}, got {fmt!r}")
    settings = (("fps", fps), ("dpi", dpi), ("figsize", figsize)) + ((("radius", radius),) if radius is not None
                                                                     else ())
    for flag, value in settings:
        try:
            good = math.isfinite(float(value)) and float(value) > 0
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ValueError(f"{save_path}: {flag} must be a finite number > 0, got {value!r}")


def auto_radius(motions: Sequence[np.ndarray]) -> float:
    """Side of the viewing cube that holds every motion ``(T, J, 3)`` centred on its root, in the joints' units."""
    extent = 0.0
    for joints in motions:
        height = joints[..., 1].max() - joints[..., 1].min()
        around_root = np.abs(joints[:, :, [0, 2]] - joints[:, :1, [0, 2]]).max()
        extent = max(extent, height, 2.0 * around_root)
    return 1.1 * extent if extent > 0 else 1.0


class _SkeletonPanel:
    """One 3D axes showing one motion, updated in place per frame (no artists are re-created)."""

    def __init__(self, ax, joints: np.ndarray, kinematic_chain: Sequence[Sequence[int]], radius: float, title: str):
        self.ax = ax
        self.chain = [list(c) for c in kinematic_chain]
        joints = joints.copy()
        joints[..., 1] -= joints[..., 1].min()  # feet on the floor at y = 0
        self.trajectory = joints[:, 0, [0, 2]].copy()  # root (x, z) per frame
        # Centring every frame on its root keeps the skeleton in the middle of the fixed view.
        self.joints = joints
        self.joints[..., 0] -= self.trajectory[:, None, 0]
        self.joints[..., 2] -= self.trajectory[:, None, 1]
        half = radius / 2.0
        lo, hi = self.trajectory.min(0) - half, self.trajectory.max(0) + half
        self.floor_corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], hi[1]], [hi[0], lo[1]]])

        ax.view_init(elev=15, azim=-30, vertical_axis="y")  # front-right three-quarter view of a +Z facing body
        ax.set_xlim(-half, half)
        ax.set_ylim(0.0, radius)
        ax.set_zlim(-half, half)
        ax.set_box_aspect((1, 1, 1), zoom=1.3)  # the default leaves a wide empty margin
        ax.set_axis_off()
        if title:
            ax.set_title(title, fontsize=8, **LITERAL_TEXT)
        self.floor = Poly3DCollection([np.zeros((4, 3))], facecolor=FLOOR_COLOR, edgecolor="none")
        ax.add_collection3d(self.floor)
        (self.path_line,) = ax.plot([], [], [], color=TRAJECTORY_COLOR, linewidth=1.0)
        self.bone_lines = []
        for i in range(len(self.chain)):
            width = 3.0 if i < 5 else 1.5
            (line,) = ax.plot([], [], [], color=CHAIN_COLORS[i % len(CHAIN_COLORS)], linewidth=width,
                              solid_capstyle="round")
            self.bone_lines.append(line)

    def update(self, frame: int) -> None:
        frame = min(frame, len(self.joints) - 1)  # shorter motions hold their last pose in a grid
        root = self.trajectory[frame]
        corners = self.floor_corners - root
        self.floor.set_verts([np.stack([corners[:, 0], np.zeros(4), corners[:, 1]], axis=1)])
        past = self.trajectory[: frame + 1] - root
        self.path_line.set_data_3d(past[:, 0], np.zeros(len(past)), past[:, 1])
        pose = self.joints[frame]
        for line, chain in zip(self.bone_lines, self.chain):
            line.set_data_3d(pose[chain, 0], pose[chain, 1], pose[chain, 2])


def even_pixels(size: float) -> int:
    """``size`` pixels rounded to the nearest even number: H.264 in yuv420p stores colour per 2 x 2 pixels and refuses
    an odd width or height."""
    return 2 * round(size / 2)


class _EvenFFMpegWriter(animation.FFMpegWriter):
    """matplotlib's ffmpeg writer, without shrinking frames that are even already.

    For H.264 the writer rounds the figure down to even pixels through ``pixels / dpi * dpi``, which falls an ulp short
    of an even size for many (size, dpi) pairs (58 pixels at dpi 100) and takes off two pixels: ``plot_frames``' images
    would then be rescaled with a row and a column dropped. Odd sizes are still rounded down by matplotlib.
    """

    def _adjust_frame_size(self):
        width, height = self.frame_size
        if width % 2 == 0 and height % 2 == 0:
            return tuple(self.fig.get_size_inches())
        return super()._adjust_frame_size()


class _RealTimePillowWriter(animation.PillowWriter):
    """matplotlib's GIF writer, with frame delays that add up to real time.

    GIF stores each frame's delay in whole centiseconds, and matplotlib gives every frame ``int(1000 / fps)`` ms,
    which Pillow rounds down to 30 ms at 30 fps (a video 11 % fast) and 40 ms at 24 fps. Here frame k lasts from
    ``round(100 k / fps)`` to ``round(100 (k + 1) / fps)`` centiseconds (30 fps: 30, 40, 30, 30, 40, ... ms).
    Viewers play delays below 2 cs at about 10 fps, so above ``MAX_GIF_FPS`` the frames nearest to a 50 fps clock are
    kept, each for 2 cs, as many as make the motion's duration.
    """

    def finish(self):
        if not isinstance(getattr(self, "_frames", None), list):  # another matplotlib keeps its frames elsewhere
            return super().finish()
        frames, rate = self._frames, min(self.fps, MAX_GIF_FPS)
        if rate < self.fps:
            count = max(1, round(len(frames) * rate / self.fps))
            picked = np.minimum(np.round(np.arange(count) * self.fps / rate), len(frames) - 1).astype(np.int64)
            frames = [frames[i] for i in picked]
        stamps = np.round(100.0 * np.arange(len(frames) + 1) / rate).astype(np.int64)
        durations = [int(d) for d in 10 * np.diff(stamps)]
        frames[0].save(self.outfile, save_all=True, append_images=frames[1:], duration=durations, loop=0)


def _write_animation(fig, update, num_frames: int, path: str, fmt: str, fps: float, dpi: int) -> None:
    """Encode ``num_frames`` frames drawn by ``update(frame)`` into ``path`` as ``fmt`` ("mp4" or "gif")."""
    writer = _EvenFFMpegWriter(fps=fps) if fmt == "mp4" else _RealTimePillowWriter(fps=fps)
    anim = animation.FuncAnimation(fig, update, frames=num_frames, interval=1000.0 / fps, blit=False, repeat=False)
    anim.save(path, writer=writer, dpi=dpi)


def _encode(fig, update, num_frames: int, stem: str, fmt: str, fps: float, dpi: int, saved_note: str) -> str:
    """Write the video, falling back from a failing ffmpeg to GIF in auto mode. Returns the written path.

    ``saved_note`` is appended to error messages (where the motion was saved, or empty).
    """
    try:
        attempts = video_formats(fmt)
    except RenderError as e:
        raise RenderError(f"{stem}: {e}{saved_note}") from e
    errors = []
    size = fig.get_size_inches().copy()
    for kind in attempts:
        path = f"{stem}.{kind}"
        fig.set_size_inches(size)  # the MP4 writer may have rounded the figure down to even pixels
        try:
            # Through a temporary file: a half-written video never stands under the name, and a failure or a kill
            # part way leaves the earlier video there whole (sample.py's manifest may still list it).
            with atomic_path(path) as tmp:
                _write_animation(fig, update, num_frames, tmp, kind, fps, dpi)
            return path
        except Exception as e:  # any encoder failure (missing codec, broken pipe, Pillow) is reported the same way
            errors.append(f"{kind}: {type(e).__name__}: {e}")
            logger.warning("writing %s failed (%s: %s)", path, type(e).__name__, e)
    raise RenderError(f"could not render {stem}.{attempts[0]} ({'; '.join(errors)}){saved_note}")


def _title_width(cols: int, panel_size: float) -> int:
    return max(20, int(45 * cols * panel_size / 4))


def _wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters (longer words stay whole), its own line breaks kept."""
    return "\n".join(textwrap.fill(line, width=width) for line in str(text).splitlines())


def _figure(rows: int, cols: int, panel_size: float, title: str,
            captions: Sequence[tuple[int, str]] | None = None) -> tuple[Figure, float]:
    """A figure of ``rows`` x ``cols`` panels of ``panel_size`` inches with ``title`` above, and the fraction of its
    height where the panels end. The band above grows with the lines of the title, or of the longest caption, so
    that a long one never runs into the panels."""
    # A bare Agg figure rather than pyplot: renders headless whatever backend the caller uses, and leaves no global
    # figure state behind.
    width = _title_width(cols, panel_size)
    texts = [title] + [str(text) for _, text in captions or ()]
    banded = any(texts)  # a first caption may be empty and a later one not: the band is there from the start
    lines = max(_wrap(text, width).count("\n") + 1 for text in texts) if banded else 0
    base = panel_size * rows + (TITLE_BAND if banded else 0.0)
    height = base + TITLE_LINE * max(0, lines - 2)
    fig = Figure(figsize=(panel_size * cols, height))
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(_wrap(title, width), fontsize=9, **LITERAL_TEXT)
    return fig, PANELS_TOP * (base / height) if banded else 1.0


def _check_captions(save_path: str, captions: Sequence[tuple[int, str]] | None) -> str:
    """The first caption's text ('' without captions); ``ValueError`` unless the captions start at frame 0 in order."""
    if not captions:
        return ""
    starts = [int(start) for start, _ in captions]
    if starts[0] != 0 or starts != sorted(starts):
        raise ValueError(f"{save_path}: captions must start at frame 0 and be in order, got starts {starts}")
    return str(captions[0][1])


def _with_captions(fig: Figure, update: Callable[[int], None], captions: Sequence[tuple[int, str]] | None,
                   num_frames: int, figsize: float) -> Callable[[int], None]:
    """``update`` that also sets the figure's title to the caption of the segment each frame is in."""
    if not captions:
        return update
    texts = [_wrap(str(text), _title_width(1, figsize)) for _, text in captions]
    starts = np.asarray([int(start) for start, _ in captions])
    segment_of = np.searchsorted(starts, np.arange(num_frames), side="right") - 1

    def update_with_caption(frame: int) -> None:
        fig.suptitle(texts[segment_of[frame]], fontsize=9, **LITERAL_TEXT)
        update(frame)

    return update_with_caption


def plot_3d_motion(save_path: str, joints: np.ndarray, kinematic_chain: Sequence[Sequence[int]], title: str = "",
                   fps: float = 20, radius: float | None = None, dpi: int = 100, fmt: str = "auto",
                   figsize: float = 4.0, save_joints: bool = True, joints_path: str | None = None,
                   captions: Sequence[tuple[int, str]] | None = None) -> str:
    """Animate one motion ``joints`` (T, J, 3), Y up, as a stick figure.

    ``save_path``'s extension is replaced by the format written (``fmt``: "auto", "mp4" or "gif"). With
    ``save_joints`` the joints go to ``joints_path`` (default: ``save_path`` with ``.npy``) before drawing starts.
    ``radius`` is the side of the view cube in the joints' units (default: fitted to the motion). ``captions``
    [(first frame, text), ...] in order replace ``title`` by the text of the segment each frame is in (a motion made
    of several prompts). Returns the path of the video; raises ``RenderError`` when it could not be written, and
    ``ValueError``, before any file is written, for joints or settings (fps, dpi, figsize, radius, fmt) it cannot
    draw.
    """
    title = _check_captions(save_path, captions) or title
    check_video_settings(save_path, fps, dpi, figsize, radius, fmt)
    stem = os.path.splitext(save_path)[0]
    checked = check_joints(joints, kinematic_chain, name=save_path)  # bad joints leave no file behind
    if save_joints:
        joints_file = joints_path or f"{stem}.npy"
        save_beside_video(joints_file, lambda f: np.save(f, np.asarray(joints)), "joints")
        saved_note = f"; the joints are saved in {joints_file}"
    else:
        saved_note = ""
    joints = checked
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    fig, top = _figure(1, 1, figsize, title, captions)
    panel = _SkeletonPanel(fig.add_subplot(1, 1, 1, projection="3d"), joints, kinematic_chain,
                           radius or auto_radius([joints]), "")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=top)
    update = _with_captions(fig, panel.update, captions, len(joints), figsize)
    return _encode(fig, update, len(joints), stem, fmt, fps, dpi, saved_note)


def save_beside_video(path: str, write: Callable[[IO[bytes]], None], what: str) -> None:
    """Save the ``what`` ("joints") a video is drawn from to ``path``, before the video, through a temporary file
    (``write`` gets the open file): a full disk or a kill part way leaves an earlier file of that name whole. A
    failure to write raises ``RenderError`` naming ``path``."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_write(path, "wb") as f:
            write(f)
    except OSError as e:
        raise RenderError(f"cannot save the {what} to {path} ({e.strerror or e}); nothing was drawn") from e


def plot_multiple(save_path: str, motions: Sequence[np.ndarray], kinematic_chain: Sequence[Sequence[int]],
                  titles: Sequence[str] | None = None, title: str = "", fps: float = 20, radius: float | None = None,
                  ncols: int | None = None, dpi: int = 100, fmt: str = "auto", figsize: float = 3.0,
                  save_joints: bool = True) -> str:
    """Animate several motions, each (T_i, J, 3), side by side in one file, on one shared scale.

    Shorter motions hold their last pose. ``titles`` label the panels and ``title`` the figure. With ``save_joints``
    the motions go first to ``save_path`` with ``.npz`` (keys ``motion_0``, ``motion_1``, ...). Returns the path of
    the video; raises ``RenderError`` when it could not be written.
    """
    if len(motions) == 0:
        raise ValueError(f"{save_path}: no motions to plot")
    if titles is not None and len(titles) != len(motions):
        raise ValueError(f"{save_path}: {len(titles)} titles for {len(motions)} motions")
    if ncols is not None and not 1 <= ncols <= len(motions):
        raise ValueError(f"{save_path}: ncols must be from 1 to the number of motions ({len(motions)}), got {ncols}")
    check_video_settings(save_path, fps, dpi, figsize, radius, fmt)
    stem = os.path.splitext(save_path)[0]
    checked = [check_joints(m, kinematic_chain, name=f"{save_path} motion {i}") for i, m in enumerate(motions)]
    if save_joints:
        motions_file = f"{stem}.npz"
        save_beside_video(motions_file, lambda f: np.savez(f, **{f"motion_{i}": np.asarray(m)
                                                                  for i, m in enumerate(motions)}), "motions")
        saved_note = f"; the motions are saved in {motions_file}"
    else:
        saved_note = ""
    motions = checked
    cols = ncols or len(motions)
    rows = -(-len(motions) // cols)
    radius = radius or auto_radius(motions)
    fig, top = _figure(rows, cols, figsize, title)
    panels = [_SkeletonPanel(fig.add_subplot(rows, cols, i + 1, projection="3d"), m, kinematic_chain, radius,
                             titles[i] if titles else "") for i, m in enumerate(motions)]
    fig.subplots_adjust(left=0, right=1, bottom=0, top=top, wspace=0, hspace=0.05)

    def update(frame: int) -> None:
        for panel in panels:
            panel.update(frame)

    return _encode(fig, update, max(len(m) for m in motions), stem, fmt, fps, dpi, saved_note)


def plot_frames(save_path: str, draw: Callable[[int], np.ndarray], num_frames: int, title: str = "",
                fps: float = 20, dpi: int = 100, fmt: str = "auto", figsize: float = 4.0,
                captions: Sequence[tuple[int, str]] | None = None, saved_note: str = "") -> str:
    """Write ``num_frames`` images ``draw(frame)`` (S, S, 3) uint8, S = ``even_pixels(figsize * dpi)``, as a video
    with the formats, fallback and errors of ``plot_3d_motion``; a ``title`` (or ``captions``, as there) goes in a band
    above the images, which are shown pixel for pixel. Both sizes are even, so an MP4 needs no rounding that would
    rescale the images. A progress bar counts the frames drawn.

    ``saved_note`` ends the ``RenderError`` message (where the motion is saved). Returns the path written.
    """
    title = _check_captions(save_path, captions) or title
    check_video_settings(save_path, fps, dpi, figsize, fmt=fmt)
    if num_frames < 1:
        raise ValueError(f"{save_path}: a video needs at least one frame, got num_frames {num_frames}")
    stem = os.path.splitext(save_path)[0]
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    fig, _ = _figure(1, 1, figsize, title, captions)
    # The axes cover the image's S x S pixels exactly, and the title's band above is a whole, even number of pixels.
    size = even_pixels(figsize * dpi)
    fig.set_size_inches(size / dpi, (size + even_pixels((fig.get_figheight() - figsize) * dpi)) / dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, size / dpi / fig.get_figheight()))
    ax.set_axis_off()
    image = ax.imshow(np.zeros((size, size, 3), dtype=np.uint8), interpolation="nearest", aspect="auto")
    bar = tqdm(total=num_frames, desc=os.path.basename(stem), unit="frame", leave=False)
    drawn = -1  # matplotlib draws the first frame twice (once to initialise)

    def update(frame: int) -> None:
        nonlocal drawn
        if frame == drawn:
            return
        if frame < drawn:  # a second attempt after a failed encoder starts again
            bar.reset()
        picture = draw(frame)
        if np.shape(picture) != (size, size, 3):  # set_data would rescale it silently to the first image's extent
            raise ValueError(f"{save_path}: frame {frame} was drawn as an image of shape {np.shape(picture)}, "
                             f"expected ({size}, {size}, 3) for figsize {figsize} at dpi {dpi}")
        image.set_data(picture)
        drawn = frame
        bar.update(1)

    try:
        return _encode(fig, _with_captions(fig, update, captions, num_frames, figsize), num_frames, stem, fmt, fps,
                       dpi, saved_note)
    finally:
        bar.close()
