"""Parts behind an optional extra say which extra to install when it is missing."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_the_proxy_names_the_gateway_extra_when_httpx_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # as if not installed
    for module in [name for name in sys.modules if name.startswith("secmw.proxy.")]:
        monkeypatch.delitem(sys.modules, module)
    proxy = importlib.import_module("secmw.proxy")
    assert proxy.EgressGuard is not None  # the parts without httpx still load
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'secmw\[gateway\]'"):
        proxy.ReverseProxy  # noqa: B018 - the lazy attribute is the import


def test_the_fastapi_helpers_name_their_extra_when_fastapi_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "secmw.fastapi", raising=False)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'secmw\[fastapi\]'"):
        importlib.import_module("secmw.fastapi")
