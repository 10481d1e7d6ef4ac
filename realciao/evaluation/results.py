"""What an evaluation run records: a row of scores per image and method, the report's crops,
notes, times and how each method made its outputs. ``protocols`` fills them, ``report``
writes them; neither imports the other's internals through this module."""

from __future__ import annotations

from dataclasses import dataclass, field

ID_COLUMNS = ("dataset", "kind", "scale", "method", "image", "output")


@dataclass
class ScoreRow:
    """One method's scores on one image at one scale."""

    dataset: str
    kind: str  # "real" or "paired"
    scale: float
    method: str
    image: str  # the file's stem
    output: str  # "WxH"
    order: tuple[int, int, int]  # (task, image, method): the single-process order, for merging processes
    scores: dict[str, float] = field(
        default_factory=dict
    )  # metric -> value (NaN: not measurable), in measure order
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        """The row as the outputs write it: the id columns, the metrics, the note."""
        ids = {name: getattr(self, name) for name in ID_COLUMNS}
        return {**ids, **self.scores, "note": self.note}


@dataclass
class CropPlace:
    """One place of a report image, and every method's crop of it."""

    box: list[int]  # top, left, height, width in output pixels
    crops: dict[str, str] = field(default_factory=dict)  # label (method, "HR", "LR (nearest)") -> file name


@dataclass
class CropEntry:
    """The report's crops of one image at one scale."""

    dataset: str
    scale: float
    image: str
    order: tuple[int, int]  # (task, image): the single-process order
    places: list[CropPlace] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        places = [{"box": place.box, "crops": place.crops} for place in self.places]
        return {"dataset": self.dataset, "scale": self.scale, "image": self.image, "places": places}


@dataclass
class Results:
    rows: list[ScoreRow] = field(default_factory=list)  # per image and method
    notes: list[str] = field(default_factory=list)  # skipped files, unavailable metrics
    crops: list[CropEntry] = field(default_factory=list)  # report entries
    seconds: dict[str, float] = field(default_factory=dict)  # per dataset/scale/method
    made: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # method -> "x4" -> how

    def record_how(self, method: str, scale: float, how: str) -> None:
        ways = self.made.setdefault(method, {}).setdefault(f"x{scale:g}", [])
        if how and how not in ways:
            ways.append(how)


def merge(parts: list[Results]) -> Results:
    """One ``Results`` from every process's share, rows and crops back in the single-process order."""
    merged = Results()
    for part in parts:
        merged.rows += part.rows
        merged.crops += part.crops
        merged.notes += part.notes
        for key, seconds in part.seconds.items():
            merged.seconds[key] = merged.seconds.get(key, 0.0) + seconds
        for method, scales in part.made.items():
            for scale, ways in scales.items():
                for how in ways:
                    merged_ways = merged.made.setdefault(method, {}).setdefault(scale, [])
                    if how not in merged_ways:
                        merged_ways.append(how)
    merged.rows.sort(key=lambda row: row.order)
    merged.crops.sort(key=lambda entry: entry.order)
    merged.notes = list(dict.fromkeys(merged.notes))  # notes every process made once
    return merged
