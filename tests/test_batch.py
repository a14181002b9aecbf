"""Batch retargeting (`nfs.batch`, `python -m nfs batch`): a manifest of 2 targets x 3 short clips plus bad rows,
run on the local process pool and on a local Ray instance (2 CPUs, started once for the module).

What is checked: both engines give byte-identical outputs; bad rows fail alone with their message; each target is
prepared once (one preparation id per target, made inside the worker that prepared it); a second run skips every
finished pair; a worker killed during a pair (the NFS_BATCH_KILL_ONCE hook) leaves every pair done, identical and
nothing partial, on both engines (on Ray with the driver sending the inputs and writing the outputs, as
without a shared disk); the command line runs the same and exits 1 when a pair failed.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nfs import REPO_ROOT
from nfs.arkit import ARKIT_NAMES
from nfs.batch import run_batch
from nfs.batch.outputs import RECORD_NAME, read_record
from tests.glb_reader import read_glb_frames, read_glb_mesh, read_rig_glb

ray = pytest.importorskip("ray")

TARGETS = REPO_ROOT / "assets" / "targets"
CLIPS = ("smile", "blinks")


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """2 real targets x 3 clips of 3 frames (a glob; two clips with the same content), a mesh file that is not a mesh, an unknown clip, a bad
    option value. The second target's row asks for the animated GLB only."""
    from nfs.io import load_clip
    from nfs.io.codes_csv import save_codes_csv
    root = tmp_path_factory.mktemp("batch_inputs")
    (root / "takes").mkdir()
    for name in CLIPS:
        codes = load_clip(name).codes
        peak = int(np.argmax(codes.sum(1)))       # three frames about the clip's strongest expression
        save_codes_csv(root / "takes" / f"{name}_take.csv", codes[max(peak - 4, 0):][:12:4])
    # the same take under another name: loaded once, its outputs named after their own file
    shutil.copy(root / "takes" / "blinks_take.csv", root / "takes" / "blinks_again_take.csv")
    (root / "broken.obj").write_text("v 1 2\nnot a mesh\n")
    path = root / "manifest.csv"
    path.write_text("target,clip,exports,gain\n"
                    f"{TARGETS / 'face_crop_metres.obj'},takes/*.csv,,\n"
                    f"{TARGETS / 'ict_remeshed.obj'},takes/*.csv,glb,1.2\n"
                    "broken.obj,takes/smile_take.csv,,\n"
                    f"{TARGETS / 'face_crop_metres.obj'},no_such_clip,,\n"
                    f"{TARGETS / 'ict_remeshed.obj'},smile,,9\n")
    return path


def _report(out: Path) -> list[dict]:
    with open(out / "batch_report.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _files(out: Path) -> dict[str, bytes]:
    """Every output file under `out` by relative path (the report, whose seconds differ, left out)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name != "batch_report.csv"}


def _hidden(out: Path) -> list[Path]:
    return [p for p in out.rglob(".*")]


@pytest.fixture(scope="module")
def local_run(manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    return run_batch(manifest, out, engine="local", workers=2, exports="rig,glb", device="cpu")


@pytest.fixture(scope="module")
def ray_run(manifest, tmp_path_factory, ray_instance):
    out = tmp_path_factory.mktemp("ray") / "out"
    return run_batch(manifest, out, engine="ray", workers=2, exports="rig,glb", device="cpu")


@pytest.mark.slow
def test_local_engine_runs_every_good_pair_and_fails_bad_rows_alone(local_run):
    rows = _report(local_run.out)
    assert len(rows) == 9
    ok = [r for r in rows if r["status"] == "ok"]
    failed = {Path(r["target"]).name + " x " + Path(r["clip"]).name: r["error"] for r in rows if r["status"] == "failed"}
    assert len(ok) == 6, rows
    assert "MeshError" in failed["broken.obj x smile_take.csv"] and "broken.obj" in failed["broken.obj x smile_take.csv"]
    assert "no_such_clip" in failed["face_crop_metres.obj x no_such_clip"]
    assert "column gain" in failed["ict_remeshed.obj x smile"] and "9" in failed["ict_remeshed.obj x smile"]
    for r in ok:
        folder = local_run.out / r["out_dir"]
        stem = Path(r["out_dir"]).parts
        assert stem[0] in ("face_crop_metres", "ict_remeshed") and stem[1].endswith("_take")
        names = sorted(Path(p).name for p in r["outputs"].split(";"))
        assert sorted(p.name for p in folder.iterdir() if p.name != RECORD_NAME) == names
        want = {f"{stem[0]}_{stem[1]}.glb"} | ({f"{stem[0]}_rig.glb"} if stem[0] == "face_crop_metres" else set())
        assert set(names) == want        # the row's exports cell overrides the batch's
        anim = read_glb_mesh(folder / f"{stem[0]}_{stem[1]}.glb")
        assert len(anim.animation["times"]) == 3 and anim.neutral.shape[0] > 1000
        frames = read_glb_frames(folder / f"{stem[0]}_{stem[1]}.glb", range(3))
        assert np.isfinite(frames).all() and np.abs(frames - anim.neutral).max() > 0   # the face moves
        record = read_record(folder)
        assert record["inputs"]["options"]["gain"] == (1.2 if stem[0] == "ict_remeshed" else 1.0)
    rig = read_rig_glb(local_run.out / "face_crop_metres" / "smile_take" / "face_crop_metres_rig.glb")
    assert list(rig[3]) == list(ARKIT_NAMES)
    assert not _hidden(local_run.out)


@pytest.mark.slow
def test_each_target_is_prepared_once_and_shared(local_run, ray_run):
    for result in (local_run, ray_run):
        rows = [r for r in _report(result.out) if r["status"] == "ok"]
        ids = {}
        for r in rows:
            ids.setdefault(Path(r["target"]).name, set()).add(r["prepared_target"])
        assert {k: len(v) for k, v in ids.items()} == {"face_crop_metres.obj": 1, "ict_remeshed.obj": 1}
        assert len(set().union(*ids.values())) == 2      # two preparations, made in the workers
        prepared = [t for t in result.targets.values() if t["ok"]]
        assert len(prepared) == 2 and sorted(t["pairs"] for t in prepared) == [3, 3]
        assert 0 < result.prepare_share < 1
        assert len(result.clips) == 2                    # three clip files, two contents


@pytest.mark.slow
def test_ray_engine_gives_the_same_outputs_byte_for_byte(local_run, ray_run):
    assert [r["status"] for r in _report(local_run.out)] == [r["status"] for r in _report(ray_run.out)]
    local, ray_files = _files(local_run.out), _files(ray_run.out)
    assert len(local) == 6 + 6 + 3     # 6 animated GLBs, 6 records, 3 rigs
    assert local.keys() == ray_files.keys()
    different = [k for k in local if local[k] != ray_files[k]]
    assert not different
    assert not _hidden(ray_run.out)


@pytest.mark.slow
def test_second_run_skips_every_finished_pair(local_run, manifest):
    before = {p: p.stat().st_mtime_ns for p in local_run.out.rglob("*") if p.is_file() and p.suffix == ".glb"}
    again = run_batch(manifest, local_run.out, engine="local", workers=2, exports="rig,glb", device="cpu")
    assert again.count("skipped") == 6 and again.count("failed") == 3 and again.count("ok") == 0
    assert [t["path"] for t in again.targets.values()] == [str(manifest.parent / "broken.obj")]   # failed: tried again
    assert {p: p.stat().st_mtime_ns for p in before} == before
    rows = _report(local_run.out)
    assert sorted(r["status"] for r in rows) == ["failed"] * 3 + ["skipped"] * 6
    # changed options make a pair unfinished: the edited row runs again (in a copy), the rest is still skipped
    copy = local_run.out.parent / "edited"
    shutil.copytree(local_run.out, copy)
    edited = manifest.with_name("manifest_glb_only.csv")
    edited.write_text(manifest.read_text().replace("takes/*.csv,,", "takes/*.csv,glb,", 1))
    third = run_batch(edited, copy, engine="local", workers=2, exports="rig,glb", device="cpu")
    assert third.count("ok") == 3 and third.count("skipped") == 3
    assert not (copy / "face_crop_metres" / "smile_take" / "face_crop_metres_rig.glb").exists()
    assert (copy / "face_crop_metres" / "smile_take" / "face_crop_metres_smile_take.glb").read_bytes() == (
        local_run.out / "face_crop_metres" / "smile_take" / "face_crop_metres_smile_take.glb").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_killed_worker_is_retried_and_leaves_nothing_partial(engine, local_run, ray_run, manifest, tmp_path,
                                                              monkeypatch):
    source = local_run if engine == "local" else ray_run
    out = tmp_path / "out"
    shutil.copytree(source.out, out)
    for clip in ("smile_take", "blinks_take"):       # two unfinished pairs of one target
        shutil.rmtree(out / "face_crop_metres" / clip)
    marker = tmp_path / "killed_once"
    monkeypatch.setenv("NFS_BATCH_KILL_ONCE", str(marker))
    # on Ray, as on a cluster without a shared disk: the driver sends the inputs and writes the returned files
    storage = "shared" if engine == "local" else "driver"
    result = run_batch(manifest, out, engine=engine, workers=2, exports="rig,glb", device="cpu", storage=storage)
    assert marker.exists()                           # a worker did kill itself mid-pair
    assert result.count("ok") == 2 and result.count("skipped") == 4, [(p.status, p.error) for p in result.pairs]
    if engine == "local":
        assert max(p.attempts for p in result.pairs) == 2
    assert not _hidden(out)
    assert _files(out) == _files(local_run.out)


@pytest.mark.slow
def test_command_line_runs_the_batch_and_reports(manifest, tmp_path):
    out = tmp_path / "cli"
    small = tmp_path / "one.csv"
    small.write_text(f"target,clip\n{manifest.parent / 'broken.obj'},{manifest.parent / 'takes' / 'smile_take.csv'}\n")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    run = subprocess.run([sys.executable, "-m", "nfs", "batch", str(small), "--out", str(out), "--workers", "1",
                          "--exports", "glb"], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "1 pairs: 0 ok, 1 failed" in run.stdout and "malformed vertex line" in run.stdout
    assert "Traceback" not in run.stderr
    assert "1/1 pairs" in run.stderr
    assert _report(out)[0]["status"] == "failed"
    bad = subprocess.run([sys.executable, "-m", "nfs", "batch", str(small), "--out", str(out), "--engine", "spark"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


def test_manifest_rows_globs_duplicates_and_bad_columns(tmp_path):
    from nfs.batch.manifest import read_manifest
    from nfs.options import RetargetOptions
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        shutil.copy(TARGETS / "face_crop_metres.obj", tmp_path / d / "head.obj")
    (tmp_path / "m.csv").write_text("Target,Clip,GLB-Tolerance-mm\n# a comment line\n"
                                    "a/head.obj,smile,0.05\nb/*.obj,smile,\na/head.obj,blinks,-1\n\n")
    pairs = read_manifest(tmp_path / "m.csv", RetargetOptions(exports=("glb",)))
    assert [(p.row, p.out_rel, bool(p.error)) for p in pairs] == [
        (3, "head/smile", False), (4, "head/smile", True), (5, "", True)]
    assert pairs[0].options == RetargetOptions(exports=("glb",), glb_tolerance_mm=0.05)
    assert "same output folder head/smile/ as row 3" in pairs[1].error
    assert "column glb_tolerance_mm" in pairs[2].error and "0.001 to 10 mm" in pairs[2].error
    assert pairs[0].target_input.sha == pairs[1].target_input.sha      # same content, one preparation
    (tmp_path / "bad.csv").write_text("target,clip,speed\nx.obj,smile,2\n")
    with pytest.raises(ValueError, match="unknown manifest column 'speed'"):
        read_manifest(tmp_path / "bad.csv")
    (tmp_path / "nohead.csv").write_text("mesh,take\nx.obj,smile\n")
    with pytest.raises(ValueError, match="target and clip"):
        read_manifest(tmp_path / "nohead.csv")


def test_pair_folder_is_committed_whole_and_recognised_only_for_its_inputs(tmp_path):
    from nfs.batch.outputs import commit, finished_files, new_partial_dir, remove_partials, write_record
    final = tmp_path / "out" / "head" / "smile"
    partial = new_partial_dir(final)
    (partial / "head_smile.glb").write_bytes(b"glb" * 10)
    assert not final.exists() and finished_files(final, {"a": 1}) is None
    write_record(partial, {"a": 1})
    commit(partial, final)
    assert finished_files(final, {"a": 1}) == ["head_smile.glb"]
    assert finished_files(final, {"a": 2}) is None                   # other inputs: not finished
    (final / "head_smile.glb").write_bytes(b"cut")                   # a file changed size: not finished
    assert finished_files(final, {"a": 1}) is None
    again = new_partial_dir(final)
    (again / "head_smile.glb").write_bytes(b"new")
    write_record(again, {"a": 2})
    commit(again, final)                                             # replaces the old folder
    assert finished_files(final, {"a": 2}) == ["head_smile.glb"] and (final / "head_smile.glb").read_bytes() == b"new"
    left = new_partial_dir(final)                                    # as a killed worker leaves it
    assert remove_partials(tmp_path / "out") == 1 and not left.exists()
    assert sorted(p.name for p in final.parent.iterdir()) == ["smile"]
