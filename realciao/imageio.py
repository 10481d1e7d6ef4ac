"""Reading and writing images as phone and camera users have them.

Pixels come back upright (EXIF orientation applied) as numpy arrays in one of four
layouts: (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) RGB, (H, W, 4) RGBA; uint8, or
uint16 for 16-bit PNG/TIFF (Pillow reads 16-bit colour as 8-bit, so OpenCV reads those).
What a writer needs to give the result the source's metadata travels in ``ImageMeta``:
EXIF (written back with orientation 1 and the new size) and the ICC profile.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

from realciao.errors import RealciaoError
from realciao.files import atomic_write

READ_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".heic", ".heif"}
HEIF_SUFFIXES = {".heic", ".heif"}
HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
WRITE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF"}
SUFFIX_TO_EXT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}
SOURCE_TO_EXT = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg", "WEBP": "webp", "TIFF": "tiff"}
HEIF_EXTRA_HINT = "install the optional extra: pip install 'realciao[heif]' (or: pip install pillow-heif)"

ORIENTATION_TAG = 0x0112
EXIF_IFD = 0x8769
EXIF_WIDTH, EXIF_HEIGHT = 0xA002, 0xA003
IFD0_WIDTH, IFD0_HEIGHT = 0x0100, 0x0101
# Pillow's transposes that undo each EXIF orientation, as numpy operations on (H, W, ...) arrays
ORIENTATION_FIXES = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


class ImageReadError(RealciaoError):
    """A file that cannot be read as an image; the message names the file."""


@dataclass(frozen=True)
class ImageMeta:
    source_format: str | None = None  # Pillow's format name of the source: JPEG, PNG, HEIF...
    exif: bytes | None = None  # EXIF as stored in the source (orientation not yet reset)
    icc_profile: bytes | None = None


@dataclass(frozen=True)
class Picture:
    pixels: np.ndarray
    meta: ImageMeta


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def heif_available() -> bool:
    """Register pillow-heif's opener (the optional extra realciao[heif]) on first need."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def is_heif(data: bytes, name: str = "") -> bool:
    """HEIC/HEIF by suffix or by the ISO-BMFF brand in the first bytes."""
    if Path(name).suffix.lower() in HEIF_SUFFIXES:
        return True
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def read_image(path: str | os.PathLike) -> Picture:
    """Read an image upright; raises ImageReadError naming the file when it cannot."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read ({error})") from error
    return decode_image(data, str(path))


def decode_image(data: bytes, label: str) -> Picture:
    """An encoded image (a file's bytes, an LMDB value) upright; ``label`` names it in errors."""
    if not data:
        raise ImageReadError(f"{label}: empty file")
    if is_heif(data, label) and not heif_available():
        raise ImageReadError(f"{label}: HEIC/HEIF images need pillow-heif; {HEIF_EXTRA_HINT}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG" and data.rstrip(b"\0")[-2:] != b"\xff\xd9":
                raise ImageReadError(f"{label}: truncated JPEG (no end-of-image marker)")
            exif = image.getexif()
            meta = ImageMeta(image.format, source_exif(image, exif), image.info.get("icc_profile"))
            if needs_opencv(data, image):
                pixels = read_with_opencv(data, label, image.mode)
            else:
                pixels, meta = pil_pixels(image, meta)
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:  # Pillow's message names only its in-memory buffer
        raise ImageReadError(f"{label}: not an image (its contents are in no format realciao reads: "
                             f"{', '.join(sorted(READ_SUFFIXES))})") from None
    except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{label}: cannot read as an image ({error})") from error
    # libheif already applies HEIF's own rotation (irot/imir), which phones mirror into EXIF
    orientation = 1 if meta.source_format == "HEIF" else exif.get(ORIENTATION_TAG, 1)
    if orientation in ORIENTATION_FIXES:
        pixels = ORIENTATION_FIXES[orientation](pixels)
    return Picture(np.ascontiguousarray(pixels), meta)


def is_grey(pixels: np.ndarray) -> bool:
    """A single-channel layout ((H, W) or grey + alpha); equal RGB channels do not count."""
    return pixels.ndim == 2 or pixels.shape[2] in (1, 2)


def to_float_rgb(pixels: np.ndarray) -> np.ndarray:
    """Any of the four layouts (uint8, uint16 or float) -> (H, W, 3) float32 RGB in [0, 1]:
    grey is replicated, alpha dropped (what the models see)."""
    if pixels.dtype == np.uint8:
        values = pixels.astype(np.float32) / 255
    elif pixels.dtype == np.uint16:
        values = pixels.astype(np.float32) / 65535
    else:
        values = np.clip(pixels, 0, 1).astype(np.float32, copy=False)
    if values.ndim == 2:
        values = values[..., None]
    if values.shape[2] in (1, 2):
        values = np.repeat(values[..., :1], 3, axis=2)
    return np.ascontiguousarray(values[..., :3])


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as (H, W, 3) float32 RGB in [0, 1], upright (training, validation, evaluation)."""
    return to_float_rgb(read_image(path).pixels)


def upright_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) as ``read_image`` will return the image, from the header alone (EXIF
    rotation included); cheap enough to plan work before decoding."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = 1 if image.format == "HEIF" else image.getexif().get(ORIENTATION_TAG, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in READ_SUFFIXES and not path.name.startswith(".")


def image_folder_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot give images (missing, a file, no images in it, searched
    recursively), or None; stops at the first image, so a large dataset is not listed."""
    folder = Path(folder)
    if not folder.exists():
        return "folder does not exist"
    if not folder.is_dir():
        return "is a file, not a folder"
    if not any(is_image_file(p) for p in folder.rglob("*")):
        return f"no images ({', '.join(sorted(READ_SUFFIXES))}) found, searched recursively"
    return None


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files in a folder (by suffix, hidden files left out), sorted."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p))


def source_exif(image: Image.Image, exif: Image.Exif) -> bytes | None:
    """EXIF worth carrying to the output. A TIFF's tags are its own layout (strip offsets...),
    not an EXIF block, so only formats that embed EXIF contribute one."""
    if image.format == "TIFF" or not len(exif):
        return None
    return exif.tobytes()


def png_header(data: bytes) -> tuple[int, int] | None:
    """(bit depth, colour type) from a PNG's IHDR."""
    head = data[:26]
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return head[24], head[25]


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the empty IEND chunk every PNG ends with


def png_is_complete(path: Path) -> bool:
    """Whether ``path`` is a PNG that ends with its IEND chunk (a file cut short does not)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            handle.seek(-len(PNG_END), os.SEEK_END)
            return handle.read() == PNG_END
    except OSError:
        return False


def needs_opencv(data: bytes, image: Image.Image) -> bool:
    """16-bit colour (and 16-bit grey + alpha), which Pillow would read as 8-bit."""
    if image.format == "PNG":
        header = png_header(data)
        return header is not None and header[0] == 16 and header[1] in (2, 4, 6)
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) == 16 and len(bits) >= 2
    return False


def read_with_opencv(data: bytes, label: str, pil_mode: str) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16:
        raise ImageReadError(f"{label}: cannot read as a 16-bit image")
    if pixels.ndim == 3:
        pixels = swap_red_blue(pixels)  # BGR(A) -> RGB(A)
        if pil_mode.startswith("L") and pixels.shape[2] == 4:  # libpng expands grey + alpha to RGBA
            pixels = pixels[..., [0, 3]]
    return pixels


def pil_pixels(image: Image.Image, meta: ImageMeta) -> tuple[np.ndarray, ImageMeta]:
    """Pillow image -> array in one of the four layouts; palette, CMYK and other modes converted."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), meta
    if mode == "I":  # 16-bit grey in some Pillow versions
        return np.clip(np.asarray(image), 0, 65535).astype(np.uint16), meta
    if mode == "F":
        return np.clip(np.asarray(image, dtype=np.float32), 0, 1), meta
    if mode == "CMYK":
        return np.asarray(cmyk_to_rgb(image, meta.icc_profile)), ImageMeta(meta.source_format, meta.exif, srgb_profile())
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        return np.asarray(image.convert("RGBA" if has_alpha else "RGB")), meta
    target = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA"}.get(mode, "RGB")
    return np.asarray(image.convert(target) if target != mode else image), meta


def cmyk_to_rgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Through the embedded CMYK profile when there is one (a plain conversion shifts colours)."""
    if icc_profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass
    return image.convert("RGB")


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A Pillow image as an array in one of the four layouts (no EXIF rotation: the caller's image)."""
    pixels, _ = pil_pixels(image, ImageMeta(image.format, None, image.info.get("icc_profile")))
    return pixels


def array_to_pil(pixels: np.ndarray) -> Image.Image:
    """The inverse of ``pil_to_array`` for 8-bit layouts and 16-bit grey."""
    if pixels.dtype == np.uint16:
        if pixels.ndim != 2:
            raise ValueError("Pillow holds 16-bit images only as grey ('I;16'); pass a numpy array instead")
        return Image.fromarray(pixels)  # mode I;16
    if pixels.dtype != np.uint8:
        pixels = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(pixels)


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def output_extension(requested: str, meta: ImageMeta) -> str:
    """``auto`` keeps the source's format where it can be written, else PNG (lossless);
    HEIF becomes JPEG, which every viewer reads and which carries EXIF and ICC."""
    if requested != "auto":
        if requested not in WRITE_FORMATS:
            raise ValueError(f"unknown output format {requested!r}; choose auto or one of {sorted(WRITE_FORMATS)}")
        return requested
    if meta.source_format == "HEIF":
        return "jpg"
    return SOURCE_TO_EXT.get(meta.source_format or "", "png")


def updated_exif(exif: bytes | None, width: int, height: int) -> bytes | None:
    """The source EXIF with orientation 1 (pixels are upright now) and the output size."""
    if not exif:
        return None
    data = Image.Exif()
    data.load(exif)
    data[ORIENTATION_TAG] = 1
    for tag, value in ((IFD0_WIDTH, width), (IFD0_HEIGHT, height)):
        if tag in data:
            data[tag] = value
    sub = data.get_ifd(EXIF_IFD)
    for tag, value in ((EXIF_WIDTH, width), (EXIF_HEIGHT, height)):
        if tag in sub:
            sub[tag] = value
    return data.tobytes()


def write_image(path: str | os.PathLike, pixels: np.ndarray, meta: ImageMeta = ImageMeta(), quality: int = 95,
                png_level: int | None = None) -> list[str]:
    """Write pixels in the format of the path's suffix, atomically; returns notes on what the
    format could not keep (alpha in JPEG, 16 bits in JPEG/WebP). ``png_level``: zlib level 0-9
    of a PNG (None: the encoder's default)."""
    path = Path(path)
    ext = SUFFIX_TO_EXT.get(path.suffix.lower())
    if ext is None:
        raise ValueError(f"{path}: cannot write {path.suffix!r} files; choose one of {sorted(WRITE_FORMATS)}")
    notes: list[str] = []
    pixels = np.asarray(pixels)
    if pixels.dtype.kind == "f":  # float images are written at 16 bits where the format allows
        pixels = np.round(np.clip(pixels, 0, 1) * 65535).astype(np.uint16)
    if ext in ("jpg", "webp") and pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)
        notes.append(f"{ext} holds 8 bits per channel: written at 8 bits")
    if ext == "jpg" and pixels.ndim == 3 and pixels.shape[2] in (2, 4):
        pixels = pixels[..., :-1] if pixels.shape[2] == 4 else pixels[..., 0]
        notes.append("jpg has no alpha channel: alpha dropped")
    height, width = pixels.shape[:2]
    exif = updated_exif(meta.exif, width, height) if ext != "tiff" else None
    if pixels.dtype == np.uint16 and pixels.ndim == 3:
        data = encode_with_opencv(pixels, ext, exif, meta.icc_profile, png_level)
        if ext == "tiff" and (meta.icc_profile or meta.exif):
            notes.append("16-bit colour TIFF is written without ICC/EXIF")
    else:
        data = encode_with_pil(pixels, ext, exif, meta.icc_profile, quality, png_level)
    atomic_write(path, data)
    return notes


def encode_with_pil(pixels: np.ndarray, ext: str, exif: bytes | None, icc: bytes | None, quality: int,
                    png_level: int | None = None) -> bytes:
    image = array_to_pil(pixels)
    options: dict = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if ext in ("jpg", "webp"):
        options["quality"] = int(quality)
    if ext == "tiff":
        options["compression"] = "tiff_adobe_deflate"
    if ext == "png" and png_level is not None:
        options["compress_level"] = int(png_level)
    buffer = io.BytesIO()
    image.save(buffer, format=WRITE_FORMATS[ext], **options)
    return buffer.getvalue()


def opencv_layout(pixels: np.ndarray) -> np.ndarray:
    """Pixels as ``cv2.imread(..., IMREAD_UNCHANGED)`` gives them: grey as is, colour as BGR(A),
    grey + alpha as BGRA (OpenCV writes 1, 3 or 4 channels)."""
    if pixels.ndim == 2:
        return np.ascontiguousarray(pixels)
    if pixels.shape[2] == 2:
        pixels = pixels[..., [0, 0, 0, 1]]
    return swap_red_blue(pixels)


def swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """RGB(A) <-> BGR(A), a new contiguous array."""
    if pixels.dtype in (np.uint8, np.uint16, np.float32):
        # OpenCV swaps channels about 60x faster than numpy's fancy indexing (22 ms -> 0.3 ms
        # for a 2K image): it was most of what preparing data spent beyond decoding and encoding
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if pixels.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return np.ascontiguousarray(pixels[..., [2, 1, 0, 3][: pixels.shape[2]]])


# libpng's row filters. With a level set, OpenCV (and so BasicSR's scripts) tries all five on
# every row; "fast" tries None, Sub and Up only. On photos the files come out the same size
# within 1 %, and both encoding and decoding are faster (no Paeth or Average to undo):
# scripts/bench_data.py measures it. OpenCV before 4.12 cannot choose, and writes "all".
PNG_FILTERS = ("fast", "all")


def png_params(level: int | None, filters: str = "all") -> list[int]:
    """OpenCV's PNG parameters for a zlib ``level`` (None: OpenCV's default) and a filter set."""
    if filters not in PNG_FILTERS:
        raise ValueError(f"PNG filters must be one of {', '.join(PNG_FILTERS)}, got {filters!r}")
    params = [] if level is None else [cv2.IMWRITE_PNG_COMPRESSION, int(level)]
    if filters == "fast" and hasattr(cv2, "IMWRITE_PNG_FAST_FILTERS"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FAST_FILTERS]
    return params


def encode_with_opencv(pixels: np.ndarray, ext: str, exif: bytes | None, icc: bytes | None,
                       png_level: int | None = None, png_filters: str = "all") -> bytes:
    """16-bit colour via OpenCV; a PNG gets its ICC and EXIF chunks added afterwards."""
    params = png_params(png_level, png_filters) if ext == "png" and png_level is not None else []
    ok, encoded = cv2.imencode("." + ext, opencv_layout(pixels), params)
    if not ok:
        raise OSError(f"OpenCV could not encode a {pixels.dtype} {ext}")
    data = encoded.tobytes()
    return add_png_chunks(data, exif, icc) if ext == "png" else data


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def add_png_chunks(data: bytes, exif: bytes | None, icc: bytes | None) -> bytes:
    """Insert iCCP and eXIf right after IHDR (both must precede the image data)."""
    ihdr_end = 8 + 8 + 13 + 4
    extra = b""
    if icc:
        extra += png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc))
    if exif:
        extra += png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif)
    return data[:ihdr_end] + extra + data[ihdr_end:]
