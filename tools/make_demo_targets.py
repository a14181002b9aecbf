"""Write the demo target meshes bundled with the app to assets/targets/ (small OBJ files).

Deterministic: fixed seeds, no inputs. Run ``python tools/make_demo_targets.py`` from the repo root.

* ``ict_remeshed.obj``  an ICT identity (seed 11, sigma 1) on its whole skin, quadric-decimated to about 4k
  vertices, so its topology differs from the template's.
* ``face_crop_metres.obj``  another identity's face region only (no scalp, no neck), in metres, turned so it
  looks along +X with +Z up and moved off the origin: the automatic alignment has work to do.
* ``stylized_head.obj``  a head from exaggerated identity modes (|c| = 3 on the first modes, a few with
  flipped signs), decimated to about 5k vertices.
* ``ict_head_with_teeth.obj``  an ICT identity (seed 5, sigma 0.8) with the model's own mouth bag, gums and
  tongue, 32 teeth and two eyeballs as separate components, each decimated (about 10k vertices in all): the
  head for checking that teeth and tongue follow the jaw. It needs the full ICT-FaceKit model (the shipped
  third_party copy holds only the skin and eyeballs): pass its packed npz with ``--full-ict PATH`` (default
  ../shared/data/ict-facekit/ict_facekit.npz); without it this head is skipped.
"""
from __future__ import annotations


import numpy as np


from nfs import REPO_ROOT
from nfs.geometry.remesh import decimate
from nfs.geometry.triangulate import fan_triangulate
from nfs.ict import N_IDENTITY, load_ict
from nfs.io import save_obj

TARGETS_DIR = REPO_ROOT / "assets" / "targets"


def rotation(axis: str, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def remeshed_identity(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = ict.sample_identities(1, seed=11)[0]
    v, f = ict.skin_mesh(coeffs, region="skin")
    return decimate(v, f, 4000)


def face_crop_in_metres(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = ict.sample_identities(1, seed=23)[0]
    v, f = ict.skin_mesh(coeffs, region="face")
    v, f = decimate(v, f, 3500)
    # ICT looks along +Z with +Y up; this mesh looks along +X with +Z up (a Z-up DCC convention), in metres,
    # placed away from the origin
    turn = rotation("z", 90.0) @ rotation("x", 90.0)
    return (v / 100.0) @ turn.T + np.array([0.4, -0.25, 1.1]), f


def stylized_head(ict) -> tuple[np.ndarray, np.ndarray]:
    coeffs = np.zeros(N_IDENTITY, np.float32)
    signs = np.array([1, -1, 1, 1, -1, 1, -1, 1], np.float32)
    coeffs[: len(signs)] = 3.0 * signs
    v, f = ict.skin_mesh(coeffs, region="skin")
    return decimate(v, f, 5000)


# the full ICT model's parts (vertex ranges, from the ICT-FaceKit documentation) -> vertices after decimation
FULL_ICT_PARTS = {
    "skin": ((0, 11248), 5000),
    "mouth socket": ((11248, 13294), 900),
    "gums and tongue": ((14062, 17039), 1300),
    "teeth": ((17039, 21451), 2300),
    "eyeballs": ((21451, 24591), 1200),
}
FULL_ICT_DEFAULT = REPO_ROOT.parent / "shared" / "data" / "ict-facekit" / "ict_facekit.npz"


def head_with_teeth(full_ict_npz: Path) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(full_ict_npz, allow_pickle=False)
    coeffs = np.random.default_rng(5).standard_normal(N_IDENTITY).astype(np.float32) * 0.8
    v = d["neutral"] + np.tensordot(coeffs, d["identity_deltas"], axes=(0, 0))
    faces, _ = fan_triangulate(d["face_vertex_counts"], d["face_vertex_indices"])
    out_v, out_f = [], []
    for (lo, hi), count in FULL_ICT_PARTS.values():
        part = faces[((faces >= lo) & (faces < hi)).all(1)] - lo
        pv, pf = decimate(v[lo:hi], part, count)
        out_f.append(pf + sum(len(x) for x in out_v))
        out_v.append(pv)
    return np.concatenate(out_v), np.concatenate(out_f)


DEMOS = {
    "ict_remeshed": remeshed_identity,
    "face_crop_metres": face_crop_in_metres,
    "stylized_head": stylized_head,
}


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full-ict", type=Path, default=FULL_ICT_DEFAULT, help="packed full ICT-FaceKit npz")
    p.add_argument("--only", nargs="*", default=None, help="write only these demo names")
    args = p.parse_args(argv)
    TARGETS_DIR.mkdir(parents=True, exist_ok=True)
    ict = load_ict()
    makers = dict(DEMOS)
    if args.full_ict.exists():
        makers["ict_head_with_teeth"] = lambda _: head_with_teeth(args.full_ict)
    else:
        print(f"{args.full_ict} not found: ict_head_with_teeth skipped")
    for name, make in makers.items():
        if args.only and name not in args.only:
            continue
        v, f = make(ict)
        path = TARGETS_DIR / f"{name}.obj"
        save_obj(path, np.round(v, 4 if name == "ict_head_with_teeth" else 6), f)
        print(f"{path.relative_to(REPO_ROOT)}: {len(v)} vertices, {len(f)} triangles, "
              f"{path.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
