"""Receive one file of a multipart request as a stream: written to a temporary file in chunks
while it is hashed and counted, stopped with 413 as soon as it passes the size limit and with
408 when the client sends nothing for ``idle_seconds``. The upload is never held in memory
whole, holds no database connection or thread while it streams, and nothing is left behind
when it is refused. Error messages name the client's file name, never the temporary file."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class ReceivedFile:
    path: Path
    sha256: str
    size_bytes: int
    filename: str | None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def display_name(self) -> str:
        """How messages call the upload: the client's file name, or "the upload"."""
        return self.filename or "the upload"


def clean_filename(raw: bytes) -> str | None:
    """The client's file name as text we can show and store: no path, no control characters
    (a NUL byte would not even fit in a database text column), at most 255 characters."""
    text = raw.decode(errors="replace").replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] != "C").strip()
    return text[:255] or None


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, f"upload larger than the limit of {max_bytes} bytes")


async def _chunks(request: Request, idle_seconds: float):  # noqa: ANN202
    """The body's chunks; 408 when the client sends nothing for ``idle_seconds``."""
    stream = request.stream().__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=idle_seconds)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise HTTPException(408, f"the upload stalled: nothing arrived for {idle_seconds:g} s") from None
        yield chunk


async def receive_file(request: Request, *, field: str, max_bytes: int,
                       idle_seconds: float = 60.0) -> ReceivedFile:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(415, f"send multipart/form-data with the file in field {field!r}")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + MULTIPART_OVERHEAD:
        raise too_large(max_bytes)

    fd, tmp = tempfile.mkstemp(prefix="simudy-upload-")
    out = os.fdopen(fd, "wb")
    digest = hashlib.sha256()
    state = {"size": 0, "in_field": False, "found": False, "filename": None, "over": False}
    headers: dict[bytes, bytes] = {}
    name_buf = [b"", b""]

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        name_buf[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        name_buf[1] += data[start:end]

    def on_header_end() -> None:
        headers[name_buf[0].lower()] = name_buf[1]
        name_buf[0], name_buf[1] = b"", b""

    def on_headers_finished() -> None:
        _, opts = parse_options_header(headers.get(b"content-disposition", b""))
        state["in_field"] = opts.get(b"name") == field.encode() and not state["found"]
        if state["in_field"]:
            state["found"] = True
            fname = opts.get(b"filename")
            state["filename"] = clean_filename(fname) if fname else None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not state["in_field"] or state["over"]:
            return
        chunk = data[start:end]
        state["size"] += len(chunk)
        if state["size"] > max_bytes:
            state["over"] = True
            return
        digest.update(chunk)
        out.write(chunk)

    def on_part_end() -> None:
        state["in_field"] = False

    parser = MultipartParser(params[b"boundary"], callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
        "on_part_end": on_part_end})
    try:
        async for chunk in _chunks(request, idle_seconds):
            parser.write(chunk)
            if state["over"]:
                raise too_large(max_bytes)
        parser.finalize()
        out.close()
        if not state["found"]:
            raise HTTPException(422, f"multipart field {field!r} (the file) is missing")
    except HTTPException:
        out.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    except Exception as err:  # malformed multipart body, or the client went away
        out.close()
        Path(tmp).unlink(missing_ok=True)
        raise HTTPException(400, f"malformed multipart body: {str(err)[:200]}") from None
    return ReceivedFile(Path(tmp), digest.hexdigest(), state["size"], state["filename"])
