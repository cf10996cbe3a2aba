"""Captions for imported motion capture clips: from Bandai Namco file names, or from a label file.

``captions_from_name`` turns a Bandai Namco clip name (``dataset-<n>_<content>_<style>_<take>``) into a few varied
sentences ("a person walks happily"); ``read_labels`` reads a CSV or JSON file of captions per clip id. Both feed
``utils.bvh_import.import_clip_folder`` (the BVH and AMASS imports).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re

import numpy as np

logger = logging.getLogger(__name__)


BANDAI_NAME_RE = re.compile(r"^dataset-\d+_(?P<content>[a-z-]+)_(?P<style>[a-z-]+)_(?P<take>\d+)$")

# Verb phrases (third person, no subject) per Bandai content. Hands and legs were checked on the clips of dataset 1:
# "bye" and "guide" use the right hand in every style, "byebye" both hands, "respond" raises the left hand, "kick" is
# a high kick with the right leg, and "walk-left"/"walk-right" walk diagonally forward to that side.
BANDAI_CONTENT_PHRASES: dict[str, tuple[str, ...]] = {
    "walk": ("walks forward", "walks", "is walking forward"),
    "walk-back": ("walks backwards", "walks backward", "steps backwards"),
    "walk-left": ("walks forward to the left", "walks diagonally to the left", "walks to the left"),
    "walk-right": ("walks forward to the right", "walks diagonally to the right", "walks to the right"),
    "run": ("runs forward", "runs", "is running forward"),
    "dash": ("dashes forward", "sprints forward", "dashes"),
    "bow": ("bows", "bows forward", "takes a bow"),
    "bye": ("waves goodbye with the right hand", "waves the right hand to say goodbye", "says goodbye with a wave of "
            "the right hand"),
    "byebye": ("waves goodbye with both hands", "waves both hands to say goodbye", "waves goodbye with both arms"),
    "guide": ("gestures with the right hand to guide someone", "guides someone with the right hand",
              "shows someone the way with the right hand"),
    "respond": ("raises the left hand to respond", "responds by raising the left hand",
                "answers by raising the left hand"),
    "call": ("calls out to someone", "calls someone over", "makes a calling gesture"),
    "punch": ("punches", "throws punches", "punches forward"),
    "kick": ("kicks with the right leg", "kicks high with the right foot", "does a high kick with the right leg"),
    "slash": ("slashes with both hands", "swings an imaginary sword", "makes slashing motions"),
    "dance-short": ("dances", "is dancing", "performs a dance"),
}

# Manner phrases per Bandai style ("" for the neutral style).
BANDAI_STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "normal": ("", "normally", "in a normal way"),
    "happy": ("in a happy way", "happily", "cheerfully"),
    "sad": ("in a sad way", "sadly", "in a gloomy way"),
    "angry": ("in an angry way", "angrily", "furiously"),
    "proud": ("in a proud way", "proudly", "with pride"),
    "not-confident": ("in an unconfident way", "without confidence", "timidly"),
    "masculinity": ("in a masculine way", "in a masculine manner", "with masculine movements"),
    "feminine": ("in a feminine way", "in a feminine manner", "with feminine movements"),
    "childish": ("in a childish way", "like a child", "like a little kid"),
    "old": ("like an old person", "in an elderly way", "like an old man"),
    "tired": ("in a tired way", "tiredly", "wearily"),
    "active": ("in an active way", "energetically", "with a lot of energy"),
    "musical": ("in a musical way", "like in a musical", "theatrically like a musical actor"),
    "giant": ("like a giant", "in a heavy giant way", "with big heavy movements like a giant"),
    "chimpira": ("like a thug", "in a thuggish way", "like a street punk"),
}

_SUBJECTS = ("a person", "someone", "the person", "a man", "a woman", "a figure", "the figure", "a human")


def is_bandai_name(stem: str) -> bool:
    """Whether a clip name follows the Bandai pattern ``dataset-N_{content}_{style}_{id}`` with a known content."""
    m = BANDAI_NAME_RE.match(stem)
    return m is not None and m.group("content") in BANDAI_CONTENT_PHRASES


def captions_from_name(stem: str, rng: np.random.Generator, count: int = 3) -> list[str]:
    """``count`` distinct captions for a clip from its file name.

    Bandai names ``dataset-1_{content}_{style}_{id}`` become e.g. "a person walks forward in a happy way"; any other
    name becomes its words ("walk_fast_02" -> "a person: walk fast") so the clip still has a caption.
    """
    if not is_bandai_name(stem):
        words = " ".join(w for w in re.split(r"[^A-Za-z]+", stem) if w).lower()
        return [f"a person: {words or stem}"]
    m = BANDAI_NAME_RE.match(stem)
    content, style = m.group("content"), m.group("style")
    actions = BANDAI_CONTENT_PHRASES[content]
    manners = BANDAI_STYLE_PHRASES.get(style, (f"in a {style.replace('-', ' ')} way",))
    combos = [(s, a, w) for s in _SUBJECTS for a in actions for w in manners]
    order = rng.permutation(len(combos))
    captions: list[str] = []
    used_actions: set[str] = set()
    for k in order:
        subject, action, manner = combos[k]
        # Prefer a new verb phrase for each caption, so the three differ in more than the subject.
        if action in used_actions and len(used_actions) < min(count, len(actions)):
            continue
        caption = " ".join(p for p in (subject, action, manner) if p)
        if caption not in captions:
            captions.append(caption)
            used_actions.add(action)
        if len(captions) == count:
            break
    return captions


def read_labels(path: str | os.PathLike, suffixes: tuple[str, ...] = (".bvh",)) -> dict[str, list[str]]:
    """Captions per clip id from a CSV (``id,caption`` rows; an id may repeat) or JSON (``{id: caption | [..]}``).

    Ids are the clips' ids (file stems for BVH); an extension in ``suffixes`` (the source files') is dropped if
    present.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--labels {path}: no such file; expected CSV rows 'id,caption' or a JSON object")
    labels: dict[str, list[str]] = {}

    def add(key: str, caption: str) -> None:
        key = os.path.splitext(key.strip())[0] if key.strip().lower().endswith(suffixes) else key.strip()
        caption = caption.strip()
        if key and caption:
            labels.setdefault(key, []).append(caption)

    # utf-8-sig drops the byte order mark that Excel's "CSV UTF-8" writes, which would otherwise start the first id.
    if path.lower().endswith(".json"):
        with open(path, encoding="utf-8-sig") as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not valid JSON ({e}); expected {{clip_id: caption or [captions]}}") from e
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object {{clip_id: caption or [captions]}}")
        for key, value in raw.items():
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ValueError(f"{path}: entry {key!r} must be a caption string or a list of strings")
            for v in values:
                add(key, v)
    else:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 2:
                    raise ValueError(f"{path}:{lineno}: expected 'id,caption', got {row}")
                if lineno == 1 and row[0].strip().lower() in ("id", "name", "file", "clip"):
                    continue
                add(row[0], ",".join(row[1:]))
    if not labels:
        raise ValueError(f"{path}: no captions found; expected CSV rows 'id,caption' or a JSON object")
    return labels
