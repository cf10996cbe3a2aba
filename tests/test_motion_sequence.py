"""One long motion from several prompts (``MotionGenerator.generate_sequence``, ``sample.py --sequence``): the
segments are generated on their own, the first as plain generation, then each seam is generated again from the
tokens around it, which the model keeps; the motion may outgrow the longest training clip.

The runs are the untrained tiny ones of test_generation.py and test_momask_generation.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_generation import make_runs, write_fake_clip
from test_momask_generation import save_code_tokenizer, save_token_generator

import sample
from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.generation import load_generator
from utils.plot_script import plot_3d_motion

TEXTS = ["a person walks forward", "a person jumps", "someone waves with the right hand"]


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory, synthetic_root):
    """FSQ-MARDM and MARDM runs (make_runs) and a MoMask masked + residual pair on an RVQ tokenizer."""
    folder = str(tmp_path_factory.mktemp("sequence") / "checkpoints")
    make_runs(folder, synthetic_root)
    clip = write_fake_clip(os.path.join(folder, "clip"))
    rvq = save_code_tokenizer(folder, synthetic_root, "rvq", "RVQVAE_Tiny", quantize_dropout_prob=0.0)
    for run, model, seed in (("mask", "MoMask-Mask-Tiny", 0), ("res", "MoMask-Res-Tiny", 1)):
        save_token_generator(folder, synthetic_root, run, model, rvq, clip, seed=seed)
    return folder


def _load(ckdir: str, run: str):
    root = os.path.join(ckdir, "synthetic")
    if run == "momask":
        return load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res"))
    return load_generator(os.path.join(root, run))


class Recorder:
    """Wraps a backend's sample_tokens to keep each call's token lengths, known tokens, mask and output."""

    def __init__(self, backend, monkeypatch):
        self.calls = []
        original = backend.sample_tokens

        def sample_tokens(text_emb, token_lengths, settings, generator, known=None, edit_mask=None):
            out = original(text_emb, token_lengths, settings, generator, known=known, edit_mask=edit_mask)
            self.calls.append({"lengths": token_lengths.tolist(), "known": known, "mask": edit_mask, "out": out})
            return out

        monkeypatch.setattr(backend, "sample_tokens", sample_tokens)


@pytest.mark.parametrize("run", ["fsq_gen", "ae_gen", "momask"])
def test_segments_are_generated_on_their_own_then_the_seams_in_betweened(ckdir, run, monkeypatch):
    gen = _load(ckdir, run)
    plain = gen.generate(TEXTS[:1], [40], time_steps=2, seed=3)
    calls = Recorder(gen.backend, monkeypatch).calls
    out = gen.generate_sequence(TEXTS, [40, 32, 48], transition_frames=16, time_steps=2, seed=3)
    assert out.lengths.tolist() == [120] and out.features.shape == (1, 120, 263)
    assert out.segments == [(0, 40), (40, 72), (72, 120)] and out.transitions == [(32, 48), (64, 80)]
    assert out.texts == [" / ".join(TEXTS)] and out.prompts == TEXTS
    assert out.tokens.shape[1] == 30 and torch.isfinite(out.features).all()
    assert out.joints[0].shape == (120, 22, 3)
    # Three segments on their own, then one window per seam: centred on it, inside the two segments.
    assert [c["lengths"] for c in calls] == [[10], [8], [12], [18], [20]]
    assert all(c["known"] is None for c in calls[:3])
    segments = torch.cat([c["out"] for c in calls[:3]], dim=1)
    # The first segment is the first prompt's plain generation (same seed, same random stream).
    assert torch.equal(segments[:, :10], plain.tokens)
    expected = segments.clone()
    for call, (lo, hi), (a, b) in zip(calls[3:], [(0, 18), (10, 30)], [(8, 12), (16, 20)]):
        mask = call["mask"][0]
        assert mask.nonzero().squeeze(1).tolist() == list(range(a - lo, b - lo))
        assert torch.equal(call["known"], expected[:, lo:hi])                  # the motion as it stands
        assert torch.equal(call["out"][:, ~mask], call["known"][:, ~mask])     # kept by the model
        expected[:, a:b] = call["out"][:, mask]
    assert torch.equal(out.tokens, expected)
    assert not torch.equal(expected[:, 8:12], segments[:, 8:12])
    if run == "momask":
        assert out.tokens.shape[-1] == gen.tokenizer.num_quantizers
    # The whole token sequence is decoded at once.
    assert torch.equal(gen.decode(out.tokens, torch.tensor([30])), out.features_normalised)
    again = gen.generate_sequence(TEXTS, [40, 32, 48], transition_frames=16, time_steps=2, seed=3)
    assert torch.equal(again.tokens, out.tokens)


def test_sequences_outgrow_the_training_clips_and_keep_half_of_each_segment(ckdir, monkeypatch):
    gen = _load(ckdir, "fsq_gen")
    assert gen.max_frames == 196
    calls = Recorder(gen.backend, monkeypatch).calls
    out = gen.generate_sequence(TEXTS, [196, 16, 100], transition_frames=200, time_steps=2, seed=0)
    assert out.lengths.tolist() == [312] and out.segments == [(0, 196), (196, 212), (212, 312)]
    # Windows of at most 49 tokens; the 4-token middle segment gives one token to each seam, the ends half theirs.
    assert [c["lengths"] for c in calls][3:] == [[49], [29]]
    assert out.transitions == [(196 - 24 * 4, 200), (208, 212 + 12 * 4)]
    assert torch.isfinite(out.features).all()


def test_no_transition_joins_the_segments_as_generated(ckdir):
    gen = _load(ckdir, "ae_gen")
    out = gen.generate_sequence(TEXTS[:2], [40, 40], transition_frames=0, time_steps=2, seed=1)
    assert out.transitions == [(40, 40)]
    rng = torch.Generator().manual_seed(1)
    first = gen.generate(TEXTS[:1], [40], time_steps=2, generator=rng)
    second = gen.generate(TEXTS[1:2], [40], time_steps=2, generator=rng)
    assert torch.equal(out.tokens, torch.cat([first.tokens, second.tokens], dim=1))
    # One prompt is plain generation.
    single = gen.generate_sequence(TEXTS[:1], [40], time_steps=2, seed=1)
    assert torch.equal(single.tokens, gen.generate(TEXTS[:1], [40], time_steps=2, seed=1).tokens)


def test_bad_sequences_fail_clearly(ckdir):
    gen = _load(ckdir, "fsq_gen")
    with pytest.raises(ValueError, match="at least one prompt and no empty ones"):
        gen.generate_sequence([], [])
    with pytest.raises(TypeError, match="a list of prompts, got a single string"):
        gen.generate_sequence("a person walks", [40])
    with pytest.raises(ValueError, match="at least one prompt and no empty ones"):
        gen.generate_sequence(["a person walks", " "], [40, 40])
    with pytest.raises(ValueError, match="2 prompts but 1 lengths"):
        gen.generate_sequence(TEXTS[:2], [40])
    with pytest.raises(ValueError, match="transition_frames must be >= 0"):
        gen.generate_sequence(TEXTS[:2], [40, 40], transition_frames=-4)
    with pytest.raises(ValueError, match="at least one token"):
        gen.generate_sequence(TEXTS[:2], [40, 2])


def test_sample_py_writes_one_motion_per_repeat_with_its_segments(ckdir, tmp_path):
    prompts = tmp_path / "story.txt"
    prompts.write_text("a person walks forward#20\na person jumps#12\nsomeone waves#NA\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = sample.main(parse_with_config(get_sample_parser(), [
        "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--name", "fsq_gen", "--time_steps", "2",
        "--text_path", str(prompts), "--motion_length", "16", "--sequence", "--transition_seconds", "0.4",
        "--repeat_times", "2", "--output_dir", str(out), "--format", "gif"]))
    texts = ["a person walks forward", "a person jumps", "someone waves"]
    assert manifest["runs"][-1]["sequence"] == {"transition_seconds": 0.4, "transition_frames_asked": 8,
                                                "prompts": texts}
    samples = manifest["samples"]
    assert [s["repeat"] for s in samples] == [0, 1] and [s["seed"] for s in samples] == [3407, 3408]
    for s in samples:
        assert s["files"]["features"] == f"sequence_a_person_walks_forward_3p_r{s['repeat']:02d}_features.npy"
        assert s["length_frames"] == 48 and s["prompt"] == "a person walks forward / a person jumps / someone waves"
        assert [(g["start_frame"], g["end_frame"]) for g in s["segments"]] == [(0, 20), (20, 32), (32, 48)]
        assert s["transitions"] == [[16, 20], [32, 36]]  # the 3-token middle segment gives none of its own
        assert [g["length_source"] for g in s["segments"]] == ["--text_path", "--text_path", "--motion_length"]
        assert np.load(out / s["files"]["features"]).shape == (48, 263)
        assert np.load(out / s["files"]["joints"]).shape == (48, 22, 3)
        assert s["files"]["video"].endswith(".gif") and (out / s["files"]["video"]).stat().st_size > 0
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["samples"] == samples
    with pytest.raises(ValueError, match="--sequence makes a new motion from the prompts"):
        sample.main(parse_with_config(get_sample_parser(), [
            "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--name", "fsq_gen", "--text_path",
            str(prompts), "--sequence", "--edit_source", str(out / samples[0]["files"]["features"]),
            "--edit_frames", "0:8"]))


@pytest.mark.parametrize("seconds, frames, transitions, said", [
    (0.1, 0, [[24, 24]], "so 0 frames are (the seams are joined as generated)"),
    (0.3, 4, [[24, 28]], "so 4 frames are (the later segment takes the odd token)"),
    (0.4, 8, [[20, 28]], None),
])
def test_a_transition_is_recorded_and_said_in_whole_tokens(ckdir, tmp_path, caplog, seconds, frames, transitions,
                                                           said):
    """Transitions are regenerated in whole tokens (4 frames here): 0.1 s regenerated nothing and 0.3 s one token
    after the seam, while the run record said 2 and 6 frames, without a word."""
    prompts = tmp_path / "story.txt"
    prompts.write_text("a person walks#24\na person jumps#32\n", encoding="utf-8")
    with caplog.at_level("WARNING", logger="sample"):
        manifest = sample.main(parse_with_config(get_sample_parser(), [
            "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--name", "fsq_gen", "--time_steps", "2",
            "--text_path", str(prompts), "--sequence", "--transition_seconds", str(seconds), "--no_render",
            "--output_dir", str(tmp_path / "out")]))
    assert manifest["runs"][-1]["sequence"]["transition_frames_asked"] == frames
    assert manifest["samples"][0]["transitions"] == transitions
    warned = [r.getMessage() for r in caplog.records if "transition_seconds" in r.getMessage()]
    assert (warned == []) if said is None else (len(warned) == 1 and warned[0].endswith(said))


def test_a_capped_transition_is_said_and_the_manifest_keeps_asked_and_used_apart(ckdir, tmp_path, caplog):
    """Three 4-token segments and 2 s (40 frames) asked: every seam gets 12 frames (the middle segment gives one
    token to each), which the log says; the run record names the 40 frames as asked."""
    prompts = tmp_path / "story.txt"
    prompts.write_text("a person walks forward#16\na person jumps#16\nsomeone waves#16\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        manifest = sample.main(parse_with_config(get_sample_parser(), [
            "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--name", "fsq_gen", "--time_steps", "2",
            "--text_path", str(prompts), "--sequence", "--repeat_times", "2", "--no_render",
            "--output_dir", str(tmp_path / "out")]))
    sequence = manifest["runs"][-1]["sequence"]
    assert sequence["transition_frames_asked"] == 40 and "transition_frames" not in sequence
    assert [s["transitions"] for s in manifest["samples"]] == [[[8, 20], [28, 40]]] * 2
    said = [r.getMessage() for r in caplog.records if r.name == "utils.motion_sequence"]
    assert said == ["transitions of 40 frames asked, shortened so that every segment keeps at least half of its own "
                    "tokens: 12 frames at the seam at frame 16, 12 frames at the seam at frame 32"] * 2
    caplog.clear()
    with caplog.at_level("WARNING"):
        _load(ckdir, "fsq_gen").generate_sequence(TEXTS[:2], [40, 40], transition_frames=16, time_steps=2, seed=1)
    assert not [r for r in caplog.records if r.name == "utils.motion_sequence"]


def test_a_video_of_segments_shows_each_segments_prompt(tmp_path, monkeypatch):
    """The figure title follows the segment of the frame being drawn."""
    import utils.plot_script as plot_script

    seen = []
    original = plot_script._encode

    def encode(fig, update, frames, *args):
        def watched(frame):
            update(frame)
            seen.append((frame, fig._suptitle.get_text()))

        return original(fig, watched, frames, *args)

    monkeypatch.setattr(plot_script, "_encode", encode)
    joints = np.random.default_rng(0).normal(size=(6, 22, 3)).astype(np.float32)
    from utils.paramutil import T2M_KINEMATIC_CHAIN
    plot_3d_motion(str(tmp_path / "seq.gif"), joints, T2M_KINEMATIC_CHAIN, fmt="gif", save_joints=False,
                   captions=[(0, "walk"), (4, "jump")])
    titles = dict(seen)
    assert [titles[f] for f in range(6)] == ["walk"] * 4 + ["jump"] * 2
    with pytest.raises(ValueError, match="captions must start at frame 0 and be in order"):
        plot_3d_motion(str(tmp_path / "bad.gif"), joints, T2M_KINEMATIC_CHAIN, fmt="gif", captions=[(2, "walk")])


def test_sample_py_draws_missing_segment_lengths_from_the_estimator(ckdir, tmp_path):
    from test_generation import save_length_estimator

    save_length_estimator(ckdir, os.path.join(ckdir, "clip", "ViT-tiny.pt"))
    prompts = tmp_path / "story.txt"
    prompts.write_text("a person walks forward#20\na person jumps\nsomeone waves\n", encoding="utf-8")
    manifest = sample.main(parse_with_config(get_sample_parser(), [
        "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--name", "fsq_gen", "--time_steps", "2",
        "--text_path", str(prompts), "--sequence", "--no_render", "--seed", "5", "--output_dir", str(tmp_path / "o")]))
    segments = manifest["samples"][0]["segments"]
    assert [g["length_source"] for g in segments] == ["--text_path", "length estimator", "length estimator"]
    # One draw per missing length, from one stream seeded with the sample's seed.
    gen = _load(ckdir, "fsq_gen")
    drawn = gen.estimate_lengths(["a person jumps", "someone waves"], torch.Generator().manual_seed(5)).tolist()
    assert [g["end_frame"] - g["start_frame"] for g in segments] == [20, *drawn]
