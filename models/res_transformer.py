"""MoMask's residual transformer (Guo et al., CVPR 2024, sec. 3.3): predicts RVQ layers 1..Q-1 from the layers below.

Its input is the sum of the code embeddings of layers 0..q-1 plus a layer token; it predicts every valid token of
layer q at once. Its code embeddings are learned tables, as in MoMask (``code_embedding="learned"``, optionally tied
to the output projections with ``share_weight``), or the frozen RVQ codebooks passed by the caller
(``code_embedding="codebook"``), in which case the input is exactly the tokenizer's partial reconstruction
sum_{i<q} codebook_i[idx_i]. The text-conditioned transformer stack it runs on is shared with the base-layer
``models.mask_transformer.MaskTransformer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.mask_schedule import (
    check_batch,
    check_lengths,
    edit_positions,
    lengths_to_mask,
    q_schedule,
    sample_from_logits,
    top_k_filter,
)
from models.mask_transformer import (
    CODE_EMBEDDINGS,
    MOMASK_SIZES,
    TINY_SIZES,
    OutputHead,
    TextConditionedEncoder,
    eval_mode,
    init_weights,
    masked_token_loss,
)

logger = logging.getLogger(__name__)


class ResidualTransformer(TextConditionedEncoder):
    """Predicts RVQ layer q in 1..Q-1 from the code embeddings of layers < q (MoMask sec. 3.3).

    Sequence: [condition token, layer token, x_1..x_N] with x_n = Linear(sum_{i<q} E_i[idx_{n,i}]) + position; the
    layer token is Linear(one_hot(q, Q)). The head maps each position to a code_dim vector h and the logits of
    layer q are <h, W_q[k]> (+ b_q[k]) for the K real codes.

    Code embeddings ``E_i`` (i = 0..Q-2; layer Q-1 never feeds a later layer), each (K + 1, code_dim) with a pad row:
    - ``code_embedding="learned"`` (MoMask): learned tables. With ``share_weight`` the output table W_q that predicts
      layer q is the input table E_q that feeds it to layer q + 1 (for q = 1..Q-2); only E_0 and W_{Q-1} are
      separate and there is no output bias (MoMask's ``embed_proj_shared_weight``, ``token_embed_weight_``,
      ``output_proj_weight_`` are here ``embed_proj_shared``, ``embed_first``, ``proj_last``).
    - ``code_embedding="codebook"``: the frozen tokenizer codebooks, a persistent buffer (so a checkpoint rebuilds
      from ``model_args`` alone). Pass ``codebooks`` (Q or Q-1, K, code_dim), e.g.
      ``torch.stack([layer.codebook for layer in rvq.quantizer.layers])``, at construction, or load them with the
      state dict; the pad row is zero. The output tables are then learned, with bias (``share_weight`` must be
      False: a frozen table cannot double as a trained projection).

    MoMask's 513-way output includes the pad id, which is never a target at valid positions; here the logits cover
    the K codes only, so pad can never be sampled. Non-shared output biases are added once (MoMask adds the logits
    twice in that path) and have shape (Q-1, K+1).

    Args:
        codebook_size: K; num_quantizers: Q >= 2; code_dim: width of the code embeddings.
        text_dim: E; latent_dim, ff_size, num_layers, num_heads, dropout: transformer sizes.
        cond_drop_prob: probability of training a sample without its text (MoMask's residual model: 0.2).
        share_weight: tie output projections to input embeddings (learned embeddings only).
        code_embedding: "learned" | "codebook"; default "codebook" when ``codebooks`` is given, else "learned".
        label_smoothing: of the cross-entropy.
        codebooks: optional (Q or Q-1, K, code_dim) tokenizer codebooks; never stored in ``model_args``.
    """

    def __init__(self, codebook_size: int, num_quantizers: int, code_dim: int, text_dim: int, latent_dim: int = 384,
                 ff_size: int = 1024, num_layers: int = 8, num_heads: int = 6, dropout: float = 0.2,
                 cond_drop_prob: float = 0.2, share_weight: bool = True, code_embedding: str | None = None,
                 label_smoothing: float = 0.0, codebooks: torch.Tensor | None = None) -> None:
        if num_quantizers < 2:
            raise ValueError(f"ResidualTransformer: num_quantizers must be >= 2 (it predicts layers 1..Q-1), "
                             f"got {num_quantizers}")
        if codebook_size < 2:
            raise ValueError(f"ResidualTransformer: codebook_size must be >= 2, got {codebook_size}")
        code_embedding = code_embedding or ("codebook" if codebooks is not None else "learned")
        if code_embedding not in CODE_EMBEDDINGS:
            raise ValueError(f"ResidualTransformer: code_embedding must be one of {CODE_EMBEDDINGS}, "
                             f"got {code_embedding!r}")
        if codebooks is not None and code_embedding != "codebook":
            raise ValueError("ResidualTransformer: codebooks were given but code_embedding='learned'; "
                             "use code_embedding='codebook' (or leave it unset)")
        if code_embedding == "codebook" and share_weight:
            raise ValueError("ResidualTransformer: share_weight=True ties the output projections to learned "
                             "embeddings; with code_embedding='codebook' pass share_weight=False")
        super().__init__(code_dim, text_dim, latent_dim, ff_size, num_layers, num_heads, dropout, cond_drop_prob,
                         label_smoothing)
        self.model_args: dict[str, Any] = dict(
            codebook_size=codebook_size, num_quantizers=num_quantizers, code_dim=code_dim, text_dim=text_dim,
            latent_dim=latent_dim, ff_size=ff_size, num_layers=num_layers, num_heads=num_heads, dropout=dropout,
            cond_drop_prob=cond_drop_prob, share_weight=share_weight, code_embedding=code_embedding,
            label_smoothing=label_smoothing)
        self.codebook_size = codebook_size
        self.num_quantizers = num_quantizers
        self.code_dim = code_dim
        self.pad_id = codebook_size
        self.share_weight = share_weight
        self.code_embedding = code_embedding
        self.quant_emb = nn.Linear(num_quantizers, latent_dim)
        self.output_process = OutputHead(latent_dim, code_dim)
        self.apply(init_weights)

        num_tables, rows = num_quantizers - 1, codebook_size + 1

        def table(n: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(n, rows, code_dim) * 0.02)

        if code_embedding == "learned" and share_weight:
            self.embed_first = table(1)
            self.embed_proj_shared = table(num_tables - 1)
            self.proj_last = table(1)
        else:
            if code_embedding == "learned":
                self.embed_weight = table(num_tables)
            else:
                self.register_buffer("codebook_embed", torch.zeros(num_tables, rows, code_dim))
                if codebooks is not None:
                    self.set_codebooks(codebooks)
                else:
                    logger.info("ResidualTransformer: codebook embeddings are zero until set_codebooks() or "
                                "load_state_dict() fills them")
            self.proj_weight = table(num_tables)
            self.proj_bias = nn.Parameter(torch.zeros(num_tables, rows))

    @torch.no_grad()
    def set_codebooks(self, codebooks: torch.Tensor) -> None:
        """Copy the tokenizer's codebooks (Q or Q-1, K, code_dim) into the frozen input tables (codebook mode)."""
        if self.code_embedding != "codebook":
            raise ValueError("ResidualTransformer.set_codebooks: the model was built with code_embedding='learned'")
        num_tables = self.num_quantizers - 1
        expected = (self.codebook_size, self.code_dim)
        if (codebooks.ndim != 3 or codebooks.shape[0] not in (num_tables, num_tables + 1)
                or tuple(codebooks.shape[1:]) != expected):
            raise ValueError(f"ResidualTransformer.set_codebooks: codebooks must be ({num_tables + 1} or "
                             f"{num_tables}, {expected[0]}, {expected[1]}), got {tuple(codebooks.shape)}")
        self.codebook_embed.zero_()
        self.codebook_embed[:, : self.codebook_size] = codebooks[:num_tables].to(self.codebook_embed)

    def input_tables(self) -> torch.Tensor:
        """(Q-1, K+1, code_dim): table i embeds the codes of layer i (row K = pad)."""
        if self.code_embedding == "codebook":
            return self.codebook_embed
        if self.share_weight:
            return torch.cat([self.embed_first, self.embed_proj_shared], dim=0)
        return self.embed_weight

    def output_tables(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weights (Q-1, K+1, code_dim) and biases (Q-1, K+1) or None; entry q-1 predicts layer q."""
        if self.code_embedding == "learned" and self.share_weight:
            return torch.cat([self.embed_proj_shared, self.proj_last], dim=0), None
        return self.proj_weight, self.proj_bias

    def history(self, ids: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        """Sum of the code embeddings of layers < layer[b].

        Args:
            ids: (B, N, q) codes of layers 0..q-1 (q <= Q-1), pad id at padded positions; layer: (B,) long.
        Returns:
            (B, N, code_dim).
        """
        tables = self.input_tables()
        # One embedding lookup per layer rather than one advanced-index gather over all of them: on CPU the gather's
        # backward accumulated the tables' gradients in a thread-dependent order, so two runs (and a resumed one)
        # drifted apart in the last bits with more than one thread.
        out = torch.zeros(*ids.shape[:2], tables.shape[-1], dtype=tables.dtype, device=ids.device)
        for q in range(ids.shape[-1]):
            keep = (q < layer).to(tables.dtype)[:, None, None]                       # (B, 1, 1)
            out = out + F.embedding(ids[..., q], tables[q]) * keep
        return out

    def logits(self, history: torch.Tensor, layer: torch.Tensor, text_emb: torch.Tensor,
               valid: torch.Tensor) -> torch.Tensor:
        """history (B, N, code_dim), layer (B,) in [1, Q-1], text_emb (B, E), valid (B, N) -> (B, N, K)."""
        layer_token = self.quant_emb(F.one_hot(layer, self.num_quantizers).to(self.quant_emb.weight.dtype))
        prefix = torch.cat([self.condition(text_emb), layer_token[:, None]], dim=1)  # (B, 2, H)
        h = self.output_process(self.encode(history, prefix, valid))               # (B, N, code_dim)
        weight, bias = self.output_tables()
        # Each sample's table picked by a one-hot product, not weight[layer - 1]: that gather's backward summed the
        # samples of one layer in a thread-dependent order on CPU (see ``history``).
        pick = F.one_hot(layer - 1, weight.shape[0]).to(weight.dtype)              # (B, Q-1)
        out = torch.einsum("bnd,bkd->bnk", h, torch.einsum("bq,qkd->bkd", pick, weight).to(h.dtype))
        if bias is not None:
            out = out + (pick @ bias)[:, None].to(out.dtype)
        return out[..., : self.codebook_size]

    def guided_logits(self, history: torch.Tensor, layer: torch.Tensor, text_emb: torch.Tensor, valid: torch.Tensor,
                      cond_scale: float) -> torch.Tensor:
        """uncond + cond_scale * (cond - uncond) with zero text as unconditional; 1 skips the uncond pass."""
        if cond_scale == 1.0:
            return self.logits(history, layer, text_emb, valid)
        batch = history.shape[0]
        both = self.logits(torch.cat([history, history]), torch.cat([layer, layer]),
                           torch.cat([text_emb, torch.zeros_like(text_emb)]), torch.cat([valid, valid]))
        cond, uncond = both[:batch], both[batch:]
        return uncond + cond_scale * (cond - uncond)

    def _padded_ids(self, indices: torch.Tensor, lengths: torch.Tensor, text_emb: torch.Tensor,
                    who: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_lengths(lengths, who)
        check_batch(indices.shape[0], lengths, "indices", who, allow_empty=True)
        lengths = lengths.to(indices.device).long()
        self._check_lengths_text(lengths, text_emb, indices.shape[1], who)
        valid = lengths_to_mask(lengths, indices.shape[1])
        self._check_codes(indices, valid, self.codebook_size, who)
        pad = ~valid if indices.ndim == 2 else ~valid[..., None]
        return indices.long().masked_fill(pad, self.pad_id), lengths, valid

    # ----- training -------------------------------------------------------------------------------------------------
    def forward(self, indices: torch.Tensor, lengths: torch.Tensor,
                text_emb: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross-entropy on one residual layer per sample, drawn by ``q_schedule``, over all its valid tokens.

        Args:
            indices: (B, N, Q) long codes of every layer; padded positions may hold anything (e.g. -1).
            lengths: (B,) valid tokens per sample.
            text_emb: (B, E).
        Returns:
            loss (scalar) and logs {"loss", "acc", "layer"} (detached scalars; "layer" is the mean trained layer).
        """
        if indices.ndim != 3 or indices.shape[2] != self.num_quantizers:
            raise ValueError(f"ResidualTransformer.forward: indices must be (B, N, {self.num_quantizers}), "
                             f"got {tuple(indices.shape)}")
        check_lengths(lengths, "ResidualTransformer.forward")
        check_batch(indices.shape[0], lengths, "indices", "ResidualTransformer.forward")
        ids, lengths, valid = self._padded_ids(indices, lengths, text_emb, "ResidualTransformer.forward")
        batch, max_len, _ = ids.shape
        layer = q_schedule(batch, self.num_quantizers, device=ids.device)           # (B,) in [1, Q-1]
        history = self.history(ids[..., :-1], layer)                                 # (B, N, code_dim)
        targets = ids.gather(2, layer[:, None, None].expand(batch, max_len, 1)).squeeze(2)
        logits = self.logits(history, layer, text_emb, valid)
        loss, acc = masked_token_loss(logits, targets, valid, self.label_smoothing)
        logs = {"loss": loss.detach(), "acc": acc, "layer": layer.float().mean()}
        return loss, logs

    # ----- generation -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, base_indices: torch.Tensor, lengths: torch.Tensor, text_emb: torch.Tensor,
                 cond_scale: float = 5.0, temperature: float = 1.0, topk_filter_thres: float = 0.9,
                 generator: torch.Generator | None = None, sampling: str = "gumbel",
                 known: torch.Tensor | None = None, edit_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict layers 1..Q-1 one after the other, each from the sum of the embeddings of the layers before it.

        Every step applies guidance (MoMask uses 5 for the residual layers), top-k filtering and samples with
        ``temperature``; MoMask always samples these layers with Gumbel-max (``sampling="gumbel"``).

        Editing: with ``known`` and ``edit_mask``, every layer keeps the known codes outside the edit mask (so the
        unedited frames decode from their own residuals; MoMask's editing regenerates them all) and the layers above
        read them as history; only edit positions take sampled codes. Without them the result is exactly that of
        plain generation.

        Args:
            base_indices: (B, N) base-layer codes (pads may hold anything, e.g. -1).
            lengths: (B,) valid tokens per sample (<= N).
            text_emb: (B, E).
            generator: RNG on the model's device for the sampling noise.
            known: (B, N, Q) long codes of every layer kept outside ``edit_mask`` (layer 0 is ignored: the base layer
                is ``base_indices``), given with it.
            edit_mask: (B, N) bool, True at the positions whose layers 1..Q-1 are generated.
        Returns:
            (B, N, Q) long: the base layer unchanged at valid positions, generated layers 1..Q-1 (``known`` where not
            edited), -1 at pads.
        """
        if base_indices.ndim != 2:
            raise ValueError(f"ResidualTransformer.generate: base_indices must be (B, N), "
                             f"got {tuple(base_indices.shape)}")
        device = self.quant_emb.weight.device
        ids, lengths, valid = self._padded_ids(base_indices.to(device), lengths, text_emb.to(device),
                                               "ResidualTransformer.generate")
        text_emb = text_emb.to(device)
        batch = ids.shape[0]
        fixed = None
        if known is not None or edit_mask is not None:
            if known is None or edit_mask is None:
                raise ValueError("ResidualTransformer.generate: editing needs both known (B, N, Q) and edit_mask "
                                 "(B, N)")
            if tuple(known.shape) != (*ids.shape, self.num_quantizers):
                raise ValueError(f"ResidualTransformer.generate: known must be (B, N, Q) = "
                                 f"{(*ids.shape, self.num_quantizers)}, got {tuple(known.shape)}")
            fixed = valid & ~edit_positions(edit_mask, valid, "ResidualTransformer.generate")
            known = known.to(device)
            self._check_codes(known, fixed, self.codebook_size, "ResidualTransformer.generate (known)")
            known = known.long()
        all_ids = [ids]
        with eval_mode(self):
            tables = self.input_tables()
            history = torch.zeros(*ids.shape, self.code_dim, device=device, dtype=tables.dtype)
            for q in range(1, self.num_quantizers):
                history = history + tables[q - 1][ids]
                layer = torch.full((batch,), q, dtype=torch.long, device=device)
                logits = self.guided_logits(history, layer, text_emb, valid, cond_scale).float()   # (B, N, K)
                sampled = sample_from_logits(top_k_filter(logits, topk_filter_thres), temperature, sampling,
                                             generator)
                if fixed is not None:
                    sampled = torch.where(fixed, known[..., q], sampled)
                ids = sampled.masked_fill(~valid, self.pad_id)
                all_ids.append(ids)
        return torch.stack(all_ids, dim=-1).masked_fill(~valid[..., None], -1)


# ---------------------------------------------------------------------------------------------------------------------
# Registry: a registered name is frozen once a checkpoint exists; the Tiny variant is for tests.
# ---------------------------------------------------------------------------------------------------------------------

def MoMask_Res(codebook_size: int, num_quantizers: int, code_dim: int, text_dim: int,
               **overrides: Any) -> ResidualTransformer:
    """Published MoMask residual transformer (same backbone, cdp 0.2, shared weights)."""
    kwargs = {**MOMASK_SIZES, "cond_drop_prob": 0.2, "share_weight": True, **overrides}
    return ResidualTransformer(codebook_size=codebook_size, num_quantizers=num_quantizers, code_dim=code_dim,
                               text_dim=text_dim, **kwargs)


def MoMask_Res_Tiny(codebook_size: int, num_quantizers: int, code_dim: int, text_dim: int,
                    **overrides: Any) -> ResidualTransformer:
    """Test-sized ResidualTransformer."""
    kwargs = {**TINY_SIZES, "cond_drop_prob": 0.2, "share_weight": True, **overrides}
    return ResidualTransformer(codebook_size=codebook_size, num_quantizers=num_quantizers, code_dim=code_dim,
                               text_dim=text_dim, **kwargs)


RES_TRANSFORMERS: dict[str, Callable[..., ResidualTransformer]] = {
    "MoMask-Res": MoMask_Res,
    "MoMask-Res-Tiny": MoMask_Res_Tiny,
}
# The transformer sizes each entry builds when no override is given (as ``MASK_TRANSFORMER_SIZES``).
RES_TRANSFORMER_SIZES: dict[str, dict[str, Any]] = {"MoMask-Res": MOMASK_SIZES, "MoMask-Res-Tiny": TINY_SIZES}
