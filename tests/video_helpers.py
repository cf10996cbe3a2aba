"""A stand-in ``ffmpeg`` for testing MP4 output on machines without one.

``install_fake_ffmpeg`` writes a Python script that takes the arguments matplotlib's ``FFMpegWriter`` passes, reads
every raw frame from stdin and, instead of encoding, writes to the output path a JSON report on one line (the frame
size, the input and output pixel formats, the codec, the frame rate and the bytes read) followed by the raw frames
(in the file itself, since the video is written under a temporary name and moved into place), then points
``matplotlib.rcParams["animation.ffmpeg_path"]`` at it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

FAKE_FFMPEG = r'''
import json
import sys

args = sys.argv[1:]
split = args.index("-i")  # input options before it, output options after it
inputs, outputs = args[:split], args[split + 2:-1]


def value(options, flag, default=None):
    return options[options.index(flag) + 1] if flag in options else default


data = sys.stdin.buffer.read()
width, height = (int(v) for v in value(inputs, "-s").split("x"))
report = {"width": width, "height": height, "input_pix_fmt": value(inputs, "-pix_fmt"),
          "framerate": float(value(inputs, "-framerate", value(inputs, "-r"))), "codec": value(outputs, "-vcodec"),
          "pix_fmt": value(outputs, "-pix_fmt"), "bytes_read": len(data), "overwrite": "-y" in outputs}
with open(args[-1], "wb") as f:
    f.write(json.dumps(report).encode() + b"\n" + data)
'''


def install_fake_ffmpeg(folder: Path, monkeypatch, body: str = FAKE_FFMPEG) -> Path:
    """Write an executable ``folder/ffmpeg`` running ``body`` with this Python, and make matplotlib use it."""
    folder.mkdir(parents=True, exist_ok=True)
    fake = folder / "ffmpeg"
    fake.write_text(f"#!{sys.executable}\n{body}")
    fake.chmod(0o755)
    monkeypatch.setitem(matplotlib.rcParams, "animation.ffmpeg_path", str(fake))
    return fake


def read_report(path: str) -> dict:
    """The fake's report on the video ``path``."""
    with open(path, "rb") as f:
        return json.loads(f.readline())


def read_frames(path: str) -> np.ndarray:
    """The frames (T, H, W, 4) uint8 RGBA the fake received for the video ``path``."""
    with open(path, "rb") as f:
        report = json.loads(f.readline())
        data = np.frombuffer(f.read(), dtype=np.uint8)
    return data.reshape(-1, report["height"], report["width"], 4)


def assert_h264_frames(path: str, frames: int, fps: float) -> dict:
    """``path`` is an MP4 the fake received ``frames`` whole RGBA frames of an even size for, to be encoded as H.264
    in yuv420p at ``fps``. Returns the report."""
    assert path.endswith(".mp4")
    report = read_report(path)
    assert report["codec"] == "h264" and report["pix_fmt"] == "yuv420p" and report["input_pix_fmt"] == "rgba"
    assert report["framerate"] == fps and report["overwrite"]
    assert report["width"] % 2 == 0 and report["height"] % 2 == 0, report
    assert report["bytes_read"] == frames * report["width"] * report["height"] * 4, report
    return report
