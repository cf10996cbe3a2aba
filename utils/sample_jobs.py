"""The samples of one ``sample.py`` run: the prompt(s), file stem and repeat of each, its length, and the generator call
that makes it (a motion per prompt, one ``--sequence`` of all prompts, an edit, or an edit with a prompt per span)."""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
from torch import Tensor

from utils.editing import EditRequest, FrameSpan
from utils.generation import GeneratedBatch, MotionGenerator
from utils.prompts import SLUG_LENGTH, Prompt, slugify

logger = logging.getLogger(__name__)


class SampleJob(NamedTuple):
    """One sample to make: the ``index`` of its prompt (0 for a motion of all prompts), its ``repeat``, its
    ``prompt`` and the ``stem`` of its file names."""

    index: int
    repeat: int
    prompt: Prompt
    stem: str


class Generated(NamedTuple):
    """One sample's motion (``out``, a batch of one) and, for a ``--sequence``, its ``segments`` (prompt, start and
    end frame and length source of each) for the manifest and the video's captions."""

    out: GeneratedBatch
    segments: list[dict[str, Any]] | None


def plan_samples(prompts: list[Prompt], repeat_times: int, combined: str | None, editing: bool) -> list[SampleJob]:
    """The run's samples in order (prompts in order, repeats inside): with ``combined`` (``"sequence"`` or
    ``"edit_spans"``) one motion of all prompts per repeat, ``<combined>_<slug>_<n>p_r<repeat>``; else one per prompt
    and repeat, ``<slug>[_edit]_<index>_r<repeat>``."""
    if combined:
        joined = Prompt(" / ".join(p.text for p in prompts), None, "segments")
        slug = slugify(prompts[0].text, SLUG_LENGTH // 2)
        return [SampleJob(0, r, joined, f"{combined}_{slug}_{len(prompts)}p_r{r:02d}") for r in range(repeat_times)]
    kind = "_edit" if editing else ""
    return [SampleJob(i, r, prompt, f"{slugify(prompt.text)}{kind}_{i:03d}_r{r:02d}")
            for i, prompt in enumerate(prompts) for r in range(repeat_times)]


def given_lengths(generator: MotionGenerator, prompts: list[Prompt], text_path: str | None) -> dict[int, Tensor]:
    """Prompt index -> its given length rounded to whole tokens, (1,) frames, for the prompts that have one; a length
    the generator cannot make is a ValueError naming the prompt file's prompt, or ``--motion_length``."""
    given = {}
    for i, prompt in enumerate(prompts):
        if prompt.frames is None:
            continue
        where = (f"{text_path}: prompt {prompt.text!r}" if prompt.length_source == "--text_path"
                 else prompt.length_source)
        frames = prompt.frames
        if frames > generator.max_frames:  # clamped here, where the prompt can be named (and any length fits a tensor)
            logger.warning("%s: length %d frames exceeds the %d frames the model was trained on; clamped", where,
                           frames, generator.max_frames)
            frames = generator.max_frames
        try:
            given[i] = generator.round_lengths([frames])
        except ValueError as e:  # a length of the prompt file, or --motion_length
            raise ValueError(f"{where}: length {prompt.frames} frames; {e}") from e
    return given


def sample_frames(generator: MotionGenerator, text: str, given: Tensor | None, seed: int) -> Tensor:
    """One sample's length, (1,) frames: the prompt's own (``given``), else a draw of the length estimator from a
    generator seeded with ``seed`` (so the motion of a seed does not depend on the length source)."""
    if given is not None:
        return given
    return generator.estimate_lengths([text], torch.Generator(device=generator.device).manual_seed(seed))


def left_to_right(spans: list[FrameSpan]) -> list[FrameSpan]:
    """``spans`` by start frame: the order ``--span_prompts`` gives the prompts to them."""
    return sorted(spans, key=lambda span: span.start)


def generate_sample(generator: MotionGenerator, job: SampleJob, prompts: list[Prompt], given: dict[int, Tensor],
                    sampling: dict[str, Any], edit: EditRequest | None = None, *, span_prompts: bool = False,
                    anchor_root: bool = False, sequence: bool = False, transition_frames: int = 0) -> Generated:
    """Make ``job``'s motion with ``sampling`` (the generator's keyword settings, its seed included): an edit of
    ``edit`` from each prompt in turn or, with ``span_prompts``, from all prompts one per span; with ``sequence`` one
    motion of all prompts (lengths ``given`` or drawn); else the job's prompt at its length."""
    seed = sampling["seed"]
    if edit is not None and span_prompts:  # the prompts go to the spans from left to right
        out = generator.edit_spans([p.text for p in prompts], edit.features, left_to_right(edit.spans),
                                   anchor_root=anchor_root, **sampling)
    elif edit is not None:
        out = generator.edit([job.prompt.text], edit.features, edit.spans, anchor_root=anchor_root, **sampling)
    elif sequence:
        # Lengths the prompts lack: one draw each from one stream seeded with the sample's seed.
        missing = [p.text for j, p in enumerate(prompts) if j not in given]
        drawn = iter(generator.estimate_lengths(missing, torch.Generator(device=generator.device).manual_seed(
            seed)).tolist() if missing else [])
        lengths = [int(given[j][0]) if j in given else next(drawn) for j in range(len(prompts))]
        out = generator.generate_sequence([p.text for p in prompts], lengths, transition_frames, **sampling)
        segments = [{"prompt": p.text, "start_frame": start, "end_frame": end, "length_source": p.length_source}
                    for p, (start, end) in zip(prompts, out.segments)]
        return Generated(out, segments)
    else:
        out = generator.generate([job.prompt.text], sample_frames(generator, job.prompt.text, given.get(job.index),
                                                                  seed), **sampling)
    return Generated(out, None)
