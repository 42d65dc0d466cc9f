"""The hard barcode corpus (tests/edge_devices/hard_corpus, made by its generate.py): a subset read by
`decode_image`'s thorough path as `marketsync decode` reads it (the whole set is in bench/decode.py),
every negative gives nothing, and the camera's FrameDecoder: regions of the last codes, a new code found
within a few frames, still frames skipped, a hard code held still read thoroughly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent import corpus
from edge_agent.barcodes import symbol_image
from edge_agent.decode import FrameDecoder, decode_image, load_image

HARD = Path(__file__).resolve().parent / "hard_corpus"
SAMPLES = corpus.load(HARD)
# One or two of each kind: each is missed by a single zxing-cpp call and needs one of the rescue passes
# (bars turned upright, perspective, local contrast, adaptive black-and-white, curved, glossy, small).
SUBSET = ["rotated__03_code128", "rotated__10_ean13", "perspective__02_ean13", "lowcontrast__05_code128",
          "lowcontrast__06_ean13", "small__01_code128", "glossy__03_datamatrix", "glossy__02_ean13",
          "curved__04_datamatrix", "blurred__05_ean13"]


def test_corpus_is_whole():
    positives = [s for s in SAMPLES if s.expected]
    assert len(positives) == 65 and len(SAMPLES) - len(positives) == 8
    assert all(s.image.exists() for s in SAMPLES)
    marks = [s for s in positives if s.image.name.startswith(("curved", "glossy")) and "datamatrix" in s.image.name]
    assert len(marks) >= 12 and all(s.expected[0].startswith("01") for s in marks)


@pytest.mark.parametrize("name", SUBSET)
def test_hard_picture_read(name):
    sample = next(s for s in SAMPLES if s.image.stem == name)
    texts = [s.text for s in decode_image(load_image(str(sample.image)))]
    assert corpus.passes(sample, texts), (name, texts)


# The negatives likeliest to give a false read (bar-like stripes, a torn DataMatrix, a QR without its
# finders); every pass runs on a negative, so all 8 are left to bench/decode.py.
NEGATIVES = ["negative__02_none", "negative__05_none", "negative__08_none"]


@pytest.mark.parametrize("name", NEGATIVES)
def test_negative_reads_nothing(name):
    sample = next(s for s in SAMPLES if s.image.stem == name)
    assert not sample.expected
    assert decode_image(load_image(str(sample.image))) == []


def _desk(codes: list[tuple[np.ndarray, tuple[int, int]]], noise_seed: int) -> np.ndarray:
    frame = np.full((720, 1280), 150, np.uint8)
    for sym, (x, y) in codes:
        frame[y - 20:y + sym.shape[0] + 20, x - 20:x + sym.shape[1] + 20] = 235
        frame[y:y + sym.shape[0], x:x + sym.shape[1]] = np.where(sym < 128, 30, 235)
    rng = np.random.default_rng(noise_seed)
    return np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)


def test_frame_decoder_regions_new_codes_and_still_frames():
    c128 = np.asarray(symbol_image("code128", "WB-ORDER-42", 3, 120).convert("L"))
    ean = np.asarray(symbol_image("ean13", "4601234567893", 3, 110).convert("L"))
    vertical = np.ascontiguousarray(np.rot90(np.asarray(symbol_image("code128", "OZ-77", 3, 90).convert("L"))))
    dec = FrameDecoder(full_every=5)
    for i in range(8):  # the parcel moves a little every frame: regions only, between whole-frame passes
        got = dec.decode(_desk([(c128, (200 + 3 * i, 100)), (vertical, (900, 300 + 2 * i))], i))
        assert sorted(s.text for s in got) == ["OZ-77", "WB-ORDER-42"]
    assert dec.stats.regions >= 5 and dec.stats.full <= 3
    seen_at = None
    for i in range(8, 16):  # a second parcel comes into view elsewhere: found by the next whole-frame pass
        got = dec.decode(_desk([(c128, (200 + 3 * i, 100)), (vertical, (900, 300)), (ean, (300, 450))], i))
        if "4601234567893" in {s.text for s in got}:
            seen_at = seen_at or i
    assert seen_at is not None and seen_at - 8 < 5
    still = _desk([(c128, (300, 100))], 99)
    dec.decode(still)
    before = dec.stats.still
    assert [s.text for s in dec.decode(still.copy())] == ["WB-ORDER-42"]
    assert dec.stats.still == before + 1


@pytest.mark.parametrize("name", ["rotated__03_code128", "small__01_code128"])  # 800x600 whole; 1280x960 by label
def test_frame_decoder_reads_a_hard_code_held_still(name):
    sample = next(s for s in SAMPLES if s.image.stem == name)
    picture = load_image(str(sample.image))
    assert decode_image(picture, thorough=False) == []  # the fast pass alone cannot read it
    dec = FrameDecoder()
    assert dec.decode(picture) == []
    assert [s.text for s in dec.decode(picture.copy())] == list(sample.expected)  # held still: read thoroughly
    assert [s.text for s in dec.decode(picture.copy())] == list(sample.expected)
    assert dec.stats.thorough == 1


def test_frame_decoder_spares_the_thorough_pass_on_an_empty_picture():
    """A still frame with nothing in it (a blank wall, a covered lens, the lights off) holds no code: no
    thorough pass (on 1280x720 it costs ~0.25 s of the box's core and ~15 MB of copies); a still
    frame with something in it is still read thoroughly once."""
    rng = np.random.default_rng(3)
    for level in (160, 8):  # a grey wall; the dark
        blank = np.clip(level + rng.normal(0, 3, (720, 1280)), 0, 255).astype(np.uint8)
        dec = FrameDecoder()
        assert dec.decode(blank) == [] and dec.decode(blank.copy()) == [] and dec.decode(blank.copy()) == []
        assert dec.stats.still == 2 and dec.stats.thorough == 0
    table = _desk([], 5)
    table[200:500, 300:900] = 90  # a parcel on the table, nothing to read on it
    dec = FrameDecoder()
    assert dec.decode(table) == [] and dec.decode(table.copy()) == []
    assert dec.stats.thorough == 1
