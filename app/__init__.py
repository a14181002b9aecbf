"""The NFS web app: a Gradio page (target, source, run, edit, export) with an embedded viser 3D viewer.

Modules: `ui` (the Gradio page and its handlers), `session` (one user's target, clip, result and edits),
`edits` (FACS code offsets), `alignment` (manual alignment overrides), `viewer` (viser servers that only
draw arrays they are given), `about` (device, model card, region legend), `demo_assets` (bundled targets).
"""
