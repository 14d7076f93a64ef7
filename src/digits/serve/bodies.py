"""What a request carries, taken out of it: its body within the size limit, the pictures in it, its options.

A picture comes in one of three ways, told apart by the Content-Type:

    multipart/form-data         a file upload (the part named "image", or the first file); many for a batch
    image/*, application/octet-stream
                                the picture's bytes as the body
    application/json            {"image": "<base64>"} or a canvas's toDataURL() string, "data:image/png;base64,..."

Anything else is a 415. Every way a body can be wrong is an :class:`ApiError` with its HTTP status and a code
a client can act on; nothing here decodes a picture (that is :mod:`digits.reading`'s one pipeline).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

__all__ = ["ApiError", "Part", "image_parts", "read_body", "single_image"]

_RAW_TYPES = ("application/octet-stream",)


class ApiError(Exception):
    """An answer other than success: the HTTP status, a short code (``too_large``) and a message for people."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class Part:
    """One picture of a request: its bytes and the name it came with ("-" for a body or JSON)."""

    data: bytes
    name: str = "-"
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # the form's other fields, e.g. "label"


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 as soon as it is known to be over ``limit`` bytes: from its
    Content-Length before a byte is read, or while it streams in (a chunked body has no length)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", f"Content-Length {declared!r} is not a number of bytes")
        if int(declared) > limit:
            raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(None, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away before sending the whole body") from None
    return b"".join(chunks)


def _too_large(size: int | None, limit: int) -> ApiError:
    what = f"{size:,} bytes" if size is not None else "more"
    return ApiError(
        413,
        "too_large",
        f"the request body is {what}, over the limit of {limit:,} bytes; send a smaller picture "
        "(or start the server with a larger --max-body-mb)",
    )


def media_type(request: Request) -> str:
    return parse_options_header(request.headers.get("content-type"))[0].decode("latin-1")


def single_image(request: Request, body: bytes) -> Part:
    """The one picture of a request to /v1/predict or /v1/read, whichever way it was sent."""
    parts = image_parts(request, body, many=False)
    return parts[0]


def image_parts(request: Request, body: bytes, *, many: bool, limit: int | None = None) -> list[Part]:
    """The pictures of a request: one (``many`` False), or every file of a multipart body (at most ``limit``)."""
    kind = media_type(request)
    if not body:
        raise ApiError(400, "empty_body", "the request has no body; send a picture (PNG, JPEG, ...)")
    if kind == "multipart/form-data":
        files, fields = _multipart(request.headers.get("content-type", ""), body, limit if many else None)
        if not many:
            chosen = next((p for p in files if p.headers.get("field") == "image"), files[0] if files else None)
            if chosen is None:
                raise ApiError(400, "missing_image", "the form has no file; upload the picture as the field 'image'")
            chosen.fields = fields
            return [chosen]
        if not files:
            raise ApiError(400, "missing_image", "the form has no files; upload pictures as the field 'images'")
        return files
    if many:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"a batch is a multipart/form-data upload of pictures, not {kind or 'a body without a Content-Type'}",
        )
    if kind == "application/json":
        return [_json_image(body)]
    if kind.startswith("image/") or kind in _RAW_TYPES:
        return [Part(body)]
    raise ApiError(
        415,
        "unsupported_media_type",
        f"cannot take a body of type {kind or '(none given)'}: send the picture's bytes as image/png, image/jpeg "
        'or application/octet-stream, a multipart/form-data upload, or JSON {"image": "<base64>"}',
    )


def _json_image(body: bytes) -> Part:
    """{"image": "<base64 or a data: URL>", "name": ..., and any other fields} -> the picture's bytes."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, "bad_json", f"the body is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), str):
        raise ApiError(
            400, "missing_image", 'the JSON must be an object with the picture as a string: {"image": "<base64>"}'
        )
    text: str = doc["image"]
    if text.startswith("data:"):
        header, comma, text = text.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ApiError(400, "bad_base64", "a data URL must be base64: data:image/png;base64,...")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(400, "bad_base64", f"the image is not valid base64 ({e})") from None
    if not data:
        raise ApiError(400, "empty_body", "the image in the JSON is empty; send a picture's bytes in base64")
    name = doc.get("name")
    fields = {k: v for k, v in doc.items() if k != "image" and isinstance(v, (str, int, float, bool))}
    return Part(data, name=name if isinstance(name, str) and name else "-", fields=_strings(fields))


def _strings(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) if not isinstance(v, str) else v for k, v in fields.items()}


def _multipart(content_type: str, body: bytes, limit: int | None) -> tuple[list[Part], dict[str, str]]:
    """The files of a multipart/form-data body (each a Part named by its filename) and its plain fields."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_multipart", "the multipart Content-Type has no boundary")
    parts: list[Part] = []
    fields: dict[str, str] = {}
    state: dict[str, Any] = {"ended": False}
    header_field: list[bytes] = []
    header_value: list[bytes] = []
    headers: dict[str, str] = {}
    data: list[bytes] = []

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(b: bytes, start: int, end: int) -> None:
        header_field.append(b[start:end])

    def on_header_value(b: bytes, start: int, end: int) -> None:
        header_value.append(b[start:end])

    def on_header_end() -> None:
        headers[b"".join(header_field).decode("latin-1").lower()] = b"".join(header_value).decode("latin-1")
        header_field.clear()
        header_value.clear()

    def on_part_data(b: bytes, start: int, end: int) -> None:
        data.append(b[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get("content-disposition"))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        content = b"".join(data)
        if filename is None:  # a plain field, e.g. label=7
            fields[name] = content.decode("utf-8", "replace")
            return
        if limit is not None and len(parts) >= limit:
            raise ApiError(
                413,
                "too_many_images",
                f"a batch holds at most {limit} pictures; send them in several requests "
                "(or start the server with a larger --max-batch)",
            )
        parts.append(Part(content, name=filename.decode("utf-8", "replace") or "-", headers={"field": name}))

    def on_end() -> None:
        state["ended"] = True

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise ApiError(400, "bad_multipart", f"the multipart body is malformed ({e})") from None
    if not state["ended"]:
        raise ApiError(400, "bad_multipart", "the multipart body ends before its closing boundary: it is truncated")
    return parts, fields
