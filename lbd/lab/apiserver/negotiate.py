"""Content negotiation: which representation of a resource a request's ``Accept`` asks for.

kube-apiserver's rules (``apiserver/pkg/endpoints/handlers/negotiation``), which kubectl and
client-go rely on:

- ``Accept`` is a list of media types, tried by ``q`` (then by order, specific before ``*``);
  no ``Accept`` means JSON. Built-in resources are served as ``application/json``,
  ``application/yaml`` and ``application/vnd.kubernetes.protobuf``; custom resources as JSON and
  YAML only.
- ``;as=Table;g=meta.k8s.io;v=v1`` (or ``v1beta1``) asks for a Table (JSON or YAML only);
  ``as=PartialObjectMetadata`` / ``PartialObjectMetadataList`` for metadata only. ``as``
  without ``g`` and ``v``, or another target, makes that entry unacceptable, and the next one is
  tried. ``stream=watch`` is only for watches.
- When no entry is acceptable: ``406 NotAcceptable``. A media type the resource's route does
  not produce at all (``text/html``, ``application/cbor``) gets the route's own 406 ("406: Not
  Acceptable / Available representations: ..."); one it produces but with an unacceptable
  conversion gets "only the following media types are accepted: ...".

One deliberate difference: the stand-in writes no protobuf. When protobuf is the chosen
representation of a built-in resource it answers JSON instead, which every client-go client
decodes (it decodes by the response's ``Content-Type``), rather than a 406 that would break
clients asking for protobuf only (``kubectl top`` and the typed clients of controllers).
"""

from __future__ import annotations

from dataclasses import dataclass

from lbd.lab.apiserver.errors import ApiError

JSON, YAML, PROTOBUF = "application/json", "application/yaml", "application/vnd.kubernetes.protobuf"
BUILTIN_TYPES = (JSON, YAML, PROTOBUF)
CUSTOM_TYPES = (JSON, YAML)
_META_GROUP = "meta.k8s.io"
_META_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True, slots=True)
class Representation:
    """What to answer: ``media`` (JSON or YAML; PROTOBUF is answered as JSON), and ``convert``
    (``Table``, ``PartialObjectMetadata``, ``PartialObjectMetadataList`` or empty) in
    ``meta.k8s.io/<version>``."""

    media: str = JSON
    convert: str = ""
    version: str = "v1"

    @property
    def api_version(self) -> str:
        return f"{_META_GROUP}/{self.version}"

    @property
    def yaml(self) -> bool:
        return self.media == YAML


@dataclass(frozen=True, slots=True)
class _Clause:
    type: str
    subtype: str
    params: dict[str, str]
    q: float


def parse_accept(header: str) -> list[_Clause]:
    """The entries of an ``Accept`` header, most preferred first."""
    clauses = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        if not fields[0]:
            continue
        full = fields[0].lower()
        kind, _, sub = full.partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for item in fields[1:]:
            key, _, value = item.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
            elif key:
                params[key] = value
        clauses.append(_Clause(kind, sub or "*", params, q))
    return sorted(
        (c for c in clauses if c.q > 0),
        key=lambda c: (-c.q, c.type == "*", c.subtype == "*"),
    )


def _matches(clause: _Clause, media: str) -> bool:
    kind, _, sub = media.partition("/")
    return clause.type == "*" or (clause.type == kind and clause.subtype in ("*", sub))


def _conversion(clause: _Clause, media: str, *, listing: bool, watch: bool) -> str | None:
    """The conversion ``clause`` asks of ``media`` ("" for none), or None if unacceptable."""
    params = clause.params
    stream = params.get("stream", "")
    if stream and (stream != "watch" or not watch):
        return None
    target = (params.get("as", ""), params.get("g", ""), params.get("v", ""))
    if target == ("", "", ""):
        return ""
    kind, group, version = target
    if group != _META_GROUP or version not in _META_VERSIONS:
        return None
    if kind == "Table":
        return kind if media in (JSON, YAML) else None
    if kind == ("PartialObjectMetadataList" if listing else "PartialObjectMetadata"):
        return kind
    return None


def negotiate(
    accept: str | None, *, custom: bool, listing: bool = False, watch: bool = False
) -> Representation:
    """The representation a resource request's ``Accept`` header selects, or a 406."""
    served = CUSTOM_TYPES if custom else BUILTIN_TYPES
    if not accept or not accept.strip():
        return Representation()
    clauses = parse_accept(accept)
    routed = custom or any(_matches(c, m) for c in clauses for m in served)
    for clause in clauses:
        for media in served:
            if not _matches(clause, media):
                continue
            convert = _conversion(clause, media, listing=listing, watch=watch)
            if convert is not None:
                version = clause.params.get("v", "v1") if convert else "v1"
                return Representation(YAML if media == YAML else JSON, convert, version)
    if not routed:
        raise not_acceptable_route(served)
    raise ApiError(
        406,
        "NotAcceptable",
        f"only the following media types are accepted: {', '.join(served)}",
    )


def not_acceptable_route(served: tuple[str, ...]) -> ApiError:
    """The 406 of a route that produces none of the media types asked for."""
    err = ApiError(
        406,
        "NotAcceptable",
        f"406: Not Acceptable\n\nAvailable representations: {', '.join(served)}",
    )
    return err


def accepts_json(accept: str | None) -> bool:
    """Whether ``accept`` admits JSON (for the non-resource endpoints: /version, discovery)."""
    if not accept or not accept.strip():
        return True
    return any(_matches(c, JSON) for c in parse_accept(accept))
