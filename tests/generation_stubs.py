"""Stand-ins for sampling tests: a text encoder that embeds a caption's length, and a generator family whose token
is the per-channel mean of its frames and whose decoding repeats a token over its frames (``make_gen`` builds a
``MotionGenerator`` on them)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from utils.generation import MotionGenerator
from utils.generation_backends import GeneratorBackend

D = 3
UNIT = 4


class StubEncoder:
    dim = 2
    name = "stub"

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[float(len(t)), 1.0] for t in texts])


class StubBackend(GeneratorBackend):
    family = "stub"

    def __init__(self, dim=D):
        self.dim = dim
        self.model = None
        self.sample_calls = []
        self.decode_snaps = []
        self.encoded = []

    def sample_tokens(self, text_emb, token_lengths, settings, generator, known=None, edit_mask=None):
        b, n = text_emb.shape[0], int(token_lengths.max())
        self.sample_calls.append({"text_emb": text_emb.clone(), "token_lengths": token_lengths.clone(),
                                  "known": None if known is None else known.clone(),
                                  "edit_mask": None if edit_mask is None else edit_mask.clone(),
                                  "settings": settings})
        fresh = torch.rand(b, n, self.dim, generator=generator) + 10 * len(self.sample_calls)
        if known is None:
            return fresh
        return torch.where(edit_mask[..., None], fresh, known)

    def encode_motion(self, motion, lengths):
        self.encoded.append(motion.clone())
        b, t, d = motion.shape
        return motion.reshape(b, t // UNIT, UNIT, d).mean(2)

    def decode_tokens(self, tokens, snap):
        self.decode_snaps.append(snap)
        return tokens.float().repeat_interleave(UNIT, dim=1)


def make_gen(representation="humanml3d", max_motion_length=50, mean=None, std=None, dim=D):
    spec = SimpleNamespace(name="synthetic", max_motion_length=max_motion_length, dim_pose=dim, fps=20.0,
                           representation=representation, metres_per_unit=1.0)
    tokenizer = SimpleNamespace(unit_length=UNIT)
    mean = np.resize(np.array([1.0, -2.0, 0.5], np.float32), dim) if mean is None else mean
    std = np.resize(np.array([2.0, 0.5, 3.0], np.float32), dim) if std is None else std
    return MotionGenerator(StubBackend(dim), tokenizer, StubEncoder(), spec, mean, std, torch.device("cpu"), "stub.tar",
                           {"text_encoder": {}})


def source(frames=50, dim=D):
    return (torch.arange(frames * dim, dtype=torch.float32).reshape(frames, dim) / 7.0).sin().numpy() * 3
