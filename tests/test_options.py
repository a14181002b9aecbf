"""One set of run options: the command line's argparse options and the app's controls are made from
`nfs.options.RetargetOptions` and show the same bounds and defaults; bad values are refused with the option named;
`--exports ,` is refused before any work; one device resolver serves retargeting and training."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch

from nfs.__main__ import main, retarget_parser
from nfs.options import EXPORT_KINDS, OptionError, RetargetOptions, option_specs, parse_exports

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "assets" / "targets" / "stylized_head.obj"
# option -> the elem_id of the app's control for it
APP_CONTROLS = {"smoothing_sigma": "smoothing", "gain": "gain", "correction": "correction", "fps": "fps-pick",
                "glb_tolerance_mm": "glb-tolerance", "open_mouth": "open-mouth"}


@pytest.fixture(scope="module")
def app_components() -> dict:
    """The app's components by elem_id, read from the Blocks config the real app builds."""
    pytest.importorskip("gradio")
    from app.state import SessionRegistry
    from app.ui import App
    with tempfile.TemporaryDirectory() as root:
        demo = App(SessionRegistry(Path(root), None, None), {}, "ckpts/nfs_cpu", untrained=True).build()
        components = demo.config["components"]
    return {c["props"]["elem_id"]: c for c in components if c["props"].get("elem_id")}


def _action(name: str):
    flag = option_specs()[name].flag
    return next(a for a in retarget_parser()._actions if flag in a.option_strings)


@pytest.mark.parametrize("name", sorted(APP_CONTROLS))
def test_cli_and_app_show_the_same_bounds_and_defaults(name, app_components):
    spec = option_specs()[name]
    props = app_components[APP_CONTROLS[name]]["props"]
    action = _action(name)
    assert action.default == spec.default == props["value"]
    if spec.kind == "bool":
        assert app_components[APP_CONTROLS[name]]["type"] == "checkbox"
        assert getattr(retarget_parser().parse_args(["--target", "t", "--clip", "c", "--out", "o", spec.flag]), name)
        return
    assert (props["minimum"], props["maximum"], props["step"]) == (spec.minimum, spec.maximum, spec.step)
    accept = action.type
    assert accept(str(spec.minimum)) == spec.minimum and accept(str(spec.maximum)) == spec.maximum
    for outside in (spec.maximum + spec.step, spec.minimum - spec.step):
        with pytest.raises(Exception, match="must be"):
            accept(str(outside))


def test_the_app_offers_the_known_exports(app_components):
    choices = [value for _, value in app_components["export-pick"]["props"]["choices"]]
    assert set(choices) <= set(EXPORT_KINDS) and "glb" in choices


def test_help_shows_bounds_and_defaults():
    text = " ".join(retarget_parser().format_help().split())
    for expected in ("0 to 20 frames; 0: off (default: 0)", "0 to 3 x (default: 1)",
                     "0 to 240 frames per second; 0: keep the source's own rate (default: 0)",
                     "0.001 to 10 mm (default: 0.1)", "--correction, --no-correction", "(default: off)"):
        assert expected in text, expected
    pair = [a.option_strings for a in retarget_parser()._actions if any("correction" in s for s in a.option_strings)]
    assert pair == [["--correction", "--no-correction"]]       # one flag pair, one option


@pytest.mark.parametrize("values, message", [
    ({"gain": 5.0}, "--gain: must be 0 to 3"), ({"smoothing_sigma": -1.0}, "--smooth: must be"),
    ({"fps": 0.5}, "--fps: must be 0"), ({"fps": float("nan")}, "--fps: must be finite"),
    ({"glb_tolerance_mm": 0.0}, "--glb-tolerance-mm"), ({"exports": ()}, "--exports: no export named"),
    ({"exports": ("glb", "fbx")}, "--exports: unknown export fbx"), ({"device": "tpu"}, "--device: expected one"),
    ({"correction": "yes"}, "--correction: expected true or false"), ({"neutral_frame": 2.5}, "whole number"),
])
def test_validation_names_the_option(values, message):
    with pytest.raises(OptionError, match=message):
        RetargetOptions(**values).validated()


def test_validation_normalises():
    o = RetargetOptions(exports=["rig", "glb", "glb"], fps=24, neutral_frame=3).validated()
    assert o.exports == ("glb", "rig") and o.fps == 24.0 and o.neutral_frame == 3
    assert RetargetOptions().validated() == RetargetOptions()
    assert parse_exports("auto") is None and parse_exports("all") == EXPORT_KINDS
    assert RetargetOptions().retarget_kwargs()["fps"] is None


@pytest.mark.parametrize("exports", [",", " , ,", ""])
def test_no_export_named_is_refused_before_any_work(exports, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["retarget", "--target", str(TARGET), "--clip", "smile", "--out", str(out), "--exports", exports])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: --exports: no export named; choose from obj_zip, glb, rig, mp4, avatar, all or auto" in err
    assert "Traceback" not in err and not out.exists()


def test_an_out_of_bounds_option_is_one_error_line(tmp_path, capsys):
    code = main(["retarget", "--target", str(TARGET), "--clip", "smile", "--out", str(tmp_path / "o"),
                 "--gain", "7"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--gain" in err[0] and "0 to 3" in err[0]


def test_one_device_resolver_for_runs_and_training(tmp_path):
    from nfs.model.precision import resolve_device
    from nfs.train import TrainConfig, Trainer
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="device must be one of"):
        Trainer(TrainConfig(device="tpu", out=str(tmp_path / "run")))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA was asked for"):
            Trainer(TrainConfig(device="cuda", out=str(tmp_path / "run")))
        code = main(["retarget", "--target", str(TARGET), "--clip", "smile", "--out", str(tmp_path / "o"),
                     "--device", "cuda"])
        assert code == 2 and not (tmp_path / "o").exists()
