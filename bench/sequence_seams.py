"""How smoothly ``sample.py --sequence`` joins its segments: the pose change at each seam against elsewhere.

For each transition length, three 3-prompt stories are generated with several seeds (segments of 60 frames). From the
joint positions relative to the root, the per-frame pose change is the mean over joints of the distance each joint
moves from one frame to the next. Printed per transition length: the mean pose change from the last frame of a
segment to the first of the next ("seam"), the mean over all other frames, their ratio (1 is a seam as smooth as the
rest of the motion), and the mean over seams of the largest pose change within 12 frames of the seam (a transition
that only moves the jump next to the seam does not lower it).

    python bench/sequence_seams.py --run checkpoints/synthetic/FSQ_MARDM   # after bash train_fsq_pipeline.sh --quick
"""

from __future__ import annotations

import argparse

import benchlib  # also puts the repository on sys.path
import numpy as np
import torch

from utils.generation import load_generator

STORIES = [["a person walks forward slowly", "a person jumps in place", "someone waves with their right hand"],
           ["a person runs forward quickly", "a person turns around", "a person sits down"],
           ["someone kicks with the left leg", "a person walks forward", "a person bows"]]


def seam_stats(joints: np.ndarray, seams: list[int], near: int = 12) -> tuple[list[float], list[float], list[float]]:
    """(pose change at each seam, at every other frame, largest within ``near`` frames of each seam)."""
    rel = joints - joints[:, :1]
    change = np.linalg.norm(rel[1:] - rel[:-1], axis=-1).mean(-1)   # change[t]: frame t -> t + 1
    at = {s - 1 for s in seams}
    return ([float(change[i]) for i in sorted(at)], [float(change[i]) for i in range(len(change)) if i not in at],
            [float(change[max(0, s - near):s + near].max()) for s in seams])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="generator run folder or checkpoint")
    parser.add_argument("--transition_frames", type=int, nargs="+", default=[0, 20, 40])
    parser.add_argument("--seeds", type=benchlib.positive_int, default=8)
    parser.add_argument("--time_steps", type=benchlib.positive_int, default=8)
    parser.add_argument("--cfg", type=float, default=2.5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    gen = load_generator(args.run)
    print(f"{'transition':>10} {'seam':>8} {'elsewhere':>9} {'ratio':>6} {'max near seam':>13}")
    for frames in args.transition_frames:
        at, rest, peak = [], [], []
        for texts in STORIES:
            for seed in range(args.seeds):
                out = gen.generate_sequence(texts, [60] * len(texts), transition_frames=frames,
                                            time_steps=args.time_steps, cfg=args.cfg, seed=seed)
                a, r, p = seam_stats(out.joints[0], [start for start, _ in out.segments[1:]])
                at += a
                rest += r
                peak += p
        print(f"{frames:>10} {np.mean(at):>8.4f} {np.mean(rest):>9.4f} {np.mean(at) / np.mean(rest):>6.2f} "
              f"{np.mean(peak):>13.4f}")


if __name__ == "__main__":
    main()
