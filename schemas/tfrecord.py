"""TFRecord files and ``tf.train.Example`` records without TensorFlow (standard library and numpy).

A TFRecord file is a sequence of records, each framed as::

    uint64 length (little endian)
    uint32 masked CRC-32C of the 8 length bytes
    byte   data[length]
    uint32 masked CRC-32C of the data

(masked: ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32), exactly as
TensorFlow writes and checks them. :func:`read_records` checks both CRCs and
raises :class:`RecordFileError` naming the file (and the record) on any
damage; a file cut short is reported as truncated.

:func:`parse_example` decodes the protobuf wire format of a
``tf.train.Example`` (``Features`` map of ``BytesList`` / ``FloatList`` /
``Int64List``) into ``{name: list of values}``.

CRC-32C comes from the ``google-crc32c`` package (C implementation; a
dependency of the Google Cloud client that Beam installs) and falls back to a
table-driven pure Python implementation (correct, ~100x slower) when it is
not installed.
"""

from __future__ import annotations

import os
import struct
from typing import IO, Iterable, Iterator

import numpy as np

from audioscope import storage

_MASK_DELTA = 0xA282EAD8


class RecordFileError(ValueError):
    """A TFRecord file is damaged or cut short (the message names the file)."""


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c_python(data: bytes | memoryview) -> int:
    """CRC-32C (Castagnoli) of ``data`` in pure Python (the fallback; ~100x slower)."""
    crc = 0xFFFFFFFF
    for b in bytes(data):
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


try:
    import google_crc32c as _gcrc

    def crc32c(data: bytes | memoryview) -> int:
        """CRC-32C (Castagnoli) of ``data``."""
        return int(_gcrc.value(bytes(data)))

except ImportError:  # pragma: no cover - where google-crc32c is not installed
    crc32c = crc32c_python


def masked_crc(data: bytes | memoryview) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def iter_framed(fh: IO[bytes], name: str, verify: bool = True) -> Iterator[bytes]:
    """The records of an open TFRecord file, in order, CRCs checked when ``verify``."""
    k = 0
    while True:
        header = fh.read(12)
        if not header:
            return
        if len(header) < 12:
            raise RecordFileError(f"{name} is truncated (record {k} has a partial header): the file was cut short; fetch or write it again")
        (length,) = struct.unpack("<Q", header[:8])
        (length_crc,) = struct.unpack("<I", header[8:])
        if verify and masked_crc(header[:8]) != length_crc:
            raise RecordFileError(f"{name} is damaged (record {k}: bad length checksum): fetch or write it again")
        data = fh.read(length)  # read apart from its checksum: slicing one read would copy the record again
        crc = fh.read(4)
        if len(data) < length or len(crc) < 4:
            raise RecordFileError(f"{name} is truncated (record {k} is cut short): the file was cut short; fetch or write it again")
        if verify and masked_crc(data) != struct.unpack("<I", crc)[0]:
            raise RecordFileError(f"{name} is damaged (record {k}: bad data checksum): fetch or write it again")
        yield data
        k += 1


def read_records(uri: str, verify: bool = True) -> Iterator[bytes]:
    """Every record of a TFRecord file (local path, ``gs://`` or ``s3://``), in order."""
    with storage.open_file(uri) as fh:
        yield from iter_framed(fh, uri, verify)


def frame(data: bytes) -> bytes:
    """One record in TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Write records to a local file (not atomic: callers write a temporary name); the count."""
    n = 0
    with open(path, "wb") as fh:
        for data in records:
            fh.write(frame(data))
            n += 1
        fh.flush()
        os.fsync(fh.fileno())
    return n


# --------------------------------------------------------------------------- tf.train.Example wire format


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("a varint runs past the end of the message")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint is longer than 10 bytes")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a message: ints for varint/fixed, bytes for length-delimited."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("a field runs past the end of the message")
            yield number, wire, buf[pos : pos + n]
            pos += n
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: bytes) -> tuple[str, list]:
    """A ``Feature`` message: (kind, values); kind ``bytes``, ``float`` or ``int64`` (empty: ``bytes``)."""
    for number, wire, value in _fields(buf):
        if wire != 2:
            continue
        assert isinstance(value, bytes)
        if number == 1:
            return "bytes", [v for n, w, v in _fields(value) if n == 1 and w == 2]
        if number == 2:
            floats: list[float] = []
            for n, w, v in _fields(value):
                if n == 1:
                    floats += np.frombuffer(v, "<f4").tolist()  # type: ignore[arg-type]
            return "float", floats
        if number == 3:
            ints: list[int] = []
            for n, w, v in _fields(value):
                if n == 1 and w == 0:
                    ints.append(_int64(v))  # type: ignore[arg-type]
                elif n == 1 and w == 2:
                    pos, packed = 0, v
                    while pos < len(packed):  # type: ignore[arg-type]
                        x, pos = _varint(packed, pos)  # type: ignore[arg-type]
                        ints.append(_int64(x))
            return "int64", ints
    return "bytes", []


def parse_example(data: bytes) -> dict[str, tuple[str, list]]:
    """A serialized ``tf.train.Example`` -> ``{feature name: (kind, values)}``.

    Raises ``ValueError`` when ``data`` is not a well-formed Example.
    """
    out: dict[str, tuple[str, list]] = {}
    for number, wire, features in _fields(data):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(features):  # type: ignore[arg-type]
            if n != 1 or w != 2:
                continue
            key, value = "", b""
            for en, ew, ev in _fields(entry):  # type: ignore[arg-type]
                if en == 1 and ew == 2:
                    key = bytes(ev).decode("utf-8")  # type: ignore[arg-type]
                elif en == 2 and ew == 2:
                    value = ev  # type: ignore[assignment]
            out[key] = _feature(value)
    return out
