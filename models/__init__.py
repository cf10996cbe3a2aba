"""Models and their registries.

Names are resolved lazily (PEP 562), so importing one submodule (``models.quantizers``) does not import the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_tokenizer": "models.loader",
    "Tokenizer": "models.loader",
    "AE_MODELS": "models.tokenizers",
    "VQ_MODELS": "models.tokenizers",
    "TOKENIZERS": "models.tokenizers",
    "PART_AWARE_MODELS": "models.part_aware",
    "build_tokenizer": "models.tokenizers",
    "MARDM_MODELS": "models.mardm",
    "MASK_TRANSFORMERS": "models.mask_transformer",
    "RES_TRANSFORMERS": "models.res_transformer",
    "MaskTransformer": "models.mask_transformer",
    "ResidualTransformer": "models.res_transformer",
    "LengthEstimator": "models.length_estimator",
    "build_text_encoder": "models.text_encoders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
