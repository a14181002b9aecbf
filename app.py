"""`python app.py`: the NFS web app (Gradio page + embedded viser 3D viewers), offline, on 127.0.0.1.

    python app.py [--port 7860] [--viewer-port 8080] [--model DIR] [--share] [--max-frames N]

Each browser session gets its own viewer server: the first on --viewer-port, further ones on the next free
ports (see app/viewer.py). Nothing is fetched from the internet; Gradio analytics are off.
"""
from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Neural Face Skinning web app (Gradio + viser).")
    p.add_argument("--host", default="127.0.0.1", help="interface for the page and the viewers (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="Gradio port (default 7860)")
    p.add_argument("--viewer-port", type=int, default=8080, help="first viser viewer port (default 8080); "
                   "further sessions use the next free ports")
    p.add_argument("--max-viewers", type=int, default=16, help="viewer servers at most (one per open session)")
    p.add_argument("--model", default=None, help="model directory (default: the shipped ckpts/nfs_cpu)")
    p.add_argument("--share", action="store_true", help="also open public Gradio/viser share links (needs internet)")
    p.add_argument("--max-frames", type=int, default=0, help="cut every source clip to this many frames (0: no cut)")
    p.add_argument("--concurrency", type=int, default=1,
                   help="heavy events (target uploads, alignment overrides, clip files, runs) processing at once, "
                        "all sessions together; the others wait in the queue")
    p.add_argument("--max-idle-minutes", type=float, default=60.0, help="close sessions idle this long")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs: auto (a CUDA GPU when torch sees one), cpu or cuda")
    p.add_argument("--random-init", action="store_true", help=argparse.SUPPRESS)  # development without a checkpoint
    return p.parse_args(argv)


def load_model(args):
    if args.random_init:
        from nfs.pipeline import untrained_model
        return untrained_model("cpu"), {}, "random init"
    from nfs.pipeline import SHIPPED_MODEL_DIR, load_shipped_model
    model, card = load_shipped_model(args.model)
    return model, card, str(args.model or SHIPPED_MODEL_DIR)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        from nfs.pipeline import resolve_device
        device = resolve_device(args.device)
        model, card, model_dir = load_model(args)
        if device.type == "cpu":
            # the decoder's compiled CPU kernel: built once per machine (~10 s), so no run waits for it later
            from nfs.pipeline import cpu_kernels_available, kernel_status
            cpu_kernels_available()
            logging.getLogger("nfs.app").info("decoder normalisation: %s", kernel_status())
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import gradio as gr

    from app.state import MAX_UPLOAD_MB, SessionRegistry
    from app.tabs.display import DEFAULT_HEAT_DIM
    from app.ui import CSS, App
    from app.viewer import ViewerPool

    root = Path(tempfile.mkdtemp(prefix="nfs_app_"))
    public_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    from nfs.pipeline import EXPRESSION_NAMES
    pool = ViewerPool(args.host, args.viewer_port, args.max_viewers, public_host=public_host, share=args.share,
                      default_code_dim=EXPRESSION_NAMES.index(DEFAULT_HEAT_DIM))
    registry = SessionRegistry(root, model, pool, max_frames=args.max_frames,
                               max_idle_s=args.max_idle_minutes * 60.0, device=args.device)

    def cleanup():
        registry.close_all()
        pool.close()
        shutil.rmtree(root, ignore_errors=True)

    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # `kill` shuts down cleanly (temp dirs removed)

    def janitor():
        while True:
            threading.Event().wait(300)
            registry.reap()

    threading.Thread(target=janitor, name="session-janitor", daemon=True).start()

    app = App(registry, card, model_dir, untrained=args.random_init, max_frames=args.max_frames)
    demo = app.build()
    demo.queue(default_concurrency_limit=max(1, args.concurrency))
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port, share=args.share,
                                          prevent_thread_lock=True, max_file_size=f"{MAX_UPLOAD_MB}mb",
                                          theme=theme, css=CSS, quiet=True, footer_links=["api", "settings"],
                                          allowed_paths=[str(root)])
    print(f"NFS app: http://{public_host}:{args.port}" + (f"  (share: {share_url})" if share_url else ""), flush=True)
    print(f"3D viewer: {pool.first_url}  (one viewer server per browser session, from port {args.viewer_port})",
          flush=True)
    try:
        demo.block_thread()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        demo.close()
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
