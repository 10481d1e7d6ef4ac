"""realciao-app (``realciao.app``, ``realciao.cli.app``): the page in a real browser (Debian's
Chromium, headless, driven by Playwright), ``/upscale`` through gradio_client, bad input.

One app is started for the module, as a user starts it (``python -m realciao.cli.app``), with a
tiny CiaoSR generator made here, in a working folder, HOME and TMPDIR of its own, so that what
it writes anywhere can be seen. The browser test skips where /usr/bin/chromium is absent
(CI installs it: ``.ci/run``); set REALCIAO_APP_SCREENSHOT=PATH to keep its screenshot.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import realciao
from realciao.app.page import output_request
from realciao.archs import build_generator
from realciao.checkpoint import save_generator
from realciao.imageio import ORIENTATION_TAG, read_image, srgb_profile
from realciao.metrics import psnr
from realciao.upscaling import OutputSize, SizeError
from tests.conftest import SHARED_DIR

gradio_client = pytest.importorskip(
    "gradio_client", reason="realciao-app needs the app extra: pip install 'realciao[app]'"
)
pytest.importorskip("gradio", reason="realciao-app needs the app extra: pip install 'realciao[app]'")

TINY = {"channels": 8, "num_blocks": 2, "mlp_hidden": [16, 16], "non_local": False}
CHROMIUM = Path("/usr/bin/chromium")
# what a headless browser must not do on its own (updates, sync, safe-browsing lists): only the page's requests count
CHROMIUM_ARGS = (
    "--headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update "
    "--disable-sync --no-first-run".split()
)
UPRIGHT = (64, 96)  # (height, width) of the test photo as shown; stored rotated, with EXIF orientation 6
MAX_MEGAPIXELS = 0.05  # x2.5 (160x240) is allowed, x8 (512x768) is not
MAX_UPLOAD_MB = 1.0
MAKE_TAG = 0x010F
STARTUP_SECONDS = 300  # a loaded 2-core machine; about 20 s when quiet
SCREENSHOT = "REALCIAO_APP_SCREENSHOT"
# the docs' screenshot shows a trained model's result: Real-ESRGAN as a peer, when ../shared has it
REAL_ESRGAN = SHARED_DIR / "weights" / "RealESRGAN_x4plus.safetensors"


@dataclass
class RunningApp:
    url: str
    process: subprocess.Popen
    log: Path
    workdir: Path  # its working folder
    home: Path
    tmp: Path  # its TMPDIR
    model: Path
    photo: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def phone_photo(path: Path) -> Path:
    """A JPEG as a phone writes a portrait shot: pixels stored sideways, EXIF orientation 6, a
    maker tag and an sRGB profile. The picture is a cat (scikit-image's bundled photo)."""
    from skimage import data

    cat = Image.fromarray(data.chelsea()[40:232, 100:388]).resize(UPRIGHT[::-1], Image.Resampling.LANCZOS)
    stored = Image.fromarray(np.rot90(np.asarray(cat), 1))  # orientation 6 turns it back clockwise
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    exif[MAKE_TAG] = "realciao test phone"
    stored.save(path, quality=95, exif=exif.tobytes(), icc_profile=srgb_profile())
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def repository_root() -> Path:
    return Path(realciao.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> RunningApp:
    root = tmp_path_factory.mktemp("app")
    folders = {name: root / name for name in ("workdir", "home", "tmp", "inputs")}
    for folder in folders.values():
        folder.mkdir()
    torch.manual_seed(0)
    model = save_generator(
        build_generator("edsr-baseline-ciaosr", **TINY).eval(), folders["inputs"] / "tiny.safetensors"
    )
    photo = phone_photo(folders["inputs"] / "photo.jpg")
    port = free_port()
    env = dict(
        os.environ,
        HOME=str(folders["home"]),
        TMPDIR=str(folders["tmp"]),
        PYTHONPATH=os.pathsep.join([str(repository_root()), os.environ.get("PYTHONPATH", "")]),
    )
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR"):
        env.pop(name, None)  # under HOME, so they are watched too
    log = root / "app.log"
    options = (
        f"--precision fp32 --threads 1 --max-megapixels {MAX_MEGAPIXELS} --max-upload-mb {MAX_UPLOAD_MB}"
    )
    command = [
        sys.executable,
        "-m",
        "realciao.cli.app",
        f"--model=tiny={model}",
        f"--port={port}",
        *options.split(),
    ]
    command += (
        [f"--model=Real-ESRGAN={REAL_ESRGAN}"] if os.environ.get(SCREENSHOT) and REAL_ESRGAN.exists() else []
    )
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command, cwd=folders["workdir"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    running = RunningApp(
        f"http://127.0.0.1:{port}",
        process,
        log,
        folders["workdir"],
        folders["home"],
        folders["tmp"],
        model,
        photo,
    )
    deadline = time.monotonic() + STARTUP_SECONDS
    while "serving" not in running.output():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"realciao-app did not start:\n{running.output()[-3000:]}")
        time.sleep(0.5)
    yield running
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def client(app: RunningApp, downloads: Path):
    return gradio_client.Client(app.url, download_files=str(downloads), verbose=False)


def assert_written_as_realciao_upscale_writes(path: Path, size: tuple[int, int], source: Path) -> None:
    """Upright pixels of ``size`` (height, width), the source's EXIF with orientation 1, its ICC profile."""
    with Image.open(source) as photo:
        profile = photo.info["icc_profile"]
    with Image.open(path) as image:
        assert image.format == "JPEG"
        assert image.size == (size[1], size[0])
        exif = image.getexif()
        assert exif.get(ORIENTATION_TAG) == 1
        assert exif.get(MAKE_TAG) == "realciao test phone"
        assert image.info.get("icc_profile") == profile


# --- start-up ------------------------------------------------------------------------------


def test_it_serves_this_machine_only(app):
    assert f"serving {app.url} (this machine only" in app.output()
    assert "127.0.0.1" in app.url


@pytest.mark.parametrize("problem", ["not a model", "no such file"])
def test_a_model_it_cannot_load_is_one_line_and_a_nonzero_exit(problem, tmp_path, capsys, monkeypatch):
    from realciao.cli.app import main

    path = tmp_path / "model.safetensors"
    if problem == "not a model":
        path.write_bytes(b"these bytes are no weights file")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert main(["--model", str(path), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("realciao-app: error: ") and str(path) in err
    assert not any((tmp_path / "tmp").iterdir())  # its temporary folder is gone with it


def test_without_gradio_it_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    import importlib.util

    from realciao.cli.app import main

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else find_spec(name, *a)
    )
    assert main(["--model", str(tmp_path / "any.safetensors")]) == 2
    assert (
        capsys.readouterr().err
        == "realciao-app: error: realciao-app needs Gradio: pip install 'realciao[app]'\n"
    )


@pytest.mark.parametrize(
    "controls,request_",
    [
        (("scale", 2.5, None, None), OutputSize(scale=2.5)),
        (("width", 2.5, 300, None), OutputSize(width=300)),
        (("height", 2.5, None, 200.0), OutputSize(height=200)),
        (("width and height", 2.5, 300, 200), OutputSize(size=(200, 300))),
    ],
)
def test_the_size_controls_are_realciao_upscale_output_sizes(controls, request_):
    assert output_request(*controls) == request_


def test_a_missing_width_is_a_size_error():
    with pytest.raises(SizeError, match="width"):
        output_request("width", 2.0, None, None)


# --- /upscale through gradio_client --------------------------------------------------------


@pytest.mark.usefixtures("one_thread")
def test_upscale_endpoint_gives_the_file_realciao_upscale_writes(app, tmp_path):
    from realciao.cli.upscale import main as upscale_main

    api = client(app, tmp_path / "downloads")
    assert set(api.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/upscale"}
    from_app = Path(api.predict(gradio_client.handle_file(str(app.photo)), 2.5, api_name="/upscale"))
    expected = (round(UPRIGHT[0] * 2.5), round(UPRIGHT[1] * 2.5))
    assert_written_as_realciao_upscale_writes(from_app, expected, app.photo)

    code = upscale_main(
        [
            "-i",
            str(app.photo),
            "-o",
            str(tmp_path / "cli"),
            "--model",
            str(app.model),
            "-s",
            "2.5",
            "--precision",
            "fp32",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    from_cli = tmp_path / "cli" / "photo.jpg"
    ours, theirs = read_image(from_app).pixels, read_image(from_cli).pixels
    assert ours.shape == theirs.shape == (*expected, 3)
    assert (
        psnr(*(torch.from_numpy(p.copy()).permute(2, 0, 1)[None] / 255 for p in (ours, theirs)), y_channel=False)
        >= 60
    )
    assert from_app.read_bytes() == from_cli.read_bytes()  # the same pixels, encoded the same way


# --- bad input -----------------------------------------------------------------------------


def bad_inputs(folder: Path, photo: Path) -> dict[str, tuple[Path, float, str]]:
    """name -> (file, scale, what the one-line message must say)."""
    folder.mkdir(exist_ok=True)
    text = folder / "notes.png"
    text.write_text("a shopping list, not a picture\n")
    data = photo.read_bytes()
    truncated = folder / "cut.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    return {
        "non-image": (text, 2.0, "notes.png: not an image"),
        "truncated": (truncated, 2.0, "cut.jpg: truncated JPEG"),
        "huge output": (photo, 8.0, "photo.jpg: the output would be 768x512 (0.39 megapixels; about"),
    }


def test_bad_input_is_one_message_and_the_app_keeps_serving(app, tmp_path):
    api = client(app, tmp_path / "downloads")
    for name, (path, scale, message) in bad_inputs(tmp_path / "bad", app.photo).items():
        with pytest.raises(gradio_client.exceptions.AppError) as refused:
            api.predict(gradio_client.handle_file(str(path)), scale, api_name="/upscale")
        assert message in str(refused.value), name
        assert "\n" not in str(refused.value).strip() and "Traceback" not in str(refused.value), name
    assert "--max-megapixels 0.05" in str(refused.value)
    assert app.process.poll() is None
    good = api.predict(gradio_client.handle_file(str(app.photo)), 2.0, api_name="/upscale")
    assert Image.open(good).size == (UPRIGHT[1] * 2, UPRIGHT[0] * 2)


def test_files_over_max_upload_mb_are_refused_before_they_are_stored(app, tmp_path):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(np.random.default_rng(0).integers(0, 256, int(1.5 * MAX_UPLOAD_MB * 1e6), dtype=np.uint8))
    before = sorted(app.tmp.rglob("*"))
    with open(big, "rb") as file:
        answer = httpx.post(f"{app.url}/gradio_api/upload", files={"files": ("big.png", file)}, timeout=60)
    assert answer.status_code == 413
    assert "big.png" in answer.text or "maximum" in answer.text.lower()
    assert not any(p.name == "big.png" for p in app.tmp.rglob("*"))
    assert sorted(app.tmp.rglob("*")) == before
    with pytest.raises(
        Exception, match="exceeds the maximum file size"
    ):  # gradio_client says so before sending
        client(app, tmp_path / "downloads").predict(
            gradio_client.handle_file(str(big)), 2.0, api_name="/upscale"
        )


def test_nothing_is_written_outside_its_temporary_folder(app, tmp_path):
    api = client(app, tmp_path / "downloads")
    for path, scale, _ in bad_inputs(tmp_path / "bad", app.photo).values():
        with pytest.raises(gradio_client.exceptions.AppError):
            api.predict(gradio_client.handle_file(str(path)), scale, api_name="/upscale")
    api.predict(gradio_client.handle_file(str(app.photo)), 1.5, api_name="/upscale")
    assert list(app.workdir.iterdir()) == []
    assert list(app.home.rglob("*")) == []
    (folder,) = app.tmp.iterdir()
    assert folder.name.startswith("realciao-app-")


# --- in a real browser ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium); absent here")
    playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_in_chromium_a_rotated_photo_comes_back_upright_at_2_5x_with_its_exif(app, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(app.url, wait_until="networkidle")
    page.locator("#photo input[type=file]").set_input_files(str(app.photo))
    page.locator("#about").get_by_text(f"{UPRIGHT[1]}x{UPRIGHT[0]} JPEG").wait_for()
    scale = page.locator("#scale input[type=number]")
    scale.fill("2.5")
    scale.press("Enter")
    width, height = round(UPRIGHT[1] * 2.5), round(UPRIGHT[0] * 2.5)
    page.locator("#plan").get_by_text(f"-> {width}x{height}").wait_for()
    page.locator("#run").click()
    page.locator("#result a").first.wait_for(timeout=120_000)

    shown = page.locator("#compare img")
    assert shown.count() == 2  # bicubic and the model, the slider between them
    for index in range(2):
        image = shown.nth(index)
        image.evaluate("image => image.decode()")
        assert image.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [width, height]
    assert page.locator("#zoom img").count() == 3  # the input up close, bicubic, the model
    with page.expect_download() as download:
        page.locator("#result a").first.click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == f"photo_{width}x{height}.jpg"
    assert_written_as_realciao_upscale_writes(saved, (height, width), app.photo)

    if os.environ.get(SCREENSHOT):
        if "--model=Real-ESRGAN" in " ".join(app.process.args):
            page.locator("#model input").click()
            page.get_by_role("option", name="Real-ESRGAN").click()
            page.locator("#run").click()
            page.locator("#summary").get_by_text("with Real-ESRGAN").wait_for(timeout=300_000)
        page.screenshot(path=os.environ[SCREENSHOT], full_page=True)
    elsewhere = [url for url in requests if not url.startswith((app.url + "/", "data:", "blob:"))]
    assert elsewhere == [], "the page asked for something beyond this machine"
    page.close()


def test_in_chromium_a_file_that_is_no_photo_gets_a_message_on_the_page(app, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app.url, wait_until="networkidle")
    (path, _, message) = bad_inputs(tmp_path, app.photo)["non-image"]
    page.locator("#photo input[type=file]").set_input_files(str(path))
    page.locator("#about").get_by_text(message).wait_for()
    page.locator("#run").click()
    page.get_by_text(message).last.wait_for()  # the run's refusal, as a notice on the page
    assert app.process.poll() is None
    page.close()


def test_in_chromium_a_file_over_max_upload_mb_gets_a_message_on_the_page(app, browser, tmp_path):
    big = tmp_path / "big.jpg"
    big.write_bytes(np.random.default_rng(0).integers(0, 256, int(1.5 * MAX_UPLOAD_MB * 1e6), dtype=np.uint8))
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(app.url, wait_until="networkidle")
    page.locator("#photo input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed", exact=False).first.wait_for()
    assert not any(p.name == "big.jpg" for p in app.tmp.rglob("*"))
    page.close()


# --- stopping (last: it ends the module's app) ---------------------------------------------


def test_stopping_removes_its_temporary_folder(app):
    app.process.send_signal(signal.SIGTERM)
    assert app.process.wait(timeout=60) == 0
    assert "realciao-app: stopped" in app.output()
    assert list(app.tmp.iterdir()) == []
    assert list(app.workdir.iterdir()) == []
