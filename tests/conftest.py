"""Fixtures shared by the test modules: one real app server for the whole test run, and the browser (the system
Chromium through Playwright, a fresh browser context per test)."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = os.path.exists(CHROMIUM)
NO_CHROMIUM = f"no Chromium at {CHROMIUM} (apt-get install -y chromium): browser test skipped"
# offline and quiet: no component updates, no sync, every host but this machine unresolvable; WebGL (the 3D viewer)
# drawn by SwiftShader on the CPU
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                  "--disable-quic", "--disable-extensions", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1, EXCLUDE localhost"]
# one app for the app tests: clips cut to 12 frames, and a viewer for every session the tests open (a gradio_client
# session is never closed by its client)
SHARED_APP_ARGS = ("--max-viewers", "64")
SHARED_APP_MAX_FRAMES = 12


def pytest_collection_modifyitems(config, items):
    """Browser tests skip, with the reason, where there is no system Chromium."""
    if HAVE_CHROMIUM:
        return
    skip = pytest.mark.skip(reason=NO_CHROMIUM)
    for item in items:
        if item.get_closest_marker("browser") is not None:
            item.add_marker(skip)


@functools.lru_cache(maxsize=None)
def _uses_an_app_server(path: Path) -> bool:
    """Whether a test file's tests take the shared app (`app`) or start their own (`long_app`, `running_app`)."""
    import ast
    tree = ast.parse(path.read_text())
    names = {"app", "long_app"}
    return any(isinstance(node, ast.FunctionDef) and any(a.arg in names for a in node.args.args)
               for node in ast.walk(tree)) or "running_app" in path.read_text()


def pytest_xdist_make_scheduler(config, log):
    """Under `-n N` (pytest-xdist): every test file that drives an app server runs on one worker, one file after
    the other, with the one shared app and one browser; the other files go to whichever worker is free."""
    from xdist.scheduler import LoadScopeScheduling

    root = Path(str(config.rootpath))

    class AppFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = nodeid.split("::", 1)[0]
            return "the app's test files" if _uses_an_app_server(root / file) else file

    return AppFilesTogether(config, log)


@pytest.fixture(scope="session")
def app(tmp_path_factory):
    """The real app (`python app.py`, clips cut to 12 frames) on free ports, shared by every test of the run (of each worker process under `-n 2`)."""
    from app_harness import running_app

    with running_app(tmp_path_factory.mktemp("app_log"), max_frames=SHARED_APP_MAX_FRAMES,
                     extra_args=SHARED_APP_ARGS) as running:
        yield running


# ------------------------------------------------------------------------------------- Playwright's settings
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """The system Chromium (no browser download), headless, offline."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "headless": True, "args": CHROMIUM_FLAGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def app_page(page):
    """A fresh browser context's page (Playwright's `page`), with the app's vocabulary (tests/app_page.py)."""
    from app_page import AppPage

    return AppPage(page)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the running app gets the tail of the app's log in its report (CI keeps no files)."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    running = funcargs.get("app") or funcargs.get("long_app")
    if report.failed and running is not None and hasattr(running, "log"):
        report.sections.append(("app log (last 6000 characters)", running.log()[-6000:]))


@pytest.fixture(scope="session")
def compressed(tmp_path_factory):
    """The test avatar compressed by the real npm encoders (gltfpack, gltf-transform), built once for the run:
    {name: path}. Skips where node or the encoders are missing."""
    import avatar_factory as af
    reason = af.encoders_missing()
    if reason:
        pytest.skip(reason)
    return af.compressed_avatars(tmp_path_factory.mktemp("packed"))
