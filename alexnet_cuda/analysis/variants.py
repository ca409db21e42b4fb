"""Named variants for the study: each is a list of ``alexnet_cuda.train`` flags added to the study's common ones.

The presets are the paper's ablations (Krizhevsky et al. 2012), each switching one choice off:

========================  ==========================  ==============================================================
name                      flags                       the paper
========================  ==========================  ==============================================================
baseline                  (none)                      the paper's choices
no-lrn                    --no-lrn                    Section 3.3: LRN lowered top-1 error by 1.4%
no-overlap-pool           --no-overlap-pool           Section 3.4: 3x3/2 pooling instead of 2x2/2 lowered it by 0.4%
no-dropout                --dropout 0                 Section 4.2: without dropout the net overfits substantially
one-tower                 --towers 1                  Section 3.2: two towers lowered top-1 error by 1.7%
tanh                      --activation tanh           Section 3.1 and Figure 1: ReLU trains several times faster
no-pca-colour             --pca-std 0                 Section 4.1: the colour augmentation lowered top-1 by over 1%
========================  ==========================  ==============================================================

Any other variant is ``NAME=FLAGS`` (``'lr-0.02=--lr 0.02'``), checked against the trainer's own parser.
"""

from __future__ import annotations

import re
import shlex

PRESETS: dict[str, list[str]] = {
    "baseline": [],
    "no-lrn": ["--no-lrn"],
    "no-overlap-pool": ["--no-overlap-pool"],
    "no-dropout": ["--dropout", "0"],
    "one-tower": ["--towers", "1"],
    "tanh": ["--activation", "tanh"],
    "no-pca-colour": ["--pca-std", "0"],
}
# Flags the study sets for every variant itself (a variant may not change them: one dataset, seed and budget).
STUDY_FLAGS = ("--out", "--resume", "--data", "--seed", "--epochs")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # becomes a directory name


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'no-lrn' (a preset) or 'NAME=FLAGS' -> (name, flags). Raises ValueError saying what is wrong."""
    from ..train.config import build_parser

    name, sep, flags_text = text.partition("=")
    name = name.strip()
    if not sep:
        if name not in PRESETS:
            raise ValueError(f"unknown variant {name!r}: presets are {', '.join(PRESETS)}; or give NAME=FLAGS")
        return name, list(PRESETS[name])
    if not _NAME.match(name):
        raise ValueError(f"variant name {name!r}: use letters, digits and - _ . + (it names a directory)")
    flags = shlex.split(flags_text)
    for f in flags:
        if f.split("=")[0] in STUDY_FLAGS:
            raise ValueError(f"variant {name}: {f} is set by the study for every variant (one dataset, seed and "
                             f"budget); give it to the study instead")
    try:
        build_parser().parse_args(flags)
    except SystemExit:
        raise ValueError(f"variant {name}: the trainer does not accept {flags_text!r} (see python -m "
                         f"alexnet_cuda.train --help)") from None
    return name, flags
