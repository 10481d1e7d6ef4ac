"""realciao-eval's report (realciao.evaluation.report, crops, plots): crops where the image has
most detail, a plot per metric, and an HTML file that opens offline and shows only files that exist."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from urllib.parse import unquote

import numpy as np
import pytest
import torch
from PIL import Image

from realciao.cli import evaluate
from realciao.evaluation.crops import detail_places, lr_view
from realciao.evaluation.plots import plot_scores
from tests.test_peers import write_tiny_peers


def _textured_in_one_corner(size=(60, 80), seed=0) -> np.ndarray:
    """Flat grey, with noise texture in a 16 x 20 patch at the bottom right."""
    image = np.full((*size, 3), 0.5, dtype=np.float32)
    patch = np.random.default_rng(seed).random((16, 20, 3), dtype=np.float32)
    image[40:56, 56:76] = patch
    return image


def test_crops_go_where_the_detail_is_and_do_not_overlap():
    lr = _textured_in_one_corner()
    places = detail_places(lr, (240, 320), crop=64, count=2)  # x4: a 64 px crop is 16 LR px
    assert len(places) == 2
    (top, left, height, width), second = places
    assert (height, width) == (64, 64)
    assert 40 * 4 - 16 <= top <= 56 * 4 - 48 and 56 * 4 - 16 <= left <= 76 * 4 - 48  # on the patch
    t2, l2 = second[:2]
    assert abs(t2 - top) >= 2 * 64 or abs(l2 - left) >= 2 * 64  # a different part: at least a crop between
    # a flat image: the centre
    flat = np.full((60, 80, 3), 0.3, dtype=np.float32)
    assert detail_places(flat, (240, 320), crop=64, count=1) == [(88, 128, 64, 64)]
    # an output smaller than the crop: the whole output, once
    assert detail_places(lr, (30, 40), crop=64) == [(0, 0, 30, 40)]


def test_the_lr_view_shows_the_lr_pixels_under_the_crop():
    lr = np.random.default_rng(1).random((10, 12, 3), dtype=np.float32)
    box = (8, 12, 16, 20)  # at x4: LR rows 2..5, columns 3..7
    view = lr_view(lr, (40, 48), box)
    expected = (
        torch.from_numpy(lr[2:6, 3:8]).permute(2, 0, 1)[None].repeat_interleave(4, 2).repeat_interleave(4, 3)
    )
    assert torch.equal(view, expected)


def test_plot_draws_every_method_and_tolerates_missing_values(tmp_path):
    path = plot_scores(
        tmp_path / "p.png",
        "NIQE per image, set x4",
        ["a", "b", "a_long_image_name"],
        {"bicubic": [5.0, 6.0, float("nan")], "model": [4.0, 4.5, 3.9]},
        lower_better=True,
    )
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[0] > 300 and image.shape[1] > 400
    for colour in ((31, 119, 180), (255, 127, 14)):  # each method's colour is drawn
        assert (np.abs(image.astype(int) - colour).sum(-1) < 30).sum() > 20
    assert plot_scores(tmp_path / "q.png", "t", ["x"], {"m": [float("nan")]}, None).is_file()


class _References(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.refs += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "models").mkdir()
    models = write_tiny_peers(root / "models")
    real = root / "Phones"
    rng = np.random.default_rng(5)
    for i, size in enumerate([(40, 52), (36, 48)]):
        real.mkdir(exist_ok=True)
        image = (np.full((*size, 3), 128) + rng.integers(-6, 7, (*size, 3))).astype(np.uint8)
        image[5:15, 30:45] = rng.integers(0, 256, (10, 15, 3))  # one textured place
        Image.fromarray(image).save(real / f"img{i}.png")
    hr = root / "Bench" / "HR"
    hr.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(hr / "h.png")
    out = root / "out"
    assert (
        evaluate.main(
            [
                "--real",
                str(real),
                "--paired",
                str(hr),
                "--no-lpips",
                "--model",
                f"Compact x4={models / 'compact_x4.pth'}",
                "--scale",
                "4",
                "--scale",
                "8",
                "--metrics",
                "piqe",
                "--precision",
                "fp32",
                "--crop",
                "48",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


def test_report_html_opens_offline_and_references_only_files_that_exist(report):
    text = (report / "report.html").read_text()
    parser = _References()
    parser.feed(text)
    assert parser.refs and "script" not in parser.tags and "link" not in parser.tags
    assert "@import" not in text and "url(" not in text and "@font-face" not in text
    for ref in parser.refs:
        assert not re.match(r"^[a-z]+:", ref), ref  # no http:, data: or file: address
        assert (report / unquote(ref)).is_file(), ref
    images = {unquote(r) for r in parser.refs if r.endswith(".png")}
    crops = {p.relative_to(report).as_posix() for p in (report / "crops").iterdir()}
    assert crops <= images  # every crop written is shown
    assert {f"plots/{p.name}" for p in (report / "plots").iterdir()} <= images
    assert "lower better" in text and "higher better" in text


def test_every_metric_has_a_plot_and_crops_sit_at_the_same_places(report):
    document = json.loads((report / "results.json").read_text())
    plots = {(p["dataset"], p["scale"], p["metric"]): p for p in document["plots"]}
    assert set(plots) == {
        ("Phones", 4.0, "piqe"),
        ("Phones", 8.0, "piqe"),
        ("Bench", 4.0, "psnr"),
        ("Bench", 4.0, "ssim"),
        ("Bench", 8.0, "psnr"),
        ("Bench", 8.0, "ssim"),
    }
    assert plots["Phones", 4.0, "piqe"]["lower_better"] and not plots["Bench", 4.0, "psnr"]["lower_better"]
    for plot in plots.values():
        assert Image.open(report / plot["file"]).size[0] >= 400
    first = document["crops"][0]
    assert (first["dataset"], first["scale"], first["image"]) == ("Phones", 4.0, "img0")
    assert len(first["places"]) == 2
    top, left, height, width = first["places"][0]["box"]
    assert (height, width) == (48, 48) and 0 <= top <= 24 and 112 <= left <= 136  # over the textured place
    for place in first["places"]:
        assert list(place["crops"]) == ["LR (nearest)", "bicubic", "Compact x4"]
        sizes = {Image.open(report / "crops" / name).size for name in place["crops"].values()}
        assert sizes == {(48, 48)}
    paired = next(e for e in document["crops"] if e["dataset"] == "Bench")
    assert list(paired["places"][0]["crops"]) == ["LR (nearest)", "HR", "bicubic", "Compact x4"]
    assert Image.open(report / "overview.png").size[0] > 300
    summary = (report / "results.md").read_text()
    assert "(lower is better): [plots/Phones_x4_piqe.png]" in summary
    assert "| Compact x4 | x4 model applied once (x4), output as is, fp32 |" in summary
