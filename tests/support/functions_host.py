"""Index a function app as the Azure Functions Python worker does, without the host.

The real host cannot run here; its Python worker's indexer can. ``azure_functions_runtime`` (the
worker library) imports ``function_app.py``, collects the functions, and validates every
function's bindings against its Python signature, refusing what the host would refuse. It is
installed into the virtualenv with::

    .venv/bin/pip install --no-deps --ignore-requires-python \\
        azure-functions-runtime azurefunctions-extensions-base

(the package declares Python >= 3.13; its loader works on 3.11, which is what we deploy).

The worker speaks gRPC to the host; the validation only needs a few of its message types, which
``PROTOS`` stands in for with plain records of their keyword arguments.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

_MISSING = (
    "azure-functions-runtime is not installed: .venv/bin/pip install --no-deps "
    "--ignore-requires-python azure-functions-runtime azurefunctions-extensions-base"
)
loader = pytest.importorskip("azure_functions_runtime.loader", reason=_MISSING)
functions = pytest.importorskip("azure_functions_runtime.functions", reason=_MISSING)
meta = pytest.importorskip("azure_functions_runtime.bindings.meta", reason=_MISSING)

FunctionLoadError = functions.FunctionLoadError


def _message(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


class _BindingInfo(SimpleNamespace):
    """``BindingInfo``: directions as the worker's protobuf numbers them, and a constructor."""


for _name, _number in (("in", 0), ("out", 1), ("inout", 2), ("undefined", 0)):
    setattr(_BindingInfo, _name, _number)

PROTOS = SimpleNamespace(
    BindingInfo=_BindingInfo, RpcRetryOptions=_message, RpcFunctionMetadata=_message
)


def index_app(script: Path) -> tuple[list[Any], list[SimpleNamespace]]:
    """Import ``script`` as the worker does and validate it; returns (functions, metadata).

    Raises the worker's own errors (``FunctionLoadError``, ``ValueError``) for a bad app.
    """
    directory = str(script.parent)
    sys.path.insert(0, directory)
    try:
        sys.modules.pop(script.stem, None)
        importlib.invalidate_caches()
        indexed = loader.index_function_app(str(script))
        meta.load_binding_registry()
        metadata, _logs = loader.process_indexed_function(
            PROTOS, functions.Registry(), indexed, directory
        )
    finally:
        sys.path.remove(directory)
    return indexed, metadata
