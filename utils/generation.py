"""Text-to-motion sampling from a trained generator: ``load_generator(run).generate(texts, lengths)``.

A generator checkpoint (``stage: "generator"``) records everything sampling needs, so no model flag is repeated: the
network (``model_name``, ``model_args``, weights and their EMA), the tokenizer it was trained on (path and SHA-256),
the text encoder (name, dim, CLIP weights path), the target space its head generates (``latent``, ``fsq_coords``,
``vq_codes``, ``lfq_codes``) and the normalisation of its training data (the tokenizer's). ``load_generator`` rebuilds
all of them and refuses a tokenizer file that is missing or has changed since training, and a text encoder other than
the one the model was trained with (the lookups live in ``utils.generator_checkpoints``). As in DiT and MARDM, the EMA
weights of ``latest.tar`` are used by default.

What differs per generator family (how text embeddings and token counts become tokens, how tokens become motion, the
family's default sampling settings and its own sampling options) lives in a ``GeneratorBackend``;
``GENERATOR_BACKENDS`` (``utils.generation_backends``) maps a family to its backend, which recognises its own
checkpoints (the MoMask backend lives in ``utils.generation_momask`` and registers itself when the backends are
imported). Everything else is shared by
``MotionGenerator``: text encoding, lengths, decoding, de-normalisation and joints. Two families:

- ``mardm`` (MARDM, FSQ-MARDM, VQ-MARDM, LFQ-MARDM; ``train_MARDM.py``): continuous tokens from masked diffusion,
  snapped onto the tokenizer's grid / codebook. Defaults 18 steps, guidance 4.5 (2.5 on KIT-ML).
- ``momask`` (``train_t2m_transformer.py`` + optionally ``train_res_transformer.py``): the masked transformer samples
  the base-layer codes, the residual transformer (``res_run``) the codes of RVQ layers 1..Q-1, and the tokenizer
  decodes them (layers without a residual run decode as zero, so a base-only sample is the coarse motion). Defaults
  10 steps, guidance 4, 2 on KIT-ML (MoMask's evaluation commands); options ``topk_filter_thres`` (0.9), ``sampling``
  ("categorical"; "gumbel" is MoMask's ``gsample``), ``res_cond_scale`` (5) and ``res_temperature`` (1).

``MotionGenerator.edit`` regenerates frame spans of a source motion and keeps its other tokens exactly (temporal
inpainting; spans and source files in ``utils.editing``): the source is encoded with the tokenizer
(``GeneratorBackend.encode_motion``) and the family's model generates only the tokens that cover the spans
(``sample_tokens(known=, edit_mask=)``).

Lengths are in frames, rounded down to whole tokens (``unit_length`` frames) and clamped to the dataset's maximum;
without lengths, the text-to-length estimator of ``<checkpoints_dir>/<dataset>/length_estimator`` samples them. Every
sample is decoded at its own length: the tokenizer's convolutions would otherwise read the padding tokens of the
shorter samples of a batch, so a motion would depend on what it was batched with.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from models.length_estimator import classes_to_lengths, sample_lengths
from models.loader import Tokenizer
from models.text_encoders import TextEncoder
from utils.checkpoint import CheckpointError, file_sha256, load_checkpoint, require_keys, require_types
from utils.dataset_specs import DatasetSpec, spec_from_record
from utils.editing import (
    ROOT_VELOCITY_REPRESENTATIONS,
    FrameSpan,
    anchor_root,
    check_disjoint_spans,
    resolve_spans,
    token_edit_mask,
    unedited_change,
)
from utils.generation_backends import GeneratorBackend, SamplingSettings, backend_for
from utils.generator_checkpoints import (
    LoadedLengthEstimator,
    build_recorded_text_encoder,
    check_text_encoder_request,
    checkpoints_roots,
    estimator_text_encoder,
    load_length_estimator,
    require_stage,
    resolve_generator_checkpoint,
    resolve_tokenizer_file,
)
from utils.generator_stage import decode_each_length
from utils.motion_process import features_to_joints
from utils.normalization import statistics_match

logger = logging.getLogger(__name__)

GENERATOR_STAGE = "generator"
LENGTH_ESTIMATOR_RUN = "length_estimator"
GENERATOR_KEYS = ["stage", "model_name", "model_args", "model", "dataset", "tokenizer", "text_encoder", "target"]
GENERATOR_TYPES = {"model_name": str, "model_args": dict, "model": dict, "ema": (dict, type(None)), "dataset": dict,
                   "tokenizer": dict, "text_encoder": dict, "target": str}


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------

@dataclass
class GeneratedBatch:
    """Generated motion for ``texts``.

    ``features`` (B, T, D) in the dataset's units and ``features_normalised`` (B, T, D) in the generator's
    normalisation, both zero past each sample's length; T = max(lengths). ``lengths`` (B,) frames (multiples of
    ``unit_length``, CPU). ``tokens`` (B, N, ...) the family's raw tokens (snapped when sampled with snapping).
    ``joints`` is a list of (lengths[i], J, 3) float32 arrays, computed on first access. Tensors stay on the
    generator's device.
    """

    texts: list[str]
    features: Tensor
    features_normalised: Tensor
    lengths: Tensor
    tokens: Tensor
    spec: DatasetSpec

    @cached_property
    def joints(self) -> list[np.ndarray]:
        """Joint positions (lengths[i], J, 3) per sample (raises ValueError for representations without joints)."""
        features = self.features.detach().float().cpu().numpy()
        return [np.asarray(features_to_joints(features[i, :n], self.spec), dtype=np.float32)
                for i, n in enumerate(self.lengths.tolist())]


@dataclass
class EditedBatch(GeneratedBatch):
    """Motions generated by ``MotionGenerator.edit``: a ``GeneratedBatch`` of B edits of one source, all of the
    source's length T cut to whole tokens, plus what the edit kept.

    ``source_tokens`` (N, ...) the source's tokens; ``edit_mask`` (N,) bool, True at generated tokens (CPU);
    ``spans`` the frame spans asked for, closed at the source's length; ``reconstruction`` (T, D) the source's
    tokens decoded, in the dataset's units; ``unit_length`` frames per token; ``root_anchors`` per sample, with
    ``anchor_root``, the spans whose root was bent to keep what follows in place (``utils.editing.anchor_root``).
    """

    source_tokens: Tensor
    edit_mask: Tensor
    spans: list[FrameSpan]
    reconstruction: Tensor
    unit_length: int
    root_anchors: list[list[dict]] | None = None

    @property
    def edited_frames(self) -> Tensor:
        """(T,) bool on the CPU: True at the frames of edited tokens."""
        return self.edit_mask.repeat_interleave(self.unit_length)

    def unedited_change(self, index: int = 0) -> dict[str, float] | None:
        """Max and mean absolute difference of sample ``index``'s unedited frames from the source's reconstruction
        (``utils.editing.unedited_change``); None when every token was edited."""
        return unedited_change(self.features[index].detach().float().cpu().numpy(),
                               self.reconstruction.detach().float().cpu().numpy(), self.edited_frames.numpy())


class MotionGenerator:
    """A loaded generator: text encoder -> family backend -> tokenizer decoder -> features and joints.

    Attributes: ``backend`` (its ``model``), ``tokenizer``, ``text_encoder`` (memoising), ``spec`` (the dataset spec
    recorded at training), ``mean``/``std`` (D,) float32 (the generator's normalisation), ``unit_length`` frames per
    token, ``max_frames`` (the dataset's maximum, rounded down to whole tokens), ``device``, ``path`` and ``info``
    (provenance: checkpoint and its SHA-256, weights used, tokenizer, text encoder) for reports and manifests.
    """

    def __init__(self, backend: GeneratorBackend, tokenizer: Tokenizer, text_encoder: TextEncoder, spec: DatasetSpec,
                 mean: np.ndarray, std: np.ndarray, device: torch.device, path: str, info: dict[str, Any],
                 length_estimator_path: str | None = None, text_encoder_path: str | None = None) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.spec = spec
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.device = device
        self.path = path
        self.info = info
        self.unit_length = int(tokenizer.unit_length)
        self.max_frames = (spec.max_motion_length // self.unit_length) * self.unit_length
        self.length_estimator_path = length_estimator_path
        # --text_encoder_path: the CLIP weights replacing the recorded ones, the length estimator's included.
        self.text_encoder_path = text_encoder_path
        self._length_estimator: LoadedLengthEstimator | None = None
        self._length_text_encoder: TextEncoder | None = None
        self._mean_t = torch.as_tensor(self.mean, device=device)
        self._std_t = torch.as_tensor(self.std, device=device)

    @property
    def model(self) -> nn.Module:
        """The family's network (e.g. ``MARDM``)."""
        return self.backend.model

    # ----- lengths --------------------------------------------------------------------------------------------------
    def round_lengths(self, lengths_frames: Any) -> Tensor:
        """Lengths in frames (B,) -> (B,) long on the CPU: rounded down to whole tokens, clamped to ``max_frames``.

        Raises ValueError for a length shorter than one token, or one that is not finite (NaN, Inf).
        """
        frames = torch.as_tensor(lengths_frames).reshape(-1)
        if frames.is_floating_point() and not bool(torch.isfinite(frames).all()):  # NaN / Inf: no int64 to round to
            raise ValueError(f"motion lengths must be finite numbers of frames, got {frames.tolist()}")
        frames = (frames.floor() if frames.is_floating_point() else frames).long().cpu()
        if frames.numel() and int(frames.min()) < self.unit_length:
            raise ValueError(f"motion lengths must be at least one token ({self.unit_length} frames), got "
                             f"{frames.tolist()}")
        too_long = frames > self.max_frames
        if bool(too_long.any()):
            logger.warning("lengths %s exceed the %d frames the model was trained on; clamped",
                           frames[too_long].tolist(), self.max_frames)
        frames = frames.clamp(max=self.max_frames)
        return frames - frames % self.unit_length

    def length_estimator(self) -> LoadedLengthEstimator:
        """The text-to-length estimator (loaded on first use from ``length_estimator_path``)."""
        if self._length_estimator is None:
            if self.length_estimator_path is None:
                raise CheckpointError(f"{self.path}: no length estimator location (the generator is not inside a "
                                      f"<checkpoints_dir>/<dataset>/<name>/model/ folder); give the motion lengths "
                                      f"or a length estimator path")
            estimator = load_length_estimator(self.length_estimator_path, self.device)
            fps = ((estimator.dataset or {}).get("spec") or {}).get("fps")
            if fps is not None and float(fps) != float(self.spec.fps):
                # Its classes count frames of its own dataset: at another rate they would mean other durations.
                raise CheckpointError(f"{estimator.path}: the length estimator was trained on "
                                      f"{estimator.dataset.get('name')!r} at {float(fps)} fps, but the generator's "
                                      f"dataset {self.spec.name!r} is at {float(self.spec.fps)} fps; use an estimator "
                                      f"trained on a {float(self.spec.fps)} fps dataset, or give the motion lengths")
            record = estimator.text_encoder
            self._length_text_encoder = estimator_text_encoder(record, estimator.path, self.text_encoder,
                                                               self.info["text_encoder"].get("path"),
                                                               self.text_encoder_path, self.device)
            expected = estimator.model.model_args["text_dim"]
            if self._length_text_encoder.dim != expected:
                raise CheckpointError(f"{estimator.path}: the estimator takes {expected}-dim text embeddings, its "
                                      f"text encoder {record.get('name')!r} gives {self._length_text_encoder.dim}")
            self._length_estimator = estimator
            logger.info("length estimator %s (text encoder %s)", estimator.path, record.get("name"))
        return self._length_estimator

    @torch.no_grad()
    def estimate_lengths(self, texts: list[str], generator: torch.Generator | None = None,
                         temperature: float = 1.0) -> Tensor:
        """Sample a length in frames per caption from the estimator: (B,) long on the CPU, rounded and clamped as
        ``round_lengths`` (temperature 0 takes the most likely length)."""
        estimator = self.length_estimator()
        text_emb = self._length_text_encoder.encode(list(texts)).to(self.device)
        classes = sample_lengths(estimator.model(text_emb), temperature, generator)
        return self.round_lengths(classes_to_lengths(classes, estimator.unit_length).clamp_min(self.unit_length))

    # ----- decoding -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, tokens: Tensor, token_lengths: Tensor, snap: bool = True) -> Tensor:
        """Tokens (B, N, ...) and their lengths (B,) -> normalised motion (B, N * unit_length, D), zero past each
        length. Samples of equal length are decoded together, each at its own length (``decode_each_length``)."""
        return decode_each_length(lambda part: self.backend.decode_tokens(part, snap), tokens, token_lengths,
                                  self.unit_length, self.spec.dim_pose)

    def denormalize(self, motion: Tensor) -> Tensor:
        """(..., D) in the generator's normalisation -> the dataset's units."""
        return motion * self._std_t.to(motion.device) + self._mean_t.to(motion.device)

    # ----- sampling -------------------------------------------------------------------------------------------------
    def sampling_settings(self, time_steps: int | None = None, cfg: float | None = None, temperature: float = 1.0,
                          snap: bool = True, **options: Any) -> SamplingSettings:
        """The settings ``generate`` would use: None takes the family's default for the generator's dataset (MARDM 18
        steps / guidance 4.5, 2.5 on KIT-ML; MoMask 10 / 4, 2 on KIT-ML), ``options`` the family's own (see
        ``backend.sampling_options``)."""
        return self.backend.settings(time_steps, cfg, temperature, snap, dataset=self.spec.name, **options)

    @torch.no_grad()
    def generate(self, texts: list[str], lengths_frames: list[int] | Tensor | None = None,
                 time_steps: int | None = None, cfg: float | None = None, temperature: float = 1.0,
                 seed: int | None = None, generator: torch.Generator | None = None, snap: bool = True,
                 **options: Any) -> GeneratedBatch:
        """Generate one motion per caption.

        Args:
            texts: B captions.
            lengths_frames: (B,) lengths in frames (rounded down to whole tokens, clamped to ``max_frames``); None
                samples them with the length estimator.
            time_steps, cfg, temperature: sampling settings; None takes the family's default (MARDM: 18, 4.5;
                MoMask: 10, 4; guidance 2.5 / 2 on KIT-ML); temperature 1.0.
            seed: seeds a private generator on the model's device; or pass ``generator``; with neither the global
                RNG is used (as the evaluation protocol, which seeds it per replication, expects).
            snap: project tokens onto the tokenizer's grid / codebook; False is the no-snapping ablation (MARDM).
            options: the family's own sampling options (MoMask: ``topk_filter_thres``, ``sampling``,
                ``res_cond_scale``, ``res_temperature``); others fail.
        Returns:
            ``GeneratedBatch`` (features (B, T, D), lengths (B,), tokens, joints).
        """
        texts = _caption_list(texts)
        settings = self.sampling_settings(time_steps, cfg, temperature, snap, **options)
        generator = self._seeded(seed, generator)
        frames = self.estimate_lengths(texts, generator) if lengths_frames is None \
            else self.round_lengths(lengths_frames)
        if frames.shape[0] != len(texts):
            raise ValueError(f"{len(texts)} captions but {frames.shape[0]} lengths")

        text_emb = self.text_encoder.encode(texts).to(self.device)
        token_lengths = (frames // self.unit_length).to(self.device)
        tokens = self.backend.sample_tokens(text_emb, token_lengths, settings, generator)
        motion = self.decode(tokens, token_lengths, settings.snap)
        valid = (torch.arange(motion.shape[1], device=self.device)[None] < frames.to(self.device)[:, None])[..., None]
        return GeneratedBatch(texts=texts, features=self.denormalize(motion) * valid, features_normalised=motion,
                              lengths=frames, tokens=tokens, spec=self.spec)

    def generate_sequence(self, texts: list[str], lengths_frames: list[int] | Tensor | None = None,
                          transition_frames: int | None = None, **sampling: Any) -> Any:
        """One motion whose consecutive segments follow ``texts``, each generated from its prompt and the seams
        in-betweened (``utils.motion_sequence.generate_sequence``, which documents the arguments): a SequenceBatch."""
        from utils.motion_sequence import generate_sequence

        return generate_sequence(self, texts, lengths_frames, transition_frames, **sampling)

    def _seeded(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        """A private generator on the model's device seeded with ``seed``, else ``generator`` (None: global RNG)."""
        if seed is not None and generator is not None:
            raise ValueError("pass seed or generator, not both")
        if seed is not None:
            return torch.Generator(device=self.device).manual_seed(int(seed))
        return generator

    @torch.no_grad()
    def edit(self, texts: list[str], source: np.ndarray | Tensor, spans: list[FrameSpan] | list[tuple[int, int | None]],
             time_steps: int | None = None, cfg: float | None = None, temperature: float = 1.0,
             seed: int | None = None, generator: torch.Generator | None = None, snap: bool = True,
             anchor_root: bool = False, **options: Any) -> EditedBatch:
        """Regenerate the frames of ``spans`` of a source motion from each caption, keeping the rest.

        The source is normalised with the generator's statistics and encoded with its tokenizer; the tokens that
        cover a span (token i covers frames [i * unit_length, (i + 1) * unit_length); one frame in a span is enough)
        are generated, conditioned on the caption and on the kept tokens, which the model never masks or resamples
        (for MoMask the kept tokens keep all their RVQ layers). The whole token sequence is then decoded, so frames
        next to an edited token may move a little; ``EditedBatch.unedited_change`` measures it.

        Args:
            texts: B captions; sample b edits the source with texts[b].
            source: (T, D) features in the dataset's units (``utils.editing.load_edit_source`` reads a file). The
                edited motions have T // unit_length whole tokens; the last T % unit_length frames are dropped.
            spans: frame spans [start, end) (end None: to the end of the source), checked by
                ``utils.editing.resolve_spans``; spans covering every token make this plain generation at the
                source's length.
            time_steps, cfg, temperature, seed, generator, snap, options: as ``generate``.
            anchor_root: bend the root velocities of each edited span so that the frames after it stand where the
                source's do (``utils.editing.anchor_root``; HumanML3D and essential features): without it, a span
                that travels or turns differently moves everything after it.
        Returns:
            ``EditedBatch`` (features (B, T', D), lengths (B,), tokens, edit mask, source reconstruction, joints).
            Features keep no world placement, so the joints start at the origin facing +Z;
            ``utils.editing.source_frame(source_joints, spec).place(joints)`` puts them where a joints source stands.
        """
        texts = _caption_list(texts)
        self._check_anchor(anchor_root)
        settings = self.sampling_settings(time_steps, cfg, temperature, snap, **options)
        generator = self._seeded(seed, generator)
        src = self._edit_source(source, spans, settings.snap)
        if bool(src.edit_mask.all()):
            logger.info("the edit spans cover every token: plain generation at the source's length")
        batch = len(texts)
        token_lengths = torch.full((batch,), src.num_tokens, device=self.device)
        text_emb = self.text_encoder.encode(texts).to(self.device)
        tokens = self.backend.sample_tokens(text_emb, token_lengths, settings, generator,
                                            known=src.tokens.expand(batch, *src.tokens.shape[1:]),
                                            edit_mask=src.edit_mask.to(self.device)[None].expand(batch, -1))
        return self._edited(texts, tokens, src, settings.snap, anchor_root)

    @torch.no_grad()
    def edit_spans(self, span_texts: list[str], source: np.ndarray | Tensor,
                   spans: list[FrameSpan] | list[tuple[int, int | None]], time_steps: int | None = None,
                   cfg: float | None = None, temperature: float = 1.0, seed: int | None = None,
                   generator: torch.Generator | None = None, snap: bool = True, anchor_root: bool = False,
                   **options: Any) -> EditedBatch:
        """Regenerate each span of a source motion from its own caption, keeping the rest: one edited motion.

        As ``edit``, except that span k is generated from ``span_texts[k]``: the spans are generated one after
        another from left to right, each with every other token known (the spans generated before it included), and
        may not share a token. Returns an ``EditedBatch`` of one sample whose ``texts`` holds the captions joined with
        " / " and whose ``spans`` are the spans, both left to right.
        """
        span_texts = _caption_list(span_texts)
        self._check_anchor(anchor_root)
        settings = self.sampling_settings(time_steps, cfg, temperature, snap, **options)
        generator = self._seeded(seed, generator)
        src = self._edit_source(source, spans, settings.snap)
        if len(span_texts) != len(src.spans):
            raise ValueError(f"{len(span_texts)} captions for {len(src.spans)} edit spans; give one caption per span")
        order = check_disjoint_spans(src.spans, src.num_tokens, self.unit_length)
        masks = [token_edit_mask([src.spans[k]], src.num_tokens, self.unit_length) for k in order]
        tokens = src.tokens
        for k, mask in zip(order, masks):
            text_emb = self.text_encoder.encode([span_texts[k]]).to(self.device)
            tokens = self.backend.sample_tokens(text_emb, torch.tensor([src.num_tokens], device=self.device),
                                                settings, generator, known=tokens, edit_mask=mask.to(self.device)[None])
        src = src._replace(spans=[src.spans[k] for k in order])   # the spans in the order of the captions joined
        return self._edited([" / ".join(span_texts[k] for k in order)], tokens, src, settings.snap, anchor_root)

    def _check_anchor(self, anchor_root: bool) -> None:
        if anchor_root and self.spec.representation not in ROOT_VELOCITY_REPRESENTATIONS:
            raise ValueError(f"anchor_root: dataset {self.spec.name!r} ({self.spec.representation}) does not store the "
                             f"root as HumanML3D's velocities; anchoring applies to "
                             f"{', '.join(ROOT_VELOCITY_REPRESENTATIONS)} features")

    def _edit_source(self, source: np.ndarray | Tensor, spans: list[FrameSpan] | list[tuple[int, int | None]],
                     snap: bool) -> _EditSource:
        """The source of an edit: checked, cut to whole tokens, encoded and decoded again; its spans resolved."""
        # A tensor (a generated motion's features, on the generator's device) goes through torch: numpy reads no
        # CUDA or bf16 tensor.
        features = source.detach().float().cpu() if isinstance(source, Tensor) \
            else torch.as_tensor(np.asarray(source, dtype=np.float32))
        if features.ndim != 2 or features.shape[1] != self.spec.dim_pose:
            raise ValueError(f"source must be features (T, {self.spec.dim_pose}) of dataset {self.spec.name!r}, got "
                             f"shape {tuple(features.shape)}")
        finite = torch.isfinite(features).all(1)
        if not bool(finite.all()):  # the tokenizer would encode it, and the edit would come back NaN without a word
            raise ValueError(f"the source's features hold NaN or Inf values (frame {int((~finite).nonzero()[0])} of "
                             f"{features.shape[0]}, counting from 0)")
        num_tokens = features.shape[0] // self.unit_length
        if num_tokens < 1:
            raise ValueError(f"the source has {features.shape[0]} frames, fewer than one {self.unit_length}-frame "
                             f"token")
        frames = num_tokens * self.unit_length
        if frames > self.max_frames:
            logger.warning("the source has %d frames, more than the %d the model was trained on; it is edited at its "
                           "own length", frames, self.max_frames)
        resolved = resolve_spans(list(spans), features.shape[0], self.unit_length)
        motion = (features[:frames].to(self.device) - self._mean_t) / self._std_t
        tokens = self.backend.encode_motion(motion[None], torch.tensor([frames], device=self.device))
        reconstruction = self.decode(tokens, torch.tensor([num_tokens]), snap)[0]
        return _EditSource(tokens, num_tokens, resolved, token_edit_mask(resolved, num_tokens, self.unit_length),
                           reconstruction)

    def _edited(self, texts: list[str], tokens: Tensor, src: _EditSource, snap: bool,
                anchor: bool = False) -> EditedBatch:
        batch = tokens.shape[0]
        edited = self.decode(tokens, torch.full((batch,), src.num_tokens), snap)
        features, reconstruction = self.denormalize(edited), self.denormalize(src.reconstruction)
        anchors = None
        if anchor:
            frames = src.edit_mask.repeat_interleave(self.unit_length).numpy()
            target = reconstruction.detach().float().cpu().numpy()
            fixed, anchors = [], []
            for sample in features.detach().float().cpu().numpy():
                bent, records = anchor_root(sample, target, frames, self.spec.metres_per_unit)
                fixed.append(bent)
                anchors.append(records)
            features = torch.as_tensor(np.stack(fixed), dtype=features.dtype, device=features.device)
            edited = (features - self._mean_t) / self._std_t
        return EditedBatch(texts=texts, features=features, features_normalised=edited,
                           lengths=torch.full((batch,), src.num_tokens * self.unit_length), tokens=tokens,
                           spec=self.spec, source_tokens=src.tokens[0], edit_mask=src.edit_mask, spans=src.spans,
                           reconstruction=reconstruction, unit_length=self.unit_length, root_anchors=anchors)


class _EditSource(NamedTuple):
    """An edit's source: ``tokens`` (1, N, ...), ``num_tokens`` N, the resolved ``spans``, ``edit_mask`` (N,) bool
    (CPU) of the tokens they touch, ``reconstruction`` (T, D) its tokens decoded, normalised."""

    tokens: Tensor
    num_tokens: int
    spans: list[FrameSpan]
    edit_mask: Tensor
    reconstruction: Tensor


def _caption_list(texts: list[str]) -> list[str]:
    """A non-empty list of captions as strings (a single string is refused, it would be read as characters)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of captions, got a single string")
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("texts is empty: nothing to generate")
    return texts


# ---------------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------------

def _select_weights(state: dict[str, Any], use_ema: bool, path: str) -> tuple[dict[str, Tensor], str]:
    if use_ema:
        if state.get("ema"):
            return state["ema"], "ema"
        # Runs trained without EMA (MoMask's recipe) have nothing else to offer; only a lost EMA deserves a warning.
        trained_with_ema = (state.get("engine") or {}).get("ema_decay") is not None
        (logger.warning if trained_with_ema else logger.info)("%s holds no EMA weights; using the raw model weights",
                                                              path)
    return state["model"], "model"


def _check_residual(res_state: dict[str, Any], res_path: str, state: dict[str, Any], path: str) -> None:
    """A residual run must share the dataset, statistics, tokenizer file and text encoder of its base run."""
    res_data, data = res_state["dataset"], state["dataset"]
    res_stats, stats = ([torch.as_tensor(d[k]).float().numpy() for k in ("mean", "std")] for d in (res_data, data))
    same_stats = statistics_match(*res_stats, *stats)
    res_tok, tok = res_state["tokenizer"], state["tokenizer"]
    res_text, text = res_state["text_encoder"], state["text_encoder"]
    checks = [("dataset", res_data.get("name"), data.get("name")),
              ("dataset mean/std", "equal" if same_stats else "different", "equal"),
              ("tokenizer sha256", res_tok.get("sha256"), tok.get("sha256")),
              ("tokenizer weights", res_tok.get("weights", "model"), tok.get("weights", "model")),
              ("text encoder", (res_text.get("name"), res_text.get("dim")), (text.get("name"), text.get("dim")))]
    for field_name, found, expected in checks:
        if found != expected:
            raise CheckpointError(f"{res_path}: {field_name} is {found!r} in the residual run but {expected!r} in the "
                                  f"masked transformer {path}; both must be trained on the same tokenizer "
                                  f"({tok.get('path')}), data and text encoder")


def load_generator(path_or_run: str, which: str = "latest", use_ema: bool = True, device: str | torch.device = "cpu",
                   text_encoder_path: str | None = None, *, text_encoder: str | None = None,
                   tokenizer_path: str | None = None, length_estimator: str | None = None,
                   res_run: str | None = None, res_which: str | None = None) -> MotionGenerator:
    """Load a generator checkpoint (file, or run folder + ``which``) with its tokenizer and text encoder.

    Args:
        path_or_run: checkpoint file or ``<checkpoints_dir>/<dataset>/<name>`` (see ``resolve_generator_checkpoint``).
        which: ``"latest"`` (default, as MARDM evaluates and samples), ``"best"`` or a file name in ``model/``.
        use_ema: load the EMA weights (default; the raw weights when the checkpoint has none).
        device: where everything runs.
        text_encoder_path: CLIP weights replacing the recorded path (the length estimator's too).
        text_encoder: the encoder the caller expects (``--text_encoder``); another than the recorded one fails.
        tokenizer_path: tokenizer file replacing the recorded one (its SHA-256 may then differ; logged).
        length_estimator: length-estimator file or run; default ``<checkpoints_dir>/<dataset>/length_estimator``
            next to the generator's run.
        res_run: MoMask only: the residual transformer (file, or run folder + ``res_which``, default ``which``)
            that generates RVQ layers 1..Q-1; it must share the masked transformer's tokenizer, data and text encoder.
    Raises:
        CheckpointError naming the file and the field for anything missing or contradicting.
    """
    path = resolve_generator_checkpoint(path_or_run, which)
    device = torch.device(device)
    state = load_checkpoint(path, map_location="cpu")
    require_stage(state, path, GENERATOR_STAGE, "train_MARDM.py or train_t2m_transformer.py")
    require_keys(state, GENERATOR_KEYS, path)
    require_types(state, GENERATOR_TYPES, path)
    backend_cls = backend_for(state, path)
    dataset = state["dataset"]
    require_keys(dataset, ["name", "spec", "mean", "std"], f"{path} (dataset record)")
    spec = spec_from_record(dataset["spec"], source=f"{path} (dataset.spec)")
    mean = torch.as_tensor(dataset["mean"]).float().numpy()
    std = torch.as_tensor(dataset["std"]).float().numpy()

    # A wrong --text_encoder fails before anything heavy is loaded.
    record = dict(state["text_encoder"])
    check_text_encoder_request(record, path, text_encoder)

    tok_record = dict(state["tokenizer"])
    tok_path, tok_sha = resolve_tokenizer_file(tok_record, path, tokenizer_path)
    tokenizer = backend_cls.load_tokenizer(tok_path, state, spec, device)
    tok_mean = torch.as_tensor(tokenizer.dataset["mean"]).float().numpy()
    tok_std = torch.as_tensor(tokenizer.dataset["std"]).float().numpy()
    if not statistics_match(tok_mean, tok_std, mean, std):
        raise CheckpointError(f"{path}: the generator's dataset mean/std differ from those of its tokenizer "
                              f"{tok_path}; decoded motion is in the tokenizer's normalisation, so they must agree")

    weights, weights_name = _select_weights(state, use_ema, path)
    backend = backend_cls.from_checkpoint(state, weights, path, tokenizer, spec, device)
    residual_info = None
    if res_run is not None:
        if not backend_cls.takes_residual:
            raise CheckpointError(f"{path}: {backend_cls.family} generators take no residual run (only MoMask's masked "
                                  f"transformer does); drop res_run / --res_name")
        res_path = resolve_generator_checkpoint(res_run, res_which or which)
        res_state = load_checkpoint(res_path, map_location="cpu")
        require_stage(res_state, res_path, GENERATOR_STAGE, "train_res_transformer.py")
        require_keys(res_state, GENERATOR_KEYS, res_path)
        require_types(res_state, GENERATOR_TYPES, res_path)
        require_keys(res_state["dataset"], ["name", "mean", "std"], f"{res_path} (dataset record)")
        # A run of another kind (a MARDM generator, a masked transformer) is named as such, not as a mismatch.
        backend_cls.check_residual_kind(res_state, res_path)
        _check_residual(res_state, res_path, state, path)
        res_weights, res_weights_name = _select_weights(res_state, use_ema, res_path)
        backend.attach_residual(res_state, res_weights, res_path, device)
        residual_info = {"checkpoint": os.path.abspath(res_path), "checkpoint_sha256": file_sha256(res_path),
                         "model_name": res_state["model_name"], "weights": res_weights_name,
                         "step": res_state.get("step")}
    elif backend_cls.takes_residual and tokenizer.num_quantizers > 1:
        logger.warning("%s: no residual transformer (--res_name / --res_ckpt): only the base layer of the %d-layer "
                       "tokenizer is generated, the other layers are left empty", path, tokenizer.num_quantizers)
    # A path given for CLIP weights may be meant for the length estimator when the generator's encoder takes none.
    clip_weights = text_encoder_path if record.get("name") == "clip" else None
    if text_encoder_path is not None and clip_weights is None:
        logger.warning("%s: the generator's text encoder %r takes no weights file; --text_encoder_path %s is only "
                       "used by a CLIP length estimator", path, record.get("name"), text_encoder_path)
    encoder = build_recorded_text_encoder(record, path, device, text_encoder, clip_weights)
    if encoder.dim != backend.text_dim:
        raise CheckpointError(f"{path}: the model takes {backend.text_dim}-dim text embeddings, text encoder "
                              f"{encoder.name!r} gives {encoder.dim}")

    if length_estimator is None:  # beside the generator's run (or the run a link to its file points into)
        found = [os.path.join(root, spec.name, LENGTH_ESTIMATOR_RUN) for root in checkpoints_roots(path)]
        length_estimator = next((p for p in found if os.path.isdir(p)), found[0] if found else None)
    info = {
        "checkpoint": os.path.abspath(path), "checkpoint_sha256": file_sha256(path), "stage": state["stage"],
        "family": backend_cls.family, "model_name": state["model_name"],
        "target": state["target"], "weights": weights_name, "step": state.get("step"), "epoch": state.get("epoch"),
        "dataset": spec.name,
        "tokenizer": {"path": os.path.abspath(tok_path), "sha256": tok_sha,
                      "recorded_path": tok_record.get("path"), "recorded_sha256": tok_record.get("sha256"),
                      "model_name": tokenizer.model_name, "kind": tokenizer.kind},
        "text_encoder": {"name": encoder.name, "dim": int(encoder.dim),
                         "path": clip_weights or record.get("path")},
    }
    if residual_info is not None:
        info["residual"] = residual_info
    logger.info("generator %s: %s (%s weights, target %s), tokenizer %s, text encoder %s", path, state["model_name"],
                weights_name, state["target"], tok_path, encoder.name)
    return MotionGenerator(backend, tokenizer, encoder, spec, mean, std, device, path, info, length_estimator,
                           text_encoder_path)
