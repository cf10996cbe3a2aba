"""Checking a TensorBoard event file record by record, so that a reader can say where it stops.

TensorBoard's ``EventAccumulator`` stops reading a file at its first damaged or partial record without a word (it
expects a live writer to finish that record later), so a damaged file passes for a shorter run. An event file is a
TFRecord file: each record is ``length`` (uint64, little-endian), the masked CRC-32C of those 8 bytes, ``length``
bytes of a serialized ``Event`` and the masked CRC-32C of them. No torch import: ``plot_loss.py`` runs without it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass


@dataclass
class EventFileCheck:
    path: str
    size: int  # bytes in the file
    records: int  # whole records with good checksums, from the start of the file
    end: int  # the byte just after the last good record: where a reader stops (== size when the file is whole)
    last_step: int | None  # the step of the last good record; None when there is none
    problem: str  # why reading stops at ``end``; "" when the file is whole

    def describe(self) -> str:
        """What the file holds, in a few words: ``0 bytes``, ``reading stops at byte 88 of 100: ...``."""
        if self.size == 0:
            return "0 bytes"
        read = f"{self.records} good record(s)" + (f", the last at step {self.last_step}"
                                                   if self.last_step is not None else "")
        if not self.problem:
            return f"{self.size} bytes, {read}"
        return f"reading stops at byte {self.end} of {self.size}: {self.problem}; {read} before it"


def check_event_file(path: str) -> EventFileCheck:
    """Read ``path`` record by record, checking every length and checksum, up to the first bad or partial record."""
    from google.protobuf.message import DecodeError
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    with open(path, "rb") as f:
        data = f.read()
    offset, records, last, problem = 0, 0, None, ""
    while offset < len(data):
        header = data[offset:offset + 12]
        if len(header) < 12:
            problem = "cut short in a record's header (an unfinished write, or a copy cut off)"
            break
        (length,), (header_crc,) = struct.unpack("<Q", header[:8]), struct.unpack("<I", header[8:])
        if masked_crc32c(header[:8]) != header_crc:
            problem = "a record's length fails its checksum (damaged)"
            break
        payload = data[offset + 12:offset + 12 + length]
        footer = data[offset + 12 + length:offset + 16 + length]
        if len(payload) < length or len(footer) < 4:
            problem = "cut short in a record (an unfinished write, or a copy cut off)"
            break
        if masked_crc32c(payload) != struct.unpack("<I", footer)[0]:
            problem = "a record fails its checksum (damaged)"
            break
        offset, records, last = offset + 16 + length, records + 1, payload
    last_step = None
    if last is not None:
        try:
            last_step = int(Event.FromString(last).step)
        except DecodeError:  # a record with good checksums that holds no Event: a TFRecord file of something else
            pass
    return EventFileCheck(os.fspath(path), len(data), records, offset, last_step, problem)
