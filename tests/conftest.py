"""Fixtures shared by several test modules."""
import pytest


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app (`python app.py`, clips cut to 12 frames) on free ports, one per test module."""
    from app_harness import running_app

    with running_app(tmp_path_factory.mktemp("app_log"), max_frames=12) as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the running app gets the tail of the app's log in its report (CI keeps no files)."""
    outcome = yield
    report = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("app")
    if report.failed and running is not None and hasattr(running, "log"):
        report.sections.append(("app log (last 6000 characters)", running.log()[-6000:]))
