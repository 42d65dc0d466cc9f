"""The barcode reference corpus (../shared/corpus/barcodes): each image and the payloads it must give.

Owns reading MANIFEST.tsv and the expected files (.txt: one payload, byte for byte; .multi.txt: one
payload per line; no file: a negative that must decode to nothing), and scoring a decoder on it.
Used by the decode tests and bench/decode.py.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# beside the checkout (<repo>/../shared), as the specs are (marketplaces.spec.specs_root); the env var overrides
DEFAULT_DIR = Path(os.environ.get("MARKETSYNC_BARCODE_CORPUS")
                   or Path(__file__).resolve().parents[2] / "shared" / "corpus" / "barcodes")


@dataclass(frozen=True)
class Sample:
    image: Path
    expected: tuple[str, ...]  # empty for a negative
    symbology: str


def load(folder: Path = DEFAULT_DIR) -> list[Sample]:
    samples = []
    with open(folder / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            expected_file = row["expected_file"]
            if expected_file in ("-", ""):
                expected: tuple[str, ...] = ()
            else:
                raw = (folder / expected_file).read_bytes().decode("utf-8")
                expected = tuple(raw.splitlines()) if expected_file.endswith(".multi.txt") else (raw,)
            samples.append(Sample(folder / row["file"], expected, row["symbology"]))
    return samples


def passes(sample: Sample, texts: Iterable[str]) -> bool:
    """Every expected payload was read (negatives: nothing was read)."""
    got = set(texts)
    return all(e in got for e in sample.expected) if sample.expected else not got


def score(decode: Callable[[Path], list[str]], samples: list[Sample]) -> tuple[int, int, list[Sample]]:
    """(passed, total, failures) of a decoder (path -> texts) over the samples."""
    failures = [s for s in samples if not passes(s, decode(s.image))]
    return len(samples) - len(failures), len(samples), failures
