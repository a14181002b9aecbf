"""The retargeting pipeline shared by the app, the CLI and the tests, one module per stage:

- `target`: a user's mesh -> `PreparedTarget` (intake, cleaning, alignment, operators, render, encoders), cached;
- `sources`: clips from names, files and face videos, and their per-frame expression codes (`encode_source`);
- `decoding`: codes -> frames of the user's mesh in its original vertex order, frame and units; the baked rig;
- `exports`: one stage per file a run writes; `stages`: the stage names and progress spans of a run;
- `run`: `retarget`, everything at once; `models`: the shipped model.

The app and the eval reach nfs only through the pipeline, `nfs.io` and `nfs.export`; the names they need from
lower modules are re-exported here: the expression and region names (`EXPRESSION_NAMES`, `N_EXPRESSION`,
`REGION_NAMES`, `region_colors`), `Clip` and `resample_rows`, `Alignment`, `render_shaded` and the device helpers.
"""
from nfs.clips import Clip, resample_rows
from nfs.ict import EXPRESSION_NAMES, N_EXPRESSION
from nfs.mesh.align import Alignment
from nfs.mesh.overrides import UP_AXES                 # the choices of manual_alignment
from nfs.model.cpu_kernels import cpu_kernels_available, kernel_status   # the app warms the kernel
from nfs.model.precision import describe_device, inference_dtype, model_autocast, resolve_device
from nfs.pipeline.decoding import decode, decode_all, decode_skin, linear_rig_error_mm, rig_shapes
from nfs.pipeline.exports import (GLB_TOLERANCE_MM, PREVIEW_DEFAULT_MAX_FRAMES, DecodedRun, default_exports,
                                  preview_note, uv_for_export, write_avatar, write_avatar_export,
                                  write_glb, write_obj_zip, write_preview, write_rig)
from nfs.pipeline.models import load_shipped_model, model_on, untrained_model
from nfs.pipeline.run import RetargetResult, add_code_offset, decode_run, retarget
from nfs.pipeline.sources import (SourceCodes, encode_expression_frames, encode_source, head_pose_rows,
                                  is_face_video, live_chain, load_clip, load_face_video, remux_video_with_duration,
                                  source_preview_frames, video_calibration, video_lacks_duration)
from nfs.options import EXPORT_KINDS, OptionError, RetargetOptions, option_specs
from nfs.pipeline.stages import STAGE_NAMES, run_stages, stage_spans
from nfs.pipeline.target import (MIN_FACE_CONFIDENCE, PREPARE_STAGES, SEAM_CM, NotAFaceError, PreparedTarget, TargetKey, as_raw_mesh,
                                 check_face, content_key, manual_alignment, prepare_target, template_skin)
from nfs.progress import (CancelToken, Cancelled, ConsoleBar, Progress, RunProgress, StageProgress, format_eta,
                          rate_eta)
from nfs.regions import N_REGIONS, REGION_NAMES, region_colors
from nfs.render import render_normal_depth, render_shaded
from nfs.resources import SHIPPED_MODEL_DIR

__all__ = [
    "Clip", "resample_rows", "EXPRESSION_NAMES", "N_EXPRESSION", "Alignment", "UP_AXES", "cpu_kernels_available", "kernel_status",
    "describe_device", "inference_dtype", "model_autocast", "resolve_device",
    "decode", "decode_all", "decode_skin", "linear_rig_error_mm", "rig_shapes",
    "GLB_TOLERANCE_MM", "PREVIEW_DEFAULT_MAX_FRAMES", "DecodedRun", "default_exports", "preview_note",
    "uv_for_export", "write_avatar", "write_avatar_export", "write_glb", "write_obj_zip", "write_preview", "write_rig",
    "load_shipped_model", "model_on", "untrained_model",
    "RetargetResult", "add_code_offset", "decode_run", "retarget",
    "SourceCodes", "encode_expression_frames", "encode_source", "head_pose_rows", "is_face_video", "load_clip",
    "live_chain",
    "load_face_video", "source_preview_frames", "video_calibration", "video_lacks_duration",
    "remux_video_with_duration",
    "EXPORT_KINDS", "OptionError", "RetargetOptions", "option_specs", "STAGE_NAMES", "run_stages", "stage_spans",
    "MIN_FACE_CONFIDENCE", "SEAM_CM", "NotAFaceError", "PreparedTarget", "TargetKey", "Progress", "as_raw_mesh", "check_face",
    "content_key", "manual_alignment", "prepare_target", "template_skin",
    "StageProgress", "RunProgress", "CancelToken", "Cancelled", "PREPARE_STAGES", "ConsoleBar", "rate_eta", "format_eta", "N_REGIONS", "REGION_NAMES", "region_colors", "render_normal_depth",
    "render_shaded", "SHIPPED_MODEL_DIR",
]
