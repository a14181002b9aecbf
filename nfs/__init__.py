"""nfs: mesh-agnostic facial expression cloning after Neural Face Skinning (Cha et al., CGF 2025).

The public API, importable from ``nfs`` (loaded on first use, so ``import nfs.ict`` stays light):

    model, card = nfs.load_shipped_model()
    target = nfs.prepare_target("head.obj", model)           # load, clean, align, encode the target
    source = nfs.encode_source(nfs.load_clip("smile"), model)
    frames = nfs.decode_all(target, source.codes)             # (T, V, 3) on the user's mesh, original order
    result = nfs.retarget("head.obj", clip, "out/", model=model)   # everything at once, exports written
"""
from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"
REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout, for scripts; nfs finds its files via nfs.resources

_PUBLIC = {
    "nfs.pipeline": ("prepare_target", "encode_source", "decode", "decode_all", "decode_skin", "rig_shapes",
                     "retarget", "load_shipped_model", "PreparedTarget", "SourceCodes", "RetargetResult",
                     "EXPORT_KINDS", "manual_alignment", "UP_AXES", "template_skin", "default_exports",
                     "PREVIEW_DEFAULT_MAX_FRAMES", "resolve_device", "describe_device", "write_avatar", "load_clip"),
    "nfs.io": ("load_mesh", "load_mesh_bytes", "list_builtin_clips", "save_obj", "save_ply",
               "MeshError", "RawMesh", "MESH_EXTENSIONS", "CLIP_EXTENSIONS"),
    "nfs.clips": ("Clip", "ClipError", "smooth_codes", "apply_gain", "resample_clip", "WEIGHT_CEILING"),
    "nfs.ict": ("EXPRESSION_NAMES", "N_EXPRESSION"),              # the names of the 53 expression weights
    "nfs.regions": ("REGION_NAMES", "region_colors"),             # the skinning regions and their display colours
    "nfs.export": ("export_obj_sequence_zip", "export_animated_glb", "export_rig_glb", "export_preview_video"),
    "nfs.avatar_export": ("export_avatar",),                      # a glTF / VRM back with ARKit targets
    "nfs.arkit": ("ARKIT_NAMES", "VISEME_NAMES"),
    "nfs.resources": ("SHIPPED_MODEL_DIR",),
    "nfs.options": ("RetargetOptions", "OptionError"),            # every run option: default, bounds, help
    "nfs.batch": ("run_batch",),                                  # many targets x clips (docs/batch.md)
}
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'nfs' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
