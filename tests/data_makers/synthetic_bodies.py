"""Heads on bodies, for the alignment tests and the hostile-input corpus.

Each builder takes a head skin (V, 3), (F, 3) in ICT centimetres (+Y up, facing +Z) whose lowest
boundary loop is the neck, and returns the head with a body in the same frame:

- `head_on_shoulders`: a torso lofted from the neck loop (one connected surface), about ten times the
  face's area;
- `full_body`: the same torso down to the hips, with arms (T-pose) and legs as separate closed tubes;
- `head_with_separate_torso`: the head and a closed box below it, larger than the head.
"""
from __future__ import annotations

import numpy as np

# (drop below the neck's lowest point in cm, x scale, z scale) of each ring of the lofted torso
SHOULDER_RINGS = ((2, 1.1, 1.05), (6, 1.5, 1.2), (12, 1.7, 1.3), (25, 1.7, 1.3), (40, 1.6, 1.25), (55, 1.5, 1.2))
HIP_RINGS = SHOULDER_RINGS + ((70, 1.45, 1.2), (85, 1.45, 1.2))


def neck_loop(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Vertex indices of the lowest boundary loop, in order around it."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    uniq, count = np.unique(edges, axis=0, return_counts=True)
    boundary = uniq[count == 1]
    nbrs: dict[int, list[int]] = {}
    for a, b in boundary:
        nbrs.setdefault(int(a), []).append(int(b))
        nbrs.setdefault(int(b), []).append(int(a))
    loops, seen = [], set()
    for start in nbrs:
        if start in seen:
            continue
        loop, prev, cur = [start], None, start
        seen.add(start)
        while True:
            nxt = [n for n in nbrs[cur] if n != prev and n not in seen]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
            loop.append(cur)
            seen.add(cur)
        loops.append(np.array(loop))
    return min(loops, key=lambda lp: vertices[lp, 1].mean())


def _loft(vertices: np.ndarray, loop: np.ndarray, rings) -> tuple[np.ndarray, np.ndarray]:
    """New vertices and faces of a tube lofted down from the loop, closed at the bottom (indices continue
    after `vertices`)."""
    p = vertices[loop]
    centre = p.mean(0)
    bottom = p[:, 1].min()
    n, base = len(loop), len(vertices)
    new, faces, prev = [], [], loop
    for k, (drop, sx, sz) in enumerate(rings):
        flat = min(1.0, (k + 1) / 2)
        ring = np.stack([centre[0] + (p[:, 0] - centre[0]) * sx,
                         (1 - flat) * (p[:, 1] - drop) + flat * (bottom - drop),
                         centre[2] + (p[:, 2] - centre[2]) * sz], axis=1)
        idx = base + k * n + np.arange(n)
        new.append(ring)
        for i in range(n):
            j = (i + 1) % n
            faces += [[prev[i], idx[i], prev[j]], [prev[j], idx[i], idx[j]]]
        prev = idx
    tip = base + n * len(rings)
    new.append(np.array([[centre[0], bottom - rings[-1][0], centre[2]]]))
    faces += [[prev[i], tip, prev[(i + 1) % n]] for i in range(n)]
    return np.concatenate(new), np.array(faces, np.int64)


def _orient_like(head_faces: np.ndarray, new_faces: np.ndarray, loop: np.ndarray) -> np.ndarray:
    """Flip the new faces if the first one runs along a loop edge in the same direction as the head's face."""
    a, b = int(new_faces[0, 0]), int(new_faces[0, 2])  # the new face uses the loop edge a -> b
    for f in head_faces:
        for k in range(3):
            if f[k] == a and f[(k + 1) % 3] == b:
                return new_faces[:, ::-1].copy()
    return new_faces


def tube(start: np.ndarray, end: np.ndarray, radius: float, n: int = 16, rings: int = 6):
    """A closed cylinder between two points: vertices (M, 3), faces (G, 3)."""
    axis = end - start
    length = np.linalg.norm(axis)
    axis = axis / length
    u = np.cross(axis, [1.0, 0, 0] if abs(axis[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    w = np.cross(axis, u)
    ang = 2 * np.pi * np.arange(n) / n
    circle = radius * (np.cos(ang)[:, None] * u + np.sin(ang)[:, None] * w)
    verts = [start + t * length * axis + circle for t in np.linspace(0, 1, rings)]
    v = np.concatenate(verts + [start[None], end[None]])
    faces = []
    for r in range(rings - 1):
        for i in range(n):
            j = (i + 1) % n
            a, b, c, d = r * n + i, r * n + j, (r + 1) * n + i, (r + 1) * n + j
            faces += [[a, b, c], [b, d, c]]
    s, e = rings * n, rings * n + 1
    faces += [[s, (i + 1) % n, i] for i in range(n)]
    faces += [[e, (rings - 1) * n + i, (rings - 1) * n + (i + 1) % n] for i in range(n)]
    return v, np.array(faces, np.int64)


def _join(*meshes):
    vs, fs, n = [], [], 0
    for v, f in meshes:
        vs.append(v)
        fs.append(f + n)
        n += len(v)
    return np.concatenate(vs), np.concatenate(fs)


def head_on_shoulders(vertices: np.ndarray, faces: np.ndarray, rings=SHOULDER_RINGS):
    """The head with a torso lofted from its neck: one connected surface."""
    loop = neck_loop(vertices, faces)
    new_v, new_f = _loft(vertices, loop, rings)
    new_f = _orient_like(faces, new_f, loop)
    return np.concatenate([vertices, new_v]), np.concatenate([faces, new_f])


def full_body(vertices: np.ndarray, faces: np.ndarray):
    """Head and torso to the hips (connected), arms out in a T-pose and legs as separate tubes."""
    v, f = head_on_shoulders(vertices, faces, HIP_RINGS)
    bottom = vertices[neck_loop(vertices, faces), 1].min()
    shoulder_y, hip_y = bottom - 12, bottom - 80
    parts = [(v, f)]
    for side in (-1, 1):
        parts.append(tube(np.array([side * 14.0, shoulder_y, 0]), np.array([side * 80.0, shoulder_y, 0]), 5.0))
        parts.append(tube(np.array([side * 10.0, hip_y, 0]), np.array([side * 12.0, hip_y - 90, 0]), 7.0))
    return _join(*parts)


def head_with_separate_torso(vertices: np.ndarray, faces: np.ndarray):
    """The head and a separate closed box under it, larger in area than the head."""
    bottom = vertices[:, 1].min()
    lo, hi = np.array([-22.0, bottom - 62, -12]), np.array([22.0, bottom - 2, 12])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    box_faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int64)
    box_v, box_f = _subdivided_box(corners, box_faces)
    return _join((vertices, faces), (box_v, box_f))


def _subdivided_box(v: np.ndarray, f: np.ndarray, times: int = 3):
    """Midpoint-subdivide a few times so the box is not 12 huge triangles."""
    for _ in range(times):
        edges = np.sort(f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        uniq, inverse = np.unique(edges, axis=0, return_inverse=True)
        mid = len(v) + inverse.reshape(-1, 3)
        v = np.concatenate([v, v[uniq].mean(1)])
        a, b, c = f.T
        ab, bc, ca = mid.T
        f = np.concatenate([np.stack(x, 1) for x in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    return v, f
