"""The body of a 2xx answer: raw bytes, decoded with a bound on the output.

We ask for ``gzip, deflate, br`` and decompress the raw stream ourselves instead of
letting httpx do it, because only then can the size cap apply to the *decoded* body:
each step of a decoder yields at most :data:`_STEP` bytes, so a 2 kB compression bomb
costs at most ``max_bytes`` plus one step. Stacked or unknown codings are refused, and
a compressed body that ends before its compressed data does is refused rather than
parsed in part.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli  # type: ignore[import-untyped]
import httpx

from monitor.fetch.stop import _short, _Stop

#: The content codings we can decode with a bound on the output.
ACCEPT_ENCODING = "gzip, deflate, br"
#: Largest piece of output one decompression step may produce.
_STEP = 64 * 1024


async def _read_body(response: httpx.Response, max_bytes: int) -> bytes:
    decoder = _decoder(response.headers)
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
        raise _too_large(max_bytes, f"it announces {_size(int(declared[:19]))}")
    out = bytearray()
    raw = 0
    try:
        async for chunk in response.aiter_raw():
            # Compressed input that yields nothing (empty blocks) is bounded too.
            raw += len(chunk)
            if raw > max_bytes:
                raise _too_large(max_bytes, "as sent")
            for piece in decoder.decode(chunk):
                if len(out) + len(piece) > max_bytes:
                    raise _too_large(
                        max_bytes, "" if decoder.name == "identity" else "once decompressed"
                    )
                out += piece
    except (zlib.error, brotli.error) as exc:
        raise _Stop(
            "encoding", f"the {decoder.name} body is corrupt: {_short(str(exc), 100)}"
        ) from exc
    if raw and not decoder.finished():
        # A body cut off mid-stream (a connection closed early, with no length to tell):
        # parsed, it would store part of the feed and save its ETag for the rest.
        raise _Stop(
            "encoding",
            f"the {decoder.name} body ends before its compressed data does (cut off?); "
            "nothing of it is used",
        )
    return bytes(out)


def _too_large(max_bytes: int, how: str) -> _Stop:
    return _Stop(
        "too-large",
        f"response larger than {_size(max_bytes)}{' ' + how if how else ''}; "
        "raise fetch.max_bytes if this feed really is that big",
    )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


class _Decoder(Protocol):
    name: str

    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def finished(self) -> bool:
        """Whether the data so far ends where a complete body can end."""
        ...


def _decoder(headers: httpx.Headers) -> _Decoder:
    codings = [
        token.strip().lower()
        for value in headers.get_list("Content-Encoding")
        for token in value.split(",")
    ]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return _Identity()
    shown = ", ".join(_short(c, 30) for c in codings)
    if len(codings) > 1:
        raise _Stop("encoding", f"stacked content encodings ({shown}) are not accepted")
    if codings[0] in ("gzip", "x-gzip"):
        return _Gzip()
    if codings[0] == "deflate":
        return _Deflate()
    if codings[0] == "br":
        return _Brotli()
    raise _Stop("encoding", f"unsupported content encoding {shown!r} (we accept {ACCEPT_ENCODING})")


class _Identity:
    name = "identity"

    def decode(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def finished(self) -> bool:
        return True


def _inflate(inflater: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    """Feed ``data`` to ``inflater``, yielding output at most _STEP bytes at a time."""
    while True:
        out = inflater.decompress(data, _STEP)
        if out:
            yield out
        if inflater.eof:
            return
        tail = inflater.unconsumed_tail
        # A full step may leave output pending inside zlib even with no input left.
        if len(out) < _STEP and (not tail or len(tail) == len(data)):
            return
        data = tail


class _Gzip:
    """gzip, one member or several in a row; whatever follows them is ignored.

    The output is never decoded again: a gzip file inside the body stays bytes.
    """

    name = "gzip"

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._trailing = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        data, self._pending = self._pending + data, b""
        while data and not self._trailing:
            if self._inflater.eof:
                if len(data) < 2:
                    self._pending = data
                    return
                if data[:2] != b"\x1f\x8b":
                    self._trailing = True  # padding or junk after the last member
                    return
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            yield from _inflate(self._inflater, data)
            data = self._inflater.unused_data if self._inflater.eof else b""

    def finished(self) -> bool:
        return self._trailing or self._inflater.eof


class _Deflate:
    """deflate: zlib-wrapped as the RFC says, or raw deflate as some servers send."""

    name = "deflate"

    def __init__(self) -> None:
        self._inflater: zlib._Decompress | None = None
        self._head = b""

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._inflater is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            cmf, flg = data[0], data[1]
            wrapped = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0
            self._inflater = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        if not self._inflater.eof:
            yield from _inflate(self._inflater, data)

    def finished(self) -> bool:
        return self._inflater is not None and self._inflater.eof


class _Brotli:
    """br, through brotli's ``output_buffer_limit`` (brotli >= 1.2)."""

    name = "br"

    def __init__(self) -> None:
        self._decompressor = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._decompressor.is_finished():
            return  # junk after the end of the stream
        out: bytes = self._decompressor.process(data, output_buffer_limit=_STEP)
        while True:
            if out:
                yield out
            # A full step may leave output pending inside the decoder: drain it (with
            # no new input, as brotli requires) before taking more input.
            if len(out) < _STEP and self._decompressor.can_accept_more_data():
                return
            out = self._decompressor.process(b"", output_buffer_limit=_STEP)
            if not out and not self._decompressor.can_accept_more_data():
                raise brotli.error("the decoder makes no progress")

    def finished(self) -> bool:
        return bool(self._decompressor.is_finished())
