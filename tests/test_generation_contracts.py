"""Contracts of generation, editing, sequences, prompts, sampling outputs, the token cache and the evaluation's
embedding helpers that no other test pinned (each found by changing the code on purpose and seeing every test pass):
lengths round down to whole tokens, an edit encodes its source in the generator's normalisation, a sequence is in the
dataset's units and its seams are in-betweened from the next prompt in a window centred on them, the residual layers
sample with their own temperature and Gumbel noise, prompt-file edge cases, each sample's length drawn with its own
seed, span prompts given left to right, and the checks of saved motions and embedding calls."""

from __future__ import annotations

import dataclasses
import logging
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_generation import make_runs, save_generator, save_length_estimator
from test_momask_generation import save_code_tokenizer, save_token_generator

import sample
from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.editing import FrameSpan, anchor_root
from utils.generation import MotionGenerator, load_generator
from utils.generator_checkpoints import load_length_estimator
from utils.generator_resume import check_resumed_settings
from utils.generator_stage import tokenize
from utils.model_embeddings import ModelMemo, checked_motion, embed_in_chunks
from utils.prompts import Prompt, parse_prompt_line, read_prompt_file, read_prompts
from utils.saved_motions import MotionRecorder, MotionReplay, SavedMotionsError, make_header, seed_file

TEXTS = ["a person walks forward", "a person jumps", "someone waves with the right hand"]


@pytest.fixture(scope="module")
def ckdir(tmp_path_factory, synthetic_root):
    """make_runs (FSQ-MARDM ``fsq_gen``, MARDM ``ae_gen``), a MoMask mask + res pair on an RVQ tokenizer, VQ-MARDM
    ``vq_gen`` and a length estimator beside them."""
    folder = str(tmp_path_factory.mktemp("kill") / "checkpoints")
    paths = make_runs(folder, synthetic_root)
    rvq = save_code_tokenizer(folder, synthetic_root, "rvq", "RVQVAE_Tiny", quantize_dropout_prob=0.0)
    save_token_generator(folder, synthetic_root, "mask", "MoMask-Mask-Tiny", rvq, paths["clip"])
    save_token_generator(folder, synthetic_root, "res", "MoMask-Res-Tiny", rvq, paths["clip"], seed=1)
    vq = save_code_tokenizer(folder, synthetic_root, "vq_tok", "VQ_AE_Tiny")
    paths["vq_gen"] = save_generator(folder, synthetic_root, "vq_gen", "VQ-MARDM-SiT-Tiny", vq, paths["clip"], seed=2)
    save_length_estimator(folder, paths["clip"])
    return folder, paths


@pytest.fixture(scope="module")
def fsq(ckdir):
    return load_generator(os.path.join(ckdir[0], "synthetic", "fsq_gen"))


@pytest.fixture(scope="module")
def momask(ckdir):
    root = os.path.join(ckdir[0], "synthetic")
    return load_generator(os.path.join(root, "mask"), res_run=os.path.join(root, "res"))


def run_sample(folder: str, *argv: str) -> dict:
    return sample.main(parse_with_config(get_sample_parser(), [
        "--dataset_name", "synthetic", "--checkpoints_dir", folder, "--time_steps", "2", "--no_render", *argv]))


# ---------------------------------------------------------------------------------------------------------------------
# utils/editing.py
# ---------------------------------------------------------------------------------------------------------------------

def test_anchor_root_changes_only_the_root_yaw_and_xz_velocities(source):
    """Anchoring touches only the root's yaw and xz velocities (the first three features), which the unedited rows
    take from the source; every other feature, the root height included, stays as decoded."""
    target = source.astype(np.float64)
    rng = np.random.default_rng(1)
    edited = target + rng.normal(0, 0.05, target.shape)  # the decoder moves every dim a little, the height included
    mask = np.zeros(len(target), dtype=bool)
    mask[8:20] = True
    out, _ = anchor_root(edited, target, mask)
    np.testing.assert_array_equal(out[:, 3:], edited[:, 3:])
    np.testing.assert_array_equal(out[~mask, :3], target[~mask, :3])


# ---------------------------------------------------------------------------------------------------------------------
# utils/generation.py
# ---------------------------------------------------------------------------------------------------------------------

def test_fractional_lengths_round_down_to_whole_tokens(fsq):
    """A fractional length rounds down to whole tokens, never up."""
    assert fsq.round_lengths(torch.tensor([7.9, 16.5])).tolist() == [4, 16]
    assert fsq.round_lengths([11.99]).tolist() == [8]


def test_max_frames_is_whole_tokens_when_the_datasets_maximum_is_not(fsq, caplog):
    """max_frames is the dataset's maximum cut to whole tokens (198 frames: 196), and the clamp warning says so."""
    spec = dataclasses.replace(fsq.spec, max_motion_length=198)
    gen = MotionGenerator(fsq.backend, fsq.tokenizer, fsq.text_encoder, spec, fsq.mean, fsq.std, fsq.device,
                          fsq.path, fsq.info)
    assert gen.max_frames == 196
    with caplog.at_level(logging.WARNING, logger="utils.generation"):
        assert gen.round_lengths([198]).tolist() == [196]
    assert "exceed the 196 frames" in caplog.text


def test_an_edit_encodes_the_source_in_the_generators_normalisation(ckdir, source):
    """An edit encodes its source normalised with the generator's statistics, not in dataset units. (On the AE
    run the tiny untrained FSQ grid saturates, so its codes come out the same either way.)"""
    gen = load_generator(ckdir[1]["ae_gen"])
    out = gen.edit(["a person jumps"], source, [FrameSpan(8, 16)], time_steps=2, seed=0)
    motion = torch.from_numpy((source[:48] - gen.mean) / gen.std)[None]
    expected = tokenize(gen.tokenizer, motion, torch.tensor([48])).targets[0]
    torch.testing.assert_close(out.source_tokens, expected)
    # The kept frames decode from those tokens, in the dataset's units.
    decoded = gen.tokenizer.model.decode_latent(expected[None])[0]
    decoded = decoded * torch.as_tensor(gen.std) + torch.as_tensor(gen.mean)
    torch.testing.assert_close(out.reconstruction, decoded, atol=1e-4, rtol=1e-4)


def test_a_generator_whose_std_differs_from_its_tokenizers_is_refused(ckdir, tmp_path):
    """A generator trained on another std than its tokenizer's is refused, not only one with other means."""
    state = load_checkpoint(ckdir[1]["fsq_gen"])
    state["dataset"] = {**state["dataset"], "std": torch.as_tensor(state["dataset"]["std"]).float() * 2}
    path = str(tmp_path / "gen.tar")
    save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match="mean/std differ from those of its tokenizer"):
        load_generator(path)


def test_estimated_lengths_count_in_the_estimators_own_unit(ckdir, tmp_path):
    """Class c of an estimator with a 2-frame unit is 2c frames, whatever the generator's unit."""
    est = save_length_estimator(str(tmp_path), ckdir[1]["clip"], unit_length=2)
    gen = load_generator(ckdir[1]["fsq_gen"], length_estimator=est)
    texts = TEXTS + ["a man sits down", "a person turns around", "someone kicks"]
    lengths = gen.estimate_lengths(texts, temperature=0)
    with torch.no_grad():
        logits = load_length_estimator(est).model(gen.text_encoder.encode(texts)).clone()
    logits[:, 0] = float("-inf")
    classes = logits.argmax(-1)
    assert (classes > 1).any()  # else 2c and 4c round to the same 4 frames
    frames = (classes * 2).clamp(min=4)
    assert lengths.tolist() == (frames - frames % 4).tolist()


# ---------------------------------------------------------------------------------------------------------------------
# utils/generation_backends.py, utils/generation_momask.py
# ---------------------------------------------------------------------------------------------------------------------

def test_vq_mardm_without_snapping_decodes_the_raw_tokens(ckdir):
    """snap=False (the ablation) decodes a VQ-MARDM's raw tokens, without snapping them to the codebook."""
    gen = load_generator(ckdir[1]["vq_gen"])
    out = gen.generate(["a person walks"], [16], time_steps=2, seed=0, snap=False)
    raw = gen.tokenizer.model.decode_latent(out.tokens.float())
    torch.testing.assert_close(out.features_normalised, raw)
    snapped = gen.tokenizer.model.decode_latent(gen.backend.snap_fn(out.tokens.float()))
    assert not torch.allclose(snapped, raw)


def test_residual_layers_take_res_temperature_and_gumbel_sampling(momask, monkeypatch):
    """The residual layers sample with res_temperature and Gumbel sampling, whatever the base layer uses."""
    def tokens(**kw):
        return momask.generate(["a person walks"], [32], time_steps=2, seed=1, **kw).tokens

    a, b = tokens(temperature=0.5), tokens(temperature=0.5, res_temperature=0.5)
    assert torch.equal(a[..., 0], b[..., 0]) and not torch.equal(a, b)
    seen = []
    original = momask.backend.residual.generate

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(momask.backend.residual, "generate", spy)
    tokens(temperature=0.7, res_temperature=0.3, sampling="categorical")
    assert seen[-1]["temperature"] == 0.3 and seen[-1]["sampling"] == "gumbel"


def test_a_top_k_threshold_of_one_is_refused(momask):
    """topk_filter_thres 1 (no code left to sample) is refused."""
    with pytest.raises(ValueError, match=r"topk_filter_thres must be in \[0, 1\)"):
        momask.sampling_settings(topk_filter_thres=1.0)


# ---------------------------------------------------------------------------------------------------------------------
# utils/motion_sequence.py
# ---------------------------------------------------------------------------------------------------------------------

def _spy(backend, monkeypatch) -> list[dict]:
    calls = []
    original = backend.sample_tokens

    def sample_tokens(text_emb, token_lengths, settings, generator, known=None, edit_mask=None):
        out = original(text_emb, token_lengths, settings, generator, known=known, edit_mask=edit_mask)
        calls.append({"emb": text_emb.clone(), "known": known, "mask": edit_mask})
        return out

    monkeypatch.setattr(backend, "sample_tokens", sample_tokens)
    return calls


def test_a_seam_is_in_betweened_from_the_next_segments_prompt(fsq, monkeypatch):
    """The transition at a seam is generated from the next segment's prompt, not the previous one's."""
    calls = _spy(fsq.backend, monkeypatch)
    fsq.generate_sequence(TEXTS[:2], [40, 40], transition_frames=16, time_steps=2, seed=0)
    (window,) = [c for c in calls if c["known"] is not None]
    torch.testing.assert_close(window["emb"], fsq.text_encoder.encode([TEXTS[1]]))
    assert not torch.allclose(window["emb"], fsq.text_encoder.encode([TEXTS[0]]))


def test_the_window_of_a_seam_between_long_segments_is_centred_on_it(fsq, monkeypatch):
    """Between long segments the regenerated window is centred on the seam: the tokens after it are regenerated
    too."""
    calls = _spy(fsq.backend, monkeypatch)
    out = fsq.generate_sequence(TEXTS[:2], [196, 196], transition_frames=40, time_steps=2, seed=0)
    assert out.transitions == [(176, 216)]  # 5 tokens either side of the seam at token 49
    (window,) = [c for c in calls if c["known"] is not None]
    # At most 49 tokens, 24 before the seam: tokens 25..73, of which 44..53 are generated again.
    assert window["known"].shape[1] == 49
    assert window["mask"][0].nonzero().squeeze(1).tolist() == list(range(44 - 25, 54 - 25))


def test_a_sequence_is_in_the_datasets_units(fsq):
    """A sequence's features are denormalised into the dataset's units."""
    out = fsq.generate_sequence(TEXTS[:2], [40, 40], transition_frames=8, time_steps=2, seed=0)
    mean, std = torch.as_tensor(fsq.mean), torch.as_tensor(fsq.std)
    torch.testing.assert_close(out.features[0], out.features_normalised[0] * std + mean)


def test_transition_frames_count_whole_tokens_rounded_down(fsq):
    """transition_frames round down to whole tokens: 6 frames (1.5 tokens) are one token."""
    out = fsq.generate_sequence(TEXTS[:2], [40, 40], transition_frames=6, time_steps=2, seed=0)
    assert out.transitions == [(40, 44)]  # one token, the later half's


# ---------------------------------------------------------------------------------------------------------------------
# utils/prompts.py
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, text, line", [("p.jsonl", '{"text": "a person walks", "length": 0}\n', 1),
                                              ("p.csv", "text,length\na person walks,0\n", 2)])
def test_a_zero_length_in_a_structured_prompt_file_fails_naming_the_line(tmp_path, name, text, line):
    """A length of 0 in a .jsonl / .csv prompt file is refused with its line, not read and failed on later."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{name}, line {line}: length 0"):
        read_prompt_file(str(path))


def test_a_hash_inside_a_prompt_stays_text_and_the_last_one_gives_the_length():
    """Only the last '#' of a prompt line gives the length; an earlier one is part of the text."""
    assert parse_prompt_line("a #1 fan walks to the left#40") == ("a #1 fan walks to the left", 40)


def test_motion_length_zero_leaves_the_length_to_the_estimator():
    """--motion_length 0 leaves each prompt's length to the estimator."""
    assert read_prompts("a person walks", None, 0) == [Prompt("a person walks", None, "length estimator")]


# ---------------------------------------------------------------------------------------------------------------------
# utils/sample_jobs.py, utils/sample_manifest.py (through sample.py)
# ---------------------------------------------------------------------------------------------------------------------

def test_sample_py_draws_each_samples_length_with_that_samples_seed(ckdir, fsq, tmp_path):
    """The estimated length of sample k is drawn with seed --seed + k."""
    manifest = run_sample(ckdir[0], "--name", "fsq_gen", "--text_prompt", "a person walks", "--seed", "5",
                          "--repeat_times", "3", "--output_dir", str(tmp_path / "out"))
    assert [s["seed"] for s in manifest["samples"]] == [5, 6, 7]
    for s in manifest["samples"]:
        # generate() without a length draws it first from a generator seeded with the seed.
        drawn = fsq.generate(["a person walks"], None, time_steps=2, seed=s["seed"]).lengths
        assert s["length_frames"] == int(drawn[0])


def test_sample_py_gives_the_span_prompts_left_to_right_whatever_order_the_spans_come_in(ckdir, source, tmp_path):  # noqa: E501
    """The span prompts go to the spans from left to right: the first prompt to the earliest span, even when that span
    is given second."""
    src = tmp_path / "walk_features.npy"
    np.save(src, source)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a person waves\na person jumps\n", encoding="utf-8")
    out = tmp_path / "out"
    manifest = run_sample(ckdir[0], "--name", "ae_gen", "--text_path", str(prompts), "--output_dir", str(out),
                          "--edit_source", str(src), "--edit_frames", "30:40", "--edit_frames", ":8",
                          "--span_prompts", "--seed", "7")
    (s,) = manifest["samples"]
    gen = load_generator(ckdir[1]["ae_gen"])
    expected = gen.edit_spans(["a person waves", "a person jumps"], source, [(0, 8), (30, 40)], time_steps=2, seed=7)
    np.testing.assert_allclose(np.load(out / s["files"]["features"]), expected.features[0].numpy(), atol=1e-5)


def test_sample_py_summary_counts_this_runs_samples(ckdir, tmp_path, capsys):
    """The summary counts every sample this run wrote, its first included."""
    run_sample(ckdir[0], "--name", "fsq_gen", "--text_prompt", "a person walks", "--motion_length", "16",
               "--repeat_times", "2", "--output_dir", str(tmp_path / "out"))
    printed = capsys.readouterr().out
    assert "wrote 2 samples to" in printed
    assert "_r00" in printed and "_r01" in printed


# ---------------------------------------------------------------------------------------------------------------------
# utils/saved_motions.py
# ---------------------------------------------------------------------------------------------------------------------

def test_a_saved_length_past_its_calls_width_is_refused_when_read(tmp_path):
    """A saved length one past its call's width is refused when the file is read, before the replay breaks on it."""
    folder = str(tmp_path / "motions")
    header = make_header(dataset="synthetic", split="test", seed=0, eval_batch_size=1, multimodality=None, tag="t",
                         which="latest", meta={})
    MotionRecorder(folder, header, np.zeros(3, np.float32), np.ones(3, np.float32))
    np.savez(seed_file(folder, 0), kinds=np.array([0], np.int8), rows=np.array([1]), width=np.array([8]),
             captions=np.array(["a person walks"]), m_lengths=np.array([8]), lengths=np.array([9]),
             frames=np.zeros((9, 3), np.float32))
    with pytest.raises(SavedMotionsError, match=r"'lengths' holds 9 for row 0, but the 'width' of its call is 8"):
        MotionReplay(folder).begin(0)


# ---------------------------------------------------------------------------------------------------------------------
# utils/generator_resume.py, utils/generator_checkpoints.py
# ---------------------------------------------------------------------------------------------------------------------

def test_a_run_saved_before_cache_tokens_existed_resumes_with_codes_on_the_fly():
    """A run saved before --cache_tokens existed computed its codes on the fly, and resumes that way."""
    check_resumed_settings("latest.tar", {"config": {}}, {"cache_tokens": False})
    with pytest.raises(CheckpointError, match="--cache_tokens"):
        check_resumed_settings("latest.tar", {"config": {}}, {"cache_tokens": True})


def test_the_length_estimator_loads_its_ema_weights(ckdir, tmp_path):
    """An estimator trained with --ema_decay is loaded with its EMA weights, not its raw ones."""
    path = save_length_estimator(str(tmp_path), ckdir[1]["clip"])
    state = load_checkpoint(path)
    state["ema"] = {k: v + 0.5 if v.is_floating_point() else v.clone() for k, v in state["model"].items()}
    save_checkpoint(path, state)
    for name, value in load_length_estimator(path).model.state_dict().items():
        assert torch.equal(value, state["ema"][name]), name


# ---------------------------------------------------------------------------------------------------------------------
# utils/model_embeddings.py
# ---------------------------------------------------------------------------------------------------------------------

def test_checked_motion_refuses_lengths_past_the_motion_and_zeroes_the_padding():
    """Lengths past the motion's frames are refused, and every frame from each length on is zeroed."""
    evaluator = SimpleNamespace(dim_pose=3, unit_length=4)
    batch = SimpleNamespace(motion=torch.zeros(2, 8, 3))
    motion, lengths = checked_motion((torch.ones(2, 8, 3), torch.tensor([4, 8])), batch, evaluator, "motion_fn")
    assert lengths.tolist() == [4, 8]
    assert motion[0, :4].eq(1).all() and motion[0, 4:].eq(0).all() and motion[1].eq(1).all()
    with pytest.raises(ValueError, match=r"lengths must be 2 values in \[4, 8\]"):
        checked_motion((torch.ones(2, 8, 3), torch.tensor([4, 9])), batch, evaluator, "motion_fn")


def test_embedding_calls_never_exceed_max_rows():
    """No embedding call is given more than max_rows rows."""
    sizes = []

    def embed(motion, lengths, keep_input_order=True):
        sizes.append(motion.shape[0])
        return motion[:, 0, :2] + lengths[:, None]

    evaluator = SimpleNamespace(get_motion_embeddings=embed)
    items = [(torch.full((3, 8, 4), 1.0), torch.tensor([8, 8, 8])), (torch.full((2, 8, 4), 2.0), torch.tensor([4, 4]))]
    out = embed_in_chunks(evaluator, items, max_rows=4)
    assert sizes == [3, 2]
    np.testing.assert_array_equal(out[0], np.full((3, 2), 9.0))
    np.testing.assert_array_equal(out[1], np.full((2, 2), 6.0))


def test_the_memo_switches_off_at_a_difference_past_float32_round_off():
    """A motion_fn whose output differs by 1e-3 from its first call is not taken for deterministic."""
    memo = ModelMemo()
    memo.embeddings["row"] = np.ones(4, np.float32)
    memo.verify(["row"], np.full((1, 4), 1.001, np.float32))
    assert not memo.enabled and memo.embeddings == {}


def test_encode_tokens_pads_a_ragged_motion_to_whole_tokens(momask):
    """A 49-frame motion is padded to 52 frames (whole tokens), not 50."""
    from utils.token_stage import encode_tokens

    motion = torch.randn(1, 49, momask.spec.dim_pose, generator=torch.Generator().manual_seed(0))
    codes = encode_tokens(momask.tokenizer, motion, torch.tensor([49]))
    expected = momask.tokenizer.encode(torch.nn.functional.pad(motion, (0, 0, 0, 3)))[:, :12]
    assert codes.lengths.tolist() == [12] and torch.equal(codes.indices, expected)
