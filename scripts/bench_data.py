"""Training-data speed: preparing (sub-images, LMDB) against BasicSR's tools, and the samples
per second the training data pipeline delivers from each kind of source.

    python scripts/bench_data.py                 # 4 2K images, 2 processes
    python scripts/bench_data.py --images 2 --batches 4 --workers 2

The 2K inputs are mosaics of 4 x 4 real photos (``../shared/data/train_hr/BSDS200``, 481 x 321,
uncropped and unscaled: 1924 x 1284) when that folder is there, else generated (``--inputs``).
Preparation, same inputs, same process count, same run:
- sub-images (480 crop, step 240, PNG level 3): ``realciao-prepare subimages``'s library call
  against BasicSR's ``extract_subimages.py`` worker. That script is not in the basicsr wheel,
  so its algorithm is restated below (``basicsr_extract_subimages``: ``cv2.imread``, the
  crops, ``cv2.imwrite`` at the same level, a ``multiprocessing.Pool``). realciao runs twice:
  with its default ``--png-filters fast`` and with ``all`` (BasicSR's bytes); the sizes of
  the sub-image folders are printed beside the times.
- LMDB of those sub-images (PNG level 1): realciao's ``build_lmdb`` (default filters) against
  basicsr's own ``make_lmdb_from_imgs(multiprocessing_read=True, n_thread=processes)``.
Data pipeline: ``CropDataset`` + ``DataLoader`` as the trainer builds them (planned batches
of 16 GT crops for LR 48 at a scale U(1, 4), flips), from the 2K PNG folder, the sub-image
folder and the LMDB, with 0 and 2 loader workers; then again with the Real-ESRGAN
degradation of each batch in this process (as the trainer does on its device).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from realciao.benchmarks import BenchmarkTable, add_json_argument, write_results
from realciao.devices import describe_cpu

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared" / "data" / "train_hr" / "BSDS200"


def generate_images(folder: Path, count: int, seed: int = 0) -> None:
    """2040 x 1356 (DIV2K's size) photo-like images: smooth colour fields with fine texture."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        coarse = cv2.resize(
            rng.random((34, 51, 3)).astype(np.float32), (2040, 1356), interpolation=cv2.INTER_CUBIC
        )
        fine = cv2.GaussianBlur(rng.random((1356, 2040, 3)).astype(np.float32), (0, 0), 1.5)
        image = np.clip(coarse * 0.8 + (fine - 0.5) * 0.6 + 0.1, 0, 1)
        cv2.imwrite(str(folder / f"{index:04d}.png"), np.round(image * 255).astype(np.uint8))


def mosaic_images(folder: Path, count: int, photos: Path = PHOTOS) -> None:
    """1924 x 1284 images, each 4 x 4 real 481 x 321 photos side by side (portrait ones turned)."""
    folder.mkdir(parents=True)
    paths = sorted(photos.glob("*.png"))
    if len(paths) < 16 * count:
        raise SystemExit(f"{photos}: {len(paths)} photos, {16 * count} needed for --images {count}")
    for index in range(count):
        tiles = []
        for path in paths[16 * index : 16 * index + 16]:
            tile = cv2.imread(str(path))
            tiles.append(tile if tile.shape[0] <= tile.shape[1] else np.ascontiguousarray(tile.transpose(1, 0, 2)))
        rows = [np.concatenate(tiles[4 * r : 4 * r + 4], axis=1) for r in range(4)]
        cv2.imwrite(str(folder / f"{index:04d}.png"), np.concatenate(rows, axis=0))


def decode_milliseconds(folder: Path, repeats: int = 3) -> float:
    """Median over ``repeats`` passes of the mean time ``cv2.imread`` takes for a PNG of ``folder``."""
    paths = sorted(str(p) for p in folder.glob("*.png"))
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            cv2.imread(path, cv2.IMREAD_UNCHANGED)
        passes.append((time.perf_counter() - start) / len(paths) * 1e3)
    return statistics.median(passes)


def folder_megabytes(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


# ---------------------------------------------------------------------------- BasicSR's tools
def _basicsr_crop_worker(path: str, output: str, crop: int, step: int, thresh: int, level: int) -> None:
    """BasicSR's extract_subimages.py worker, restated (the script is not shipped in the wheel)."""
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    name = Path(path).stem
    height, width = image.shape[:2]
    rows = np.arange(0, height - crop + 1, step)
    if height - (rows[-1] + crop) > thresh:
        rows = np.append(rows, height - crop)
    columns = np.arange(0, width - crop + 1, step)
    if width - (columns[-1] + crop) > thresh:
        columns = np.append(columns, width - crop)
    index = 0
    for top in rows:
        for left in columns:
            index += 1
            cv2.imwrite(
                f"{output}/{name}_s{index:03d}.png",
                np.ascontiguousarray(image[top : top + crop, left : left + crop]),
                [cv2.IMWRITE_PNG_COMPRESSION, level],
            )


def basicsr_extract_subimages(folder: Path, output: Path, processes: int) -> None:
    output.mkdir()
    with multiprocessing.Pool(processes) as pool:
        for path in sorted(folder.glob("*.png")):
            pool.apply_async(_basicsr_crop_worker, (str(path), str(output), 480, 240, 0, 3))
        pool.close()
        pool.join()


def basicsr_make_lmdb(folder: Path, output: Path, processes: int) -> None:
    from realciao.compat import import_basicsr

    names = sorted(p.name for p in folder.glob("*.png"))
    import contextlib
    import io

    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):  # its progress bars
        import_basicsr("utils.lmdb_util").make_lmdb_from_imgs(
            str(folder),
            str(output),
            names,
            [n[:-4] for n in names],
            compress_level=1,
            multiprocessing_read=True,
            n_thread=processes,
        )


# ---------------------------------------------------------------------------- realciao's
def realciao_subimages(folder: Path, output: Path, processes: int, filters: str = "fast") -> None:
    from realciao.prepare.runner import claim_output_folder, gather_images
    from realciao.prepare.subimages import SubimageSettings, extract_subimages

    claim_output_folder(output, False, False)
    images, _ = gather_images([folder])
    extract_subimages(images, output, SubimageSettings(480, 240, 0, 3, filters), processes, progress=False)


def realciao_lmdb(folder: Path, output: Path, processes: int) -> None:
    from realciao.prepare.lmdb_store import LmdbSettings, build_lmdb, claim_lmdb, plan_entries
    from realciao.prepare.runner import gather_images

    images, _ = gather_images([folder])
    entries, _ = plan_entries(images)
    claim_lmdb(output, False, False)
    build_lmdb(entries, output, LmdbSettings(png_level=1), processes, progress=False)


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def median_of(repeats: int, work: Path, name: str, runs: dict) -> dict[str, float]:
    """Median of ``repeats`` alternating runs of each side (the machine is shared): seconds by side.
    ``runs``: side -> (function, input folder, output suffix); the first repeat's output is kept."""
    seconds: dict[str, list[float]] = {side: [] for side in runs}
    for repeat in range(repeats):
        for side, (function, source, suffix) in runs.items():
            output = work / f"{name}_{side}{'' if repeat == 0 else repeat}{suffix}"
            seconds[side].append(timed(function, source, output, PROCESSES[0]))
            if repeat:
                shutil.rmtree(output)
    return {side: statistics.median(values) for side, values in seconds.items()}


PROCESSES = [2]


def same_content(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.png"))
    return names == sorted(p.name for p in b.glob("*.png")) and all(
        np.array_equal(cv2.imread(str(a / n)), cv2.imread(str(b / n))) for n in names
    )


# ---------------------------------------------------------------------------- data pipeline
def samples_per_second(source: dict, loader_workers: int, batches: int, degrade_batches: bool) -> float:
    from torch.utils.data import DataLoader

    from realciao.degradations import degrade, load_recipe
    from realciao.train.config import DataOptions
    from realciao.train.data import CropDataset, PlannedBatches, batch_plan, collate, gather_sources

    options = DataOptions(**source, num_workers=loader_workers)
    sources = gather_sources(options)
    dataset = CropDataset(options, sources)
    recipe = load_recipe("realesrgan")

    def plan(step: int):
        return batch_plan(options, 0, step, 0, 1, len(sources))

    # untimed: the workers' start and the batches they load ahead (2 each) while it happens
    warm_up = 1 + 2 * loader_workers
    loader = DataLoader(
        dataset,
        batch_sampler=PlannedBatches(plan, 0, batches + warm_up),
        collate_fn=collate,
        num_workers=loader_workers,
        prefetch_factor=2 if loader_workers else None,
    )
    generator = torch.Generator().manual_seed(0)
    iterator = iter(loader)
    for _ in range(warm_up):
        next(iterator)
    start = time.perf_counter()
    count = 0
    for batch in iterator:
        if degrade_batches:
            degrade(batch["gt"], recipe, (options.lr_patch, options.lr_patch), generator)
        count += batch["gt"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="2K images (default 4)")
    parser.add_argument(
        "--inputs",
        choices=("photos", "generated"),
        default="photos" if PHOTOS.is_dir() else "generated",
        help=f"mosaics of real photos ({PHOTOS}) or generated images (default: photos when there)",
    )
    parser.add_argument("--workers", type=int, default=2, help="processes for preparation (default 2)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating runs of each preparation side (default 3)"
    )
    parser.add_argument(
        "--batches", type=int, default=24, help="timed batches of 16 per pipeline row (default 24)"
    )
    parser.add_argument(
        "--loader-workers", type=int, nargs="+", default=[0, 2, 4], help="DataLoader workers (default 0 2 4)"
    )
    add_json_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(max(1, args.workers))
    # more loader workers than cores is one of the rows asked for, not a mistake to warn about
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    print(describe_cpu())
    notes = ["load average before: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())]
    print(notes[0])
    preparation, pipeline = [], {}
    from realciao.compat import import_basicsr

    import_basicsr("utils.lmdb_util")  # both sides use basicsr: its import (seconds) is not timed
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        hr = work / "hr"
        if args.inputs == "photos":
            mosaic_images(hr, args.images)
            inputs = f"{args.images} mosaics of 16 BSDS200 photos, 1924x1284 PNG"
        else:
            generate_images(hr, args.images)
            inputs = f"{args.images} generated 2040x1356 PNGs"
        print(f"{inputs}; {args.workers} processes for preparation")
        PROCESSES[0] = args.workers
        times = median_of(
            args.repeats,
            work,
            "sub",
            {
                "realciao": (realciao_subimages, hr, ""),
                "realciao_all": (functools.partial(realciao_subimages, filters="all"), hr, ""),
                "basicsr": (basicsr_extract_subimages, hr, ""),
            },
        )
        sub = work / "sub_realciao"
        count = len(list(sub.glob("*.png")))
        decode = {side: decode_milliseconds(work / f"sub_{side}") for side in ("realciao", "realciao_all")}
        print(
            f"decoding one sub-image (cv2.imread, one thread, median of 3 passes): --png-filters fast "
            f"{decode['realciao']:.2f} ms, all {decode['realciao_all']:.2f} ms: "
            f"{decode['realciao_all'] / decode['realciao']:.2f}x"
        )
        for side, filters in (("realciao", "fast"), ("realciao_all", "all")):
            same = same_content(work / f"sub_{side}", work / "sub_basicsr")
            megabytes = (folder_megabytes(work / f"sub_{side}"), folder_megabytes(work / "sub_basicsr"))
            ratio = times["basicsr"] / times[side]
            preparation.append(
                {
                    "task": f"sub-images ({count}, crop 480, step 240, PNG level 3, --png-filters {filters})",
                    "realciao s": f"{times[side]:.2f}",
                    "reference": "BasicSR's extract_subimages worker",
                    "reference s": f"{times['basicsr']:.2f}",
                    "reference / realciao": f"{ratio:.2f}",
                    "same output": f"{same} (pixels); {megabytes[0]:.1f} MB vs {megabytes[1]:.1f} MB; "
                    f"decodes in {decode[side]:.2f} ms",
                }
            )
            print(
                f"sub-images ({count}, crop 480, step 240, PNG level 3), --png-filters {filters}, median of "
                f"{args.repeats}: realciao {times[side]:.2f} s, BasicSR's extract_subimages worker "
                f"{times['basicsr']:.2f} s: BasicSR / realciao {ratio:.2f}; same pixels: {same}; "
                f"{megabytes[0]:.1f} MB vs BasicSR's {megabytes[1]:.1f} MB"
            )
        times = median_of(
            args.repeats,
            work,
            "lmdb",
            {"realciao": (realciao_lmdb, sub, ".lmdb"), "basicsr": (basicsr_make_lmdb, sub, ".lmdb")},
        )
        ours, theirs = work / "lmdb_realciao.lmdb", work / "lmdb_basicsr.lmdb"
        same = (ours / "meta_info.txt").read_text() == (theirs / "meta_info.txt").read_text()
        preparation.append(
            {
                "task": "LMDB of the sub-images (PNG level 1)",
                "realciao s": f"{times['realciao']:.2f}",
                "reference": "basicsr make_lmdb_from_imgs",
                "reference s": f"{times['basicsr']:.2f}",
                "reference / realciao": f"{times['basicsr'] / times['realciao']:.2f}",
                "same output": f"{same} (meta_info.txt)",
            }
        )
        print(
            f"LMDB of the sub-images (PNG level 1), median of {args.repeats}: realciao {times['realciao']:.2f} s, "
            f"basicsr make_lmdb_from_imgs {times['basicsr']:.2f} s: basicsr / realciao "
            f"{times['basicsr'] / times['realciao']:.2f}; same meta_info.txt: {same}"
        )
        sources = {
            "2K PNG folder": {"hr_folders": [str(hr)]},
            "sub-image folder": {"hr_folders": [str(sub)]},
            "sub-images, all filters": {"hr_folders": [str(work / "sub_realciao_all")]},
            "LMDB": {"lmdb": str(ours)},
        }
        print(
            f"data pipeline, samples/s (batches of 16 GT crops for LR 48, scale U(1, 4); {args.batches} batches):"
        )
        for degrade_batches in (False, True):
            for name, source in sources.items():
                rates = {
                    w: samples_per_second(source, w, args.batches, degrade_batches)
                    for w in args.loader_workers
                }
                cells = [f"{w} workers {rate:6.1f}" for w, rate in rates.items()]
                for w, rate in rates.items():
                    kind = "with Real-ESRGAN degradation" if degrade_batches else "crops"
                    pipeline.setdefault(name, {"source": name})[f"{kind}, {w} loader workers"] = f"{rate:.1f}"
                print(
                    f"  {name:24s} {'with degradation   ' if degrade_batches else 'crops only         '} "
                    + ", ".join(cells)
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        tables = [
            BenchmarkTable(
                title=f"preparation, median of {args.repeats}, {args.workers} processes each side",
                columns=list(preparation[0]),
                rows=preparation,
            ),
            BenchmarkTable(
                title=f"training data pipeline, samples/s (batches of 16 GT crops for LR 48, "
                f"scale U(1, 4); {args.batches} batches)",
                columns=list(next(iter(pipeline.values()))),
                rows=list(pipeline.values()),
            ),
        ]
        notes.append(inputs)
        print(f"wrote {write_results(args.json, 'data', tables, notes)}")


if __name__ == "__main__":
    main()
