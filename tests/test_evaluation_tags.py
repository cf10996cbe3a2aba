"""evaluation_MARDM.py's output tags: evaluations of other files write other files."""

from __future__ import annotations

from options.config import parse_with_config
from options.eval_generator_options import get_evaluation_generator_parser
from utils.generator_eval import output_tag


def test_evaluations_of_other_residual_or_tokenizer_files_write_other_files():
    """The residual was named by its run alone and a --tokenizer_path not at all: `--res_ckpt
    .../tres/model/net_best_fid.tar` and `--res_name tres` (its latest.tar), or two tokenizer files, wrote the same
    eval_<tag>.json, the second evaluation's replacing the first's."""
    from utils.generation_backends import SamplingSettings

    cfg = parse_with_config(get_evaluation_generator_parser(), ["--name", "mask", "--dataset_name", "synthetic"])
    settings = SamplingSettings(time_steps=10, cfg=4.0)

    def tag(residual=None, tokenizer_path=None, sha="ab" * 32):
        cfg.tokenizer_path = tokenizer_path
        return output_tag(cfg, "/r/mask/model/latest.tar", "ema", settings, {},
                          {"checkpoint": residual} if residual else None, {"sha256": sha})

    assert tag("/r/tres/model/latest.tar") == "latest_ema_ts10_cfg4_res-tres"  # as before
    assert tag("/r/tres/model/net_best_fid.tar") == "latest_ema_ts10_cfg4_res-tres-net_best_fid"
    assert tag("/elsewhere/res_weights.tar") == "latest_ema_ts10_cfg4_res-res_weights"
    assert tag() == "latest_ema_ts10_cfg4"  # the recorded tokenizer: as before
    assert tag(tokenizer_path="/t/a.tar", sha="12345678" + "0" * 56) == "latest_ema_ts10_cfg4_tok-12345678"
    assert tag(tokenizer_path="/t/a.tar", sha="87654321" + "0" * 56) == "latest_ema_ts10_cfg4_tok-87654321"
