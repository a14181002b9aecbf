"""The About tab: the device, the model card, the skinning regions' colours and how sessions are kept."""
from __future__ import annotations

import gradio as gr

from app import about


def build(app, w) -> None:
    with gr.Tab("About"):
        gr.Markdown("\n".join(f"- {line}" for line in about.device_lines(app.registry.device)))
        gr.Markdown(about.model_card_markdown(app.card, app.model_dir, app.untrained))
        gr.Markdown("**Predicted skinning regions** (colours in the viewer):")
        gr.HTML(about.region_legend_html())
        w.session_md = gr.Markdown("")
        gr.Markdown("Sessions: every browser tab has its own target, clip, results, temp folder and its own "
                    "viser viewer server (own port); they are removed when the tab closes (API clients: after "
                    "an hour idle). Uploading the same mesh again reuses its cached preparation (shown as "
                    "*reused*).")
