"""A long take through the real app (`python app.py --max-frames 240`) and gradio_client: the run's progress
messages, as a client receives them, move at least once a second through every stage, name the stage (k of n)
and give an ETA. 240 frames (8 s at 30 fps) keep the MP4 preview (10-20 frames/s) busy for well over ten seconds, so
a stage that reported only at its start and end would show; the target is a small decimated ICT head so that the
take stays quick on 2 cores."""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")

from app_harness import running_app  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from app.state import stages_of_run  # noqa: E402
from nfs.geometry.remesh import decimate  # noqa: E402
from nfs.ict import load_ict  # noqa: E402
from nfs.io import save_obj  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
N_FRAMES = 240
# the stages of the run below (an OBJ target with the default files and the preview: no avatar), in order
RUN_STAGES = stages_of_run(("obj_zip", "glb", "rig", "mp4"))
MAX_GAP_S = 1.0
POLL_S = 0.05


@pytest.fixture(scope="module")
def long_app(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("app_log"), max_frames=N_FRAMES) as running:
        yield running


@pytest.fixture(scope="module")
def small_head(tmp_path_factory) -> Path:
    ict = load_ict()
    v, f = decimate(*ict.skin_mesh(ict.sample_identities(1, seed=3)[0]), 700)
    path = tmp_path_factory.mktemp("head") / "small_head.obj"
    save_obj(path, v, f)
    return path


def record_progress(job) -> list[tuple[float, str, float | None]]:
    """(time, message, fraction) every time the progress a client sees changes, until the job ends."""
    seen, last = [], None
    while not job.done():
        st = job.status()
        if st.progress_data:
            p = st.progress_data[0]
            now = (p.desc or "", p.progress)
            if now != last:
                seen.append((time.perf_counter(), *now))
                last = now
        time.sleep(POLL_S)
    return seen


def test_long_take_progress_moves_every_second(long_app, small_head):
    c = Client(long_app.url, verbose=False)
    c.predict(handle_file(str(small_head)), api_name="/upload_target")
    info = c.predict("range_of_motion", api_name="/set_clip")[0]
    assert f"{N_FRAMES} frames" in info and f"truncated to the first {N_FRAMES}" in info, info  # noted in the summary
    t0 = time.perf_counter()
    job = c.submit("built-in clip", "range_of_motion", None, 0.0, 1.0, api_name="/run")
    seen = record_progress(job)
    report = job.result()[0]
    total = time.perf_counter() - t0
    assert f"small_head ← range_of_motion**: {N_FRAMES} frames" in report or \
        f"small_head ← range_of_motion: {N_FRAMES} frames" in report, report
    assert len(seen) > 10
    times = [t for t, _, _ in seen]
    gaps = [b - a for a, b in zip([t0] + times, times + [time.perf_counter()])]
    print("\nlargest gaps, after:", sorted(zip(gaps, ["(the start)"] + [m for _, m, _ in seen]), reverse=True)[:4])
    # every stage of the run appears, in order, each message says which stage of how many
    stage_of = [next((k for k, name in enumerate(RUN_STAGES) if f"· {name}" in m), None) for _, m, _ in seen]
    assert None not in stage_of, [m for (_, m, _), k in zip(seen, stage_of) if k is None][:3]
    assert stage_of == sorted(stage_of), "stages went backwards"
    # the preview renders N_FRAMES frames and reports frame by frame; decoding a 700-vertex head from the template
    # prior, the OBJ zip and the rig can each be done between two polls (CI has seen no decoding and no OBJ-zip
    # message: each took less than a poll), and the gap check below covers them whether they are seen or not
    long_stages = {RUN_STAGES.index("rendering the preview MP4")}
    assert long_stages <= set(stage_of), sorted(set(stage_of))
    assert all(f"stage {k + 1}/{len(RUN_STAGES)}" in m for (_, m, _), k in zip(seen, stage_of))
    assert any("left in this stage" in m for _, m, _ in seen) and any("whole run about" in m for _, m, _ in seen)
    per_stage = {}
    for (t, _, _), k, gap in zip(seen, stage_of, gaps):
        per_stage.setdefault(RUN_STAGES[k], []).append(gap)
    print(f"\n{N_FRAMES}-frame run: {total:.1f} s, {len(seen)} progress changes, gap median "
          f"{statistics.median(gaps):.2f} s, max {max(gaps):.2f} s; per stage (max gap): " +
          ", ".join(f"{k} {max(v):.2f} s" for k, v in per_stage.items()))
    worst = sorted(zip(gaps, ["(the start)"] + [m for _, m, _ in seen]), reverse=True)[:3]
    # a process that gets a fraction of a core (other work on the machine) cannot report on time: the limit
    # stretches with the load average per core and says so
    load = os.getloadavg()[0] / (os.cpu_count() or 1)
    limit = (MAX_GAP_S + 0.5) * max(1.0, load / 2.0)
    if limit > MAX_GAP_S + 0.5:
        print(f"machine load {load:.1f} per core: gaps allowed up to {limit:.1f} s")
    assert max(gaps) <= limit, f"progress stood still: {worst}"
    assert statistics.median(gaps) <= MAX_GAP_S / 2
