"""Seconds per frame of SMPL mesh videos (``utils/smpl_mesh.py``, ``utils/mesh_render.py``) for a mesh of SMPL's
size: 6890 vertices and 13776 triangles (a closed surface of SMPL's genus 0: an ellipsoid of a body's height and
width, so that it covers about as many pixels), 24 joints with SMPL's parents, dense skinning weights and pose blend
shapes of SMPL's width. The motion is a walk at 30 fps in AMASS's layout.

Printed per stage, median over ``--rounds``: skinning (``pose_mesh``), drawing one image (``MeshScene.frame``) and
the whole GIF (skinning, drawing, matplotlib showing the image and Pillow encoding), each in seconds per frame.

    OMP_NUM_THREADS=1 python bench/mesh_render.py [--frames 60] [--size 400] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import benchlib
import numpy as np

from utils.bvh import parents_from_chain
from utils.dataset_specs import T2M_KINEMATIC_CHAIN
from utils.mesh_render import MeshScene
from utils.paramutil import T2M_TGT_OFFSETS
from utils.smpl_body import z_up_to_y_up
from utils.smpl_mesh import load_body_mesh, pose_mesh, render_smpl

RINGS, SEGMENTS = 82, 84  # 82 * 84 + 2 poles = 6890 vertices, 2 * 82 * 84 = 13776 triangles
JOINTS = 24


def ellipsoid(radii: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and counter-clockwise triangles (F, 3) of a latitude-longitude ellipsoid."""
    theta = np.linspace(0.0, np.pi, RINGS + 2)[1:-1]
    phi = np.linspace(0.0, 2 * np.pi, SEGMENTS, endpoint=False)
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1).reshape(-1, 3)
    vertices = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]]) * radii + centre
    index = 1 + np.arange(RINGS * SEGMENTS).reshape(RINGS, SEGMENTS)
    right = np.roll(index, -1, axis=1)
    top = np.stack([np.zeros(SEGMENTS, dtype=np.int64), index[0], right[0]], -1)
    bottom = np.stack([np.full(SEGMENTS, len(vertices) - 1), right[-1], index[-1]], -1)
    a, b, c, d = index[:-1], right[:-1], index[1:], right[1:]
    quads = np.concatenate([np.stack([a, c, b], -1).reshape(-1, 3), np.stack([b, c, d], -1).reshape(-1, 3)])
    return vertices, np.concatenate([top, quads, bottom])


def body_model(path: Path) -> Path:
    """An SMPL-sized body model .npz (see the module docstring), Y up as SMPL's rest pose."""
    rng = np.random.default_rng(0)
    parents = parents_from_chain(T2M_KINEMATIC_CHAIN, 22) + [20, 21]  # SMPL's hands hang from the wrists
    rest = np.zeros((JOINTS, 3))
    for j in range(1, JOINTS):
        rest[j] = rest[parents[j]] + (T2M_TGT_OFFSETS[j] if j < 22 else [0.08 * (1 if j == 22 else -1), 0, 0])
    vertices, faces = ellipsoid(np.array([0.25, 0.85, 0.15]), np.array([0.0, rest[:, 1].min() + 0.85, 0.0]))
    # Each joint is the mean of the vertices level with it (on its side of the body for the limbs).
    level = np.abs(vertices[None, :, 1] - rest[:, None, 1]) < 0.06
    side = np.where(np.abs(rest[:, None, 0]) > 0.05, np.sign(vertices[None, :, 0]) == np.sign(rest[:, None, 0]), True)
    regressor = (level & side).astype(np.float64)
    regressor /= regressor.sum(1, keepdims=True)
    distance = np.linalg.norm(vertices[:, None] - rest[None], axis=-1)
    weights = np.exp(-distance / 0.05)
    weights /= weights.sum(1, keepdims=True)
    np.savez(path, v_template=vertices, shapedirs=rng.normal(0, 0.01, (len(vertices), 3, 10)),
             posedirs=rng.normal(0, 1e-3, (len(vertices), 3, (JOINTS - 1) * 9)), J_regressor=regressor,
             weights=weights, f=faces.astype(np.uint32),
             kintree_table=np.stack([[4294967295] + parents[1:], range(JOINTS)]).astype(np.uint32))
    return path


def walk(frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """AMASS-layout poses (T, 72) and trans (T, 3): upright (+90 degrees about x), legs and arms swinging, 1 m/s."""
    t = np.arange(frames) / fps
    swing = 0.5 * np.sin(2 * np.pi * t)
    poses = np.zeros((frames, 3 * JOINTS))
    poses[:, 0] = np.pi / 2
    poses[:, 3 * 1], poses[:, 3 * 2] = swing, -swing  # hips
    poses[:, 3 * 4] = poses[:, 3 * 5] = 0.3 + 0.3 * np.cos(2 * np.pi * t)  # knees
    poses[:, 3 * 16 + 2], poses[:, 3 * 17 + 2] = -1.2, 1.2  # arms down from the T-pose
    trans = np.stack([np.zeros(frames), -t, np.full(frames, 0.9)], -1)
    return poses, trans


def seconds_per_frame(fn, frames: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / frames)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=400, help="pixels square (400: the default 4 in at 100 dpi)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = benchlib.machine_info()
    print(f"{info['cpu']}, {info['nproc']} cores, OMP_NUM_THREADS={info['OMP_NUM_THREADS']}, "
          f"load {info['load_1_5_15']}")
    with tempfile.TemporaryDirectory() as folder:
        mesh = load_body_mesh(body_model(Path(folder) / "model.npz"))
        poses, trans = walk(args.frames, 30.0)
        betas = np.zeros(10)
        print(f"mesh: {len(mesh.v_template)} vertices, {len(mesh.faces)} triangles, {mesh.num_joints} joints; "
              f"{args.frames} frames at {args.size} x {args.size} pixels")
        posed = pose_mesh(mesh, poses, trans, betas)
        scene = MeshScene(z_up_to_y_up(posed.vertices), mesh.faces, z_up_to_y_up(posed.joints[:, 0]), size=args.size)
        rows = {
            "skinning (pose_mesh)": lambda: pose_mesh(mesh, poses, trans, betas),
            "drawing (MeshScene.frame)": lambda: [scene.frame(t) for t in range(args.frames)],
            "whole GIF (render_smpl)": lambda: render_smpl(str(Path(folder) / "walk.gif"), mesh, poses, trans, betas,
                                                           30.0, fmt="gif", dpi=args.size // 4),
        }
        for name, fn in rows.items():
            print(f"{name:<28} {seconds_per_frame(fn, args.frames, args.rounds):.4f} s/frame")


if __name__ == "__main__":
    main()
