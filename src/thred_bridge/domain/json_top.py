"""The top level of a JSON document read as it streams in, nested objects and arrays dropped as they pass.

A payout's answer lists a summary of every payment it settles: 12 MB of JSON for 50,000 payments, of which
the bridge reads one field, the payout's ``id``. Held whole it cost 12 MB of bytes, the same again while the
HTTP client joined its chunks, and parsed (even keeping only the top level) ~17 MB more, at the very moment
the payout's own request body is in memory. :class:`TopLevel` keeps a document whole while it is small, and
past ``keep`` keeps only its *skeleton*: the top-level object with each nested object or array replaced by
``null``, which parses to the top-level fields. Each chunk is walked bracket to bracket with one regular
expression that steps over plain text and whole strings in C, so the Python loop turns once per bracket.
"""

from __future__ import annotations

import re
from typing import Final

# Text up to the next bracket or string that does not close in what has arrived; whole strings included.
_RUN: Final = re.compile(rb'(?:[^"\[\]{}\\]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)
_CLOSER: Final = {ord("{"): ord("}"), ord("["): ord("]")}
_NULL: Final = b"null"


class TopLevel:
    """Fed a document's chunks in order; :meth:`body` is the whole document if it stayed within ``keep``
    bytes, else its skeleton (see the module). ``ok`` is False when the skeleton cannot stand for the
    document: it was cut short inside a string or a container, or is not well-bracketed JSON."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._whole: list[bytes] | None = []
        self._size = 0
        self._skeleton = bytearray()
        self._carry = b""  # a string that has not closed yet
        self._open: list[int] = []  # closers of the containers the walk is in
        self._broken = False

    @property
    def whole(self) -> bool:
        """True while every byte is kept (the document so far fits in ``keep``)."""
        return self._whole is not None

    @property
    def ok(self) -> bool:
        return self.whole or not (self._broken or self._carry or self._open)

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._whole is not None:
            self._whole.append(chunk)
            if self._size <= self._keep:
                return  # small documents are kept, never walked
            kept, self._whole = self._whole, None
            for piece in kept:
                self._walk(piece)
        else:
            self._walk(chunk)

    def body(self) -> bytes:
        """The document, or its skeleton once it outgrew ``keep``."""
        return b"".join(self._whole) if self._whole is not None else bytes(self._skeleton)

    def _walk(self, chunk: bytes) -> None:
        if self._broken or not chunk:
            return
        data = self._carry + chunk if self._carry else chunk
        self._carry = b""
        at, end = 0, len(data)
        skeleton, opened = self._skeleton, self._open
        while at < end:
            stop = _RUN.match(data, at).end()  # type: ignore[union-attr]  # matches, if only nothing
            if len(opened) <= 1:  # the top level (or around it): kept as it is
                skeleton += data[at:stop]
            if stop == end:
                return
            byte = data[stop]
            if byte == 0x22:  # '"': a string that goes on in the next chunk
                self._carry = data[stop:]
                return
            if byte in _CLOSER:
                if len(opened) == 1:
                    skeleton += _NULL
                elif not opened:
                    skeleton.append(byte)
                opened.append(_CLOSER[byte])
            elif byte == 0x5C or not opened or opened.pop() != byte:
                self._broken = True  # a backslash outside a string, or a closer that does not match
                return
            elif not opened:
                skeleton.append(byte)
            at = stop + 1
