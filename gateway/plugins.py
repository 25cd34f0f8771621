"""Finding adapters by name through the entry-point group ``complaint_gateway.channels``."""
from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points

from gateway.adapters import Adapter

GROUP = "complaint_gateway.channels"


class UnknownAdapterError(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown adapter {name!r}{hint} (installed: {', '.join(sorted(known)) or 'none'})")
        self.name = name
        self.suggestion = close[0] if close else None


def installed() -> dict[str, EntryPoint]:
    """Adapter name to entry point, for every installed distribution."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load(name: str) -> type[Adapter]:
    found = installed()
    if name not in found:
        raise UnknownAdapterError(name, list(found))
    cls = found[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"entry point {name!r} is {cls!r}, not an Adapter subclass")
    return cls


def distribution_of(ep: EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    return (dist.name, dist.version) if dist is not None else ("?", "?")
