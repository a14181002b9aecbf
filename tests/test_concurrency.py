"""Concurrency of the real app (`python app.py --concurrency 2`), driven with gradio_client:

1. Reference: the four (target, clip) pairs run one after the other in a single session.
2. Four sessions at once (threads, one Client each, different targets and clips): upload target -> upload clip ->
   run -> exports. Every session's OBJ frames equal its reference run (1e-4 of the mesh size), its files sit in its
   own session folder (server side) and its own download folder (client side), named after its own target/clip.
3. The queue: those four runs plus a fifth session's run are submitted at the same moment. The app promises at
   most `--concurrency` (2) runs at once, the rest waiting in Gradio's queue: from the status messages each client
   receives (process_starts / process_completed), never more than 2 ran together, 2 did run together, and the later
   runs only started once an earlier one had finished (and were told their queue position meanwhile).

Both phases start from cold in-memory preparations: the reference uploads carry one extra unreferenced vertex
(dropped by cleaning, so the result on the other vertices is the same, but the content key differs).
One app process for the module; clips are 10 frames.
"""
from __future__ import annotations

import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest


gradio_client = pytest.importorskip("gradio_client")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.utils import Status, StatusUpdate  # noqa: E402

from app.demo_assets import demo_target_path  # noqa: E402
from app_harness import running_app, write_expression_csv  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONCURRENCY = 2
N_FRAMES = 10
REL_TOL = 1e-4
# session -> (target stem, clip shapes); the fourth target is the ICT skin decimated, written to tmp
SESSIONS = {
    "a": ("ict_remeshed", ("mouthSmile_L", "mouthSmile_R", "jawOpen")),
    "b": ("face_crop_metres", ("jawOpen", "mouthFunnel")),
    "c": ("stylized_head", ("browInnerUp_L", "browInnerUp_R", "eyeBlink_L", "eyeBlink_R")),
    "d": ("ict_decimated", ("mouthPucker", "cheekPuff_L", "noseSneer_L")),
}
# the fifth session (only for the queue): session a's reference upload again (prepared already) and its own clip
FIFTH = ("ict_remeshed", ("mouthStretch_L", "mouthStretch_R", "jawOpen"))


# ------------------------------------------------------------------------------------------------ helpers


def write_obj(path: Path, v: np.ndarray, f: np.ndarray) -> Path:
    rows = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    path.write_text("\n".join(rows) + "\n")
    return path


def with_stray_vertex(src: Path, dest: Path) -> tuple[Path, np.ndarray]:
    """The same mesh plus one unreferenced vertex at its bounding-box centre (cleaning drops it; inside the box,
    so the cleaning tolerances, relative to the box, do not change): a new content key, the same result."""
    text = src.read_text()
    v = np.array([line.split()[1:4] for line in text.splitlines() if line.startswith("v ")], np.float64)
    centre = np.round((v.min(0) + v.max(0)) / 2, 6)
    dest.write_text(text + ("" if text.endswith("\n") else "\n") + "v {:.6f} {:.6f} {:.6f}\n".format(*centre))
    return dest, centre


def obj_frames(obj_zip: str | Path) -> np.ndarray:
    """(T, V, 3) vertex positions of an exported OBJ-sequence zip, frames in name order."""
    out = []
    with zipfile.ZipFile(obj_zip) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".obj")):
            lines = [line[2:] for line in zf.read(name).decode().splitlines() if line.startswith("v ")]
            out.append(np.array([line.split()[:3] for line in lines], np.float64))
    return np.stack(out)


def glb_deltas(glb: str | Path) -> tuple[np.ndarray, float]:
    """(T, V, 3) per-frame float32 displacements from the neutral of an exported animated GLB (its weights
    animation evaluated at every frame), and the largest error it states against the decoded frames."""
    from glb_reader import read_glb_frames, read_glb_mesh

    m = read_glb_mesh(glb)
    extras = m.animation["extras"]
    frames = read_glb_frames(glb, range(extras["n_frames"]))
    return (frames - m.neutral[None]).astype(np.float64), float(extras["max_error"])


def run_interval(updates: list) -> tuple[float, float, int | None]:
    """(processing start, finish, best queue rank seen) in epoch seconds from one job's status messages."""
    status = [u for u in updates if isinstance(u, StatusUpdate) and u.time is not None]
    starts = [u.time.timestamp() for u in status if u.code in (Status.PROCESSING, Status.PROGRESS)]
    ends = [u.time.timestamp() for u in status if u.code == Status.FINISHED]
    ranks = [u.rank for u in status if u.code == Status.IN_QUEUE and u.rank is not None]
    assert starts and ends, [u.code for u in status]
    return min(starts), max(ends), (max(ranks) if ranks else None)


def drain(job) -> list:
    """Every update the client received for a job (gradio_client queues them all on its communicator)."""
    q = job.communicator.updates
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def session_root(status: dict) -> Path:
    """The server-side session folder of a result: <app root>/session_<hash>_*/run_N/<file>."""
    paths = [Path(p) for p in status["result"]["exports"].values()]
    runs = {p.parent for p in paths}
    assert len(runs) == 1, f"exports of one run spread over several folders: {paths}"
    run_dir = runs.pop()
    assert run_dir.name.startswith("run_") and run_dir.parent.name.startswith("session_"), run_dir
    return run_dir.parent


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A fresh app of its own (not the one the other app tests share): both phases need cold in-memory
    preparations of the demo targets, which the other tests load."""
    with running_app(tmp_path_factory.mktemp("app_log"), max_frames=12,
                     extra_args=("--concurrency", str(CONCURRENCY))) as running:
        yield running


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Per session: the target to upload, the same target with a stray vertex (reference), the clip CSV."""
    from nfs.geometry.remesh import decimate
    from nfs.ict import load_ict

    root = tmp_path_factory.mktemp("inputs")
    (root / "ref").mkdir()
    out = {}
    for key, (stem, shapes) in SESSIONS.items():
        if stem == "ict_decimated":
            v, f = load_ict().skin_mesh()
            v, f = decimate(np.asarray(v, np.float64), f, 2500)
            target = write_obj(root / f"{stem}.obj", v, f)
        else:
            target = root / f"{stem}.obj"
            shutil.copyfile(demo_target_path(stem), target)
        clip = write_expression_csv(root / f"clip_{key}.csv", n_frames=N_FRAMES, shapes=shapes)
        reference, stray = with_stray_vertex(target, root / "ref" / target.name)
        out[key] = {"target": target, "reference": reference, "stray": stray, "clip": clip, "stem": stem}
    out["fifth_clip"] = write_expression_csv(root / "clip_e.csv", n_frames=N_FRAMES, shapes=FIFTH[1])
    return out


# ------------------------------------------------------------------------------------------------ the test


def test_concurrent_sessions_match_solo_runs_and_queue(app, inputs, tmp_path):
    t_test = time.perf_counter()

    # 1. reference: one session, one pair after the other
    solo = Client(app.url, verbose=False, download_files=str(tmp_path / "solo"))
    reference, solo_s = {}, {}
    for key in SESSIONS:
        case = inputs[key]
        t0 = time.perf_counter()
        solo.predict(handle_file(str(case["reference"])), api_name="/upload_target")
        solo.predict(handle_file(str(case["clip"])), api_name="/set_clip_file")
        out = solo.predict("uploaded file", None, handle_file(str(case["clip"])), 0.0, 1.0, api_name="/run")
        solo_s[key] = time.perf_counter() - t0
        frames, (deltas, _) = obj_frames(out[1]), glb_deltas(out[2])
        n_v = frames.shape[1] - 1                         # the stray vertex is the last one
        assert frames.shape == (N_FRAMES, n_v + 1, 3) and deltas.shape == frames.shape
        assert np.allclose(frames[:, -1], case["stray"]) and not deltas[:, -1].any()   # dropped: stays put
        reference[key] = frames[:, :n_v], deltas[:, :n_v]

    # 2 + 3. four sessions at once, then five runs submitted together
    keys = list(SESSIONS) + ["e"]
    barrier = threading.Barrier(len(keys), timeout=240)
    results, errors = {}, {}

    def session(key: str) -> None:
        try:
            dl = tmp_path / f"downloads_{key}"
            c = Client(app.url, verbose=False, download_files=str(dl))
            t0 = time.perf_counter()
            if key == "e":
                clip = inputs["fifth_clip"]
                summary = c.predict(handle_file(str(inputs["a"]["reference"])), api_name="/upload_target")[0]
                assert "reused" in summary, summary
            else:
                clip = inputs[key]["clip"]
                summary = c.predict(handle_file(str(inputs[key]["target"])), api_name="/upload_target")[0]
                assert "preparation: computed" in summary, summary     # cold: prepared concurrently
            info = c.predict(handle_file(str(clip)), api_name="/set_clip_file")[0]
            assert f"{N_FRAMES} frames" in info, info
            setup_s = time.perf_counter() - t0
            barrier.wait()
            submitted = time.time()
            job = c.submit("uploaded file", None, handle_file(str(clip)), 0.0, 1.0, api_name="/run")
            out = job.result(timeout=240)
            start, end, rank = run_interval(drain(job))
            status = c.predict(api_name="/status")
            results[key] = dict(out=out, status=status, submitted=submitted, start=start, end=end, rank=rank,
                                setup_s=setup_s, downloads=dl, clip=clip)
        except BaseException as e:  # noqa: BLE001 - reported below with the session's key
            errors[key] = e
            barrier.abort()

    threads = [threading.Thread(target=session, args=(k,), name=f"session-{k}") for k in keys]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    concurrent_s = time.perf_counter() - t0
    assert not errors, {k: repr(e) for k, e in errors.items()}
    assert set(results) == set(keys)

    # every session: its own target and clip, its own files, frames equal to the solo run
    session_dirs, compared = {}, {}
    for key in keys:
        r = results[key]
        st = r["status"]
        stem = FIFTH[0] if key == "e" else inputs[key]["stem"]
        assert st["target"]["name"] == stem and st["clip"]["name"] == r["clip"].stem, st
        assert st["result"]["target"] == stem and st["result"]["clip"] == r["clip"].stem, st
        assert st["result"]["frames"] == N_FRAMES and st["result"]["valid"], st
        d = session_dirs[key] = session_root(st)
        for name in (p.name for p in d.rglob("*") if p.is_file()):
            assert name.startswith(stem), f"session {key} ({stem}) holds {name}"
        assert {Path(p).name for p in st["result"]["exports"].values()} >= {
            f"{stem}_{r['clip'].stem}_obj.zip", f"{stem}_{r['clip'].stem}.glb"}
        for f in r["out"][1:5]:                             # what this client downloaded: its own folder
            assert f and Path(f).is_file() and Path(f).resolve().is_relative_to(r["downloads"].resolve()), f
        assert Path(r["out"][1]).name.startswith(f"{stem}_{r['clip'].stem}")
        if key == "e":
            continue
        frames, (deltas, glb_error) = obj_frames(r["out"][1]), glb_deltas(r["out"][2])
        ref, ref_deltas = reference[key]
        assert frames.shape == ref.shape and deltas.shape == ref.shape, (key, frames.shape, deltas.shape, ref.shape)
        size = np.ptp(ref[0], axis=0).max()
        motion = np.abs(ref_deltas).max()
        assert motion > 1e-5 * size, f"{key}: the clip does not move the mesh ({motion:.3g} of {size:.3g})"
        what = f"session {key} ({inputs[key]['stem']}) differs from its solo run"
        # positions (OBJ text, 6 decimals) within 1e-4 of the mesh size; the motion itself (GLB float32
        # deltas from the neutral) within 1e-4 of its largest value, so another clip's motion cannot pass
        np.testing.assert_allclose(frames, ref, rtol=0, atol=REL_TOL * size, err_msg=what + " (OBJ)")
        # (the GLB holds each frame to within its stated error: two runs agree to twice that)
        np.testing.assert_allclose(deltas, ref_deltas, rtol=0, atol=REL_TOL * motion + 2 * glb_error,
                                   err_msg=what + " (GLB)")
        compared[key] = (np.abs(deltas - ref_deltas).max() / motion, motion / size)
    assert len(set(session_dirs.values())) == len(keys), session_dirs      # one folder per session

    # the queue: at most CONCURRENCY runs at once, and CONCURRENCY did run at once
    tol = 0.5                                               # client-side receive times of two SSE streams
    starts = sorted(r["start"] for r in results.values())
    ends = sorted(r["end"] for r in results.values())
    submitted = [r["submitted"] for r in results.values()]
    assert max(submitted) - min(submitted) < 2.0, "the five runs were not submitted together"
    for k in range(CONCURRENCY, len(starts)):
        assert starts[k] >= ends[k - CONCURRENCY] - tol, (
            f"{k + 1} runs processing at once with --concurrency {CONCURRENCY}: starts {starts}, ends {ends}")
    assert starts[1] < ends[0], f"runs never overlapped: starts {starts}, ends {ends}"
    waited = [k for k, r in results.items() if r["start"] >= min(ends) - tol]
    assert len(waited) >= len(keys) - CONCURRENCY, waited
    ranks = {k: results[k]["rank"] for k in waited}
    assert None not in ranks.values() and max(ranks.values()) >= 1, f"waiting runs not told their place: {ranks}"

    t_min = min(submitted)
    print(f"\nsolo runs (upload+clip+run): " + ", ".join(f"{k} {s:.1f} s" for k, s in solo_s.items()))
    print(f"concurrent phase {concurrent_s:.1f} s; runs (start..end after submit, queue rank):")
    for k in keys:
        r = results[k]
        print(f"  {k}: setup {r['setup_s']:.1f} s, run {r['start'] - t_min:5.1f} .. {r['end'] - t_min:5.1f} s"
              f", rank {r['rank']}")
    print("max |GLB delta - solo| / max |solo delta| (motion / mesh size): " + ", ".join(
        f"{k} {d:.1e} ({m:.1e})" for k, (d, m) in compared.items()))
    print(f"test total {time.perf_counter() - t_test:.1f} s")


def test_uploads_wait_for_runs_in_the_shared_heavy_limit(app, inputs, tmp_path):
    """Runs, target uploads, alignment overrides and clip files share one concurrency group: with two runs
    processing (the limit), a third session's upload of a new mesh waits in the queue until a run has finished."""
    clients = {}
    for key in ("a", "b"):
        c = clients[key] = Client(app.url, verbose=False, download_files=str(tmp_path / f"dl_{key}"))
        c.predict(handle_file(str(inputs[key]["target"])), api_name="/upload_target")
        c.predict(handle_file(str(inputs[key]["clip"])), api_name="/set_clip_file")
    # a mesh never prepared before (the decimated ICT skin with two stray vertices): a real preparation
    fresh, _ = with_stray_vertex(inputs["d"]["reference"], tmp_path / "fresh_upload.obj")
    uploader = Client(app.url, verbose=False, download_files=str(tmp_path / "dl_upload"))

    runs = [c.submit("uploaded file", None, handle_file(str(inputs[k]["clip"])), 0.0, 1.0, api_name="/run")
            for k, c in clients.items()]
    time.sleep(0.3)
    upload = uploader.submit(handle_file(str(fresh)), api_name="/upload_target")
    summary = upload.result(timeout=240)[0]
    for job in runs:
        job.result(timeout=240)
    assert "preparation: computed" in summary, summary
    run_times = [run_interval(drain(job)) for job in runs]
    up_start, up_end, up_rank = run_interval(drain(upload))
    first_run_end = min(end for _, end, _ in run_times)
    latest_run_start = max(start for start, _, _ in run_times)
    assert latest_run_start < first_run_end, f"the two runs did not process together: {run_times}"
    assert first_run_end - latest_run_start > 1.0, f"runs too short to tell: {run_times}"
    tol = 0.5
    assert up_start >= first_run_end - tol, (
        f"the upload started at {up_start:.2f} while both runs were processing (first end {first_run_end:.2f})")
    assert up_rank is not None, "the waiting upload was not told its queue place"
    print(f"\nruns {[(round(s % 100, 2), round(e % 100, 2)) for s, e, _ in run_times]}, upload started "
          f"{up_start - first_run_end:+.2f} s after the first run ended (queue rank {up_rank})")
