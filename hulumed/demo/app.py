"""The Gradio Blocks page of ``hulumed demo``: layout and wiring only; the logic is in the sibling modules.

``build_demo(engine)`` returns a ``gr.Blocks`` whose events are also named API endpoints (``/attach``,
``/volume``, ``/slice``, ``/video``, ``/estimate``, ``/send``, ``/stop``, ``/detach``, ``/clear``), so
``gradio_client`` drives exactly what the browser does. ``launch`` serves it on loopback by default with
analytics off (``GRADIO_ANALYTICS_ENABLED=False`` and ``analytics_enabled=False``), no share link, no
server-side rendering node process, and the default theme's bundled fonts: the page makes no outside request.

One engine serves every browser session; each session has its own ``DemoSession`` (``gr.State``) and its own
cancel event for the Stop button (keyed by Gradio's session hash).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported anywhere

import copy  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections import OrderedDict  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from ..errors import HulumedError, MediaError  # noqa: E402
from ..interface import Engine  # noqa: E402
from ..processing.image import check_pixels  # noqa: E402
from ..processing.limits import DEFAULT_MAX_MEDIA_BYTES, DEFAULT_MAX_PIXELS  # noqa: E402
from ..processing.windowing import window_names  # noqa: E402
from .attachments import Attachment, VideoOptions, VolumeOptions, classify, inside_root  # noqa: E402
from .chat import EXAMPLE_PROMPTS, ChatSettings, respond  # noqa: E402
from .estimates import estimate_inputs, markdown_table  # noqa: E402
from .session import DemoSession  # noqa: E402
from .viewer import (  # noqa: E402
    SESSION_BUDGET_BYTES,
    TOTAL_BUDGET_BYTES,
    VolumeCache,
    image_preview,
    shown_strip,
    video_frames,
    viewer_slice,
    volume_view,
)

log = logging.getLogger("hulumed.demo")

NO_WINDOW = "none (per-slice min-max, upstream)"
CUSTOM_WINDOW = "custom center / width"
WINDOW_CHOICES = [NO_WINDOW, *window_names(), CUSTOM_WINDOW]
# small slices fill the viewer, pixels kept square and sharp (display only: the strip shows the model's pixels)
CSS = ("#slice-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }\n"
       "#estimate { overflow-x: auto; } #estimate table { white-space: nowrap; }")
DEFAULT_TEMPERATURE = 0.0  # greedy: the same question on the same study gives the same answer (and upstream's
# greedy outputs); sampling stays one slider away
RESEARCH_NOTICE = ("**Research use only — not for diagnosis.** Answers come from a research model and may be wrong; "
                   "they are not a medical device's output and must not guide patient care.")
TABS = {"volume": "volume-tab", "video": "video-tab", "image": "images-tab"}
UPLOAD_TYPES = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".dcm", ".mp4", ".webm", ".avi",
                ".mov", ".mkv", ".m4v", ".gif", ".nii", ".gz", ".zip"]


def _window_option(choice: str | None, center: float | None, width: float | None) -> str | tuple[float, float] | None:
    if not choice or choice == NO_WINDOW:
        return None
    if choice == CUSTOM_WINDOW:
        if center is None or width is None:
            raise HulumedError("custom window: give both a center and a width")
        return (float(center), float(width))
    return choice


def _window_choice(option: str | tuple[float, float] | None) -> str:
    return NO_WINDOW if option is None else CUSTOM_WINDOW if isinstance(option, tuple) else option


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class DemoLimits:
    """What one attachment and the sessions together may cost: the server's media limits per file, and a memory
    budget for what the viewer keeps decoded (per session, and for all sessions of this demo)."""

    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES  # one file on disk (a DICOM series: each file)
    max_pixels: int = DEFAULT_MAX_PIXELS  # one still image's declared width x height, checked before decoding
    session_bytes: int = SESSION_BUDGET_BYTES  # decoded volumes and their model slices kept for one session
    total_bytes: int = TOTAL_BUDGET_BYTES  # kept for all sessions together


class DemoApp:
    """The page's handlers over one engine (shared) and per-session ``DemoSession`` values."""

    def __init__(self, engine: Engine, processor: Any = None, media_root: str | None = None,
                 workspace: str | None = None, limits: DemoLimits | None = None) -> None:
        self.engine = engine
        # per-session files (assembled DICOM series) live under a folder only this user can read (0700)
        self.workspace = Path(workspace or tempfile.mkdtemp(prefix="hulumed-demo-"))
        self.session_files: dict[str, set[str]] = {}  # session key -> uploaded files it attached
        self.processor = processor if processor is not None else engine.processor
        if self.processor is None:
            raise HulumedError("the demo needs the engine's processor (engine.processor)")
        self.media_root = media_root
        self.limits = limits or DemoLimits()
        self._caches: OrderedDict[str, VolumeCache] = OrderedDict()  # session key -> its decoded volumes
        self.cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ per-session memory
    def volumes(self, key: str = "anonymous") -> VolumeCache:
        """The session's volume cache (``limits.session_bytes``). Whenever a cache grows, sessions over
        ``limits.total_bytes`` together lose their least recently used caches first (decoded again if that session
        comes back); the growing session keeps what it just decoded."""
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._caches[key] = VolumeCache(budget_bytes=self.limits.session_bytes,
                                                        on_grow=lambda: self._within_total(key))
            self._caches.move_to_end(key)
        return cache

    def _within_total(self, key: str) -> None:
        with self._lock:
            others = [k for k in self._caches if k != key]
            while others and sum(c.held_bytes for c in self._caches.values()) > self.limits.total_bytes:
                self._caches.pop(others.pop(0)).clear()

    def held_bytes(self) -> int:
        """What every session's caches hold now (for the memory benchmark and tests)."""
        with self._lock:
            return sum(cache.held_bytes for cache in self._caches.values())

    def release(self, key: str) -> None:
        """Drop what a session decoded (Clear, Detach, a closed page)."""
        with self._lock:
            cache = self._caches.pop(key, None)
        if cache is not None:
            cache.clear()

    # ------------------------------------------------------------------ attachments and previews
    def _check(self, attachment: Attachment, key: str = "anonymous") -> None:
        """The server's media limits (file size, declared image pixels), then decode the attachment once (as the
        model will); ``MediaError`` when it is unusable or over a limit."""
        for path in attachment.files():
            size = os.path.getsize(path)
            if size > self.limits.max_media_bytes:
                raise MediaError(f"{Path(path).name} is {size:,} bytes, over this demo's limit of "
                                 f"{self.limits.max_media_bytes:,}")
            if attachment.kind == "image":
                check_pixels(path, self.limits.max_pixels)
        if attachment.kind == "volume":
            volume_view(self.processor, self.volumes(key), attachment)
        elif attachment.kind == "video":
            video_frames(self.processor, attachment)
        else:
            image_preview(self.processor, attachment)

    def session_dir(self, key: str) -> Path:
        folder = self.workspace / "sessions" / key
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    def forget_session(self, key: str) -> None:
        """Delete what a session left on disk (its uploads, Gradio's copies, and its own folder) and in memory."""
        self.release(key)
        with self._lock:
            files = self.session_files.pop(key, set())
            files -= set().union(*self.session_files.values())  # Gradio stores identical uploads once: keep shared
        workspace = self.workspace.resolve()
        for name in files:
            path = Path(name).resolve()
            if workspace not in path.parents:
                continue  # a file of the media root, not an upload: never deleted
            path.unlink(missing_ok=True)
            if path.parent != workspace:  # Gradio keeps each upload in a folder of its own
                shutil.rmtree(path.parent, ignore_errors=True)
        shutil.rmtree(self.workspace / "sessions" / key, ignore_errors=True)

    def attach(self, session: DemoSession, paths: list[str],
               report: Any = None, key: str = "anonymous") -> tuple[DemoSession, list[str]]:
        """Check and keep the given files; ``report(fraction, stage)`` is told what is being read (progress)."""
        session = copy.copy(session)
        session.pending = list(session.pending)
        with self._lock:
            self.session_files.setdefault(key, set()).update(str(p) for p in paths or [])
        attachments, errors = classify([str(p) for p in paths or []], series_dir=str(self.session_dir(key)))
        for number, attachment in enumerate(attachments):
            if report is not None:
                report(number / max(len(attachments), 1), self.stage(attachment, key))
            try:
                with self.volumes(key).remembering():  # the estimate rows reuse these slices (decoded once)
                    self._check(attachment, key)
            except (HulumedError, ValueError, OSError) as error:
                errors.append(f"{attachment.name}: {_one_line(error)}")
                continue
            session.attach([attachment])
        session.notice = "\n".join(f"⚠️ {e}" for e in errors)
        return session, errors

    def stage(self, attachment: Attachment, key: str = "anonymous") -> str:
        """What attaching ``attachment`` is doing, for the progress line (a volume's header is read here)."""
        if attachment.kind != "volume":
            return f"decoding {attachment.name}"
        try:
            volume = self.volumes(key).get(attachment.path)
        except (HulumedError, ValueError, OSError):
            return f"reading {attachment.name}"
        axis = attachment.volume.axis
        total = volume.shape[axis]
        count = min(attachment.volume.num_slices or total, total)
        return f"reading {attachment.name}: {count} of {total} slices for the model"

    def attach_from_root(self, session: DemoSession, paths: list[str] | str | None,
                         key: str = "anonymous") -> DemoSession:
        if not self.media_root:
            session.notice = "⚠️ no --media-root was given to this demo"
            return session
        chosen = [paths] if isinstance(paths, str) else list(paths or [])
        resolved, errors = [], []
        for path in chosen:
            try:
                found = inside_root(path, self.media_root)
            except HulumedError as error:
                errors.append(_one_line(error))
                continue
            if found.is_file():
                resolved.append(str(found))
        session, more = self.attach(session, resolved, key=key)
        errors += more
        session.notice = "\n".join(f"⚠️ {e}" for e in errors)
        return session

    def panel(self, session: DemoSession, settings: ChatSettings | None = None,
              key: str = "anonymous") -> dict[str, Any]:
        """What the right-hand side shows for the pending attachments (previews, strip, frames, estimate)."""
        out: dict[str, Any] = {"attachments": self.attachment_list(session), "notice": session.notice}
        volume = session.latest("volume", include_sent=True)
        with self.volumes(key).remembering():  # one decode per (file, options) for the viewer and every estimate
            out["volume"] = self.volume_outputs(session, volume, key=key) if volume is not None else None
            video = session.latest("video", include_sent=True)
            out["frames"] = video_frames(self.processor, video) if video is not None else []
            out["images"] = [image_preview(self.processor, a) for a in session.shown() if a.kind == "image"]
            out["estimate"] = self.estimate(session, "", settings or ChatSettings())
        return out

    @staticmethod
    def attachment_list(session: DemoSession) -> str:
        if not session.pending:
            sent = "".join(f"\n- {a.describe()}" for a in session.sent)
            return "_No attachments for the next message._" + (f"\n\nSent with the last message:{sent}" if sent else "")
        return "\n".join(f"{i + 1}. {a.describe()}" for i, a in enumerate(session.pending))

    def volume_outputs(self, session: DemoSession, volume: Attachment, index: int | None = None,
                       key: str = "anonymous") -> dict[str, Any]:
        """The viewer's outputs; a slider move reads one plane from the volume this session already opened."""
        cache = self.volumes(key)
        view = volume_view(self.processor, cache, volume)
        strip, strip_label = shown_strip(view)
        index = view.indices[len(view.indices) // 2] if index is None else min(max(int(index), 0), view.total - 1)
        received = (f"all {view.total}" if view.indices == list(range(view.total))
                    else ", ".join(map(str, view.indices)) if len(view.indices) <= 32
                    else f"{view.indices[0]}, {view.indices[1]}, … {view.indices[-1]} (linspace)")
        info = (f"**{volume.name}** · voxels {view.shape[0]}×{view.shape[1]}×{view.shape[2]} · "
                f"{view.total} slices along axis {volume.volume.axis} · the model receives "
                f"**{len(view.indices)}**: {received}")
        shown_slice = viewer_slice(cache, volume, index, session.radiological)
        self._within_total(key)  # reading a plane may have read the volume whole (a compressed file, axis 0 / 1)
        marker = "received by the model" if index in view.indices else "not received by the model"
        shown = "radiological view" if session.radiological else "stored orientation"
        return {"info": info, "total": view.total, "index": index, "strip": strip, "strip_label": strip_label,
                "options": volume.volume, "slice": shown_slice,
                "slice_label": f"slice {index} ({marker}) · {shown}"}

    def update_volume(
        self, session: DemoSession, axis: int, num_slices: float | None, window: str, center: float | None,
        width: float | None, key: str = "anonymous",
    ) -> DemoSession:
        volume = session.latest("volume")
        if volume is None:
            session.notice = ("⚠️ attach a volume first (NIfTI, DICOM zip or several DICOM files); a volume already "
                              "sent is shown as it was sent")
            return session
        count = None if not num_slices or int(num_slices) <= 0 else int(num_slices)
        options = VolumeOptions(axis=int(axis), num_slices=count, window=_window_option(window, center, width))
        updated = volume.with_volume(options)
        with self.volumes(key).remembering():
            volume_view(self.processor, self.volumes(key), updated)  # raises on a bad window before it is kept
        return _with_replaced(session, volume, updated)

    def update_video(self, session: DemoSession, fps: float, max_frames: float) -> DemoSession:
        video = session.latest("video")
        if video is None:
            session.notice = "⚠️ attach a video first"
            return session
        updated = video.with_video(VideoOptions(fps=float(fps), max_frames=int(max_frames)))
        video_frames(self.processor, updated)  # raises on bad options before they are kept
        return _with_replaced(session, video, updated)

    def estimate(self, session: DemoSession, prompt: str, settings: ChatSettings, key: str | None = None) -> str:
        """The estimate table; with ``key``, volumes this session decoded are not decoded again."""
        if not session.pending and not session.sent:
            return "_Attach an input to see its visual tokens and memory estimate._"
        inputs = session.pending or session.sent  # after a send: what went with the last message
        history = session.conversation if session.pending else session.conversation[:-2]
        try:
            if key is not None:
                with self.volumes(key).remembering():
                    rows = estimate_inputs(self.engine, history, inputs, prompt, settings.params())
            else:
                rows = estimate_inputs(self.engine, history, inputs, prompt, settings.params())
        except (HulumedError, ValueError) as error:
            return f"⚠️ {_one_line(error)}"
        heading = "" if session.pending else "**Sent with the last message:**\n\n"
        return heading + markdown_table(rows) + (
            "\n\n_Each input is measured alone; with a video or volume in the request every image is merged 2×2 "
            "(upstream rule), so the total row is what will be sent. Memory: weights + KV cache + activation "
            "peak, a planning figure._")

    # ------------------------------------------------------------------ chat
    def cancel_event(self, key: str) -> threading.Event:
        with self._lock:
            event = threading.Event()
            self.cancels[key] = event
            return event

    def stop(self, key: str) -> None:
        with self._lock:
            event = self.cancels.get(key)
        if event is not None:
            event.set()

    def send(self, session: DemoSession, text: str, settings: ChatSettings, key: str) -> Iterator[Any]:
        session = copy.deepcopy(session)
        cancel = self.cancel_event(key)
        try:
            for messages, status in respond(self.engine, session, text, settings, cancel):
                yield session, messages, status
        finally:
            cancel.set()  # a closed page stops its generation too


def build_demo(engine: Engine, processor: Any = None, media_root: str | None = None,
               title: str = "Hulu-Med demo", workspace: str | None = None) -> gr.Blocks:
    """The page over ``engine`` (see the module docstring)."""
    app = DemoApp(engine, processor, media_root, workspace)
    info = engine.info() if hasattr(engine, "info") else {}
    model_line = f"`{info.get('path') or '?'}` · {info.get('decoder', '?')} decoder · {info.get('device', '?')}"

    # Gradio's cached uploads and previews: older than an hour deleted every 5 minutes, all of them at shutdown
    with gr.Blocks(analytics_enabled=False, title=title, delete_cache=(300, 3600)) as demo:
        state = gr.State(DemoSession())
        gr.Markdown(f"## {title}\nModel {model_line}. Answers are generated locally; nothing leaves this machine.\n\n"
                    f"{RESEARCH_NOTICE}", elem_id="header")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=520, buttons=["copy"], elem_id="chat")
                text = gr.Textbox(label="Message", placeholder="Ask about the attached inputs…", lines=2,
                                  elem_id="message")
                with gr.Row():
                    send_btn = gr.Button("Send", variant="primary", elem_id="send")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                    clear_btn = gr.Button("Clear conversation", elem_id="clear")
                status = gr.Markdown("", elem_id="status")
                examples = [[p] for prompts in EXAMPLE_PROMPTS.values() for p in prompts]
                labels = [f"{kind}: {p}" for kind, prompts in EXAMPLE_PROMPTS.items() for p in prompts]
                gr.Examples(examples=examples, inputs=[text], example_labels=labels, label="Example prompts")
                with gr.Accordion("Generation settings", open=False, elem_id="settings"):
                    max_tokens = gr.Slider(1, 4096, value=512, step=1, label="max new tokens", elem_id="max-tokens")
                    temperature = gr.Slider(0, 2, value=DEFAULT_TEMPERATURE, step=0.05,
                                            label="temperature (0 = greedy: the same answer every time)")
                    top_p = gr.Slider(0.05, 1, value=0.8, step=0.05, label="top-p")
                    seed = gr.Number(value=-1, precision=0, label="seed (-1 = random)")
                    think = gr.Checkbox(value=False, label="think (reasoning shown in a collapsed block)")
            with gr.Column(scale=2):
                files = gr.File(label="Attach images, a video, a NIfTI volume or a DICOM series",
                                file_count="multiple", file_types=UPLOAD_TYPES, elem_id="upload")
                if media_root:  # relative paths of regular files below the root (symlinked folders are not entered)
                    explorer = gr.Dropdown(server_files(media_root), multiselect=True, label="Files on the server",
                                           elem_id="server-files")
                    pick_btn = gr.Button("Attach selected server files")
                notice = gr.Markdown("", elem_id="notice")
                attachments = gr.Markdown(DemoApp.attachment_list(DemoSession()), elem_id="attachments")
                detach_btn = gr.Button("Remove attachments", size="sm")
                with gr.Tabs(elem_id="media-tabs") as tabs:
                    with gr.Tab("Volume", id=TABS["volume"]):
                        volume_info = gr.Markdown("_No volume attached._", elem_id="volume-info")
                        with gr.Row():
                            axis = gr.Radio([0, 1, 2], value=2, label="axis", elem_id="axis")
                            slices = gr.Number(value=0, precision=0, minimum=0, label="slices for the model (0 = all)")
                        with gr.Row():
                            window = gr.Dropdown(WINDOW_CHOICES, value=NO_WINDOW, label="window")
                            center = gr.Number(value=40, label="center", visible=False)  # custom window only
                            width = gr.Number(value=400, label="width", visible=False)
                        radiological = gr.Checkbox(value=True, label="radiological view (display only: patient's right "
                                                   "on the left; the model's slices follow the options)",
                                                   elem_id="radiological")
                        slider = gr.Slider(0, 1, value=0, step=1, label="slice", elem_id="slice-slider")
                        slice_image = gr.Image(label="slice", type="numpy", format="png", interactive=False,
                                               elem_id="slice-image", height=280)
                        strip = gr.Gallery(label="What the model receives", format="png", columns=8, height=200,
                                           elem_id="strip")
                    with gr.Tab("Video", id=TABS["video"]):
                        with gr.Row():
                            fps = gr.Number(value=1, minimum=0.01, label="frames per second")
                            max_frames = gr.Number(value=128, precision=0, minimum=1, label="max frames")
                        frames = gr.Gallery(label="Sampled frames (timestamps as the model is told)", format="png",
                                            columns=6, height=240, elem_id="frames")
                    with gr.Tab("Images", id=TABS["image"]):
                        images = gr.Gallery(label="Attached images", format="png", columns=2, height=460,
                                            object_fit="contain", elem_id="images")
                estimate = gr.Markdown("", elem_id="estimate")
                estimate_btn = gr.Button("Refresh estimate", size="sm")

        settings_inputs = [max_tokens, temperature, top_p, seed, think]
        panel_outputs = [state, attachments, notice, volume_info, slider, slice_image, strip, axis, slices, window,
                         frames, images, estimate, tabs]

        def settings_of(max_new: float, temp: float, top: float, seed_value: float | None,
                        think_on: bool) -> ChatSettings:
            chosen_seed = None if seed_value is None or seed_value < 0 else int(seed_value)
            return ChatSettings(max_new_tokens=int(max_new), temperature=float(temp), top_p=float(top),
                                seed=chosen_seed, think=bool(think_on))

        def key_of(request: gr.Request | None) -> str:
            return (request.session_hash if request is not None else None) or "anonymous"

        def render(session: DemoSession, settings: ChatSettings | None = None, key: str = "anonymous") -> list[Any]:
            try:
                panel = app.panel(session, settings, key=key)
            except (HulumedError, ValueError) as error:
                session.notice = f"⚠️ {_one_line(error)}"
                return [session, app.attachment_list(session), session.notice, *[gr.skip()] * 11]
            vol = panel["volume"]
            if vol is None:
                volume_parts = ["_No volume attached._", gr.Slider(0, 1, value=0), None, [], gr.skip(), gr.skip(),
                                gr.skip()]
            else:
                opts = vol["options"]
                moved = gr.Slider(0, vol["total"] - 1, value=vol["index"], step=1, label=vol["slice_label"])
                volume_parts = [f"{vol['info']}\n\n{vol['strip_label']}", moved, vol["slice"], vol["strip"], opts.axis,
                                opts.num_slices or 0, _window_choice(opts.window)]
            newest = session.pending[-1] if session.pending else None  # show what was just attached
            tab = gr.Tabs(selected=TABS[newest.kind]) if newest is not None and newest.kind in TABS else gr.skip()
            return [session, panel["attachments"], panel["notice"], *volume_parts, panel["frames"], panel["images"],
                    panel["estimate"], tab]

        def on_attach(session: DemoSession, paths: list[str] | None, m: float, t: float, p: float, sd: float | None,
                      th: bool, request: gr.Request, progress: gr.Progress = gr.Progress()) -> list[Any]:
            session, _ = app.attach(session, paths or [], report=lambda f, stage: progress(0.8 * f, desc=stage),
                                    key=key_of(request))
            progress(0.85, desc="counting visual tokens and memory")
            return [*render(session, settings_of(m, t, p, sd, th), key_of(request)), None]

        def on_volume(session: DemoSession, axis_value: int, count: float | None, window_value: str,
                      center_value: float | None, width_value: float | None, m: float, t: float, p: float,
                      sd: float | None, th: bool, request: gr.Request) -> list[Any]:
            try:
                session = app.update_volume(session, axis_value, count, window_value, center_value, width_value,
                                            key=key_of(request))
            except (HulumedError, ValueError) as error:
                session.notice = f"⚠️ {_one_line(error)}"
            return render(session, settings_of(m, t, p, sd, th), key_of(request))

        def on_radiological(session: DemoSession, value: bool, index: float, request: gr.Request) -> list[Any]:
            session = copy.copy(session)
            session.radiological = bool(value)
            return [session, *on_slice(session, index, request)]

        def on_slice(session: DemoSession, index: float, request: gr.Request) -> list[Any]:
            volume = session.latest("volume", include_sent=True)
            if volume is None:
                return [None, gr.skip()]
            out = app.volume_outputs(session, volume, int(index), key=key_of(request))
            return [out["slice"], gr.Slider(label=out["slice_label"])]

        def on_video(session: DemoSession, fps_value: float, frames_value: float, m: float, t: float, p: float,
                     sd: float | None, th: bool, request: gr.Request) -> list[Any]:
            try:
                session = app.update_video(session, fps_value, frames_value)
            except (HulumedError, ValueError) as error:
                session.notice = f"⚠️ {_one_line(error)}"
            return render(session, settings_of(m, t, p, sd, th), key_of(request))

        def on_estimate(session: DemoSession, prompt: str, m: float, t: float, p: float, sd: float | None,
                        th: bool, request: gr.Request) -> str:
            return app.estimate(session, prompt, settings_of(m, t, p, sd, th), key=key_of(request))

        def on_send(session: DemoSession, message: str, m: float, t: float, p: float, sd: float | None, th: bool,
                    request: gr.Request) -> Iterator[list[Any]]:
            key = request.session_hash or "anonymous"
            settings = settings_of(m, t, p, sd, th)
            had_pending = bool(session.pending)
            last: DemoSession = session
            for last, messages, line in app.send(session, message, settings, key):
                yield [last, messages, line, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
            kept_text = message if last.notice else ""  # a refused message stays in the box
            if had_pending and not last.pending:  # the attachments went with the message
                yield [last, last.messages, line, kept_text, app.attachment_list(last), last.notice,
                       app.estimate(last, "", settings)]
            else:
                yield [last, last.messages, line, kept_text, gr.skip(), gr.skip(), gr.skip()]

        def on_stop(request: gr.Request) -> None:
            app.stop(request.session_hash or "anonymous")

        def on_detach(session: DemoSession, request: gr.Request) -> list[Any]:
            session = copy.copy(session)
            session.pending, session.sent, session.notice = [], [], ""
            app.release(key_of(request))  # nothing attached: nothing decoded is kept
            return render(session, key=key_of(request))

        def on_clear(request: gr.Request) -> list[Any]:
            app.stop(request.session_hash or "anonymous")
            app.forget_session(request.session_hash or "anonymous")  # starting over keeps no upload either
            fresh = DemoSession()
            return [fresh, [], "", "", *render(fresh, key=key_of(request))[1:]]

        files.upload(on_attach, [state, files, *settings_inputs], [*panel_outputs, files], api_name="attach")
        volume_inputs = [state, axis, slices, window, center, width, *settings_inputs]
        for control in (axis, slices, window, center, width):
            control.input(on_volume, volume_inputs, panel_outputs, api_name="volume" if control is axis else False)
        slider.input(on_slice, [state, slider], [slice_image, slider], api_name="slice")
        radiological.input(on_radiological, [state, radiological, slider], [state, slice_image, slider],
                           api_name="radiological")
        for control in (fps, max_frames):
            control.input(on_video, [state, fps, max_frames, *settings_inputs], panel_outputs,
                          api_name="video" if control is fps else False)
        window.change(lambda choice: [gr.Number(visible=choice == CUSTOM_WINDOW)] * 2, [window], [center, width],
                      api_name=False, queue=False)
        estimate_btn.click(on_estimate, [state, text, *settings_inputs], [estimate], api_name="estimate")
        send_outputs = [state, chatbot, status, text, attachments, notice, estimate]
        send_btn.click(on_send, [state, text, *settings_inputs], send_outputs, api_name="send")
        text.submit(on_send, [state, text, *settings_inputs], send_outputs, api_name=False)
        stop_btn.click(on_stop, None, None, api_name="stop", concurrency_limit=None, queue=False)
        detach_btn.click(on_detach, [state], panel_outputs, api_name="detach")
        clear_btn.click(on_clear, None, [state, chatbot, status, text, *panel_outputs[1:]], api_name="clear",
                        concurrency_limit=None)
        if media_root:
            def on_pick(session: DemoSession, chosen: list[str] | None, m: float, t: float, p: float,
                        sd: float | None, th: bool, request: gr.Request) -> list[Any]:
                key = key_of(request)
                return render(app.attach_from_root(session, chosen or [], key=key), settings_of(m, t, p, sd, th), key)

            pick_btn.click(on_pick, [state, explorer, *settings_inputs], panel_outputs, api_name="attach_server")
        def on_unload(request: gr.Request) -> None:
            app.stop(request.session_hash or "anonymous")
            app.forget_session(request.session_hash or "anonymous")

        demo.unload(on_unload)
    demo.queue(default_concurrency_limit=8)
    return demo


def server_files(root: str) -> list[str]:
    """Every regular file below ``root``, relative to it, without entering symlinked folders or listing entries
    that resolve outside (``safe_files.folder_files``)."""
    from ..processing import safe_files

    base = Path(root).resolve()
    found = []
    for path in safe_files.folder_files(base, recursive=True):
        try:
            if base in path.resolve().parents:
                found.append(str(path.relative_to(base)))
        except (OSError, ValueError):
            continue
    return found


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, media_root: str | None = None,
           block: bool = True, max_upload_mb: float = 1024) -> Any:
    """Serve the page; loopback unless ``host`` says otherwise, no share link, no outside requests, uploads up to
    ``max_upload_mb``."""
    allowed = [str(Path(media_root).resolve())] if media_root else None
    return demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, quiet=True,
                       allowed_paths=allowed, prevent_thread_lock=not block, footer_links=[], mcp_server=False,
                       css=CSS, max_file_size=int(max_upload_mb * 2**20))  # bytes


def _with_replaced(session: DemoSession, old: Attachment, new: Attachment) -> DemoSession:
    """A copy of ``session`` with ``old`` replaced by ``new`` among the pending attachments, notice cleared."""
    session = copy.copy(session)
    session.pending = list(session.pending)
    session.replace(old, new)
    session.notice = ""
    return session
