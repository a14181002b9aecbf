"""A whole animation as a few morph targets and per-frame weights, within a stated error bound.

`MorphBasisBuilder` takes the frames of an animation as they are decoded (chunks of (t, V, 3)), in one pass, and
keeps every frame: each frame is stored as weights on a growing orthonormal basis of displacement shapes. A block
of frames is projected on the basis found so far; where any vertex of any frame in the block is further than the
tolerance from its projection, the block's residual gets its leading singular vectors added to the basis until
every frame of the block is within the tolerance. A frame's weights are fixed once it is stored (its weights on
vectors added later stay zero), so the error measured when it was stored is exactly its error in the result: the
maximum over frames and vertices is known without a second pass and without keeping the frames.

`MorphSequence` is the result: ``frame(t) = neutral + weights[t] @ targets`` with each target scaled so that its
weights lie in [-1, 1] (what DCC tools and viewers expect of morph weights).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# frames are gathered into blocks this long before they are fitted: long enough for the block's singular vectors
# to be good directions for the take, short enough to keep the block in memory at 100k vertices
BLOCK_FRAMES = 64
BLOCK_VALUES = 1 << 26      # a block holds at most this many floats (256 MB): fewer frames on a dense mesh
# new basis vectors are added until the block is within this fraction of the tolerance: a little headroom makes
# the directions found now serve later blocks too, so fewer are added overall
FIT_FRACTION = 0.75


@dataclass
class MorphSequence:
    """T frames of a V-vertex mesh as ``neutral + weights @ targets``.

    neutral (V, 3); targets (K, V, 3) displacement shapes; weights (T, K) in [-1, 1]; `max_error` the largest
    distance between a stored frame and its reconstruction (mesh units), `tolerance` the bound it was built to.
    Indexing (``seq[t]``, ``seq[a:b]``, ``np.asarray(seq)``) reconstructs frames, so it stands in for a (T, V, 3)
    array of positions."""

    neutral: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    max_error: float
    tolerance: float
    frame_errors: np.ndarray = field(repr=False, default=None)  # (T,) each frame's largest vertex error

    @property
    def n_frames(self) -> int:
        return len(self.weights)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(frames, vertices, 3), as the dense array of frames would be."""
        return (self.n_frames,) + self.neutral.shape

    @property
    def n_targets(self) -> int:
        """Morph targets of the basis (baked rig shapes first, then the residual's components)."""
        return len(self.targets)

    def __len__(self) -> int:
        return self.n_frames

    def __getitem__(self, index):
        w = self.weights[index]
        flat = self.targets.reshape(len(self.targets), self.neutral.size)   # also with no targets at all
        if np.ndim(w) == 1:
            return self.neutral + (w @ flat).reshape(self.neutral.shape)
        return self.neutral[None] + (w @ flat).reshape((len(w),) + self.neutral.shape)

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def chunks(self, size: int = BLOCK_FRAMES):
        """Reconstructed frames in chunks of (t, V, 3)."""
        for s in range(0, self.n_frames, size):
            yield self[s:s + size]


def _thin_svd(a: np.ndarray, rel: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SVD of a short wide matrix a (t, D), t << D, through its (t, t) Gram matrix (LAPACK's SVD of a 64 x 15k
    matrix is a hundred times slower). Singular values below `rel` times the largest are dropped. Returns u (t, r),
    s (r,) descending, vt (r, D)."""
    evals, evecs = np.linalg.eigh(a @ a.T)
    order = np.argsort(evals)[::-1]
    s = np.sqrt(np.clip(evals[order], 0.0, None))
    keep = s > rel * s[0] if len(s) and s[0] > 0 else np.zeros(len(s), bool)
    u, s = evecs[:, order][:, keep], s[keep]
    return u, s, (u.T @ a) / s[:, None]


class MorphBasisBuilder:
    """Streams frames (t, V, 3) in (`add`), returns a `MorphSequence` (`finish`) with every frame within
    `tolerance` (mesh units) of the frame given. Memory: the basis (K, V, 3) and one block of frames."""

    def __init__(self, neutral: np.ndarray, tolerance: float, block_frames: int | None = None):
        neutral = np.asarray(neutral, np.float32)
        if block_frames is None:        # BLOCK_FRAMES, fewer where a block would pass BLOCK_VALUES
            block_frames = max(8, min(BLOCK_FRAMES, BLOCK_VALUES // max(neutral.size, 1)))
        if neutral.ndim != 2 or neutral.shape[1] != 3 or not np.isfinite(neutral).all():
            raise ValueError(f"neutral must be a finite (V, 3) array, got {neutral.shape}")
        if not (np.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        self.neutral, self.tolerance, self.block_frames = neutral, float(tolerance), int(block_frames)
        self.dim = neutral.size
        self._basis = np.zeros((0, self.dim), np.float32)        # (K, D) orthonormal rows
        self._weights: list[np.ndarray] = []                     # per block (t, K_at_that_time)
        self._errors: list[np.ndarray] = []                      # per block (t,)
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    @property
    def n_targets(self) -> int:
        return len(self._basis)

    def add(self, frames: np.ndarray) -> None:
        """Frames (t, V, 3) or one frame (V, 3), positions in the units of `neutral`."""
        frames = np.asarray(frames, np.float32)
        frames = frames[None] if frames.ndim == 2 else frames
        if frames.shape[1:] != self.neutral.shape:
            raise ValueError(f"frames have shape {frames.shape}, expected (t, {len(self.neutral)}, 3)")
        if not np.isfinite(frames).all():
            raise ValueError("frames have non-finite coordinates")
        self._pending.append((frames - self.neutral).reshape(len(frames), -1))
        self._n_pending += len(frames)
        while self._n_pending >= self.block_frames:
            block = np.concatenate(self._pending)
            self._fit(block[:self.block_frames])
            rest = block[self.block_frames:]
            self._pending, self._n_pending = ([rest] if len(rest) else []), len(rest)

    def _vertex_error(self, residual: np.ndarray) -> np.ndarray:
        """(t,) largest per-vertex distance of residual rows (t, D)."""
        r = residual.reshape(len(residual), -1, 3)
        return np.sqrt(np.einsum("tvc,tvc->tv", r, r).max(1))

    def _fit(self, block: np.ndarray) -> None:
        """Store a block (t, D) of displacements: weights on the basis, extended where it falls short."""
        coeffs = block @ self._basis.T                                               # (t, K)
        residual = block - coeffs @ self._basis
        err = self._vertex_error(residual)
        if err.max() > self.tolerance:
            goal = FIT_FRACTION * self.tolerance
            # the block's residual is (numerically) outside the basis; re-project once against round-off
            residual -= (residual @ self._basis.T) @ self._basis
            r = residual.astype(np.float64)
            u, s, vt = _thin_svd(r)
            n_new = 0
            for j in range(len(s)):
                r -= np.outer(u[:, j] * s[j], vt[j])
                n_new = j + 1
                if self._vertex_error(r).max() <= goal:
                    break
            new = vt[:n_new]
            # orthogonalise against the basis in float64 once more, then normalise (keeps the rows orthonormal)
            new -= (new @ self._basis.T.astype(np.float64)) @ self._basis.astype(np.float64)
            q, _ = np.linalg.qr(new.T)
            new = q.T.astype(np.float32)
            self._basis = np.concatenate([self._basis, new])
            coeffs = block @ self._basis.T
            residual = block - coeffs @ self._basis
            err = self._vertex_error(residual)
        self._weights.append(coeffs)
        self._errors.append(err)

    def finish(self) -> MorphSequence:
        """All frames as a `MorphSequence` (targets scaled so every weight is in [-1, 1])."""
        if self._n_pending:
            self._fit(np.concatenate(self._pending))
            self._pending, self._n_pending = [], 0
        if not self._weights:
            raise ValueError("no frames to export")
        k = len(self._basis)
        weights = np.zeros((sum(len(w) for w in self._weights), k), np.float32)
        row = 0
        for w in self._weights:
            weights[row:row + len(w), :w.shape[1]] = w
            row += len(w)
        scale = np.abs(weights).max(0) if len(weights) else np.zeros(k, np.float32)
        used = scale > 0
        scale, basis, weights = scale[used], self._basis[used], weights[:, used]
        targets = (basis * scale[:, None]).reshape((-1,) + self.neutral.shape)
        errors = np.concatenate(self._errors)
        return MorphSequence(neutral=self.neutral.copy(), targets=targets.astype(np.float32),
                             weights=(weights / scale).astype(np.float32), max_error=float(errors.max()),
                             tolerance=self.tolerance, frame_errors=errors)


def fit_morph_sequence(frames, neutral: np.ndarray, tolerance: float,
                       block_frames: int = BLOCK_FRAMES) -> MorphSequence:
    """Frames (T, V, 3), or an iterable of chunks (t, V, 3), as a `MorphSequence` within `tolerance`."""
    builder = MorphBasisBuilder(neutral, tolerance, block_frames)
    if isinstance(frames, np.ndarray):
        frames = [frames[s:s + block_frames] for s in range(0, len(frames), block_frames)]
    for chunk in frames:
        builder.add(chunk)
    return builder.finish()
