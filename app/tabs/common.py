"""What every tab's handlers share: bad input turned into a one-line message (`guarded`), the viewer's iframe,
the page's widget namespace and the concurrency group of the heavy events."""
from __future__ import annotations

import functools
import html
import logging
import zipfile

import gradio as gr

from nfs.io import ClipError, MeshError
from nfs.pipeline import Cancelled

log = logging.getLogger("nfs.app")
USER_ERRORS = (MeshError, ClipError, ValueError, FileNotFoundError, zipfile.BadZipFile, OSError, Cancelled)
HEAVY = "heavy"  # the one concurrency group of every event that prepares, parses or decodes
NO_TARGET = "*No target yet: upload a mesh or pick a demo.*"


class Widgets:
    """The page's components, filled in by the tab builders (a plain namespace)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def guarded(fn):
    """Bad input -> gr.Error with its one-line message (one log line, no traceback); anything else -> a short
    internal-error message (the traceback goes to the log). Errors stay on screen until dismissed. The session is
    left as it was before the call."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except USER_ERRORS as e:
            log.info("refused (%s): %s", fn.__name__, one_line(e))
            raise gr.Error(one_line(e), duration=None, print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the app must keep serving
            log.exception("handler %s failed", fn.__name__)
            raise gr.Error(f"internal error ({type(e).__name__}): {one_line(e)}", duration=None,
                           print_exception=False) from None

    return wrapper


def bullets(lines: list[str], warnings: list[str] = ()) -> str:
    out = [f"- {line}" for line in lines]
    out += [f"- ⚠ **{w}**" for w in warnings]
    return "\n".join(out)


def viewer_html(url: str) -> str:
    if not url:
        return ("<div id=\"viewer-frame\">3D viewer not available: every viewer server is in use by another "
                "session (close other tabs, or start the app with a larger --max-viewers). Runs and exports still "
                "work.</div>")
    u = html.escape(url, quote=True)
    return (f'<div id="viewer-frame"><iframe src="{u}" title="NFS 3D viewer" allow="fullscreen"></iframe>'
            f'<div style="font-size:12px;margin-top:4px">3D viewer of this session: <a href="{u}" target="_blank">'
            f'{u}</a> (playback, frame, fps, loop and colours are in its panel)</div></div>')
