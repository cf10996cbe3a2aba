"""What render.py reads before it draws (``utils.render_inputs``): the dataset statistics behind ``--denorm``."""

from __future__ import annotations

import re

import numpy as np
import pytest

from utils.dataset_specs import get_dataset_spec
from utils.render_inputs import load_statistics


def _save_statistics(root, width: int) -> None:
    np.save(root / "Mean.npy", np.linspace(-1, 1, width, dtype=np.float32))
    np.save(root / "Std.npy", np.linspace(0.5, 2, width, dtype=np.float32))


@pytest.mark.parametrize("name, width", [("t2m", 263), ("t2m_67", 67), ("t2m_67", 263)])
def test_statistics_are_cut_to_the_datasets_features(tmp_path, name, width):
    """A spec on a leading slice of wider files (t2m_67 of HumanML3D's 263) takes statistics of either width."""
    _save_statistics(tmp_path, width)
    spec = get_dataset_spec(name, str(tmp_path))
    mean, std = load_statistics(spec)
    assert mean.shape == std.shape == (spec.dim_pose,) and mean.dtype == std.dtype == np.float32
    np.testing.assert_array_equal(std, np.linspace(0.5, 2, width, dtype=np.float32)[:spec.dim_pose])


@pytest.mark.parametrize("name, widths", [("t2m", r"\(263,\)"), ("t2m_67", r"\(67,\) or \(263,\)")])
def test_statistics_of_another_width_name_every_width_the_dataset_takes(tmp_path, name, widths):
    _save_statistics(tmp_path, 10)
    with pytest.raises(ValueError, match=rf"Mean.npy: expected shape {widths} for dataset '{name}', got \(10,\)"):
        load_statistics(get_dataset_spec(name, str(tmp_path)))


@pytest.mark.parametrize("content", [b"", b"0 0 0\n"], ids=["empty", "text"])
def test_a_damaged_statistics_file_is_named(tmp_path, content):
    """An empty or text Mean.npy is a ValueError naming the file (it was numpy's bare EOFError or its words about
    pickled data, naming no file)."""
    (tmp_path / "Mean.npy").write_bytes(content)
    np.save(tmp_path / "Std.npy", np.ones(263, np.float32))
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'Mean.npy'))}: cannot read as a .npy array"):
        load_statistics(get_dataset_spec("t2m", str(tmp_path)))
