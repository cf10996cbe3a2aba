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
files of every sample, checkpoint and SHA-256, sampling settings). Sampling again into the same folder adds a run to
the manifest and keeps the earlier runs' samples listed, except those whose names this run writes again, whose files
it replaces or removes (``utils/sample_manifest.py``). A motion with NaN or Inf values (``"finite": false``) keeps its
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

import numpy as np
import torch
from tqdm import tqdm

from options.config import parse_with_config
from options.eval_generator_options import family_sampling_options, get_sample_parser
from utils.atomic_io import atomic_write
from utils.bvh_export import write_bvh
from utils.checkpoint import CheckpointError
from utils.cli import run_script
from utils.editing import check_edit_flags, read_edit_request
from utils.generation import LENGTH_ESTIMATOR_RUN, load_generator
from utils.generation_momask import resolve_residual_run
from utils.generator_checkpoints import resolve_generator_checkpoint
from utils.logging_utils import setup_logging
from utils.plot_script import RenderError, plot_3d_motion, resolve_format
from utils.prompts import SLUG_LENGTH, Prompt, read_prompts, slugify
from utils.run_dir import RunDir
from utils.sample_manifest import SampleManifest
from utils.smpl_body import load_body_model
from utils.smpl_export import check_smpl_skeleton, write_smpl
from utils.smpl_mesh import load_body_mesh, render_amass_file

logger = logging.getLogger("sample")


def sample_frames(generator, text: str, given: torch.Tensor | None, seed: int) -> torch.Tensor:
    """One sample's length: the prompt's own (``given``), else a draw of the length estimator from a generator
    seeded with ``seed`` (so the motion of a seed does not depend on the length source)."""
    if given is not None:
        return given
    return generator.estimate_lengths([text], torch.Generator(device=generator.device).manual_seed(seed))


def save_array(path: str, array: np.ndarray) -> None:
    """``np.save`` through a temporary file: a run stopped while writing leaves no half-written array under the name."""
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def make_folder(path: str, what: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, failing with an error of the same type that names ``what`` and, when a
    file stands where a folder should, that file."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        existing = path
        while existing and not os.path.exists(existing):
            existing = os.path.dirname(existing)
        is_file = existing and not os.path.isdir(existing)
        raise type(e)(f"{what}: cannot make the folder {path}: "
                      f"{f'{existing} is a file' if is_file else e.strerror or e}") from e


def export_failed(stem: str, flag: str, error: Exception) -> str:
    """Log that ``flag``'s export of sample ``stem`` failed; the error's text, for the sample's ``export_errors``."""
    message = f"{type(error).__name__}: {error}"
    logger.warning("%s: the %s export failed (%s); the sample is listed without it", stem, flag, message)
    return message


def resolve_run(cfg) -> tuple[str, str, str | None]:
    """(checkpoint path, run name, dataset name or None) from ``--ckpt`` or ``--name`` + ``--dataset_name``."""
    if cfg.ckpt:
        if not os.path.isfile(cfg.ckpt):
            raise CheckpointError(f"--ckpt: checkpoint not found: {cfg.ckpt}")
        parts = os.path.abspath(cfg.ckpt).split(os.sep)
        inside_run = len(parts) >= 4 and parts[-2] == "model"
        return cfg.ckpt, cfg.name or (parts[-3] if inside_run else os.path.splitext(parts[-1])[0]), cfg.dataset_name
    if not cfg.name or not cfg.dataset_name:
        raise ValueError("pass --name and --dataset_name (a run under --checkpoints_dir), or --ckpt (a file)")
    run = RunDir(cfg.checkpoints_dir, cfg.dataset_name, cfg.name)
    return resolve_generator_checkpoint(run.root, cfg.which_epoch), cfg.name, cfg.dataset_name


def main(cfg) -> dict:
    # ---------------------------------------------------------------------------------------------------------------
    # setup
    # ---------------------------------------------------------------------------------------------------------------
    setup_logging()
    prompts = read_prompts(cfg.text_prompt, cfg.text_path, cfg.motion_length)
    editing = check_edit_flags(cfg.edit_source, cfg.edit_frames, cfg.edit_seconds, cfg.edit_skeleton,
                               cfg.edit_body_model)  # before the model loads
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
    if cfg.mesh_video and not cfg.smpl:
        raise ValueError("--mesh_video draws the mesh of the SMPL parameters that --smpl exports: add --smpl "
                         "BODY_MODEL.npz (an SMPL, SMPL-H or SMPL-X model with its skinning weights and faces)")
    try:  # fails now if MP4 cannot be written
        video_format = resolve_format(cfg.format) if not cfg.no_render or cfg.mesh_video else None
    except RenderError as e:
        raise ValueError(f"--format {cfg.format}: {e}") from e
    try:  # a bad body model fails now, not after the generator has loaded
        mesh = load_body_mesh(cfg.smpl) if cfg.mesh_video else None
        body = mesh.body if mesh is not None else load_body_model(cfg.smpl) if cfg.smpl else None
    except (OSError, ValueError) as e:
        raise type(e)(f"--smpl: {e}") from e
    path, name, dataset_name = resolve_run(cfg)
    res_run = resolve_residual_run(cfg.checkpoints_dir, dataset_name, cfg.res_name, cfg.res_ckpt)
    options = family_sampling_options(cfg)

    # ---------------------------------------------------------------------------------------------------------------
    # model
    # ---------------------------------------------------------------------------------------------------------------
    generator = load_generator(path, use_ema=not cfg.no_ema, device=cfg.device, text_encoder=cfg.text_encoder,
                               text_encoder_path=cfg.text_encoder_path, tokenizer_path=cfg.tokenizer_path,
                               length_estimator=cfg.length_estimator, res_run=res_run, res_which=cfg.which_epoch)
    if generator.length_estimator_path is None:
        # Without --length_estimator the estimator is the one next to the generator's run; a generator file outside a
        # <checkpoints>/<dataset>/<name>/model/ folder takes the one under --checkpoints_dir.
        generator.length_estimator_path = os.path.join(cfg.checkpoints_dir, generator.spec.name, LENGTH_ESTIMATOR_RUN)
    # The guidance scale's flag is --cfg (the field's name; cfg itself is the parsed config); None: the family's.
    settings = generator.sampling_settings(cfg.time_steps, cfg.cfg, cfg.temperature, not cfg.no_snap, **options)
    spec = generator.spec
    if dataset_name and dataset_name != spec.name:
        raise CheckpointError(f"{path}: the generator was trained on dataset {spec.name!r} but --dataset_name is "
                              f"{dataset_name!r}")
    if body is not None:
        check_smpl_skeleton(spec, "--smpl")
    edit = read_edit_request(cfg.edit_source, cfg.edit_frames, cfg.edit_seconds, spec, generator.unit_length,
                             cfg.edit_skeleton, cfg.edit_body_model)
    out_dir = cfg.output_dir or RunDir(cfg.checkpoints_dir, spec.name, name).generation_dir
    make_folder(out_dir, "--output_dir" if cfg.output_dir else "the samples' folder (--output_dir)")
    # Check every given length, and load the length estimator if a prompt needs it, now rather than after minutes of
    # sampling.
    given = {}
    for i, prompt in enumerate(prompts):
        if prompt.frames is None:
            continue
        try:
            given[i] = generator.round_lengths([prompt.frames])
        except ValueError as e:  # a length of the prompt file, or --motion_length
            where = (f"{cfg.text_path}: prompt {prompt.text!r}" if prompt.length_source == "--text_path"
                     else prompt.length_source)
            raise ValueError(f"{where}: length {prompt.frames} frames; {e}") from e
    if edit is None and any(prompt.frames is None for prompt in prompts):
        generator.length_estimator()

    # ---------------------------------------------------------------------------------------------------------------
    # sampling
    # ---------------------------------------------------------------------------------------------------------------
    if cfg.sequence or cfg.span_prompts:  # one motion of all prompts per repeat
        jobs = [(0, r, Prompt(" / ".join(p.text for p in prompts), None, "segments")) for r in range(cfg.repeat_times)]
        kind = "sequence" if cfg.sequence else "edit_spans"
        stems = [f"{kind}_{slugify(prompts[0].text, SLUG_LENGTH // 2)}_{len(prompts)}p_r{r:02d}"
                 for r in range(cfg.repeat_times)]
    else:
        jobs = [(i, r, prompt) for i, prompt in enumerate(prompts) for r in range(cfg.repeat_times)]
        kind = "_edit" if edit is not None else ""
        stems = [f"{slugify(prompt.text)}{kind}_{i:03d}_r{r:02d}" for i, r, prompt in jobs]
    if edit is not None:  # every file a source can be: arrays, and a BVH or AMASS file when this run writes them
        ends = (".npy", "_features.npy") + ((".bvh",) if cfg.bvh else ()) + (("_smpl.npz",) if body is not None else ())
        edit.check_outputs([os.path.join(out_dir, stem + end) for stem in stems for end in ends])
    run_record = {"checkpoint": generator.info["checkpoint"], "checkpoint_sha256": generator.info["checkpoint_sha256"],
                  "generator": generator.info, "dataset": spec.name, "fps": spec.fps, "sampling": settings.to_dict(),
                  "seed": cfg.seed, "repeat_times": cfg.repeat_times}
    if edit is not None:
        run_record["edit"] = edit.record(generator.unit_length)
        if edit.frame is not None:
            run_record["edit"]["source_frame"] = edit.frame.record(spec.metres_per_unit)
    transition_frames = round(cfg.transition_seconds * spec.fps)
    if cfg.sequence:
        run_record["sequence"] = {"transition_seconds": cfg.transition_seconds,
                                  "transition_frames": transition_frames, "prompts": [p.text for p in prompts]}
    # Samples of earlier runs into this folder stay in the manifest, unless this run writes their files again.
    manifest = SampleManifest(out_dir, run_record, [f"{stem}_features.npy" for stem in stems],
                              keep=[edit.source] if edit is not None else [])
    joints_warned = False
    for k, (i, r, prompt) in enumerate(tqdm(jobs, desc="samples", dynamic_ncols=True)):
        seed = cfg.seed + k
        sampling = dict(time_steps=settings.time_steps, cfg=settings.cfg, temperature=settings.temperature, seed=seed,
                        snap=settings.snap, **options)
        segments = None
        if edit is not None and cfg.span_prompts:  # the prompts go to the spans from left to right
            ordered = sorted(edit.spans, key=lambda span: span.start)
            out = generator.edit_spans([p.text for p in prompts], edit.features, ordered,
                                       anchor_root=cfg.anchor_root, **sampling)
        elif edit is not None:
            out = generator.edit([prompt.text], edit.features, edit.spans, anchor_root=cfg.anchor_root, **sampling)
        elif cfg.sequence:
            # Lengths the prompts lack: one draw each from one stream seeded with the sample's seed.
            missing = [p.text for j, p in enumerate(prompts) if j not in given]
            drawn = iter(generator.estimate_lengths(missing, torch.Generator(device=generator.device).manual_seed(
                seed)).tolist() if missing else [])
            lengths = [int(given[j][0]) if j in given else next(drawn) for j in range(len(prompts))]
            out = generator.generate_sequence([p.text for p in prompts], lengths, transition_frames, **sampling)
            segments = [{"prompt": p.text, "start_frame": start, "end_frame": end, "length_source": p.length_source}
                        for p, (start, end) in zip(prompts, out.segments)]
        else:
            out = generator.generate([prompt.text], sample_frames(generator, prompt.text, given.get(i), seed),
                                     **sampling)
        length = int(out.lengths[0])
        stem = stems[k]
        files = {"joints": None, "features": f"{stem}_features.npy", "video": None, "bvh": None, "smpl": None,
                 "mesh_video": None}
        smpl_fit = None
        export_errors = {}
        features = out.features[0, :length].cpu().numpy()
        # The earlier sample of these names leaves the manifest, and its files go, before a file of this one is
        # written; this one is listed once all its files are: the manifest never pairs a prompt with another's arrays.
        manifest.replace(files["features"])
        save_array(os.path.join(out_dir, files["features"]), features)
        # A diverged model or an extreme --cfg / --temperature can give NaN or Inf: keep the arrays, skip what cannot
        # draw or export them, and go on with the other samples.
        finite = bool(np.isfinite(features).all())
        if not finite:
            logger.warning("%s: the motion has NaN or Inf values; its arrays are saved, no video, BVH or SMPL", stem)
        try:
            joints = out.joints[0]
        except ValueError as e:  # a representation without joint positions (SMPL-X rotations)
            joints = None
            if not joints_warned:
                logger.warning("no joints, videos or BVH for dataset %r: %s", spec.name, e)
                joints_warned = True
        if joints is not None and edit is not None and edit.frame is not None:
            joints = edit.frame.place(joints)  # where the joints source stands, not the canonical frame
        if joints is not None:
            files["joints"] = f"{stem}.npy"
            joints_path = os.path.join(out_dir, files["joints"])
            save_array(joints_path, joints)
            captions = [(s["start_frame"], s["prompt"]) for s in segments] if segments else None
            if not cfg.no_render and finite:
                try:
                    video = plot_3d_motion(os.path.join(out_dir, f"{stem}.{video_format}"), joints,
                                           spec.kinematic_chain, title=prompt.text, fps=spec.fps, fmt=cfg.format,
                                           save_joints=False, captions=captions)
                    files["video"] = os.path.basename(video)
                except RenderError as e:
                    logger.warning("%s: no video (%s)", stem, e)
            # A failed export leaves the sample listed with the files it has and the error; the others go on.
            if cfg.bvh and finite:
                try:
                    write_bvh(os.path.join(out_dir, f"{stem}.bvh"), joints, spec.fps,
                              kinematic_chain=spec.kinematic_chain, source=stem)
                    files["bvh"] = f"{stem}.bvh"
                except (OSError, ValueError) as e:
                    export_errors["bvh"] = export_failed(stem, "--bvh", e)
            if body is not None and finite:
                try:
                    smpl_fit = write_smpl(os.path.join(out_dir, f"{stem}_smpl.npz"), joints, body, spec.fps,
                                          source=stem)
                    files["smpl"] = f"{stem}_smpl.npz"
                except (OSError, ValueError) as e:
                    export_errors["smpl"] = export_failed(stem, "--smpl", e)
                if mesh is not None and files["smpl"]:  # the mesh of the parameters as written, after every file
                    try:
                        video = render_amass_file(os.path.join(out_dir, files["smpl"]), mesh,
                                                  os.path.join(out_dir, f"{stem}_mesh.{video_format}"),
                                                  title=prompt.text, fmt=cfg.format, captions=captions)
                        files["mesh_video"] = os.path.basename(video)
                    except RenderError as e:
                        logger.warning("%s: no mesh video (%s)", stem, e)
        # Rewritten after every sample: an interrupted run still describes what it wrote.
        record = {"index": i, "repeat": r, "prompt": prompt.text, "length_frames": length,
                  "length_seconds": length / spec.fps, "seed": seed, "finite": finite, "files": files,
                  "length_source": prompt.length_source if edit is None else "--edit_source"}
        if smpl_fit is not None:
            record["smpl_fit"] = smpl_fit._asdict()
        if export_errors:
            record["export_errors"] = export_errors
        if edit is not None:
            record["unedited_change"] = out.unedited_change(0)
            if out.root_anchors is not None:
                record["root_anchor"] = out.root_anchors[0]
            if cfg.span_prompts:
                record["span_prompts"] = [{"prompt": p.text, "frames": [span.start, span.end]}
                                          for p, span in zip(prompts, ordered)]
        if segments is not None:
            record["segments"] = segments
            record["transitions"] = [list(t) for t in out.transitions]
        manifest.add(record)

    # ---------------------------------------------------------------------------------------------------------------
    # summary
    # ---------------------------------------------------------------------------------------------------------------
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
    return manifest.to_dict()


if __name__ == "__main__":
    run_script(lambda: main(parse_with_config(get_sample_parser())), single_process=True,
               resume="rerun the same command to write its samples again")
