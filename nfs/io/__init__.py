"""File formats, one module each (``load_*`` / ``save_*``), and the registry that picks a loader for a file.

Meshes: obj, ply, stl, off, gltf (GLB and glTF); video: mp4 / gif (written; a face video is read as a clip by
`nfs.pipeline.load_clip`, through nfs.video). Clips: codes_csv (our ICT weight CSV), livelink (Live Link Face
CSV), mesh_sequence (folder / zip / npz of frames), multiface; zipsafe reads archives safely. `registry` maps
extensions and sniffed content to loaders.
"""
from nfs.clips import ClipError
from nfs.io.mesh import DEFAULT_MAX_VERTICES, MeshError, MeshPart, RawMesh
from nfs.io.obj import save_obj
from nfs.io.ply import save_ply
from nfs.io.codes_csv import load_codes_csv, save_codes_csv
from nfs.io.livelink import load_livelink_csv
from nfs.io.mesh_sequence import load_mesh_sequence
from nfs.io.multiface import load_multiface_sequence
from nfs.io.registry import (CLIP_EXTENSIONS, MESH_EXTENSIONS, VIDEO_EXTENSIONS, list_builtin_clips, load_builtin_clip,
                             load_clip, load_mesh, load_mesh_bytes)

__all__ = [
    "ClipError", "DEFAULT_MAX_VERTICES", "MeshError", "MeshPart", "RawMesh", "save_obj", "save_ply", "load_codes_csv",
    "save_codes_csv", "load_livelink_csv", "load_mesh_sequence", "load_multiface_sequence", "CLIP_EXTENSIONS",
    "MESH_EXTENSIONS", "VIDEO_EXTENSIONS", "list_builtin_clips", "load_builtin_clip", "load_clip", "load_mesh",
    "load_mesh_bytes",
]
