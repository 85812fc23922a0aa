"""Reading rendered reports: a small DOM from the standard HTML parser, evaluations to render,
and headless Chromium to render them in.

The DOM is built with :mod:`html.parser`, which follows the HTML tokenizer closely enough to show
whether a hostile value turned into markup (an element or attribute that should not exist).
Chromium renders the file with the network shut: a proxy on a closed loopback port and a host
resolver that resolves nothing, so a report that tried to load anything would show it as broken
rather than reach out.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pipeline.evaluate import Evaluator
from pipeline.inputs import parse_json_document, parse_tenant, read_files
from pipeline.lab.fleet import Fleet
from pipeline.matrix import load_matrix
from pipeline.model import DeviceFacts, State, TenantSettings
from pipeline.output import Summary, write_json
from tests.support.devices import device

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

VOID = frozenset(
    "area base br col embed hr img input link meta source track wbr".split()  # noqa: SIM905
)
# Elements SVG allows to close themselves (``<rect .../>``), which HTMLParser reports as such.
SELF_CLOSING_OK = frozenset({"rect", "path", "circle", "line"})

HOSTILE_NAMES = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</td></tr></table><h1>forged</h1>",
    "</svg></title><script>alert(2)</script>",
    "evil\u202egnp.exe",  # right-to-left override
    "nul\x00byte\x07bell",
    "lone\ud800surrogate",
    "&amp; &lt;not-a-tag&gt;",
    "x" * 600,
)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, test: Callable[[Node], bool]) -> list[Node]:
        return [node for node in self.iter() if test(node)]

    def by_attr(self, name: str, value: str | None = None) -> list[Node]:
        return self.find_all(
            lambda n: name in n.attrs and (value is None or n.attrs[name] == value)
        )

    def by_id(self, element_id: str) -> Node:
        found = self.by_attr("id", element_id)
        assert len(found) == 1, f"expected one element with id {element_id!r}, got {len(found)}"
        return found[0]

    def text(self) -> str:
        return "".join(self.texts) + "".join(child.text() for child in self.children)


class _Builder(HTMLParser):
    """Builds a :class:`Node` tree and records every tag that was left open or closed wrongly."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.mismatches: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID and tag not in SELF_CLOSING_OK:
            self.mismatches.append(f"<{tag}/> is not a void element")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if self.stack[-1].tag != tag:
            self.mismatches.append(f"</{tag}> closes <{self.stack[-1].tag}>")
            while len(self.stack) > 1 and self.stack[-1].tag != tag:
                self.stack.pop()
        if len(self.stack) > 1:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)


@dataclass
class Page:
    root: Node
    mismatches: list[str]

    def metrics(self) -> dict[str, str]:
        """``data-metric`` name -> ``data-value``; a metric shown twice must agree with itself."""
        values: dict[str, str] = {}
        for node in self.root.by_attr("data-metric"):
            name, value = node.attrs["data-metric"], node.attrs.get("data-value", "")
            assert values.setdefault(name, value) == value, f"metric {name} disagrees"
        return values

    def metric_text(self, name: str) -> str:
        return self.root.by_attr("data-metric", name)[0].text()


def parse_page(html: str) -> Page:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    unclosed = [node.tag for node in builder.stack[1:]]
    mismatches = builder.mismatches + [f"<{tag}> never closed" for tag in unclosed]
    return Page(builder.root, mismatches)


# --- evaluations to render ----------------------------------------------------------------------


def evaluation_document(
    devices: list[DeviceFacts], tenant: TenantSettings, rejected: Any = ()
) -> Any:
    """What ``python -m pipeline evaluate --format json`` would write for these devices."""
    matrix = load_matrix()
    evaluator = Evaluator(matrix, tenant)
    out = io.StringIO()
    coverages = (evaluator.evaluate(facts) for facts in devices)
    write_json(out, coverages, list(rejected), Summary(matrix.version))
    return json.loads(out.getvalue())


def sample_evaluation() -> Any:
    """The bundled samples with the bundled tenant, as ``python -m pipeline evaluate`` sees them."""
    inputs = read_files([SAMPLES / "deviceavinfo.json"])
    tenant = parse_tenant(json.loads((SAMPLES / "tenant.json").read_text("utf-8")))
    return evaluation_document(inputs.devices, tenant, inputs.rejected)


def hostile_devices() -> list[DeviceFacts]:
    """Passive Windows clients (so indicators do not enforce on them) with hostile names."""
    return [
        device(device_id=f"hostile-{index}", device_name=name, state=State.PASSIVE)
        for index, name in enumerate(HOSTILE_NAMES)
    ]


def lab_evaluation(size: int, tenant: TenantSettings, extra: Sequence[DeviceFacts] = ()) -> Any:
    """The lab fleet's first ``size`` devices as deviceavinfo reports them, plus ``extra``."""
    fleet = Fleet(size)
    page = {"value": [fleet.deviceavinfo_record(index) for index in range(size)]}
    inputs = parse_json_document("lab", page)
    return evaluation_document([*extra, *inputs.devices], tenant, inputs.rejected)


# --- headless Chromium --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    dom: str
    screenshot: Path


def chromium_installed() -> bool:
    return Path(CHROMIUM).exists()


def render_in_chromium(
    page: Path, workdir: Path, *, width: int = 1280, height: int = 2400
) -> Rendered:
    """Open ``page`` once in headless Chromium: the DOM after parsing, and a screenshot."""
    screenshot = workdir / f"{page.stem}.png"
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-quic",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        # Nothing may leave the machine: every proxied request goes to a closed local port and
        # every host name fails to resolve.
        "--proxy-server=http://127.0.0.1:9",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={workdir / 'chromium-profile'}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
        f"--screenshot={screenshot}",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    if done.returncode != 0 or not screenshot.exists():
        tail = done.stderr.decode("utf-8", "replace")[-2000:]
        raise AssertionError(f"chromium failed with {done.returncode}: {tail}")
    return Rendered(dom=done.stdout.decode("utf-8"), screenshot=screenshot)
