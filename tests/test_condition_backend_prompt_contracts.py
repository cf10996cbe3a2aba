"""Condition labels (utils/conditions.py), generator sampling settings (utils/generation_backends.py) and prompt files
(utils/prompts.py): ids in the order and vocabularies a model was trained with, refused records naming their source,
the family defaults a checkpoint gets, and prompt lines read or refused naming the file and line (a .csv double quote
left open included)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_generation_backends import _mardm

from models.mardm import MARDM_MODELS
from utils.checkpoint import CheckpointError
from utils.conditions import (
    UNKNOWN,
    ConditionedWindowDataset,
    ConditionLabels,
    build_condition_labels,
    read_conditions,
    with_vocabularies,
    write_conditions,
)
from utils.generation_backends import MARDMBackend
from utils.normalization import DatasetError
from utils.prompts import parse_prompt_line, read_prompt_file

# ----------------------------------------------------------------------------------------------------------------------
# condition labels and vocabularies


def test_encode_refuses_a_condition_name_the_labels_do_not_have():
    labels = build_condition_labels({"a": {"species": "dog"}}, source="labels.json")
    with pytest.raises(ValueError, match=r"labels.json: unknown condition names \['age'\]; expected a subset of "
                                         r"\['species'\]"):
        labels.encode({"species": "dog", "age": "old"})


def test_vocabularies_saved_and_reloaded_keep_unknown_at_id_zero():
    """Values that sort before '<unk>' (digits) stay after it, so a reloaded record maps labels to the trained ids."""
    labels = build_condition_labels({"a": {"age": "20s"}, "b": {"age": "60s"}, "c": {}})
    assert labels.vocabularies["age"] == (UNKNOWN, "20s", "60s")
    restored = ConditionLabels.from_dict(json.loads(json.dumps(labels.to_dict())), source="net.tar")
    assert restored.vocabularies == labels.vocabularies
    assert restored.encode({"age": "20s"}) == {"age": 1} and restored.encode({}) == {"age": 0}


@pytest.mark.parametrize("record, match", [
    ({"names": ["species"], "vocabularies": {"species": ["dog", UNKNOWN]}}, r"\['species'\] have no vocabulary"),
    ({"names": ["species"], "vocabularies": {"gender": [UNKNOWN, "male"]}}, r"\['species'\] have no vocabulary"),
    ({"names": ["species"], "vocabularies": ["species"]}, "condition record needs 'names' and 'vocabularies'"),
    ({"names": ["species"]}, "condition record needs 'names' and 'vocabularies'"),
])
def test_a_bad_condition_record_is_refused_naming_its_source(record, match):
    with pytest.raises(ValueError, match=f"^run/net.tar: .*{match}"):
        ConditionLabels.from_dict(record, source="run/net.tar")


def test_labels_reloaded_from_a_checkpoint_name_it_in_their_errors():
    record = {"names": ["species"], "vocabularies": {"species": [UNKNOWN, "dog"]}}
    labels = ConditionLabels.from_dict(record, source="run/net.tar")
    with pytest.raises(ValueError, match=r"^run/net.tar: condition 'species' has no value 'fish'; known values: "
                                         r"\['dog'\]"):
        labels.encode({"species": "fish"})


def test_an_empty_label_is_refused_naming_the_clip_and_field(tmp_path):
    path = tmp_path / "conditions.json"
    path.write_text(json.dumps({"c1": {"species": "dog"}, "c2": {"species": ""}}))
    with pytest.raises(DatasetError, match=r"conditions.json: clip 'c2', field 'species': expected a non-empty string "
                                           r"label, got ''"):
        read_conditions(str(path))


def test_a_condition_name_given_twice_is_refused():
    with pytest.raises(DatasetError, match=r"labels.json: condition names \['species'\] given more than once"):
        build_condition_labels({"a": {"species": "dog"}}, names=["species", "species"], source="labels.json")


def test_labels_under_a_models_vocabularies_ignore_conditions_it_was_not_trained_with():
    labels = build_condition_labels({"a": {"species": "dog", "gender": "male"}, "b": {"species": "fish"}})
    trained = ConditionLabels.from_dict({"names": ["species"], "vocabularies": {"species": [UNKNOWN, "dog"]}})
    kept, dropped = with_vocabularies(labels, trained)
    assert kept.names == ("species",) and dropped == {"species=fish": ["b"]}
    assert kept.ids("a").tolist() == [1] and kept.ids("b").tolist() == [0]


def test_labels_that_could_not_be_read_back_are_not_written(tmp_path):
    with pytest.raises(DatasetError, match="clip 'c1', field 'species': expected a non-empty string label, got 3"):
        write_conditions(str(tmp_path), {"c1": {"species": 3}})
    assert not (tmp_path / "conditions.json").exists()


class _OneWindowPerClip:
    """A ``MotionWindowDataset`` stand-in: window i is a zero motion (4, 3) cut from clip ``clip_ids[i]``."""

    mode = "random"

    def __init__(self, clip_ids: list[str]) -> None:
        self.clips = np.arange(len(clip_ids))
        self.index = SimpleNamespace(clip_id=clip_ids.__getitem__, split="train")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int) -> torch.Tensor:
        return torch.zeros(4, 3)


def test_condition_dropout_drops_each_label_with_the_given_probability():
    """With probability p every id of an item is 0, otherwise each id is 0 on its own with probability p."""
    labels = build_condition_labels({"c1": {"species": "dog", "gender": "male"}})
    data = ConditionedWindowDataset(_OneWindowPerClip(["c1"]), labels, drop_prob=0.2)
    torch.manual_seed(0)
    ids = torch.stack([data[0].cond_ids for _ in range(2000)])
    all_unknown = (ids == 0).all(dim=1).float().mean().item()
    one_unknown = ((ids == 0).sum(dim=1) == 1).float().mean().item()
    # All: 0.2 + 0.8 * 0.2 ** 2 = 0.232; exactly one of the two: 0.8 * 2 * 0.2 * 0.8 = 0.256.
    assert abs(all_unknown - 0.232) < 0.04 and abs(one_unknown - 0.256) < 0.04
    assert ((ids == 0) | (ids == 1)).all()


# ----------------------------------------------------------------------------------------------------------------------
# prompt lines and files


def test_a_hash_before_words_that_are_no_length_stays_text():
    assert parse_prompt_line("a person takes#3 steps forward\n") == ("a person takes#3 steps forward", None)
    assert parse_prompt_line("a person waves#2 hands") == ("a person waves#2 hands", None)


def test_a_zero_length_in_a_structured_file_is_refused_naming_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "a person walks", "length": 40}\n{"text": "a person runs", "length": 0}\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.jsonl, line 2: length 0: expected a positive whole number of frames"):
        read_prompt_file(str(path))
    table = tmp_path / "p.csv"
    table.write_text("text,length\na person walks,40\na person runs,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.csv, line 3: length 0: expected a positive whole number of frames"):
        read_prompt_file(str(table))


def test_a_csv_row_with_text_only_past_the_header_columns_is_refused(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text,length\na person walks,40\n,,a person runs\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.csv, line 3: 3 fields under a header of 2 columns"):
        read_prompt_file(str(path))


# ----------------------------------------------------------------------------------------------------------------------
# generator families: defaults and checkpoints


def test_mardm_samples_with_its_published_defaults_per_dataset():
    backend, _ = _mardm()
    assert (backend.settings().time_steps, backend.settings().cfg) == (18, 4.5)
    assert backend.settings(dataset="t2m").cfg == 4.5
    assert backend.settings(dataset="kit").cfg == 2.5 and backend.settings(dataset="kit_64").cfg == 2.5
    assert MARDMBackend.guidance(None) == 4.5
    assert backend.settings().options == {"head_steps": None, "head_solver": None}


def test_given_zero_guidance_is_kept_and_zero_steps_are_refused():
    backend, _ = _mardm()
    assert backend.settings(cfg=0.0, dataset="kit").cfg == 0.0
    with pytest.raises(ValueError, match="time_steps must be a whole number >= 1, got 0"):
        backend.settings(time_steps=0)


def test_mardm_reports_the_head_sampler_of_its_settings():
    backend, _ = _mardm()
    backend.model.head = SimpleNamespace(check_sampler=lambda steps, solver: None,
                                         sampler=lambda steps, solver: {"steps": steps, "solver": solver})
    settings = backend.settings(head_steps=5, head_solver="euler")
    assert backend.sampler(settings) == {"head": {"steps": 5, "solver": "euler"}}


def _checkpoint(name: str = "MARDM-SiT-Tiny", kind: str = "ae", target_dim: int = 8, target: str = "latent"):
    """A generator record and weights of ``name`` on a ``kind`` tokenizer of 8 latent channels."""
    args = {"ae_dim": 8, "target_dim": target_dim, "text_dim": 12}
    model = MARDM_MODELS[name](**args)
    state = {"model_name": name, "model_args": args, "target": target}
    tokenizer = SimpleNamespace(kind=kind, latent_dim=8, model=None, source="tok.tar")
    return state, model.state_dict(), tokenizer


def test_mardm_rebuilds_from_its_checkpoint_for_sampling():
    state, weights, tokenizer = _checkpoint()
    backend = MARDMBackend.from_checkpoint(state, weights, "gen.tar", tokenizer, None, torch.device("cpu"))
    assert backend.text_dim == 12 and backend.target == "latent"
    assert not backend.model.training and not any(p.requires_grad for p in backend.model.parameters())


@pytest.mark.parametrize("name, kind, target_dim, target, match", [
    ("MARDM-SiT-Tiny", "ae", 8, "fsq_coords", r"gen.tar: target is 'fsq_coords' but a 'ae' tokenizer gives 'latent' "
                                              r"targets"),
    ("VQ-MARDM-SiT-Tiny", "vq", 6, "vq_codes", r"gen.tar: model_args \(ae_dim, target_dim\) = \(8, 6\) but the "
                                               r"tokenizer tok.tar gives \(8, 8\)"),
])
def test_a_generator_that_does_not_fit_its_tokenizer_is_refused(name, kind, target_dim, target, match):
    state, weights, tokenizer = _checkpoint(name, kind, target_dim, target)
    with pytest.raises(CheckpointError, match=match):
        MARDMBackend.from_checkpoint(state, weights, "gen.tar", tokenizer, None, torch.device("cpu"))


@pytest.mark.parametrize("content, match", [
    ('text,length\n"a person walks, then runs,40\na person jumps,50\na person sits,60\n',
     r"p.csv, line 2: a text over lines 2-4"),
    ('text,length\na person walks,40\n"a person jumps\n, then sits",50\na person runs,60\n',
     r"p.csv, line 3: a text over lines 3-4"),
])
def test_a_csv_double_quote_left_open_is_refused_naming_its_line(tmp_path, content, match):
    path = tmp_path / "p.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match + r".*double quote"):
        read_prompt_file(str(path))


def test_csv_rows_after_blank_lines_are_read_with_their_own_line_numbers(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('text,length\n\n"a person walks, then runs",40\n\na person sits,\n', encoding="utf-8")
    assert read_prompt_file(str(path)) == [(3, "a person walks, then runs", 40), (5, "a person sits", None)]
