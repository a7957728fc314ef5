"""Make autobahn's debug log arguments lazy.

autobahn (daphne's websocket protocol) writes ``self.log.debug("{func} sent {data_len} bytes ...",
func=hltype(self.sendData), peer=hlval(self.peer), ...)`` on every frame it sends and receives and at
every connection. txaio drops debug lines at the default level, but Python evaluates the arguments
first: each ``hltype``/``hlval`` inspects a method and colours its name through click. On daphne's
event loop that was ~3 % of its CPU, about 0.3 ms a sign-in, for lines nobody sees.

``install()`` replaces those two helpers, in the autobahn modules daphne uses, with ones that return a
small object formatting itself with the original helper only when a line is really written, so a
debug log reads exactly as before. They appear only as logging arguments there (checked by
tests/web/test_autobahn_logging.py against the installed autobahn).
"""

from __future__ import annotations

import importlib

# The autobahn modules on daphne's path (server protocol, Twisted adapter) that import the helpers by name.
MODULES = ("autobahn.websocket.protocol", "autobahn.twisted.websocket")
HELPERS = ("hltype", "hlval")


class Deferred:
    """``render(value)``, computed when formatted (``str``, ``format``, ``repr``)."""

    __slots__ = ("render", "value")

    def __init__(self, render, value) -> None:
        self.render, self.value = render, value

    def __str__(self) -> str:
        return str(self.render(self.value))

    def __format__(self, spec: str) -> str:
        return format(self.render(self.value), spec)

    def __repr__(self) -> str:
        return repr(self.render(self.value))


def lazy(helper):
    def deferred(value, *args, **kwargs):
        return Deferred(lambda v: helper(v, *args, **kwargs), value)

    deferred.eager = helper
    deferred.__name__ = getattr(helper, "__name__", "helper")
    return deferred


def install() -> list[str]:
    """Patch what is there (autobahn may be absent: another ASGI server); returns what was patched."""
    patched = []
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for helper in HELPERS:
            current = getattr(module, helper, None)
            if current is None or hasattr(current, "eager"):
                continue
            setattr(module, helper, lazy(current))
            patched.append(f"{name}.{helper}")
    return patched
