"""Which answer a client prefers: JSON (curl, load balancers, everything by default) or the HTML
page (a browser), from its Accept header with q-values (RFC 9110, 12.5.1).

A browser sends ``text/html,application/xhtml+xml,...,*/*;q=0.8``: HTML preferred. curl sends
``*/*``, a load balancer's probe nothing or ``application/json``: JSON, and the answer of GET /
stays as fast as ever, since an Accept without "html" in it is not even parsed.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

HTML, JSON = "text/html", "application/json"
MAX_ACCEPT = 2048  # characters of Accept read: a real one is far shorter


def quality(accept: str, media_type: str) -> float:
    """The q-value ``accept`` gives ``media_type``: the most specific range that matches it
    (type/subtype over type/* over */*); 0 when none does."""
    kind = media_type.split("/", 1)[0]
    best, specificity = 0.0, -1
    for item in accept[:MAX_ACCEPT].split(","):
        media, *parameters = (part.strip() for part in item.split(";"))
        media = media.lower()
        rank = 2 if media == media_type else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if rank > specificity:
            specificity, best = rank, _q(parameters)
    return best


def _q(parameters: list[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return 0.0
            return q if 0.0 <= q <= 1.0 else 0.0
    return 1.0


def prefers_html(accept: str | None, query: str = "") -> bool:
    """The page rather than JSON: ``?format=html`` or ``?format=json`` decide; otherwise an Accept
    that gives text/html a higher q-value than application/json."""
    asked = format_asked(query)
    if asked is not None:
        return asked == "html"
    if not accept or "html" not in accept:
        return False
    return quality(accept, HTML) > quality(accept, JSON)


FORMATS = ("json", "html")


class FormatError(ValueError):
    """``?format=`` other than json or html."""


def format_asked(query: str) -> str | None:
    """The last ``format`` of ``query`` (None: none); FormatError for anything but json or html."""
    if "format" not in query:
        return None
    asked = [value for name, value in parse_qsl(query, keep_blank_values=True) if name == "format"]
    if not asked:
        return None
    if asked[-1] not in FORMATS:
        raise FormatError(f"format: expected json or html, got {asked[-1][:40]!r}")
    return asked[-1]
