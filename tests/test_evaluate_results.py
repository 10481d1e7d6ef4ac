"""realciao.evaluation.results: the run's records, as the outputs write them, merged across processes."""

from __future__ import annotations

from realciao.evaluation.results import CropEntry, CropPlace, Results, ScoreRow, merge


def _row(image: str, order: tuple[int, int, int], **scores: float) -> ScoreRow:
    return ScoreRow("Set", "paired", 4.0, "bicubic", image, "8x8", order, dict(scores))


def test_a_row_writes_ids_then_metrics_in_measure_order_then_the_note():
    row = _row("a", (0, 0, 0), ssim=0.5, psnr=20.0)
    row.note = "not measurable: x"
    assert list(row.as_dict()) == [
        "dataset",
        "kind",
        "scale",
        "method",
        "image",
        "output",
        "ssim",
        "psnr",
        "note",
    ]
    entry = CropEntry("Set", 4.0, "a", (0, 0), [CropPlace([0, 0, 8, 8], {"bicubic": "f.png"})])
    assert entry.as_dict() == {"dataset": "Set", "scale": 4.0, "image": "a",
                               "places": [{"box": [0, 0, 8, 8], "crops": {"bicubic": "f.png"}}]}  # fmt: skip


def test_merging_shares_restores_the_single_process_order():
    first, second = Results(), Results()
    first.rows = [_row("a", (0, 0, 0)), _row("c", (0, 2, 0))]
    second.rows = [_row("b", (0, 1, 0)), _row("a", (1, 0, 0))]
    first.crops, second.crops = [CropEntry("Set", 4.0, "c", (0, 2))], [CropEntry("Set", 4.0, "b", (0, 1))]
    first.notes, second.notes = ["skipped x", "lpips unavailable"], ["lpips unavailable"]
    first.record_how("bicubic", 4.0, "MATLAB bicubic")
    second.record_how("bicubic", 4.0, "MATLAB bicubic")
    second.seconds["Set|x4|bicubic"] = 1.5
    merged = merge([first, second])
    assert [(r.image, r.order[0]) for r in merged.rows] == [("a", 0), ("b", 0), ("c", 0), ("a", 1)]
    assert [e.image for e in merged.crops] == ["b", "c"]
    assert merged.notes == ["skipped x", "lpips unavailable"]
    assert merged.made == {"bicubic": {"x4": ["MATLAB bicubic"]}} and merged.seconds == {
        "Set|x4|bicubic": 1.5
    }
