"""SMPL-family body models (SMPL, SMPL-H, SMPL-X) reduced to what joint positions need: the first 22 joints.

A body model ``.npz`` holds ``v_template`` (V, 3), ``shapedirs`` (V, 3, S), ``J_regressor`` (J, V) and
``kintree_table`` (2, J) (first row: each joint's parent, the root's a large number such as 4294967295, or -1).
Rest joints for shape ``betas`` are ``J_regressor @ (v_template + shapedirs[:, :, :n] @ betas[:n])`` with ``n`` at
most 10, the betas HumanML3D uses; posed joints follow by forward kinematics of axis-angle rotations:
``G_j = G_parent(j) [R_j | J_j - J_parent(j)]``, the joint at the translation of ``G_j``, plus the global ``trans``.
Joints 0-21 (pelvis ... wrists) are the SMPL-22 = HumanML3D joints in every member of the family, and their parents
lie among them, so the hands, face and vertex skinning are never needed here; ``utils.smpl_mesh`` reads the rest of
the file (skinning weights, faces, pose blend shapes) through the same reader for mesh videos.

``z_up_to_y_up`` maps AMASS's Z-up axes to HumanML3D's Y up the way HumanML3D's ``raw_pose_processing`` does.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.bvh import forward_kinematics, parents_from_chain
from utils.dataset_specs import T2M_KINEMATIC_CHAIN

NUM_BODY_JOINTS = 22
# Root + 21 body joints, 3 axis-angle values each: the leading columns of SMPL, SMPL-H and SMPL-X pose vectors.
BODY_POSE_WIDTH = 3 * NUM_BODY_JOINTS
MAX_BETAS = 10  # HumanML3D's SMPL-H forward pass uses the first 10 shape coefficients
# The keys the joints need, with what each holds (for error messages).
BODY_MODEL_KEYS = {"v_template": "(V, 3): the rest vertices", "shapedirs": "(V, 3, S): the shape blend shapes",
                   "J_regressor": "(J, V): the joints as weighted sums of vertices",
                   "kintree_table": "(2, J): each joint's parent"}
SMPL22_PARENTS = tuple(parents_from_chain(T2M_KINEMATIC_CHAIN, NUM_BODY_JOINTS))
# (x, y, z) -> (-x, z, y): HumanML3D's swap of y and z followed by negating x. Two flips, so a proper rotation.
Z_UP_TO_Y_UP = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
# What a damaged archive member raises on reading (a flipped byte: bad CRC, bad deflate data, a short member);
# zipfile's messages do not name the file.
DAMAGED_MEMBER = (zipfile.BadZipFile, zlib.error, EOFError)


@dataclass(frozen=True)
class SmplBody:
    """The joint part of a body model: ``joint_template`` (22, 3) rest joints of the mean shape and
    ``joint_shapedirs`` (22, 3, S) their change per shape coefficient (S at most ``MAX_BETAS``), both already
    regressed from the vertices; ``parents`` of the 22 joints (-1 for the root); ``num_joints`` of the whole model
    (24 SMPL, 52 SMPL-H, 55 SMPL-X), the width of its pose vectors divided by 3."""

    path: str
    joint_template: np.ndarray
    joint_shapedirs: np.ndarray
    parents: tuple[int, ...]
    num_joints: int

    def rest_joints(self, betas: np.ndarray) -> np.ndarray:
        """Rest joints (22, 3) for shape coefficients ``betas`` (n,); the first ``min(n, S)`` are used."""
        betas = np.asarray(betas, dtype=np.float64).reshape(-1)
        n = min(betas.shape[0], self.joint_shapedirs.shape[2])
        return self.joint_template + self.joint_shapedirs[:, :, :n] @ betas[:n]


def kintree_parents(kintree: np.ndarray) -> np.ndarray:
    """Parent of every joint (-1 for the root) from a ``kintree_table`` (2, J) whose second row names the joints."""
    joints = kintree.shape[1]
    parent_of = np.full(joints, -1, dtype=np.int64)
    # Cast through int64 first: uint32 tables write the root's parent as 4294967295, signed ones as -1.
    raw = kintree.astype(np.int64)
    for parent, child in zip(raw[0], raw[1]):
        if 0 <= child < joints:
            parent_of[child] = parent if 0 <= parent < joints else -1
    return parent_of


def open_npz(path: str | os.PathLike, what: str) -> Any:
    """``np.load`` of an ``.npz`` archive without pickles, to be used in a ``with`` block; ``ValueError`` naming the
    file for an unreadable one (a truncated download is no zip archive) or a single ``.npy`` array (``what``: what
    the archive should be, for the message)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise ValueError(f"{path}: not a readable .npz {what} ({e})") from e
    if magic[:2] != b"PK" and magic != b"\x93NUMPY":  # np.load would read a text file as "pickled data"
        raise ValueError(f"{path}: not a readable .npz {what} (no zip header"
                         f"{': the file is empty' if not magic else ', as in a text file'})")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # EOFError: a cut archive
        raise ValueError(f"{path}: not a readable .npz {what} ({e or type(e).__name__})") from e
    if not hasattr(data, "files"):
        raise ValueError(f"{path}: a single array, not an .npz {what}")
    return data


def npz_array(data: Any, key: str, path: str | os.PathLike, object_hint: str) -> np.ndarray:
    """``data[key]`` of an archive from ``open_npz``; ``ValueError`` naming ``path`` and ``key`` for a damaged member
    or an array stored as a Python object (which needs pickle; ``object_hint`` ends that message)."""
    try:
        return data[key]
    except DAMAGED_MEMBER as e:
        raise ValueError(f"{path}: {key} cannot be read, the file is damaged ({e}); download or extract it "
                         f"again") from e
    except ValueError as e:
        if "allow_pickle" not in str(e):  # a member cut short: numpy cannot read its header or data
            raise ValueError(f"{path}: {key} cannot be read, the file is damaged ({e}); download or extract it "
                             f"again") from e
        # an object array, which np.load refuses without pickle
        raise ValueError(f"{path}: {key} is stored as a Python object{object_hint}") from e


def read_body_model_arrays(path: str | os.PathLike, keys: Mapping[str, str],
                           optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (name -> what it holds, for the error message) and those of ``optional`` that the body
    model ``.npz`` at ``path`` has, as stored.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file for a ``.pkl`` model (those
    need chumpy), an unreadable or damaged file, missing keys (each with what was expected), an array stored as a
    Python object (a scipy sparse matrix) instead of a dense array, or one of text or complex numbers.
    """
    path = str(path)
    if path.lower().endswith(".pkl"):
        raise ValueError(f"{path}: .pkl body models need chumpy to unpickle; use the .npz release of the model "
                         f"(AMASS's smplh/<gender>/model.npz, SMPL-X's SMPLX_<GENDER>.npz)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such body model file; expected an .npz with {', '.join(keys)}")
    with open_npz(path, f"body model with {', '.join(keys)}") as data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise ValueError(f"{path}: body model lacks {', '.join(missing)}; expected "
                             f"{'; '.join(f'{k} {keys[k]}' for k in missing)} (has "
                             f"{', '.join(sorted(data.files)[:12])})")
        arrays = {key: npz_array(data, key, path, f" (a scipy sparse matrix, as in the .pkl releases), not a dense "
                                                   f"array; save it dense (e.g. {key}=matrix.toarray())")
                  for key in [*keys, *(k for k in optional if k in data.files)]}
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":  # text or complex numbers would fail later without the file's name
            raise ValueError(f"{path}: {key} holds {array.dtype} values; expected real numbers")
    return arrays


def check_shapes(path: str, expected: Mapping[str, tuple[np.ndarray, tuple[int | None, ...], str]],
                 legend: str) -> None:
    """Raise ``ValueError`` naming ``path`` and the key for the first array whose shape is not the expected one.

    ``expected``: key -> (array, shape with None for any size, the shape as the message describes it); ``legend``
    says what the letters of those descriptions are.
    """
    for key, (array, shape, described) in expected.items():
        if array.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
            raise ValueError(f"{path}: {key} has shape {array.shape}; expected {described} with {legend}")


def check_finite(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` naming ``path`` and the key for the first of ``arrays`` (key -> array) holding NaN or
    Inf."""
    for key, array in arrays.items():
        if not np.isfinite(array).all():
            raise ValueError(f"{path}: {key} holds NaN or Inf; expected finite values")


def body_from_arrays(path: str, arrays: Mapping[str, np.ndarray], max_betas: int = MAX_BETAS) -> SmplBody:
    """The joint part (``SmplBody``) of the arrays ``BODY_MODEL_KEYS`` read from ``path``, after checking their
    shapes, that the arrays it uses are finite and that joints 0-21 have SMPL's parents (``ValueError`` naming the
    file otherwise)."""
    v_template = np.asarray(arrays["v_template"], dtype=np.float64)
    shapedirs = np.asarray(arrays["shapedirs"])  # SMPL-X has 400 components; only the first few are converted
    regressor = np.asarray(arrays["J_regressor"], dtype=np.float64)
    kintree = np.asarray(arrays["kintree_table"])
    vertices = v_template.shape[0] if v_template.ndim == 2 else -1
    check_shapes(path, {"v_template": (v_template, (vertices, 3), "(V, 3)"),
                        "shapedirs": (shapedirs, (vertices, 3, None), "(V, 3, S)"),
                        "J_regressor": (regressor, (None, vertices), "(J, V)"),
                        "kintree_table": (kintree, (2, None), "(2, J)")},
                 f"V vertices (v_template {v_template.shape}), J joints and S shape components")
    joints = regressor.shape[0]
    if joints < NUM_BODY_JOINTS or kintree.shape[1] != joints:
        raise ValueError(f"{path}: J_regressor has {joints} joints and kintree_table {kintree.shape[1]}; expected "
                         f"the same number, at least {NUM_BODY_JOINTS} (SMPL 24, SMPL-H 52, SMPL-X 55)")
    parents = tuple(int(p) for p in kintree_parents(kintree)[:NUM_BODY_JOINTS])
    if parents != SMPL22_PARENTS:
        raise ValueError(f"{path}: kintree_table gives joints 0-21 the parents {list(parents)}; expected SMPL's "
                         f"{list(SMPL22_PARENTS)} (pelvis ... wrists, as in SMPL, SMPL-H and SMPL-X)")
    body = regressor[:NUM_BODY_JOINTS]
    s = min(max_betas, shapedirs.shape[2])
    shapes = shapedirs[:, :, :s].astype(np.float64)
    # NaN here would surface later as non-finite joints blamed on the motion, or an SVD failure in the export.
    check_finite(path, {"v_template": v_template, "shapedirs": shapes, "J_regressor": body})
    return SmplBody(path=path, joint_template=body @ v_template,
                    joint_shapedirs=np.einsum("jv,vcs->jcs", body, shapes),
                    parents=parents, num_joints=joints)


def load_body_model(path: str | os.PathLike, max_betas: int = MAX_BETAS) -> SmplBody:
    """Read the joint part of an SMPL / SMPL-H / SMPL-X body model ``.npz`` (see the module docstring).

    Raises ``ValueError`` naming the file for a ``.pkl`` model (those need chumpy), missing keys, a ``J_regressor``
    stored as a Python object (a scipy sparse matrix) instead of a dense array, inconsistent shapes, NaN or Inf, or
    parents of joints 0-21 that are not SMPL's.
    """
    return body_from_arrays(str(path), read_body_model_arrays(path, BODY_MODEL_KEYS), max_betas)


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from axis-angle vectors (..., 3) (Rodrigues' formula).

    Near zero angle the series of sin(t)/t and (1 - cos t)/t^2 replaces the division, so small rotations stay exact.
    """
    v = np.asarray(axis_angle, dtype=np.float64)
    angle_sq = np.sum(v * v, axis=-1)
    angle = np.sqrt(angle_sq)
    small = angle < 1e-6
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0 - angle_sq / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - angle_sq / 24.0, (1.0 - np.cos(safe)) / (safe * safe))
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = np.zeros_like(x)
    skew = np.stack([np.stack([zero, -z, y], -1), np.stack([z, zero, -x], -1), np.stack([-y, x, zero], -1)], -2)
    eye = np.broadcast_to(np.eye(3), skew.shape)
    return eye + a[..., None, None] * skew + b[..., None, None] * (skew @ skew)


def smpl_joints(body: SmplBody, poses: np.ndarray, trans: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Posed joints (T, 22, 3) in the body model's axes and units.

    ``poses`` (T, P) axis-angle with P >= 66 (root then the 21 body joints; further columns, hands or face, are not
    used), ``trans`` (T, 3) the global translation, ``betas`` (n,) the shape.
    """
    poses = np.asarray(poses, dtype=np.float64)
    trans = np.asarray(trans, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] < BODY_POSE_WIDTH or trans.shape != (poses.shape[0], 3):
        raise ValueError(f"smpl_joints: expected poses (T, >={BODY_POSE_WIDTH}) and trans (T, 3), got "
                         f"{poses.shape} and {trans.shape}")
    frames = poses.shape[0]
    rest = body.rest_joints(betas)
    rotations = axis_angle_to_matrix(poses[:, :BODY_POSE_WIDTH].reshape(frames, NUM_BODY_JOINTS, 3))
    offsets = np.zeros((frames, NUM_BODY_JOINTS, 3))
    # The root turns about its own rest position, which the translation then moves.
    offsets[:, 0] = rest[0] + trans
    offsets[:, 1:] = rest[1:] - rest[list(body.parents[1:])]
    return forward_kinematics(rotations, offsets, body.parents)


def z_up_to_y_up(points: np.ndarray) -> np.ndarray:
    """Points (..., 3) from AMASS's Z-up axes to HumanML3D's Y up: (x, y, z) -> (-x, z, y)."""
    return np.asarray(points) @ Z_UP_TO_Y_UP.T
