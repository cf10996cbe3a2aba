"""sample.py --text_path files that hold no prompt, are a folder or would lose what they hold (a caption cut at an
unquoted comma): one clear error naming the file, before any model loads. (A file that is not UTF-8 is tested with
the other prompt-file errors in test_sample.py.)"""

from __future__ import annotations

import pytest

from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.prompts import read_prompt_file, read_prompts


def _read_prompts(*argv: str):
    """The prompts sample.py reads from its command line ``argv``."""
    cfg = parse_with_config(get_sample_parser(), ["--name", "x", "--dataset_name", "synthetic", *argv])
    return read_prompts(cfg.text_prompt, cfg.text_path, cfg.motion_length)


@pytest.mark.parametrize("name,content", [("prompts.txt", "# only a comment\n\n"), ("prompts.csv", "text,length\n"),
                                          ("prompts.jsonl", "\n")])
def test_a_prompt_file_without_prompts_is_named(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"--text_path {path}: no prompt in the file"):
        _read_prompts("--text_path", str(path))


def test_a_folder_as_prompt_file_says_it_is_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"--text_path: {tmp_path} is a folder; expected a prompt file"):
        _read_prompts("--text_path", str(tmp_path))


def test_a_negative_motion_length_fails_before_the_model_loads():
    with pytest.raises(ValueError, match="--motion_length -8: expected frames > 0, or 0 / unset for the length est"):
        _read_prompts("--text_prompt", "a person walks", "--motion_length", "-8")


@pytest.mark.parametrize("content,match", [
    # An unquoted comma in a caption splits it: the rest would be dropped (a text-only file) or read as its length.
    ("text\na person walks forward, then turns around\n", r"p.csv, line 2: 2 fields under a header of 1 column"),
    ("text,length\na person walks, then runs,40\n", r"p.csv, line 2: 3 fields under a header of 2 columns"),
])
def test_a_csv_row_with_more_fields_than_its_header_fails_instead_of_losing_text(tmp_path, content, match):
    path = tmp_path / "p.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match + r".*in double quotes"):
        read_prompt_file(str(path))


@pytest.mark.parametrize("name,content,match", [
    # A misspelt length (or a per-prompt seed, which is not read) would leave the prompt to --motion_length.
    ("p.csv", "text,Length\na person walks,40\n", r"p.csv, line 1: unknown column\(s\) \['Length'\]"),
    ("p.csv", "text,length,seed\na person walks,40,3\n", r"p.csv, line 1: unknown column\(s\) \['seed'\]"),
    ("p.jsonl", '{"text": "a person walks", "frames": 40}\n', r"p.jsonl, line 1: unknown key\(s\) \['frames'\]"),
    ("p.jsonl", '{"text": "a", "length": 8}\n{"text": "b", "seed": 3}\n',
     r"p.jsonl, line 2: unknown key\(s\) \['seed'\]"),
])
def test_misspelt_length_or_seed_fields_of_a_structured_prompt_file_fail(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match + r".*'text' and optionally 'length'"):
        read_prompt_file(str(path))


@pytest.mark.parametrize("name,content", [
    ("p.csv", "id,text,length\n000021,a person walks,40\n000022,a person runs,\n"),
    ("p.jsonl", '{"id": "000021", "text": "a person walks", "length": 40}\n'
                '{"id": "000022", "text": "a person runs"}\n'),
])
def test_other_fields_of_a_structured_prompt_file_are_ignored_with_one_warning(tmp_path, caplog, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with caplog.at_level("WARNING", logger="utils.prompts"):
        prompts = read_prompt_file(str(path))
    assert [(text, frames) for _, text, frames in prompts] == [("a person walks", 40), ("a person runs", None)]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "'id' not read" in warnings[0] and name in warnings[0]
