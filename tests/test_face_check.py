"""The face check (MediaPipe's detector and landmarks on our render of the aligned candidate) on a corpus of heads
as avatars carry them and of non-faces, and the intake of a multi-part avatar: its head found by its separate
eyeballs, aligned like the head alone, its parts bound (teeth with jaw and skull, eyes with the skull, hair,
glasses, body and outfit still)."""
from __future__ import annotations

import collections

import numpy as np
import pytest
from scipy.spatial.transform import Rotation


import avatar_factory
from nfs import REPO_ROOT
from nfs.io import load_mesh
from nfs.mesh.binding import SecondaryBinding
from nfs.mesh.clean import clean_mesh
from nfs.mesh.faceness import check_face_render
from nfs.mesh.head import find_head
from nfs.mesh.parts import part_hints
from nfs.pipeline import MIN_FACE_CONFIDENCE
from nfs.render import VIEW_CENTER

from data_makers import face_corpus as corpus  # noqa: E402

HEADS = corpus.faces_corpus()
NON_FACES = corpus.non_faces_corpus()


def _turned(v: np.ndarray, degrees: float, axis: str = "z") -> np.ndarray:
    rot = Rotation.from_euler(axis, degrees, degrees=True).as_matrix()
    return (np.asarray(v, np.float64) - VIEW_CENTER) @ rot.T + VIEW_CENTER


def _user_frame(v: np.ndarray, seed: int, units: float = 0.01) -> np.ndarray:
    """ICT centimetres -> a random user frame in metres (or other units), moved away from the origin."""
    rot = Rotation.random(random_state=seed).as_matrix()
    return units * np.asarray(v, np.float64) @ rot.T + np.array([0.3, 1.2, -0.4])


@pytest.mark.parametrize("name", list(HEADS))
def test_heads_as_avatars_carry_them_are_seen_as_faces(name):
    """Placed where an alignment puts a head (the ICT frame), every head of the corpus (hair cards, a hat,
    glasses, a closed mouth bag with sockets, a body) is seen as a face, upright and where ICT's face is."""
    v, f = HEADS[name]()
    check = check_face_render(v, f)
    print(f"\n{name}: {check}")
    assert check.score >= 0.6, check
    assert abs(check.turn_deg) < 10 and 0.8 < check.scale < 1.25 and check.shift < 0.3, check


@pytest.mark.parametrize("name", list(NON_FACES))
def test_non_faces_show_no_face_in_any_turn(name):
    v, f = NON_FACES[name]()
    v = np.asarray(v, np.float64) - np.asarray(v).mean(0) + VIEW_CENTER + np.array([0.0, 0.0, 3.0])
    for axis, degrees in (("x", 0), ("x", 90), ("y", 90), ("x", -90), ("y", 180), ("z", 45)):
        check = check_face_render(_turned(v, degrees, axis), f)
        assert check.score < 0.05, (name, axis, degrees, check)


@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_a_turned_face_is_seen_turned(degrees):
    """A face the alignment left upside down or on its side is found, with the turn that puts it upright, and is
    not confident where it stands."""
    v, f = corpus.plain_head(3)
    check = check_face_render(_turned(v, degrees), f)
    assert check.detector > 0.5, check
    turn = ((check.turn_deg + degrees + 180) % 360) - 180
    assert abs(turn) < 10, check                   # turning back by turn_deg undoes the turn
    assert check.score < 0.05, check
    upright = check.turn @ (_turned(v, degrees) - VIEW_CENTER).T
    assert check_face_render(upright.T + VIEW_CENTER, f).score > 0.6


def test_an_upside_down_alignment_is_turned_back():
    """The intake gives a face found upside down in its render the right way up (the head is built in the ICT
    frame: the right rotation is about the identity)."""
    from nfs.mesh.align import align_to_ict
    from nfs.mesh.head import _checked

    v, f = corpus.plain_head(3, eyes=False)
    clean = clean_mesh(v, f)
    good = align_to_ict(clean.skin_points, clean.skin_faces)
    flip = Rotation.from_euler("z", 180, degrees=True).as_matrix()
    centre = np.array([0.0, 0.0, 5.0])
    upside_down = type(good)(good.scale, flip @ good.rotation, flip @ (good.translation - centre) + centre,
                             good.residual_cm, good.confidence, good.is_partial, 1)
    fixed, _ = _checked(clean, upside_down, clean)
    off = np.degrees(np.linalg.norm(Rotation.from_matrix(fixed.rotation).as_rotvec()))
    assert off < 8.0 and fixed.confidence > 0.6, (off, fixed)


@pytest.mark.parametrize("name", ["head with hair cards", "head with a hat", "head with glasses"])
def test_heads_with_hair_hat_or_glasses_are_accepted(name):
    v, f = HEADS[name]()
    alignment, clean = find_head(clean_mesh(_user_frame(v, seed=len(name)), f))
    assert alignment.confidence >= max(MIN_FACE_CONFIDENCE, 0.6), alignment
    assert len(clean.skin_vertices) >= 11_000                     # the ICT skin, not hair, hat or glasses
    roles = SecondaryBinding.build(clean, alignment).roles()
    assert roles.get("eye") == 4 and set(roles) <= {"eye", "still"}, roles   # sclerae and irises; the rest still


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "assets" / "targets").glob("*.obj")), ids=lambda p: p.stem)
def test_demo_targets_are_accepted(path):
    """The demo heads (a remeshed identity, a face crop in metres, the stylised head, a head with teeth) are faces
    with room above the threshold."""
    raw = load_mesh(path)
    alignment, _ = find_head(clean_mesh(raw.vertices, raw.faces))
    print(f"\n{path.stem}: confidence {alignment.confidence:.3f} (fit {alignment.fit_confidence:.3f}, face "
          f"{alignment.face_score:.3f})")
    assert alignment.confidence >= MIN_FACE_CONFIDENCE + 0.2, alignment


@pytest.mark.parametrize("name", ["sphere", "hand"])
def test_non_faces_are_refused(name):
    v, f = NON_FACES[name]()
    alignment, _ = find_head(clean_mesh(_user_frame(v, seed=3, units=1.0), f))
    assert alignment.confidence < MIN_FACE_CONFIDENCE and alignment.face_score < 0.05, alignment


@pytest.fixture(scope="module")
def avatar(tmp_path_factory):
    """The Ready Player Me-like avatar GLB as read, and its intake."""
    path = tmp_path_factory.mktemp("avatar") / "avatar.glb"
    avatar_factory.write_avatar(path)
    raw = load_mesh(path)
    alignment, clean = find_head(clean_mesh(raw.vertices, raw.faces))
    return raw, alignment, clean


def test_avatar_head_aligns_like_the_head_alone(avatar):
    raw, alignment, clean = avatar
    head_parts = [p for p in raw.parts if p.mesh_name in ("Wolf3D_Head", "Wolf3D_Teeth", "Wolf3D_Tongue", "EyeLeft",
                                                          "EyeRight")]
    assert len(head_parts) == 6
    keep = np.zeros(len(raw.vertices), bool)
    for p in head_parts:
        keep[p.vertex_offset:p.vertex_offset + p.vertex_count] = True
    faces = raw.faces[keep[raw.faces].all(1)]
    index = np.cumsum(keep) - 1
    alone, _ = find_head(clean_mesh(raw.vertices[keep], index[faces]))
    print(f"\navatar: confidence {alignment.confidence:.3f} (fit {alignment.fit_confidence:.3f}, face "
          f"{alignment.face_score:.3f}), scale {alignment.scale / alone.scale:.4f} x the head alone's "
          f"(confidence {alone.confidence:.3f})")
    assert alignment.confidence >= 0.6
    assert abs(alignment.scale / alone.scale - 1) < 0.02
    angle = np.degrees(np.arccos(np.clip((np.trace(alignment.rotation.T @ alone.rotation) - 1) / 2, -1, 1)))
    assert angle < 2.0


def test_avatar_parts_move_with_the_face_or_stay_still(avatar):
    """By geometry alone (no names) and with the file's names as hints: the face mesh is the skin, teeth follow
    jaw and skull, eyes the skull, the tongue the mouth; hair, glasses, body and outfit stay still."""
    raw, alignment, clean = avatar
    part_of = np.zeros(len(raw.vertices), np.int64)
    for k, p in enumerate(raw.parts):
        part_of[p.vertex_offset:p.vertex_offset + p.vertex_count] = k
    skin = collections.Counter(raw.parts[k].mesh_name for k in part_of[clean.original_index[clean.skin_vertices]])
    assert set(skin) == {"Wolf3D_Head"}, skin                     # the face mesh, nothing else, is the skin
    for hints in (None, part_hints(raw.parts, len(raw.vertices))):
        binding = SecondaryBinding.build(clean, alignment, hints=hints)
        roles = collections.defaultdict(set)
        for c in binding.components:
            roles[raw.parts[np.bincount(part_of[c.original]).argmax()].mesh_name].add(c.role)
        assert roles["EyeLeft"] == roles["EyeRight"] == {"eye"}, roles
        assert roles["Wolf3D_Teeth"] == {"jaw", "skull"}, roles        # lower row with the jaw, upper with the skull
        assert roles["Wolf3D_Tongue"] <= {"mouth", "jaw"} and roles["Wolf3D_Tongue"], roles
        for still in ("Wolf3D_Hair", "Wolf3D_Glasses", "Wolf3D_Body", "Wolf3D_Outfit_Top"):
            assert roles[still] <= {"still"}, roles
        assert roles["Wolf3D_Hair"] and roles["Wolf3D_Glasses"], roles


def test_names_are_hints():
    """Part names (mesh, node, material) hint at eyes and at parts that stay still; geometry decides the rest."""
    from nfs.ict import load_ict
    from nfs.mesh import bones
    from nfs.mesh.parts import EYE_HINT, NO_HINT, STILL_HINT, name_hint

    assert name_hint("EyeLeft") == name_hint("N00_000_00_EyeIris_00_EYE") == name_hint("", "Face", "Wolf3D_Eye") \
        == EYE_HINT
    assert name_hint("Wolf3D_Hair") == name_hint("Glasses") == name_hint("Wolf3D_Outfit_Top") == STILL_HINT
    assert name_hint("FaceEyelash") == name_hint("Wolf3D_Head") == name_hint("Wolf3D_Teeth") == name_hint("") == NO_HINT
    ict = load_ict()
    skin = ict.neutral[:ict.skin_count].astype(np.float64)
    edge = 0.5
    # a flat eye white behind the left lids (no sphere, as VRoid models it): an eye only when named so
    centre = skin[ict.landmarks68[42:48]].mean(0) - np.array([0.0, 0.0, 0.6])
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    disc = centre + np.stack([1.3 * np.cos(angles), 0.8 * np.sin(angles), np.zeros_like(angles)], 1)
    disc = np.concatenate([disc, centre[None]])
    assert bones.component_weights(disc, skin, edge, hint=EYE_HINT)[1] == "eye"
    assert bones.component_weights(disc, skin, edge, hint=NO_HINT)[1] != "eye"
    # a brow card lying on the brow skin follows it; named hair it stays still
    brow = skin[(skin[:, 1] > 5.0) & (skin[:, 1] < 6.0) & (skin[:, 0] > 1.5) & (skin[:, 0] < 5.5) & (skin[:, 2] > 8.0)]
    card = brow + np.array([0.0, 0.0, 0.1])
    assert bones.component_weights(card, skin, edge)[1] == "skin"
    assert bones.component_weights(card, skin, edge, hint=STILL_HINT)[1] == "still"


def test_eyes_named_as_eyes_mark_the_face_when_they_are_no_spheres():
    """VRoid models eye whites as curved plates, not balls: by geometry they are no eyeballs; named as eyes (the
    primitives' material names) they mark the eye centres."""
    from nfs.mesh.bones import ict_bone_skin
    from nfs.mesh.parts import EYE_HINT, eye_pair

    v, f = corpus.plain_head(4, eyes=False)
    centres = ict_bone_skin()[3]
    plates = []
    for c in centres:
        grid = np.stack(np.meshgrid(np.linspace(-1.2, 1.2, 7), np.linspace(-0.8, 0.8, 5)), -1).reshape(-1, 2)
        p = np.c_[grid, 1.0 - 0.15 * (grid ** 2).sum(1)] + c             # a shallow dome in front of the centre
        idx = np.arange(35).reshape(5, 7)
        tri = np.concatenate([np.stack([idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel()], 1),
                              np.stack([idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()], 1)])
        plates.append((p, tri))
    mesh_v, mesh_f = corpus.join((v, f), *plates)
    clean = clean_mesh(_user_frame(mesh_v, seed=9), mesh_f)
    assert eye_pair(clean) is None
    hints = np.zeros(len(mesh_v), np.int8)
    hints[len(v):] = EYE_HINT
    pair = eye_pair(clean, hints)
    assert pair is not None
    found = np.sort(pair.centres[:, 0])
    expected = np.sort(_user_frame(centres + np.array([0.0, 0.0, 0.85]), seed=9)[:, 0])
    np.testing.assert_allclose(found, expected, atol=0.005)          # metres: within 5 mm of the plates' centres
