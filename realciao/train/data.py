"""Training images: sources (folders, meta-info lists, BasicSR LMDB, built-in photos,
real LR/HR pairs), a deterministic batch plan, and crops sized for each batch's scale.

Everything random in data loading derives from (seed, micro-step, rank): the plan of
micro-step k is the same whenever it is computed, so resuming needs only the step.
Unreadable images are skipped with a warning naming the file; training never stops for one.

Real pairs may have any ratio, per axis, taken from their sizes. A paired batch has one GT
size, so pairs are grouped by the GT crop size their ratio gives; a batch draws a group.
A pair is skipped, with a warning naming it, when its sizes do not fit ``paired_scale`` or
when its LR content is shifted against its HR beyond ``paired_max_shift`` LR pixels (phase
correlation of the LR against the HR downscaled to the LR's size, checked when it is first read).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from realciao.color import luma
from realciao.errors import RealciaoError
from realciao.imageio import (
    decode_image,
    image_folder_problem,
    list_images,
    read_rgb,
    to_float_rgb,
    upright_size,
)
from realciao.train.augment import apply_pipeline, build_pipeline

if TYPE_CHECKING:  # the options' type only: config imports this module to check LMDB folders
    from realciao.train.config import DataOptions

# scikit-image photos that ship with it (no download); `coffee` is held out for validation
BUILTIN_TRAIN = (
    "astronaut",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
    "stereo_left",
    "stereo_right",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
)
BUILTIN_VALIDATION = ("coffee",)


class DataError(RealciaoError, ValueError):
    """Training data that cannot be used at all (missing or empty folder, no images)."""


def builtin_image(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("stereo_"):
        image = data.stereo_motorcycle()[0 if name == "stereo_left" else 1]
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3].astype(np.float32) / 255.0


@dataclass(frozen=True)
class ImageSource:
    label: str  # what a warning names: a path, an LMDB key or a built-in name
    load: Callable[[], np.ndarray]


def list_image_files(folder: Path) -> list[Path]:
    problem = image_folder_problem(folder)
    if problem:
        raise DataError(f"{folder}: {problem}")
    return list_images(folder)


def meta_info_files(meta_info: Path, root: Path) -> list[Path]:
    if not meta_info.is_file():
        raise DataError(f"{meta_info}: meta-info file does not exist")
    files = [root / line.split()[0] for line in meta_info.read_text().splitlines() if line.strip()]
    if not files:
        raise DataError(f"{meta_info}: lists no images")
    return files


def lmdb_problem(folder: str | Path) -> str | None:
    folder = Path(folder)
    if not (folder / "data.mdb").is_file() or not (folder / "meta_info.txt").is_file():
        return "not a BasicSR LMDB folder (needs data.mdb and meta_info.txt)"
    return None


def lmdb_sources(folder: Path) -> list[ImageSource]:
    """BasicSR-style LMDB: ``data.mdb`` plus ``meta_info.txt`` lines ``key (h,w,c) compression``."""
    problem = lmdb_problem(folder)
    if problem:
        raise DataError(f"{folder}: {problem}")
    meta = folder / "meta_info.txt"
    # BasicSR writes "KEY.png (h,w,c) level": the key is the name without its .png
    keys = [line.split()[0].removesuffix(".png") for line in meta.read_text().splitlines() if line.strip()]
    if not keys:
        raise DataError(f"{meta}: lists no images")
    reader = LmdbReader(folder)
    return [ImageSource(f"{folder}:{key}", (lambda k=key: reader.read(k))) for key in keys]


class LmdbReader:
    """Opens the environment lazily, once per process (DataLoader workers fork)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._env = None

    def read(self, key: str) -> np.ndarray:
        import lmdb

        if self._env is None:
            self._env = lmdb.open(str(self.folder), readonly=True, lock=False, readahead=False, meminit=False)
        with self._env.begin(write=False) as txn:
            value = txn.get(key.encode("ascii"))
        if value is None:
            raise ValueError(f"{self.folder}:{key}: key not in the LMDB")
        return to_float_rgb(decode_image(value, f"{self.folder}:{key}").pixels)


def gather_sources(options: DataOptions) -> list[ImageSource]:
    sources: list[ImageSource] = []
    folders = [Path(f) for f in options.hr_folders]
    if options.meta_info:
        if not folders:
            raise DataError(
                f"{options.meta_info}: data.meta_info needs data.hr_folders (paths are relative to the first)"
            )
        files = meta_info_files(Path(options.meta_info), folders[0])
        sources += [ImageSource(str(p), (lambda p=p: read_rgb(p))) for p in files]
    else:
        for folder in folders:
            sources += [ImageSource(str(p), (lambda p=p: read_rgb(p))) for p in list_image_files(folder)]
    if options.lmdb:
        sources += lmdb_sources(Path(options.lmdb))
    if options.builtin_samples:
        sources += [ImageSource(f"builtin:{n}", (lambda n=n: builtin_image(n))) for n in BUILTIN_TRAIN]
    if not sources:
        raise DataError("no training images: set data.hr_folders, data.lmdb or data.builtin_samples")
    return sources


@dataclass(frozen=True)
class RealPair:
    """A real LR/HR pair; ``ratio`` is HR side / LR side per axis (height, width), from the sizes."""

    name: str
    lr: ImageSource
    hr: ImageSource
    ratio: tuple[float, float]

    def gt_size(self, lr_patch: int) -> tuple[int, int]:
        """The GT crop that covers an LR patch of side ``lr_patch``."""
        return (max(1, round(lr_patch * self.ratio[0])), max(1, round(lr_patch * self.ratio[1])))


def pair_size_problem(lr_size: tuple[int, int], hr_size: tuple[int, int], scale: float | None) -> str:
    """Why a pair's sizes cannot be used, or ''."""
    lr_text, hr_text = "x".join(map(str, lr_size)), "x".join(map(str, hr_size))
    if any(hr < lr for hr, lr in zip(hr_size, lr_size)):
        return f"HR {hr_text} is smaller than LR {lr_text}"
    if scale is not None and any(abs(hr - lr * scale) > 1 for hr, lr in zip(hr_size, lr_size)):
        expected = "x".join(f"{side * scale:g}" for side in lr_size)
        return (
            f"HR {hr_text} is not LR {lr_text} x {scale:g} = {expected} within one pixel on each axis "
            f"(data.paired_scale)"
        )
    return ""


def paired_sources(options: DataOptions) -> list[RealPair]:
    """The usable real pairs, by name; each unusable one is reported in a warning and left out."""
    lr_files = {p.stem: p for p in list_image_files(Path(options.paired_lr_folder))}
    hr_files = {p.stem: p for p in list_image_files(Path(options.paired_hr_folder))}
    common = sorted(set(lr_files) & set(hr_files))
    if not common:
        raise DataError(
            f"{options.paired_lr_folder} and {options.paired_hr_folder}: no images with matching names"
        )
    pairs = []
    for name in common:
        lr_path, hr_path = lr_files[name], hr_files[name]
        try:
            lr_size, hr_size = upright_size(lr_path), upright_size(hr_path)
        except Exception as error:  # any decoder failure: skip the pair, keep training
            warnings.warn(
                f"skipping real pair {name} ({lr_path}, {hr_path}): cannot read its size ({error})",
                stacklevel=2,
            )
            continue
        problem = pair_size_problem(lr_size, hr_size, options.paired_scale)
        if problem:
            warnings.warn(f"skipping real pair {name} ({lr_path}, {hr_path}): {problem}", stacklevel=2)
            continue
        ratio = (hr_size[0] / lr_size[0], hr_size[1] / lr_size[1])
        pairs.append(
            RealPair(
                name,
                ImageSource(str(lr_path), (lambda p=lr_path: read_rgb(p))),
                ImageSource(str(hr_path), (lambda p=hr_path: read_rgb(p))),
                ratio,
            )
        )
    if not pairs:
        raise DataError(
            f"{options.paired_lr_folder} and {options.paired_hr_folder}: no usable real pair; "
            "see the warnings above"
        )
    return pairs


PairGroups = Sequence[tuple[tuple[int, int], Sequence[int]]]  # (GT crop size, indices of its pairs)


def pair_groups(pairs: Sequence[RealPair], lr_patch: int) -> list[tuple[tuple[int, int], list[int]]]:
    """The pairs grouped by the GT crop size their ratio gives, smallest size first."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(pair.gt_size(lr_patch), []).append(index)
    return sorted(groups.items())


def content_shift(lr: np.ndarray, hr: np.ndarray, max_side: int = 512) -> tuple[float, float]:
    """(dy, dx): how far, in LR pixels, the LR's content sits from the HR's. The HR is reduced
    to the LR's size by area averaging (which maps the whole frame onto the whole frame, as the
    crops do), then the two luminance images are phase-correlated (Hann window) on their
    central ``max_side`` square at most. Photometric differences (noise, colour, blur) barely
    move the peak, so this measures registration, not quality."""
    import cv2

    h, w = lr.shape[:2]
    if min(h, w) < 8:
        return 0.0, 0.0  # too small to measure
    down = cv2.resize(np.ascontiguousarray(hr, dtype=np.float32), (w, h), interpolation=cv2.INTER_AREA)
    top, left = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    window = (slice(top, top + max_side), slice(left, left + max_side))
    a = np.ascontiguousarray(luma(lr[window]), dtype=np.float64)
    b = np.ascontiguousarray(luma(down[window]), dtype=np.float64)
    hann = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_64F)
    (dx, dy), _ = cv2.phaseCorrelate(b, a, hann)
    return float(dy), float(dx)


# ----------------------------------------------------------------------------- the plan
def step_generator(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed, *parts])


@dataclass(frozen=True)
class CropTask:
    """One sample of one micro-batch: which image, the GT crop size, and its own seed."""

    index: int
    gt_size: tuple[int, int]
    seed: int
    paired: bool = False


def batch_plan(
    options: DataOptions,
    seed: int,
    micro_step: int,
    rank: int,
    world: int,
    num_images: int,
    pair_groups: PairGroups = (),
) -> list[CropTask]:
    """The tasks of micro-batch ``micro_step`` on ``rank``: an epoch-wise permutation of the
    images (shared by all ranks, each taking its own slice) and one scale for the batch. A
    paired batch draws a group of real pairs (by how many pairs it holds) and takes its GT size."""
    rng = step_generator(seed, 1, micro_step, rank)
    paired = bool(pair_groups) and rng.random() < options.paired_probability
    if paired:
        counts = np.array([len(members) for _, members in pair_groups], dtype=np.float64)
        group = int(rng.choice(len(counts), p=counts / counts.sum()))
        gt_size, members = pair_groups[group]
        stream, count = (2, group), len(members)
    else:
        scale_h = rng.uniform(options.scale_min, options.scale_max)
        scale_w = rng.uniform(options.scale_min, options.scale_max) if options.per_axis_scale else scale_h
        gt_size = (max(1, round(options.lr_patch * scale_h)), max(1, round(options.lr_patch * scale_w)))
        members, stream, count = None, (0,), num_images
    tasks = []
    for i in range(options.batch_size):
        flat = (micro_step * world + rank) * options.batch_size + i
        epoch, position = divmod(flat, count)
        picked = int(step_generator(seed, *stream, epoch).permutation(count)[position])
        index = members[picked] if members is not None else picked
        tasks.append(CropTask(index, tuple(gt_size), int(rng.integers(2**31)), paired))
    return tasks


class PlannedBatches(torch.utils.data.Sampler):
    """Yields the micro-batch plans from ``start`` on, for a DataLoader's ``batch_sampler``."""

    def __init__(self, plan: Callable[[int], list[CropTask]], start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.plan(step)

    def __len__(self):
        return self.stop - self.start


def planned_loader(
    dataset: CropDataset,
    options: DataOptions,
    seed: int,
    rank: int,
    world: int,
    pair_groups: PairGroups,
    start: int,
    stop: int,
    gt_multiple: int = 1,
    pin_memory: bool = False,
):
    """An iterator over the collated micro-batches ``start`` to ``stop`` of this process's plan.
    ``gt_multiple``: synthetic batches' GT sides rounded to a multiple of it (whole-patch losses
    take what the discriminator takes); a real pair's GT must cover its LR patch exactly, so it
    keeps its size and the discriminator sees a crop."""

    def plan(step: int) -> list[CropTask]:
        tasks = batch_plan(options, seed, step, rank, world, len(dataset.sources), pair_groups)
        if gt_multiple > 1 and not tasks[0].paired:
            size = tuple(max(gt_multiple, round(s / gt_multiple) * gt_multiple) for s in tasks[0].gt_size)
            tasks = [CropTask(t.index, size, t.seed, t.paired) for t in tasks]
        return tasks

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=PlannedBatches(plan, start, stop),
        collate_fn=collate,
        num_workers=options.num_workers,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
    return iter(loader)


# ---------------------------------------------------------------------------- the crops
def random_crop(image: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A size crop at a random place; images smaller than the crop are reflect-padded first."""
    h, w = size
    pad_h, pad_w = max(0, h - image.shape[0]), max(0, w - image.shape[1])
    if pad_h or pad_w:
        image = np.pad(
            image, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect" if min(image.shape[:2]) > 1 else "edge"
        )
    top = int(rng.integers(image.shape[0] - h + 1))
    left = int(rng.integers(image.shape[1] - w + 1))
    return image[top : top + h, left : left + w]


def augment(
    images: list[np.ndarray], rng: np.random.Generator, hflip: bool, rotate: bool
) -> list[np.ndarray]:
    """The same flips and 90-degree rotation for every image of a pair."""
    flip_h = hflip and rng.random() < 0.5
    flip_v = rotate and rng.random() < 0.5
    transpose = rotate and rng.random() < 0.5 and all(i.shape[0] == i.shape[1] for i in images)
    out = []
    for image in images:
        if flip_h:
            image = image[:, ::-1]
        if flip_v:
            image = image[::-1]
        if transpose:
            image = image.transpose(1, 0, 2)
        out.append(np.ascontiguousarray(image))
    return out


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class CropDataset(Dataset):
    """Maps a ``CropTask`` to ``{"gt": (3,H,W)}`` (plus ``"lq"`` for real pairs)."""

    def __init__(
        self,
        options: DataOptions,
        sources: list[ImageSource],
        pairs: list[RealPair] | None = None,
        cache_builtin: bool = True,
    ):
        self.options = options
        self.sources = sources
        self.pairs = pairs or []
        self.pipeline = build_pipeline(options.augment) if options.augment is not None else None
        self._groups = dict(pair_groups(self.pairs, options.lr_patch))
        self._bad: set[str] = set()
        self._aligned: set[str] = set()
        self._cache: dict[str, np.ndarray] = {}
        self._cache_builtin = cache_builtin

    def _load(self, source: ImageSource) -> np.ndarray | None:
        if source.label in self._bad:
            return None
        if source.label in self._cache:
            return self._cache[source.label]
        try:
            image = source.load()
        except Exception as error:  # any decoder failure: skip the file, keep training
            self._bad.add(source.label)
            warnings.warn(f"skipping unreadable training image {source.label}: {error}", stacklevel=2)
            return None
        if self._cache_builtin and source.label.startswith("builtin:"):
            self._cache[source.label] = image
        return image

    def _augment(self, images: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """Flips and 90-degree rotations, then the ``data.augment`` pipeline: one draw for all images."""
        images = augment(images, rng, self.options.hflip, self.options.rotate)
        if self.pipeline is not None:
            images = apply_pipeline(self.pipeline, images, int(rng.integers(2**32)))
        return images

    def __getitem__(self, task: CropTask) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(task.seed)
        if task.paired:
            return self._paired(task, rng)
        count = len(self.sources)
        for attempt in range(count):  # the next readable image stands in for a bad one
            image = self._load(self.sources[(task.index + attempt) % count])
            if image is not None:
                (crop,) = self._augment([random_crop(image, task.gt_size, rng)], rng)
                return {"gt": to_tensor(crop)}
        raise DataError("no training image could be read; see the warnings above")

    def _usable(self, pair: RealPair) -> tuple[np.ndarray, np.ndarray] | None:
        """The pair's images, or None when one is unreadable or their content is misaligned."""
        if pair.name in self._bad:
            return None
        lr, hr = self._load(pair.lr), self._load(pair.hr)
        if lr is None or hr is None:
            return None
        limit = self.options.paired_max_shift
        if limit is not None and pair.name not in self._aligned:
            dy, dx = content_shift(lr, hr)
            if max(abs(dy), abs(dx)) > limit:
                self._bad.add(pair.name)
                warnings.warn(
                    f"skipping real pair {pair.name} ({pair.lr.label}, {pair.hr.label}): its content is "
                    f"shifted by {dy:+.2f}, {dx:+.2f} LR pixels (rows, columns) between LR and HR, more "
                    f"than data.paired_max_shift = {limit:g}",
                    stacklevel=3,
                )
                return None
            self._aligned.add(pair.name)
        return lr, hr

    def _paired(self, task: CropTask, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """An LR patch and the HR crop over the same area; a bad pair's stand-in is the next
        pair with the same GT crop size."""
        patch = self.options.lr_patch
        group = self._groups.get(tuple(task.gt_size), [task.index])
        start = group.index(task.index) if task.index in group else 0
        for attempt in range(len(group)):
            pair = self.pairs[group[(start + attempt) % len(group)]]
            images = self._usable(pair)
            if images is None:
                continue
            lr, hr = images
            ratio_h, ratio_w = hr.shape[0] / lr.shape[0], hr.shape[1] / lr.shape[1]
            lr = random_crop(lr, (max(patch, lr.shape[0]), max(patch, lr.shape[1])), rng)  # pads tiny images
            top = int(rng.integers(lr.shape[0] - patch + 1))
            left = int(rng.integers(lr.shape[1] - patch + 1))
            gt_h, gt_w = task.gt_size
            hr_top, hr_left = round(top * ratio_h), round(left * ratio_w)
            if hr.shape[0] < hr_top + gt_h or hr.shape[1] < hr_left + gt_w:
                hr = np.pad(
                    hr,
                    (
                        (0, max(0, hr_top + gt_h - hr.shape[0])),
                        (0, max(0, hr_left + gt_w - hr.shape[1])),
                        (0, 0),
                    ),
                    mode="edge",
                )
            lr_crop = lr[top : top + patch, left : left + patch]
            hr_crop = hr[hr_top : hr_top + gt_h, hr_left : hr_left + gt_w]
            lr_crop, hr_crop = self._augment([lr_crop, hr_crop], rng)
            return {"gt": to_tensor(hr_crop), "lq": to_tensor(lr_crop)}
        raise DataError(
            f"no real LR/HR pair with a {task.gt_size[0]}x{task.gt_size[1]} GT crop could be used; "
            "see the warnings above"
        )

    def __len__(self) -> int:
        return len(self.sources)


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}
