"""A cheaper ``__init__`` for the frozen views read for every object of a big list.

API::

    @quick_init
    @dataclass(frozen=True)
    class ObservedThing: ...        # still a frozen dataclass, built the same way, faster

A frozen dataclass's generated ``__init__`` sets every field through ``object.__setattr__``
(its own ``__setattr__`` refuses), about a quarter of a microsecond a field. The views of a
Service (18 fields, with the :class:`~lbd.k8s.meta.ObjectRef` and conditions inside it) and of
a ServiceL2Status spent a quarter of their reading time there: ``lbd status`` reads 10 000 of
each (observe_service 0.258 -> 0.197 s, observe_l2status 0.139 -> 0.101 s of CPU, interleaved
in one process on tests/bench/bench_status.py's cluster's lists).

:func:`quick_init` replaces that ``__init__`` with one of the same parameters that stores the
fields straight into the new instance's ``__dict__`` (which ``object.__setattr__`` would have
done, one call each). Nothing else changes: the class is the same frozen dataclass (assignment
raises ``FrozenInstanceError``; ``==``, ``hash``, ``repr``, :func:`dataclasses.replace` and
:func:`dataclasses.fields` as before), and a type checker sees the dataclass's own signature.

Only for the plain shape every view here has, checked when the class is made (anything else
raises ``TypeError``): frozen, not slotted, no ``__post_init__``, no ``InitVar``, every field
in ``__init__``, none keyword-only.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

_NO_ARG = object()
"""The default of a parameter whose field has a ``default_factory``."""


def quick_init(cls: type[T]) -> type[T]:
    """Give the frozen dataclass ``cls`` an ``__init__`` that fills ``__dict__`` directly."""
    params = dataclasses.fields(cls)  # TypeError for anything but a dataclass
    _check(cls, params)
    namespace: dict[str, object] = {"_NO_ARG": _NO_ARG}
    signature: list[str] = []
    body: list[str] = []
    for i, f in enumerate(params):
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{i}"] = f.default
            signature.append(f"{f.name}=_default_{i}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{i}"] = f.default_factory
            signature.append(f"{f.name}=_NO_ARG")
            body.append(f"    if {f.name} is _NO_ARG:\n        {f.name} = _factory_{i}()")
        else:
            signature.append(f.name)
        body.append(f"    _quick_init_fields[{f.name!r}] = {f.name}")
    source = (
        f"def __init__(self, {', '.join(signature)}):\n"
        "    _quick_init_fields = self.__dict__\n" + "\n".join(body) + "\n"
    )
    exec(source, namespace)  # names and defaults come from the class, as in dataclasses
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    setattr(cls, "__init__", init)  # noqa: B010 (mypy refuses assigning a method)
    return cls


def _check(cls: type, params: tuple[dataclasses.Field[object], ...]) -> None:
    if not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init needs a __dict__ and no __post_init__")
    code = cls.__dict__["__init__"].__code__  # the one dataclass made
    names = list(code.co_varnames[1 : code.co_argcount])  # after self
    plain = all(p.init and p.kw_only is not True for p in params)
    if not plain or code.co_kwonlyargcount or names != [p.name for p in params]:
        raise TypeError(f"{cls.__name__}: quick_init takes plain fields only (no InitVar, ...)")
