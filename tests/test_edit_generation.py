"""Temporal editing through a loaded generator (``MotionGenerator.edit``) and ``sample.py --edit_source``: spans in
frames or seconds map to tokens, the source's tokens outside them are kept exactly (FSQ-MARDM, MARDM, MoMask with a
residual transformer), and bad spans fail naming the span. The sources (features, joints, BVH and AMASS files, their
place in the world) are in test_edit_sources.py.

The runs are the untrained tiny ones of test_generation.py and test_momask_generation.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from test_edit_sources import placed_joints
from test_generation import make_runs, save_generator, write_fake_clip
from test_momask_generation import save_code_tokenizer, save_token_generator

import sample
from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.bvh import bvh_positions, parse_bvh
from utils.bvh_export import write_bvh
from utils.checkpoint import file_sha256
from utils.dataset_specs import get_dataset_spec
from utils.editing import (
    FrameSpan,
    anchor_root,
    mask_runs,
    parse_span,
    resolve_spans,
    source_frame,
    token_edit_mask,
)
from utils.generation import load_generator
from utils.motion_process import recover_from_ric, recover_root_rot_pos


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory, synthetic_root):
    """FSQ-MARDM and MARDM runs (make_runs), a MoMask masked + residual pair on an RVQ tokenizer and VQ-MARDM on a
    VQ tokenizer."""
    folder = str(tmp_path_factory.mktemp("edit") / "checkpoints")
    make_runs(folder, synthetic_root)
    clip = write_fake_clip(os.path.join(folder, "clip"))
    rvq = save_code_tokenizer(folder, synthetic_root, "rvq", "RVQVAE_Tiny", quantize_dropout_prob=0.0)
    save_token_generator(folder, synthetic_root, "mask", "MoMask-Mask-Tiny", rvq, clip)
    save_token_generator(folder, synthetic_root, "res", "MoMask-Res-Tiny", rvq, clip, seed=1)
    vq = save_code_tokenizer(folder, synthetic_root, "vq_tok", "VQ_AE_Tiny")
    save_generator(folder, synthetic_root, "vq_gen", "VQ-MARDM-SiT-Tiny", vq, clip, seed=2)
    return folder


# ---------------------------------------------------------------------------------------------------------------------
# Spans
# ---------------------------------------------------------------------------------------------------------------------

def test_spans_in_frames_and_seconds_with_open_ends():
    assert parse_span("40:80") == FrameSpan(40, 80)
    assert parse_span(":40") == FrameSpan(0, 40)
    assert parse_span("100:") == FrameSpan(100, None)
    # Seconds round outward at the fps: start down, end up; whole frames stay exact.
    assert parse_span("1:2", "seconds", fps=20.0) == FrameSpan(20, 40)
    assert parse_span("0.51:1.01", "seconds", fps=20.0) == FrameSpan(10, 21)
    assert parse_span("2.5:", "seconds", fps=30.0) == FrameSpan(75, None)
    assert resolve_spans([FrameSpan(100, None), FrameSpan(0, 3)], 120, 4) == [FrameSpan(100, 120), FrameSpan(0, 3)]


def test_a_token_is_edited_when_any_of_its_frames_is():
    mask = token_edit_mask([FrameSpan(5, 9)], 6, 4)                # frames 5..8 touch tokens 1 (4-7) and 2 (8-11)
    assert mask.tolist() == [False, True, True, False, False, False]
    mask = token_edit_mask([FrameSpan(0, 4), FrameSpan(20, 24), FrameSpan(3, 5)], 6, 4)
    assert mask.tolist() == [True, True, False, False, False, True]
    assert mask_runs(mask) == [[0, 2], [5, 6]]
    assert mask_runs(torch.zeros(3, dtype=torch.bool)) == []


@pytest.mark.parametrize("text,unit,match", [
    ("40-80", "frames", "expected START:END"),
    ("1:2:3", "frames", "expected START:END"),
    ("4.5:8", "frames", "not a whole number of frames"),
    ("-4:8", "frames", "finite and >= 0"),
    ("8:8", "frames", "the span is empty"),
    ("3:1", "seconds", "the span is empty"),
    ("1.04:1.01", "seconds", "the span is empty"),                  # reversed, though both round into frame 20-21
    ("a:1", "seconds", "not a number of seconds"),
])
def test_bad_spans_fail_naming_the_span(text, unit, match):
    with pytest.raises(ValueError, match=match):
        parse_span(text, unit, fps=20.0)


def test_spans_outside_the_motion_fail():
    with pytest.raises(ValueError, match="reaches past the source, which has 50 frames"):
        resolve_spans([FrameSpan(40, 60)], 50, 4)
    with pytest.raises(ValueError, match="last 2 frames .* the edited motion has 48 frames"):
        resolve_spans([FrameSpan(48, None)], 50, 4)
    with pytest.raises(ValueError, match="no edit span given"):
        resolve_spans([], 50, 4)
    # An open end past the source was called "empty or negative" ([60, 50)).
    for start in (50, 60):
        with pytest.raises(ValueError, match=rf"edit span \[{start}, end\) starts past the end of the source, which "
                                             rf"has 50 frames \(frames 0 to 49\)"):
            resolve_spans([FrameSpan(start, None)], 50, 4)


def test_span_bounds_that_are_not_whole_frames_or_pairs_fail_naming_the_span():
    # 1.33 s at 20 fps is 26.6 frames: cut to 26 it would narrow the span and leave frame 26 unedited.
    with pytest.raises(ValueError, match=r"edit span \(0, 26\.6\): bound 26\.6 is not a whole number of frames"):
        resolve_spans([(0, 26.6)], 50, 4)
    with pytest.raises(ValueError, match=r"edit span 40: expected a \(START, END\) pair of frames"):
        resolve_spans(list((40, 48)), 50, 4)                 # one span given where a list of spans is expected
    assert resolve_spans([(np.int64(4), 8.0), (torch.tensor(9), None)], 50, 4) == [FrameSpan(4, 8), FrameSpan(9, 50)]


# ---------------------------------------------------------------------------------------------------------------------
# MotionGenerator.edit
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", ["fsq_gen", "ae_gen", "vq_gen", "momask"])
def test_edit_keeps_the_source_tokens_outside_the_spans(ckdir, source, run):
    root = os.path.join(ckdir, "synthetic")
    if run == "momask":
        gen = load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res"))
    else:
        gen = load_generator(os.path.join(root, run))
    out = gen.edit(["a person jumps", "a person runs"], source, [FrameSpan(10, 21)], time_steps=3, seed=0)
    assert out.edit_mask.tolist() == [False, False, True, True, True, True] + [False] * 6   # tokens 2..5
    assert out.features.shape == (2, 48, 263) and out.lengths.tolist() == [48, 48]
    assert out.reconstruction.shape == (48, 263)
    kept, edited = ~out.edit_mask, out.edit_mask
    for b in range(2):
        assert torch.equal(out.tokens[b][kept], out.source_tokens[kept])
        assert not torch.equal(out.tokens[b][edited], out.source_tokens[edited])
    if run == "momask":
        assert out.tokens.shape[-1] == gen.tokenizer.num_quantizers
        assert (out.tokens[:, edited][..., 1:] >= 0).all()                 # residual layers generated in the span
    change = out.unedited_change(0)
    assert change["frames"] == 32 and 0 <= change["mean_abs_diff"] <= change["max_abs_diff"]
    kept_frames = ~out.edited_frames
    assert change["max_abs_diff"] == pytest.approx(
        (out.features[0, kept_frames] - out.reconstruction[kept_frames]).abs().max().item(), rel=1e-6)
    # Seeded like generate, and the text conditions the edit.
    again = gen.edit(["a person jumps", "a person runs"], source, [FrameSpan(10, 21)], time_steps=3, seed=0)
    assert torch.equal(again.tokens, out.tokens)
    # (Off the FSQ grid, where the untrained model's small differences are not rounded away.)
    unsnapped = {} if run == "momask" else {"snap": False}

    def edited_tokens(text: str) -> torch.Tensor:
        return gen.edit([text], source, [FrameSpan(10, 21)], time_steps=3, seed=0, **unsnapped).tokens[0]

    assert not torch.equal(edited_tokens("someone jumps high"), edited_tokens("a person walks"))


def test_edit_without_a_residual_run_keeps_the_source_residuals_outside_the_spans(ckdir, source):
    gen = load_generator(os.path.join(ckdir, "synthetic", "mask"))
    out = gen.edit(["a person jumps"], source, [FrameSpan(0, 8)], time_steps=2, seed=0)
    kept, edited = ~out.edit_mask, out.edit_mask
    assert torch.equal(out.tokens[0][kept], out.source_tokens[kept])
    assert (out.source_tokens[kept][:, 1:] >= 0).all()
    assert (out.tokens[0][edited][:, 1:] == -1).all()                  # edited tokens: base layer only, as sampling


def test_edit_rejects_what_it_cannot_edit(ckdir, source):
    gen = load_generator(os.path.join(ckdir, "synthetic", "fsq_gen"))
    with pytest.raises(ValueError, match=r"source must be features \(T, 263\)"):
        gen.edit(["a person walks"], source[:, :67], [FrameSpan(0, 8)])
    with pytest.raises(ValueError, match="fewer than one 4-frame token"):
        gen.edit(["a person walks"], source[:3], [FrameSpan(0, 2)])
    with pytest.raises(ValueError, match="reaches past the source"):
        gen.edit(["a person walks"], source, [FrameSpan(0, 51)])
    # As read_edit_source refuses such a file: the edit came back NaN without a word.
    with pytest.raises(ValueError, match=r"the source's features hold NaN or Inf values \(frame 0 of 50"):
        gen.edit(["a"], np.full_like(source, np.nan), [FrameSpan(0, 8)], time_steps=2, seed=0)
    damaged = torch.from_numpy(source).clone()
    damaged[30, 5] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or Inf values \(frame 30 of 50"):
        gen.edit(["a"], damaged, [FrameSpan(0, 8)], time_steps=2, seed=0)
    every = gen.edit(["a person walks"], source, [FrameSpan(0, None)], time_steps=2, seed=0)
    assert bool(every.edit_mask.all()) and every.unedited_change(0) is None


def test_a_tensor_source_edits_like_its_array(ckdir, source):
    """A source given as a tensor, e.g. a generated motion's features on the generator's device, or in bf16 (neither
    of which numpy can read), edits as its float32 array does."""
    gen = load_generator(os.path.join(ckdir, "synthetic", "fsq_gen"))
    spans = [FrameSpan(8, 20)]
    expected = gen.edit(["a person jumps"], source, spans, time_steps=2, seed=0).tokens
    device = "cuda" if torch.cuda.is_available() else "cpu"
    on_device = gen.edit(["a person jumps"], torch.from_numpy(source).to(device), spans, time_steps=2, seed=0)
    assert torch.equal(on_device.tokens, expected)
    as_bf16 = torch.from_numpy(source).bfloat16()
    assert torch.equal(gen.edit(["a person jumps"], as_bf16, spans, time_steps=2, seed=0).tokens,
                       gen.edit(["a person jumps"], as_bf16.float().numpy(), spans, time_steps=2, seed=0).tokens)


# ---------------------------------------------------------------------------------------------------------------------
# sample.py --edit_source
# ---------------------------------------------------------------------------------------------------------------------

def edit_sample(ckdir: str, *argv: str) -> dict:
    return sample.main(parse_with_config(get_sample_parser(), [
        "--dataset_name", "synthetic", "--checkpoints_dir", ckdir, "--time_steps", "2", "--no_render", *argv]))


def test_sample_py_edits_a_source_and_records_it(ckdir, source, tmp_path):
    src = tmp_path / "walk_features.npy"
    np.save(src, source)
    out = tmp_path / "out"
    manifest = edit_sample(ckdir, "--name", "mask", "--res_name", "res", "--text_prompt", "a person jumps",
                           "--edit_source", str(src), "--edit_frames", ":8", "--edit_seconds", "2:",
                           "--repeat_times", "2", "--output_dir", str(out))
    edit = manifest["edit"]
    assert edit["source"] == str(src) and edit["source_sha256"] == file_sha256(str(src))
    assert edit["source_frames"] == 50 and edit["edited_motion_frames"] == 48 and edit["unit_length"] == 4
    assert edit["spans_frames"] == [[0, 8], [40, 50]]
    assert edit["spans_tokens"] == [[0, 2], [10, 12]] and edit["edited_frames"] == [[0, 8], [40, 48]]
    assert len(manifest["samples"]) == 2
    for s in manifest["samples"]:
        assert s["length_frames"] == 48 and s["length_source"] == "--edit_source"
        assert s["files"]["features"].startswith("a_person_jumps_edit_000_r")
        assert np.load(out / s["files"]["features"]).shape == (48, 263)
        assert np.load(out / s["files"]["joints"]).shape == (48, 22, 3)
        change = s["unedited_change"]
        assert change["frames"] == 32 and change["max_abs_diff"] >= change["mean_abs_diff"] >= 0
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk["runs"][-1]["edit"] == edit
    # An edited output is itself a valid source.
    again = edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person waves", "--output_dir", str(out),
                        "--edit_source", str(out / manifest["samples"][0]["files"]["features"]),
                        "--edit_frames", "16:24")
    assert again["edit"]["spans_tokens"] == [[4, 6]] and again["samples"][-1]["length_frames"] == 48
    # Editing that edit again with its own prompt would write the output over the source: refused, source intact.
    edited = out / manifest["samples"][0]["files"]["features"]
    before = file_sha256(str(edited))
    with pytest.raises(ValueError, match=r"would write its output a_person_jumps_edit_000_r00_features\.npy over "
                                         r"the source; pass another --output_dir"):
        edit_sample(ckdir, "--name", "mask", "--res_name", "res", "--text_prompt", "a person jumps", "--output_dir",
                    str(out), "--edit_source", str(edited), "--edit_frames", "16:24")
    assert file_sha256(str(edited)) == before


def test_sample_py_puts_the_edit_of_a_joints_file_where_the_source_stands(ckdir, source, tmp_path):
    """The joints written for an edit of a joints source are the generated features' joints turned and moved to the
    source's place: frame 0's root on the source's, the manifest naming the turn and move. A features source has no
    place, and its edits stay in the canonical frame."""
    spec = get_dataset_spec("synthetic")
    world = placed_joints(source, -100.0, (3.0, 0.25, -7.0)).astype(np.float32)
    src = tmp_path / "walk.npy"
    np.save(src, world)
    out = tmp_path / "out"
    manifest = edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person jumps", "--edit_source", str(src),
                           "--edit_frames", "8:24", "--output_dir", str(out))
    edit = manifest["edit"]
    assert edit["joints_frame"] == "source"
    assert edit["source_frame"]["yaw_deg"] == pytest.approx(-100.0, abs=1e-3)
    np.testing.assert_allclose(edit["source_frame"]["offset_m"], [3.0, 0.25, -7.0], atol=1e-5)
    (sample_record,) = manifest["samples"]
    joints = np.load(out / sample_record["files"]["joints"])
    features = np.load(out / sample_record["files"]["features"])
    frame = source_frame(world, spec)
    np.testing.assert_allclose(joints, frame.place(recover_from_ric(features, 22)), atol=1e-5)
    np.testing.assert_allclose(joints[0, 0, [0, 2]], [3.0, -7.0], atol=1e-5)
    np.save(tmp_path / "walk_features.npy", source)
    plain = edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person jumps", "--edit_frames", "8:24",
                        "--edit_source", str(tmp_path / "walk_features.npy"), "--output_dir", str(tmp_path / "o2"))
    assert plain["edit"]["joints_frame"] == "canonical" and "source_frame" not in plain["edit"]
    np.testing.assert_allclose(np.load(tmp_path / "o2" / plain["samples"][0]["files"]["joints"])[0, 0, [0, 2]],
                               [0.0, 0.0], atol=1e-6)


def test_sample_py_edits_a_bvh_file_where_it_stands(ckdir, source, tmp_path):
    """A BVH source with its mapping: the edit's joints, and the BVH written of them, start where the source's root
    does, and the manifest records the mapping's file and the source's place."""
    world = placed_joints(source, 170.0, (-4.0, 0.0, 2.5))
    write_bvh(tmp_path / "walk.bvh", world, fps=20)
    out = tmp_path / "out"
    manifest = edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person jumps", "--edit_source",
                           str(tmp_path / "walk.bvh"), "--edit_skeleton", "smpl22", "--edit_seconds", "1:2", "--bvh",
                           "--output_dir", str(out))
    assert manifest["edit"]["source_frame"]["yaw_deg"] == pytest.approx(170.0, abs=1e-3)
    # The mapping turns the file into joints, so it is part of the edit's provenance, as the source's hash is.
    mapping = os.path.join(os.path.dirname(os.path.abspath(sample.__file__)), "options", "skeletons", "smpl22.yaml")
    assert manifest["edit"]["reader"] == {"edit_skeleton": "smpl22", "path": mapping,
                                          "sha256": file_sha256(mapping)}
    files = manifest["samples"][0]["files"]
    joints = np.load(out / files["joints"])
    assert joints.shape == (48, 22, 3)
    np.testing.assert_allclose(joints[0, 0, [0, 2]], [-4.0, 2.5], atol=1e-4)
    exported = bvh_positions(parse_bvh(out / files["bvh"]))
    np.testing.assert_allclose(exported[0, 0, [0, 2]], [-4.0, 2.5], atol=1e-4)


def test_an_edit_never_writes_its_bvh_over_a_bvh_source(ckdir, source, tmp_path):
    """Editing a BVH an earlier edit wrote, with its prompt, into its folder and with --bvh would write the new BVH
    over the source the manifest cites by hash: refused before anything is written, source intact."""
    write_bvh(tmp_path / "walk.bvh", placed_joints(source, 0.0, (0.0, 0.0, 0.0)), fps=20)
    out = tmp_path / "out"
    common = ("--name", "fsq_gen", "--text_prompt", "a person jumps", "--edit_skeleton", "smpl22", "--edit_frames",
              "8:16", "--bvh", "--output_dir", str(out))
    first = edit_sample(ckdir, "--edit_source", str(tmp_path / "walk.bvh"), *common)
    edited = out / first["samples"][0]["files"]["bvh"]
    before = file_sha256(str(edited))
    with pytest.raises(ValueError, match=r"would write its output a_person_jumps_edit_000_r00\.bvh over the source"):
        edit_sample(ckdir, "--edit_source", str(edited), *common)
    assert file_sha256(str(edited)) == before
    # Without --bvh the new edit replaces the earlier one's entry, whose BVH (this source) is kept all the same.
    again = edit_sample(ckdir, "--edit_source", str(edited), *common[:-3], "--output_dir", str(out))
    assert again["samples"][-1]["files"]["bvh"] is None and file_sha256(str(edited)) == before


def test_sample_py_refuses_bad_edits(ckdir, source, tmp_path):
    src = tmp_path / "walk_features.npy"
    np.save(src, source)
    joints = tmp_path / "walk.npy"
    np.save(joints, np.zeros((40, 22, 3), dtype=np.float32))
    common = ["--name", "fsq_gen", "--text_prompt", "a person jumps", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ValueError, match=r"walk\.npy: shape \(40, 22, 3\) looks like joint positions"):
        edit_sample(ckdir, *common, "--edit_source", str(joints), "--edit_frames", "0:8")
    with pytest.raises(ValueError, match="has the length of its --edit_source"):
        edit_sample(ckdir, *common, "--edit_source", str(src), "--edit_frames", "0:8", "--motion_length", "40")
    with pytest.raises(ValueError, match="need --edit_source"):
        edit_sample(ckdir, *common, "--edit_frames", "0:8")
    with pytest.raises(ValueError, match=r"--edit_seconds '3:1': the span is empty"):
        edit_sample(ckdir, *common, "--edit_source", str(src), "--edit_seconds", "3:1")
    with pytest.raises(ValueError, match=r"walk_features\.npy: edit span \[45, 60\) reaches past the source"):
        edit_sample(ckdir, *common, "--edit_source", str(src), "--edit_frames", "45:60")


def test_sample_py_refuses_edit_flags_before_loading_a_model(tmp_path):
    """Spans without a source, a source without spans and unreadable frame spans are refused before the generator
    is looked for (here there is none to find)."""
    missing = str(tmp_path / "no_runs")
    common = ["--name", "nothing", "--text_prompt", "a person jumps"]
    with pytest.raises(ValueError, match="need --edit_source"):
        edit_sample(missing, *common, "--edit_frames", "0:8")
    with pytest.raises(ValueError, match="--edit_source needs the spans"):
        edit_sample(missing, *common, "--edit_source", str(tmp_path / "x.npy"))
    with pytest.raises(ValueError, match="0-8"):
        edit_sample(missing, *common, "--edit_source", str(tmp_path / "x.npy"), "--edit_frames", "0-8")
    with pytest.raises(ValueError, match="--edit_skeleton / --edit_body_model read a .bvh or AMASS .npz"):
        edit_sample(missing, *common, "--edit_body_model", str(tmp_path / "m.npz"))
    # What a source's kind needs, or cannot take, is known from its name: refused before the model too.
    span = ["--edit_frames", "0:8"]
    with pytest.raises(ValueError, match=r"x\.bvh: a \.bvh source needs --edit_skeleton"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.bvh"))
    with pytest.raises(ValueError, match=r"x\.npz: an AMASS \.npz source needs --edit_body_model"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.npz"))
    with pytest.raises(ValueError, match=r"--edit_skeleton is for a \.bvh source, not a \.npy file"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.npy"), "--edit_skeleton", "smpl22")
    with pytest.raises(ValueError, match=r"x\.fbx: expected a \.npy file"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.fbx"))
    # Seconds spans need no fps to be read, a source must exist, and so must what reads a .bvh or AMASS source.
    with pytest.raises(ValueError, match=r"--edit_seconds '1-2': expected START:END"):
        edit_sample(missing, *common, "--edit_source", str(tmp_path / "x.npy"), "--edit_seconds", "1-2")
    with pytest.raises(ValueError, match=r"--edit_seconds '3:1': the span is empty"):
        edit_sample(missing, *common, "--edit_source", str(tmp_path / "x.npy"), "--edit_seconds", "3:1")
    with pytest.raises(FileNotFoundError, match=r"--edit_source: file not found: .*x\.npy"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.npy"))
    for name in ("x.bvh", "x.npz"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"--edit_skeleton nope: unknown skeleton 'nope'"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.bvh"), "--edit_skeleton", "nope")
    with pytest.raises(ValueError, match=r"--edit_skeleton .*no\.yaml: skeleton mapping file not found"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.bvh"), "--edit_skeleton",
                    str(tmp_path / "no.yaml"))
    with pytest.raises(FileNotFoundError, match=r"--edit_body_model: no such file or folder: .*model\.npz"):
        edit_sample(missing, *common, *span, "--edit_source", str(tmp_path / "x.npz"), "--edit_body_model",
                    str(tmp_path / "model.npz"))


# ---------------------------------------------------------------------------------------------------------------------
# One caption per span (MotionGenerator.edit_spans, sample.py --span_prompts)
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("run", ["fsq_gen", "momask"])
def test_each_span_is_generated_from_its_own_caption_left_to_right(ckdir, source, run, monkeypatch):
    from test_motion_sequence import Recorder

    root = os.path.join(ckdir, "synthetic")
    gen = load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res")) if run == "momask" \
        else load_generator(os.path.join(root, run))
    calls = Recorder(gen.backend, monkeypatch).calls
    out = gen.edit_spans(["a person jumps", "a person waves"], source, [FrameSpan(30, 40), FrameSpan(0, 8)],
                         time_steps=2, seed=0)
    assert out.texts == ["a person waves / a person jumps"] and out.tokens.shape[0] == 1
    assert out.spans == [FrameSpan(0, 8), FrameSpan(30, 40)]                      # in the order of the captions
    assert out.edit_mask.tolist() == [True, True] + [False] * 5 + [True] * 3 + [False] * 2
    # Left span first, from the source; the right span next, from the motion with the left one edited.
    assert [c["mask"][0].nonzero().squeeze(1).tolist() for c in calls] == [[0, 1], [7, 8, 9]]
    assert torch.equal(calls[0]["known"], out.source_tokens[None])
    assert torch.equal(calls[1]["known"], calls[0]["out"]) and torch.equal(out.tokens, calls[1]["out"])
    kept = ~out.edit_mask
    assert torch.equal(out.tokens[0][kept], out.source_tokens[kept])
    assert out.unedited_change(0)["frames"] == 28
    # Each span follows its own caption (off the FSQ grid, where small differences are not rounded away).
    unsnapped = {} if run == "momask" else {"snap": False}

    def tokens(texts):
        return gen.edit_spans(texts, source, [FrameSpan(30, 40), FrameSpan(0, 8)], time_steps=2, seed=0,
                              **unsnapped).tokens[0]

    assert not torch.equal(tokens(["someone jumps high", "a person waves"])[7:10],
                           tokens(["a person walks", "a person waves"])[7:10])


def test_span_captions_must_match_the_spans(ckdir, source):
    gen = load_generator(os.path.join(ckdir, "synthetic", "fsq_gen"))
    with pytest.raises(ValueError, match="1 captions for 2 edit spans"):
        gen.edit_spans(["a person jumps"], source, [FrameSpan(0, 8), FrameSpan(20, 24)])
    with pytest.raises(ValueError, match=r"share a token \(4 frames\)"):
        gen.edit_spans(["a person jumps", "a person waves"], source, [FrameSpan(0, 9), FrameSpan(10, 16)])


def test_sample_py_gives_each_span_its_prompt(ckdir, source, tmp_path):
    src = tmp_path / "walk_features.npy"
    np.save(src, source)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person waves\na person jumps\n", encoding="utf-8")
    out = tmp_path / "out"
    common = ["--name", "fsq_gen", "--text_path", str(prompts), "--output_dir", str(out), "--edit_source", str(src)]
    manifest = edit_sample(ckdir, *common, "--edit_seconds", "1.5:2", "--edit_frames", ":8", "--span_prompts",
                           "--repeat_times", "2")
    assert [s["repeat"] for s in manifest["samples"]] == [0, 1]
    for s in manifest["samples"]:
        assert s["files"]["features"] == f"edit_spans_a_person_waves_2p_r{s['repeat']:02d}_features.npy"
        assert s["prompt"] == "a person waves / a person jumps"
        # Left to right: the first prompt to frames 0-8, the second to 1.5-2 s (frames 30-40).
        assert s["span_prompts"] == [{"prompt": "a person waves", "frames": [0, 8]},
                                     {"prompt": "a person jumps", "frames": [30, 40]}]
        assert np.load(out / s["files"]["features"]).shape == (48, 263) and s["unedited_change"]["frames"] == 28
    # Checked before any model loads (the run named here does not exist).
    bad = ["--name", "no_such_run", "--text_path", str(prompts), "--output_dir", str(out)]
    with pytest.raises(ValueError, match=r"--span_prompts: 2 prompt\(s\) for 1 span\(s\)"):
        edit_sample(ckdir, *bad, "--edit_source", str(src), "--edit_frames", ":8", "--span_prompts")
    with pytest.raises(ValueError, match="--span_prompts pairs the prompts with the spans of an edit"):
        edit_sample(ckdir, *bad, "--span_prompts")
    # Spans sharing a token are refused before the samples' folder is made (it was left empty).
    fresh = tmp_path / "fresh"
    with pytest.raises(ValueError, match=r"edit spans \[\[0, 6\], \[7, 12\]\] share a token \(4 frames\)"):
        edit_sample(ckdir, "--name", "fsq_gen", "--text_path", str(prompts), "--output_dir", str(fresh),
                    "--edit_source", str(src), "--edit_frames", "0:6", "--edit_frames", "7:12", "--span_prompts")
    assert not fresh.exists()


# ---------------------------------------------------------------------------------------------------------------------
# Anchoring the root of edited spans (--anchor_root)
# ---------------------------------------------------------------------------------------------------------------------

def _root(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Root yaw angle (HumanML3D's half angle) and xz position per frame."""
    quat, pos = recover_root_rot_pos(np.asarray(features, dtype=np.float64))
    return np.arctan2(quat[:, 2], quat[:, 0]), pos[:, [0, 2]]


def test_anchor_root_puts_the_frame_after_each_span_where_the_target_has_it(source):
    rng = np.random.default_rng(0)
    target = source.astype(np.float64)
    edited = target.copy()
    mask = np.zeros(len(target), dtype=bool)
    mask[8:20] = mask[28:36] = mask[44:] = True
    edited[mask, :4] += rng.normal(0, 0.1, (int(mask.sum()), 4))   # the spans turn and travel otherwise
    edited[mask, 4:] += rng.normal(0, 0.1, (int(mask.sum()), 263 - 4))
    edited[~mask, :3] += rng.normal(0, 0.01, (int((~mask).sum()), 3))  # the decoder moves the rest a little too
    out, records = anchor_root(edited, target, mask, metres_per_unit=1.0)
    assert [r["frames"] for r in records] == [[8, 20], [28, 36]]           # the suffix span has nothing after it
    yaw_t, xz_t = _root(target)
    yaw_e, xz_e = _root(edited)
    yaw_o, xz_o = _root(out)
    for _, b in ([8, 20], [28, 36]):
        assert abs(yaw_o[b] - yaw_t[b]) < 1e-9 and np.abs(xz_o[b] - xz_t[b]).max() < 1e-9
        assert np.abs(xz_e[b] - xz_t[b]).max() > 1e-2                      # without anchoring it was off
    # Every unedited frame stands where the target's does (the first ones drifted without anchoring).
    assert np.abs(xz_o[~mask] - xz_t[~mask]).max() < 1e-9 and np.abs(yaw_o[~mask] - yaw_t[~mask]).max() < 1e-9
    assert np.abs(xz_e[:8] - xz_t[:8]).max() > 1e-3
    # Only the root velocity dims change: the unedited rows' are the target's, the suffix span's stay as edited;
    # what the records say was spread is what the edit was off by.
    changed = np.abs(out - edited) > 0
    assert not changed[:, 3:].any() and not changed[44:].any()
    np.testing.assert_array_equal(out[~mask, :3], target[~mask, :3])
    first = records[0]
    before = edited.copy()
    before[~mask, :3] = target[~mask, :3]
    yaw_off = 2 * (np.arctan2(*_root_half_angle(target, 20)) - np.arctan2(*_root_half_angle(before, 20)))
    assert first["yaw_deg"] == pytest.approx(np.degrees(yaw_off), abs=1e-6)
    with pytest.raises(ValueError, match=r"anchor_root: expected features and target"):
        anchor_root(edited, target[:10], mask)


def _root_half_angle(features: np.ndarray, frame: int) -> tuple[float, float]:
    angle = float(np.sum(features[:frame, 0]))
    return np.sin(angle), np.cos(angle)


@pytest.mark.parametrize("run", ["fsq_gen", "momask"])
def test_an_anchored_edit_keeps_what_follows_the_span_in_place(ckdir, source, run):
    root = os.path.join(ckdir, "synthetic")
    gen = (load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res")) if run == "momask"
           else load_generator(os.path.join(root, run)))
    plain = gen.edit(["a person jumps"], source, [FrameSpan(8, 24)], time_steps=2, seed=0)
    anchored = gen.edit(["a person jumps"], source, [FrameSpan(8, 24)], time_steps=2, seed=0, anchor_root=True)
    assert plain.root_anchors is None and [r["frames"] for r in anchored.root_anchors[0]] == [[8, 24]]
    assert torch.equal(plain.tokens, anchored.tokens)                      # the same edit, bent afterwards
    _, xz_src = _root(anchored.reconstruction.numpy())
    _, xz_plain = _root(plain.features[0].numpy())
    _, xz_anchored = _root(anchored.features[0].numpy())
    assert np.abs(xz_anchored[24] - xz_src[24]).max() < 1e-5 < np.abs(xz_plain[24] - xz_src[24]).max()
    # Every frame outside the span stands where the source's does, not only the one after it.
    outside = np.r_[0:8, 24:len(xz_src)]
    assert np.abs(xz_anchored[outside] - xz_src[outside]).max() < 1e-5
    # The normalised copy and the joints follow the bent features.
    assert torch.allclose(gen.denormalize(anchored.features_normalised), anchored.features, atol=1e-5)
    assert np.allclose(anchored.joints[0][:, 0, [0, 2]], xz_anchored, atol=1e-5)


def test_sample_py_anchor_root_is_recorded_and_needs_an_edit(ckdir, source, tmp_path):
    src = tmp_path / "walk_features.npy"
    np.save(src, source)
    manifest = edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person jumps", "--edit_source", str(src),
                           "--edit_frames", "8:24", "--anchor_root", "--output_dir", str(tmp_path / "out"))
    (anchor,) = manifest["samples"][0]["root_anchor"]
    assert anchor["frames"] == [8, 24] and anchor["xz_m"] >= 0 and np.isfinite(anchor["yaw_deg"])
    with pytest.raises(ValueError, match="--anchor_root keeps an edit's unedited frames in place: add --edit_source"):
        edit_sample(ckdir, "--name", "fsq_gen", "--text_prompt", "a person jumps", "--anchor_root")
