"""quick_init (lbd.k8s.frozen): a view built by it is the very instance the dataclass's own
``__init__`` builds (fields, defaults, fresh default_factory values, equality, hash, repr),
still frozen; a class it cannot build the same way is refused when it is made."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field
from typing import Any

import pytest

from lbd.k8s.conditions import ObservedCondition
from lbd.k8s.frozen import quick_init
from lbd.k8s.l2status import ObservedL2Status
from lbd.k8s.meta import ObjectRef
from lbd.k8s.service import ObservedService


def both() -> tuple[type[Any], type[Any]]:
    """The same frozen dataclass, as dataclasses makes it and with quick_init."""

    def make() -> type[Any]:
        @dataclass(frozen=True)
        class View:
            a: str
            b: tuple[int, ...]
            c: int = 3
            d: dict[str, str] = field(default_factory=dict, hash=False)
            e: str | None = None

        return View

    return make(), quick_init(make())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("x", (1,)), {}), (("x", (1, 2), 4), {"e": "y"}), ((), {"a": "x", "b": (), "d": {"k": "v"}})],
)
def test_the_same_instance_as_the_dataclass_builds(args: tuple[Any, ...], kwargs: Any) -> None:
    plain, quick = both()
    want, got = plain(*args, **kwargs), quick(*args, **kwargs)
    assert vars(got) == vars(want) and list(vars(got)) == list(vars(want))
    assert repr(got).replace(quick.__qualname__, "") == repr(want).replace(plain.__qualname__, "")
    assert got == quick(*args, **kwargs) and hash(got) == hash(quick(*args, **kwargs))
    assert dataclasses.replace(got, c=9).c == 9 and dataclasses.replace(got, c=9).a == got.a
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.a = "y"


def test_a_default_factory_gives_each_instance_its_own_value() -> None:
    _, quick = both()
    one, two = quick("x", ()), quick("x", ())
    assert one.d == {} and one.d is not two.d


def test_arguments_are_checked_as_before() -> None:
    _, quick = both()
    with pytest.raises(TypeError):
        quick("x")  # b is missing
    with pytest.raises(TypeError):
        quick("x", (), nope=1)


def test_the_views_use_it() -> None:
    for cls in (ObservedService, ObservedL2Status, ObjectRef, ObservedCondition):
        assert cls.__init__.__code__.co_filename == "<string>"
        assert "_quick_init_fields" in cls.__init__.__code__.co_varnames


def test_shapes_it_cannot_build_the_same_way_are_refused() -> None:
    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True)
    class Post:
        a: int

        def __post_init__(self) -> None: ...

    @dataclass(frozen=True)
    class WithInitVar:
        a: int
        b: InitVar[int]

    @dataclass(frozen=True)
    class NotInInit:
        a: int
        b: int = field(default=0, init=False)

    @dataclass(frozen=True, kw_only=True)
    class KwOnly:
        a: int

    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    for cls in (Mutable, Post, WithInitVar, NotInInit, KwOnly, Slotted):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)
