"""The NFS web app: a Gradio page (target, source, run, edit, export) with an embedded viser 3D viewer.

Modules: `ui` (the page, assembled from `tabs/`: one module per tab or panel, target, source, video, edit, about,
run, display), `state` (one user's target, clip, result and edits), `views` (what the viewer and the page show
of that state), `edits` (FACS code offsets), `viewer` (viser servers that only draw arrays they are given),
`controls` (the run options' controls), `about` (device, model card, region legend), `demo_assets` (bundled
targets). The app reaches nfs
through `nfs.pipeline`, `nfs.io` and `nfs.export` only (tests/test_layering.py).
"""
