"""The Guo et al. (CVPR 2022, "Generating Diverse and Natural 3D Human Motions from Text") text/motion evaluator.

Three networks embed a caption and a motion into one space; FID, R-precision, MM-Dist, Diversity and Multimodality
are all computed on these embeddings (``utils/metrics.py``). Module and parameter names follow the released
``text_mot_match/model/finest.tar`` so its three state_dicts load as they are:

- ``MovementConvEncoder``: two stride-2 convolutions and a per-step linear layer, (B, T, D) -> (B, T // 4, latent).
- ``MotionEncoderBiGRUCo``: bidirectional GRU over the first ``m_len // unit_length`` movement steps.
- ``TextEncoderBiGRUCo``: bidirectional GRU over word vectors plus a projected POS one-hot.

Both GRUs start from a learned initial state (parameter ``hidden``, shape (2, 1, H)), not from zeros.
``TextMotionEvaluator`` bundles the three with the feature slice the movement encoder ignores (the foot contacts of
the HumanML3D layout), so callers pass whole normalised motions.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

# The released evaluator's widths (the dataset opt.txt of text-to-motion and the hard-coded values of its wrapper).
EVALUATOR_SIZES: dict[str, dict[str, int]] = {
    "official": dict(dim_movement_enc_hidden=512, dim_movement_latent=512, dim_text_hidden=512,
                     dim_motion_hidden=1024, dim_coemb_hidden=512),
    "small": dict(dim_movement_enc_hidden=256, dim_movement_latent=256, dim_text_hidden=256,
                  dim_motion_hidden=512, dim_coemb_hidden=256),
    "tiny": dict(dim_movement_enc_hidden=16, dim_movement_latent=16, dim_text_hidden=16,
                 dim_motion_hidden=24, dim_coemb_hidden=8),
}


def _init_weight(module: nn.Module) -> None:
    """Xavier-normal weights and zero biases for linear and conv layers (the reference initialisation)."""
    if isinstance(module, (nn.Conv1d, nn.Linear)):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _output_head(hidden_size: int, output_size: int) -> nn.Sequential:
    # Indices 0, 1, 3 carry the parameters; the names must stay ``output_net.{0,1,3}`` for the released weights.
    return nn.Sequential(
        nn.Linear(hidden_size * 2, hidden_size),
        nn.LayerNorm(hidden_size),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden_size, output_size),
    )


def _check_lengths(lengths: torch.Tensor, batch: int, max_len: int, what: str) -> torch.Tensor:
    """Lengths as a CPU int64 vector, one per row of the batch, each in [1, max_len] (``pack_padded_sequence``
    refuses anything else)."""
    lengths = torch.as_tensor(lengths).reshape(-1).to(device="cpu", dtype=torch.int64)
    if lengths.numel() != batch:
        raise ValueError(f"{what}: expected one per row of the batch ({batch}), got {lengths.numel()}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(f"{what} must lie in [1, {max_len}] (the padded length), got {lengths.tolist()}")
    return lengths


class MovementConvEncoder(nn.Module):
    """Two Conv1d(k4, s2, p1) + Dropout + LeakyReLU(0.2) blocks, then a per-step Linear: 4x temporal downsampling."""

    downsample = 4

    def __init__(self, input_size: int, hidden_size: int, output_size: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(input_size, hidden_size, 4, 2, 1),
            nn.Dropout(dropout),
            nn.LeakyReLU(0.2),
            nn.Conv1d(hidden_size, output_size, 4, 2, 1),
            nn.Dropout(dropout),
            nn.LeakyReLU(0.2),
        )
        self.out_net = nn.Linear(output_size, output_size)
        self.apply(_init_weight)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> movement latents (B, T // 4, output_size).

        The convolutions run over the whole padded sequence, so the padding must be exact zeros (the last valid step
        sees 2-3 frames past the motion's end).
        """
        return self.out_net(self.conv_features(motion))

    def conv_features(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> the convolutions' output before ``out_net`` (B, T // 4, output_size)."""
        return self.main(motion.transpose(1, 2)).transpose(1, 2)


class TextEncoderBiGRUCo(nn.Module):
    """Caption encoder: (word vector + Linear(POS one-hot)) -> Linear -> BiGRU -> Linear/LayerNorm/LReLU/Linear.

    With ``vocab_size`` set, the word vectors come from a learned ``nn.Embedding`` (parameter ``word_emb.weight``)
    and ``forward`` takes integer word ids instead of vectors; that is how an evaluator is trained on a dataset whose
    vocabulary has no GloVe vectors (``utils.word_vectorizer.LearnedVocab``).
    """

    def __init__(self, word_size: int, pos_size: int, hidden_size: int, output_size: int,
                 vocab_size: int | None = None) -> None:
        super().__init__()
        self.word_emb = nn.Embedding(vocab_size, word_size) if vocab_size else None
        self.pos_emb = nn.Linear(pos_size, word_size)
        self.input_emb = nn.Linear(word_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = _output_head(hidden_size, output_size)
        self.pos_emb.apply(_init_weight)
        self.input_emb.apply(_init_weight)
        self.output_net.apply(_init_weight)
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, word_embs: torch.Tensor, pos_ohot: torch.Tensor, cap_lens: torch.Tensor) -> torch.Tensor:
        """Word vectors (B, L, dim_word) (or word ids (B, L) with a learned vocabulary), POS one-hots (B, L, P),
        caption lengths (B,) including sos/eos -> text embedding (B, output_size).

        The GRU reads only the first ``cap_lens[i]`` tokens. Captions need not be sorted by length: the packing
        sorts internally and returns rows in input order (the reference requires descending order; for sorted
        input both give the same result).
        """
        if self.word_emb is not None:
            if word_embs.is_floating_point() or word_embs.dim() != 2:
                raise ValueError("this text encoder has a learned vocabulary and takes integer word ids (B, L), "
                                 f"got a {word_embs.dtype} tensor of shape {tuple(word_embs.shape)}")
            word_embs = self.word_emb(word_embs)
        elif word_embs.dim() != 3 or word_embs.shape[-1] != self.pos_emb.out_features:
            raise ValueError(f"word vectors must be (B, L, {self.pos_emb.out_features}), "
                             f"got shape {tuple(word_embs.shape)}")
        lengths = _check_lengths(cap_lens, word_embs.shape[0], word_embs.shape[1], "caption lengths (cap_lens)")
        inputs = self.input_emb(word_embs + self.pos_emb(pos_ohot))
        h0 = self.hidden.expand(-1, inputs.shape[0], -1).contiguous()
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        _, h_last = self.gru(packed, h0)
        return self.output_net(torch.cat([h_last[0], h_last[1]], dim=-1))


class MotionEncoderBiGRUCo(nn.Module):
    """Motion encoder over movement latents: Linear -> BiGRU -> Linear/LayerNorm/LReLU/Linear."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int) -> None:
        super().__init__()
        self.input_emb = nn.Linear(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)
        self.output_net = _output_head(hidden_size, output_size)
        self.input_emb.apply(_init_weight)
        self.output_net.apply(_init_weight)
        self.hidden = nn.Parameter(torch.randn(2, 1, hidden_size))

    def forward(self, movements: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """Movement latents (B, N, input_size), valid steps per sample (B,) (= m_len // unit_length)
        -> motion embedding (B, output_size). Rows come back in input order, sorted or not."""
        return self._run(self.input_emb(movements), steps, self.gru)

    def _run(self, inputs: torch.Tensor, steps: torch.Tensor, gru: nn.GRU) -> torch.Tensor:
        lengths = _check_lengths(steps, inputs.shape[0], inputs.shape[1], "motion steps (m_lens // unit_length)")
        h0 = self.hidden.expand(-1, inputs.shape[0], -1).contiguous()
        packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
        _, h_last = gru(packed, h0)
        return self.output_net(torch.cat([h_last[0], h_last[1]], dim=-1))

    def folded_gru(self, pre: nn.Linear) -> nn.GRU:
        """A GRU over the inputs of ``pre`` that computes ``gru(input_emb(pre(x)))`` with one input projection.

        ``pre`` (the movement encoder's ``out_net``), ``input_emb`` and the GRU's input projection are consecutive
        affine maps, so ``W_ih (W_e (W_o x + b_o) + b_e) + b_ih`` folds into one ``(3 H, pre.in_features)`` matrix
        per direction. At the released widths each GRU step then projects 512 inputs instead of 1024 and the two
        per-step linear layers disappear. Folded in float64 and cast back, so the result equals the three-step
        computation within float32 rounding. The returned module is derived, holds no gradients and is never saved.
        """
        gru = self.gru
        # Built on the meta device: every weight is overwritten below, and random initialisation would draw from the
        # global RNG (an evaluation that reseeds would then differ between its first call and later ones).
        folded = nn.GRU(pre.in_features, gru.hidden_size, batch_first=True, bidirectional=True, device="meta",
                        dtype=gru.weight_hh_l0.dtype).to_empty(device=gru.weight_hh_l0.device).requires_grad_(False)
        w_pre, b_pre = pre.weight.detach().double(), pre.bias.detach().double()
        w_emb, b_emb = self.input_emb.weight.detach().double(), self.input_emb.bias.detach().double()
        w_in, b_in = w_emb @ w_pre, w_emb @ b_pre + b_emb  # input_emb(pre(x)) = w_in x + b_in
        with torch.no_grad():
            for suffix in ("_l0", "_l0_reverse"):
                w_ih = getattr(gru, "weight_ih" + suffix).detach().double()
                b_ih = getattr(gru, "bias_ih" + suffix).detach().double()
                getattr(folded, "weight_ih" + suffix).copy_(w_ih @ w_in)
                getattr(folded, "bias_ih" + suffix).copy_(w_ih @ b_in + b_ih)
                getattr(folded, "weight_hh" + suffix).copy_(getattr(gru, "weight_hh" + suffix))
                getattr(folded, "bias_hh" + suffix).copy_(getattr(gru, "bias_hh" + suffix))
        return folded

    def forward_folded(self, features: torch.Tensor, steps: torch.Tensor, folded: nn.GRU) -> torch.Tensor:
        """``forward(pre(features), steps)`` through ``folded = self.folded_gru(pre)``: (B, N, F), (B,) -> (B, E)."""
        return self._run(features, steps, folded)


class TextMotionEvaluator(nn.Module):
    """The three evaluator networks plus the feature slice the movement encoder does not see.

    ``ignore_dims`` is the ``[start, stop)`` slice of the motion features left out of the movement encoder: the
    4 foot-contact dims of the HumanML3D layout (the reference's ``motions[..., :-4]``), or ``None`` for layouts
    without contacts (MARDM's 67-dim evaluator). ``unit_length`` divides the frame lengths into movement steps; it
    must match the encoder's 4x downsampling for the released weights.
    """

    def __init__(self, *, dim_pose: int, ignore_dims: tuple[int, int] | None = None, dim_word: int = 300,
                 dim_pos_ohot: int = 15, dim_movement_enc_hidden: int = 512, dim_movement_latent: int = 512,
                 dim_text_hidden: int = 512, dim_motion_hidden: int = 1024, dim_coemb_hidden: int = 512,
                 unit_length: int = 4, vocab_size: int | None = None) -> None:
        super().__init__()
        if ignore_dims is not None:
            start, stop = (int(v) for v in ignore_dims)
            if not 0 <= start < stop <= dim_pose:
                raise ValueError(f"ignore_dims must be a slice [start, stop) inside [0, {dim_pose}), "
                                 f"got {ignore_dims}")
            if stop - start == dim_pose:  # the movement encoder would get no input channel
                raise ValueError(f"ignore_dims {ignore_dims} leave none of the {dim_pose} motion features to the "
                                 f"movement encoder; expected a slice narrower than the features")
            ignore_dims = (start, stop)
        if unit_length < 1:
            raise ValueError(f"unit_length must be >= 1, got {unit_length}")
        self.dim_pose = dim_pose
        self.ignore_dims = ignore_dims
        self.unit_length = unit_length
        dim_movement_input = dim_pose - (ignore_dims[1] - ignore_dims[0] if ignore_dims else 0)
        self.movement_encoder = MovementConvEncoder(dim_movement_input, dim_movement_enc_hidden, dim_movement_latent)
        self.text_encoder = TextEncoderBiGRUCo(dim_word, dim_pos_ohot, dim_text_hidden, dim_coemb_hidden,
                                               vocab_size=vocab_size)
        self.motion_encoder = MotionEncoderBiGRUCo(dim_movement_latent, dim_motion_hidden, dim_coemb_hidden)
        # Inference runs the motion GRU with its input maps folded (see encode_motion); False keeps the released
        # three-step computation everywhere (the benchmark's baseline).
        self.fold_input_maps = True
        self._folded: tuple[tuple, nn.GRU] | None = None  # (key of the weights it was folded from, folded GRU)

    def movement_input(self, motion: torch.Tensor) -> torch.Tensor:
        """Normalised motion (B, T, dim_pose) -> the features the movement encoder sees (B, T, dim_pose - ignored)."""
        if motion.dim() != 3 or motion.shape[-1] != self.dim_pose:
            raise ValueError(f"motions must be (B, T, {self.dim_pose}), got shape {tuple(motion.shape)}")
        if self.ignore_dims is None:
            return motion
        start, stop = self.ignore_dims
        if stop == self.dim_pose:
            return motion[..., :start]
        return torch.cat([motion[..., :start], motion[..., stop:]], dim=-1)

    def encode_movements(self, motion: torch.Tensor) -> torch.Tensor:
        """Normalised motion (B, T, dim_pose) -> movement latents (B, T // 4, dim_movement_latent)."""
        return self.movement_encoder(self.movement_input(motion))

    def encode_motion(self, motion: torch.Tensor, m_lens: torch.Tensor) -> torch.Tensor:
        """Normalised motion (B, T, dim_pose), lengths in frames (B,) -> motion embedding (B, dim_coemb_hidden).

        The GRU reads the first ``m_len // unit_length`` movement steps (floor division, as the reference)."""
        steps = torch.as_tensor(m_lens).reshape(-1).cpu().long() // self.unit_length
        if self.fold_input_maps and not self.training and not torch.is_grad_enabled():
            # Inference only: training needs the gradients of the separate layers. About 1.3x faster at the
            # released widths, equal to the three-step path within float32 rounding (MotionEncoderBiGRUCo.folded_gru).
            features = self.movement_encoder.conv_features(self.movement_input(motion))
            return self.motion_encoder.forward_folded(features, steps, self._folded_gru())
        return self.motion_encoder(self.encode_movements(motion), steps)

    def _folded_gru(self) -> nn.GRU:
        """The folded motion GRU, rebuilt whenever a weight it depends on has changed (step, load, device move)."""
        sources = [*self.movement_encoder.out_net.parameters(), *self.motion_encoder.input_emb.parameters(),
                   *self.motion_encoder.gru.parameters()]
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in sources)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, self.motion_encoder.folded_gru(self.movement_encoder.out_net))
        return self._folded[1]

    def encode_text(self, word_embs: torch.Tensor, pos_ohot: torch.Tensor, cap_lens: torch.Tensor) -> torch.Tensor:
        """Word vectors (B, L, dim_word) or ids (B, L), POS one-hots (B, L, P), lengths (B,) -> (B, dim_coemb)."""
        return self.text_encoder(word_embs, pos_ohot, cap_lens)
