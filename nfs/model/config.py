"""Network presets as dataclasses."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from nfs.regions import N_REGIONS


@dataclass
class NFSConfig:
    """Sizes of the NFS network. Positions enter in units of 10 cm (ICT cm / 10)."""

    width: int = 256            # DiffusionNet width of every encoder
    n_blocks: int = 4           # DiffusionNet blocks per encoder
    k_eig: int = 128            # spectral basis size
    dropout: float = 0.5        # DiffusionNet MLP dropout
    gradient_features: bool = True
    image_size: int = 256       # frontal render size for the image feature
    image_dim: int = 128        # global image feature
    image_channels: tuple = (16, 32, 64, 128)
    code_dim: int = 128         # z_ID and z_GE size
    n_identity: int = 100       # supervised dims of z_ID (ICT identity coefficients)
    n_expression: int = 53      # supervised dims of z_GE (ICT FACS weights)
    n_regions: int = N_REGIONS  # skinning-encoder segmentation classes (the ICT skin's regions)
    skin_hidden: int = 256      # bias-free skinning MLP width
    decoder_width: int = 256
    decoder_layers: int = 7
    decoder_groups: int = 32    # GroupNorm groups; statistics over all vertices of a mesh
    template_prior: bool = False  # decode a correction on top of the closest-point ICT blendshape transfer

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_channels"] = list(self.image_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NFSConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "image_channels" in kw:
            kw["image_channels"] = tuple(kw["image_channels"])
        return cls(**kw)


PRESETS = {
    # The published sizes (5.6M parameters with our 23 regions; the paper reports ~6.8M).
    "paper": NFSConfig(),
    # Chosen by measurement to train on 2 CPU cores in hours (see docs/method.md).
    "cpu": NFSConfig(width=96, n_blocks=4, k_eig=64, dropout=0.0, image_channels=(8, 16, 32, 64), image_dim=64,
                     skin_hidden=128, decoder_width=192, decoder_layers=5, decoder_groups=16,
                     template_prior=True),
    # Tiny, for tests.
    "tiny": NFSConfig(width=16, n_blocks=1, k_eig=16, dropout=0.0, image_size=64, image_channels=(4, 8, 8, 8),
                      image_dim=8, code_dim=128, skin_hidden=16, decoder_width=32, decoder_layers=2, decoder_groups=4),
}


def get_preset(name: str, n_regions: int | None = None) -> NFSConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = NFSConfig.from_dict(PRESETS[name].to_dict())
    if n_regions is not None:
        cfg.n_regions = n_regions
    return cfg
