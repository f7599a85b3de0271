"""guard's own header-block reader gives what http.client's (the email package) gives."""
import http.client
import io

import pytest

from guard.proxy.http1 import parse_headers

BLOCKS = [
    b"Host: a\r\nContent-Length: 12\r\nX-Api-Key:  k \r\n\r\n",
    b"host:a\r\ncontent-type: application/json\r\nx-dup: 1\r\nX-Dup: 2\r\n\r\nBODY",
    b"Empty:\r\nTab:\tv\t\r\nColon: a:b:c\r\n\n",
    b"Folded: a\r\n  b\r\nNext: c\r\n\r\n",          # continuation line: email's rules
    b"bad line\r\nHost: x\r\n\r\n",                  # not a header: email's rules
    b"Spaced Name: v\r\nHost: x\r\n\r\n",
    b"",
    "Caf\u00e9: \u00e9t\u00e9\r\n\r\n".encode("latin-1"),
]


@pytest.mark.parametrize("block", BLOCKS)
def test_same_names_values_and_rest_as_http_client(block):
    ours, theirs = io.BytesIO(block), io.BytesIO(block)
    a, b = parse_headers(ours), http.client.parse_headers(theirs)
    assert list(a.items()) == list(b.items())
    assert a.get_all("x-dup") == b.get_all("x-dup")
    assert [type(d) for d in a.defects] == [type(d) for d in b.defects]
    assert ours.read() == theirs.read()


def test_too_many_headers_and_too_long_lines_fail_as_http_client_does():
    with pytest.raises(http.client.HTTPException):
        parse_headers(io.BytesIO(b"".join(b"h%d: v\r\n" % i for i in range(101)) + b"\r\n"))
    with pytest.raises(http.client.LineTooLong):
        parse_headers(io.BytesIO(b"h: " + b"x" * 70000 + b"\r\n\r\n"))
