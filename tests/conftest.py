"""Fixtures shared by several test modules."""
import pytest


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app (`python app.py`, clips cut to 12 frames) on free ports, one per test module."""
    from app_harness import running_app

    with running_app(tmp_path_factory.mktemp("app_log"), max_frames=12) as running:
        yield running
