"""sample.py's prompts (utils/prompts.py): the text, .jsonl and .csv formats, HumanML3D caption lines, safe file
names, and files that hold no prompt, are a folder, are not UTF-8 or would lose what they hold (a caption cut at an
unquoted comma): one clear error naming the file and line, before any model loads."""

from __future__ import annotations

import pytest

from options.config import parse_with_config
from options.eval_generator_options import get_sample_parser
from utils.prompts import Prompt, parse_prompt_line, read_prompt_file, read_prompts, slugify


def _prompts_of(cfg) -> list[Prompt]:
    """The prompts sample.py reads from its parsed flags ``cfg``."""
    return read_prompts(cfg.text_prompt, cfg.text_path, cfg.motion_length)


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


@pytest.mark.parametrize("name,content", [("prompts.txt", "# only a comment\n\n"), ("prompts.csv", "text,length\n")])
def test_a_prompt_file_without_prompts_is_named_beside_a_text_prompt_too(tmp_path, name, content):
    """With --text_prompt also given, an empty --text_path was skipped without a word."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"--text_path {path}: no prompt in the file"):
        _read_prompts("--text_prompt", "a person walks", "--text_path", str(path))


@pytest.mark.parametrize("name,first,second", [
    ("all.txt", b"a person walks#40\n", b"# my second list\na person jumps#40\n"),
    ("all.jsonl", b'{"text": "a person walks", "length": 40}\n', b'{"text": "a person jumps", "length": 40}\n'),
])
def test_files_joined_with_their_byte_order_marks_read_as_each_alone(tmp_path, name, first, second):
    """``cat a.txt b.txt`` where b.txt was saved with a byte-order mark: the mark sat at the start of a middle line,
    which turned its comment into a prompt (and broke a .jsonl line)."""
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + first + b"\xef\xbb\xbf" + second)
    assert [(p.text, p.frames) for p in _read_prompts("--text_path", str(path))] == [("a person walks", 40),
                                                                                   ("a person jumps", 40)]


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


def test_slugs_are_safe_on_every_os():
    assert slugify("A person: walks / runs\\back?") == "a_person_walks_runs_back"
    assert slugify("Café — naïve «jump»") == "cafe_naive_jump"
    assert slugify("人が歩く") == "prompt"
    assert slugify("x" * 100) == "x" * 60
    assert parse_prompt_line("a person walks#40\n") == ("a person walks", 40)
    assert parse_prompt_line("a person walks #NA") == ("a person walks", None)
    assert parse_prompt_line("move #2 then #left") == ("move #2 then #left", None)
    for tail in ("0", "-5"):
        with pytest.raises(ValueError, match=f"length #{tail}: expected a positive number of frames"):
            parse_prompt_line(f"a person jumps#{tail}")
    # A length in seconds or with a fraction is not a prompt's text (as in the .csv and .jsonl files, an error).
    for tail in ("1.5", "120.0", "6s", "3 seconds", "80 frames"):
        with pytest.raises(ValueError, match=f"length #{tail}: expected a positive whole number of frames"):
            parse_prompt_line(f"a person jumps#{tail}")
    assert parse_prompt_line("a person jumps#\u00b2") == ("a person jumps#\u00b2", None)  # a digit, not decimal


def test_bad_prompts_fail_naming_the_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\na person walks#40\n\na person jumps#-5\n")
    args = parse_with_config(get_sample_parser(), ["--name", "x", "--dataset_name", "synthetic",
                                                   "--text_path", str(prompts)])
    with pytest.raises(ValueError, match=f"{prompts}, line 4: length #-5"):
        _prompts_of(args)
    args = parse_with_config(get_sample_parser(), ["--name", "x", "--dataset_name", "synthetic", "--text_prompt", " "])
    with pytest.raises(ValueError, match="--text_prompt is empty"):
        _prompts_of(args)


def test_prompt_files_as_text_jsonl_and_csv(tmp_path):
    """The three prompt file formats give the same prompts; a HumanML3D texts file gives its captions."""
    expected = [("a person walks", 40), ("a person, waves", None), ('someone says "hi"', 12)]
    text = tmp_path / "prompts.txt"
    text.write_text('# comment\na person walks#40\na person, waves#NA\nsomeone says "hi"#12\n', encoding="utf-8")
    jsonl = tmp_path / "prompts.jsonl"
    jsonl.write_text('{"text": "a person walks", "length": 40}\n\n{"text": "a person, waves", "length": null}\n'
                     '{"text": "someone says \\"hi\\"", "length": 12.0}\n', encoding="utf-8")
    table = tmp_path / "prompts.csv"
    table.write_text('text,length\na person walks,40\n"a person, waves",\n"someone says ""hi""", 12\n,\n',
                     encoding="utf-8-sig")
    for path in (text, jsonl, table):
        assert [(t, f) for _, t, f in read_prompt_file(str(path))] == expected, path.name
    captions = tmp_path / "000123.txt"
    captions.write_text("a man kicks with his left leg.#a/DET man/NOUN kick/VERB#0.0#0.0\n"
                        "someone steps forward#someone/PRON step/VERB forward/ADV#1.5#4.0\n", encoding="utf-8")
    assert [(t, f) for _, t, f in read_prompt_file(str(captions))] == [("a man kicks with his left leg.", None),
                                                                          ("someone steps forward", None)]
    args = parse_with_config(get_sample_parser(), ["--name", "x", "--dataset_name", "synthetic", "--text_path",
                                                   str(jsonl), "--motion_length", "60"])
    assert _prompts_of(args)[1] == Prompt("a person, waves", 60, "--motion_length")


def test_caption_lines_with_nan_tags_or_no_tokens_give_their_caption(tmp_path):
    """Caption lines that the dataset's texts reader accepts (NaN tags for the whole clip, no tokens) are captions
    in a prompt file too, not prompts that carry their tokens and tags."""
    captions = tmp_path / "000124.txt"
    captions.write_text("he waves#he/PRON wave/VERB#nan#nan\nno tokens here##0.0#0.0\n"
                        "a man turns#a/DET man/NOUN turn/VERB#0.0#NaN\n", encoding="utf-8")
    assert [(t, f) for _, t, f in read_prompt_file(str(captions))] == [("he waves", None), ("no tokens here", None),
                                                                          ("a man turns", None)]


def test_a_caption_line_whose_caption_holds_a_hash_gives_its_caption(tmp_path):
    """The texts reader splits a caption line from the right, so a '#' inside the caption stays in the caption."""
    captions = tmp_path / "000125.txt"
    captions.write_text("he presses button #2#he/PRON press/VERB button/NOUN#0.0#0.0\n", encoding="utf-8")
    assert [(t, f) for _, t, f in read_prompt_file(str(captions))] == [("he presses button #2", None)]


@pytest.mark.parametrize("name,content,match", [
    ("p.jsonl", '{"text": "a"}\n{"prompt": "b"}\n', r"p.jsonl, line 2: expected a JSON object with a \"text\""),
    ("p.jsonl", '{"text": "a", "length": -4}\n', r"p.jsonl, line 1: length -4: expected a positive whole"),
    ("p.jsonl", '{"text": "a", "length": "many"}\n', r"p.jsonl, line 1: length 'many'"),
    ("p.jsonl", '{"text": ""}\n', r"p.jsonl, line 1: text '': expected a non-empty string"),
    ("p.jsonl", '{"text": "a"\n', r"p.jsonl, line 1: Expecting"),
    ("p.csv", "prompt,length\na,4\n", r"p.csv, line 1: expected a header row with a 'text' column"),
    ("p.csv", "text,length\na,4\nb,4.5\n", r"p.csv, line 3: length '4.5'"),
    ("p.csv", "text,length\na,\u00b2\n", r"p.csv, line 2: length '\u00b2': expected a positive whole"),
    ("p.json", '[{"text": "a"}]', r"p.json: a .json prompt file is not read; write one JSON object per line"),
])
def test_bad_structured_prompt_files_fail_naming_the_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        read_prompt_file(str(path))


@pytest.mark.parametrize("name,lines", [
    ("p.txt", ["a person walks#40", "a person waves", "caf\u00e9 dance#NA"]),
    ("p.jsonl", ['{"text": "a person walks"}', '{"text": "a person waves"}', '{"text": "caf\u00e9 dance"}']),
    ("p.csv", ["text,length", "a person walks,40", "caf\u00e9 dance,"]),
])
def test_a_prompt_file_that_is_not_utf8_fails_naming_file_and_line(tmp_path, name, lines):
    """A file saved in a legacy encoding (cp1252, as older Windows editors write) names the file and the line."""
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode("cp1252") + b"\n")
    with pytest.raises(ValueError, match=rf"{name}, line 3: not UTF-8 text .*save the file as UTF-8"):
        read_prompt_file(str(path))


def test_a_byte_order_mark_does_not_make_a_comment_a_prompt(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("# my prompts\r\na person walks#40\r\n".encode("utf-8-sig"))
    args = parse_with_config(get_sample_parser(), ["--name", "x", "--dataset_name", "synthetic",
                                                   "--text_path", str(prompts)])
    assert _prompts_of(args) == [Prompt("a person walks", 40, "--text_path")]
