"""Prompt files and lines (utils/prompts.py): behaviour the other tests leave open (lengths in words, signs,
booleans, floats and NA, comments, .csv and .jsonl fields, the format by extension, slugs, --text_prompt)."""

import re

import pytest

from utils.prompts import Prompt, parse_prompt_line, read_prompt_file, read_prompts, slugify


def _rows(path):
    return [(text, frames) for _, text, frames in read_prompt_file(str(path))]


@pytest.mark.parametrize("tail", ["6S", "3 Seconds", "80 FRAMES"])
def test_a_length_in_seconds_or_frames_words_is_refused_whatever_its_case(tail):
    with pytest.raises(ValueError, match=f"length #{tail}: expected a positive whole number of frames"):
        parse_prompt_line(f"a person jumps#{tail}")


@pytest.mark.parametrize("name, content, rows", [
    ("p.txt", "   # an indented comment\n\ta person walks#40\n", [("a person walks", 40)]),  # comment skipped
    ("p.csv", "text,length\na person walks,   \na person runs,\n",                        # spaces: no length
     [("a person walks", None), ("a person runs", None)]),
    ("p.csv", " text , length \na person walks,40\n", [("a person walks", 40)]),          # a spaced header
])
def test_comments_blank_lengths_and_spaced_headers_are_read(tmp_path, name, content, rows):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert _rows(path) == rows


def test_a_length_with_a_plus_sign_is_read_as_frames(tmp_path):
    table = tmp_path / "p.csv"
    table.write_text("text,length\na person walks,+40\n", encoding="utf-8")
    assert _rows(table) == [("a person walks", 40)]
    lines = tmp_path / "p.txt"
    lines.write_text("a person walks#+40\n", encoding="utf-8")
    assert _rows(lines) == [("a person walks", 40)]


@pytest.mark.parametrize("value", ["true", "false"])
def test_a_boolean_length_is_refused(tmp_path, value):
    path = tmp_path / "p.jsonl"
    path.write_text(f'{{"text": "a person walks", "length": {value}}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.jsonl, line 1: length (True|False): expected a positive whole number"):
        read_prompt_file(str(path))


def test_a_whole_float_length_is_read_as_frames(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "a person walks", "length": 40.0}\n{"text": "a person runs", "length": 2.5}\n',
                    encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.jsonl, line 2: length 2.5"):
        read_prompt_file(str(path))
    path.write_text('{"text": "a person walks", "length": 40.0}\n', encoding="utf-8")
    rows = _rows(path)
    assert rows == [("a person walks", 40)] and type(rows[0][1]) is int


@pytest.mark.parametrize("line, match", [
    ('{"text": 5}', "text .*: expected a non-empty string"),
    ('{"text": null}', "text .*: expected a non-empty string"),
    ('{"text": ["a person walks"]}', "text .*: expected a non-empty string"),
    ('["text"]', 'expected a JSON object with a "text" field'),
    ('"text"', 'expected a JSON object with a "text" field'),
    ("40", 'expected a JSON object with a "text" field'),
])
def test_a_jsonl_line_without_a_text_string_fails_naming_the_line(tmp_path, line, match):
    path = tmp_path / "p.jsonl"
    path.write_text('{"text": "a person walks"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.jsonl, line 2: " + match):
        read_prompt_file(str(path))


@pytest.mark.parametrize("jsonl_name,csv_name,walks,runs", [
    ("p.jsonl", "p.csv", '"  a person walks \\t"', '"  a person runs  "'),  # texts are stripped
    ("P.JSONL", "P.Csv", '"a person walks"', "a person runs"),  # the format is read from the extension, any case
])
def test_structured_prompt_files_are_read_by_extension_with_stripped_texts(tmp_path, jsonl_name, csv_name, walks,
                                                                             runs):
    jsonl = tmp_path / jsonl_name
    jsonl.write_text(f'{{"text": {walks}, "length": 40}}\n', encoding="utf-8")
    table = tmp_path / csv_name
    table.write_text(f"text,length\n{runs},12\n", encoding="utf-8")
    assert _rows(jsonl) == [("a person walks", 40)]
    assert _rows(table) == [("a person runs", 12)]


def test_a_json_prompt_file_is_refused_whatever_its_case(tmp_path):
    single = tmp_path / "P.JSON"
    single.write_text('[{"text": "a"}]', encoding="utf-8")
    with pytest.raises(ValueError, match=r"a .json prompt file is not read"):
        read_prompt_file(str(single))


def test_slugs_neither_start_nor_end_with_a_separator():
    assert slugify("- a person walks -") == "a_person_walks"
    assert slugify("--walk--") == "walk"
    # cut at max_length right after a separator: the separator goes too
    assert slugify("abcd efgh", max_length=5) == "abcd"
    assert slugify("abc-defg", max_length=4) == "abc"
    assert slugify("???") == "prompt"


def test_a_text_prompt_is_stripped_and_takes_the_motion_length():
    assert read_prompts("  a person walks \n", None, 60) == [Prompt("a person walks", 60, "--motion_length")]
    assert read_prompts("a person walks", None, None) == [Prompt("a person walks", None, "length estimator")]


@pytest.mark.parametrize("suffix", ["#na", "#Na", "# NA "])
def test_na_in_any_case_leaves_the_length_to_the_estimator(suffix):
    assert parse_prompt_line(f"a person walks{suffix}") == ("a person walks", None)


def test_a_caption_line_without_a_caption_never_gives_an_empty_prompt():
    """A HumanML3D-like line with nothing before its tokens is not a caption line: its text is kept whole."""
    assert parse_prompt_line("#he/PRON wave/VERB#nan#nan") == ("#he/PRON wave/VERB#nan#nan", None)
    assert parse_prompt_line("he waves#he/PRON wave/VERB#nan#nan") == ("he waves", None)


@pytest.mark.parametrize("motion_length", [-1, -8])
def test_any_negative_motion_length_is_refused(motion_length):
    with pytest.raises(ValueError, match=rf"--motion_length {motion_length}: expected frames > 0"):
        read_prompts("a person walks", None, motion_length)


@pytest.mark.parametrize("tail", ["+-5", "--5", "-+40"])
def test_a_length_with_two_signs_is_refused_with_the_usual_message(tail):
    with pytest.raises(ValueError, match=rf"length #{re.escape(tail)}: expected a positive number of frames, or #NA"):
        parse_prompt_line(f"a person walks#{tail}")
