"""What the benchmarks on the eval's heads share: the machine's line and the shipped model with a clip's codes."""
from __future__ import annotations

import os

import numpy as np

from nfs.eval.run import Clip, encode_source, load_shipped_model
from nfs.ict import load_ict
from nfs.model.precision import cpu_flags


def machine_line() -> str:
    """The CPU count and the flags that decide the decoder's precision."""
    flags = [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if x in cpu_flags()]
    return f"{os.cpu_count()} CPUs, flags: {' '.join(flags) or 'none of avx2/avx512f/avx512_bf16/amx_bf16'}"


def model_ict_and_codes(weights: np.ndarray):
    """The shipped model (eval mode), the ICT face model and the expression codes of weights (T, 53)."""
    model, _ = load_shipped_model(None)
    model.eval()
    codes = encode_source(Clip("benchmark", 30.0, codes=weights), model).codes
    return model, load_ict(), codes
