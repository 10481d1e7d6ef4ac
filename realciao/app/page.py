"""The Gradio page on ``service.PhotoUpscaler``, and serving it on this machine, offline.

Offline means no request leaves the machine: no analytics or version check (Gradio's
telemetry is off), no share link, no web fonts (the theme uses the system's fonts), no
server-side rendering process. One API endpoint, ``/upscale`` (photo file, scale) -> upscaled
file, is public; the page's other events are private. ``offline_environment`` must run
before Gradio is imported: Gradio reads some of it at import.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from pathlib import Path

from realciao.app.model_thread import call_here
from realciao.app.service import REQUEST_ERRORS, PhotoUpscaler, user_message
from realciao.errors import RealciaoError
from realciao.imageio import READ_SUFFIXES
from realciao.upscaling import OutputSize

LOGGER = logging.getLogger(__name__)

SIZE_CHOICES = ("scale", "width", "height", "width and height")
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
SYSTEM_MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Consolas", "Liberation Mono", "monospace"]
# the zoomed place is a small crop shown large: pixels stay pixels instead of being smoothed
CSS = "#zoom img { image-rendering: pixelated; }"
QUEUE_POLL_SECONDS = 0.02  # see ``serve``


class AppExtraMissing(RealciaoError):
    """Gradio, which the page needs, is not installed."""


INSTALL_HINT = "realciao-app needs Gradio: pip install 'realciao[app]'"


def gradio_problem() -> str | None:
    """Why the page cannot be served here (Gradio missing), or None; Gradio is not imported."""
    return None if importlib.util.find_spec("gradio") is not None else INSTALL_HINT


def import_gradio():
    try:
        import gradio
    except ImportError as error:
        raise AppExtraMissing(f"{INSTALL_HINT} ({error})") from None
    return gradio


def offline_environment(temporary_folder: Path) -> None:
    """Gradio's settings for a page that stays on this machine; its uploads and cache go to
    ``temporary_folder`` (the command removes it at exit)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(temporary_folder)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("GRADIO_SHARE", None)
    # Gradio imports matplotlib around every event; matplotlib's font cache would go to the user's home
    os.environ.setdefault("MPLCONFIGDIR", str(temporary_folder / "matplotlib"))


def warm_up_in_background() -> None:
    """Build matplotlib's font cache (a second or two; Gradio's first event would wait for it) while
    the page waits for its first visitor."""
    threading.Thread(target=importlib.import_module, args=("matplotlib.font_manager",), daemon=True).start()


def output_request(
    size_by: str, scale: float | None, width: float | None, height: float | None
) -> OutputSize:
    """The page's size controls as realciao-upscale's output size (``--scale``, ``--width``,
    ``--height`` or ``--size``)."""
    whole = {name: int(value) if value else None for name, value in (("width", width), ("height", height))}
    if size_by == "width":
        return OutputSize(width=whole["width"] or 0)
    if size_by == "height":
        return OutputSize(height=whole["height"] or 0)
    if size_by == "width and height":
        return OutputSize(size=(whole["height"] or 0, whole["width"] or 0))
    return OutputSize(scale=float(scale) if scale is not None else 0.0)


def build_page(upscaler: PhotoUpscaler, max_megapixels: float, on_model_thread=call_here):
    """The page: photo, output size and model on the left; comparison, zoom and download on the right.
    What runs a model (planning, upscaling, comparing) goes through ``on_model_thread`` (a
    ``ModelThread`` in realciao-app); reading a photo for its preview does not wait for it."""
    gr = import_gradio()

    def failed(error: BaseException) -> gr.Error:
        message = user_message(error)
        LOGGER.info("request refused: %s", message)
        return gr.Error(message, title="Cannot upscale this", print_exception=False)

    def show_photo(photo, size_by, scale, width, height, name):
        if not photo:
            return None, "", ""
        try:
            image, about = upscaler.preview(photo)
        except REQUEST_ERRORS as error:
            return None, f"**{user_message(error)}**", ""
        return image, about, make_plan(photo, size_by, scale, width, height, name)

    def make_plan(photo, size_by, scale, width, height, name):
        if not photo:
            return ""
        try:
            return on_model_thread(upscaler.plan, photo, output_request(size_by, scale, width, height), name)
        except REQUEST_ERRORS as error:
            return f"**{user_message(error)}**"

    def run_page(photo, size_by, scale, width, height, name, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for a progress bar)
        if not photo:
            raise gr.Error("Choose a photo first.", title="No photo", print_exception=False)
        try:
            result = on_model_thread(
                upscaler.upscale,
                photo,
                output_request(size_by, scale, width, height),
                name,
                lambda done, total: progress((done, total), desc="tiles", unit="tiles"),
            )
            progress(None)
            views = on_model_thread(upscaler.compare, result, name)
        except REQUEST_ERRORS as error:
            raise failed(error) from None
        height_out, width_out = result.pixels.shape[:2]
        summary = (
            f"{width_out}x{height_out} in {result.seconds:.1f} s with {upscaler.method(name).name}; "
            f"download: {result.path.name}" + "".join(f"<br>note: {note}" for note in result.notes)
        )
        return (views.bicubic, views.model), views.zoom, str(result.path), summary

    def upscale_api(photo, scale, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for a progress bar)
        """Upscale a photo by `scale` with the first model; returns the file as realciao-upscale writes it."""
        if not photo:
            raise gr.Error("give a photo file", print_exception=False)
        try:
            request = OutputSize(scale=float(scale))
            result = on_model_thread(
                upscaler.upscale,
                photo,
                request,
                None,
                lambda done, total: progress((done, total), desc="tiles", unit="tiles"),
            )
        except REQUEST_ERRORS as error:
            raise failed(error) from None
        return str(result.path)

    def show_size_controls(size_by):
        return (
            gr.update(visible=size_by == "scale"),
            gr.update(visible=size_by in ("width", "width and height")),
            gr.update(visible=size_by in ("height", "width and height")),
        )

    names = upscaler.names
    limit = f"; outputs up to {max_megapixels:g} megapixels" if max_megapixels else ""
    with gr.Blocks(title="realciao", analytics_enabled=False) as page:
        gr.Markdown(
            f"## realciao: upscale a photo to any size\nOn this machine only: nothing is uploaded anywhere"
            f"{limit}. The download is the file `realciao-upscale` writes: the photo's format, its EXIF "
            f"(new size, upright) and colour profile."
        )
        with gr.Row():
            with gr.Column(scale=2):
                photo = gr.File(
                    label="Photo", file_types=sorted(READ_SUFFIXES), type="filepath", elem_id="photo"
                )
                preview = gr.Image(
                    label="Photo, upright", interactive=False, height=240, elem_id="preview", buttons=[]
                )
                about = gr.Markdown(elem_id="about")
                model = gr.Dropdown(names, value=names[0], label="Model", elem_id="model")
                size_by = gr.Radio(
                    list(SIZE_CHOICES), value="scale", label="Output size by", elem_id="size-by"
                )
                scale = gr.Slider(1, 8, value=2, step=0.1, label="Scale", elem_id="scale")
                width = gr.Number(
                    label="Width (pixels)", precision=0, minimum=1, visible=False, elem_id="width"
                )
                height = gr.Number(
                    label="Height (pixels)", precision=0, minimum=1, visible=False, elem_id="height"
                )
                plan = gr.Markdown(elem_id="plan")
                run = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column(scale=3):
                compare = gr.ImageSlider(
                    label="bicubic | model (drag the bar)",
                    format="png",
                    elem_id="compare",
                    interactive=False,
                    max_height=640,
                )
                zoom = gr.Gallery(
                    label="Up close: the most detailed place",
                    format="png",
                    columns=3,
                    object_fit="contain",
                    height=300,
                    elem_id="zoom",
                    interactive=False,
                )
                result = gr.File(label="Download", interactive=False, elem_id="result")
                summary = gr.Markdown(elem_id="summary")
        controls = [size_by, scale, width, height, model]
        private = {"api_visibility": "private", "concurrency_id": "model", "concurrency_limit": 1}
        photo.change(show_photo, [photo, *controls], [preview, about, plan], **private)
        for control in controls:
            control.change(make_plan, [photo, *controls], plan, trigger_mode="always_last", **private)
        size_by.change(
            show_size_controls, size_by, [scale, width, height], api_visibility="private", queue=False
        )
        run.click(run_page, [photo, *controls], [compare, zoom, result, summary], **private)
        # the API's one endpoint: a button never shown, so the page's photo and scale are its inputs
        api = gr.Button(visible=False)
        api.click(
            upscale_api,
            [photo, scale],
            result,
            api_name="upscale",
            concurrency_id="model",
            concurrency_limit=1,
        )
    return page


def theme():
    """Gradio's default look in the system's fonts (its own theme would load web fonts)."""
    return import_gradio().themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)


def serve(page, host: str, port: int, max_upload_mb: float, allowed: Path) -> None:
    """Serve ``page`` at host:port from background threads (the caller waits)."""
    page.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        quiet=True,
        ssr_mode=False,
        pwa=False,
        mcp_server=False,
        enable_monitoring=False,
        max_file_size=int(max_upload_mb * 1e6) if max_upload_mb else None,
        allowed_paths=[str(allowed)],
        footer_links=["api", "settings"],
        prevent_thread_lock=True,
        theme=theme(),
        css=CSS,
    )
    # Gradio's queue looks for work every millisecond when idle (0.01 s for progress): several
    # percent of a core, and a thread that preempts the model's threads a thousand times a
    # second. An upscaler can wait 20 ms for its request. The attributes are Gradio's own, not
    # its API: where a version lacks them, nothing changes.
    queue = getattr(page, "_queue", None)
    for name, seconds in (("sleep_when_free", QUEUE_POLL_SECONDS), ("progress_update_sleep_when_free", 0.1)):
        if queue is not None and hasattr(queue, name):
            setattr(queue, name, seconds)
