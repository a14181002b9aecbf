"""What the page and the viewer show of a session (`app.state.Session`): the viewer's content (the source and the
target as frame functions at the shown result's rate, slider edits through the baked rig) and the summaries the
page lists (target intake, clip, last result, edits). Functions of the session's state; they change nothing in it
but `session.view_cache`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from nfs.io.gltf_colors import face_colors as decode_face_colors
from nfs.pipeline import (EXPRESSION_NAMES, N_EXPRESSION, PreparedTarget, SourceCodes, source_preview_frames,
                          template_skin)

from app.viewer import SourceView, TargetView, ViewContent

LOW_CONFIDENCE = 0.3
WEIGHT_MAX = 1.5          # retarget clips edited weights to [0, 1.5]


@dataclass
class ViewCache:
    """What drawing a session keeps between redraws: the source clip's preview frames (by clip key) and the
    target's decoded per-triangle colours (by raw mesh)."""

    source: dict[str, Callable] = field(default_factory=dict)
    colors_of: tuple = (None, None)


# ---------------------------------------------------------------------------------------------- summaries


def target_report(session) -> tuple[list[str], list[str]]:
    """(intake summary lines, warnings) of the current target."""
    t = session.target
    if t is None:
        return [], []
    lines = [f"**{t.name}** — {t.n_vertices:,} vertices"] + t.summary()
    if len(t.clean.other_components) == 0:
        lines.append("components: 1 (skin only)")
    else:
        roles = ", ".join(f"{n} {r}" for r, n in sorted(t.binding.roles().items()))
        lines.append(f"components: skin + {len(t.clean.other_components)} others ({roles}: jaw and skull ones "
                     "move rigidly, skin ones follow the skin, still ones stay put)")
    if session.override != {"up": "auto", "flip": False, "scale": 1.0}:
        o = session.override
        lines.append(f"manual alignment: up {o['up']}, flip {'yes' if o['flip'] else 'no'}, "
                     f"scale x{o['scale']:g}")
    lines.append("preparation: reused (same mesh prepared before)" if session.target_reused
                 else "preparation: computed")
    warnings = []
    if t.alignment.confidence < LOW_CONFIDENCE:
        warnings.append(f"low face confidence ({t.alignment.confidence:.2f}): check the mesh against "
                        "the blue ICT template in the viewer and use the manual alignment override")
    return lines, warnings


def clip_report(session) -> list[str]:
    c = session.clip
    if c is None:
        return []
    kind = "ICT FACS weights" if c.kind == "codes" else f"mesh sequence, {c.frames.shape[1]:,} vertices"
    return [f"**{c.name}** — {c.n_frames} frames, {c.fps:g} fps, {c.duration_s:.1f} s ({kind})"] + [
        f"⚠ {w}" for w in c.warnings]


def result_report(session) -> list[str]:
    r = session.result
    if r is None:
        return []
    if not session.result_valid():
        now = (f"{session.target.name if session.target else '(no target)'} ← "
               f"{session.clip.name if session.clip else '(no clip)'}")
        return [f"⚠ **No result for {now} yet** (the last run, {r.target.name} ← {r.source.name}, was for another "
                "target or clip; its files are withdrawn). Press **Retarget & export**."]
    lines = [f"**{r.target.name} ← {r.source.name}**: {r.source.n_frames} frames at {r.source.fps:g} fps, "
             f"{r.target.n_vertices:,} vertices; smoothing {session.result_settings.get('smoothing', 0):g}, "
             f"gain {session.result_settings.get('gain', 1):g}"
             + ("; network correction on" if session.result_settings.get("correction", False) else
                "; template prior alone (network correction off)")]
    lines += r.summary()
    if session.result_offsets is not None:
        lines.append(f"slider edits included in the exports: {session.result_edits}")
    else:
        lines.append("no slider edits in the exports")
    if not session.offsets_match_result():
        lines.append("⚠ slider edits changed since this run (now: "
                     f"{session.edits.listing()}): press **Retarget & export** to put them in the files")
    return lines


def edit_report(session) -> str:
    """Which pair the sliders edit, its edits by name, and any carry-over offer (markdown)."""
    text = f"edits of **{session.pair_name()}**: {session.edits.listing()}"
    offer = session.carry_offer
    if offer is not None and session.pair_edits(offer) is not None and session.pair_edits(offer).active:
        text += (f"  \n⚠ the sliders were reset for this pair; the edits of **{session.pair_name(offer)}** "
                 f"({session.pair_edits(offer).listing()}) stay with that pair. Press **Carry edits over** to use them "
                 "here.")
    return text


# ---------------------------------------------------------------------------------------------- viewer
def source_view(session) -> SourceView | None:
    clip = session.clip
    if clip is None:
        return None
    cache = session.view_cache
    if session.clip_key not in cache.source:
        codes = clip.codes if clip.kind == "codes" else np.zeros((clip.n_frames, N_EXPRESSION), np.float32)
        cache.source = {session.clip_key: source_preview_frames(
            SourceCodes(clip.name, clip.fps, codes, clip.kind), clip)}
    frames = cache.source[session.clip_key]
    faces = frames(0)[1]
    clip_frame = session.clip_frame                 # the viewer plays the result's rate; the source at its own
    return SourceView(title=f"source: {clip.name}", faces=np.asarray(faces),
                      frame=lambda i: np.asarray(frames(clip_frame(i))[0], np.float64))


def face_colors(session, t: PreparedTarget) -> np.ndarray | None:
    """A glTF / VRM target's per-triangle base colours (textures decoded once per upload); textures shown as
    flat colours are added to the upload's notes."""
    cache = session.view_cache
    if cache.colors_of[0] is not t.raw:
        colors, notes = decode_face_colors(t.raw)
        t.raw.notes.extend(n for n in notes if n not in t.raw.notes)
        cache.colors_of = (t.raw, colors)
    return cache.colors_of[1]


def target_view(session) -> TargetView | None:
    t = session.target
    if t is None:
        return None
    align, base, rigs, key = t.alignment, t.raw.vertices, session.rigs, t.key
    valid = session.result_valid()
    if valid:
        frames = session.result.frames()
        base_w = session.result.source.weights      # (T, 53) at the result's rate, as its frames
        run_off = session.at_view_rate(session.result_offsets)
        edits_now = {}                           # the current edits at the result's rate, by their identity

        def frame(i: int) -> np.ndarray:
            v = np.asarray(frames[min(i, len(frames) - 1)], np.float64)
            now, rig = session.offsets, rigs.get(key)
            if now is not None:
                if edits_now.get("of") is not now:
                    edits_now.update({"of": now, "rows": session.at_view_rate(now)})
                now = edits_now["rows"]
            if rig is not None and (now is not None or run_off is not None):
                i = min(i, len(base_w) - 1)
                w0 = base_w[i] - (run_off[i] if run_off is not None else 0.0)
                w = np.clip(w0 + (now[i] if now is not None else 0.0), 0.0, WEIGHT_MAX)
                d = w - base_w[i]
                if np.any(np.abs(d) > 1e-6):
                    v = v + np.tensordot(d, rig[1], axes=(0, 0))
            return align.apply(v)
    else:                                    # not run yet: the neutral mesh, plus any slider edits (rig)

        def frame(i: int) -> np.ndarray:
            now, rig = session.offsets, rigs.get(key)
            if rig is None or now is None:
                return align.apply(base)
            w = np.clip(now[min(i, len(now) - 1)], 0.0, WEIGHT_MAX)
            return align.apply(base + np.tensordot(w, rig[1], axes=(0, 0)))

    m = t.binding.matrix
    names = list(EXPRESSION_NAMES) + [f"free_{j}" for j in range(t.decoder.code_dim - N_EXPRESSION)]
    # regions and weights are the network's, computed when the view first shows them
    return TargetView(title=f"target: {t.name}" + ("" if valid else " (aligned, not run)"), faces=t.raw.faces,
                      frame=frame, labels=t.region_labels_original,
                      weights=lambda k: np.asarray(m @ t.skinning_weights[:, k]).ravel(),
                      colors=face_colors(session, t), code_names=names)


def peak_frame(session) -> int:
    """The frame with the strongest expression (where the viewer starts after a run)."""
    if session.result_valid():
        return int(np.argmax(session.result.source.weights.sum(1)))
    if session.clip is not None and session.clip.kind == "codes":
        return int(np.argmax(session.clip.codes.sum(1)))
    return 0


def view_content(session) -> ViewContent:
    with session.lock:
        clip = session.clip
        n, fps = session.view_timing()
        valid = session.result_valid()
        parts = []
        if clip is not None:
            parts.append(f"source **{clip.name}** ({n} frames, {fps:g} fps"
                         + (f", resampled from {clip.n_frames} at {clip.fps:g} fps)"
                            if abs(fps - clip.fps) > 1e-9 else ")"))
        if session.target is not None:
            parts.append(f"target **{session.target.name}**" + (" — retargeted" if valid else " — not run yet"))
        if session.edits.active:
            parts.append(f"edits: {session.edits.describe()}")
        template = None
        if session.target is not None:
            template = template_skin()
        landmarks = getattr(clip, "landmarks_cm", None) if getattr(clip, "landmarks", None) is not None else None
        return ViewContent(n_frames=n, fps=fps, source=source_view(session), target=target_view(session),
                           template=template, show_template=session.target is not None and not valid,
                           start_frame=peak_frame(session), caption=" · ".join(parts), landmarks=landmarks)
