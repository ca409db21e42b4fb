"""The network variant options of issue 10 (``norm``, ``bn_position``, ``head``, ``optimizer`` and Adam's settings):
parsing and checking, shared by :class:`alexnet_cuda.AlexNet`, the layer summary and the command-line flags, so a
variant is spelled and refused the same way everywhere. What each option builds is documented in
``alexnet_cuda/model.py`` and ``csrc/network.h``.
"""

from __future__ import annotations

from typing import Any

from .arguments import INT32_MAX, float_arg
from .arguments import is_int as _is_int

NORMS = ("lrn", "batchnorm", "none")
BN_POSITIONS = ("before_pool", "after_pool")
OPTIMIZERS = ("sgd", "adam", "adamw")
# The hidden fc widths of each arch's default head: the paper's fc6/fc7 (Section 3.5), narrower for small images.
DEFAULT_HEAD = {"alexnet": [4096, 4096], "alexnet-small": [1024, 1024]}
DEFAULT_ADAM_BETAS = (0.9, 0.999)  # Kingma & Ba 2015, Section 2
DEFAULT_ADAM_EPS = 1e-8


def parse_head(head: Any, where: str = "AlexNet") -> str | list[int] | None:
    """``head`` as None (the arch's default), 'gap', or a list of hidden widths (possibly empty).

    Accepts 'gap', a comma-separated string of widths ('4096,4096', '2000,200', '' or 'none' for no hidden layer)
    or a list/tuple of ints."""
    if head is None:
        return None
    if isinstance(head, str):
        text = head.strip().lower()
        if text == "gap":
            return "gap"
        if text in ("", "none"):
            return []
        parts = [p.strip() for p in text.split(",")]
        if not all(p.isdigit() for p in parts):
            raise ValueError(f"{where}: head must be 'gap' or comma-separated hidden widths such as '4096,4096' or "
                             f"'2000,200' (or '' for none), got {head!r}")
        head = [int(p) for p in parts]
    if not isinstance(head, (list, tuple)) or not all(_is_int(w) and 1 <= w <= INT32_MAX for w in head):
        raise ValueError(f"{where}: head must be 'gap' or a list of positive int hidden widths, got {head!r}")
    return [int(w) for w in head]


def head_str(head: str | list[int] | None) -> str:
    """The command-line spelling of a parsed head ('gap', '4096,4096', 'none')."""
    if head is None:
        return "default"
    if head == "gap":
        return "gap"
    return ",".join(str(w) for w in head) or "none"


def resolve_norm(norm: Any, lrn: Any = True, where: str = "AlexNet") -> str:
    """``norm`` checked; the older ``lrn=False`` switch turns the default 'lrn' into 'none'."""
    if norm not in NORMS:
        raise ValueError(f"{where}: norm must be one of {NORMS}, got {norm!r}")
    return "none" if norm == "lrn" and not lrn else norm


def check_choice(where: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {choices}, got {value!r}")
    return value


def check_adam(betas: Any, eps: Any, where: str = "AlexNet") -> tuple[tuple[float, float], float]:
    """Adam's (beta1, beta2) in [0, 1) and eps > 0, as floats."""
    if not isinstance(betas, (list, tuple)) or len(betas) != 2:
        raise ValueError(f"{where}: adam_betas must be two numbers (beta1, beta2), got {betas!r}")
    b = tuple(float_arg(where, "adam_betas", v) for v in betas)
    if not all(0.0 <= v < 1.0 for v in b):
        raise ValueError(f"{where}: adam_betas must be in [0, 1), got {betas!r}")
    e = float_arg(where, "adam_eps", eps)
    if not e > 0.0:
        raise ValueError(f"{where}: adam_eps must be > 0, got {eps!r}")
    return (b[0], b[1]), e


# ---- command-line flags (train; evaluate and predict read the variant from the checkpoint) --------------------------
def _flag_type(parse, hint: str = ""):
    """An argparse type from a parser raising ValueError (argparse then prints a one-line usage error)."""
    import argparse

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{hint}{exc}") from None

    return convert


_head_flag = _flag_type(lambda text: parse_head(text, "the classifier"))
_betas_flag = _flag_type(lambda text: list(check_adam(tuple(float(p) for p in text.split(",")), DEFAULT_ADAM_EPS,
                                                      "--adam-betas")[0]),
                         "expected BETA1,BETA2 in [0, 1), e.g. 0.9,0.999: ")


def add_variant_flags(parser) -> None:
    """--norm, --bn-position, --head, --optimizer, --adam-betas, --adam-eps (the fields of TrainConfig of the same
    names; --lr and --weight-decay serve every optimizer)."""
    from .cli import float_in

    g = parser.add_argument_group("network and optimizer variants (any combination with the switches above)")
    g.add_argument("--norm", choices=NORMS, default="lrn",
                   help="lrn: the paper's local response normalization after conv1, conv2 (3.3); batchnorm: batch "
                        "normalization after every conv (Ioffe & Szegedy 2015), each tower its own channels; none "
                        "(default lrn)")
    g.add_argument("--bn-position", choices=BN_POSITIONS, default="before_pool",
                   help="with --norm batchnorm, in the blocks that pool: before_pool = conv -> BN -> ReLU -> pool "
                        "(the usual placement); after_pool = conv -> ReLU -> pool -> BN (default before_pool)")
    g.add_argument("--head", type=_head_flag, metavar="WIDTHS|gap",
                   help="the classifier: hidden fully connected widths then the classes, e.g. 4096,4096 (the "
                        "paper's), 2000,200, or none; or gap = global average pooling of conv5 then one linear "
                        "layer (default: 4096,4096 for alexnet, 1024,1024 for alexnet-small)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd",
                   help="sgd: the paper's momentum SGD (5); adam (Kingma & Ba 2015, weight decay as L2); adamw "
                        "(Loshchilov & Hutter 2019, decoupled weight decay). --lr defaults to 0.001 for adam/adamw "
                        "(default sgd)")
    g.add_argument("--adam-betas", type=_betas_flag, default=list(DEFAULT_ADAM_BETAS), metavar="B1,B2",
                   help="adam/adamw: decay rates of the moment estimates (default 0.9,0.999)")
    g.add_argument("--adam-eps", type=float_in(0.0, lo_open=True), default=DEFAULT_ADAM_EPS, metavar="EPS",
                   help="adam/adamw: the denominator's epsilon (default 1e-8)")


# Adam's suggested step size (Kingma & Ba 2015, Algorithm 1: alpha = 0.001); the SGD recipes' 0.01 diverges with Adam.
ADAM_DEFAULT_LR = 1e-3


def variant_model_config(c: Any) -> dict[str, Any]:
    """The variant's AlexNet constructor arguments from a TrainConfig (stored in checkpoints with the others)."""
    return {"norm": c.norm, "bn_position": c.bn_position, "head": c.head, "optimizer": c.optimizer,
            "adam_betas": list(c.adam_betas), "adam_eps": c.adam_eps}


def variant_summary(c: Any) -> str:
    """'norm lrn, head 4096,4096, sgd' for the train log (c: a resolved TrainConfig)."""
    head = c.head
    if head is None:  # the widths override of the tests, else the arch's default
        head = (c.widths or {}).get("fc") or DEFAULT_HEAD.get(c.arch)
    return f"norm {resolve_norm(c.norm, c.lrn)}, head {head_str(head)}, {c.optimizer}"
