"""Netskope: a URL list (REST API v2) kept equal to the block list.

The calls used, all under ``https://<tenant>.goskope.com`` with the header
``Netskope-Api-Token`` (the token needs read and write on ``/api/v2/policy/urllist`` and
``/api/v2/policy/urllist/deploy``):

* ``GET /api/v2/policy/urllist`` finds the list by name, ``GET .../urllist/{id}`` reads it;
* ``POST /api/v2/policy/urllist`` creates it: ``{"name", "data": {"type": "exact", "urls"}}``;
* ``PUT /api/v2/policy/urllist/{id}`` replaces its values;
* ``PATCH /api/v2/policy/urllist/{id}/append`` adds values; ``.../remove`` removes them. Public
  integrations are seen calling ``append`` and ``replace``; ``remove`` is UNVERIFIED, so when a
  tenant answers it with 404 or 405 the removal is made by replacing the list instead;
* ``POST /api/v2/policy/urllist/deploy`` deploys.

Every change stays *pending* until deployed, and a deploy applies every pending URL-list change
of the tenant, other admins' edits included. Deploying is therefore a setting, off by default,
and never done when nothing was written; the result names the other lists a deploy also
applied (https://docs.netskope.com/en/url-lists/).

Values (https://docs.netskope.com/en/url-list-best-practices.html): an exact-type list matches
``example.com`` and its paths; ``*.example.com`` matches the subdomains (whether it also matches
the name itself differs between versions of that page, so a domain is written as both);
``host:port/path`` entries are allowed. Single IPv4 addresses are sent (IP entries are a
feature Netskope enables per tenant; where it is off, the refused values are reported); IPv6
and networks are reported as not representable. Payloads are chunked well under the 7 MB a
public script keeps to (the real limit is UNVERIFIED).

Rate limits: a 429 is retried after ``Retry-After`` or, failing that, ``RateLimit-Reset``
(which header Netskope sends is UNVERIFIED; both are read).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from pipeline.act.blocklist.build import Blocklist
from pipeline.act.blocklist.formats import Omission
from pipeline.act.blocklist.push.base import (
    ApiSession,
    Clock,
    ListPushTarget,
    Prepared,
    PushApiError,
    PushConfigError,
    PushMode,
    PushResponseError,
    RemoteList,
    SentRequest,
    Sleep,
)

log = logging.getLogger(__name__)

_URLLIST: Final = "/api/v2/policy/urllist"
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST: Final = rf"{_LABEL}(?:\.{_LABEL})+"
_PATH: Final = r"/[A-Za-z0-9\-._~/!,=:@&+%?]*"
_VALUE: Final = re.compile(rf"\*\.{_HOST}|{_HOST}(?::[0-9]{{1,5}})?(?:{_PATH})?")
# Characters Netskope refuses in a list name.
_NAME_FORBIDDEN: Final = frozenset("<>/!@#$%^&*(){};+=,?.|:'\"\\")


class TokenHeader:
    """The ``Netskope-Api-Token`` header. A token cannot be renewed here: 401 ends the push."""

    def __init__(self, token: str) -> None:
        if not token.strip():
            raise PushConfigError("netskope", "NETSKOPE_API_TOKEN", "the token is empty")
        self._token = token.strip()

    def headers(self) -> Mapping[str, str]:
        return {"Netskope-Api-Token": self._token}

    def renew(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "TokenHeader(<redacted>)"


@dataclass(frozen=True)
class NetskopeSettings:
    """Where and how to push. The token is never shown in ``repr``."""

    base_url: str
    list_name: str
    api_token: str = field(default="", repr=False)
    deploy: bool = False
    chunk_size: int = 2000
    max_payload_bytes: int = 4_000_000

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, dry_run: bool = False) -> NetskopeSettings:
        """Read ``NETSKOPE_*`` settings; a dry run needs only the list name."""
        settings = cls(
            base_url=env.get("NETSKOPE_BASE_URL", "").strip(),
            list_name=_checked_name(env.get("NETSKOPE_LIST_NAME", "")),
            api_token=env.get("NETSKOPE_API_TOKEN", ""),
            deploy=_flag(env, "NETSKOPE_DEPLOY"),
        )
        if not dry_run:
            if not settings.base_url.startswith(
                ("https://", "http://127.0.0.1", "http://localhost")
            ):
                raise PushConfigError("netskope", "NETSKOPE_BASE_URL", "must be an https URL")
            if not settings.api_token.strip():
                raise PushConfigError("netskope", "NETSKOPE_API_TOKEN", "is required")
        return settings


class NetskopeTarget(ListPushTarget):
    """A Netskope URL list (exact type) as a push target."""

    name = "netskope"

    def __init__(
        self,
        list_name: str,
        session: ApiSession | None,
        *,
        deploy: bool = False,
        dry_run: bool = False,
        chunk_size: int = 2000,
        max_payload_bytes: int = 4_000_000,
        max_refused: int = 100,
    ) -> None:
        super().__init__(
            session,
            dry_run=dry_run,
            chunk_size=chunk_size,
            max_payload_bytes=max_payload_bytes,
            max_refused=max_refused,
        )
        self.list_name = _checked_name(list_name)
        self.deploy = deploy

    @classmethod
    def from_settings(
        cls,
        settings: NetskopeSettings,
        *,
        dry_run: bool = False,
        http: httpx.Client | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> NetskopeTarget:
        session = None
        if not dry_run:
            session = ApiSession(
                cls.name,
                settings.base_url,
                TokenHeader(settings.api_token),
                http=http,
                clock=clock,
                sleep=sleep,
            )
        return cls(
            settings.list_name,
            session,
            deploy=settings.deploy,
            dry_run=dry_run,
            chunk_size=settings.chunk_size,
            max_payload_bytes=settings.max_payload_bytes,
        )

    def describe(self) -> str:
        return f"URL list {self.list_name}"

    def prepare(self, blocklist: Blocklist) -> Prepared:
        values: list[str] = []
        omitted: list[Omission] = []

        for entry in blocklist.entries:
            v6 = entry.network is not None and entry.network.version == 6
            if entry.kind == "domain":
                values.extend([entry.value, f"*.{entry.value}"])
            elif entry.kind == "host" or (entry.kind in ("ip", "url") and not v6):
                values.append(entry.value)
            elif entry.kind == "network":
                omitted.append(
                    Omission(
                        entry.indicator_id, entry.value, "a Netskope URL list takes no networks"
                    )
                )
            else:
                omitted.append(
                    Omission(entry.indicator_id, entry.value, "IPv6 is not sent to Netskope")
                )

        for exemption in blocklist.exemptions:
            omitted.append(
                Omission(
                    exemption.allowed.indicator_id,
                    exemption.allowed.value,
                    f"a URL list cannot exempt part of {exemption.within.value} (indicator "
                    f"{exemption.within.indicator_id}); it stays blocked there",
                )
            )
        return Prepared(tuple(values), tuple(omitted))

    def _value_problem(self, value: str) -> str | None:
        if _VALUE.fullmatch(value):
            return None
        return "not a Netskope exact URL list entry (host, *.domain, host:port/path or IPv4)"

    def _read(self) -> RemoteList:
        listing = _items(self.session.call("GET", _URLLIST).body)
        if listing is None:
            raise PushResponseError(self.name, f"GET {_URLLIST}", "the answer is not a list")

        mine = [item for item in listing if item.get("name") == self.list_name]
        others_pending = tuple(
            str(item.get("name"))
            for item in listing
            if item.get("name") != self.list_name and item.get("pending")
        )
        if len(mine) > 1:
            raise PushResponseError(
                self.name, f"GET {_URLLIST}", f"{len(mine)} URL lists are named {self.list_name}"
            )
        if not mine:
            return RemoteList(
                destination=f"URL list {self.list_name} (new)",
                values=None,
                details={"others_pending": others_pending},
            )

        list_id = mine[0].get("id")
        if not isinstance(list_id, int) or isinstance(list_id, bool):
            raise PushResponseError(self.name, f"GET {_URLLIST}", "the list has no numeric id")
        path = f"{_URLLIST}/{list_id}"
        item = _single(self.session.call("GET", path).body)
        data = item.get("data") if item else None
        if not isinstance(data, dict):
            raise PushResponseError(self.name, f"GET {path}", "the list has no data")
        if data.get("type") != "exact":
            raise PushResponseError(
                self.name, f"GET {path}", "the list is not of type exact; it is not ours to fill"
            )
        urls = data.get("urls", [])
        if not isinstance(urls, list) or not all(isinstance(url, str) for url in urls):
            raise PushResponseError(self.name, f"GET {path}", "urls is not a list of text")
        return RemoteList(
            destination=f"URL list {self.list_name} (id {list_id})",
            values=tuple(urls),
            details={
                "id": list_id,
                "values": list(urls),
                "others_pending": others_pending,
                "was_pending": bool(item.get("pending")) if item else False,
            },
        )

    def _replace(self, remote: RemoteList, values: Sequence[str]) -> RemoteList:
        body = self._body(values)
        list_id = remote.details.get("id")
        if list_id is None:
            # Not idempotent: a create retried after a lost answer could make two lists.
            answer = self.session.call("POST", _URLLIST, body=body, values=values, idempotent=False)
            created = _single(answer.body)
            list_id = created.get("id") if created else None
            if not isinstance(list_id, int) or isinstance(list_id, bool):
                raise PushResponseError(self.name, f"POST {_URLLIST}", "no id for the new list")
        else:
            self.session.call("PUT", f"{_URLLIST}/{list_id}", body=body, values=values)
        return RemoteList(
            destination=f"URL list {self.list_name} (id {list_id})",
            values=tuple(values),
            details={**remote.details, "id": list_id, "values": list(values)},
        )

    def _add(self, remote: RemoteList, values: Sequence[str]) -> None:
        list_id = remote.details["id"]
        self.session.call(
            "PATCH", f"{_URLLIST}/{list_id}/append", body=self._body(values), values=values
        )
        remote.details["values"].extend(values)

    def _remove(self, remote: RemoteList, values: Sequence[str]) -> None:
        list_id = remote.details["id"]
        gone = set(values)
        keep = [value for value in remote.details["values"] if value not in gone]

        if not remote.details.get("no_remove"):
            try:
                self.session.call(
                    "PATCH", f"{_URLLIST}/{list_id}/remove", body=self._body(values), values=values
                )
            except PushApiError as error:
                if error.status not in (404, 405):
                    raise
                log.warning(
                    "netskope: %s is not available (HTTP %s); removing by replacing the list",
                    error.endpoint,
                    error.status,
                )
                remote.details["no_remove"] = True
            else:
                remote.details["values"] = keep
                return

        self._put_all(list_id, keep)
        remote.details["values"] = keep

    def _put_all(self, list_id: int, values: list[str]) -> None:
        # Values already in the list were accepted once, so no isolating of refusals here.
        chunks = list(self.chunks(values)) or [[]]
        self.session.call(
            "PUT", f"{_URLLIST}/{list_id}", body=self._body(chunks[0]), values=chunks[0]
        )
        for chunk in chunks[1:]:
            self.session.call(
                "PATCH", f"{_URLLIST}/{list_id}/append", body=self._body(chunk), values=chunk
            )

    def _activate(self, remote: RemoteList) -> tuple[bool, tuple[str, ...]]:
        others = remote.details.get("others_pending", ())
        if not self.deploy:
            return False, (
                "deploy is off: the change is pending in Netskope until someone deploys "
                "URL lists (a deploy applies every pending URL-list change of the tenant)",
            )

        notes: list[str] = []
        if others:
            notes.append(
                "the deploy also applied pending changes to other URL lists: "
                + ", ".join(sorted(others)[:20])
            )
            log.warning("netskope: deploying also applies pending lists %s", sorted(others))
        if remote.details.get("was_pending"):
            notes.append("the list already had pending changes, which the deploy applied too")
        self.session.call("POST", f"{_URLLIST}/deploy")
        return True, tuple(notes)

    def _plan_requests(
        self, mode: PushMode, add: Sequence[str], remove: Sequence[str]
    ) -> list[SentRequest]:
        # Without reading, the list's id is unknown; the plan names it by the list name.
        item = f"{_URLLIST}/{{id of {self.list_name}}}"
        planned: list[SentRequest] = []
        if mode == "full":
            chunks = list(self.chunks(add)) or [[]]
            planned.append(SentRequest("PUT", item, tuple(chunks[0])))
            add_chunks = chunks[1:]
        else:
            add_chunks = list(self.chunks(add))
        planned.extend(SentRequest("PATCH", f"{item}/append", tuple(c)) for c in add_chunks)
        planned.extend(
            SentRequest("PATCH", f"{item}/remove", tuple(c)) for c in self.chunks(remove)
        )
        if self.deploy:
            planned.append(SentRequest("POST", f"{_URLLIST}/deploy"))
        return planned

    def _body(self, values: Sequence[str]) -> dict[str, Any]:
        return {"name": self.list_name, "data": {"type": "exact", "urls": list(values)}}


def _items(body: Any) -> list[dict[str, Any]] | None:
    """The list objects of a listing: a JSON array, or ``{"data": [...]}`` in some versions."""
    if isinstance(body, dict):
        body = body.get("data")
    if not isinstance(body, list):
        return None
    return [item for item in body if isinstance(item, dict)]


def _single(body: Any) -> dict[str, Any] | None:
    # Creating answers with an array holding the new list; reading one answers with the object.
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return body if isinstance(body, dict) else None


def _checked_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 255:
        raise PushConfigError("netskope", "NETSKOPE_LIST_NAME", "missing or too long")
    bad = sorted(set(name) & _NAME_FORBIDDEN)
    if bad or not name.isprintable():
        raise PushConfigError(
            "netskope", "NETSKOPE_LIST_NAME", f"holds characters Netskope refuses: {bad}"
        )
    return name


def _flag(env: Mapping[str, str], key: str) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise PushConfigError("netskope", key, f"{raw!r} is not true or false")
