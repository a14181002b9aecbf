"""The NFS web app: a Gradio page (target, source, run, edit, export) with an embedded viser 3D viewer.

Modules: `ui` (the Gradio page and its handlers), `session` (one user's target, clip, result and edits),
`edits` (FACS code offsets), `video_tab` (the Video source tab), `viewer` (viser servers that only draw arrays
they are given), `about` (device, model card, region legend), `demo_assets` (bundled targets). The app reaches nfs
through `nfs.pipeline`, `nfs.io` and `nfs.export` only (tests/test_layering.py).
"""
