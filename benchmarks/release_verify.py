#!/usr/bin/env python
"""Release verification benchmark: hashing a local release copy on one thread and on several.

Writes a synthetic release copy (``--files`` files of ``--mib`` MiB of random
bytes each, and its manifest) into a temporary folder, then, in one run:

  baseline   one-thread SHA-256 of every file (hashlib, read in 8 MiB chunks),
             the same work `release verify` did before it hashed in parallel;
  verify     `check_dir` (what `audioscope release verify` and a loader's first
             use run) with --jobs threads;
  manifest   writing the manifest of --manifest-files entries as one string
             (`Manifest.to_json`) and streamed (`Manifest.iter_json`), peak
             memory of each (tracemalloc).

It prints seconds, GiB/s and the ratio baseline / verify. The files are read
from the page cache after the first pass (both are measured warm), so this
measures hashing, not the disk.

    .venv/bin/python benchmarks/release_verify.py --files 32 --mib 64 --jobs 8
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from audioscope.curation.manifest import FileEntry, Manifest, check_dir, sha256_file  # noqa: E402


def _write_copy(folder: str, files: int, mib: int) -> Manifest:
    entries = []
    block = os.urandom(1 << 20)
    for i in range(files):
        rel = f"train/r/s-{i:05d}.tfrecord"
        path = os.path.join(folder, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        h = hashlib.sha256()
        with open(path, "wb") as f:
            for k in range(mib):
                chunk = bytes([i & 0xFF, k & 0xFF]) + block[2:]
                f.write(chunk)
                h.update(chunk)
        entries.append(FileEntry(rel, mib << 20, h.hexdigest()))
    m = Manifest(name="bench", version="1.0.0", created="2026-01-01T00:00:00Z", files=entries)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        f.write(m.to_json())
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--mib", type=int, default=32, help="MiB per file")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--manifest-files", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="where to write the copy (default: a temporary folder)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(prefix="release-verify-", dir=args.dir)
    try:
        m = _write_copy(folder, args.files, args.mib)
        gib = args.files * args.mib / 1024
        paths = [os.path.join(folder, *e.path.split("/")) for e in m.files]
        for p in paths:  # warm the page cache for both measurements
            sha256_file(p)
        t = time.perf_counter()
        for p in paths:
            sha256_file(p)
        base = time.perf_counter() - t
        t = time.perf_counter()
        report = check_dir(folder, jobs=args.jobs)
        par = time.perf_counter() - t
        assert report.ok, report.problems
        print(f"copy: {args.files} files x {args.mib} MiB = {gib:.2f} GiB; {os.cpu_count()} cores")
        print(f"baseline (1 thread)  {base:7.2f} s  {gib / base:5.2f} GiB/s")
        print(f"verify ({args.jobs} threads)  {par:7.2f} s  {gib / par:5.2f} GiB/s")
        print(f"ratio baseline / verify: {base / par:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    entries = [FileEntry(f"train/r/s-{i:07d}.tfrecord", i, "ab" * 32) for i in range(args.manifest_files)]
    big = Manifest(name="bench", version="1.0.0", created="2026-01-01T00:00:00Z", files=entries)
    for label, write in (
        ("to_json (one string)", lambda f: f.write(big.to_json())),
        ("iter_json (streamed)", lambda f: [f.write(piece) for piece in big.iter_json()]),
    ):
        with tempfile.TemporaryFile("w") as f:
            tracemalloc.start()
            t = time.perf_counter()
            write(f)
            took = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        print(f"manifest of {args.manifest_files} files, {label}: {took:.2f} s, peak {peak / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
