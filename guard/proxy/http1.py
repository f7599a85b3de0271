"""HTTP/1.1 header blocks read without the email package.

http.server and http.client parse every header block with `email.parser` (a feed parser, a
policy object, a regex per line): about a tenth of the proxy's time per request, twice per
request. A block of plain `Name: value` lines -- every block real clients and APIs send -- is
read here into the same `HTTPMessage`, with the same names and values as email's compat32
policy gives; anything else (folded lines, malformed lines) goes to email's parser as before."""
from __future__ import annotations

import email.parser
import http.client
import re
from typing import Any, BinaryIO

_MAXLINE = 65536
_MAXHEADERS = 100
# the header-line test of email.feedparser (headerRE) without its "From " and continuation cases
_NAME = re.compile(r"[\041-\071\073-\176]+\Z")


def parse_headers(fp: BinaryIO, _class: type[http.client.HTTPMessage] = http.client.HTTPMessage
                  ) -> http.client.HTTPMessage:
    """`http.client.parse_headers`, same errors (LineTooLong, HTTPException), same result."""
    lines: list[bytes] = []
    while True:
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
        if len(lines) > _MAXHEADERS:
            raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
    pairs: list[tuple[str, str]] = []
    for raw in lines:
        text = raw.decode("iso-8859-1")
        name, sep, value = text.partition(":")
        if not sep or not _NAME.match(name):
            # folded, "From ", or not a header at all: email's own rules (and its defects)
            hstring = b"".join(lines).decode("iso-8859-1")
            return email.parser.Parser(_class=_class).parsestr(hstring)  # type: ignore[no-any-return]
        # compat32's header_source_parse: value.lstrip(' \t'), then rstrip('\r\n')
        pairs.append((name, value.lstrip(" \t").rstrip("\r\n")))
    msg = _class()
    msg._headers = pairs  # type: ignore[attr-defined]  # what email's parser fills in, in order
    return msg


class Response(http.client.HTTPResponse):
    """http.client's response with the header block read by `parse_headers` above; the rest of
    `begin` is http.client's own."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            parse_headers(self.fp)   # a 100 Continue's headers: skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_headers(self.fp)
        tr_enc = self.headers.get("transfer-encoding")
        self.chunked = bool(tr_enc and tr_enc.lower() == "chunked")
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                n = int(length)
            except ValueError:
                n = -1
            self.length = n if n >= 0 else None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


def use_fast_responses(conn: Any) -> None:
    conn.response_class = Response
