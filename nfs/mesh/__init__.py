"""Mesh intake after reading (`nfs.io`): repairing user meshes, aligning them to the ICT template, and binding
the components that are not skin (eyes, teeth) to the skin."""
from nfs.mesh.clean import CleanMesh, CleanReport, clean_mesh
from nfs.mesh.align import Alignment, align_to_ict, fit_residual_cm, refine_alignment, surface_moments

__all__ = [
    "CleanMesh", "CleanReport", "clean_mesh",
    "Alignment", "align_to_ict", "refine_alignment", "fit_residual_cm", "surface_moments",
]
