#!/usr/bin/env python3
"""Packs real checkpoint directories into seed inputs for tests/fuzz/fuzz_checkpoint.cpp.

  python3 tests/fuzz/make_seeds.py OUT_DIR CHECKPOINT_DIR [CHECKPOINT_DIR ...]

Each checkpoint gives four seeds, one per value of the flags byte (see the target's comment).
"""
import json
import pathlib
import struct
import sys


def pack(flags: int, text: bytes, weights: bytes, optimizer: bytes) -> bytes:
    return (bytes([flags]) + struct.pack("<I", len(text)) + text +
            struct.pack("<I", len(weights)) + weights + optimizer)


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for d in map(pathlib.Path, sys.argv[2:]):
        text = (d / "checkpoint.json").read_bytes()
        files = json.loads(text)["files"]
        weights = (d / files["weights"]["name"]).read_bytes()
        optimizer = (d / files["optimizer"]["name"]).read_bytes()
        for flags in range(4):
            (out / f"{d.name}-{flags}").write_bytes(pack(flags, text, weights, optimizer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
