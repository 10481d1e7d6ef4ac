"""The real-world table's peer rows, as docs/evaluation.md measures them, on two RealSRSet photos:
the paper's protocol at x4 with Real-ESRGAN x4plus and compact (their released weights, in
../shared/weights) beside bicubic. Skipped with the reason when ../shared is absent."""

from __future__ import annotations

import json
import math

import pytest

from realciao.cli import evaluate
from tests.conftest import shared_path

PHOTOS = ("Lincoln.png", "building.png")  # the two 160x160 photos with most detail, for a short run
PEERS = {"Real-ESRGAN-x4plus": "RealESRGAN_x4plus.safetensors", "Real-ESRGAN-compact": "realesr-animevideov3.safetensors"}
METRICS = ("niqe", "brisque", "piqe")


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    real = tmp_path_factory.mktemp("RealSRSet")
    for name in PHOTOS:  # links, not copies: the data stays in ../shared
        (real / name).symlink_to(shared_path("data", "RealSRSet", name))
    labels = [a for label, file in PEERS.items() for a in ("--label", f"{label}={shared_path('weights', file)}")]
    out = tmp_path_factory.mktemp("eval") / "out"
    args = ["--protocol", "realworld", "--scale", "4", "--real", str(real), *labels,
            "--weights-dir", str(shared_path("data", "iqa_params")), "--threads", "2", "--crop", "0", "-o", str(out)]
    assert evaluate.main(args) == 0
    return out, json.loads((out / "results.json").read_text())


def test_the_peers_are_scored_beside_bicubic_on_every_metric(scored):
    out, document = scored
    rows = document["per_image"]
    assert {(r["method"], r["image"]) for r in rows} == {
        (method, name.removesuffix(".png")) for method in ("bicubic", *PEERS) for name in PHOTOS
    }
    for row in rows:
        assert row["output"] == "640x640"
        for metric in METRICS:
            assert math.isfinite(row[metric]), row
    table = (out / "results.md").read_text()
    assert all(f"| {label} |" in table for label in PEERS)


def test_real_esrgan_x4plus_scores_better_than_bicubic_on_both_photos(scored):
    """What the docs' table shows over 20 photos holds on each of these two (all lower is better;
    measured: NIQE 4.01 and 5.59 against bicubic's 7.57 and 8.61)."""
    _, document = scored
    score = {(r["method"], r["image"], m): r[m] for r in document["per_image"] for m in METRICS}
    for name in PHOTOS:
        image = name.removesuffix(".png")
        for metric in METRICS:
            assert score["Real-ESRGAN-x4plus", image, metric] < score["bicubic", image, metric] - 1, (image, metric)
