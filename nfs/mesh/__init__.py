"""Mesh intake: reading user files, repairing them, and aligning them to the ICT template."""
from nfs.mesh.io import (DEFAULT_MAX_VERTICES, SUPPORTED_EXTENSIONS, MeshError, MeshPart, RawMesh,
                         fan_triangulate, load_mesh, load_mesh_bytes, save_obj, save_ply)
from nfs.mesh.clean import CleanMesh, CleanReport, clean_mesh
from nfs.mesh.align import (Alignment, align_to_ict, axis_rotations, fit_residual_cm, refine_alignment,
                            rotation_angle_deg, sample_surface, surface_moments, umeyama_batch)

__all__ = [
    "DEFAULT_MAX_VERTICES", "SUPPORTED_EXTENSIONS", "MeshError", "MeshPart", "RawMesh", "fan_triangulate",
    "load_mesh", "load_mesh_bytes", "save_obj", "save_ply",
    "CleanMesh", "CleanReport", "clean_mesh",
    "Alignment", "align_to_ict", "refine_alignment", "fit_residual_cm", "axis_rotations", "rotation_angle_deg",
    "sample_surface", "surface_moments", "umeyama_batch",
]
