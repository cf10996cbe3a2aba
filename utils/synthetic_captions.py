"""Caption text of the procedural motions of ``utils.synthetic``: subjects, possessives, number words and the
templates that turn an action's verb phrases into captions (single actions and sequences).

``_Segment`` is one action: its controls and the phrases its captions are made of.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ---------------------------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------------------------

_SUBJECTS = ("a person", "someone", "the person", "a man", "a woman", "a figure", "the figure", "a human",
             "the man", "the woman")
_POSSESSIVE = {"a man": "his", "the man": "his", "a woman": "her", "the woman": "her"}
_CARDINALS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine",
              10: "ten", 11: "eleven", 12: "twelve"}


@dataclass
class _Segment:
    """One action: its controls, verb phrases (present tense, "{their}" for the possessive) and, for actions that
    can accompany walking, gerund phrases ("waving ...")."""

    label: str
    controls: dict[str, np.ndarray]
    phrases: list[str]
    gerunds: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.controls["fwd"])


def _caption(subject: str, body: str) -> str:
    return f"{subject} {body}".replace("{their}", _POSSESSIVE.get(subject, "their"))


def _pick_captions(rng: np.random.Generator, bodies: list[str], count: int = 3) -> list[str]:
    """``count`` distinct captions from caption bodies, each with a random subject, preferring distinct bodies."""
    order = list(rng.permutation(len(bodies)))
    picked: list[str] = []
    for i in range(count * 4):
        body = bodies[order[i % len(order)]]
        caption = _caption(_SUBJECTS[rng.integers(len(_SUBJECTS))], body)
        if caption not in picked:
            picked.append(caption)
        if len(picked) == count:
            break
    return picked


def _sequence_bodies(rng: np.random.Generator, segments: list[_Segment], n: int = 6) -> list[str]:
    """Caption bodies for segments performed one after the other."""
    bodies = []
    for _ in range(n):
        # progressive phrases ("is walking") do not chain with present ones ("turns and then is walking")
        options = [[p for p in s.phrases if not p.startswith("is ")] or s.phrases for s in segments]
        parts = [o[rng.integers(len(o))] for o in options]
        if len(parts) == 2:
            template = rng.integers(3)
            body = (f"{parts[0]} and then {parts[1]}", f"{parts[0]}, then {parts[1]}",
                    f"first {parts[0]} and then {parts[1]}")[template]
        else:
            template = rng.integers(2)
            body = (f"{', '.join(parts[:-1])} and then {parts[-1]}",
                    f"first {parts[0]}, then {', then '.join(parts[1:-1])} and finally {parts[-1]}")[template]
        bodies.append(body)
    return bodies
