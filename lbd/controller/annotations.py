"""What users hear of a Service's annotation findings: a pure function of before and after.

API::

    annotation_effects(key, before, after) -> tuple[Effect, ...]

``after`` is :attr:`lbd.k8s.service.ObservedService.findings` (the Service reader finds them),
``before`` what was presented last for this Service. A finding that was not presented before
gets its Event once; a finding that stays says nothing again, however often the Service is
reconciled; one that goes away and comes back is news again.

- ``UnknownAnnotation`` (Warning): ``lbd.io/adress-pool is not an lbd annotation and is
  ignored; did you mean lbd.io/address-pool?``
- ``ConflictingAnnotations`` (Warning): ``lbd.io/address-pool=a wins over
  metallb.io/address-pool=b`` (the precedence: lbd.io/, then metallb.io/, then
  metallb.universe.tf/).
- ``DeprecatedAnnotation`` (Normal): ``metallb.universe.tf/address-pool is read as MetalLB's
  deprecated prefix; lbd.io/address-pool is its lbd name`` (it keeps working).

The controller remembers what it presented in memory, so a controller restart or a new leader
presents each finding once more (Events are hints and expire; storing the memory on the Service
would cost a write per Service).
"""

from __future__ import annotations

import logging

from lbd.controller.effects import Effect, Emit, Log
from lbd.k8s.service import PREFIXES, AnnotationFinding, FindingKind


def finding_message(finding: AnnotationFinding) -> str:
    """The Event message of one finding."""
    match finding.kind:
        case FindingKind.UNKNOWN:
            text = f"{finding.key} is not an lbd annotation and is ignored"
            return text + (f"; did you mean {finding.hint}?" if finding.hint else "")
        case FindingKind.CONFLICT:
            (win, win_value), *others = finding.values
            lost = ", ".join(f"{k}={v!r}" for k, v in others)
            order = ", then ".join(PREFIXES)
            return f"{win}={win_value!r} wins over {lost} (precedence: {order})"
        case FindingKind.DEPRECATED:
            return (
                f"{finding.key} uses MetalLB's deprecated prefix (still read); "
                f"its lbd name is {finding.hint}"
            )


def annotation_effects(
    key: str, before: tuple[AnnotationFinding, ...], after: tuple[AnnotationFinding, ...]
) -> tuple[Effect, ...]:
    """An Event (and a log line for warnings) for each finding of Service ``key`` that is new."""
    out: list[Effect] = []
    for finding in after:
        if finding in before:
            continue
        warning = finding.kind is not FindingKind.DEPRECATED
        message = finding_message(finding)
        out.append(Emit(warning, finding.kind.value, message))
        if warning:
            out.append(Log(logging.WARNING, message, (("service", key),)))
    return tuple(out)
