"""The files ``sample.py`` writes per sample and what its manifest says of them and of the run.

Per sample, named ``<stem>``: ``_features.npy`` (T, D) in the dataset's units, ``.npy`` joints (T, J, 3), a stick-figure
video, a ``.bvh``, ``_smpl.npz`` SMPL parameters and their ``_mesh`` video, each as the run asks. A motion with NaN or
Inf values (in its features or the joint positions recovered from them) keeps its arrays but gets no video, BVH or SMPL
file; a failed BVH or SMPL export leaves the sample listed without that file and with the error, and the other samples
go on. The manifest's bookkeeping (which earlier samples a run replaces, when a sample is listed) is
``utils.sample_manifest``'s.
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import numpy as np

from utils.atomic_io import atomic_write
from utils.bvh_export import write_bvh
from utils.checkpoint import file_sha256
from utils.dataset_specs import DatasetSpec
from utils.editing import EditRequest, SourceFrame
from utils.generation import MotionGenerator
from utils.generation_backends import SamplingSettings
from utils.plot_script import RenderError, plot_3d_motion, resolve_format
from utils.prompts import Prompt
from utils.sample_jobs import Generated, SampleJob, left_to_right
from utils.sample_manifest import SampleManifest
from utils.smpl_body import SmplBody, load_body_model
from utils.smpl_export import FitReport, write_smpl
from utils.smpl_mesh import SmplMesh, load_body_mesh, render_amass_file

# Named after the script: what a user reads of its samples says ``sample:``, whichever module writes the file.
logger = logging.getLogger("sample")


class Exports(NamedTuple):
    """What the run draws and exports with: ``video_format`` (``"mp4"`` / ``"gif"``, None when it draws nothing), the
    SMPL ``body`` of ``--smpl`` and, with ``--mesh_video``, its ``mesh``."""

    video_format: str | None
    body: SmplBody | None
    mesh: SmplMesh | None


class SampleFiles(NamedTuple):
    """What ``SampleWriter.write`` made of one sample: its ``files`` by kind (None: not written), whether its motion
    is ``finite``, the SMPL ``smpl_fit`` report (None without SMPL) and ``export_errors`` by kind."""

    files: dict[str, str | None]
    finite: bool
    smpl_fit: FitReport | None
    export_errors: dict[str, str]


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


def open_exports(fmt: str, render: bool, smpl: str | None, mesh_video: bool) -> Exports:
    """Check ``--format`` and read the ``--smpl`` body model now, before a generator loads: a ValueError naming
    ``--format`` when MP4 cannot be written, an error naming ``--smpl`` for a bad body model."""
    try:
        video_format = resolve_format(fmt) if render or mesh_video else None
    except RenderError as e:
        raise ValueError(f"--format {fmt}: {e}") from e
    try:
        mesh = load_body_mesh(smpl) if mesh_video else None
        body = mesh.body if mesh is not None else load_body_model(smpl) if smpl else None
    except (OSError, ValueError) as e:
        raise type(e)(f"--smpl: {e}") from e
    return Exports(video_format, body, mesh)


def edit_output_paths(out_dir: str, stems: list[str], bvh: bool, smpl: bool) -> list[str]:
    """Every file of ``stems`` in ``out_dir`` that an edit source can be: the arrays, and a BVH or AMASS file when
    this run writes them (for ``EditRequest.check_outputs``)."""
    ends = (".npy", "_features.npy") + ((".bvh",) if bvh else ()) + (("_smpl.npz",) if smpl else ())
    return [os.path.join(out_dir, stem + end) for stem in stems for end in ends]


def run_record(generator: MotionGenerator, settings: SamplingSettings, seed: int, repeat_times: int,
               edit: EditRequest | None = None, sequence_prompts: list[str] | None = None,
               transition_seconds: float = 0.0, transition_frames: int = 0,
               length_estimator: str | None = None) -> dict[str, Any]:
    """The manifest's entry of this run: checkpoint and SHA-256, generator, dataset, sampling settings and the
    sampler they leave to the model (``GeneratorBackend.sampler``), seed, the ``length_estimator`` file that
    estimates lengths (``checkpoint`` and ``checkpoint_sha256``; left out when every length is given), and the
    ``edit`` (source, spans, where its joints stand) or the ``sequence`` (prompts, transitions) it makes. A sequence's
    ``transition_frames_asked`` is the transition asked at every seam, in whole tokens; a seam may get less
    (``generate_sequence``), and each sample's ``transitions`` hold the frames each seam used."""
    spec = generator.spec
    record = {"checkpoint": generator.info["checkpoint"], "checkpoint_sha256": generator.info["checkpoint_sha256"],
              "generator": generator.info, "dataset": spec.name, "fps": spec.fps, "sampling": settings.to_dict(),
              "sampler": generator.backend.sampler(settings), "seed": seed, "repeat_times": repeat_times}
    if length_estimator is not None:
        # The estimated lengths depend on its weights as much as the motions on the generator's.
        record["length_estimator"] = {"checkpoint": os.path.abspath(length_estimator),
                                      "checkpoint_sha256": file_sha256(length_estimator)}
    if edit is not None:
        record["edit"] = edit.record(generator.unit_length)
        if edit.frame is not None:
            record["edit"]["source_frame"] = edit.frame.record(spec.metres_per_unit)
    if sequence_prompts is not None:
        record["sequence"] = {"transition_seconds": transition_seconds, "transition_frames_asked": transition_frames,
                              "prompts": sequence_prompts}
    return record


class SampleWriter:
    """Writes each sample's files into ``out_dir``: ``replace`` of ``manifest`` first (the earlier sample of that
    name leaves it, and its files go), then the arrays, the video (``render``, in ``fmt``), BVH (``bvh``), SMPL and
    mesh video (``exports``). Joints of an edit of a joints source are placed where it stands (``frame``)."""

    def __init__(self, out_dir: str, spec: DatasetSpec, manifest: SampleManifest, exports: Exports, fmt: str,
                 render: bool, bvh: bool, frame: SourceFrame | None = None) -> None:
        self.out_dir, self.spec, self.manifest, self.exports = out_dir, spec, manifest, exports
        self.fmt, self.render, self.bvh, self.frame = fmt, render, bvh, frame
        self.joints_warned = False

    def write(self, stem: str, title: str, generated: Generated) -> SampleFiles:
        """Write the motion of ``generated`` (features (T, D), joints (T, J, 3)) under ``stem``, titled ``title``."""
        out = generated.out
        length = int(out.lengths[0])
        files = {"joints": None, "features": f"{stem}_features.npy", "video": None, "bvh": None, "smpl": None,
                 "mesh_video": None}
        features = out.features[0, :length].cpu().numpy()
        # The earlier sample of these names leaves the manifest, and its files go, before a file of this one is
        # written; this one is listed once all its files are: the manifest never pairs a prompt with another's arrays.
        self.manifest.replace(files["features"])
        save_array(os.path.join(self.out_dir, files["features"]), features)
        # A diverged model or an extreme --cfg / --temperature can give NaN or Inf: keep the arrays, skip what cannot
        # draw or export them, and go on with the other samples.
        finite = bool(np.isfinite(features).all())
        if not finite:
            logger.warning("%s: the motion has NaN or Inf values; its arrays are saved, no video, BVH or SMPL", stem)
        try:
            joints = out.joints[0]
        except ValueError as e:  # a representation without joint positions (SMPL-X rotations)
            joints = None
            if not self.joints_warned:
                logger.warning("no joints, videos or BVH for dataset %r: %s", self.spec.name, e)
                self.joints_warned = True
        if joints is None:
            return SampleFiles(files, finite, None, {})
        if self.frame is not None:
            joints = self.frame.place(joints)  # where the joints source stands, not the canonical frame
        files["joints"] = f"{stem}.npy"
        save_array(os.path.join(self.out_dir, files["joints"]), joints)
        if finite and not np.isfinite(joints).all():  # finite features so large that their positions overflow
            finite = False
            logger.warning("%s: the motion's joint positions hold NaN or Inf (its features are finite but too large); "
                           "its arrays are saved, no video, BVH or SMPL", stem)
        segments = generated.segments
        captions = [(s["start_frame"], s["prompt"]) for s in segments] if segments else None
        export_errors: dict[str, str] = {}
        smpl_fit = self._export(stem, title, joints, captions, files, export_errors) if finite else None
        return SampleFiles(files, finite, smpl_fit, export_errors)

    def _export(self, stem: str, title: str, joints: np.ndarray, captions: list[tuple[int, str]] | None,
                files: dict[str, str | None], export_errors: dict[str, str]) -> FitReport | None:
        """The video, BVH, SMPL and mesh video of finite ``joints`` (T, J, 3), each as asked; fills ``files`` and
        ``export_errors``; the SMPL fit report."""
        spec, video_format, smpl_fit = self.spec, self.exports.video_format, None
        if self.render:
            try:
                video = plot_3d_motion(os.path.join(self.out_dir, f"{stem}.{video_format}"), joints,
                                       spec.kinematic_chain, title=title, fps=spec.fps, fmt=self.fmt,
                                       save_joints=False, captions=captions)
                files["video"] = os.path.basename(video)
            except RenderError as e:
                logger.warning("%s: no video (%s)", stem, e)
        # A failed export leaves the sample listed with the files it has and the error; the others go on.
        if self.bvh:
            try:
                write_bvh(os.path.join(self.out_dir, f"{stem}.bvh"), joints, spec.fps,
                          kinematic_chain=spec.kinematic_chain, source=stem)
                files["bvh"] = f"{stem}.bvh"
            except (OSError, ValueError) as e:
                export_errors["bvh"] = export_failed(stem, "--bvh", e)
        if self.exports.body is None:
            return None
        try:
            smpl_fit = write_smpl(os.path.join(self.out_dir, f"{stem}_smpl.npz"), joints, self.exports.body, spec.fps,
                                  source=stem)
            files["smpl"] = f"{stem}_smpl.npz"
        except (OSError, ValueError) as e:
            export_errors["smpl"] = export_failed(stem, "--smpl", e)
        if self.exports.mesh is not None and files["smpl"]:  # the mesh of the parameters as written, after every file
            try:
                video = render_amass_file(os.path.join(self.out_dir, files["smpl"]), self.exports.mesh,
                                          os.path.join(self.out_dir, f"{stem}_mesh.{video_format}"),
                                          title=title, fmt=self.fmt, captions=captions)
                files["mesh_video"] = os.path.basename(video)
            except RenderError as e:
                logger.warning("%s: no mesh video (%s)", stem, e)
        return smpl_fit


def sample_record(job: SampleJob, seed: int, generated: Generated, written: SampleFiles, spec: DatasetSpec,
                  edit: EditRequest | None = None, span_prompts: list[Prompt] | None = None) -> dict[str, Any]:
    """The manifest's entry of one written sample: prompt, length, seed, files, and what its edit kept (with the
    prompt of each span, ``span_prompts``) or its sequence's segments and transitions."""
    out = generated.out
    length = int(out.lengths[0])
    record = {"index": job.index, "repeat": job.repeat, "prompt": job.prompt.text, "length_frames": length,
              "length_seconds": length / spec.fps, "seed": seed, "finite": written.finite, "files": written.files,
              "length_source": job.prompt.length_source if edit is None else "--edit_source"}
    if written.smpl_fit is not None:
        record["smpl_fit"] = written.smpl_fit._asdict()
    if written.export_errors:
        record["export_errors"] = written.export_errors
    if edit is not None:
        record["unedited_change"] = out.unedited_change(0)
        if out.root_anchors is not None:
            record["root_anchor"] = out.root_anchors[0]
        if span_prompts is not None:
            record["span_prompts"] = [{"prompt": p.text, "frames": [span.start, span.end]}
                                      for p, span in zip(span_prompts, left_to_right(edit.spans))]
    if generated.segments is not None:
        record["segments"] = generated.segments
        record["transitions"] = [list(t) for t in out.transitions]
    return record
