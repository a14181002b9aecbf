"""The eval runner: the model and the baselines on a benchmark (`python -m nfs eval` hands it one).

The benchmark is given (`nfs.data.benchmark.Benchmark`: its size, expression frames and targets with their ground
truth), not imported. For every target the model goes through the real pipeline (`prepare_target`, with an
identity alignment for ICT-frame targets or automatic alignment for `auto_align`; `encode_source` on a clip of
ICT weights; `decode`), the baselines transfer the same frames from the ICT generic face, and every method's
displacement is compared with the ground truth in the true ICT frame. `nfs.eval.report` writes the tables.
Targets are `nfs.data.benchmark.EvalTarget`s, frames an `ExpressionSet`, sizes a `BenchmarkSize`.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from nfs.eval import metrics as M
from nfs.eval.baselines import DeformationTransfer, NearestPointTransfer, ict_rig_transfer, ict_source_face
from nfs.eval.report import METHODS, BenchmarkResult, HeatMap
from nfs.pipeline import (N_EXPRESSION, Clip, PreparedTarget, decode_all, encode_expression_frames, encode_source,
                          load_shipped_model, prepare_target)


# ------------------------------------------------------------------------------------------- one target


def expression_weights(model, prepared: PreparedTarget, frames: np.ndarray, chunk_frames: int = 8) -> np.ndarray:
    """The pipeline's expression encoder on deformed copies (t, S, 3) of the prepared skin (pipeline's ICT frame,
    cm), with the neutral's operators as `encode_source` uses them -> (t, 53) weights clipped to [0, 1]."""
    faces = prepared.skin_faces
    if prepared.proxy is not None:          # a dense skin's operators are its proxy's: the frames read there
        pick = prepared.proxy.dense_nearest(prepared.skin_vertices_ict)
        frames, faces = frames[:, pick], prepared.proxy.faces
    chunks = (frames[s:s + chunk_frames] for s in range(0, len(frames), chunk_frames))
    return encode_expression_frames(model, chunks, faces, prepared.ops)[:, :N_EXPRESSION]


@dataclass
class _Context:
    """What every method's metrics share on one target."""

    target: Any               # the EvalTarget
    expressions: Any          # the ExpressionSet
    v0: np.ndarray            # (V, 3) ICT-frame neutral
    gt: np.ndarray            # (T, V, 3) ground-truth displacement
    gt_pos: np.ndarray
    gt_normals: np.ndarray    # (T, V, 3) the ground truth's vertex normals
    eyelid: np.ndarray
    lip: np.ndarray
    eyeballs: list            # index arrays of non-skin components (the two eyeballs)
    skin_faces: np.ndarray    # (F, 3) triangles of the skin (with any added bag or cap)
    truth_cos: np.ndarray     # (T, F) the truth's triangle normals against the rest's (`M.truth_facing_cos`)
    mouth_centre: np.ndarray | None   # (3,) the inner lips' landmark centre at rest (None without them)
    still_mm: float           # the mean error of not moving at all (`M.still_error_mm`)


def _context(target, expr) -> _Context:
    v0 = target.ict_vertices()
    gt = target.gt_displacement(expr.weights)
    gt_pos = v0[None] + gt
    eyeballs = []
    other = np.nonzero(~target.skin_mask if target.eyeball_mask is None else target.eyeball_mask)[0]
    if len(other):
        eyeballs = [other[v0[other, 0] > 0], other[v0[other, 0] <= 0]]
    skin_faces = target.faces[target.skin_mask[target.faces].all(1)]
    lips = target.landmarks[60:68]
    mouth = v0[lips[lips >= 0]].mean(0) if (lips >= 0).any() else None
    return _Context(target, expr, v0, gt, gt_pos, M.vertex_normals(gt_pos, target.faces),
                    M.landmark_pairs(target.landmarks, M.EYELID_PAIRS), M.landmark_pairs(target.landmarks, M.LIP_PAIRS),
                    eyeballs, skin_faces, M.truth_facing_cos(v0, gt_pos, skin_faces), mouth,
                    M.still_error_mm(gt, target.face_mask))


def method_metrics(pred: np.ndarray, ctx: _Context) -> dict:
    """Metrics of one method's (T, V, 3) ICT-frame displacement on a target."""
    t = ctx.target
    pos = ctx.v0[None] + pred
    row = M.position_stats(M.vertex_errors_mm(pred, ctx.gt, t.face_mask))
    row["inner_mse_mm2"] = M.mean_squared_error_mm2(pred, ctx.gt, t.inner_mask)
    row["gain"] = M.amplitude_gain(pred, ctx.gt, t.face_mask)
    row["normal_deg"] = M.normal_angle_deg(pos, ctx.gt_pos, t.faces, t.face_mask, ctx.gt_normals)
    row["eyelid_mm"] = M.gap_error_mm(pos, ctx.gt_pos, ctx.eyelid)
    row["lip_mm"] = M.gap_error_mm(pos, ctx.gt_pos, ctx.lip)
    e = ctx.expressions
    if e.probe_jaw >= 0:
        row["lip_ratio_jaw"] = M.gap_ratio(pos[e.probe_jaw], ctx.gt_pos[e.probe_jaw], ctx.lip)
        row["lid_gap_blink_mm"] = M.gap_error_mm(pos[[e.probe_blink]], ctx.gt_pos[[e.probe_blink]], ctx.eyelid)
        if ctx.mouth_centre is not None:
            row["sawtooth_jaw"], row["sawtooth_jaw_pct"] = M.sawtooth_edges(
                ctx.v0, pos[e.probe_jaw], ctx.gt_pos[e.probe_jaw], ctx.skin_faces, ctx.mouth_centre)
    row["still_mm"] = ctx.still_mm
    row["max_mm"] = float(M.vertex_errors_mm(pred, ctx.gt, t.face_mask).max()) if t.face_mask.any() else np.nan
    pred_cos = M.facing_cos(ctx.v0, pos, ctx.skin_faces)
    row["flips"] = M.turned_over(pred_cos, ctx.truth_cos)
    row["flips_strict"] = M.turned_over(pred_cos, ctx.truth_cos, truth_facing=0.0)
    row["jitter_mm"] = M.jitter_mm(pred, ctx.expressions.segments, t.face_mask)
    row["gt_jitter_mm"] = M.jitter_mm(ctx.gt, ctx.expressions.segments, t.face_mask)
    if ctx.eyeballs:
        row["eyeball_mm"] = float(M.vertex_errors_mm(pred, ctx.gt, ~t.skin_mask).mean())
        row["eyeball_rigid_mm"] = float(np.mean([M.rigid_residual_mm(ctx.v0[e], pos[:, e]) for e in ctx.eyeballs]))
    return row


def evaluate_target(target, expr, model, size, heat: bool = False) -> tuple[list[dict], HeatMap | None, str]:
    """Rows (one per method) of metrics on one target (an EvalTarget, driven by the ExpressionSet `expr`; `size`
    the BenchmarkSize), optionally its per-vertex error maps, and the type the pipeline decoded it in ("float32",
    or "bfloat16" where this machine computes in it)."""
    ctx = _context(target, expr)
    weights = expr.weights
    n_frames = len(weights)
    base = {"target": target.name, "category": target.category, "seed": target.seed, "vertices": target.n_vertices}
    preds, rows = {}, []

    # the model, through the pipeline
    codes = encode_source(Clip("benchmark", 30.0, codes=weights), model).codes
    t0 = time.perf_counter()
    prepared = prepare_target((target.vertices, target.faces), model, use_cache=False, name=target.name,
                              alignment=target.pipeline_alignment())
    prepare_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    user = decode_all(prepared, codes).astype(np.float64) - target.vertices[None]
    decode_s = time.perf_counter() - t0
    preds["model"] = target.to_ict.apply_vectors(user)
    row = {**base, "method": "model", **method_metrics(preds["model"], ctx), "prepare_s": prepare_s,
           "frames_per_s": n_frames / decode_s}
    est = prepared.alignment
    row["align_mm"] = float(np.linalg.norm(est.apply(target.vertices[target.face_mask])
                                           - ctx.v0[target.face_mask], axis=1).mean() * M.CM_TO_MM)
    skin = prepared.clean.skin_original_index
    row["region_pct"] = M.label_agreement(prepared.region_labels, target.labels[skin])
    pick = np.unique(np.linspace(0, n_frames - 1, size.cycle_frames).round().astype(int))
    if len(pick):
        skin0 = prepared.skin_vertices_ict[None]
        pred_frames = skin0 + est.apply_vectors(user[pick][:, skin])
        gt_frames = skin0 + est.apply_vectors(target.to_ict.inverse_vectors(ctx.gt[pick][:, skin]))
        row["cycle_abs"] = M.code_error(expression_weights(model, prepared, pred_frames), weights[pick])
        row["cycle_gt_abs"] = M.code_error(expression_weights(model, prepared, gt_frames), weights[pick])
    rows.append(row)
    if model.cfg.template_prior:    # the same pipeline with the decoder's correction switched off
        t0 = time.perf_counter()
        prior_user = decode_all(prepared.without_correction(), codes).astype(np.float64) - target.vertices[None]
        preds["template_prior"] = target.to_ict.apply_vectors(prior_user)
        rows.append({**base, "method": "template_prior", **method_metrics(preds["template_prior"], ctx),
                     "prepare_s": prepare_s, "frames_per_s": n_frames / (time.perf_counter() - t0)})

    # baselines from the ICT generic face, on the target as the pipeline aligned it
    sv, sf, deltas = ict_source_face(target.source_with_eyes)
    source_disp = np.einsum("tk,kvc->tvc", weights, deltas)
    aligned = est.apply(target.vertices)

    def back(d):  # pipeline's ICT frame -> user frame -> true ICT frame
        return target.to_ict.apply_vectors(est.inverse_vectors(d))

    t0 = time.perf_counter()
    npt = NearestPointTransfer.build(sv, sf, aligned)
    build_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    preds["nearest_point"] = back(npt.transfer(source_disp))
    run_np = time.perf_counter() - t0
    t0 = time.perf_counter()
    dt = DeformationTransfer.build(sv, sf, aligned, target.faces, npt)
    build_dt = time.perf_counter() - t0 + build_np
    t0 = time.perf_counter()
    preds["deformation_transfer"] = back(dt.transfer(source_disp))
    run_dt = time.perf_counter() - t0 + run_np
    for m, b, r in (("nearest_point", build_np, run_np), ("deformation_transfer", build_dt, run_dt)):
        rows.append({**base, "method": m, **method_metrics(preds[m], ctx), "prepare_s": b,
                     "frames_per_s": n_frames / max(r, 1e-9)})
    if target.ict_index is not None:     # the source's deltas by index (the target's ICT vertices are the source's)
        preds["ict_rig"] = ict_rig_transfer(weights, deltas, target.ict_index)
        rows.append({**base, "method": "ict_rig", **method_metrics(preds["ict_rig"], ctx)})

    heat_map = None
    if heat:
        errs = {m: np.linalg.norm(p - ctx.gt, axis=-1).mean(0) * M.CM_TO_MM for m, p in preds.items()}
        heat_map = HeatMap(target.name, target.category, ctx.v0, target.faces, errs)
    return rows, heat_map, str(prepared.decoder.dtype).removeprefix("torch.")


# ------------------------------------------------------------------------------------------- the benchmark


def run_benchmark(model, benchmark, log=print, workers: int = 1, model_dir: str | None = None) -> BenchmarkResult:
    """Evaluate every target of a benchmark (`nfs.data.benchmark.Benchmark`: size, expression frames, targets);
    `log` gets one line per target. With workers > 1 the targets are shared among that many processes, each
    loading the model from `model_dir` (None: the shipped one) and building its targets from `benchmark`, with the
    machine's cores split between them; the rows come back in target order either way."""
    with tempfile.TemporaryDirectory(prefix="nfs_eval_ops_") as cache:
        with _environment(NFS_CACHE=cache):      # a fresh operator cache: prepare times include the eigenbasis
            return _run_benchmark(model, benchmark, log, workers, model_dir)


def _run_benchmark(model, benchmark, log, workers: int, model_dir: str | None) -> BenchmarkResult:
    t_start, cpu_start = time.perf_counter(), _cpu_seconds()
    size, expr = benchmark.size, benchmark.expressions()
    specs = benchmark.specs()
    result = BenchmarkResult(size, expr)
    first_of_category = [k == 0 or specs[k - 1][0] != c for k, (c, _) in enumerate(specs)]
    if workers > 1 and len(specs) > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        # the BLAS / OpenMP thread counts of the workers (numpy / scipy read them when a process starts)
        with _environment(**{k: str(threads) for k in THREAD_VARIABLES}):
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_start, initargs=(model_dir, benchmark, threads))
            pool.submit(int).result()           # the workers start now, under the limits
        outcomes = (f.result() for f in [pool.submit(_worker_evaluate, c, i, h)
                                         for (c, i), h in zip(specs, first_of_category)])
    else:
        pool = None
        outcomes = (_timed_evaluation(benchmark.target(c, i), expr, model, size, h)
                    for (c, i), h in zip(specs, first_of_category))
    try:
        for k, (target_name, n_vertices, rows, heat, dtype, seconds) in enumerate(outcomes):
            result.compute_dtype = dtype
            result.rows += rows
            if heat is not None:
                result.heat.append(heat)
            by = {r["method"]: r for r in rows}
            log(f"[{k + 1}/{len(specs)}] {target_name:<22} V={n_vertices:6d}  mean mm: "
                + "  ".join(f"{m} {by[m]['mean_mm']:.3f}" for m in METHODS if m in by)
                + f"  | prepare {by['model']['prepare_s']:.1f} s, decode {by['model']['frames_per_s']:.1f} fr/s,"
                f" {seconds:.1f} s")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    result.wall_s = time.perf_counter() - t_start
    result.cpu_s = _cpu_seconds() - cpu_start        # after the pool's shutdown: its workers are reaped
    return result


def _cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its child processes that have ended (the workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed_evaluation(target, expr, model, size, heat: bool):
    t0 = time.perf_counter()
    rows, heat_map, dtype = evaluate_target(target, expr, model, size, heat=heat)
    return target.name, target.n_vertices, rows, heat_map, dtype, time.perf_counter() - t0


_WORKER: dict = {}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _environment(**values: str):
    """Environment variables set to `values` inside the block (for this process and those it starts), restored
    (or removed) after it."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _worker_start(model_dir: str | None, benchmark, threads: int) -> None:
    """A benchmark worker process: its share of the cores, the model and the expression frames, loaded once."""
    import torch

    torch.set_num_threads(threads)
    model, _ = load_shipped_model(model_dir)
    model.eval()
    _WORKER.update(model=model, benchmark=benchmark, expr=benchmark.expressions())


def _worker_evaluate(category: str, index: int, heat: bool):
    w = _WORKER
    return _timed_evaluation(w["benchmark"].target(category, index), w["expr"], w["model"], w["benchmark"].size,
                             heat)

