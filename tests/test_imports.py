"""Every module imports on its own, first, in a fresh interp: no module works only because another
one happened to be imported before it (an import cycle that a different entry point would hit)."""

import importlib
import pkgutil
import sys

import interp


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(interp.__path__, "interp."):
        if info.name.startswith("interp.backends.") or info.name == "interp.__main__":  # extras; runs the CLI
            continue
        names.append(info.name)
    return sorted(names)


def test_each_module_imports_first():
    failed = {}
    saved = {k: v for k, v in sys.modules.items() if k == "interp" or k.startswith("interp.")}
    try:
        for name in _modules():
            for key in [k for k in sys.modules if k == "interp" or k.startswith("interp.")]:
                del sys.modules[key]
            try:
                importlib.import_module(name)
            except ImportError as e:
                failed[name] = str(e)
    finally:
        for key in [k for k in sys.modules if k == "interp" or k.startswith("interp.")]:
            del sys.modules[key]
        sys.modules.update(saved)
    assert not failed, failed
