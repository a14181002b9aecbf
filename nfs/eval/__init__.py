"""Evaluation of expression cloning on held-out ICT faces: benchmark data with exact ground truth (`benchmark`),
metrics (`metrics`), classical baselines (`baselines`), the `python -m nfs eval` runner (`run`, through the
pipeline's public functions), its report writer (tables, CSV, results.md: `report`) and figures."""
