"""Request bodies in Kubernetes' protobuf encoding, decoded into the JSON the server would store.

Why the stand-in reads protobuf at all: client-go's generated clients, which kubectl uses for
``kubectl create namespace``, ``create secret``, ``create configmap``, ``create deployment``,
``create serviceaccount``, ``create role`` and the like, encode built-in kinds as
``application/vnd.kubernetes.protobuf`` and never fall back to JSON (client-go falls back only for
CBOR, on a 415). A server that refuses protobuf therefore breaks those commands; answering them
needs only reading it, since the same clients accept a JSON response
(``Accept: application/vnd.kubernetes.protobuf, application/json``).

The wire format (``k8s.io/apimachinery/pkg/runtime/serializer/protobuf``): the magic
``k8s\\x00``, then a ``runtime.Unknown`` message whose ``typeMeta`` names the apiVersion and kind
and whose ``raw`` field holds the object's own message. The field tables, one per message type
(number, JSON name, type, repeated, whether a zero value is kept), are generated from the Go
types of the pinned ``k8s.io/api`` (``protobuf_fields.json``, made by
``tests/realk8s/kube/protoschema``), so the decoding follows the real types; what this module
adds is the JSON form of the types that have a protobuf form of their own (``Time``,
``MicroTime``, ``Duration``, ``Quantity``, ``IntOrString``, ``FieldsV1``, ``RawExtension``) and
Go's JSON rules for zero values: a zero scalar is dropped unless its Go field is a pointer or
has no ``omitempty``, a message that is present is kept (Go writes structs even when empty),
an empty time is ``null``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import struct
from pathlib import Path
from typing import Any

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
_FIELDS = Path(__file__).with_name("protobuf_fields.json")

JsonDict = dict[str, Any]
#: (number, JSON name, type, repeated, keep a zero value)
Field = tuple[int, str, str, bool, bool]


class ProtobufError(ValueError):
    """The body is not a well-formed protobuf object."""


class UnknownKindError(ValueError):
    """A protobuf object of a kind the tables do not cover."""


@functools.cache
def _schema() -> tuple[dict[str, str], dict[str, dict[int, Field]]]:
    doc = json.loads(_FIELDS.read_text())
    messages = {
        name: {f[0]: (f[0], f[1], f[2], bool(f[3]), bool(f[4])) for f in fields}
        for name, fields in doc["messages"].items()
    }
    return doc["kinds"], messages


def kinds() -> list[str]:
    """``apiVersion/kind`` of every kind this module decodes."""
    return sorted(_schema()[0])


# -- the wire format --------------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("unexpected EOF in a varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field; value is an int (varint, fixed) or
    bytes (length-delimited)."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0")
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = int.from_bytes(data[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(data[pos : pos + 4], "little"), pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire} (field {number})")
        if pos > len(data):
            raise ProtobufError("unexpected EOF")
        out.append((number, wire, value))
    return out


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if value >= 1 << 63:
        value -= 1 << 64
    if bits == 32:
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)
    return value


def _packed(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


# -- values -----------------------------------------------------------------------------------


def _go_duration(nanos: int) -> str:
    """Go's ``time.Duration.String`` (``metav1.Duration`` in JSON): ``1h2m3.5s``, ``150ms``."""
    if nanos == 0:
        return "0s"
    sign, nanos = ("-", -nanos) if nanos < 0 else ("", nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(nanos / size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _trim(rest / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _time(data: bytes, micro: bool) -> str | None:
    seconds = nanos = 0
    for number, _, value in _fields(data):
        if number == 1:
            seconds = _signed(value, 64)
        elif number == 2:
            nanos = _signed(value, 32)
    if not data:
        return None  # a zero time is sent as an empty message and is null in JSON
    stamp = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(
        seconds=seconds, microseconds=nanos // 1000 if micro else 0
    )
    if micro:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _special(kind: str, data: bytes) -> Any:
    if kind in ("time", "microtime"):
        return _time(data, kind == "microtime")
    fields = {number: value for number, _, value in _fields(data)}
    if kind == "duration":
        return _go_duration(_signed(fields.get(1, 0), 64))
    if kind == "quantity":
        return bytes(fields.get(1, b"")).decode()
    if kind == "intstr":
        if fields.get(1, 0) == 1:
            return bytes(fields.get(3, b"")).decode()
        return _signed(fields.get(2, 0), 32)
    # fieldsv1, raw: JSON bytes
    raw = bytes(fields.get(1, b""))
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ProtobufError(f"embedded object is not JSON: {exc}") from exc


_TIMES = {"time", "microtime"}
#: the wire type of each scalar (everything else is length-delimited: 2)
_WIRE = {"bool": 0, "int32": 0, "int64": 0, "uint32": 0, "uint64": 0, "double": 1, "float": 5}
_SCALARS = {"string", "bytes", "bool", "int32", "int64", "uint32", "uint64", "double", "float"}


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "string":
        if wire != 2:
            raise ProtobufError(f"a string with wire type {wire}")
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(value)).decode()
    if kind == "bool":
        return bool(value)
    if kind in ("int32", "int64"):
        return _signed(value, 32 if kind == "int32" else 64)
    if kind in ("uint32", "uint64"):
        return value
    if kind == "double":
        return float(struct.unpack("<d", value.to_bytes(8, "little"))[0])
    if kind == "float":
        return float(struct.unpack("<f", value.to_bytes(4, "little"))[0])
    raise ProtobufError(f"unknown scalar type {kind}")


def _value(kind: str, wire: int, value: Any) -> Any:
    if kind.startswith("msg:"):
        return decode_message(bytes(value), kind[4:])
    if kind in _SCALARS:
        return _scalar(kind, wire, value)
    return _special(kind, bytes(value))


def _empty(kind: str) -> Any:
    """The value of a map entry that has none (the zero value of its type)."""
    if kind.startswith("msg:"):
        return {}
    if kind in ("string", "bytes"):
        return ""
    if kind == "bool":
        return False
    if kind in _SCALARS:
        return 0
    return _special(kind, b"")


def _zero(value: Any) -> bool:
    return value in ("", 0, False) and not isinstance(value, dict)


def decode_message(data: bytes, name: str) -> JsonDict:
    """The JSON object of message type ``name`` encoded as ``data``."""
    table = _schema()[1].get(name)
    if table is None:
        raise ProtobufError(f"no protobuf table for {name}")
    out: JsonDict = {}
    for number, wire, raw in _fields(data):
        spec = table.get(number)
        if spec is None:
            continue  # an unknown field (a newer client): ignored, as protobuf readers do
        _, json_name, kind, repeated, keep = spec
        expected = _WIRE.get(kind, 2)
        if wire != expected and not (repeated and wire == 2):  # packed repeated numbers: 2
            raise ProtobufError(
                f"{name}.{json_name}: wire type {wire}, expected {expected} (field {number})"
            )
        if kind.startswith("inline:"):
            out.update(decode_message(bytes(raw), kind[7:]))
        elif kind.startswith("map:"):
            _, key_kind, value_kind = kind.split(":", 2)
            key: Any = ""
            value: Any = _empty(value_kind)
            for n, w, v in _fields(bytes(raw)):
                if n == 1:
                    key = _value(key_kind, w, v)
                elif n == 2:
                    value = _value(value_kind, w, v)
            out.setdefault(json_name, {})[str(key)] = value
        elif repeated:
            items = out.setdefault(json_name, [])
            if wire == 2 and kind in _SCALARS - {"string", "bytes"}:
                items.extend(_scalar(kind, 0, v) for v in _packed(bytes(raw)))  # packed
            else:
                items.append(_value(kind, wire, raw))
        else:
            value = _value(kind, wire, raw)
            # Go's JSON (as kube-apiserver writes it) omits a zero scalar and an empty time
            # unless the field is a pointer or has no omitempty
            empty = (kind in _SCALARS and _zero(value)) or (value is None and kind in _TIMES)
            if empty and not keep:
                out.pop(json_name, None)
                continue
            out[json_name] = value
    return out


def decode(body: bytes) -> JsonDict:
    """The object a protobuf request body holds, with its ``apiVersion`` and ``kind``.

    Raises :class:`ProtobufError` for a body that is not one (kube-apiserver answers 400), and
    :class:`UnknownKindError` for a kind this module has no table of.
    """
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the protobuf magic k8s\\x00")
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            for n, _, v in _fields(bytes(value)):
                if n == 1:
                    api_version = bytes(v).decode()
                elif n == 2:
                    kind = bytes(v).decode()
        elif number == 2:
            raw = bytes(value)
    name = _schema()[0].get(f"{api_version}/{kind}")
    if name is None:
        raise UnknownKindError(
            f"the lab API server reads protobuf only for {', '.join(kinds())}, "
            f"not {api_version}/{kind}: send it as application/json"
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, name)}
