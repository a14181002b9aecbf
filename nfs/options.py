"""Every option of a retargeting run, in one place: its default, bounds, unit and help text.

`RetargetOptions` is what the command line, the app and the Python API share. The command line's argparse options
are made from it (`add_arguments`, `from_arguments`), the app builds its controls from `option_specs()` (label,
minimum, maximum, step, default, help), and `RetargetOptions.validated()` checks a set of values once, with a
message naming the option. Export names are checked here too (`check_exports`, `parse_exports`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

# the files a run can write, in the order they are written (avatar: the input glTF / VRM back, with ARKit targets)
EXPORT_KINDS = ("obj_zip", "glb", "rig", "mp4", "avatar")
EXPORT_LABELS = {"obj_zip": "OBJ sequence (zip)", "glb": "animated GLB", "rig": "baked rig GLB (52 ARKit shapes)",
                 "mp4": "preview MP4", "avatar": "your avatar back (glTF / VRM uploads)"}
DEVICES = ("auto", "cpu", "cuda")


class OptionError(ValueError):
    """An option's value is out of its bounds or not one of its choices; the message names the option."""


def _option(label: str, help: str, *, flag: str = "", unit: str = "", minimum=None, maximum=None, step=None,
            choices: tuple = (), low_open: bool = False, zero_means: str = "") -> dict:
    """Field metadata of one option (see `OptionSpec`)."""
    return {"label": label, "help": help, "flag": flag, "unit": unit, "minimum": minimum, "maximum": maximum,
            "step": step, "choices": tuple(choices), "low_open": low_open, "zero_means": zero_means}


@dataclass(frozen=True)
class RetargetOptions:
    """The options of one run (target x clip -> files). Defaults are the documented ones."""

    exports: tuple | None = field(default=None, metadata=_option(
        "files to write", "the files to write (None: every file, less the MP4 preview for takes over 600 frames, "
        "and the avatar only for glTF / VRM targets)", choices=EXPORT_KINDS))
    fps: float = field(default=0.0, metadata=_option(
        "frame rate", "resample the clip to this frame rate", unit="frames per second", minimum=0.0,
        maximum=240.0, step=1.0, zero_means="keep the source's own rate"))
    smoothing_sigma: float = field(default=0.0, metadata=_option(
        "temporal smoothing σ", "temporal Gaussian smoothing of the clip's weights", flag="--smooth",
        unit="frames", minimum=0.0, maximum=20.0, step=0.5, zero_means="off"))
    gain: float = field(default=1.0, metadata=_option(
        "expression gain", "expression gain on the 53 FACS weights (weights stay within 0..1.5)", unit="x",
        minimum=0.0, maximum=3.0, step=0.05))
    correction: bool = field(default=False, metadata=_option(
        "network correction", "add the network's learned correction to the template prior's positions (the prior "
        "alone is more accurate in every category of `python -m nfs eval`)"))
    glb_tolerance_mm: float = field(default=0.1, metadata=_option(
        "GLB tolerance", "largest error of the animated GLB against the decoded frames", unit="mm",
        minimum=0.001, maximum=10.0, step=0.001))
    head_pose: bool = field(default=False, metadata=_option(
        "follow the head's motion", "video clips: the target also follows the head's motion"))
    neutral_frame: int | None = field(default=None, metadata=_option(
        "neutral frame", "video clips: the frame (from 0) showing the relaxed face", unit="frames", minimum=0,
        maximum=10**6, step=1))
    keep_neutral: bool = field(default=False, metadata=_option(
        "keep the neutral", "video clips: do not take the neutral frame's scores off every frame"))
    dead_zone: float = field(default=0.0, metadata=_option(
        "dead zone", "video clips: scores below this (after the neutral) read 0", unit="score", minimum=0.0,
        maximum=0.9, step=0.01, zero_means="off"))
    shape_gains: str = field(default="", metadata=_option(
        "per-shape gains", 'video clips: per-shape gains, ARKit or ICT names or a stem for both sides, e.g. '
        '"eyeBlink=1.3,jawOpen=1.2"'))
    visemes: bool = field(default=False, metadata=_option(
        "add visemes", "avatar export: also add the 15 Oculus visemes (viseme_sil ... viseme_U) as ARKit mixes"))
    keep_existing_targets: bool = field(default=False, metadata=_option(
        "keep existing targets", "avatar export: keep the file's own targets of ARKit / viseme names instead of "
        "replacing them"))
    force: bool = field(default=False, metadata=_option(
        "use it even if it does not look like a face", "go on with a target that does not look like a face "
        "(alignment confidence below the threshold)"))
    open_mouth: bool = field(default=False, metadata=_option(
        "open a closed mouth", "a mouth modelled closed (the lips one surface, as in dense scans and some game "
        "heads) is cut open along the lip line and given a mouth interior, so the lips part; the mesh's vertices "
        "keep their indices and positions, the new ones are appended after them (lips already apart are left as "
        "they are)"))
    device: str = field(default="auto", metadata=_option(
        "device", "where the encoders and decoder run: auto (a CUDA GPU when torch sees one), cpu or cuda",
        choices=DEVICES))

    def validated(self) -> "RetargetOptions":
        """These options with numbers checked against their bounds and choices against their lists (exports
        deduplicated in the canonical order); raises OptionError naming the option."""
        values = {}
        for spec in option_specs().values():
            values[spec.name] = spec.check(getattr(self, spec.name))
        return dataclasses.replace(self, **values)

    def retarget_kwargs(self) -> dict:
        """The keyword arguments of `nfs.pipeline.retarget` these options set (fps 0 -> None: the clip's rate)."""
        return {"exports": self.exports, "fps": self.fps or None, "smoothing_sigma": self.smoothing_sigma,
                "gain": self.gain, "correction": self.correction, "glb_tolerance_mm": self.glb_tolerance_mm,
                "head_pose": self.head_pose, "visemes": self.visemes,
                "keep_existing_targets": self.keep_existing_targets, "force": self.force, "device": self.device,
                "open_mouth": self.open_mouth}


@dataclass(frozen=True)
class OptionSpec:
    """One option as plain data, for the command line, the app's controls and the docs."""

    name: str                 # the RetargetOptions field
    flag: str                 # the command-line flag
    kind: str                 # "bool", "int", "float", "text", "choice", "choices" (several of)
    default: object
    label: str                # the app's label
    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple = ()
    low_open: bool = False    # the minimum itself is excluded
    zero_means: str = ""      # what 0 stands for ("off", "keep the source's own rate")

    def bounds_text(self) -> str:
        """'0 to 20 frames; 0: off' / 'one of auto, cpu, cuda'."""
        if self.kind == "text":
            return ""
        if self.kind in ("choice", "choices"):
            return ("one of " if self.kind == "choice" else "any of ") + ", ".join(self.choices)
        if self.minimum is None:
            return ""
        low, high = (f"{int(v)}" if self.kind == "int" else f"{v:g}" for v in (self.minimum, self.maximum))
        text = f"{low} to {high}{' ' + self.unit if self.unit else ''}"
        return text + (f"; 0: {self.zero_means}" if self.zero_means else "")

    def check(self, value):
        """`value` checked (and normalised) for this option; OptionError naming the option otherwise."""
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise OptionError(f"{self.flag}: expected true or false, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise OptionError(f"{self.flag}: expected one of {', '.join(self.choices)}, got {value!r}")
            return value
        if self.kind == "choices":
            return check_exports(value) if self.name == "exports" else value
        if self.kind == "text":
            if not isinstance(value, str):
                raise OptionError(f"{self.flag}: expected text, got {value!r}")
            return value
        if value is None and self.default is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{self.flag}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise OptionError(f"{self.flag}: must be finite, got {value!r}")
        if self.kind == "int" and number != int(number):
            raise OptionError(f"{self.flag}: expected a whole number, got {value!r}")
        if self.zero_means and number == 0:
            return type(self.default)(0) if self.default is not None else 0
        too_low = number <= self.minimum if self.low_open else number < self.minimum
        if too_low or number > self.maximum:
            raise OptionError(f"{self.flag}: must be {self.bounds_text()}, got {value!r}")
        if self.name == "fps" and 0 < number < 1:
            raise OptionError(f"{self.flag}: must be 0 (keep the source's own rate) or at least 1 frame per "
                              f"second, got {value!r}")
        return int(number) if self.kind == "int" else number


def _kind(f: dataclasses.Field) -> str:
    if f.metadata["choices"]:
        return "choices" if f.name == "exports" else "choice"
    default = f.default
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, str):
        return "text"
    if f.name == "neutral_frame" or isinstance(default, int):
        return "int"
    return "float"


def option_specs() -> dict[str, OptionSpec]:
    """Every option of `RetargetOptions` as plain data, by field name, in declaration order."""
    specs = {}
    for f in dataclasses.fields(RetargetOptions):
        m = dict(f.metadata)
        flag = m.pop("flag") or "--" + f.name.replace("_", "-")
        specs[f.name] = OptionSpec(name=f.name, flag=flag, kind=_kind(f), default=f.default, **m)
    return specs


# ----------------------------------------------------------------------------------------------- exports

def check_exports(exports) -> tuple | None:
    """None (the run's default) or a non-empty collection of known export names -> the names, once each, in
    EXPORT_KINDS order; OptionError naming the unknown ones or the empty choice."""
    if exports is None:
        return None
    if isinstance(exports, str):
        exports = (exports,)
    chosen = [str(e) for e in exports]
    unknown = [e for e in chosen if e not in EXPORT_KINDS]
    if unknown:
        raise OptionError(f"--exports: unknown export {', '.join(unknown)}; choose from {', '.join(EXPORT_KINDS)}")
    if not chosen:
        raise OptionError(f"--exports: no export named; choose from {', '.join(EXPORT_KINDS)}, all or auto")
    return tuple(k for k in EXPORT_KINDS if k in chosen)


def parse_exports(text: str) -> tuple | None:
    """The command line's --exports: 'auto' -> None (the run's default), 'all' -> every kind, else a comma list
    of names (checked: at least one, all known)."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text == "all":
        return EXPORT_KINDS
    return check_exports([e.strip() for e in text.split(",") if e.strip()])


# ----------------------------------------------------------------------------------------------- command line

def _argparse_type(spec: OptionSpec):
    def parse(text: str):
        try:
            return spec.check(text)
        except OptionError as e:
            raise argparse.ArgumentTypeError(str(e).partition(": ")[2]) from None
    parse.__name__ = "integer" if spec.kind == "int" else "number"
    return parse


def add_arguments(parser: argparse.ArgumentParser, names=None) -> None:
    """Add the options `names` (default: all) to `parser`, with their defaults, bounds and units in the help."""
    specs = option_specs()
    for name in names or specs:
        spec = specs[name]
        if spec.kind == "bool":
            parser.add_argument(spec.flag, action=argparse.BooleanOptionalAction, default=spec.default,
                                help=f"{spec.help} (default: {'on' if spec.default else 'off'})")
        elif spec.kind == "choice":
            parser.add_argument(spec.flag, default=spec.default, choices=list(spec.choices),
                                help=f"{spec.help} (default: {spec.default})")
        elif spec.kind == "text":
            parser.add_argument(spec.flag, default=spec.default, help=spec.help)
        elif spec.kind == "choices":
            parser.add_argument(spec.flag, default="auto", metavar="LIST",
                                help=f"comma list of {','.join(spec.choices)}, or 'all', or 'auto' (default: auto: "
                                     f"{spec.help.partition('(None: ')[2].rstrip(')')})")
        else:
            default = "chosen automatically" if spec.default is None else f"{spec.default:g}"
            parser.add_argument(spec.flag, type=_argparse_type(spec), default=spec.default,
                                metavar=spec.unit.upper().replace(" ", "_") if spec.unit and " " not in spec.unit
                                else "N",
                                help=f"{spec.help}: {spec.bounds_text()} (default: {default})")


def from_arguments(args: argparse.Namespace, names=None) -> RetargetOptions:
    """The options parsed by a parser made with `add_arguments`, validated."""
    specs = option_specs()
    values = {}
    for name in names or specs:
        value = getattr(args, name if specs[name].flag == "--" + name.replace("_", "-")
                        else specs[name].flag.lstrip("-").replace("-", "_"))
        values[name] = parse_exports(value) if name == "exports" and isinstance(value, str) else value
    return RetargetOptions(**values).validated()
