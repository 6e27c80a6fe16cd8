"""Decision providers: anything that votes on candidate entries.

A provider kind is one module of this package that declares ``KIND`` (the name used in
``[providers.<name>] kind = ...``), ``CONFIG_CLASS`` and ``PROVIDER_CLASS``; it is found by
``provider_kinds`` without being listed anywhere else. Rule strategies (strategies/) are
providers too.

Installed packages add kinds through the ``bt.providers`` entry-point group, and a config
may name a provider class directly (``class = "pkg.mod:MyProvider"``); both are loaded by
backtester/plugins.py only when a config asks for them.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

from backtester.providers.base import Candidates, MarketContext, Provider, Votes

_PLUGIN_KINDS: dict[str, Any] = {}  # kinds loaded from the bt.providers entry points


@functools.cache
def _builtin_kinds() -> dict[str, ModuleType]:
    kinds = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "KIND"):
            kinds[module.KIND] = module
    return kinds


def provider_kinds() -> dict[str, Any]:
    """kind -> module, for every module here that declares KIND (importing one loads no
    model library: scikit-learn and torch load when a model first trains), then the
    entry-point kinds loaded so far (module-like: KIND, CONFIG_CLASS, PROVIDER_CLASS)."""
    return {**_builtin_kinds(), **_PLUGIN_KINDS}


def known_kind(kind: object) -> bool:
    """Whether ``kind`` is one of bt's own provider kinds or one an installed package
    registers in ``bt.providers`` (read from the package metadata: nothing is imported)."""
    from backtester.plugins import PROVIDER_GROUP, entry_point_names

    return isinstance(kind, str) and (kind in _builtin_kinds()
                                      or kind in entry_point_names(PROVIDER_GROUP))


def load_kind(kind: str) -> Any | None:
    """The module of ``kind``: a built-in, else the ``bt.providers`` entry point of that
    name (loaded and checked now), else None."""
    if kind in _builtin_kinds():
        return _builtin_kinds()[kind]
    if kind not in _PLUGIN_KINDS:
        from backtester.plugins import entry_point_kind

        found = entry_point_kind(kind)
        if found is None:
            return None
        _PLUGIN_KINDS[kind] = found
    return _PLUGIN_KINDS[kind]


def provider_kind(config: Any) -> str:
    """The kind of a provider config object (not one built by ``class = ...``)."""
    return next(kind for kind, module in provider_kinds().items()
                if isinstance(config, module.CONFIG_CLASS))


def build_provider(config: Any, *, cache_dir: Path, template_folder: Path | None = None,
                   explicit_template: bool = False) -> Provider:
    """The provider a [providers.<name>] config describes; a provider whose class takes a
    ``cache_dir`` (LLMs, for their response cache) gets one, and one that takes a
    ``template_folder`` (LLMs) the config file's folder and whether its template path was
    given explicitly. A provider named by class in the config is built from that class,
    its vote checked (backtester/plugins.py)."""
    from backtester.plugins import provider_plugin

    plugin = provider_plugin(config)
    if plugin is not None:
        cls = plugin.cls
    else:
        cls = provider_kinds()[provider_kind(config)].PROVIDER_CLASS
    parameters = inspect.signature(cls).parameters
    options: dict[str, Any] = {"cache_dir": cache_dir} if "cache_dir" in parameters else {}
    if "template_folder" in parameters:
        options.update(template_folder=template_folder, explicit_template=explicit_template)
    return cls(config, **options)


__all__ = ["Candidates", "MarketContext", "Provider", "Votes", "build_provider",
           "known_kind", "load_kind", "provider_kind", "provider_kinds"]
