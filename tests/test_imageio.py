"""realciao.imageio: images come in upright in one of four layouts, and go out with their metadata."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from realciao import imageio
from realciao.imageio import ImageMeta, ImageReadError, output_extension, read_image, write_image

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def pattern(height: int = 12, width: int = 20) -> np.ndarray:
    """An RGB image in which every pixel differs, so any flip or rotation shows."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[imageio.ORIENTATION_TAG] = orientation
    exif[0x010F] = "PhoneMaker"  # Make
    exif.get_ifd(imageio.EXIF_IFD)[imageio.EXIF_WIDTH] = 20
    exif.get_ifd(imageio.EXIF_IFD)[imageio.EXIF_HEIGHT] = 12
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_as_pillow_does(tmp_path, orientation):
    path = tmp_path / "o.png"
    Image.fromarray(pattern()).save(path, exif=exif_with(orientation))
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert np.array_equal(read_image(path).pixels, expected)


def test_rotated_jpeg_comes_out_upright_and_is_written_with_orientation_1(tmp_path):
    source = tmp_path / "phone.jpg"
    Image.fromarray(pattern()).save(source, exif=exif_with(6), icc_profile=ICC, quality=95)
    picture = read_image(source)
    assert picture.pixels.shape == (20, 12, 3)  # portrait: 6 = rotate 90 degrees clockwise
    assert picture.meta.icc_profile == ICC

    target = tmp_path / "out.jpg"
    write_image(target, np.zeros((40, 24, 3), np.uint8), picture.meta)
    written = Image.open(target)
    exif = written.getexif()
    assert exif[imageio.ORIENTATION_TAG] == 1
    assert exif[0x010F] == "PhoneMaker"
    assert exif.get_ifd(imageio.EXIF_IFD)[imageio.EXIF_WIDTH] == 24
    assert exif.get_ifd(imageio.EXIF_IFD)[imageio.EXIF_HEIGHT] == 40
    assert written.info["icc_profile"] == ICC
    assert read_image(target).pixels.shape == (40, 24, 3)  # not rotated a second time


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_colour_is_read_and_written_at_16_bits(tmp_path, suffix):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    cv2.imwrite(str(path), rgb[..., ::-1])
    picture = read_image(path)
    assert picture.pixels.dtype == np.uint16 and np.array_equal(picture.pixels, rgb)
    target = tmp_path / f"again{suffix}"
    write_image(target, picture.pixels, picture.meta)
    assert np.array_equal(read_image(target).pixels, rgb)


def test_16_bit_png_keeps_icc_and_exif(tmp_path):
    rgba = np.random.default_rng(3).integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    meta = ImageMeta("PNG", exif_with(1).tobytes(), ICC)
    path = tmp_path / "deep.png"
    write_image(path, rgba, meta)
    assert np.array_equal(read_image(path).pixels, rgba)
    written = Image.open(path)
    assert written.info["icc_profile"] == ICC
    assert written.getexif()[0x010F] == "PhoneMaker"


def test_16_bit_grey_stays_grey_and_16_bit(tmp_path):
    grey = np.random.default_rng(4).integers(0, 65536, (6, 8), dtype=np.uint16)
    path = tmp_path / "grey16.png"
    write_image(path, grey)
    picture = read_image(path)
    assert picture.pixels.dtype == np.uint16 and np.array_equal(picture.pixels, grey)


def test_modes_become_one_of_four_layouts(tmp_path):
    rgb = Image.fromarray(pattern())
    rgb.convert("L").save(tmp_path / "l.png")
    rgb.convert("LA").save(tmp_path / "la.png")
    rgb.convert("P").save(tmp_path / "p.png")
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "pt.png", transparency=0)
    rgb.convert("CMYK").save(tmp_path / "c.jpg")
    rgb.convert("1").save(tmp_path / "b.png")
    shapes = {name: read_image(tmp_path / name).pixels.shape for name in ["l.png", "la.png", "p.png", "pt.png", "c.jpg", "b.png"]}
    assert shapes == {
        "l.png": (12, 20),
        "la.png": (12, 20, 2),
        "p.png": (12, 20, 3),
        "pt.png": (12, 20, 4),
        "c.jpg": (12, 20, 3),
        "b.png": (12, 20),
    }


def test_cmyk_with_a_profile_gets_an_srgb_profile(tmp_path):
    image = Image.fromarray(pattern()).convert("CMYK")
    path = tmp_path / "cmyk.jpg"
    image.save(path)
    picture = read_image(path)
    assert picture.pixels.shape == (12, 20, 3)
    # the source's CMYK profile (here none) never travels with RGB pixels
    profile = picture.meta.icc_profile
    assert profile is None or ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).startswith("sRGB")


def test_rgba_png_round_trip_keeps_alpha(tmp_path):
    rgba = np.concatenate([pattern(), np.full((12, 20, 1), 77, np.uint8)], axis=2)
    path = tmp_path / "a.png"
    write_image(path, rgba)
    assert np.array_equal(read_image(path).pixels, rgba)


def test_jpeg_cannot_hold_alpha_or_16_bits_and_says_so(tmp_path):
    rgba16 = np.full((4, 5, 4), 65535, np.uint16)
    notes = write_image(tmp_path / "x.jpg", rgba16)
    assert any("alpha" in n for n in notes) and any("8 bits" in n for n in notes)
    assert read_image(tmp_path / "x.jpg").pixels.shape == (4, 5, 3)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(bad)
    with pytest.raises(ImageReadError, match="absent.png: no such file"):
        read_image(tmp_path / "absent.png")


def test_heic_without_pillow_heif_names_the_file_and_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(imageio, "heif_available", lambda: False)
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\0\0\0\x18ftypheic" + bytes(32))
    with pytest.raises(ImageReadError, match=r"IMG_0001.HEIC.*pillow-heif"):
        read_image(path)


def test_heic_with_pillow_heif_round_trips(tmp_path):
    pytest.importorskip("pillow_heif")
    assert imageio.heif_available()  # registers the opener and the HEIF writer with Pillow
    path = tmp_path / "photo.heic"
    Image.fromarray(pattern()).save(path, quality=90)
    picture = read_image(path)
    assert picture.pixels.shape == (12, 20, 3) and picture.meta.source_format == "HEIF"
    assert output_extension("auto", picture.meta) == "jpg"


def test_auto_extension_keeps_writable_formats():
    assert output_extension("auto", ImageMeta("PNG")) == "png"
    assert output_extension("auto", ImageMeta("JPEG")) == "jpg"
    assert output_extension("auto", ImageMeta("BMP")) == "png"
    assert output_extension("webp", ImageMeta("PNG")) == "webp"


def test_pil_array_conversion_round_trips():
    for mode in ["L", "LA", "RGB", "RGBA"]:
        image = Image.fromarray(pattern()).convert(mode)
        assert imageio.array_to_pil(imageio.pil_to_array(image)).tobytes() == image.tobytes()
    buffer = io.BytesIO()
    Image.fromarray(pattern()).save(buffer, format="PNG")
    assert imageio.pil_to_array(Image.open(buffer)).shape == (12, 20, 3)


def test_a_text_file_named_as_a_photo_is_named_in_the_error(tmp_path):
    fake = tmp_path / "IMG_0001.jpg"
    fake.write_text("this is a text file\n")
    with pytest.raises(imageio.ImageReadError) as error:
        imageio.read_image(fake)
    assert str(error.value).startswith(f"{fake}: not an image (its contents are in no format realciao reads")
    assert "BytesIO" not in str(error.value)
