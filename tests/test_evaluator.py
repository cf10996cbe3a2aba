"""Guo et al. evaluator: parity with the golden fixture, released layout, our checkpoint round trip, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.dataset_specs import DATASETS
from utils.evaluator import build_evaluator, length_order, load_evaluator, save_evaluator
from utils.word_vectorizer import (
    SOURCE_GLOVE,
    SOURCE_GLOVE_FOLDER,
    SOURCE_LEARNED,
    LearnedVocab,
    WordVectorizer,
    encode_caption,
    write_glove_folder,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "t2m_evaluator"
SIZE_KEYS = ("dim_word", "dim_pos_ohot", "dim_movement_enc_hidden", "dim_movement_latent", "dim_text_hidden",
             "dim_motion_hidden", "dim_coemb_hidden")


@pytest.fixture(scope="module")
def fx():
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    with np.load(FIXTURE / "io.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return manifest, arrays


def _dataset_for(dim_pose):
    """The registered dataset with this width and a foot-contact group (the fixture feeds HumanML3D-style motion)."""
    names = [n for n, s in DATASETS.items() if s.dim_pose == dim_pose and s.contact_group is not None]
    assert names, f"no registered dataset with {dim_pose} dims and foot contacts"
    return names[0]


def _load_fixture(manifest, **kw):
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    kw.setdefault("mean", np.zeros(dim_pose, np.float32))
    kw.setdefault("std", np.ones(dim_pose, np.float32))
    return load_evaluator(str(FIXTURE / manifest["checkpoint"]["file"]), _dataset_for(dim_pose),
                          unit_length=manifest["constructor"]["kwargs"]["unit_length"], **kw)


def _check(got, expected, key, manifest):
    tol = manifest["tolerance"]["recommended"]
    got = got.detach().cpu().numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    assert got.shape == expected.shape, key
    if key in tol["exact"]:
        np.testing.assert_array_equal(got, expected, err_msg=key)
    else:
        rule = tol.get("per_output", {}).get(key, tol["default"])
        np.testing.assert_allclose(got, expected, rtol=rule["rtol"], atol=rule["atol"], err_msg=key)


def test_fixture_parity_every_output(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    for key in SIZE_KEYS:
        assert ev.model_args[key] == manifest["constructor"]["kwargs"][key], key
    assert ev.source == SOURCE_GLOVE and ev.unit_length == manifest["constructor"]["kwargs"]["unit_length"]
    args = (d["word_embs"], d["pos_ohot"], d["cap_lens"], d["motions"], d["m_lens"])
    out = {"align_idx": length_order(d["m_lens"])}
    out["text_emb"], out["motion_emb"] = ev.get_co_embeddings(*args)
    out["motion_emb_only"] = ev.get_motion_embeddings(d["motions"], d["m_lens"])
    out["movements_sorted"] = ev.movement_latents(d["motions"][out["align_idx"]])
    out["text_emb_input_order"], out["motion_emb_input_order"] = ev.get_co_embeddings(*args, keep_input_order=True)
    assert set(manifest["outputs"]) <= set(out), "an output of the manifest is not reproduced"
    for key in manifest["outputs"]:
        _check(out[key], d[key], key, manifest)


def test_input_order_is_a_permutation_and_captions_need_not_be_sorted(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    args = (d["word_embs"], d["pos_ohot"], d["cap_lens"], d["motions"], d["m_lens"])
    text_sorted, motion_sorted = ev.get_co_embeddings(*args)
    text_input, motion_input = ev.get_co_embeddings(*args, keep_input_order=True)
    order = torch.from_numpy(length_order(d["m_lens"]))
    torch.testing.assert_close(text_sorted, text_input[order], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(motion_sorted, motion_input[order], rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(d["cap_lens"]))
    text_perm, _ = ev.get_co_embeddings(*(a[perm] for a in args), keep_input_order=True)
    torch.testing.assert_close(text_perm, text_input[torch.from_numpy(perm)], rtol=1e-5, atol=1e-6)


def _released_copy(tmp_path, manifest) -> Path:
    """The fixture's checkpoint in the released layout, ``<tmp_path>/t2m/text_mot_match/model/finest.tar``; returns
    its folder."""
    model_dir = tmp_path / "t2m" / "text_mot_match" / "model"
    model_dir.mkdir(parents=True)
    shutil.copy(FIXTURE / manifest["checkpoint"]["file"], model_dir / "finest.tar")
    return model_dir


def test_released_layout_with_meta_folder(fx, tmp_path):
    manifest, d = fx
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    model_dir = _released_copy(tmp_path, manifest)
    with pytest.raises(FileNotFoundError, match=r"no mean\.npy \+ std\.npy \(or MARDM's eval_mean\.npy \+ "
                                                r"eval_std\.npy\) is in any of \[.*text_mot_match/model/meta"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    meta = tmp_path / "t2m" / "Comp_v6_KLD005" / "meta"
    meta.mkdir(parents=True)
    mean = np.linspace(-1, 1, dim_pose).astype(np.float32)
    std = np.linspace(0.5, 2, dim_pose).astype(np.float32)
    np.save(meta / "mean.npy", mean)
    np.save(meta / "std.npy", std)
    ev = load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    np.testing.assert_array_equal(ev.mean, mean)
    np.testing.assert_array_equal(ev.std, std)
    np.testing.assert_allclose(ev.normalize(np.ones(dim_pose)), (1 - mean) / std, rtol=1e-6)
    _, motion_emb = ev.get_co_embeddings(d["word_embs"], d["pos_ohot"], d["cap_lens"], d["motions"], d["m_lens"])
    _check(motion_emb, d["motion_emb"], "motion_emb", manifest)
    (meta / "std.npy").write_text("<html>not found</html>")  # a failed download saved under the name
    with pytest.raises(ValueError, match=r"meta.std\.npy: not a \.npy file .*expected evaluator statistics"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    # Statistics that load but cannot normalise are named by their files, not by the checkpoint.
    np.save(meta / "std.npy", np.zeros(dim_pose, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Comp_v6_KLD005/meta/mean\.npy / std\.npy: evaluator mean/std must be "
                                         r"finite with std > 0"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    # MARDM's evaluators ship eval_mean.npy / eval_std.npy, placed with the checkpoint.
    shutil.rmtree(meta)
    np.save(model_dir / "eval_mean.npy", mean)
    with pytest.raises(FileNotFoundError, match="no mean.npy"):  # both files are needed
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    (model_dir / "meta").mkdir()
    np.save(model_dir / "meta" / "eval_mean.npy", mean)
    np.save(model_dir / "meta" / "eval_std.npy", std)
    ev = load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    np.testing.assert_array_equal(ev.std, std)


def test_wrong_dataset_or_missing_checkpoint_fail_clearly(fx, tmp_path):
    manifest, _ = fx
    with pytest.raises(CheckpointError, match="movement_encoder.main.0.weight"):
        load_evaluator(str(FIXTURE / manifest["checkpoint"]["file"]), "t2m_67", mean=np.zeros(67),
                       std=np.ones(67))
    with pytest.raises(CheckpointError, match="text_mot_match"):
        load_evaluator(str(tmp_path), "t2m")


def test_a_weight_that_is_not_a_tensor_is_named(fx, tmp_path):
    """A damaged evaluator file holding None for a weight escaped as an AttributeError ('NoneType' has no shape)."""
    manifest, _ = fx
    state = load_checkpoint(str(FIXTURE / manifest["checkpoint"]["file"]))
    state["movement_encoder"]["main.0.weight"] = None
    path = tmp_path / "t2m" / "text_mot_match" / "model" / "finest.tar"
    path.parent.mkdir(parents=True)
    save_checkpoint(str(path), state)
    with pytest.raises(CheckpointError, match=r"finest.tar: 'movement_encoder' has no tensor 'main.0.weight'"):
        load_evaluator(str(path), "t2m")


def test_a_pos_embedding_of_another_width_than_the_pos_one_hot_is_refused(fx, tmp_path):
    """Captions always carry 15 POS classes: a 14-wide pos_emb loaded and passed the assets check, then failed at
    the first caption with a matmul shape error."""
    manifest, _ = fx
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    state = load_checkpoint(str(FIXTURE / manifest["checkpoint"]["file"]))
    state["text_encoder"]["pos_emb.weight"] = torch.zeros(state["text_encoder"]["pos_emb.weight"].shape[0], 14)
    path = tmp_path / "released.tar"
    save_checkpoint(str(path), state)
    expected = r"released\.tar: text_encoder\.pos_emb\.weight has shape \(\d+, 14\), taking 14 POS classes; expected " \
               r"width 15"
    with pytest.raises(CheckpointError, match=expected):
        load_evaluator(str(path), _dataset_for(dim_pose), mean=np.zeros(dim_pose), std=np.ones(dim_pose))
    # Our own format is read the same way.
    ours = build_evaluator("t2m", np.zeros(263), np.ones(263), dim_word=12, dim_pos_ohot=14, sizes="tiny")
    save_evaluator(str(tmp_path / "ours.tar"), ours)
    with pytest.raises(CheckpointError, match=r"ours\.tar: text_encoder\.pos_emb\.weight has shape \(12, 14\)"):
        load_evaluator(str(tmp_path / "ours.tar"), "t2m")


def test_statistics_that_are_not_numbers_are_named_by_their_file(fx, tmp_path):
    """An array of strings under meta/mean.npy loaded, then failed converting to float naming no file."""
    manifest, _ = fx
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    _released_copy(tmp_path, manifest)
    meta = tmp_path / "t2m" / "text_mot_match" / "meta"
    meta.mkdir()
    np.save(meta / "mean.npy", np.array(["a"] * dim_pose))
    np.save(meta / "std.npy", np.ones(dim_pose, np.float32))
    with pytest.raises(ValueError, match=r"meta/mean\.npy: cannot read as a \.npy array of numbers \(it holds dtype "
                                         r"<U1\); expected evaluator statistics, a numeric \.npy array"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose))
    # Passed as a file or as an array, they are named too.
    with pytest.raises(ValueError, match=r"meta/mean\.npy: cannot read as a \.npy array of numbers"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose), mean=str(meta / "mean.npy"),
                       std=str(meta / "std.npy"))
    with pytest.raises(ValueError, match=r"finest\.tar: evaluator mean/std must be numbers"):
        load_evaluator(str(tmp_path / "t2m"), _dataset_for(dim_pose), mean=np.array(["a"] * dim_pose),
                       std=np.ones(dim_pose))


def test_official_tokenizers_take_the_statistics_of_a_released_evaluator_only(fx, tmp_path):
    """T2M-GPT and MoMask files were trained with the released evaluator's meta: its statistics are theirs. One
    trained here normalises otherwise, so the convention falls back to the dataset's with the feature bias."""
    from utils.dataset_specs import get_dataset_spec
    from utils.tokenizer_eval import convention_statistics

    manifest, _ = fx
    rng = np.random.default_rng(0)
    dim_pose = manifest["constructor"]["kwargs"]["dim_pose"]
    released = _load_fixture(manifest, mean=rng.standard_normal(dim_pose), std=rng.uniform(0.5, 2.0, dim_pose))
    assert released.released
    spec = get_dataset_spec(_dataset_for(dim_pose))
    mean, std, where = convention_statistics("momask", "net.tar", spec, None, released)
    assert where == "the evaluator's (momask convention)" and mean is released.mean and std is released.std
    ours = build_evaluator(spec.name, released.mean, released.std, dim_word=12, sizes="tiny")
    assert not ours.released
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "Mean.npy", np.zeros(dim_pose, np.float32))
    np.save(data / "Std.npy", np.full(dim_pose, 2.0, np.float32))
    mean, std, where = convention_statistics("momask", "net.tar", get_dataset_spec(spec.name, str(data)), str(data),
                                             ours)
    assert where == "dataset Mean/Std with the evaluator feature bias (momask convention)"
    assert std.min() == np.float32(0.4) and std.max() == 2.0  # the feature bias: root and contact dims / 5


def test_too_short_motion_fails_clearly(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    lengths = d["m_lens"].copy()
    lengths[0] = ev.unit_length - 1
    with pytest.raises(ValueError, match="m_lens // unit_length"):
        ev.get_motion_embeddings(d["motions"], lengths)


def _random_batch(rng, batch, frames, dim_pose, lengths):
    motions = rng.standard_normal((batch, frames, dim_pose)).astype(np.float32)
    for i, n in enumerate(lengths):
        motions[i, n:] = 0.0
    return motions


def test_round_trip_glove_evaluator_small_width(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    dim_pose = DATASETS["t2m"].dim_pose
    mean, std = rng.standard_normal(dim_pose), rng.uniform(0.5, 2.0, dim_pose)
    ev = build_evaluator("t2m", mean, std, dim_word=12, sizes="tiny")
    lengths = np.array([40, 28, 36])
    motions = _random_batch(rng, 3, 40, dim_pose, lengths)
    words = rng.standard_normal((3, 6, 12)).astype(np.float32)
    pos = np.eye(15, dtype=np.float32)[rng.integers(0, 15, (3, 6))]
    cap_lens = np.array([6, 5, 3])
    before = ev.get_co_embeddings(words, pos, cap_lens, motions, lengths)
    path = tmp_path / "eval" / "finest.tar"
    save_evaluator(str(path), ev, epoch=3, iteration=120, metrics={"val_loss": 1.5})
    raw = load_checkpoint(str(path))
    assert {"text_encoder", "motion_encoder", "movement_encoder", "epoch", "iter"} <= set(raw)
    assert raw["epoch"] == 3 and raw["iter"] == 120 and raw["word_vectors"]["source"] == SOURCE_GLOVE
    loaded = load_evaluator(str(path), "t2m")
    assert loaded.model_args == ev.model_args and loaded.source == SOURCE_GLOVE and loaded.epoch == 3
    np.testing.assert_array_equal(loaded.mean, ev.mean)
    np.testing.assert_array_equal(loaded.std, ev.std)
    after = loaded.get_co_embeddings(words, pos, cap_lens, motions, lengths)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # --eval_dataset is suggested only where a conversion lets it score the other dataset (t2m_67 -> t2m), not
    # between two HumanML3D-style datasets of other skeletons, where following it failed.
    with pytest.raises(CheckpointError, match="an evaluator of dataset 't2m', but 't2m_67' is evaluated; .*"
                                              "take --eval_dataset t2m"):
        load_evaluator(str(path), "t2m_67")
    with pytest.raises(CheckpointError, match="an evaluator of dataset 't2m', but 'kit' is evaluated; pass an "
                                              "evaluator of 'kit' .*cannot score 'kit' through --eval_dataset "
                                              r"\(no conversion from 'kit'") as info:
        load_evaluator(str(path), "kit")
    assert "take --eval_dataset" not in str(info.value)
    assert load_evaluator(str(path), "t2m", mean=mean, std=std).model_args == ev.model_args
    # Statistics of another width are other statistics too (np.allclose alone raised a bare broadcasting error).
    for width in (dim_pose, 67):
        with pytest.raises(CheckpointError, match="mean/std passed in differ"):
            load_evaluator(str(path), "t2m", mean=np.zeros(width), std=np.ones(width))


def test_glove_vectors_other_than_the_recorded_ones_are_refused(fx, tmp_path, caplog):
    """An evaluator trained with a GloVe folder records the digest of its vectors: a folder of other vectors of the
    same width gave other scores silently. Released evaluators and ours saved before the digest record none."""
    words = ["sos", "eos", "unk", "walk", "person"]
    trained_with, other = tmp_path / "glove", tmp_path / "other"
    for folder, seed in ((trained_with, 0), (other, 1)):
        write_glove_folder(str(folder), words, np.random.default_rng(seed).standard_normal((len(words), 12)))
    ev = build_evaluator("t2m", np.zeros(263), np.ones(263), word_vectors=WordVectorizer(str(trained_with)),
                         sizes="tiny")
    assert ev.source == SOURCE_GLOVE_FOLDER and ev.glove_dir == str(trained_with)
    path = tmp_path / "ours.tar"
    save_evaluator(str(path), ev)
    loaded = load_evaluator(str(path), "t2m")
    assert loaded.source == SOURCE_GLOVE_FOLDER and loaded.glove_sha256 == ev.glove_sha256
    assert loaded.word_vectorizer(str(trained_with)).glove_dir == str(trained_with)
    with pytest.raises(ValueError, match=rf"ours\.tar: word_vectors\.sha256 is {ev.glove_sha256}, the digest of the "
                                         rf"GloVe vectors of {trained_with} it was trained with, but the vectors of "
                                         rf"{other} have [0-9a-f]{{64}}; pass the GloVe folder it was trained with"):
        loaded.word_vectorizer(str(other))
    raw = load_checkpoint(str(path))
    raw["word_vectors"]["sha256"] = None
    save_checkpoint(str(tmp_path / "torn.tar"), raw)
    with pytest.raises(CheckpointError, match=r"torn\.tar: word_vectors\.source is 'GloVe' but word_vectors\.sha256"):
        load_evaluator(str(tmp_path / "torn.tar"), "t2m")
    # Saved before the digest: it loads, and any folder of its width is taken, with a note.
    raw["word_vectors"] = {"source": SOURCE_GLOVE, "dim_word": 12, "words": None}
    save_checkpoint(str(tmp_path / "older.tar"), raw)
    older = load_evaluator(str(tmp_path / "older.tar"), "t2m")
    with caplog.at_level("WARNING", logger="utils.evaluator"):
        older.word_vectorizer(str(other))
    assert "older.tar records no digest of the GloVe vectors" in caplog.text
    # The released evaluators read the official GloVe, of which they record nothing.
    manifest, _ = fx
    write_glove_folder(str(tmp_path / "official"), words, np.ones((len(words), 300)))
    caplog.clear()
    with caplog.at_level("WARNING", logger="utils.evaluator"):
        assert _load_fixture(manifest).word_vectorizer(str(tmp_path / "official")).dim_word == 300
    assert not caplog.text


def test_round_trip_learned_vocabulary_without_contacts(tmp_path):
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    name = "t2m_67"
    dim_pose = DATASETS[name].dim_pose
    vocab = LearnedVocab.from_tokens(["a/DET", "man/NOUN", "walk/VERB", "left/ADV", "wave/VERB"], dim_word=10)
    sizes = dict(dim_movement_enc_hidden=12, dim_movement_latent=8, dim_text_hidden=10, dim_motion_hidden=14,
                 dim_coemb_hidden=6)
    ev = build_evaluator(name, np.zeros(dim_pose), np.ones(dim_pose), word_vectors=vocab, sizes=sizes)
    assert ev.source == SOURCE_LEARNED and ev.model.ignore_dims is None
    captions = [["a/DET", "man/NOUN", "walk/VERB", "left/ADV"], ["a/DET", "zebra/NOUN"], ["wave/VERB"]]
    encoded = [encode_caption(vocab, c, max_text_len=6) for c in captions]
    word_ids = np.stack([e.word_embs for e in encoded])
    pos = np.stack([e.pos_ohot for e in encoded])
    cap_lens = np.array([e.sent_len for e in encoded])
    lengths = np.array([24, 40, 33])
    motions = _random_batch(rng, 3, 40, dim_pose, lengths)
    before = ev.get_co_embeddings(word_ids, pos, cap_lens, motions, lengths)
    path = tmp_path / "learned.tar"
    save_evaluator(str(path), ev)
    loaded = load_evaluator(str(path), name)
    assert loaded.source == SOURCE_LEARNED and loaded.vocab.words == vocab.words
    assert loaded.word_vectorizer() is loaded.vocab
    for key, value in sizes.items():
        assert loaded.model_args[key] == value
    after = loaded.get_co_embeddings(word_ids, pos, cap_lens, motions, lengths)
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="integer word ids"):
        loaded.model.encode_text(torch.zeros(3, 8, 10), torch.as_tensor(pos), torch.as_tensor(cap_lens))


def test_embeddings_use_eval_mode_and_restore_training(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    reference = ev.get_motion_embeddings(d["motions"], d["m_lens"])
    ev.model.train()
    during = ev.get_motion_embeddings(d["motions"], d["m_lens"])
    assert ev.model.training
    torch.testing.assert_close(during, reference, rtol=0, atol=0)
    assert not during.requires_grad


def _three_step_embeddings(ev, motions, lengths):
    """Motion embeddings through the released computation (out_net, input_emb and the GRU applied one by one)."""
    ev.model.fold_input_maps = False
    try:
        return ev.get_motion_embeddings(motions, lengths, keep_input_order=True)
    finally:
        ev.model.fold_input_maps = True


def test_folded_motion_gru_equals_the_released_computation_at_official_widths():
    torch.manual_seed(2)
    rng = np.random.default_rng(2)
    dim_pose = DATASETS["t2m"].dim_pose
    ev = build_evaluator("t2m", np.zeros(dim_pose), np.ones(dim_pose), sizes="official")
    lengths = np.array([48, 40, 24, 36])
    motions = _random_batch(rng, 4, 48, dim_pose, lengths)
    rng_state = torch.get_rng_state()
    folded = ev.get_motion_embeddings(motions, lengths, keep_input_order=True)
    assert torch.equal(torch.get_rng_state(), rng_state)  # folding draws nothing from the global RNG
    reference = _three_step_embeddings(ev, motions, lengths)
    assert folded.shape == (4, 512) and not torch.equal(folded, reference)  # a different computation ...
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)  # ... with the same result
    gru = ev.model._folded[1]
    assert gru.input_size == 512 and ev.model.motion_encoder.gru.input_size == 1024
    assert not any(p.requires_grad for p in gru.parameters())
    assert set(ev.model.state_dict()) == set(build_evaluator("t2m", np.zeros(dim_pose), np.ones(dim_pose),
                                                             sizes="tiny").model.state_dict())


def test_folded_motion_gru_follows_every_weight_change(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    before = ev.get_motion_embeddings(d["motions"], d["m_lens"], keep_input_order=True)
    state = {k: v.clone() for k, v in ev.model.state_dict().items()}
    for name in ("movement_encoder.out_net.bias", "motion_encoder.input_emb.weight",
                 "motion_encoder.gru.weight_ih_l0_reverse", "motion_encoder.gru.bias_hh_l0"):
        with torch.no_grad():
            ev.model.get_parameter(name).add_(0.05)  # in place, as an optimizer step changes it
        changed = ev.get_motion_embeddings(d["motions"], d["m_lens"], keep_input_order=True)
        assert not torch.allclose(changed, before, atol=1e-4), name
        torch.testing.assert_close(changed, _three_step_embeddings(ev, d["motions"], d["m_lens"]),
                                   rtol=1e-5, atol=1e-5, msg=name)
        before = changed
    ev.model.load_state_dict(state)
    restored = ev.get_motion_embeddings(d["motions"], d["m_lens"])
    _check(restored, d["motion_emb_only"], "motion_emb_only", manifest)


def test_training_and_gradients_use_the_layers_themselves(fx):
    manifest, d = fx
    ev = _load_fixture(manifest)
    motion = torch.as_tensor(d["motions"])
    lengths = torch.as_tensor(d["m_lens"])
    ev.model.eval()
    emb = ev.model.encode_motion(motion, lengths)  # gradients enabled: the three-step path
    emb.sum().backward()
    assert emb.requires_grad and ev.model.motion_encoder.input_emb.weight.grad is not None
    assert ev.model._folded is None


_TINY_SIZES = dict(dim_word=6, dim_pos_ohot=15, dim_movement_enc_hidden=8, dim_movement_latent=8, dim_text_hidden=8,
               dim_motion_hidden=8, dim_coemb_hidden=8)


def test_ignore_dims_inside_the_vector_drop_exactly_that_slice():
    from models.evaluator import TextMotionEvaluator

    ev = TextMotionEvaluator(dim_pose=10, ignore_dims=(2, 4), **_TINY_SIZES)
    motion = torch.arange(2 * 8 * 10, dtype=torch.float32).reshape(2, 8, 10)
    kept = ev.movement_input(motion)
    assert kept.shape == (2, 8, 8)
    assert torch.equal(kept, motion[..., [0, 1, 4, 5, 6, 7, 8, 9]])
    assert ev.encode_movements(motion).shape == (2, 2, 8)


def test_folded_motion_gru_equals_the_three_step_path_with_non_zero_biases():
    """Every trained evaluator (the released one included) has non-zero biases; the fresh init zeroes them, so a
    folded input bias left out went unseen."""
    from models.evaluator import TextMotionEvaluator

    torch.manual_seed(0)
    ev = TextMotionEvaluator(dim_pose=12, **_TINY_SIZES).eval()
    with torch.no_grad():
        for name, p in ev.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    motion = torch.randn(3, 16, 12)
    lengths = torch.tensor([16, 12, 8])
    with torch.no_grad():
        folded = ev.encode_motion(motion, lengths)
        ev.fold_input_maps = False
        reference = ev.encode_motion(motion, lengths)
    torch.testing.assert_close(folded, reference, rtol=1e-5, atol=1e-5)
