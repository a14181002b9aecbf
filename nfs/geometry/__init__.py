"""Geometry: DiffusionNet operators, remeshing and surface correspondences."""
