"""What the page does, without the page: one photo in, the upscaled file out, written as
``realciao-upscale`` writes it, and the views that compare it with bicubic.

The models are ``realciao-eval``'s methods (``load_methods``: CiaoSR checkpoints, any-size ONNX
graphs, and peers spandrel loads), named as it names them. A CiaoSR or ONNX model runs through
the calls ``realciao-upscale`` makes for each image (``read_image``, ``OutputSize.pixels``,
``check_size_limit``, ``upscale_array``, ``write_image``), with the same tile settings and
precision, so the file is the one the command writes. A peer runs by the paper's convention
(``realciao.peers``) on the colour (alpha and grey layout are not kept).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realciao.errors import RealciaoError
from realciao.evaluation.crops import detail_places, lr_view
from realciao.evaluation.methods import Bicubic, CiaoSRMethod, Method, PeerMethod, RunSettings, safe_name
from realciao.imageio import (
    ImageReadError,
    Picture,
    array_to_pil,
    output_extension,
    read_image,
    to_float_rgb,
    upright_size,
    write_image,
)
from realciao.tiling import from_unit_float
from realciao.upscaling import OutputSize, check_size_limit, estimate_work, upscale_array

LOGGER = logging.getLogger(__name__)

ZOOM_CROP = 128  # output pixels per side of the zoomed place (realciao-eval's --crop default)
COMPARE_PIXELS = 16_000_000  # larger outputs are compared at a reduced size (the zoom stays at full size)
PREVIEW_SIDE = 1024  # longest side of the upright preview of an uploaded photo
KEEP_RESULTS_SECONDS = 3600  # results are downloadable for this long, then removed


class UploadError(RealciaoError):
    """An uploaded file refused before it is read (too large)."""


@dataclass(frozen=True)
class AppSettings:
    max_megapixels: float  # the --max-megapixels guard of realciao-upscale (0: no limit)
    max_upload_mb: float  # uploads larger than this are refused (0: no limit)
    tile: int | None = None  # as realciao-upscale's --tile / --tile-margin
    tile_margin: int | None = None
    quality: int = 95  # JPEG/WebP quality, realciao-upscale's default


@dataclass
class Upscaled:
    path: Path  # the file written, in the input's format with its EXIF (new size, upright) and ICC
    picture: Picture  # the input, upright
    pixels: np.ndarray  # the output, in the input's layout and dtype
    notes: list[str]  # what the output format could not keep, tiles redone in fp32
    seconds: float  # upscaling alone


@dataclass
class Comparison:
    bicubic: Image.Image  # MATLAB bicubic to the same size (reduced above COMPARE_PIXELS, as is the model's)
    model: Image.Image
    zoom: list[tuple[Image.Image, str]]  # the most detailed place: input (nearest), bicubic, model


def file_label(path: str | Path) -> str:
    return Path(path).name


class PhotoUpscaler:
    """The loaded models and what a request needs; ``folder`` holds the results (and nothing else)."""

    def __init__(
        self,
        methods: list[Method],
        precision: str,
        precision_fallback: bool,
        settings: AppSettings,
        folder: Path,
        each_tile: Callable[[], object] = lambda: None,
    ):
        self.methods = {method.name: method for method in methods if not isinstance(method, Bicubic)}
        if not self.methods:
            raise ValueError("give at least one model besides bicubic")
        self.run = RunSettings(settings.tile, settings.tile_margin, precision, precision_fallback)
        self.settings = settings
        self.folder = Path(folder)
        self.each_tile = each_tile

    @property
    def names(self) -> list[str]:
        return list(self.methods)

    def method(self, name: str | None) -> Method:
        if name is None:
            return next(iter(self.methods.values()))
        if name not in self.methods:
            raise RealciaoError(f"model {name!r}: not loaded; choose one of {', '.join(self.methods)}")
        return self.methods[name]

    def check_upload(self, path: str | Path) -> None:
        limit = self.settings.max_upload_mb
        size = Path(path).stat().st_size
        if limit and size > limit * 1e6:
            raise UploadError(
                f"{file_label(path)}: {size / 1e6:.1f} MB, above the {limit:g} MB this page accepts "
                f"(realciao-app --max-upload-mb)"
            )

    def read(self, path: str | Path) -> Picture:
        self.check_upload(path)
        try:
            return read_image(path)
        except ImageReadError as error:  # the upload's folder means nothing to the user: its name does
            raise ImageReadError(str(error).replace(str(path), file_label(path))) from None

    def preview(self, path: str | Path) -> tuple[Image.Image, str]:
        """The photo upright, at most PREVIEW_SIDE pixels a side, and a line about it."""
        picture = self.read(path)
        height, width = picture.pixels.shape[:2]
        image = array_to_pil(to_float_rgb(picture.pixels))
        image.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        kind = picture.meta.source_format or "image"
        depth = "16-bit" if picture.pixels.dtype == np.uint16 else picture.pixels.dtype.name
        return image, f"{file_label(path)}: {width}x{height} {kind}, {depth}, shown upright"

    def plan(self, path: str | Path, request: OutputSize, name: str | None = None) -> str:
        """The output size and, before a long run, how long it would take here (or why it is refused)."""
        method = self.method(name)
        self.check_upload(path)
        try:
            height, width = upright_size(path)
        except (OSError, ValueError, SyntaxError):  # the reader says why, or reads what needs a plugin (HEIC)
            height, width = self.read(path).pixels.shape[:2]
        size = request.pixels((height, width))
        line = f"{width}x{height} -> {size[1]}x{size[0]} ({size[0] * size[1] / 1e6:.2f} megapixels)"
        check_size_limit(file_label(path), size, self.settings.max_megapixels, runs_tiled(method))
        if runs_tiled(method) is not None:
            line += f", {estimate_work(runs_tiled(method), size)}"
        return line

    def upscale(
        self,
        path: str | Path,
        request: OutputSize,
        name: str | None = None,
        progress: Callable[[int, int], object] | None = None,
    ) -> Upscaled:
        """Upscale one photo and write the result in its format (as ``realciao-upscale`` does)."""
        method = self.method(name)
        begun = time.perf_counter()
        picture = self.read(path)
        size = request.pixels(picture.pixels.shape[:2])
        check_size_limit(file_label(path), size, self.settings.max_megapixels, runs_tiled(method))

        def on_tile(done: int, total: int) -> None:
            self.each_tile()
            if progress is not None:
                progress(done, total)

        notes = []
        start = time.perf_counter()
        model = runs_tiled(method)
        if model is not None:
            pixels, report = upscale_array(
                model, picture.pixels, size, self.run.tile, self.run.tile_margin, self.run.precision, on_tile
            )
            if report.fp32_fallbacks:
                notes.append(
                    f"{report.fp32_fallbacks} tile(s) overflowed in {self.run.precision}, redone in fp32"
                )
        else:
            peer = method.peer
            precision = method.precision_for(self.run.precision, self.run.precision_fallback)
            out = peer.upscale(
                to_float_rgb(picture.pixels), size, self.run.tile, self.run.tile_margin, precision
            )
            dtype = picture.pixels.dtype if picture.pixels.dtype.kind == "u" else np.float32
            pixels = from_unit_float(torch.from_numpy(out.image), dtype)
        seconds = time.perf_counter() - start
        target = (
            self.new_result_folder() / f"{safe_name(Path(path).stem)}_{size[1]}x{size[0]}."
            f"{output_extension('auto', picture.meta)}"
        )
        notes += write_image(target, pixels, picture.meta, self.settings.quality)
        for note in notes:
            LOGGER.info("%s: %s", file_label(path), note)
        LOGGER.info(
            "%s: %dx%d with %s, %.1f s (upscaling %.1f s)",
            file_label(path),
            size[1],
            size[0],
            method.name,
            time.perf_counter() - begun,
            seconds,
        )
        return Upscaled(target, picture, pixels, notes, seconds)

    def compare(self, result: Upscaled, name: str | None = None) -> Comparison:
        """Bicubic of the same size beside the model's output, and the most detailed place up close
        (``realciao-eval``'s crop chooser, on the input)."""
        lr = to_float_rgb(result.picture.pixels)
        model_view = to_float_rgb(result.pixels)
        size = model_view.shape[:2]
        full = size[0] * size[1] <= COMPARE_PIXELS
        view_size = size if full else reduced(size, COMPARE_PIXELS)
        bicubic = image_of(Bicubic().upscale(lr, view_size, self.run))
        model = array_to_pil(model_view)
        if not full:
            model = model.resize((view_size[1], view_size[0]), Image.Resampling.LANCZOS)
        top, left, height, width = detail_places(lr, size, ZOOM_CROP, count=1)[0]
        zoom = [(image_of(lr_view(lr, size, (top, left, height, width))), "input (each pixel enlarged)")]
        if full:
            zoom.append((bicubic.crop((left, top, left + width, top + height)), "bicubic"))
        zoom.append(
            (array_to_pil(model_view[top : top + height, left : left + width]), self.method(name).name)
        )
        return Comparison(bicubic, model, zoom)

    def new_result_folder(self) -> Path:
        """A folder of its own for each result (two users may upload photos of one name); results
        older than KEEP_RESULTS_SECONDS go first."""
        self.folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for old in self.folder.iterdir():
            if old.is_dir() and now - old.stat().st_mtime > KEEP_RESULTS_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.folder / uuid.uuid4().hex
        folder.mkdir()
        return folder


def runs_tiled(method: Method):
    """The model ``upscale_array`` runs (a CiaoSR generator or an any-size ONNX graph), or None for a peer."""
    return method.model if isinstance(method, CiaoSRMethod) else None


def reduced(size: tuple[int, int], pixels: int) -> tuple[int, int]:
    factor = (pixels / (size[0] * size[1])) ** 0.5
    return max(1, int(size[0] * factor)), max(1, int(size[1] * factor))


def image_of(tensor: torch.Tensor) -> Image.Image:
    """A (1, 3, H, W) image in [0, 1] as a Pillow image."""
    return array_to_pil(tensor[0].permute(1, 2, 0).float().numpy())


def user_message(error: BaseException) -> str:
    """One line for the page: the error's own (it names the file), or a hint for running out of memory."""
    message = " ".join(str(error).split())
    if isinstance(error, RuntimeError) and "memory" in message.lower():
        message += " (try a smaller output size, or start realciao-app with a smaller --tile)"
    return message


# errors a request can meet that say something about its input or this machine, not a bug
REQUEST_ERRORS = (RealciaoError, OSError, FloatingPointError, RuntimeError)


def load_upscaler(
    specs: list[str],
    allow_pickle: bool,
    device: torch.device,
    precision: str,
    settings: AppSettings,
    folder: Path,
    each_tile: Callable[[], object] = lambda: None,
) -> tuple[PhotoUpscaler, str]:
    """The models (``realciao-eval``'s loader and names) and their precision (``auto`` measured
    as ``realciao-eval`` measures it: on the first CiaoSR model at x2, realciao-upscale's default
    scale); and that precision in words."""
    from realciao.autoprecision import decide_precision
    from realciao.devices import AUTO
    from realciao.evaluation.methods import OnnxAnySizeMethod, load_methods
    from realciao.evaluation.protocols import precision_probe

    methods = load_methods(specs, allow_pickle, device)
    # an ONNX graph has its own precision and nothing torch can time
    measurable = [method for method in methods if not isinstance(method, OnnxAnySizeMethod)]
    probe = precision_probe(measurable, 2.0) if precision == AUTO else None
    decision = decide_precision(precision, device, probe)
    for method in methods:  # an explicit precision a peer cannot run in fails at start
        if isinstance(method, PeerMethod):
            method.precision_for(decision.precision, precision == AUTO)
    upscaler = PhotoUpscaler(methods, decision.precision, precision == AUTO, settings, folder, each_tile)
    return upscaler, decision.describe()
