"""viser 3D viewers: each draws the arrays it is given (source and retargeted target side by side, the ICT
template overlay, region colours or one code dimension's skinning-weight heat map) and plays them back.

Isolation: one `Viewer` = one viser server on its own port, leased to one app session at a time from a
`ViewerPool` (the first viewer listens on --viewer-port, further ones on the next free ports). A browser tab
embeds its own session's viewer in an iframe, so sessions never see each other's scenes. A viewer is cleared
and goes back to the pool when its session ends (tab closed, or idle too long); it is never handed to another
session while its owner lives, so when all `max_viewers` are leased a new session simply has no viewer (the
rest of the app works) until one is returned.

Vertices arrive in the ICT frame (cm, +Y up, facing +Z) and are drawn in metres. viser meshes have one colour
each, so coloured modes draw one mesh per colour group (region or heat-map band) sharing the frame's
positions.
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import viser

from nfs.pipeline import EXPRESSION_NAMES, region_colors

CM = 0.01                      # drawn in metres
GAP_CM = 6.0                   # between source and target
MODES = ("shaded", "regions", "weight heat map")
HEAT_BANDS = 10
SOURCE_COLOR = (150, 172, 210)
TARGET_COLOR = (214, 164, 128)
TEMPLATE_COLOR = (70, 140, 255)
LANDMARK_COLOR = (40, 40, 48)
UNLABELED_COLOR = (160, 160, 160)


@dataclass
class SourceView:
    """A source clip drawn on the left: faces and frame index -> (V, 3) cm in the ICT frame."""

    title: str
    faces: np.ndarray
    frame: Callable[[int], np.ndarray]


@dataclass
class TargetView:
    """The user's mesh drawn on the right (all its vertices, original order, aligned to the ICT frame)."""

    title: str
    faces: np.ndarray
    frame: Callable[[int], np.ndarray]                  # frame index -> (V, 3) cm
    labels: Callable[[], np.ndarray] | np.ndarray | None = None  # (V,) region per vertex, -1 none (or its maker)
    weights: Callable[[int], np.ndarray] | None = None  # code dimension -> (V,) skinning weight
    code_names: list[str] = field(default_factory=list)
    colors: np.ndarray | None = None                    # (F, 3) uint8 base colour per triangle (textured files)


@dataclass
class ViewContent:
    n_frames: int
    fps: float
    source: SourceView | None = None
    target: TargetView | None = None
    template: tuple[np.ndarray, np.ndarray] | None = None   # ICT neutral skin (cm) and faces
    show_template: bool = False
    start_frame: int = 0
    caption: str = ""
    landmarks: Callable[[int], np.ndarray] | None = None   # a video source: frame -> (N, 3) cm tracked face points


def face_groups_from_vertex_labels(faces: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(F,) group per triangle: the label two or three of its corners share, else its first corner's."""
    a, b, c = (labels[faces[:, i]] for i in range(3))
    return np.where((a == b) | (a == c), a, np.where(b == c, b, a))


def heat_colors(n: int = HEAT_BANDS) -> np.ndarray:
    """(n, 3) uint8 viridis band colours, low to high."""
    from matplotlib import colormaps
    return np.round(colormaps["viridis"]((np.arange(n) + 0.5) / n)[:, :3] * 255).astype(np.uint8)


def heat_bands(values: np.ndarray, faces: np.ndarray, n: int = HEAT_BANDS) -> tuple[np.ndarray, float]:
    """Per-triangle band index of per-vertex values normalised by their largest magnitude; and that max."""
    peak = float(np.abs(values).max()) if len(values) else 0.0
    norm = np.clip(values / max(peak, 1e-12), 0.0, 1.0)
    return np.minimum((norm[faces].mean(1) * n).astype(int), n - 1), peak


def color_groups(colors: np.ndarray, n: int = 24) -> tuple[np.ndarray, dict[int, tuple]]:
    """(F, 3) uint8 per-triangle colours -> (F,) group of each triangle and {group: colour}, at most n groups (one
    drawn mesh each; Pillow's median-cut quantizer picks them)."""
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(colors, np.uint8).reshape(1, -1, 3), "RGB")
    quantized = img.quantize(colors=n, method=Image.Quantize.MEDIANCUT)
    groups = np.asarray(quantized, np.int64).ravel()
    pal = np.asarray(quantized.getpalette()[: 3 * n], np.int64).reshape(-1, 3)
    return groups, {int(g): tuple(int(x) for x in pal[g]) for g in np.unique(groups)}


class _Patches:
    """A mesh drawn as one viser mesh per colour group; `update` moves all of them to new positions."""

    def __init__(self, scene, root: str, vertices_cm: np.ndarray, faces: np.ndarray, groups: np.ndarray | None,
                 colors: dict[int, tuple], opacity: float | None = None, wireframe: bool = False):
        self.handles, self.index = [], []
        groups = np.zeros(len(faces), int) if groups is None else groups
        for g in np.unique(groups):
            sel = faces[groups == g]
            vids, local = np.unique(sel, return_inverse=True)
            h = scene.add_mesh_simple(f"{root}/g{int(g) + 1}", (vertices_cm[vids] * CM).astype(np.float32),
                                      local.reshape(-1, 3), color=tuple(int(x) for x in colors[int(g)]),
                                      side="double", opacity=opacity, wireframe=wireframe, cast_shadow=False,
                                      receive_shadow=False)
            self.handles.append(h)
            self.index.append(vids)

    def update(self, vertices_cm: np.ndarray) -> None:
        for h, vids in zip(self.handles, self.index):
            h.vertices = (vertices_cm[vids] * CM).astype(np.float32)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.index = [], []


class Viewer:
    """One viser server showing one session's content, with playback and display controls in its panel."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, public_host: str | None = None,
                 default_code_dim: int = 0):
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.port = self.server.get_port()
        self.url = f"http://{public_host or host}:{self.port}"
        self.share_url: str | None = None
        self.owner = None                     # weakref to the leasing session (set by the pool)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.content: ViewContent | None = None
        self.frame, self.playing, self.fps, self.loop = 0, False, 30.0, True
        self._played_fps, self._clock_reset = 30.0, False
        self.default_code_dim = default_code_dim
        self.mode, self.code_dim, self.show_template = MODES[0], default_code_dim, False
        self.heat_peak = 0.0
        self._source = self._target = self._template = None
        self._points = None
        self._labels = []
        self.server.scene.set_up_direction("+y")
        self.server.gui.configure_theme(control_width="small", show_share_button=False)
        self.server.initial_camera.position = (0.0, 0.02, 0.75)
        self.server.initial_camera.look_at = (0.0, 0.0, 0.0)
        self._build_gui()
        self._thread = threading.Thread(target=self._player, name=f"viewer-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ gui
    def _build_gui(self) -> None:
        gui = self.server.gui
        self._caption = gui.add_markdown("**NFS viewer** — load a target in the app")
        with gui.add_folder("Playback"):
            self._play = gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY)
            self._frame = gui.add_slider("Frame", min=0, max=1, step=1, initial_value=0)
            self._fps = gui.add_number("FPS", initial_value=30.0, min=1.0, max=120.0, step=1.0)
            self._loop = gui.add_checkbox("Loop", initial_value=True)
        with gui.add_folder("Display"):
            self._mode = gui.add_dropdown("Colours", options=MODES, initial_value=MODES[0])
            self._dim = gui.add_slider("Code dim", min=0, max=127, step=1, initial_value=self.default_code_dim)
            self._dim_name = gui.add_markdown("")
            self._tmpl = gui.add_checkbox("ICT template", initial_value=False)

        @self._play.on_click
        def _(event):
            self.play(not self.playing)

        @self._frame.on_update
        def _(event):
            if event.client is not None:
                self.seek(int(self._frame.value))

        @self._fps.on_update
        def _(event):
            self.fps = float(np.clip(self._fps.value, 1.0, 120.0))

        @self._loop.on_update
        def _(event):
            self.loop = bool(self._loop.value)

        @self._mode.on_update
        def _(event):
            if event.client is not None:
                self.set_display(mode=self._mode.value)

        @self._dim.on_update
        def _(event):
            if event.client is not None:
                self.set_display(code_dim=int(self._dim.value))

        @self._tmpl.on_update
        def _(event):
            if event.client is not None:
                self.set_display(show_template=bool(self._tmpl.value))

    def _sync_gui(self) -> None:
        c = self.content
        n = c.n_frames if c else 1
        self._frame.max = max(1, n - 1)
        self._frame.value = min(self.frame, max(1, n - 1))
        self._fps.value = float(self.fps)
        self._mode.value = self.mode
        self._tmpl.value = self.show_template
        names = c.target.code_names if c and c.target else []
        self._dim.max = max(1, len(names) - 1) if names else 127
        self._dim.value = self.code_dim
        known = names or list(EXPRESSION_NAMES)
        name = known[self.code_dim] if self.code_dim < len(known) else f"free dimension {self.code_dim}"
        self._dim_name.content = f"dim {self.code_dim}: `{name}`" + (
            f", weights 0 to {self.heat_peak:.3g}" if self.mode == MODES[2] and names else "") + (
            "" if names else " (load a target to see its weights)")
        self._play.label = "Pause" if self.playing else "Play"
        self._play.icon = viser.Icon.PLAYER_PAUSE if self.playing else viser.Icon.PLAYER_PLAY
        self._caption.content = c.caption if c and c.caption else "**NFS viewer** — load a target in the app"

    # ------------------------------------------------------------------------------------------ drawing
    def _clear_scene(self) -> None:
        for p in (self._source, self._target, self._template):
            if p is not None:
                p.remove()
        for h in self._labels + ([self._points] if self._points is not None else []):
            h.remove()
        self._source = self._target = self._template = None
        self._points = None
        self._labels = []

    def _layout(self, c: ViewContent) -> tuple[np.ndarray, np.ndarray]:
        """Root offsets (cm) that put the source left and the target right of x = 0."""
        off_s, off_t = np.zeros(3), np.zeros(3)
        if c.source is not None and c.target is not None:
            vs, vt = c.source.frame(0), c.target.frame(0)
            off_s[0] = -GAP_CM / 2 - vs[:, 0].max()
            off_t[0] = GAP_CM / 2 - vt[:, 0].min()
        return off_s, off_t

    def _target_patches(self, t: TargetView, verts: np.ndarray) -> _Patches:
        scene = self.server.scene
        if self.mode == MODES[1] and t.labels is not None:
            palette = {i: tuple(c) for i, c in enumerate(region_colors())}
            palette[-1] = UNLABELED_COLOR
            groups = face_groups_from_vertex_labels(t.faces, t.labels() if callable(t.labels) else t.labels)
            return _Patches(scene, "/target/mesh", verts, t.faces, groups, palette)
        if self.mode == MODES[2] and t.weights is not None:
            groups, self.heat_peak = heat_bands(t.weights(self.code_dim), t.faces)
            palette = {i: tuple(c) for i, c in enumerate(heat_colors())}
            return _Patches(scene, "/target/mesh", verts, t.faces, groups, palette)
        if t.colors is not None and len(t.colors) == len(t.faces):
            groups, palette = color_groups(t.colors)
            return _Patches(scene, "/target/mesh", verts, t.faces, groups, palette)
        return _Patches(scene, "/target/mesh", verts, t.faces, None, {0: TARGET_COLOR})

    def _rebuild(self) -> None:
        """Recreate every scene node for the current content and display settings."""
        scene = self.server.scene
        self._clear_scene()
        c = self.content
        if c is None:
            return
        f = min(self.frame, c.n_frames - 1)
        off_s, off_t = self._layout(c)
        scene.add_frame("/source", show_axes=False, position=tuple(off_s * CM))
        scene.add_frame("/target", show_axes=False, position=tuple(off_t * CM))
        if c.source is not None:
            vs = c.source.frame(f)
            self._source = _Patches(scene, "/source/mesh", vs, c.source.faces, None, {0: SOURCE_COLOR})
            self._labels.append(self._title("/source/title", c.source.title, vs))
        if c.target is not None:
            vt = c.target.frame(f)
            self._target = self._target_patches(c.target, vt)
            self._labels.append(self._title("/target/title", c.target.title, vt))
        if c.landmarks is not None:
            pts = np.asarray(c.landmarks(f), np.float64)
            left = off_s[0] + (c.source.frame(f)[:, 0].min() if c.source is not None else 0.0)
            pos = np.array([left - GAP_CM - pts[:, 0].max(), 0.0, 0.0])
            self._points = scene.add_point_cloud("/landmarks", (pts * CM).astype(np.float32), LANDMARK_COLOR,
                                                 point_size=0.003, point_shape="circle", position=tuple(pos * CM))
            self._labels.append(self._title("/landmarks_title", "video landmarks", pts + pos))
        if c.template is not None and self.show_template:
            tv, tf = c.template
            self._template = _Patches(scene, "/target/template", tv, tf, None, {0: TEMPLATE_COLOR}, opacity=0.25,
                                      wireframe=True)

    def _title(self, name: str, text: str, vertices_cm: np.ndarray):
        top = (float(np.median(vertices_cm[:, 0])) * CM, float(vertices_cm[:, 1].max()) * CM + 0.02, 0.0)
        return self.server.scene.add_label(name, text, position=top, anchor="bottom-center")

    def _draw_frame(self, f: int) -> None:
        c = self.content
        if c is None:
            return
        with self.server.atomic():
            if self._source is not None and c.source is not None:
                self._source.update(c.source.frame(f))
            if self._target is not None and c.target is not None:
                self._target.update(c.target.frame(f))
            if self._points is not None and c.landmarks is not None:
                self._points.points = (np.asarray(c.landmarks(f)) * CM).astype(np.float32)

    def _reset_cameras(self) -> None:
        c = self.content
        width_cm = 40.0
        if c is not None and c.target is not None:
            vt = c.target.frame(0)
            width_cm = float(np.ptp(vt[:, 0])) * (2.2 if c.source is not None else 1.0) + GAP_CM
            if c.landmarks is not None:
                width_cm *= 1.5
        dist = max(0.4, 1.05 * width_cm * CM)
        shift = 0.2 * width_cm * CM             # the control panel covers the right of the view
        position, look_at = (shift, 0.0, dist), (shift, -0.01, 0.0)
        self.server.initial_camera.position = position
        self.server.initial_camera.look_at = look_at
        for client in self.server.get_clients().values():
            client.camera.position = position
            client.camera.look_at = look_at

    # ------------------------------------------------------------------------------------------ public
    def show(self, content: ViewContent | None, reset_camera: bool = True) -> None:
        """Replace what is drawn (None clears the scene)."""
        with self._lock:
            self.content = content
            if content is not None:
                self.fps = float(content.fps)
                self.frame = int(np.clip(content.start_frame, 0, content.n_frames - 1))
                self.show_template = content.show_template
                names = content.target.code_names if content.target else []
                if names and self.code_dim >= len(names):
                    self.code_dim = 0
            self.playing = False
            self._rebuild()
            if reset_camera:
                self._reset_cameras()
            self._sync_gui()

    def set_display(self, mode: str | None = None, code_dim: int | None = None,
                    show_template: bool | None = None) -> None:
        with self._lock:
            if mode is not None:
                if mode not in MODES:
                    raise ValueError(f"display mode must be one of {', '.join(MODES)}, got {mode!r}")
                self.mode = mode
            if code_dim is not None:
                self.code_dim = max(0, int(code_dim))
            if show_template is not None:
                self.show_template = bool(show_template)
            self._rebuild()
            self._sync_gui()

    def reset_display(self) -> None:
        """Back to the defaults (a viewer passed on to a new session)."""
        with self._lock:
            self.mode, self.code_dim, self.show_template, self.loop = MODES[0], self.default_code_dim, False, True
            self._loop.value = True

    def seek(self, frame: int) -> None:
        with self._lock:
            if self.content is None:
                return
            self.frame = int(np.clip(frame, 0, self.content.n_frames - 1))
            self._clock_reset = True
            self._draw_frame(self.frame)
            self._frame.value = self.frame

    def play(self, playing: bool = True) -> None:
        with self._lock:
            self.playing = bool(playing) and self.content is not None and self.content.n_frames > 1
            self._play.label = "Pause" if self.playing else "Play"
            self._play.icon = viser.Icon.PLAYER_PAUSE if self.playing else viser.Icon.PLAYER_PLAY
        self._wake.set()

    def refresh(self) -> None:
        """Redraw the current frame (the content's frame functions changed, e.g. after an edit)."""
        with self._lock:
            self._draw_frame(self.frame)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.server.stop()

    # ------------------------------------------------------------------------------------------ playback
    def _player(self) -> None:
        """Plays at the set fps by the clock: each tick shows the frame due now, skipping the frames it had no
        time to draw (a slow machine or browser), and never sends more than the fps in updates."""
        t0, f0 = time.perf_counter(), self.frame
        while not self._stop.is_set():
            if not self.playing or not self.server.get_clients():
                self._wake.wait(0.1)
                self._wake.clear()
                t0, f0 = time.perf_counter(), self.frame
                continue
            with self._lock:
                c = self.content
                if c is None or not self.playing:
                    continue
                fps = max(self.fps, 1.0)
                due = f0 + int((time.perf_counter() - t0) * fps) + 1
                if due >= c.n_frames and not self.loop:
                    self.play(False)
                    continue
                f = due % c.n_frames
                if f == self.frame:                  # drawn already: wait for the next one
                    f = None
                else:
                    self.frame = f
                    try:
                        self._draw_frame(f)
                        self._frame.value = f
                    except Exception as e:  # noqa: BLE001 - a drawing failure stops playback, not the server
                        self.playing = False
                        self._caption.content = f"playback stopped: {e}"
                if abs(fps - self._played_fps) > 1e-6 or self._clock_reset:   # fps changed or a seek
                    t0, f0, self._played_fps, self._clock_reset = time.perf_counter(), self.frame, fps, False
                    due = f0
            next_due = t0 + (due - f0) / fps
            self._stop.wait(max(0.0, min(1.0 / fps, next_due - time.perf_counter())))


class ViewerPool:
    """Viewers leased to sessions; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", base_port: int = 8080, max_viewers: int = 16,
                 public_host: str | None = None, share: bool = False, default_code_dim: int = 0):
        self.host, self.base_port, self.max_viewers = host, base_port, max(1, max_viewers)
        self.default_code_dim = default_code_dim
        self.public_host, self.share = public_host, share
        self._lock = threading.Lock()
        self._free: list[Viewer] = []
        self._leased: list[Viewer] = []
        self._free.append(self._new())       # the first one is ready at --viewer-port before any session

    def _new(self) -> Viewer:
        used = {v.port for v in self._free + self._leased}
        port = self.base_port
        while port in used:
            port += 1
        v = Viewer(self.host, port, self.public_host, self.default_code_dim)
        if self.share:
            try:
                v.share_url = v.server.request_share_url(verbose=False)
            except Exception:  # noqa: BLE001 - sharing is best effort
                v.share_url = None
        return v

    @property
    def first_url(self) -> str:
        with self._lock:
            return (self._free + self._leased)[0].url

    def acquire(self, session) -> Viewer | None:
        """A cleared viewer for `session`, or None when all `max_viewers` are leased."""
        with self._lock:
            if self._free:
                v = self._free.pop(0)
            elif len(self._leased) < self.max_viewers:
                v = self._new()
            else:
                return None
            v.owner = weakref.ref(session)
            self._leased.append(v)
        v.reset_display()
        v.show(None)
        return v

    def release(self, viewer: Viewer, session) -> None:
        with self._lock:
            if viewer in self._leased and viewer.owner is not None and viewer.owner() is session:
                self._leased.remove(viewer)
                viewer.owner = None
                self._free.append(viewer)
            else:
                return
        viewer.show(None)

    @property
    def in_use(self) -> int:
        return len(self._leased)

    def owned_by(self, viewer: Viewer | None, session) -> bool:
        return viewer is not None and viewer.owner is not None and viewer.owner() is session

    def close(self) -> None:
        with self._lock:
            viewers, self._free, self._leased = self._free + self._leased, [], []
        for v in viewers:
            v.close()

