"""Prompt files for ``sample.py --text_path``: (text, frames or None) per prompt, read by the file's extension.

- ``.txt`` (and any other extension): one prompt per line, ``<prompt>#<frames>`` fixes its length, ``#NA`` or no
  suffix leaves it to ``--motion_length`` or the length estimator; empty lines and lines starting with ``#`` are
  skipped (MoMask's and MARDM's format). A HumanML3D caption line (``caption#tokens#start#end``, as in
  ``texts/<id>.txt``) gives its caption.
- ``.jsonl``: one JSON object per line, ``{"text": "...", "length": 120}``; ``length`` (frames) may be missing or
  null.
- ``.csv``: a header row with a ``text`` column and optionally a ``length`` column (frames; empty means none); a text
  that holds commas is in double quotes, as spreadsheets write it.

Other keys or columns (an ``id``, a source) are ignored with a warning; one that reads as a length or a seed in
another spelling (``Length``, ``frames``, ``duration``, ``seed``) is an error, as it would silently leave the prompt
to ``--motion_length`` or the length estimator, or to the seed ``--seed + k``.

Files are UTF-8 (a byte-order mark is dropped). Frames must be positive whole numbers. Errors name the file and
the line. ``read_prompts`` gathers ``--text_prompt`` and ``--text_path`` with each prompt's length and its source;
``slugify`` makes a prompt's file-name stem.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import unicodedata
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

# The fields of a .jsonl object or .csv header. Others are ignored, except the names below (compared lower-cased):
# another spelling of a length, or a per-prompt seed, which is not read, would silently leave the prompt to
# --motion_length or the length estimator, or to the seed --seed + k.
FIELDS = ("text", "length")
_MISREAD_FIELDS = frozenset({"text", "length", "len", "frames", "num_frames", "n_frames", "nframes", "motion_length",
                             "duration", "seconds", "seed"})
_FIELDS_NOTE = "expected 'text' and optionally 'length' (frames); the seed of sample k is --seed + k"
SLUG_LENGTH = 60


def _check_fields(names: list[str], path: str, where: str, noun: str, warned: set[str]) -> None:
    """ValueError for ``names`` that read as a length or a seed in another spelling; a warning (once per name and
    file, ``warned``) for the other names that are not read."""
    unknown = [name for name in names if name not in FIELDS]
    misread = [name for name in unknown if str(name).strip().lower() in _MISREAD_FIELDS]
    if misread:
        raise ValueError(f"{where}unknown {noun}(s) {misread}; {_FIELDS_NOTE}")
    new = [name for name in unknown if name not in warned]
    if new:
        warned.update(new)
        logger.warning("%s: %s not read (%s)", path, ", ".join(map(repr, new)), _FIELDS_NOTE)

# caption#word/TAG word/TAG ...#start#end (the HumanML3D / KIT-ML texts files). As their reader
# (utils.motion_files.scan_texts) takes them, the tokens may be empty, a tag may be NaN (the whole clip) and the
# caption may hold '#' (the line is split from the right).
_TAG = r"(?:[-+0-9.eE]+|[nN][aA][nN])"
# A '#' tail that means a length but not in whole frames: "#1.5", "#120.0", "#6s", "#3 seconds", "#80 frames".
_NOT_FRAMES = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d+)?\s*(?:s|secs?|seconds?|f|frames?))",
                         re.ASCII | re.IGNORECASE)
_SIGNED_WHOLE = re.compile(r"[+-]?\d+")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CAPTION_LINE = re.compile(rf"^(?P<caption>.*)#(?P<tokens>[^#]*/[^#]*|\s*)#(?P<start>{_TAG})#(?P<end>{_TAG})$")


def parse_prompt_line(line: str) -> tuple[str, int | None]:
    """``"<prompt>#<frames>"`` -> (prompt, frames); ``#NA`` or no suffix -> (prompt, None); a HumanML3D caption line
    -> (caption, None); other '#' stay text. A length that is not a positive whole number of frames (``#0``,
    ``#-5``, ``#1.5``, ``#6s``) is a ValueError."""
    caption = _CAPTION_LINE.match(line.strip())
    if caption and caption.group("caption").strip():
        return caption.group("caption").strip(), None
    text, sep, tail = line.rpartition("#")
    tail = tail.strip()
    if sep and text.strip() and _NOT_FRAMES.fullmatch(tail):
        raise ValueError(f"length #{tail}: expected a positive whole number of frames (seconds times the dataset's "
                         f"fps), or #NA for the length estimator")
    if sep and text.strip() and (tail.lstrip("+-").isdecimal() or tail.upper() == "NA"):
        if tail.upper() == "NA":
            return text.strip(), None
        if not _SIGNED_WHOLE.fullmatch(tail) or int(tail) < 1:  # (#+-5 has its digits, but two signs)
            raise ValueError(f"length #{tail}: expected a positive number of frames, or #NA for the length estimator")
        return text.strip(), int(tail)
    return line.strip(), None


def _frames(value: Any) -> int | None:
    """A structured file's length field -> frames or None; anything but a positive whole number is a ValueError."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"length {value!r}: expected a positive whole number of frames")
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("+").isdecimal():
            raise ValueError(f"length {value!r}: expected a positive whole number of frames, or nothing")
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"length {value!r}: expected a positive whole number of frames, or nothing")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"text {value!r}: expected a non-empty string")
    return value.strip()


def _read_text(path: str) -> str:
    """The text of ``path``: UTF-8 without byte-order marks (Windows editors write one; it would turn a first-line
    comment into a prompt and prefix the first prompt's text). Every one goes, not only the file's first: files joined
    with ``cat`` carry theirs in the middle. ValueError naming the line of a byte that is not UTF-8 (a file saved as
    cp1252 or Latin-1)."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8").replace("\ufeff", "")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {data[e.start]:#04x}: {e.reason}); save the file "
                         f"as UTF-8") from None


def _read_jsonl(path: str) -> list[tuple[int, str, int | None]]:
    prompts, warned = [], set()
    with io.StringIO(_read_text(path), newline=None) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or "text" not in entry:
                    raise ValueError('expected a JSON object with a "text" field (and optionally "length" in frames)')
                _check_fields(list(entry), path, "", "key", warned)
                prompts.append((number, _text(entry["text"]), _frames(entry.get("length"))))
            except ValueError as e:  # json.JSONDecodeError is a ValueError
                raise ValueError(f"{path}, line {number}: {e}") from e
    return prompts


def _read_csv(path: str) -> list[tuple[int, str, int | None]]:
    prompts = []
    with io.StringIO(_read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        fields = [name.strip() for name in reader.fieldnames or []]
        if "text" not in fields:
            raise ValueError(f"{path}, line 1: expected a header row with a 'text' column (and optionally 'length' "
                             f"in frames), got {fields}")
        _check_fields(fields, path, f"{path}, line 1: ", "column", set())
        reader.fieldnames = fields
        for row in reader:
            number = reader.line_num
            extra = row.pop(None, None) or []  # fields past the header's columns
            if not any((value or "").strip() for value in [*row.values(), *extra]):
                continue
            if extra:
                # An unquoted comma in a caption splits it; the fields past the header would be dropped.
                count = len(fields) + len(extra)
                raise ValueError(f"{path}, line {number}: {count} fields under a header of {len(fields)} "
                                 f"column{'s' if len(fields) > 1 else ''}; put a text that holds commas in double "
                                 f"quotes (\"a person walks, then runs\")")
            # A double quote left open runs its text on to the next quote (or the end of the file), taking the
            # prompts of the lines between with it.
            breaks = sum(len(_LINE_BREAK.findall((value or "").rstrip("\r\n"))) for value in row.values())
            if breaks:
                raise ValueError(f"{path}, line {number - breaks}: a text over lines {number - breaks}-{number}; "
                                 f"close its double quote (a prompt is one line)")
            try:
                prompts.append((number, _text(row.get("text")), _frames(row.get("length"))))
            except ValueError as e:
                raise ValueError(f"{path}, line {number}: {e}") from e
    return prompts


def _read_lines(path: str) -> list[tuple[int, str, int | None]]:
    prompts = []
    with io.StringIO(_read_text(path), newline=None) as f:
        for number, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                text, frames = parse_prompt_line(line)
            except ValueError as e:
                raise ValueError(f"{path}, line {number}: {e}") from e
            prompts.append((number, text, frames))
    return prompts


def read_prompt_file(path: str) -> list[tuple[int, str, int | None]]:
    """``(line number, text, frames or None)`` of every prompt in ``path``, by its extension (module docstring)."""
    lower = path.lower()
    if lower.endswith(".jsonl"):
        return _read_jsonl(path)
    if lower.endswith(".csv"):
        return _read_csv(path)
    if lower.endswith(".json"):
        raise ValueError(f"{path}: a .json prompt file is not read; write one JSON object per line as .jsonl, "
                         f'e.g. {{"text": "a person walks", "length": 120}}')
    return _read_lines(path)


class Prompt(NamedTuple):
    """One prompt, its length in frames (None: the length estimator) and where that length came from."""

    text: str
    frames: int | None
    length_source: str


def slugify(text: str, max_length: int = SLUG_LENGTH) -> str:
    """A file-name stem that is safe on every OS: ASCII lowercase ``[a-z0-9_-]``, at most ``max_length`` long."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9_-]+", "_", ascii_text).strip("_-")
    return slug[:max_length].rstrip("_-") or "prompt"


def read_prompts(text_prompt: str | None, text_path: str | None, motion_length: int | None) -> list[Prompt]:
    """Prompts of ``--text_prompt`` and ``--text_path`` (in that order) with their length and its source: a file's
    ``#<frames>`` or ``length``, else ``--motion_length`` (``motion_length``; 0 or None: the length estimator)."""
    if motion_length is not None and motion_length < 0:  # checked now, not once the generator has loaded
        raise ValueError(f"--motion_length {motion_length}: expected frames > 0, or 0 / unset for the length "
                         f"estimator")
    default = motion_length if motion_length else None
    default_source = "--motion_length" if default else "length estimator"
    prompts = []
    if text_prompt is not None:
        if not text_prompt.strip():
            raise ValueError("--text_prompt is empty; give the text to generate from")
        prompts.append(Prompt(text_prompt.strip(), default, default_source))
    if text_path:
        if os.path.isdir(text_path):
            raise IsADirectoryError(f"--text_path: {text_path} is a folder; expected a prompt file (one prompt per "
                                    f"line, or .jsonl / .csv)")
        if not os.path.isfile(text_path):
            raise FileNotFoundError(f"--text_path: prompt file not found: {text_path}")
        read = read_prompt_file(text_path)
        for _, text, frames in read:
            prompts.append(Prompt(text, frames, "--text_path") if frames is not None
                           else Prompt(text, default, default_source))
        if not read:  # with --text_prompt too: the file was meant to hold prompts
            raise ValueError(f"--text_path {text_path}: no prompt in the file (empty lines and lines starting "
                             f"with '#' are skipped; a .csv file needs rows under its header)")
    if not prompts:
        raise ValueError("nothing to generate: pass --text_prompt \"...\" or --text_path FILE (one prompt per line)")
    return prompts
