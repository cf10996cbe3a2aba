"""Temporal editing of a motion (inpainting, in-betweening, prefix and suffix completion): spans and source files.

An edit regenerates the frames of some spans of a source motion from a text prompt and keeps the rest. Generators
work on tokens of ``unit_length`` frames (4 for the published models), so a span in frames or seconds becomes a set
of tokens: token i covers frames [i * unit, (i + 1) * unit) and is edited when any of its frames lies in a span (a
span is widened outward to whole tokens, never narrowed). Seconds become frames at the dataset's fps, again outward:
start = floor(start_s * fps), end = ceil(end_s * fps). Spans are half-open, ``START:END`` with END excluded; an empty
START is 0 (a prefix), an empty END the end of the source (a suffix). Several spans may overlap; they are united.

The source is a features file ``(T, D)`` in the dataset's units: what ``sample.py`` writes (``*_features.npy``) or
what the dataset stores (``new_joint_vecs/*.npy``, of which the generator reads the first ``dim_pose`` dims when the
files are wider), or joint positions ``(T, J, 3)`` turned into features by HumanML3D's extraction. The edited motion
has the source's length cut to whole tokens (the last T % unit frames, which no token covers, are dropped), so the
tokens outside the spans can be kept exactly. Features hold no world placement: the extraction moves frame 0's root
to the xz origin facing +Z with the floor at y = 0, and the generated joints come out there. ``SourceFrame.place``
puts them back where a joints source stands.
"""

from __future__ import annotations

import math
import operator
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from utils.checkpoint import file_sha256
from utils.dataset_specs import DatasetSpec
from utils.motion_process import initial_placement, place_canonical, recover_root_rot_pos
from utils.quaternion import qrot
from utils.representation import TARGET_SKELETONS, joints_to_features, with_extrapolated_frame

# Guards the outward rounding of seconds against float error (2.0 * 20 must give frame 40, not 41).
_SECONDS_EPS = 1e-6


class FrameSpan(NamedTuple):
    """Frames [start, end) of a motion; ``end`` None means up to the end of the motion (before ``resolve_spans``)."""

    start: int
    end: int | None


def parse_span(text: str, unit: str = "frames", fps: float | None = None) -> FrameSpan:
    """``"START:END"`` (either side may be empty) in ``unit`` ("frames" or "seconds") -> a ``FrameSpan`` in frames.

    Frames must be whole numbers; seconds are rounded outward to frames at ``fps``. Raises ValueError naming the
    span for anything else (a missing colon, a negative or non-numeric bound, END not after START).
    """
    start, end = _span_bounds(text, unit)
    if unit == "seconds":
        if fps is None or fps <= 0:
            raise ValueError(f"--edit_seconds {text!r}: converting seconds to frames needs the dataset's fps, got "
                             f"{fps}")
        start = math.floor(start * fps + _SECONDS_EPS)
        end = None if end is None else math.ceil(end * fps - _SECONDS_EPS)
    start = int(start)
    if end is not None and end <= start:
        raise ValueError(f"--edit_{unit} {text!r}: the span is empty (frames [{start}, {end})); END must be after "
                         f"START")
    return FrameSpan(start, end)


def _span_bounds(text: str, unit: str) -> tuple[float, float | None]:
    """``"START:END"`` -> its bounds in ``unit`` as written (an empty START is 0, an empty END None); ValueError for
    the span's syntax, a bound that is negative, not finite or not a number of ``unit``, or END not after START. Needs
    no fps, so scripts check ``--edit_seconds`` before a model gives them one."""
    if unit not in ("frames", "seconds"):
        raise ValueError(f"span unit must be 'frames' or 'seconds', got {unit!r}")
    flag = f"--edit_{unit}"
    start_text, colon, end_text = text.partition(":")
    if not colon or ":" in end_text:
        raise ValueError(f"{flag} {text!r}: expected START:END (e.g. 40:80, :40 for a prefix, 100: for a suffix)")

    def bound(value: str) -> float | None:
        value = value.strip()
        if not value:
            return None
        try:
            number = int(value) if unit == "frames" else float(value)
        except ValueError:
            kind = "a whole number of frames" if unit == "frames" else "a number of seconds"
            raise ValueError(f"{flag} {text!r}: {value!r} is not {kind}") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError(f"{flag} {text!r}: bounds must be finite and >= 0, got {value!r}")
        return number

    start, end = bound(start_text), bound(end_text)
    start = 0 if start is None else start
    # Checked before seconds round outward, which could turn a reversed span inside one frame into that frame.
    if end is not None and end <= start:
        raise ValueError(f"{flag} {text!r}: the span is empty ({start}:{end} {unit}); END must be after START")
    return start, end


def resolve_spans(spans: list[FrameSpan] | list[tuple[int, int | None]], num_frames: int,
                  unit_length: int) -> list[FrameSpan]:
    """Close the open ends at ``num_frames`` and check every span against a source of ``num_frames`` frames.

    Raises ValueError for no span, a span that is not a (START, END) pair, a bound that is not a whole number of
    frames, an empty span, a span reaching past the source, or one that lies entirely in the last
    ``num_frames % unit_length`` frames (no token covers them, so nothing there can be edited).
    """
    if not spans:
        raise ValueError("no edit span given: pass --edit_frames START:END or --edit_seconds START:END")
    covered = (num_frames // unit_length) * unit_length
    resolved = []
    for span in spans:
        try:
            start, end = span
        except (TypeError, ValueError):
            raise ValueError(f"edit span {span!r}: expected a (START, END) pair of frames, END None for the end of "
                             f"the source; spans are a list of such pairs, e.g. [(40, 80)]") from None
        start = _whole_frames(start, span)
        if end is None and start >= num_frames:  # an open end closes at the source's end, before the start
            raise ValueError(f"edit span [{start}, end) starts past the end of the source, which has {num_frames} "
                             f"frames (frames 0 to {num_frames - 1})")
        end = num_frames if end is None else _whole_frames(end, span)
        if start < 0 or end <= start:
            raise ValueError(f"edit span [{start}, {end}) is empty or negative; spans are START:END frames with "
                             f"0 <= START < END")
        if end > num_frames:
            raise ValueError(f"edit span [{start}, {end}) reaches past the source, which has {num_frames} frames "
                             f"(frames 0 to {num_frames - 1}); leave END empty to edit to the end")
        if start >= covered:
            raise ValueError(f"edit span [{start}, {end}) lies in the last {num_frames - covered} frames of the "
                             f"source, which fill no whole {unit_length}-frame token and are dropped; the edited "
                             f"motion has {covered} frames")
        resolved.append(FrameSpan(start, end))
    return resolved


def _whole_frames(bound: object, span: object) -> int:
    """A span bound as an int; ValueError for a fractional one, which int() would cut toward zero and so narrow the
    span (frames come from seconds through ``parse_span``, which rounds outward)."""
    try:
        return operator.index(bound)
    except TypeError:
        pass
    try:
        value = float(bound)
    except (TypeError, ValueError):
        value = math.nan
    if not value.is_integer():
        raise ValueError(f"edit span {tuple(span)!r}: bound {bound!r} is not a whole number of frames; convert "
                         f"seconds with parse_span(text, 'seconds', fps), which rounds outward")
    return int(value)


def token_edit_mask(spans: list[FrameSpan], num_tokens: int, unit_length: int) -> Tensor:
    """(N,) bool: token i is edited when one of its frames [i * unit, (i + 1) * unit) lies in a (resolved) span."""
    first = torch.arange(num_tokens) * unit_length
    mask = torch.zeros(num_tokens, dtype=torch.bool)
    for start, end in spans:
        mask |= (first < end) & (first + unit_length > start)
    return mask


def check_disjoint_spans(spans: list[FrameSpan], num_tokens: int, unit_length: int) -> list[int]:
    """The order of ``spans`` (resolved) from left to right; ValueError when two share a token, which spans with
    captions of their own (``--span_prompts``, ``MotionGenerator.edit_spans``) may not."""
    order = sorted(range(len(spans)), key=lambda k: spans[k].start)
    masks = [token_edit_mask([spans[k]], num_tokens, unit_length) for k in order]
    for a, b in zip(masks[:-1], masks[1:]):
        if bool((a & b).any()):
            raise ValueError(f"edit spans {[list(spans[k]) for k in order]} share a token ({unit_length} frames): "
                             f"spans with their own captions must not overlap")
    return order


def mask_runs(mask: Tensor) -> list[list[int]]:
    """Runs of True in a 1-D bool mask as half-open ``[start, end)`` pairs, in order."""
    flags = [bool(v) for v in mask.tolist()]
    runs: list[list[int]] = []
    for i, flag in enumerate(flags):
        if flag and (i == 0 or not flags[i - 1]):
            runs.append([i, i + 1])
        elif flag:
            runs[-1][1] = i + 1
    return runs


def load_edit_source(path: str, spec: DatasetSpec, skeleton: str | None = None,
                     body_models: str | None = None) -> np.ndarray:
    """The features ``(T, spec.dim_pose)`` float32 of the source file ``path``: a ``.npy`` of features ``(T, D)``, D
    being ``dim_pose`` or the width of the dataset's files, ``spec.file_dim`` (whose first ``dim_pose`` dims are
    kept), or of joint positions ``(T, J, 3)`` in the dataset's units and axes (a joints ``.npy`` that sample.py or
    an import wrote); or a motion capture file read as ``prepare_data.py`` imports one, to SMPL-22 joints in metres,
    Y up, at the dataset's fps: a ``.bvh`` through the ``skeleton`` mapping (a name under ``options/skeletons`` or a
    YAML path) or an AMASS ``.npz`` through ``body_models`` (a body-model file or a folder in AMASS's layout). Joint
    positions become the dataset's features by HumanML3D's extraction (``utils.representation.joints_to_features``;
    HumanML3D-layout datasets only), T frames for T.

    Raises ValueError naming the file and what was expected for anything else (another dataset's features or
    skeleton, NaN or Inf, a mapping or body model missing or given for the wrong kind of file).
    """
    return read_edit_source(path, spec, skeleton, body_models)[0]


def _check_source_kind(path: str, skeleton: str | None, body_models: str | None,
                       expected: str = "features (T, D) in the dataset's units") -> str:
    """The kind of source ``path`` is by its extension (".npy", ".bvh" or ".npz"); ValueError for another
    extension, a .bvh without its mapping ``skeleton``, an AMASS .npz without ``body_models``, or either given for
    another kind. Reads nothing, so it can run before a model loads."""
    kind = os.path.splitext(path)[1].lower()
    if kind not in (".npy", ".bvh", ".npz"):
        raise ValueError(f"--edit_source {path}: expected a .npy file of {expected}, as sample.py writes them "
                         f"(<name>_features.npy) or the dataset stores them, or of joint positions; or a .bvh or an "
                         f"AMASS .npz motion")
    for flag, value, wanted in (("--edit_skeleton", skeleton, ".bvh"), ("--edit_body_model", body_models, ".npz")):
        if value is not None and kind != wanted:
            raise ValueError(f"--edit_source {path}: {flag} is for a {wanted} source, not a {kind} file")
    if kind == ".bvh" and skeleton is None:
        raise ValueError(f"--edit_source {path}: a .bvh source needs --edit_skeleton, the mapping of its joints onto "
                         f"SMPL-22 (a name under options/skeletons, e.g. bandai, lafan or smpl22 for this project's "
                         f"own BVH files, or a YAML path), as prepare_data.py bvh takes it")
    if kind == ".npz" and body_models is None:
        raise ValueError(f"--edit_source {path}: an AMASS .npz source needs --edit_body_model, the SMPL-H or SMPL-X "
                         f"body model file (or a folder in AMASS's layout) that gives its joints")
    return kind


def _capture_joints(path: str, kind: str, spec: DatasetSpec, skeleton: str | None,
                    body_models: str | None) -> np.ndarray:
    """SMPL-22 joints (T, 22, 3), metres, Y up, at ``spec.fps``, of a ``.bvh`` or AMASS ``.npz`` source (whose
    ``skeleton`` or ``body_models`` ``_check_source_kind`` has checked)."""
    if spec.joints_num != 22 or spec.metres_per_unit != 1.0 or spec.representation not in ("humanml3d", "essential"):
        raise ValueError(f"--edit_source {path}: a {kind} file becomes SMPL-22 joints in metres and then HumanML3D "
                         f"features, which dataset {spec.name!r} ({spec.joints_num} joints, {spec.metres_per_unit:g} m "
                         f"per unit, {spec.representation} features) does not use; pass features of that dataset")
    if kind == ".bvh":
        from utils.bvh import load_skeleton_map, read_bvh_smpl22

        mapping = load_skeleton_map(skeleton)
        try:  # the reader's errors (no frames, a malformed file, a bone of no length) name the file, not the flag
            joints, parsed = read_bvh_smpl22(path, mapping, spec.fps)
        except ValueError as e:
            raise ValueError(f"--edit_source {e}") from e
        if parsed.frames < 2:  # as an AMASS source's poses; the mapping's bone check needs two frames too
            raise ValueError(f"--edit_source {path}: the MOTION section has {parsed.frames} frame(s); need at least 2")
        return joints
    from utils.amass_import import BodyModels, read_amass_clip

    try:  # the body model loads here or with the clip; its errors name the flag that gave it
        bodies = BodyModels(body_models, None) if os.path.isdir(body_models) else BodyModels(None, body_models)
        clip = read_amass_clip(Path(path), bodies, spec.fps, Path(path).stem)
    except OSError as e:
        raise type(e)(f"--edit_source {path} (read with --edit_body_model {body_models}): {e}") from e
    if clip is None:
        raise ValueError(f"--edit_source {path}: the archive has no poses (a per-subject shape.npz?); expected an "
                         f"AMASS motion with poses, trans, betas and its frame rate")
    return clip.joints


def read_edit_source(path: str, spec: DatasetSpec, skeleton: str | None = None,
                     body_models: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``load_edit_source``'s features (T, D), and the joint positions (T, J, 3) they came from (None for a features
    file), from which ``source_frame`` measures where the source stands."""
    expected = f"features (T, {spec.dim_pose}) of dataset {spec.name!r}"
    if spec.file_dim != spec.dim_pose:
        expected += f" (or its {spec.file_dim}-dim files)"
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--edit_source: file not found: {path}")
    kind = _check_source_kind(path, skeleton, body_models, expected)
    if kind != ".npy":
        try:
            array = _capture_joints(path, kind, spec, skeleton, body_models)
        except ValueError as e:
            message = str(e)
            raise ValueError(message if message.startswith(("--edit_source", path)) else
                             f"--edit_source {path}: {message}") from e
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"--edit_source {path}: not a readable .npy array ({e}); expected {expected}") from e
    if array.ndim == 3 and array.shape[-1] == 3:
        if not np.isfinite(array).all():
            raise ValueError(f"--edit_source {path}: the joint positions hold NaN or Inf values")
        try:
            if array.shape[1] != spec.joints_num:
                raise ValueError(f"{array.shape[1]} joints, the dataset's skeleton has {spec.joints_num}")
            features = joints_to_features(array, spec)
        except ValueError as e:
            if kind != ".npy":  # joints this project read from a motion-capture file
                reader = "mapping" if kind == ".bvh" else "body model"
                raise ValueError(f"--edit_source {path}: the SMPL-22 joints read from this {kind} file cannot be "
                                 f"turned into {expected} ({e}); check the {reader} that read it") from e
            raise ValueError(f"--edit_source {path}: shape {array.shape} looks like joint positions (T, J, 3), which "
                             f"cannot be turned into {expected} ({e}); pass features, e.g. the <name>_features.npy "
                             f"that sample.py writes next to the joints") from e
        if not np.isfinite(features).all():
            raise ValueError(f"--edit_source {path}: the feature extraction from these joint positions gave NaN or "
                             f"Inf values (joints that coincide, or a motion that does not move?)")
        return features, array
    if array.ndim != 2 or array.shape[1] not in (spec.dim_pose, spec.file_dim) or not np.issubdtype(array.dtype,
                                                                                                    np.floating):
        raise ValueError(f"--edit_source {path}: got a {array.dtype} array of shape {array.shape}; expected {expected}")
    features = np.asarray(array[:, : spec.dim_pose], dtype=np.float32)
    if not np.isfinite(features).all():
        raise ValueError(f"--edit_source {path}: the features hold NaN or Inf values")
    return features, None


def unedited_change(features: np.ndarray, reconstruction: np.ndarray, edited_frames: np.ndarray) -> dict | None:
    """How much the frames outside the edited tokens moved: max and mean absolute difference of ``features`` (T, D)
    from ``reconstruction`` (T, D) over the frames where ``edited_frames`` (T,) is False; None when every frame was
    edited. The decoder reads the whole sequence, so frames next to an edited token may move too."""
    kept = ~np.asarray(edited_frames, dtype=bool)
    if not kept.any():
        return None
    diff = np.abs(np.asarray(features, dtype=np.float64)[kept] - np.asarray(reconstruction, dtype=np.float64)[kept])
    return {"frames": int(kept.sum()), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}


# Representations whose first four dims are HumanML3D's root: yaw velocity, local xz velocity, height.
ROOT_VELOCITY_REPRESENTATIONS = ("humanml3d", "essential")


def anchor_root(features: np.ndarray, target: np.ndarray, edited_frames: np.ndarray,
                metres_per_unit: float = 1.0) -> tuple[np.ndarray, list[dict]]:
    """Bend the root of each edited span so that the motion after it stands where ``target``'s does.

    HumanML3D features store the root as velocities (yaw rate, xz step in the body's frame), so a regenerated span
    that turns or travels differently from the source moves everything after it in the world. The unedited rows take
    ``target``'s (T, D) root yaw and xz velocities (the decoder reads the whole sequence, so it changes them a little
    too, and their sum drifts); then for every run of ``edited_frames`` (T,) [a, b) followed by unedited frames, the
    yaw error at frame b is spread evenly over the yaw velocities of rows a..b-1, then the xz error at frame b over
    their steps (each rotated into its frame's facing), so frame b's root yaw and xz equal the target's and every
    unedited frame stands where the target's does. A span at the end has nothing after it and is not bent. Only the
    root yaw and xz velocity dims change. Returns the features (T, D) and one record per anchored span: frames, and
    the yaw (degrees) and xz shift (metres, through ``metres_per_unit``) that were spread over it.
    """
    out = np.asarray(features, dtype=np.float64).copy()
    target = np.asarray(target, dtype=np.float64)
    edited = np.asarray(edited_frames, dtype=bool)
    if out.ndim != 2 or target.shape != out.shape or edited.shape != out.shape[:1] or out.shape[1] < 4:
        raise ValueError(f"anchor_root: expected features and target (T, D >= 4) and edited_frames (T,), got "
                         f"{out.shape}, {target.shape} and {edited.shape}")
    out[~edited, :3] = target[~edited, :3]
    target_angle = np.concatenate([[0.0], np.cumsum(target[:-1, 0])])
    _, target_pos = recover_root_rot_pos(target)
    records = []
    for a, b in mask_runs(torch.from_numpy(edited)):
        if b >= len(out):
            continue
        n = b - a
        yaw = target_angle[b] - out[:b, 0].sum()
        out[a:b, 0] += yaw / n
        quat, pos = recover_root_rot_pos(out)
        shift = np.array([target_pos[b, 0] - pos[b, 0], 0.0, target_pos[b, 2] - pos[b, 2]])
        # Row u - 1 holds the step into frame u, turned to the world by frame u's yaw: turn the share back with it.
        local = qrot(quat[a + 1:b + 1], np.broadcast_to(shift / n, (n, 3)))
        out[a:b, 1] += local[:, 0]
        out[a:b, 2] += local[:, 2]
        # The quaternions hold half the yaw angle (HumanML3D's r_rot_quat = [cos a, 0, sin a, 0]).
        records.append({"frames": [int(a), int(b)], "yaw_deg": float(np.degrees(2.0 * yaw)),
                        "xz_m": float(np.hypot(shift[0], shift[2]) * metres_per_unit)})
    return out.astype(np.asarray(features).dtype), records


class SourceFrame(NamedTuple):
    """Where a joints source stands in its own world: features keep no world placement, so the motion an edit
    generates comes out in the canonical frame (frame 0's root at the xz origin facing +Z, the floor at y = 0);
    ``place`` turns it by ``yaw`` (radians about +Y) and moves it by ``offset`` (3,), the source's frame-0 root xz and
    floor, as ``utils.motion_process.initial_placement`` measures them."""

    yaw: float
    offset: np.ndarray

    def place(self, joints: np.ndarray) -> np.ndarray:
        """Canonical joints (..., J, 3) -> the same joints in the source's world frame."""
        return place_canonical(joints, self.yaw, self.offset)

    def record(self, metres_per_unit: float = 1.0) -> dict:
        """The manifest's ``source_frame`` entry: the turn (degrees) and the move (dataset units and metres)."""
        return {"yaw_deg": float(np.degrees(self.yaw)), "offset": [float(v) for v in self.offset],
                "offset_m": [float(v) * metres_per_unit for v in self.offset]}


def source_frame(joints: np.ndarray, spec: DatasetSpec) -> SourceFrame:
    """The ``SourceFrame`` of a joints source (T, J, 3) of a HumanML3D-layout dataset ``spec`` (T >= 1), measured on
    the frames the feature extraction reads (``with_extrapolated_frame``): a motion that ends going down is floored
    on the frame the extraction adds, below its own lowest joint."""
    yaw, offset = initial_placement(with_extrapolated_frame(joints), skeleton=TARGET_SKELETONS[spec.joints_num],
                                    own_frames=len(joints))
    return SourceFrame(yaw, offset)


def _reader_record(skeleton: str | None, body_models: str | None) -> dict | None:
    """What turned a motion-capture source into joints, for the manifest: the ``--edit_skeleton`` mapping or the
    ``--edit_body_model`` as given, the file (or folder) it resolves to and its SHA-256 (None for a folder); None for
    neither."""
    if skeleton is not None:
        from utils.bvh import skeleton_map_path

        path = os.path.abspath(skeleton_map_path(skeleton))
        return {"edit_skeleton": skeleton, "path": path, "sha256": file_sha256(path)}
    if body_models is not None:
        path = os.path.abspath(body_models)
        return {"edit_body_model": body_models, "path": path,
                "sha256": file_sha256(path) if os.path.isfile(path) else None}
    return None


class EditRequest(NamedTuple):
    """An edit asked for on the command line: the ``source`` file, its SHA-256, its ``features`` (T, D), the resolved
    frame ``spans``, for a joints source its ``frame`` (None for a features source, which has no world placement)
    and, for a motion-capture source, the ``reader`` that gave its joints (``_reader_record``)."""

    source: str
    sha256: str
    features: np.ndarray
    spans: list[FrameSpan]
    frame: SourceFrame | None = None
    reader: dict | None = None

    def record(self, unit_length: int) -> dict:
        """The manifest's ``edit`` entry: the source and its hash (with the mapping or body model that read a
        motion-capture file, ``reader``), its frames, the spans as asked (frames, END excluded) and as edited (tokens,
        and the frames those tokens cover)."""
        num_tokens = self.features.shape[0] // unit_length
        tokens = mask_runs(token_edit_mask(self.spans, num_tokens, unit_length))
        record = {"source": os.path.abspath(self.source), "source_sha256": self.sha256,
                  "source_frames": int(self.features.shape[0]), "edited_motion_frames": num_tokens * unit_length,
                  "unit_length": unit_length, "spans_frames": [[s.start, s.end] for s in self.spans],
                  "spans_tokens": tokens, "edited_frames": [[a * unit_length, b * unit_length] for a, b in tokens],
                  "joints_frame": "canonical" if self.frame is None else "source"}
        if self.reader is not None:
            record["reader"] = self.reader
        return record

    def check_outputs(self, paths: list[str]) -> None:
        """Raise ValueError when one of the files an edit is about to write is its source: editing an earlier edit
        with the same prompt into the same folder would replace the source that the manifest cites by hash."""
        source = os.path.realpath(self.source)
        for path in paths:
            if os.path.realpath(path) == source:
                raise ValueError(f"--edit_source {self.source}: this run would write its output "
                                 f"{os.path.basename(path)} over the source; pass another --output_dir or edit a "
                                 f"copy of the source")


def check_edit_flags(source: str | None, frames: list[str] | None, seconds: list[str] | None,
                     skeleton: str | None = None, body_models: str | None = None) -> bool:
    """Whether the flags ask for an edit; ValueError for spans without a source, a source without spans, frame or
    seconds spans that do not parse, a BVH mapping or body model (``skeleton``, ``body_models``) without a source, a
    source whose kind (by its extension) lacks the one it needs or is given the other, or a mapping that cannot be
    found; FileNotFoundError for a missing source or body model. Needs no model, so scripts call it before loading
    one."""
    spans_given = bool(frames or seconds)
    if source is None:
        if spans_given:
            raise ValueError("--edit_frames / --edit_seconds need --edit_source, the motion (features .npy) to edit")
        if skeleton is not None or body_models is not None:
            raise ValueError("--edit_skeleton / --edit_body_model read a .bvh or AMASS .npz --edit_source; add "
                             "--edit_source and its spans")
        return False
    if not spans_given:
        raise ValueError("--edit_source needs the spans to regenerate: --edit_frames START:END or --edit_seconds "
                         "START:END (e.g. ':40' for a prefix, '100:' for a suffix)")
    for unit, texts in (("frames", frames), ("seconds", seconds)):
        for text in texts or []:
            _span_bounds(text, unit)
    kind = _check_source_kind(source, skeleton, body_models)
    if not os.path.isfile(source):
        raise FileNotFoundError(f"--edit_source: file not found: {source}")
    if kind == ".bvh":
        from utils.bvh import skeleton_map_path

        try:
            mapping = skeleton_map_path(skeleton)
        except ValueError as e:
            raise ValueError(f"--edit_skeleton {skeleton}: {e}") from e
        if not mapping.is_file():
            raise ValueError(f"--edit_skeleton {skeleton}: skeleton mapping file not found")
    if kind == ".npz" and not os.path.exists(body_models):
        raise FileNotFoundError(f"--edit_body_model: no such file or folder: {body_models}")
    return True


def read_edit_request(source: str | None, frames: list[str] | None, seconds: list[str] | None, spec: DatasetSpec,
                      unit_length: int, skeleton: str | None = None,
                      body_models: str | None = None) -> EditRequest | None:
    """``--edit_source`` with its ``--edit_frames`` / ``--edit_seconds`` spans (at ``spec.fps``) -> an
    ``EditRequest``; None without ``--edit_source``. Spans without a source, or a source without spans, fail.
    ``skeleton`` and ``body_models`` read a ``.bvh`` or AMASS ``.npz`` source (``load_edit_source``)."""
    if not check_edit_flags(source, frames, seconds, skeleton, body_models):
        return None
    features, joints = read_edit_source(source, spec, skeleton, body_models)
    if features.shape[0] < unit_length:
        raise ValueError(f"--edit_source {source}: {features.shape[0]} frames, fewer than one {unit_length}-frame "
                         f"token")
    parsed = [parse_span(text, "frames") for text in frames or []]
    parsed += [parse_span(text, "seconds", spec.fps) for text in seconds or []]
    try:
        spans = resolve_spans(parsed, features.shape[0], unit_length)
    except ValueError as e:
        raise ValueError(f"--edit_source {source}: {e}") from e
    frame = None if joints is None else source_frame(joints, spec)
    return EditRequest(source, file_sha256(source), features, spans, frame, _reader_record(skeleton, body_models))
