"""Generate motion from text with a trained generator (MARDM, FSQ-MARDM, VQ-MARDM, MoMask).

Examples::

    python sample.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --text_prompt "a person walks forward and waves" \\
        --motion_length 120
    python sample.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --text_path prompts.txt --repeat_times 3 --bvh
    python sample.py --ckpt some/run/model/latest.tar --text_prompt "a person jumps" --no_render --seed 7
    python sample.py --name MoMask_Tiny --res_name MoMask_Res_Tiny --dataset_name synthetic \\
        --text_prompt "a person walks" --motion_length 80                    # MoMask: masked + residual transformer
    python sample.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --text_prompt "a person jumps" \\
        --edit_source generation/FSQ_MARDM_SiT_XL_t2m_67/a_person_walks_000_r00_features.npy --edit_frames 40:80
    python sample.py --name FSQ_MARDM_SiT_XL --dataset_name t2m_67 --text_path story.txt --sequence   # one motion

``--text_path`` holds one prompt per line; ``<prompt>#<frames>`` fixes that prompt's length, otherwise (or with
``#NA``) ``--motion_length`` applies, else the text-to-length estimator of
``<checkpoints_dir>/<dataset_name>/length_estimator`` samples one. Lengths are rounded down to whole tokens. A
``.jsonl`` file holds ``{"text": ..., "length": frames or null}`` per line, a ``.csv`` file a ``text`` and optionally a
``length`` column (``utils/prompts.py``).

Per sample, in ``--output_dir`` (default ``generation/<name>_<dataset_name>/``), named
``<prompt slug>_<index>_r<repeat>``: ``.npy`` joints (T, J, 3) in the dataset's units, ``_features.npy`` the
de-normalised features (T, D), a stick-figure ``.mp4`` (``.gif`` without ffmpeg) unless ``--no_render``, a ``.bvh``
with ``--bvh``, ``_smpl.npz`` SMPL parameters in AMASS's layout with ``--smpl BODY_MODEL`` (``utils/smpl_export.py``;
the sample's ``smpl_fit`` says how far they land from the joints), with ``--mesh_video`` too a ``_mesh.mp4`` of the
body model's mesh skinned from that file (``utils/smpl_mesh.py``); and ``manifest.json`` (prompt, length, seed and
files of every sample, checkpoint and SHA-256, sampling settings, and the length estimator's checkpoint and SHA-256
when it estimated a length). Sampling again into the same folder adds a run to the manifest and keeps the earlier
runs' samples listed, except those whose names this run writes again, whose files it replaces or removes
(``utils/sample_manifest.py``). A motion with NaN or Inf values (``"finite": false``) keeps its
arrays but gets no video, BVH or SMPL file, and the other samples go on; so do they when a BVH or SMPL export fails,
the sample listed without that file and with the error in its ``export_errors``. Sample k (prompts in order, repeats
inside) uses seed ``--seed + k`` for both its length and its motion, so ``--text_prompt <prompt> --seed <its seed>``
with the same length option regenerates it exactly.

Sequences: ``--sequence`` makes one motion per repeat from all the prompts in order, ``sequence_<slug>_<n>p_r<repeat>``
(``MotionGenerator.generate_sequence``, ``utils/motion_sequence.py``): each segment from its prompt, then every seam
in-betweened over ``--transition_seconds``; the manifest lists the segments' frames and the transitions.

Editing: ``--edit_source FILE`` (features (T, D) in the dataset's units, joints (T, J, 3), a ``.bvh`` with
``--edit_skeleton`` or an AMASS ``.npz`` with ``--edit_body_model``) with ``--edit_frames`` / ``--edit_seconds``
``START:END`` spans regenerates from each prompt the tokens that touch a span and keeps every other source token exactly
(``MotionGenerator.edit``, ``utils/editing.py``); outputs ``<slug>_edit_<index>_r<repeat>`` have the source's length in
whole tokens. The manifest records the source, its SHA-256 (and the mapping or body model that read a BVH or AMASS file,
``edit.reader``), the spans and, per sample, ``unedited_change`` (how far the unedited frames moved from the decoded
source tokens; the decoder reads the whole sequence). With ``--span_prompts`` the prompts go one to each span, from left
to right (``MotionGenerator.edit_spans``), and each repeat makes one motion ``edit_spans_<slug>_<n>p_r<repeat>``.
``--anchor_root`` keeps what follows each span where the source has it (``utils.editing.anchor_root``; the manifest's
``root_anchor`` gives what was spread over each span). The joints of an edit of a joints, BVH or AMASS file stand where
the source does (frame 0's root xz, its facing, its floor; the manifest's ``edit.source_frame``); features carry no
world placement, so those of a features source stand in the canonical frame, at the origin facing +Z.
"""

from __future__ import annotations

import logging
import os

from tqdm import tqdm

from options.config import parse_with_config
from options.eval_generator_options import check_family_flags, family_sampling_options, get_sample_parser
from utils.checkpoint import CheckpointError
from utils.cli import run_script
from utils.editing import check_disjoint_spans, check_edit_flags, read_edit_request
from utils.generation import LENGTH_ESTIMATOR_RUN, MotionGenerator, load_generator
from utils.generation_momask import resolve_residual_run
from utils.generator_checkpoints import resolve_run
from utils.logging_utils import setup_logging
from utils.prompts import Prompt, read_prompts
from utils.run_dir import RunDir
from utils.sample_jobs import generate_sample, given_lengths, plan_samples
from utils.sample_manifest import SampleManifest
from utils.sample_outputs import (
    SampleWriter,
    edit_output_paths,
    make_folder,
    open_exports,
    run_record,
    sample_record,
)
from utils.smpl_export import check_smpl_skeleton


def check_flags(cfg, prompts: list[Prompt], editing: bool) -> None:
    """ValueError for flags that do not go together, before the model loads."""
    if editing and cfg.sequence:
        raise ValueError("--sequence makes a new motion from the prompts; it does not take --edit_source (edit the "
                         "sequence's _features.npy afterwards)")
    if editing and any(p.frames is not None for p in prompts):
        raise ValueError("an edit has the length of its --edit_source; drop --motion_length and #<frames> lengths")
    if cfg.anchor_root and not editing:
        raise ValueError("--anchor_root keeps an edit's unedited frames in place: add --edit_source and "
                         "--edit_frames / --edit_seconds")
    if cfg.span_prompts:
        spans = len(cfg.edit_frames or []) + len(cfg.edit_seconds or [])
        if not editing:
            raise ValueError("--span_prompts pairs the prompts with the spans of an edit: add --edit_source and "
                             "--edit_frames / --edit_seconds")
        if spans != len(prompts):
            raise ValueError(f"--span_prompts: {len(prompts)} prompt(s) for {spans} span(s); give one prompt per span "
                             f"(they go to the spans from left to right)")
    if cfg.repeat_times < 1:
        raise ValueError(f"--repeat_times must be >= 1, got {cfg.repeat_times}")
    # Sample k uses seed --seed + k for a torch generator, which takes seeds in [-2^63, 2^64); --sequence and
    # --span_prompts make one sample of all prompts per repeat.
    samples = (1 if cfg.sequence or cfg.span_prompts else len(prompts)) * cfg.repeat_times
    if not -2**63 <= cfg.seed <= 2**64 - samples:
        raise ValueError(f"--seed {cfg.seed}: sample k uses seed --seed + k, and seeds must lie in [-2^63, 2^64); "
                         f"for {samples} sample(s) give a seed from {-2**63} to {2**64 - samples}")
    if cfg.mesh_video and not cfg.smpl:
        raise ValueError("--mesh_video draws the mesh of the SMPL parameters that --smpl exports: add --smpl "
                         "BODY_MODEL.npz (an SMPL, SMPL-H or SMPL-X model with its skinning weights and faces)")


def load_model(cfg, path: str, res_run: str | None) -> MotionGenerator:
    """The generator of ``path`` (MoMask: with its residual run ``res_run``) and where its length estimator is."""
    generator = load_generator(path, use_ema=not cfg.no_ema, device=cfg.device, text_encoder=cfg.text_encoder,
                               text_encoder_path=cfg.text_encoder_path, tokenizer_path=cfg.tokenizer_path,
                               length_estimator=cfg.length_estimator, res_run=res_run, res_which=cfg.which_epoch)
    if generator.length_estimator_path is None:
        # Without --length_estimator the estimator is the one next to the generator's run; a generator file outside a
        # <checkpoints>/<dataset>/<name>/model/ folder takes the one under --checkpoints_dir.
        generator.length_estimator_path = os.path.join(cfg.checkpoints_dir, generator.spec.name, LENGTH_ESTIMATOR_RUN)
    return generator


def print_summary(manifest: SampleManifest, out_dir: str) -> None:
    """The script's result table: per sample of this run its index, repeat, length and main file, then where the
    samples went."""
    print(f"{'idx':>4} {'rep':>4} {'frames':>6} {'sec':>6}  {'files':<40} prompt")
    written_now = manifest.this_runs_samples()
    for s in written_now:
        written = s["files"]["video"] or s["files"]["joints"] or s["files"]["features"]
        others = sum(1 for name in s["files"].values() if name) - 1  # features, BVH, SMPL, mesh video: the manifest
        shown = f"{written} (+{others})" if others else written
        print(f"{s['index']:>4} {s['repeat']:>4} {s['length_frames']:>6} {s['length_seconds']:>6.2f}  "
              f"{shown:<40} {s['prompt'][:60]}")
    earlier = f"; it also lists {manifest.earlier} of earlier runs" if manifest.earlier else ""
    print(f"wrote {len(written_now)} samples to {out_dir} (manifest.json lists every file, +N the others of a "
          f"sample{earlier})")


def main(cfg) -> dict:
    """Generate and write the samples ``cfg`` asks for; the manifest of the output folder."""
    # ---------------------------------------------------------------------------------------------------------------
    # setup: every flag and input file is checked before the model loads
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging()
    prompts = read_prompts(cfg.text_prompt, cfg.text_path, cfg.motion_length)
    editing = check_edit_flags(cfg.edit_source, cfg.edit_frames, cfg.edit_seconds, cfg.edit_skeleton,
                               cfg.edit_body_model)
    check_flags(cfg, prompts, editing)
    exports = open_exports(cfg.format, not cfg.no_render, cfg.smpl, cfg.mesh_video)  # MP4 and the body model, now
    path, name, dataset_name = resolve_run(cfg.ckpt, cfg.name, cfg.dataset_name, cfg.checkpoints_dir, cfg.which_epoch)
    res_run = resolve_residual_run(cfg.checkpoints_dir, dataset_name, cfg.res_name, cfg.res_ckpt)
    options = family_sampling_options(cfg)

    # ---------------------------------------------------------------------------------------------------------------
    # model
    # ---------------------------------------------------------------------------------------------------------------
    generator = load_model(cfg, path, res_run)
    check_family_flags(options, generator.backend.family, generator.backend.sampling_options)
    # The guidance scale's flag is --cfg (the field's name; cfg itself is the parsed config); None: the family's.
    settings = generator.sampling_settings(cfg.time_steps, cfg.cfg, cfg.temperature, not cfg.no_snap, **options)
    spec = generator.spec
    # Only a --dataset_name given is checked: the folder above a --ckpt run (what finds a --res_name run beside it)
    # may be no dataset at all, a copy of the run put elsewhere.
    if cfg.dataset_name and cfg.dataset_name != spec.name:
        raise CheckpointError(f"{path}: the generator was trained on dataset {spec.name!r} but --dataset_name is "
                              f"{cfg.dataset_name!r}")
    if exports.body is not None:
        check_smpl_skeleton(spec, "--smpl")
    edit = read_edit_request(cfg.edit_source, cfg.edit_frames, cfg.edit_seconds, spec, generator.unit_length,
                             cfg.edit_skeleton, cfg.edit_body_model)
    if edit is not None and cfg.span_prompts:  # before the samples' folder is made
        check_disjoint_spans(edit.spans, edit.features.shape[0] // generator.unit_length, generator.unit_length)

    # ---------------------------------------------------------------------------------------------------------------
    # prompts: lengths, file names and the manifest
    # ---------------------------------------------------------------------------------------------------------------
    # Check every given length, and load the length estimator if a prompt needs it, now rather than after minutes of
    # sampling, and before the samples' folder is made (a refused length leaves no empty folder).
    given = given_lengths(generator, prompts, cfg.text_path)
    estimator = None
    if edit is None and any(prompt.frames is None for prompt in prompts):
        estimator = generator.length_estimator().path
    out_dir = cfg.output_dir or RunDir(cfg.checkpoints_dir, spec.name, name).generation_dir
    make_folder(out_dir, "--output_dir" if cfg.output_dir else "the samples' folder (--output_dir)")
    combined = "sequence" if cfg.sequence else "edit_spans" if cfg.span_prompts else None
    jobs = plan_samples(prompts, cfg.repeat_times, combined, edit is not None)
    if edit is not None:
        edit.check_outputs(edit_output_paths(out_dir, [job.stem for job in jobs], cfg.bvh, exports.body is not None))
    # Transitions are regenerated in whole tokens: the record holds the frames that are, and a cut is said.
    asked = round(cfg.transition_seconds * spec.fps)
    transition_frames = asked - asked % generator.unit_length
    if cfg.sequence and transition_frames != asked:
        logging.getLogger("sample").warning(
            "--transition_seconds %g is %d frames at %g fps; transitions are regenerated in whole tokens of %d "
            "frames, so %d frames are (%s)", cfg.transition_seconds, asked, spec.fps, generator.unit_length,
            transition_frames, "the seams are joined as generated" if transition_frames == 0 else
            "the later segment takes the odd token" if (transition_frames // generator.unit_length) % 2 else
            "half before each seam, half after")
    record = run_record(generator, settings, cfg.seed, cfg.repeat_times, edit,
                        [p.text for p in prompts] if cfg.sequence else None, cfg.transition_seconds, transition_frames,
                        length_estimator=estimator)
    # Samples of earlier runs into this folder stay in the manifest, unless this run writes their files again.
    manifest = SampleManifest(out_dir, record, [f"{job.stem}_features.npy" for job in jobs],
                              keep=[edit.source] if edit is not None else [])

    # ---------------------------------------------------------------------------------------------------------------
    # generate and write: sample k uses seed --seed + k; the manifest is rewritten after every sample
    # ---------------------------------------------------------------------------------------------------------------
    writer = SampleWriter(out_dir, spec, manifest, exports, cfg.format, not cfg.no_render, cfg.bvh,
                          edit.frame if edit is not None else None)
    for k, job in enumerate(tqdm(jobs, desc="samples", dynamic_ncols=True)):
        seed = cfg.seed + k
        sampling = dict(time_steps=settings.time_steps, cfg=settings.cfg, temperature=settings.temperature, seed=seed,
                        snap=settings.snap, **options)
        generated = generate_sample(generator, job, prompts, given, sampling, edit, span_prompts=cfg.span_prompts,
                                    anchor_root=cfg.anchor_root, sequence=cfg.sequence,
                                    transition_frames=transition_frames)
        written = writer.write(job.stem, job.prompt.text, generated)
        manifest.add(sample_record(job, seed, generated, written, spec, edit,
                                   prompts if cfg.span_prompts else None))
    print_summary(manifest, out_dir)
    return manifest.to_dict()


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_sample_parser())), single_process=True,
               resume="rerun the same command to write its samples again")
