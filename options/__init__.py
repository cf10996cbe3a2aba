"""Command-line options: shared base parser, per-stage parsers, YAML presets (``options/configs/``)."""

from options.base_options import get_base_parser
from options.config import (
    ConfigError,
    epochs_to_iters,
    load_config,
    parse_with_config,
    resolve_max_iters,
    save_config,
)

__all__ = ["ConfigError", "epochs_to_iters", "get_base_parser", "load_config", "parse_with_config",
           "resolve_max_iters", "save_config"]
