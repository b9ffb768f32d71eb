"""Command-line rewriting before Lightning's parser sees the arguments.

``--model.backbone NAME`` and the backbone's fields compose: the name becomes
``--model.backbone.model_name NAME`` (with ``--model.backbone.pretrained true``,
AutoTimm's meaning of a bare name, unless the command line sets ``pretrained``),
so ``--model.backbone efficientnet_b0 --model.backbone.pretrained false`` trains
an ``efficientnet_b0`` from scratch. A JSON/YAML mapping (``{...}``) is passed on
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["compose_backbone_flags", "flag_value"]

_BACKBONE = "--model.backbone"
_BACKBONE_FIELD = "--model.backbone."
_PRETRAINED = "--model.backbone.pretrained"


def _split(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """``[(flag or positional, value or None)]`` with ``--flag=value`` split."""
    out: list[tuple[str, str | None]] = []
    i = 0
    args = list(argv)
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" in arg:
            flag, value = arg.split("=", 1)
            out.append((flag, value))
        elif arg.startswith("--") and i + 1 < len(args) and not args[i + 1].startswith("--"):
            out.append((arg, args[i + 1]))
            i += 1
        else:
            out.append((arg, None))
        i += 1
    return out


def flag_value(argv: Sequence[str], flag: str) -> str | None:
    """The last value given to ``flag`` (``--flag v`` or ``--flag=v``), else None."""
    value = None
    for name, val in _split(argv):
        if name == flag:
            value = val
    return value


def compose_backbone_flags(argv: Sequence[str]) -> list[str]:
    """Rewrite ``--model.backbone NAME`` so that it composes with the backbone's fields."""
    pairs = _split(argv)
    sets_pretrained = any(name == _PRETRAINED for name, _ in pairs)
    out: list[str] = []
    for name, value in pairs:
        is_name = (
            name == _BACKBONE
            and value is not None
            and not value.lstrip().startswith(("{", "["))
            and ":" not in value.split("/")[0]  # "hf-hub:..." is a name; "a: b" is YAML
        )
        if name == _BACKBONE and value is not None and value.startswith(("hf-hub:", "hf_hub:")):
            is_name = True
        if is_name:
            out += [f"{_BACKBONE_FIELD}model_name", str(value)]
            if not sets_pretrained:
                out += [_PRETRAINED, "true"]
        else:
            out.append(name)
            if value is not None:
                out.append(value)
    return out
