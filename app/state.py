"""One browser session's state: its target, clip, last result, slider edits, temp dir and leased viewer.

Everything heavy goes through `nfs.pipeline`; this module only keeps results (what the viewer and the page show
of them is built in `app.views`). A new target, clip or run replaces the old one only once it has succeeded, so a
failed step never loses the user's previous result. Sessions are kept in a `SessionRegistry` (keyed by Gradio's
session hash) that closes them when the browser tab goes away or after a long idle time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from nfs.io import MESH_EXTENSIONS, MeshError
from nfs.options import RetargetOptions
from nfs.pipeline import (EXPORT_KINDS, GLB_TOLERANCE_MM, CancelToken, Clip, PreparedTarget, RetargetResult,
                          StageProgress, content_key, load_clip, manual_alignment, prepare_target, preview_note,
                          resample_rows, retarget, rig_shapes, run_stages)

from app.edits import SCOPES, Edits
from app.viewer import Viewer, ViewerPool
from app.views import ViewCache, face_colors, view_content

log = logging.getLogger("nfs.app")
Progress = Callable[[float, str], None]
MAX_UPLOAD_MB = 50
RIG_STAGE = "baking the linear rig (once per target)"   # after a preparation, the app's last stage
FILE_EXPORTS = ("obj_zip", "glb", "rig", "avatar")   # what a run writes besides the MP4 preview (chosen in the UI;
# avatar: the uploaded glTF / VRM back whole with the ARKit targets and the clip, only for such uploads)
PREVIEW_CHOICES = ("auto", "always", "never")
CLIP_STAGE = "loading the clip"
LIVE_RIG_STAGE = "baking the live-edit rig"
RUN_STAGES = [CLIP_STAGE, *run_stages(EXPORT_KINDS), LIVE_RIG_STAGE]   # every stage a run can go through


def stages_of_run(kinds) -> list[str]:
    """The stages a run writing the export `kinds` goes through, in order (RUN_STAGES less the exports left out)."""
    return [CLIP_STAGE, *run_stages(tuple(kinds)), LIVE_RIG_STAGE]


def _no_progress(fraction: float, message: str) -> None:
    pass


def truncate_clip(clip: Clip, max_frames: int) -> Clip:
    """The first `max_frames` frames of a clip (0: all)."""
    if not max_frames or clip.n_frames <= max_frames:
        return clip
    note = f"truncated to the first {max_frames} of {clip.n_frames} frames (--max-frames)"
    if clip.kind == "codes":
        return dataclasses.replace(clip, codes=clip.codes[:max_frames], warnings=clip.warnings + [note])
    return dataclasses.replace(clip, frames=clip.frames[:max_frames], warnings=clip.warnings + [note])


def check_upload(path: Path, extensions, max_mb: float, kind: str, error=ValueError) -> None:
    """Refuse an uploaded file whose extension is not one of `extensions` or that is over max_mb, naming the
    file, the formats that are accepted and the limit (raised as `error`)."""
    if path.suffix.lower() not in extensions:
        raise error(f"{path.name}: unsupported {kind} format {path.suffix or '(none)'}; use "
                    f"{', '.join(e.lstrip('.').upper() for e in extensions)}")
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_mb:
        raise error(f"{path.name}: {size_mb:.0f} MB is over the {max_mb:g} MB {'upload' if kind == 'mesh' else kind} "
                    "limit")


# the decoding mode of an upload's live-edit rig (baked right after the preparation): a run's default, the template
# prior alone unless the correction is asked for (the network's inputs then wait until something needs them)
DEFAULT_CORRECTION = RetargetOptions().correction

class Session:
    def __init__(self, sid: str, root: Path, model, pool: ViewerPool | None, max_frames: int = 0,
                 device: str = "auto"):
        self.id = sid
        self.device = device
        self.dir = Path(tempfile.mkdtemp(prefix=f"session_{sid[:10]}_", dir=root))
        self.model, self.pool, self.max_frames = model, pool, max_frames
        self.lock = threading.RLock()
        self.last_active = time.time()
        self.closed = False
        self.target: PreparedTarget | None = None
        self.auto_alignment = None
        self.override = {"up": "auto", "flip": False, "scale": 1.0}
        self.target_reused = False
        self.target_id = ""                               # the loaded mesh (kept across alignment overrides)
        self.last_refusal = ""                            # the last refused upload, named, for the status line
        self.clip: Clip | None = None
        self.clip_key = ""
        self.video_clip: Clip | None = None              # the last video loaded in the Video tab (app/tabs/video.py)
        self.video_key = ""
        self.head_pose = False                           # apply a video clip's head motion to the target
        self.result: RetargetResult | None = None
        self.result_dir: Path | None = None
        self.result_offsets: np.ndarray | None = None    # (T, 53) offsets the result was decoded with
        self.result_clip_key = ""
        self.result_settings: dict = {}
        self.result_edits = ""                          # the edits the result was made with, by name
        self._edits: dict[tuple[str, str], Edits] = {}    # slider edits per (target, clip) pair
        self._pair_names: dict[tuple[str, str], str] = {}
        self.carry_offer: tuple[str, str] | None = None  # a pair left with edits, offered for carry-over
        self.offsets: np.ndarray | None = None           # (T, 53) current edits, None when there are none
        self.rigs: dict[str, tuple[np.ndarray, np.ndarray]] = {}   # baked linear rig per target key
        self._rig_lock = threading.Lock()
        self.view_cache = ViewCache()                     # what the viewer's drawing keeps between redraws
        self._viewer: Viewer | None = None
        self._runs = 0
        self.fps_field_clip_key: str | None = None       # the clip the frame-rate field's value was chosen for

    # ------------------------------------------------------------------------------------------ lifecycle
    def touch(self) -> None:
        self.last_active = time.time()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            log.info("session %s closed", self.id[:10])
            if self._viewer is not None and self.pool is not None:
                self.pool.release(self._viewer, self)
            self._viewer = None
            self.result = None
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------------------------------ viewer
    @property
    def viewer(self) -> Viewer | None:
        """This session's viewer, leased and drawn on first use; None while all viewers are in use."""
        if self.pool is None or self.closed:
            return None
        with self.lock:
            if not self.pool.owned_by(self._viewer, self):
                self._viewer = self.pool.acquire(self)
                if self._viewer is not None:
                    self._viewer.show(view_content(self))
            return self._viewer

    def viewer_url(self) -> str:
        v = self.viewer
        if v is None:
            return ""
        return v.share_url or v.url

    def redraw(self, reset_camera: bool = True) -> None:
        v = self.viewer
        if v is not None:
            v.show(view_content(self), reset_camera=reset_camera)

    # ------------------------------------------------------------------------------------------ target
    def load_target(self, path: str | Path, progress: Progress = _no_progress, force: bool = False,
                    open_mouth: bool = False, cancel: CancelToken | None = None) -> PreparedTarget:
        """Copy an uploaded (or demo) mesh into the session dir and prepare it (cached by content). A mesh that
        does not look like a face is refused unless `force`; `open_mouth` cuts a mouth modelled closed open.
        `cancel` stops the preparation within its current block of work or at its next step (`Cancelled`): the
        copy is removed and the session keeps the target it had."""
        src = Path(path)
        if not src.is_file():
            raise MeshError(f"{src.name}: file not found")
        check_upload(src, MESH_EXTENSIONS, MAX_UPLOAD_MB, "mesh", MeshError)
        dest_dir = self.dir / "targets" / f"{time.time_ns()}"
        dest_dir.mkdir(parents=True)
        dest = dest_dir / src.name
        shutil.copyfile(src, dest)
        track = progress if cancel is None else cancel.watch(progress)   # the app's line gives the time left
        try:
            with cancel.active() if cancel is not None else contextlib.nullcontext():   # stops inside a step too
                prepared = prepare_target(dest, self.model, progress=track, name=src.stem, device=self.device,
                                          force=force, open_mouth=open_mouth)
            face_colors(self, prepared)            # textures decoded now: what cannot be shown is in the notes
            if cancel is not None:
                cancel.commit()                    # from here on the new target is kept
        except Exception:
            shutil.rmtree(dest_dir, ignore_errors=True)
            raise
        prepared = prepared.with_correction(DEFAULT_CORRECTION)   # the live rig as a run decodes by default
        with self.lock:
            old_pair = self.pair
            self.target = prepared
            self.target_id = f"{prepared.name}:{content_key(prepared.raw)}"
            self.auto_alignment = prepared.alignment
            self.override = {"up": "auto", "flip": False, "scale": 1.0}
            self.target_reused = prepared.reused
            self.last_refusal = ""
            self._switch_pair(old_pair)
        self.redraw()
        self.ensure_rig(prepared, progress)  # inside the heavy event, so the queue limit covers it
        return prepared

    def override_alignment(self, up: str, flip: bool, scale: float, progress: Progress = _no_progress):
        """Re-prepare the current target with a composed alignment (auto/False/1 returns to the automatic one)."""
        if self.target is None:
            raise ValueError("load a target mesh first")
        alignment = manual_alignment(self.target, self.auto_alignment, up, flip, scale)
        track = StageProgress(progress, {"prepare": (0.0, 1.0)}).stage("prepare")   # messages carry the ETA

        prepared = prepare_target(self.target.raw, self.model, alignment=alignment, progress=track,
                                  name=self.target.name, device=self.device).with_correction(DEFAULT_CORRECTION)
        with self.lock:
            self.target = prepared
            self.override = {"up": up, "flip": bool(flip), "scale": float(scale)}
            self.target_reused = prepared.reused
        self.redraw()
        self.ensure_rig(prepared, progress)  # inside the heavy event, so the queue limit covers it
        return prepared

    @property
    def alignment_override(self):
        """The Alignment passed to the pipeline: None while the automatic one is in use."""
        if self.target is None or self.override == {"up": "auto", "flip": False, "scale": 1.0}:
            return None
        return self.target.alignment

    # ------------------------------------------------------------------------------------------ clip
    def set_clip(self, spec: str, key: str | None = None) -> Clip:
        """Load a clip (built-in name or uploaded file) unless it is the one already loaded."""
        key = key or str(spec)
        if self.clip is not None and key == self.clip_key:
            return self.clip
        if self.video_clip is not None and key == self.video_key:
            return self.use_clip(self.video_clip, key)
        return self.use_clip(truncate_clip(load_clip(spec), self.max_frames), key)

    def use_clip(self, clip: Clip, key: str) -> Clip:
        """Make a loaded clip the session's source (frame edits are dropped when the frame count changes)."""
        with self.lock:
            old_pair = self.pair
            self.clip, self.clip_key = clip, key
            self._switch_pair(old_pair)
        self.redraw()
        return clip

    # ------------------------------------------------------------------------------------------ run
    def run(self, smoothing_sigma: float = 0.0, gain: float = 1.0, progress: Progress = _no_progress,
            correction: bool = False, exports=FILE_EXPORTS, preview: str = "auto", fps: float | None = None,
            glb_tolerance_mm: float = GLB_TOLERANCE_MM) -> RetargetResult:
        """Retarget the clip onto the target with the current edits; write the chosen exports to a new run dir.
        `correction=True`: the network's learned correction on the template prior (default off: the prior
        alone). `exports`: file kinds (obj_zip, glb, rig); `preview`: "auto" (the MP4 only for takes up to
        PREVIEW_DEFAULT_MAX_FRAMES frames), "always" or "never". `fps`: resample the clip (None or 0: its own rate)."""
        if self.target is None:
            raise ValueError("load a target mesh first")
        if self.clip is None:
            raise ValueError("choose a source clip first")
        options = RetargetOptions(fps=float(fps or 0), smoothing_sigma=smoothing_sigma, gain=gain,
                                  correction=bool(correction), glb_tolerance_mm=glb_tolerance_mm).validated()
        target, clip, clip_key = self.target, self.clip, self.clip_key
        offsets = self.edits.offsets(clip.n_frames, clip.fps) if self.edits.active else None
        kinds, notes = self.export_kinds(exports, preview, fps)
        listing = self.edits.listing() if self.edits.active else ""
        self._runs += 1
        out = self.dir / f"run_{self._runs}"
        try:
            result = retarget(target, clip, out, model=self.model, exports=kinds,
                              smoothing_sigma=options.smoothing_sigma, gain=options.gain,
                              alignment=self.alignment_override, code_offset=offsets,
                              progress=lambda f, m: progress(0.97 * f, m), correction=options.correction,
                              fps=options.fps or None, device=self.device, head_pose=self.head_pose,
                              glb_tolerance_mm=options.glb_tolerance_mm)
            result.notes.extend(notes)
            progress(0.97, LIVE_RIG_STAGE)
            if result.rig is not None:                  # the exported rig is the live-edit rig
                with self._rig_lock:
                    self.rigs.setdefault(result.target.key, result.rig)
            self.ensure_rig(result.target, lambda f, m: progress(0.97 + 0.03 * f, f"{LIVE_RIG_STAGE}: {m}"))
        except Exception:
            shutil.rmtree(out, ignore_errors=True)
            raise
        with self.lock:
            old = self.result_dir
            self.result, self.result_dir, self.result_clip_key = result, out, clip_key
            self.result_offsets = offsets
            self.result_edits = listing
            self.result_settings = {"smoothing": float(smoothing_sigma), "gain": float(gain),
                                    "correction": bool(correction)}
            self.target = result.target
        if old is not None and old != out:
            shutil.rmtree(old, ignore_errors=True)
        self.redraw()
        progress(1.0, "done")
        return result

    def export_kinds(self, exports, preview: str = "auto", fps: float | None = None) -> tuple[tuple, list]:
        """The export kinds of a run (files chosen + the MP4 preview by `preview`) and notes on what was left out."""
        unknown = [k for k in exports if k not in FILE_EXPORTS]
        if unknown or preview not in PREVIEW_CHOICES:
            raise ValueError(f"unknown export choice {', '.join(unknown) or preview!r}")
        n = self.clip.n_frames if self.clip is not None else 0
        if fps and self.clip is not None:
            n = int(np.floor((n - 1) / self.clip.fps * float(fps) + 1e-6)) + 1
        want_mp4 = preview == "always" or (preview == "auto" and not preview_note(n))
        notes = [preview_note(n)] if preview == "auto" and preview_note(n) else []
        if self.target is None or not self.target.raw.is_gltf:     # the avatar file is a glTF / VRM upload's own
            exports = [k for k in exports if k != "avatar"]
        return tuple(exports) + (("mp4",) if want_mp4 else ()), notes

    def result_valid(self) -> bool:
        """The last result belongs to the current target (same preparation) and clip."""
        r = self.result
        return (r is not None and self.target is not None and r.target.key == self.target.key
                and self.result_clip_key == self.clip_key)

    def offsets_match_result(self) -> bool:
        a, b = self.offsets, self.result_offsets
        if a is None or b is None:
            return a is None and b is None
        return a.shape == b.shape and bool(np.allclose(a, b))

    # ------------------------------------------------------------------------------------------ edits
    def ensure_rig(self, target: PreparedTarget | None = None, progress: Progress = _no_progress):
        """(neutral, deltas) of the baked linear rig of a target, computed once per preparation (right after it,
        0.4 s at 10k vertices), so that slider edits only evaluate the rig."""
        target = target or self.target
        if target is None:
            raise ValueError("load a target mesh first")
        with self._rig_lock:                      # a background bake of the same target finishes first
            if target.key not in self.rigs:
                progress(0.0, RIG_STAGE)
                self.rigs[target.key] = rig_shapes(target, progress)
                while len(self.rigs) > 2:
                    self.rigs.pop(next(iter(self.rigs)))
            return self.rigs[target.key]

    @property
    def pair(self) -> tuple[str, str]:
        """(target, clip): the slider edits in use belong to this pair."""
        return self.target_id, self.clip_key

    def pair_name(self, pair: tuple[str, str] | None = None) -> str:
        return self._pair_names.get(pair or self.pair, "(nothing loaded)")

    def pair_edits(self, pair: tuple[str, str] | None) -> Edits | None:
        """The slider edits kept for a (target, clip) pair, None when it has none."""
        return self._edits.get(pair) if pair is not None else None

    @property
    def edits(self) -> Edits:
        """The slider edits of the loaded (target, clip) pair."""
        return self._edits.setdefault(self.pair, Edits())

    def _switch_pair(self, old: tuple[str, str]) -> None:
        """After the target or clip changed: the new pair's own edits apply (none for a new pair); the old pair's
        stay with it and are offered for carry-over while the new pair has none."""
        new = self.pair
        self._pair_names[new] = (f"{self.target.name if self.target else '(no target)'} × "
                                 f"{self.clip.name if self.clip else '(no clip)'}")
        if self.edits.active:
            self.carry_offer = None
        elif old != new and old in self._edits and self._edits[old].active:
            self.carry_offer = old
        self._update_offsets()

    def carry_over(self) -> str:
        """Copy the offered pair's edits onto the loaded pair; returns a note (frame edits past the clip's end
        are left behind)."""
        with self.lock:
            src = self.carry_offer
            if src is None or src not in self._edits or not self._edits[src].active:
                raise ValueError("there are no edits of another target or clip to carry over")
            e = self._edits[src].copy()
            n = self.clip.n_frames if self.clip is not None else 0
            dropped = sorted(k for k in e.keys if k >= n)
            for k in dropped:
                e.keys.pop(k)
            self._edits[self.pair] = e
            self.carry_offer = None
            self._update_offsets()
        v = self.viewer
        if v is not None:
            v.refresh()
        note = f"carried over from {self.pair_name(src)}"
        return note + (f" (frame edits at {', '.join(map(str, dropped))} are past this clip's end: left behind)"
                       if dropped else "")

    def _update_offsets(self) -> None:
        c = self.clip
        self.offsets = self.edits.offsets(c.n_frames, c.fps) if (c is not None and self.edits.active) else None

    def current_frame(self) -> int:
        """The viewer's frame (a frame of the shown result's files, see `view_timing`)."""
        v = self._viewer
        return int(v.frame) if v is not None and self.pool is not None and self.pool.owned_by(v, self) else 0

    def view_timing(self) -> tuple[int, float]:
        """(frames, fps) the viewer plays: the shown result's, as in its files (a run at another frame rate holds
        the resampled frames), else the clip's own."""
        if self.result_valid():
            return self.result.source.n_frames, float(self.result.source.fps)
        if self.clip is not None:
            return self.clip.n_frames, float(self.clip.fps)
        return 1, 30.0

    def clip_frame(self, view_frame: int) -> int:
        """The clip's own frame at the time of a viewer frame (edits are kept at the clip's rate)."""
        if self.clip is None:
            return int(view_frame)
        _, fps = self.view_timing()
        return int(np.clip(round(int(view_frame) * self.clip.fps / fps), 0, self.clip.n_frames - 1))

    def at_view_rate(self, rows: np.ndarray | None) -> np.ndarray | None:
        """Per-frame rows (T, ...) at the clip's rate -> at the viewer's rate (`resample_rows`), None stays None."""
        if rows is None or self.clip is None:
            return rows
        n, fps = self.view_timing()
        if abs(fps - self.clip.fps) < 1e-9:
            return rows
        return resample_rows(rows, self.clip.fps, fps)[:n]

    def apply_edit(self, scope: str, values, frame: int | None = None, progress: Progress = _no_progress) -> int:
        """Set the sliders of a scope (frame edits at viewer frame `frame`, default the viewer's frame); redraw at
        once. Returns the viewer frame."""
        if scope not in SCOPES:
            raise ValueError(f"unknown edit scope {scope!r}; choose one of {', '.join(SCOPES)}")
        frame = self.current_frame() if frame is None else int(frame)
        n_view, _ = self.view_timing()
        if self.clip is not None and not 0 <= frame < n_view:
            raise ValueError(f"frame {frame} is outside the clip (0..{n_view - 1})")
        if self.target is not None:
            self.ensure_rig(progress=progress)
        with self.lock:
            self.edits.set(scope, self.clip_frame(frame), values)
            self._update_offsets()
        v = self.viewer
        if v is not None:
            v.seek(frame) if scope == SCOPES[1] else v.refresh()
        return frame

    def reset_edits(self) -> None:
        with self.lock:
            self.edits.reset()
            self._update_offsets()
        v = self.viewer
        if v is not None:
            v.refresh()

    def status(self) -> dict:
        """A JSON summary of the session (for the API and tests)."""
        t, c, r = self.target, self.clip, self.result
        return {
            "target": None if t is None else {"name": t.name, "vertices": t.n_vertices, "key": str(t.key),
                                              "confidence": round(float(t.alignment.confidence), 4),
                                              "reused": self.target_reused, "override": dict(self.override)},
            "clip": None if c is None else {"name": c.name, "frames": c.n_frames, "fps": c.fps, "kind": c.kind},
            "result": None if r is None else {"target": r.target.name, "clip": r.source.name,
                                              "frames": r.source.n_frames, "valid": self.result_valid(),
                                              "exports": {k: str(p) for k, p in r.exports.items()},
                                              "rig_error_mm": r.rig_error_mm,
                                              "glb_max_error_mm": None if r.glb is None else r.glb.max_error_mm,
                                              "fps": r.source.fps, "device": r.device, "notes": list(r.notes),
                                              "correction": self.result_settings.get("correction", False)},
            "edits": self.edits.describe(),
            "edits_listing": self.edits.listing(),
            "edits_pair": self.pair_name(),
            "carry_offer": self.pair_name(self.carry_offer) if self.carry_offer else None,
            "viewer_url": self.viewer_url(),
        }


class SessionRegistry:
    """Sessions by Gradio session hash; idle ones (API clients send no tab-close event) are reaped."""

    def __init__(self, root: Path, model, pool: ViewerPool | None, max_frames: int = 0, max_idle_s: float = 3600,
                 device: str = "auto"):
        self.root, self.model, self.pool, self.max_frames, self.max_idle_s = root, model, pool, max_frames, max_idle_s
        self.device = device
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def get(self, sid: str) -> Session:
        with self._lock:
            s = self._sessions.get(sid)
            if s is None or s.closed:
                s = self._sessions[sid] = Session(sid, self.root, self.model, self.pool, self.max_frames,
                                                  self.device)
        s.touch()
        return s

    def close(self, sid: str) -> None:
        with self._lock:
            s = self._sessions.pop(sid, None)
        if s is not None:
            s.close()

    def reap(self) -> int:
        now = time.time()
        with self._lock:
            idle = [sid for sid, s in self._sessions.items() if now - s.last_active > self.max_idle_s]
        for sid in idle:
            self.close(sid)
        return len(idle)

    def close_all(self) -> None:
        with self._lock:
            sids = list(self._sessions)
        for sid in sids:
            self.close(sid)

    def __len__(self) -> int:
        return len(self._sessions)
