"""Per-mesh operators for DiffusionNet: lumped mass, cotangent Laplacian, generalized eigenbasis,
tangent frames and spatial gradients. Cached on disk in a content-addressed .npz (never pickle).

All arrays are numpy; `to_torch` converts an `Operators` for the network.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import robust_laplacian
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from nfs.geometry.normals import vertex_normals

CACHE_VERSION = 3  # 3: one file per mesh for every k


DEFAULT_CACHE_MB = 512.0


def default_cache_dir() -> Path:
    return Path(os.environ.get("NFS_CACHE", Path.home() / ".cache" / "nfs")) / "operators"


def cache_limit_bytes() -> int:
    """The operator cache's size cap: NFS_CACHE_MB megabytes (default 512; 0 keeps nothing)."""
    text = os.environ.get("NFS_CACHE_MB", "")
    try:
        mb = float(text) if text.strip() else DEFAULT_CACHE_MB
    except ValueError:
        raise ValueError(f"NFS_CACHE_MB must be a number of megabytes, got {text!r}") from None
    if not np.isfinite(mb) or mb < 0:
        raise ValueError(f"NFS_CACHE_MB must be a finite number >= 0, got {text!r}")
    return int(mb * 1e6)


def evict_cache(cache_dir: Path, limit_bytes: int, keep: Path | None = None) -> list[Path]:
    """Delete the least recently used operator files (oldest modification time: a cache hit touches its file)
    until the folder holds at most `limit_bytes`; `keep` (the file just written) goes last. Returns the deleted
    paths. Files another process removes meanwhile are skipped."""
    entries = []
    for path in Path(cache_dir).glob("*.npz"):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        entries.append((path == keep, st.st_mtime, path, st.st_size))
    entries.sort(key=lambda e: (e[0], e[1]))
    total = sum(e[3] for e in entries)
    deleted = []
    for _, _, path, size in entries:
        if total <= limit_bytes:
            break
        path.unlink(missing_ok=True)
        total -= size
        deleted.append(path)
    return deleted


@dataclass
class Operators:
    """Operators of one mesh with V vertices and a k-vector spectral basis."""

    mass: np.ndarray     # (V,) lumped vertex areas
    L: sp.csr_matrix     # (V, V) positive semi-definite cotangent Laplacian
    evals: np.ndarray    # (k,) generalized eigenvalues, ascending
    evecs: np.ndarray    # (V, k) mass-orthonormal eigenvectors
    gradX: sp.csr_matrix  # (V, V) gradient along frame axis X
    gradY: sp.csr_matrix  # (V, V) gradient along frame axis Y
    normals: np.ndarray  # (V, 3) unit vertex normals
    frames: np.ndarray   # (V, 3, 3) rows: tangent X, tangent Y, normal

    @property
    def k(self) -> int:
        return self.evals.shape[0]


def tangent_frames(normals: np.ndarray) -> np.ndarray:
    """(V, 3, 3) orthonormal frames [X, Y, N] from unit normals (X from a fixed reference axis)."""
    ref = np.where(np.abs(normals[:, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
    x = ref - (ref * normals).sum(1, keepdims=True) * normals
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(normals, x)
    return np.stack([x, y, normals], axis=1)


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) undirected edges of a triangle mesh, each once."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0)


def gradient_operators(vertices: np.ndarray, faces: np.ndarray, frames: np.ndarray, reg: float = 1e-5):
    """Least-squares spatial gradient in each vertex's tangent plane from its one-ring edges.

    Returns gradX, gradY (V, V) csr: (gradX @ f)[i] is the X-component of grad f at vertex i.
    """
    v = np.asarray(vertices, np.float64)
    n_v = len(v)
    e = unique_edges(faces)
    src = np.concatenate([e[:, 0], e[:, 1]])
    dst = np.concatenate([e[:, 1], e[:, 0]])
    d = v[dst] - v[src]
    cx = (d * frames[src, 0]).sum(1)
    cy = (d * frames[src, 1]).sum(1)
    # normal equations per vertex: A_i = sum_j c c^T (2x2)
    axx = np.bincount(src, cx * cx, n_v)
    axy = np.bincount(src, cx * cy, n_v)
    ayy = np.bincount(src, cy * cy, n_v)
    scale = (axx + ayy) * 0.5
    lam = reg * np.maximum(scale, 1e-20)
    axx, ayy = axx + lam, ayy + lam
    det = axx * ayy - axy * axy
    det = np.where(np.abs(det) > 1e-30, det, 1e-30)
    ixx, ixy, iyy = ayy / det, -axy / det, axx / det
    wx = ixx[src] * cx + ixy[src] * cy
    wy = ixy[src] * cx + iyy[src] * cy
    rows = np.concatenate([src, src])

    def build(w):
        cols = np.concatenate([dst, src])
        vals = np.concatenate([w, -w])
        return sp.csr_matrix((vals, (rows, cols)), shape=(n_v, n_v))

    return build(wx), build(wy)


def laplacian_and_mass(vertices: np.ndarray, faces: np.ndarray, mollify: float = 1e-5):
    """Robust cotangent Laplacian (V, V) csr and lumped mass (V,), via robust_laplacian."""
    L, M = robust_laplacian.mesh_laplacian(np.asarray(vertices, np.float64), np.asarray(faces, np.int64), mollify)
    return sp.csr_matrix(L), np.asarray(M.diagonal(), np.float64)


def eigenbasis(L: sp.spmatrix, mass: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k smallest generalized eigenpairs of L x = lambda M x (shift-invert), retried with more regularisation.
    A few more pairs than k are solved for and the extra dropped: with exactly k, ARPACK now and then misses one
    member of a repeated eigenvalue (symmetric meshes) and returns a larger one instead. The start vector is
    fixed, so the basis is the same on every run."""
    n_v = L.shape[0]
    k = min(k, n_v - 2)
    k_solve = min(k + max(8, k // 16), n_v - 2)
    M = sp.diags(mass)
    v0 = np.random.default_rng(0).standard_normal(n_v)
    eps = 1e-8
    for _ in range(5):
        try:
            Lr = (L + eps * sp.identity(n_v) * mass.mean()).tocsc()
            evals, evecs = sla.eigsh(Lr, k=k_solve, M=M.tocsc(), sigma=-1e-8, which="LM", v0=v0)
            order = np.argsort(evals)[:k]
            return np.clip(evals[order], 0.0, None), evecs[:, order]
        except (RuntimeError, sla.ArpackError):
            eps *= 100
    raise RuntimeError(f"eigensolve failed for a mesh with {n_v} vertices")


def compute_operators(vertices: np.ndarray, faces: np.ndarray, k_eig: int = 128) -> Operators:
    """All operators of a triangle mesh (V, 3) float, (F, 3) int."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if not np.isfinite(v).all():
        raise ValueError("vertices contain NaN or inf")
    L, mass = laplacian_and_mass(v, f)
    if not np.isfinite(L.data).all():
        raise RuntimeError("NaN in the Laplace matrix")
    evals, evecs = eigenbasis(L, mass, k_eig)
    normals = vertex_normals(v, f)
    frames = tangent_frames(normals)
    gx, gy = gradient_operators(v, f, frames)
    return Operators(mass.astype(np.float32), L, evals.astype(np.float32), evecs.astype(np.float32),
                     gx, gy, normals.astype(np.float32), frames.astype(np.float32))


def mesh_hash(vertices: np.ndarray, faces: np.ndarray) -> str:
    """Content key of a mesh's operators (any k: a cached basis serves every k up to its own)."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(vertices, np.float32).tobytes())
    h.update(np.ascontiguousarray(faces, np.int64).tobytes())
    h.update(f"v={CACHE_VERSION}".encode())
    return h.hexdigest()


def truncate_operators(ops: Operators, k_eig: int) -> Operators:
    """The same operators with the first k_eig eigenpairs only."""
    if ops.k <= k_eig:
        return ops
    return replace(ops, evals=ops.evals[:k_eig], evecs=np.ascontiguousarray(ops.evecs[:, :k_eig]))


def _sparse_to_arrays(prefix: str, m: sp.csr_matrix) -> dict:
    m = m.tocsr()
    return {f"{prefix}_data": m.data.astype(np.float32), f"{prefix}_indices": m.indices, f"{prefix}_indptr": m.indptr}


def _arrays_to_sparse(d, prefix: str, n: int) -> sp.csr_matrix:
    return sp.csr_matrix((d[f"{prefix}_data"], d[f"{prefix}_indices"], d[f"{prefix}_indptr"]), shape=(n, n))


def save_operators(path: Path, ops: Operators) -> None:
    n = len(ops.mass)
    arrays = dict(mass=ops.mass, evals=ops.evals, evecs=ops.evecs, normals=ops.normals, frames=ops.frames,
                  n=np.int64(n))
    for name in ("L", "gradX", "gradY"):
        arrays.update(_sparse_to_arrays(name, getattr(ops, name)))
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")  # per process: concurrent writers do not collide
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_operators(path: Path) -> Operators:
    d = np.load(path, allow_pickle=False)
    n = int(d["n"])
    return Operators(d["mass"], _arrays_to_sparse(d, "L", n), d["evals"], d["evecs"],
                     _arrays_to_sparse(d, "gradX", n), _arrays_to_sparse(d, "gradY", n), d["normals"], d["frames"])


def get_operators(vertices: np.ndarray, faces: np.ndarray, k_eig: int = 128, cache_dir: Path | None = None,
                  use_cache: bool = True) -> Operators:
    """Operators of a mesh, read from / written to a content-addressed cache file. One file per mesh serves every
    k: a cached eigenbasis with at least k_eig pairs is cut to k_eig; a smaller one is recomputed and replaced.
    The cache folder is capped at NFS_CACHE_MB (least recently used files go first; about 600 bytes per vertex
    per mesh)."""
    if not use_cache:
        return compute_operators(vertices, faces, k_eig)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / f"{mesh_hash(vertices, faces)}.npz"
    n_max = max(len(vertices) - 2, 1)                 # the most pairs a mesh this small has
    if path.exists():
        try:
            ops = load_operators(path)
            if ops.k >= min(k_eig, n_max):
                os.utime(path)  # recently used
                return truncate_operators(ops, k_eig)
        except FileNotFoundError:  # evicted by another process meanwhile
            pass
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # truncated / corrupt file
            path.unlink(missing_ok=True)
    ops = compute_operators(vertices, faces, k_eig)
    limit = cache_limit_bytes()
    if limit > 0:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_operators(path, ops)
        evict_cache(cache_dir, limit, keep=path)
    return ops


def operator_field_names() -> list[str]:
    return [f.name for f in fields(Operators)]
