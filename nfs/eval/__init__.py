"""Evaluation of expression cloning on held-out ICT faces: metrics (`metrics`), classical baselines (`baselines`),
the runner (`run`, through the pipeline's public functions), its report writer (tables, CSV, results.md: `report`)
and figures. The benchmark's data with exact ground truth (`nfs.data.benchmark`) is handed to the runner by
`python -m nfs eval`; nfs/eval imports only the pipeline, its metrics and its baselines (tests/test_layering.py)."""
