"""A rendered list made ready to publish: content hash, version, ETag and a diff.

Pure: the caller keeps the previously published list (in a blob, a table, memory) and passes it
back in. Re-rendering unchanged entries keeps the previous version and content, so a poller that
sends ``If-None-Match`` gets "not modified" instead of a new copy whose only change is an RPZ
serial or a header.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace

from pipeline.act.blocklist.build import ListName
from pipeline.act.blocklist.formats import FormatName, Rendered

__all__ = ["Diff", "Published", "etag_matches", "publish"]


@dataclass(frozen=True, slots=True)
class Diff:
    added: int
    removed: int


@dataclass(frozen=True, slots=True)
class Published:
    format: FormatName
    list_name: ListName
    content: str
    sha256: str
    version: int
    entries: tuple[str, ...]
    diff: Diff

    @property
    def etag(self) -> str:
        """A strong HTTP ETag (quoted) derived from the content hash."""
        return f'"{self.sha256}"'

    @property
    def changed(self) -> bool:
        return self.diff.added > 0 or self.diff.removed > 0

    def as_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "list": self.list_name,
            "content": self.content,
            "sha256": self.sha256,
            "etag": self.etag,
            "version": self.version,
            "diff": {"added": self.diff.added, "removed": self.diff.removed},
        }


def publish(rendered: Rendered, previous: Published | None = None) -> Published:
    """Version ``rendered`` against the previously published copy of the same format and list."""
    if previous is not None and (previous.format, previous.list_name) != (
        rendered.format,
        rendered.list_name,
    ):
        raise ValueError(
            f"previous list is {previous.format}/{previous.list_name}, "
            f"not {rendered.format}/{rendered.list_name}"
        )

    if previous is None:
        return Published(
            format=rendered.format,
            list_name=rendered.list_name,
            content=rendered.content,
            sha256=_sha256(rendered.content),
            version=1,
            entries=rendered.entries,
            diff=Diff(added=len(rendered.entries), removed=0),
        )

    diff = _diff(previous.entries, rendered.entries)
    if diff == Diff(0, 0):
        return replace(previous, diff=diff)
    return Published(
        format=rendered.format,
        list_name=rendered.list_name,
        content=rendered.content,
        sha256=_sha256(rendered.content),
        version=previous.version + 1,
        entries=rendered.entries,
        diff=diff,
    )


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header value names ``etag`` (RFC 9110 weak comparison)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True

    wanted = _opaque(etag)
    return any(_opaque(candidate) == wanted for candidate in if_none_match.split(","))


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def _diff(before: tuple[str, ...], after: tuple[str, ...]) -> Diff:
    old, new = Counter(before), Counter(after)
    return Diff(added=sum((new - old).values()), removed=sum((old - new).values()))


def _sha256(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()
