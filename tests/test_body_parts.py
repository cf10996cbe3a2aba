"""Body-part tokenizers (models/body_parts.py) on a random BEAT-X-layout dataset (330 dims)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from models.body_parts import (
    BODY_PART_MODELS,
    TILING_PARTS,
    BodyPartTokenizers,
    PartSliceDataset,
    part_feature_errors,
    part_indices,
    part_rotation_errors_deg,
    select_part,
)
from models.tokenizers import RVQVAE
from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionWindowDataset
from utils.losses import tokenizer_loss
from utils.normalization import load_mean_std
from utils.quaternion import matrix_to_rot6d

PART_SIZES = {"upper": 13 * 6, "lower": 9 * 6, "hands": 30 * 6, "face": 3 * 6, "whole": 330}


@pytest.fixture(scope="module")
def beatx_root(tmp_path_factory) -> str:
    """12 clips of smooth random 330-dim features (a few sines mixed into every dim) in the dataset layout."""
    root = tmp_path_factory.mktemp("beatx")
    (root / "new_joint_vecs").mkdir()
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(4, 330))
    clips = []
    for i in range(12):
        frames = int(rng.integers(64, 100))
        t = np.arange(frames)[:, None] / 30.0
        latent = np.sin(2 * np.pi * rng.uniform(0.3, 1.5, size=4) * t + rng.uniform(0, 2 * np.pi, size=4))
        motion = (latent @ mixing + 0.05 * rng.normal(size=(frames, 330))).astype(np.float32)
        np.save(root / "new_joint_vecs" / f"clip{i:02d}.npy", motion)
        clips.append(motion)
    (root / "train.txt").write_text("\n".join(f"clip{i:02d}" for i in range(10)))
    (root / "val.txt").write_text("clip10\nclip11")
    stacked = np.concatenate(clips)
    np.save(root / "Mean.npy", stacked.mean(0).astype(np.float32))
    np.save(root / "Std.npy", stacked.std(0).astype(np.float32))
    return str(root)


def test_part_indices_and_select_part() -> None:
    spec = get_dataset_spec("beatx")
    for part, size in PART_SIZES.items():
        assert len(part_indices(spec, part)) == size
    tiling = [i for part in TILING_PARTS for i in part_indices(spec, part)]
    assert sorted(tiling) == list(range(330))
    assert part_indices(spec, "face") == list(range(132, 150))
    features = np.arange(2 * 330, dtype=np.float32).reshape(2, 330)
    assert select_part(features, spec, "face").tolist() == [list(range(132, 150)), list(range(462, 480))]
    assert torch.equal(select_part(torch.from_numpy(features), spec, "lower"),
                       torch.from_numpy(features[:, part_indices(spec, "lower")]))
    with pytest.raises(ValueError, match=r"no body part 'torso'; its parts are \['face', 'hands'"):
        part_indices(spec, "torso")
    with pytest.raises(ValueError, match="defines no body parts"):
        part_indices(get_dataset_spec("t2m"), "upper")
    with pytest.raises(ValueError, match="expected features with 330 dims"):
        select_part(features[:, :300], spec, "face")


@pytest.mark.parametrize("part", sorted(PART_SIZES))
def test_each_part_trains(beatx_root, part) -> None:
    spec = get_dataset_spec("beatx", beatx_root)
    mean, std = load_mean_std(spec, beatx_root)
    windows = MotionWindowDataset(spec, "train", mean, std, window_size=32, data_root=beatx_root, mode="first",
                                  progress=False)
    indices = part_indices(spec, part)
    data = PartSliceDataset(windows, indices)
    assert len(data) == len(windows) == 10
    assert torch.equal(data[3], windows[3][:, indices])
    torch.manual_seed(0)
    model = BODY_PART_MODELS["BodyPartRVQ_Tiny"](input_width=len(indices), dropout=0.0).train()
    motion = torch.stack([data[i] for i in range(len(data))])
    assert motion.shape == (10, 32, PART_SIZES[part])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(motion)
        loss, _ = tokenizer_loss(out.recon, motion, out, slice(0, len(indices)), w_pos=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_combined_decode_reassembles_the_body(beatx_root) -> None:
    spec = get_dataset_spec("beatx", beatx_root)
    mean, std = load_mean_std(spec, beatx_root)
    windows = MotionWindowDataset(spec, "val", mean, std, window_size=32, data_root=beatx_root, mode="first",
                                  progress=False)
    motion = torch.stack([windows[0], windows[1]])
    torch.manual_seed(1)
    combined = BodyPartTokenizers.from_spec(spec, model="BodyPartRVQ_Tiny").train()
    combined(motion)  # initialises the codebooks from this batch
    combined.eval()
    with torch.no_grad():
        codes = combined.encode(motion)
        assert set(codes) == set(TILING_PARTS)
        assert all(c.shape == (2, 8, 3) for c in codes.values())
        body = combined.combined_decode(codes)
        out = combined(motion)
        assert body.shape == (2, 32, 330)
        for part in TILING_PARTS:
            idx = part_indices(spec, part)
            part_alone = combined.decode_part(part, codes[part])
            assert part_alone.shape == (2, 32, len(idx))
            assert torch.equal(body[..., idx], part_alone), part
            assert torch.equal(out.indices[part], codes[part])
        assert torch.allclose(out.recon, body, atol=1e-6)
        # Fewer residual layers still decode every part.
        coarse = combined.combined_decode({p: c[..., :1] for p, c in codes.items()})
    assert coarse.shape == body.shape and not torch.equal(coarse, body)
    errors = combined.part_errors(motion)
    assert set(errors) == set(TILING_PARTS) and all(math.isfinite(v) and v > 0 for v in errors.values())
    assert errors == pytest.approx(part_feature_errors(body, motion, combined.parts), rel=1e-5)

    # Separately trained part tokenizers combine into the same model.
    separate = {part: combined.tokenizers[part] for part in TILING_PARTS}
    rebuilt = BodyPartTokenizers.from_models(separate, combined.parts, 330).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt.combined_decode(codes), body)
    assert rebuilt.model_args == combined.model_args

    with pytest.raises(ValueError, match=r"missing \['face'\]"):
        combined.combined_decode({p: c for p, c in codes.items() if p != "face"})
    with pytest.raises(ValueError, match="expected motion of shape"):
        combined(motion[..., :300])


def test_forward_under_autocast_reassembles_in_the_parts_dtype() -> None:
    """Under mixed precision the part decoders return bf16: the reassembled body takes their dtype, as
    combined_decode's does, instead of failing to write bf16 parts into an fp32 body."""
    torch.manual_seed(0)
    combined = BodyPartTokenizers.build({"a": [0, 2, 4], "b": [1, 3, 5, 6]}, 7, "BodyPartRVQ_Tiny")
    motion = torch.randn(2, 8, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        trained = combined.train()(motion)  # initialises the codebooks from this batch
        combined.eval()
        out = combined(motion)
        body = combined.combined_decode(combined.encode(motion))
    assert trained.recon.dtype == out.recon.dtype == body.dtype == torch.bfloat16
    assert out.recon.shape == motion.shape
    assert torch.allclose(out.recon.float(), body.float(), atol=0.05)


def test_bad_part_sets_fail_clearly() -> None:
    spec = get_dataset_spec("beatx")
    with pytest.raises(ValueError, match="parts must be disjoint"):
        BodyPartTokenizers.from_spec(spec, (*TILING_PARTS, "whole"), model="BodyPartRVQ_Tiny")
    with pytest.raises(ValueError, match=r"\(18 of 330\) are in no part"):
        BodyPartTokenizers.from_spec(spec, ("upper", "lower", "hands"), model="BodyPartRVQ_Tiny")
    parts = {"a": [0, 1], "b": [2, 3]}
    with pytest.raises(ValueError, match="part 'b' has 2 features but its tokenizer takes input_width=3"):
        BodyPartTokenizers(parts, 4, {"a": {"input_width": 2}, "b": {"input_width": 3}})
    with pytest.raises(ValueError, match="not RVQVAE tokenizers"):
        BodyPartTokenizers.from_models({"a": torch.nn.Linear(2, 2), "b": RVQVAE(input_width=2)}, parts, 4)
    with pytest.raises(ValueError, match="unknown body-part model"):
        BodyPartTokenizers.build(parts, 4, model="Nope")
    for name in ("left.hand", "type", "keys"):  # a spec.json part name torch cannot use as a module name
        with pytest.raises(ValueError, match=rf"part name '{name}' cannot name a part's tokenizer; the names of a "
                                             r"dataset spec's body_parts must be Python identifiers"):
            BodyPartTokenizers.build({"a": [0, 1], name: [2, 3]}, 4, "BodyPartRVQ_Tiny")


def test_full_size_parts_follow_the_recipe() -> None:
    with torch.device("meta"):
        combined = BodyPartTokenizers.from_spec(get_dataset_spec("beatx"))
    for part in TILING_PARTS:
        model = combined.tokenizers[part]
        assert model.input_width == PART_SIZES[part]
        assert (model.num_quantizers, model.codebook_size, model.latent_dim) == (6, 1024, 128)
    args = combined.model_args["part_args"]["hands"]
    assert args["input_width"] == 180 and args["nb_code"] == 1024 and args["code_dim"] == 128


def test_rotation_and_feature_errors() -> None:
    angle = math.radians(30.0)
    rot = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
                        [0.0, 0.0, 1.0]])
    identity = matrix_to_rot6d(torch.eye(3)).repeat(1, 1, 2)  # (1, 1, 12): two joints
    turned = torch.cat([matrix_to_rot6d(rot), matrix_to_rot6d(torch.eye(3))]).reshape(1, 1, 12)
    parts = {"first": list(range(6)), "second": list(range(6, 12))}
    errors = part_rotation_errors_deg(turned, identity, parts)
    assert errors["first"] == pytest.approx(30.0, abs=1e-6) and errors["second"] == pytest.approx(0.0, abs=1e-6)
    assert part_feature_errors(turned, identity, parts)["second"] == 0.0
    with pytest.raises(ValueError, match="does not hold whole joints"):
        part_rotation_errors_deg(turned, identity, {"odd": list(range(3))})


def test_preset_matches_the_registry_entry() -> None:
    from options.config import load_config
    from options.tokenizer_options import get_train_vq_parser

    preset = load_config(str(Path(__file__).resolve().parents[1] / "options" / "configs" / "beatx_body_part.yaml"))
    recipe = BODY_PART_MODELS["BodyPartRVQ"].keywords
    assert preset["dataset_name"] == "beatx" and preset["model"] == "RVQVAE" and preset["body_part"] == "whole"
    assert {k: preset[k] for k in recipe} == recipe
    # MoMask's RVQ recipe (README: gamma 0.05) over MoMask's ~360k steps: one random window per clip of BEAT2's few
    # thousand clips is about ten steps an epoch, so a length in epochs ended inside the warm-up.
    assert preset["lr_decay"] == 0.05 and "epoch" not in preset
    assert preset["warm_up_iter"] < max(preset["milestones"]) < preset["max_iters"] == 360_000
    # Every key is a train_vq.py flag (--body_part included).
    flags = {action.dest for action in get_train_vq_parser()._actions}
    assert set(preset) <= flags


def test_resume_with_another_body_part_is_refused_naming_the_flag(beatx_root, tmp_path) -> None:
    # A body part is the data the run trains on: resumed with another one (or the whole vector), the refusal names
    # --body_part with both values, not the shape of the statistics or the model's input width it implies.
    import train_vq
    from options.config import parse_with_config
    from options.tokenizer_options import get_train_vq_parser
    from utils.checkpoint import CheckpointError, load_checkpoint

    base = ["--dataset_name", "beatx", "--data_root", beatx_root, "--checkpoints_dir", str(tmp_path), "--name", "p",
            "--model", "RVQVAE_Tiny", "--window_size", "32", "--batch_size", "4", "--num_workers", "0",
            "--val_batches", "1", "--aux_loss_joints", "0"]
    train_vq.main(parse_with_config(get_train_vq_parser(), [*base, "--body_part", "upper", "--max_iters", "1"]))
    latest = tmp_path / "beatx" / "p" / "model" / "latest.tar"
    resume = [*base, "--max_iters", "2", "--is_continue"]
    with pytest.raises(CheckpointError) as refused:
        train_vq.main(parse_with_config(get_train_vq_parser(), [*resume, "--body_part", "lower"]))
    assert str(refused.value) == (f"{latest}: the run being resumed was trained with --body_part upper but lower now. "
                                  f"A resumed run keeps the data it trained on: add --body_part upper to the command, "
                                  f"or start a new --name")
    with pytest.raises(CheckpointError, match="trained with --body_part upper but none now.*add --body_part upper"):
        train_vq.main(parse_with_config(get_train_vq_parser(), resume))
    assert load_checkpoint(str(latest))["step"] == 1
    train_vq.main(parse_with_config(get_train_vq_parser(), [*resume, "--body_part", "upper"]))
    assert load_checkpoint(str(latest))["step"] == 2


def test_a_body_part_the_dataset_lacks_is_refused_before_the_run_folder_exists(beatx_root, synthetic_root,
                                                                                tmp_path) -> None:
    # Known from the spec alone: the refusal comes before the run folder, its log and the data index are written.
    import train_vq
    from options.config import parse_with_config
    from options.tokenizer_options import get_train_vq_parser

    ckpt = tmp_path / "ck"
    base = ["--checkpoints_dir", str(ckpt), "--name", "p", "--model", "RVQVAE_Tiny", "--num_workers", "0",
            "--max_iters", "1"]
    beatx = ["--dataset_name", "beatx", "--data_root", beatx_root]
    with pytest.raises(ValueError, match=r"dataset 'beatx' has no body part 'torso'; its parts are \['face'"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*base, *beatx, "--body_part", "torso"]))
    synthetic = ["--dataset_name", "synthetic", "--data_root", synthetic_root]
    with pytest.raises(ValueError, match="dataset 'synthetic' defines no body parts"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*base, *synthetic, "--body_part", "upper"]))
    assert not ckpt.exists()


def test_body_part_aux_loss_is_the_mean_over_parts():
    torch.manual_seed(0)
    parts = {"a": list(range(0, 6)), "b": list(range(6, 12)), "c": list(range(12, 18))}
    model = BodyPartTokenizers.build(parts, 18, "BodyPartRVQ_Tiny").eval()
    motion = torch.randn(2, 8, 18)
    with torch.no_grad():
        out = model(motion)
        per_part = [model.tokenizers[n](motion[..., idx]).aux_loss for n, idx in parts.items()]
    assert all(float(a) > 0 for a in per_part)
    assert float(out.aux_loss) == pytest.approx(float(sum(per_part)) / 3, rel=1e-5)
