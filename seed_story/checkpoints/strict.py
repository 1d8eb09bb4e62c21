"""Strict state-dict loading: every missing, unexpected or mis-shaped key is an error unless allow-listed.

Allow-lists are named, so an error or a report says *why* a key may be absent (e.g. "frozen Llama base
weights come from the Llama-2 folder"), never just how many keys were skipped.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class AllowList:
    """Glob patterns (``fnmatch``) of keys that may be missing or unexpected, and the reason."""

    name: str
    patterns: tuple[str, ...]
    reason: str
    exclude: tuple[str, ...] = ()

    def matches(self, key: str) -> bool:
        hit = any(fnmatch.fnmatchcase(key, p) for p in self.patterns)
        return hit and not any(fnmatch.fnmatchcase(key, p) for p in self.exclude)


@dataclass
class KeyReport:
    """What a checkpoint holds compared with a module's state dict."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    allowed_missing: dict[str, int] = field(default_factory=dict)
    allowed_unexpected: dict[str, int] = field(default_factory=dict)
    loaded: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, what: str, limit: int = 20) -> str:
        lines = [f"{what}: {self.loaded} tensors match"]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                lines.append(f"  {len(keys)} {title} key(s): " + ", ".join(keys[:limit]))
                if len(keys) > limit:
                    lines.append(f"    ... and {len(keys) - limit} more")
        if self.mismatched:
            lines.append(f"  {len(self.mismatched)} key(s) with the wrong shape:")
            lines += [f"    {k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in self.mismatched[:limit]]
        for title, counts in (("missing", self.allowed_missing), ("unexpected", self.allowed_unexpected)):
            lines += [f"  allowed {title}: {n} key(s) [{name}]" for name, n in counts.items()]
        return "\n".join(lines)

    def summary(self, what: str, limit: int = 5) -> str:
        """The problems on one line (an error message); :meth:`describe` is the full report."""

        def some(items: list[str]) -> str:
            more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        kinds = (("missing", self.missing), ("unexpected", self.unexpected))
        parts = [f"{len(keys)} {title} key(s): {some(keys)}" for title, keys in kinds if keys]
        if self.mismatched:
            shapes = [f"{k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in self.mismatched]
            parts.append(f"{len(shapes)} key(s) with the wrong shape: {some(shapes)}")
        return f"{what}: " + "; ".join(parts)


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit its module; the message is one line, ``report`` has every key."""

    def __init__(self, what: str, report: KeyReport) -> None:
        super().__init__(report.summary(what))
        self.report = report


def _classify(keys: Iterable[str], allow: Iterable[AllowList], counts: dict[str, int]) -> list[str]:
    rejected = []
    allow = list(allow)
    for key in keys:
        rule = next((a for a in allow if a.matches(key)), None)
        if rule is None:
            rejected.append(key)
        else:
            counts[rule.name] = counts.get(rule.name, 0) + 1
    return rejected


def compare_keys(
    expected: Mapping[str, tuple[int, ...]],
    found: Mapping[str, tuple[int, ...]],
    *,
    allow_missing: Iterable[AllowList] = (),
    allow_unexpected: Iterable[AllowList] = (),
) -> KeyReport:
    """Compare name -> shape maps of a module (expected) and a checkpoint (found)."""
    report = KeyReport()
    report.missing = _classify(sorted(set(expected) - set(found)), allow_missing, report.allowed_missing)
    report.unexpected = _classify(sorted(set(found) - set(expected)), allow_unexpected, report.allowed_unexpected)
    for key in sorted(set(expected) & set(found)):
        if tuple(expected[key]) != tuple(found[key]):
            report.mismatched.append((key, tuple(found[key]), tuple(expected[key])))
        else:
            report.loaded += 1
    return report


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str,
    allow_missing: Iterable[AllowList] = (),
    allow_unexpected: Iterable[AllowList] = (),
) -> KeyReport:
    """Copy ``state_dict`` into ``module`` or raise ``CheckpointMismatchError`` naming every bad key.

    Tensors are cast to each parameter's dtype; allow-listed unexpected keys are dropped, allow-listed
    missing keys keep the module's current values (e.g. weights already loaded from another file).
    """
    own = module.state_dict()
    report = compare_keys(
        {k: tuple(v.shape) for k, v in own.items()},
        {k: tuple(v.shape) for k, v in state_dict.items()},
        allow_missing=allow_missing,
        allow_unexpected=allow_unexpected,
    )
    if not report.ok:
        raise CheckpointMismatchError(what, report)
    usable = {k: v for k, v in state_dict.items() if k in own}
    module.load_state_dict(usable, strict=False, assign=False)
    return report
