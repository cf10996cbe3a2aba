"""Conditional part-aware RVQ-VAE (models/part_aware.py) and per-clip condition labels (utils/conditions.py)."""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest
import torch

import evaluation_AE
import models.tokenizers as tokenizers
import train_vq
from models.loader import load_tokenizer
from models.part_aware import (
    PART_AWARE_MODELS,
    PartAwareRVQVAE,
    check_partition,
    humanml3d_part_indices,
    joint_part_indices,
)
from options.config import parse_with_config
from options.eval_options import get_evaluation_ae_parser
from options.tokenizer_options import get_train_vq_parser
from utils.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from utils.conditions import (
    UNKNOWN,
    ConditionedWindowDataset,
    ConditionLabels,
    build_condition_labels,
    make_conditioned_loss_fn,
    read_conditions,
    window_clip_row,
    write_conditions,
)
from utils.dataset_specs import get_dataset_spec
from utils.datasets import MotionWindowDataset, Text2MotionDataset, read_split
from utils.evaluator import build_evaluator, save_evaluator
from utils.normalization import DatasetError, eval_normalization, load_mean_std
from utils.tokenizer_stage import dataset_record
from utils.word_vectorizer import LearnedVocab

TINY = "PartAwareRVQ_Tiny"


def _labels_for(ids: list[str]) -> dict[str, dict[str, str]]:
    species = ("human", "robot")
    genders = ("female", "male")
    return {clip: {"species": species[i % 2], "gender": genders[(i // 2) % 2]} for i, clip in enumerate(ids)}


# ----------------------------------------------------------------------------------------------------------------------
# partitions


def test_humanml3d_partition_groups_each_joints_features() -> None:
    parts = humanml3d_part_indices(22)
    assert len(parts) == 22
    assert check_partition(parts, 263) == parts
    assert parts[0] == [0, 1, 2, 3, 193, 194, 195, 259, 260, 261, 262]
    for j in range(1, 22):
        ric = list(range(4 + 3 * (j - 1), 4 + 3 * j))
        rot = list(range(67 + 6 * (j - 1), 67 + 6 * j))
        vel = list(range(193 + 3 * j, 196 + 3 * j))
        assert parts[j] == ric + rot + vel, j
    assert joint_part_indices(get_dataset_spec("t2m")) == parts
    # The seed's 30-joint skeleton: 359 features in 30 parts; the essential layout keeps only positions.
    assert len(humanml3d_part_indices(30)) == 30 and sum(map(len, humanml3d_part_indices(30))) == 359
    essential = joint_part_indices(get_dataset_spec("t2m_67"))
    assert essential[0] == [0, 1, 2, 3] and essential[5] == [16, 17, 18] and len(essential) == 22
    with pytest.raises(ValueError, match="HumanML3D-style layout"):
        joint_part_indices(get_dataset_spec("motionmillion"))


@pytest.mark.parametrize("parts,match", [
    ([[0, 1], [1, 2, 3]], "feature 1 is in part 0 and in part 1"),
    ([[0, 1], [3]], r"features \[2\]"),
    ([[0, 1, 2], [3, 4]], "outside"),
    ([[0, 1, 2, 3], []], "part 1 is empty"),
])
def test_bad_partitions_fail_clearly(parts, match) -> None:
    with pytest.raises(ValueError, match=match):
        check_partition(parts, 4)


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match=r"output_emb_width \(8\) must equal code_dim \(16\)"):
        PART_AWARE_MODELS[TINY](output_emb_width=8)
    with pytest.raises(ValueError, match="pass part_indices"):
        PART_AWARE_MODELS[TINY](input_width=200)
    with pytest.raises(ValueError, match="num_parts is 5 but part_indices has 2 parts"):
        PART_AWARE_MODELS[TINY](input_width=4, num_parts=5, part_indices=[[0, 1], [2, 3]])
    with pytest.raises(ValueError, match="divisible by spatial_heads"):
        PART_AWARE_MODELS[TINY](per_part_dim=9)
    for bad in ({"spatial_layers": 0}, {"per_part_dim": 0}, {"spatial_heads": 0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} \\(0\\).* must be >= 1"):
            PART_AWARE_MODELS[TINY](**bad)
    model = PART_AWARE_MODELS[TINY]()
    with pytest.raises(ValueError, match=r"\(B, T, 263\)"):
        model(torch.zeros(1, 8, 262))
    with pytest.raises(ValueError, match="multiple of the downsampling factor 4"):
        model(torch.zeros(1, 10, 263))
    with pytest.raises(ValueError, match="no conditions but cond has keys"):
        model(torch.zeros(1, 8, 263), cond={"species": torch.zeros(1, dtype=torch.long)})


def test_other_widths_and_custom_partitions() -> None:
    torch.manual_seed(0)
    seed_width = PART_AWARE_MODELS[TINY](input_width=359, num_parts=30)
    assert seed_width(torch.randn(2, 8, 359)).recon.shape == (2, 8, 359)
    custom = PART_AWARE_MODELS[TINY](input_width=10, num_parts=3, part_indices=[[0, 9], [1, 2, 3], [4, 5, 6, 7, 8]])
    out = custom(torch.randn(2, 8, 10))
    assert out.recon.shape == (2, 8, 10) and out.indices_or_latents.shape == (2, 2, 3)
    assert custom.model_args["part_indices"] == [[0, 9], [1, 2, 3], [4, 5, 6, 7, 8]]
    # Every part reaches the latents: the gradient of each part's first feature is non-zero.
    motion = torch.randn(1, 8, 10, requires_grad=True)
    custom.eval()
    custom.encode_latent(motion).sum().backward()
    assert all(motion.grad[..., i].abs().sum() > 0 for i in (0, 1, 4))


def test_full_size_variant_on_meta() -> None:
    with torch.device("meta"):
        model = PART_AWARE_MODELS["PartAwareRVQ"]()
        latents = model.encode_latent(torch.zeros(2, 64, 359))
        recon = model.decode_latent(latents)
    assert (model.num_parts, model.per_part_dim, model.input_width) == (30, 128, 359)
    assert model.encoder.model[0].in_channels == 30 * 128
    assert latents.shape == (2, 16, 512) and recon.shape == (2, 64, 359)
    assert model.num_quantizers == 6 and model.codebook_size == 512 and model.kind == "rvq"


# ----------------------------------------------------------------------------------------------------------------------
# condition labels


def test_condition_labels_file_and_vocabularies(tmp_path) -> None:
    labels = {"b": {"species": "dog", "gender": "male"}, "a": {"species": "human"}, "c": {"species": "cat"}}
    path = write_conditions(str(tmp_path), labels)
    cond = read_conditions(str(tmp_path))
    assert path.endswith("conditions.json") and cond.names == ("gender", "species")
    assert cond.vocabularies["species"] == (UNKNOWN, "cat", "dog", "human")
    assert cond.vocab_sizes() == {"gender": 2, "species": 4}
    assert cond.ids("b").tolist() == [1, 2] and cond.ids("a").tolist() == [0, 3] and cond.ids("zzz").tolist() == [0, 0]
    assert cond.missing("a") == ["gender"]
    assert cond.encode({"species": "cat"}) == {"gender": 0, "species": 1}
    with pytest.raises(ValueError, match="no value 'fish'; known values: \\['cat', 'dog', 'human'\\]"):
        cond.encode({"species": "fish"})
    restored = ConditionLabels.from_dict(json.loads(json.dumps(cond.to_dict())))
    assert restored.vocabularies == cond.vocabularies and restored.names == cond.names
    only = read_conditions(path, names=["species"])
    assert only.names == ("species",) and only.ids("b").tolist() == [2]


def test_bad_condition_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(DatasetError, match="conditions.json: condition labels missing"):
        read_conditions(str(tmp_path))
    bad = tmp_path / "conditions.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="expected a JSON object mapping clip ids"):
        read_conditions(str(bad))
    bad.write_text(json.dumps({"c1": {"species": 3}}))
    with pytest.raises(DatasetError, match="clip 'c1', field 'species': expected a non-empty string label, got 3"):
        read_conditions(str(bad))
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="cannot read condition labels"):
        read_conditions(str(bad))
    with pytest.raises(DatasetError, match=r"no clip has a label for \['age'\]"):
        build_condition_labels({"a": {"species": "dog"}}, names=["age"])


def test_conditioned_windows_carry_their_clip_labels(synthetic_root) -> None:
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = load_mean_std(spec, synthetic_root)
    ids = read_split(synthetic_root, "val")
    labels = build_condition_labels(_labels_for(ids))
    windows = MotionWindowDataset(spec, "val", mean, std, window_size=16, data_root=synthetic_root, mode="all",
                                  stride=8, progress=False)
    data = ConditionedWindowDataset(windows, labels)
    assert len(data) == len(windows) > len(ids)
    for item in range(len(data)):
        row = window_clip_row(windows, item)
        clip = windows.index.clip(row, dim=spec.dim_pose)
        frames = data[item].motion.numpy() * std + mean
        # The window is a piece of the clip its labels come from.
        errors = [np.abs(clip[s:s + 16] - frames).max() for s in range(0, len(clip) - 15, 8)]
        assert min(errors) < 1e-4
        assert data[item].cond_ids.tolist() == labels.ids(windows.index.clip_id(row)).tolist()
    batch = data.collate([data[0], data[len(data) - 1]])
    assert batch.motion.shape == (2, 16, 263) and set(batch.cond) == {"gender", "species"}
    assert batch.cond["species"].shape == (2,) and batch.cond["species"].dtype == torch.long
    partial_labels = build_condition_labels(_labels_for(ids[:1]))
    with pytest.raises(DatasetError, match=f"clips lack labels: {ids[1]} \\(no gender, species\\)"):
        ConditionedWindowDataset(windows, partial_labels)
    assert len(ConditionedWindowDataset(windows, partial_labels, require_labels=False)) == len(windows)


def test_condition_dropout_trains_the_unknown_id(synthetic_root, tmp_path) -> None:
    """With a drop probability some items come with every id 0 (no conditions) and others with single ids 0 (a
    missing label), so the unknown embedding row gets gradients; without it, it never does."""
    spec, labels, data, _ = _conditioned_model_and_data(synthetic_root, tmp_path)
    with pytest.raises(ValueError, match=r"condition drop probability must be in \[0, 1\), got 1.0"):
        ConditionedWindowDataset(data.windows, labels, drop_prob=1.0)
    dropping = ConditionedWindowDataset(data.windows, labels, drop_prob=0.5)
    torch.manual_seed(0)
    kept = torch.stack([data[i % len(data)].cond_ids for i in range(400)])
    assert (kept > 0).all()  # every training clip is labelled, so nothing is unknown without dropout
    torch.manual_seed(0)
    ids = torch.stack([dropping[i % len(data)].cond_ids for i in range(400)])
    all_unknown = (ids == 0).all(dim=1).float().mean().item()
    one_unknown = ((ids == 0).sum(dim=1) == 1).float().mean().item()
    # All dropped: 0.5 + 0.5 * 0.25 = 0.625; exactly one of the two: 0.5 * 2 * 0.25 = 0.25.
    assert abs(all_unknown - 0.625) < 0.07 and abs(one_unknown - 0.25) < 0.07
    assert ((ids == 0) | (ids == kept)).all()  # a dropped id becomes 0, the others are the clip's

    loss_fn = make_conditioned_loss_fn(spec, w_pos=0.5, commit=0.02)
    for dataset, trained in ((data, False), (dropping, True)):
        torch.manual_seed(1)
        model = PART_AWARE_MODELS[TINY](conditions=labels.vocab_sizes(), dropout=0.0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        grads = torch.zeros(2)
        for step in range(4):  # FiLM starts at zero: the embeddings get gradients from the second step on
            batch = dataset.collate([dataset[8 * step + i] for i in range(8)])
            optimizer.zero_grad()
            loss_fn(model, batch)[0].backward()
            optimizer.step()
            grads += torch.stack([model.condition.embeddings[name].weight.grad[0].abs().sum()
                                  for name in ("species", "gender")])
        assert bool((grads > 0).all()) is trained


def test_a_code_dim_given_to_a_part_aware_run_sets_its_part_outputs_too(synthetic_root, tmp_path) -> None:
    """train_vq.py --code_dim on a part-aware model: the parts' encoders output that width (output_emb_width follows
    code_dim, which the model requires), rather than the preset's."""
    argv = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path),
            "--name", "wide", "--model", TINY, "--code_dim", "24", "--batch_size", "8", "--num_workers", "0",
            "--warm_up_iter", "1", "--log_every", "1", "--save_every", "1", "--eval_every", "1", "--val_batches", "1",
            "--window_size", "32", "--max_iters", "1"]
    train_vq.main(parse_with_config(get_train_vq_parser(), argv))
    saved = load_checkpoint(str(tmp_path / "synthetic" / "wide" / "model" / "latest.tar"))
    assert saved["model_args"]["code_dim"] == 24 and saved["model_args"]["output_emb_width"] == 24


def test_cond_drop_prob_reaches_training(synthetic_root, tmp_path) -> None:
    """train_vq.py --cond_drop_prob: the unknown rows of the condition embeddings move only when it is above 0."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    write_conditions(str(root), _labels_for(read_split(str(root), "train") + read_split(str(root), "val")))
    rows = {}
    for prob in ("0", "0.5"):
        argv = ["--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
                "--name", f"drop{prob}", "--model", TINY, "--conditions", "species", "gender", "--batch_size", "8",
                "--num_workers", "0", "--warm_up_iter", "1", "--log_every", "3", "--save_every", "3",
                "--eval_every", "3", "--val_batches", "1", "--window_size", "32", "--max_iters", "3",
                "--cond_drop_prob", prob]
        train_vq.main(parse_with_config(get_train_vq_parser(), argv))
        saved = load_checkpoint(str(tmp_path / "ck" / "synthetic" / f"drop{prob}" / "model" / "latest.tar"))
        assert saved["config"]["cond_drop_prob"] == float(prob)
        rows[prob] = {k: v for k, v in saved["model"].items() if k.startswith("condition.embeddings.")}
    # Same seed, same initial weights: row 0 (unknown) is untouched without dropout and trained with it, while the
    # labelled rows train in both runs.
    for key, weight in rows["0"].items():
        assert not torch.equal(weight[0], rows["0.5"][key][0]), key
        assert not torch.equal(weight[1:], rows["0.5"][key][1:]), key


# ----------------------------------------------------------------------------------------------------------------------
# training, FiLM, checkpoints


def _conditioned_model_and_data(synthetic_root, tmp_path):
    spec = get_dataset_spec("synthetic", synthetic_root)
    mean, std = load_mean_std(spec, synthetic_root)
    ids = read_split(synthetic_root, "train")
    write_conditions(str(tmp_path / "conditions.json"), _labels_for(ids))
    labels = read_conditions(str(tmp_path / "conditions.json"))
    windows = MotionWindowDataset(spec, "train", mean, std, window_size=32, data_root=synthetic_root,
                                  progress=False)
    data = ConditionedWindowDataset(windows, labels)
    torch.manual_seed(0)
    model = PART_AWARE_MODELS[TINY](conditions=labels.vocab_sizes(), text_dim=4, dropout=0.0)
    return spec, labels, data, model


def _outputs(model, motion, species: int, text: torch.Tensor) -> torch.Tensor:
    cond = {"species": torch.full((motion.shape[0],), species), "gender": torch.ones(motion.shape[0], dtype=torch.long),
            "text_emb": text}
    with torch.no_grad():
        return model(motion, cond=cond).recon


def test_conditional_training_film_and_checkpoint(synthetic_root, tmp_path, monkeypatch) -> None:
    spec, labels, data, model = _conditioned_model_and_data(synthetic_root, tmp_path)
    batch = data.collate([data[i] for i in range(8)])
    assert len(set(batch.cond["species"].tolist())) == 2 and len(set(batch.cond["gender"].tolist())) == 2
    probe = batch.motion[:4]
    text_a, text_b = torch.randn(4, 4), torch.randn(4, 4)

    # FiLM starts as an identity: an untrained model gives the same output under any condition.
    model.eval()
    assert torch.equal(_outputs(model, probe, 1, text_a), _outputs(model, probe, 2, text_b))

    loss_fn = make_conditioned_loss_fn(spec, w_pos=0.5, commit=0.02)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = batch._replace(cond={**batch.cond, "text_emb": torch.randn(8, 4)})
    model.train()
    losses = []
    for _ in range(25):
        loss, logs = loss_fn(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(logs) >= {"rec", "pos", "commit", "perplexity"}
    assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5])
    assert model.condition.embeddings["species"].weight.grad.abs().sum() > 0
    assert model.condition.text_proj.weight.grad.abs().sum() > 0

    # After training the conditions steer the encoder and the decoder.
    model.eval()
    base = _outputs(model, probe, 1, text_a)
    assert not torch.allclose(base, _outputs(model, probe, 2, text_a), atol=1e-6)
    assert not torch.allclose(base, _outputs(model, probe, 1, text_b), atol=1e-6)
    cond = {"species": torch.full((4,), 2), "gender": torch.ones(4, dtype=torch.long)}
    with torch.no_grad():
        indices = model.encode(probe, cond)
        assert indices.shape == (4, 8, 3)
        decoded_1 = model.decode(indices, {**cond, "species": torch.full((4,), 1)})
        decoded_2 = model.decode(indices, cond)
    assert not torch.allclose(decoded_1, decoded_2, atol=1e-6)

    # Save through utils.checkpoint, reload through load_tokenizer with the registry entry in place.
    path = str(tmp_path / "net_best_fid.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": TINY, "model_args": model.model_args,
                           "model": model.state_dict(), "conditions": labels.to_dict(),
                           "dataset": {"name": spec.name}})
    monkeypatch.setitem(tokenizers.TOKENIZERS, TINY, PART_AWARE_MODELS[TINY])
    tok = load_tokenizer(path, model_name=TINY)
    assert tok.kind == "rvq" and tok.num_quantizers == 3 and tok.model.model_args == model.model_args
    assert isinstance(tok.model, PartAwareRVQVAE)
    with torch.no_grad():
        assert torch.equal(tok.model(probe, cond=cond).recon, model(probe, cond=cond).recon)
        assert torch.equal(tok.model.encode(probe, cond), indices)
        # Without conditions (ids 0 = unknown, no text) the frozen wrapper still reconstructs, identically.
        assert torch.equal(tok(probe), model(probe).recon)
        assert torch.equal(tok.encode(probe), model.encode(probe))


@pytest.mark.parametrize("cond,match", [
    ({"species": torch.zeros(2)}, r"cond\['species'\]: expected \(2,\) integer ids"),
    # bool ids read as 0/1 would select the unknown and the first label; torch.nn.Embedding refused them obscurely
    ({"species": torch.tensor([True, False])}, r"expected \(2,\) integer ids, got \(2,\) torch.bool"),
    ({"species": torch.tensor([0, 7])}, r"ids must lie in \[0, 3\)"),
    ({"age": torch.zeros(2, dtype=torch.long)}, r"keys \['age'\] the model was not built with"),
    ({"text_emb": torch.zeros(2, 5)}, r"cond\['text_emb'\]: expected \(2, 4\)"),
])
def test_bad_conditions_fail_clearly(cond, match) -> None:
    model = PART_AWARE_MODELS[TINY](conditions={"species": 3}, text_dim=4)
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(2, 8, 263), cond=cond)
    with pytest.raises(ValueError, match="must be a Python identifier"):
        PART_AWARE_MODELS[TINY](conditions={"my.species": 3})


@pytest.mark.parametrize("name", ["type", "keys", "training", "float"])
def test_condition_names_that_clash_with_module_attributes_fail_clearly(name) -> None:
    """A field such as "type" is a fine label name, but torch keeps the embeddings in an nn.ModuleDict whose own
    attributes cannot be module names: a clear error naming the condition, not torch's KeyError."""
    with pytest.raises(ValueError, match=f"condition name '{name}'.*rename"):
        PART_AWARE_MODELS[TINY](conditions={name: 3})


def test_model_args_are_plain_and_rebuild() -> None:
    torch.manual_seed(1)
    model = PART_AWARE_MODELS[TINY](conditions={"species": 3})
    rebuilt = PartAwareRVQVAE(**json.loads(json.dumps(model.model_args)))
    rebuilt.load_state_dict(model.state_dict())
    assert not any(k.startswith("_gather") for k in model.state_dict())
    motion = torch.randn(2, 8, 263)
    model.eval()
    rebuilt.eval()
    assert torch.equal(model(motion).recon, rebuilt(motion).recon)


def test_preset_matches_the_registry_entry() -> None:
    from pathlib import Path

    from options.config import load_config
    from options.tokenizer_options import get_train_vq_parser

    preset = load_config(str(Path(__file__).resolve().parents[1] / "options" / "configs" / "part_aware_rvq.yaml"))
    assert preset["model"] == "PartAwareRVQ"
    with torch.device("meta"):
        model = PART_AWARE_MODELS["PartAwareRVQ"]()
    for key in ("per_part_dim", "num_quantizers", "nb_code", "code_dim", "quantize_dropout_prob"):
        assert preset[key] == model.model_args[key], key
    # Every key is a train_vq.py flag, apart from the part-aware flags the script has to add.
    flags = {action.dest for action in get_train_vq_parser()._actions}
    assert set(preset) - flags <= {"per_part_dim", "conditions", "spatial_layers"}


def test_evaluation_reconstructs_each_clip_under_its_labels(synthetic_root, tmp_path, monkeypatch, caplog) -> None:
    """evaluation_AE.py gives a conditional tokenizer every clip's labels from conditions.json, encoded with the
    vocabularies of its checkpoint; the text-motion protocol, whose batches carry no labels, is skipped."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    spec, labels, _, model = _conditioned_model_and_data(str(root), tmp_path)
    test_ids = read_split(str(root), "test")
    truth = _labels_for(test_ids)
    truth[test_ids[0]]["species"] = "alien"  # never seen in training: encoded as unknown, with a warning
    write_conditions(str(root), truth)
    mean, std = load_mean_std(spec, str(root))
    path = str(tmp_path / "net_best_loss.tar")
    save_checkpoint(path, {"stage": "tokenizer", "model_name": TINY, "model_args": model.model_args,
                           "model": model.state_dict(), "conditions": labels.to_dict(),
                           "dataset": dataset_record(spec, mean, std)})
    ev_mean, ev_std = eval_normalization(mean, std, spec)
    evaluator = build_evaluator("synthetic", ev_mean, ev_std, sizes="tiny", data_root=str(root),
                                word_vectors=LearnedVocab.from_split(str(root), "test", dim_word=8))
    save_evaluator(str(tmp_path / "ck" / "synthetic" / "text_mot_match" / "model" / "finest.tar"), evaluator)
    seen: list[dict[str, torch.Tensor]] = []
    real = evaluation_AE.reconstruct

    def spy(tokenizer, motion, cond=None):
        seen.append(cond)
        return real(tokenizer, motion, cond)

    monkeypatch.setattr(evaluation_AE, "reconstruct", spy)
    caplog.set_level(logging.WARNING, logger="utils.tokenizer_eval")
    argv = ["--ckpt", path, "--name", "cond", "--dataset_name", "synthetic", "--data_root", str(root),
            "--checkpoints_dir", str(tmp_path / "ck"), "--device", "cpu", "--batch_size", "8"]
    result = evaluation_AE.main(parse_with_config(get_evaluation_ae_parser(), argv))
    assert result["conditions"] == list(labels.names) and result["protocol"] is None
    assert "does not carry clip labels" in result["protocol_skipped"]
    assert result["reconstruction"]["mpjpe_mm"] > 0

    # The ids of every batch are those of its clips' labels, in the order the dataset yields them.
    data = Text2MotionDataset(spec, "test", mean, std, data_root=str(root))
    clips = [data.index.clip_id(r) for r in data.samples.rows]
    species = torch.cat([c["species"] for c in seen]).tolist()
    gender = torch.cat([c["gender"] for c in seen]).tolist()
    vocab = labels.vocabularies
    assert species == [vocab["species"].index(truth[c]["species"]) if truth[c]["species"] in vocab["species"] else 0
                       for c in clips]
    assert gender == [vocab["gender"].index(truth[c]["gender"]) for c in clips]
    assert species.count(0) == clips.count(test_ids[0]) >= 1 and min(gender) > 0
    assert any("species=alien (1 clips" in r.message for r in caplog.records)


def test_body_part_runs_of_part_aware_models_are_refused_naming_the_flag(synthetic_root, tmp_path) -> None:
    """The part-aware models split the whole feature vector into joint parts themselves; on one body part's columns
    that partition does not fit, which used to fail deep in the model with "part_indices: ... outside [0, N)"."""
    argv = ["--dataset_name", "synthetic", "--data_root", synthetic_root, "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "part", "--model", TINY, "--body_part", "upper", "--num_workers", "0", "--max_iters", "1"]
    with pytest.raises(ValueError, match=f"--body_part upper: .*{TINY}"):
        train_vq.main(parse_with_config(get_train_vq_parser(), argv))
    assert not (tmp_path / "ck").exists()


def test_data_a_part_aware_run_cannot_use_is_refused_before_the_run_folder_exists(synthetic_root, tmp_path) -> None:
    """A layout without joints to split, or --conditions without a conditions.json, is known from the spec and the
    data root alone: the refusal comes before the run folder, its log and the data index are written."""
    ckpt = tmp_path / "ck"
    base = ["--checkpoints_dir", str(ckpt), "--name", "part", "--model", TINY, "--num_workers", "0", "--max_iters", "1"]
    beatx_root = tmp_path / "BEAT2"
    (beatx_root / "new_joint_vecs").mkdir(parents=True)
    clip = np.random.default_rng(0).normal(size=(70, 330)).astype(np.float32)
    np.save(beatx_root / "new_joint_vecs" / "a.npy", clip)
    np.save(beatx_root / "Mean.npy", clip.mean(0))
    np.save(beatx_root / "Std.npy", clip.std(0))
    for split in ("train", "val", "test"):
        (beatx_root / f"{split}.txt").write_text("a\n")
    beatx = ["--dataset_name", "beatx", "--data_root", str(beatx_root)]
    with pytest.raises(ValueError, match="dataset 'beatx': a part-aware partition needs a HumanML3D-style layout"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*base, *beatx]))
    synthetic = ["--dataset_name", "synthetic", "--data_root", synthetic_root]
    with pytest.raises(DatasetError, match="conditions.json: condition labels missing"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*base, *synthetic, "--conditions", "species"]))
    assert not ckpt.exists()


def test_training_vocabularies_come_from_the_training_clips(synthetic_root, tmp_path, caplog) -> None:
    """train_vq.py --conditions gives a value that only val/test clips carry no id of its own (its embedding would
    never be trained): those clips get <unk>, with a warning. Resuming under relabelled values is refused, even when
    the vocabulary sizes (and so the model arguments) stay the same."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    held_out = read_split(str(root), "val") + read_split(str(root), "test")
    labels = {**_labels_for(read_split(str(root), "train")),
              **{clip: {"species": "alien", "gender": "female"} for clip in held_out}}
    write_conditions(str(root), labels)
    argv = ["--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "cond", "--model", TINY, "--conditions", "species", "gender", "--batch_size", "8",
            "--num_workers", "0", "--warm_up_iter", "1", "--log_every", "2", "--save_every", "2", "--eval_every", "2",
            "--val_batches", "1", "--window_size", "32"]
    caplog.set_level(logging.WARNING, logger="utils.tokenizer_stage")
    train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "2"]))
    latest = str(tmp_path / "ck" / "synthetic" / "cond" / "model" / "latest.tar")
    saved = load_checkpoint(latest)
    assert saved["conditions"]["vocabularies"] == {"species": [UNKNOWN, "human", "robot"],
                                                   "gender": [UNKNOWN, "female", "male"]}
    assert saved["model_args"]["conditions"] == {"species": 3, "gender": 3}
    assert any(f"species=alien ({len(held_out)} clips" in r.message for r in caplog.records)

    write_conditions(str(root), {clip: {**value, "species": value["species"].replace("human", "person")}
                                 for clip, value in labels.items()})
    with pytest.raises(CheckpointError, match="conditions differ"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "4", "--is_continue"]))


def test_a_run_with_vocabularies_from_every_clip_resumes_with_them(synthetic_root, tmp_path, monkeypatch,
                                                                     caplog) -> None:
    """Runs started when vocabularies came from every clip of conditions.json (val/test included) resume with the
    vocabularies they trained with, with a warning, rather than being refused."""
    import utils.conditions as conditions_module

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    held_out = read_split(str(root), "val") + read_split(str(root), "test")
    write_conditions(str(root), {**_labels_for(read_split(str(root), "train")),
                                 **{clip: {"species": "alien", "gender": "female"} for clip in held_out}})
    argv = ["--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "old", "--model", TINY, "--conditions", "species", "gender", "--batch_size", "8",
            "--num_workers", "0", "--warm_up_iter", "1", "--log_every", "2", "--save_every", "2", "--eval_every", "2",
            "--val_batches", "1", "--window_size", "32", "--cond_drop_prob", "0"]
    with monkeypatch.context() as patch:  # the earlier behaviour: every value of the file gets an id
        patch.setattr(conditions_module, "training_labels", lambda labels, train_ids: (labels, {}))
        train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "2"]))
    latest = str(tmp_path / "ck" / "synthetic" / "old" / "model" / "latest.tar")
    vocabulary = [UNKNOWN, "alien", "human", "robot"]
    assert load_checkpoint(latest)["conditions"]["vocabularies"]["species"] == vocabulary
    caplog.set_level(logging.WARNING, logger="utils.tokenizer_stage")
    train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "4", "--is_continue"]))
    resumed = load_checkpoint(latest)
    assert resumed["step"] == 4 and resumed["conditions"]["vocabularies"]["species"] == vocabulary
    assert any("it keeps its vocabularies" in r.message and "species: ['alien']" in r.message
               for r in caplog.records)


def test_generator_stages_warn_about_a_conditional_tokenizer(synthetic_root, tmp_path, monkeypatch, caplog) -> None:
    """A generator stage passes no clip labels: loading a conditional tokenizer there says that every motion is
    encoded under <unk>, as a warning when its training never dropped the conditions to <unk>; an unconditional
    part-aware tokenizer loads silently."""
    from utils.generator_stage import load_stage_tokenizer

    spec, labels, _, conditioned = _conditioned_model_and_data(synthetic_root, tmp_path)
    mean, std = load_mean_std(spec, synthetic_root)
    monkeypatch.setitem(tokenizers.TOKENIZERS, TINY, PART_AWARE_MODELS[TINY])
    paths = {}
    for name, model, record, config in (("cond", conditioned, labels.to_dict(), {"cond_drop_prob": 0.0}),
                                        ("dropped", conditioned, labels.to_dict(), {"cond_drop_prob": 0.1}),
                                        ("plain", PART_AWARE_MODELS[TINY](), None, {"cond_drop_prob": 0.1})):
        paths[name] = str(tmp_path / f"{name}.tar")
        save_checkpoint(paths[name], {"stage": "tokenizer", "model_name": TINY, "model_args": model.model_args,
                                      "model": model.state_dict(), "conditions": record,
                                      "dataset": dataset_record(spec, mean, std), "config": config})
    caplog.set_level(logging.INFO, logger="utils.generator_stage")
    assert load_stage_tokenizer(paths["plain"], spec, TINY, "--vq_model").cond_drop_prob == 0.0
    assert not caplog.records
    assert load_stage_tokenizer(paths["dropped"], spec, TINY, "--vq_model").cond_drop_prob == 0.1
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "encoded and decoded as <unk> (trained with --cond_drop_prob 0.1)" in caplog.records[0].message
    caplog.clear()
    assert load_stage_tokenizer(paths["cond"], spec, TINY, "--vq_model").cond_drop_prob == 0.0
    assert any(r.levelno == logging.WARNING and "conditioned on ['gender', 'species', 'text_emb']" in r.message
               and "which its training never saw (--cond_drop_prob 0)" in r.message for r in caplog.records)


def test_resume_keeps_the_condition_dropout_it_trained_with(synthetic_root, tmp_path) -> None:
    """A conditional run saved before --cond_drop_prob existed trained without dropout: resuming it under the new
    default (0.1) would start dropping conditions mid-run, so it is refused, naming both values."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    write_conditions(str(root), _labels_for(read_split(str(root), "train") + read_split(str(root), "val")))
    argv = ["--dataset_name", "synthetic", "--data_root", str(root), "--checkpoints_dir", str(tmp_path / "ck"),
            "--name", "old", "--model", TINY, "--conditions", "species", "gender", "--batch_size", "8",
            "--num_workers", "0", "--warm_up_iter", "1", "--log_every", "2", "--save_every", "2",
            "--eval_every", "2", "--val_batches", "1", "--window_size", "32"]
    train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "2", "--cond_drop_prob", "0"]))
    latest = str(tmp_path / "ck" / "synthetic" / "old" / "model" / "latest.tar")
    state = load_checkpoint(latest)
    state["config"].pop("cond_drop_prob")
    save_checkpoint(latest, state)
    with pytest.raises(CheckpointError, match=r"--cond_drop_prob 0\.0 \(not recorded: the run predates the option\) "
                                              r"but 0\.1 now.*add --cond_drop_prob 0\.0"):
        train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "4", "--is_continue"]))
    train_vq.main(parse_with_config(get_train_vq_parser(), [*argv, "--max_iters", "4", "--is_continue",
                                                            "--cond_drop_prob", "0"]))
    assert load_checkpoint(latest)["step"] == 4
