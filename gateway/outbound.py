"""Calls out of the gateway over HTTP (a door's platform API, downloads of attachments and
recordings, partner callbacks) go through the proxy the environment names.

The variables and their rules are those requests applies, so every door follows one set:
``HTTPS_PROXY`` or ``HTTP_PROXY`` by the URL's scheme, else ``ALL_PROXY``; hosts in
``NO_PROXY`` go direct (host names, domain suffixes, ``host:port``, IP networks such as
``10.0.0.0/8``; ``*`` for every host). Lower-case names are read too. The VK API calls
(vk-api, through requests) read the same variables with the same code.

What the environment says is read once per scheme and host per process (scanning the
environment costs more than an acknowledgement's own work): a change of the variables
takes a restart, as every other setting does. Credentials in a proxy's URL
(``http://user:password@proxy:3128``, percent-encoded) are sent as ``Proxy-Authorization``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from requests.utils import get_environ_proxies, select_proxy
from yarl import URL

__all__ = ["proxy_arguments", "proxy_of_origin"]

_NO_PROXY: dict[str, Any] = {}


def proxy_arguments(url: str | URL) -> dict[str, Any]:
    """``proxy`` for aiohttp's ``session.request(...)``, to pass as
    ``**proxy_arguments(url)``: empty when ``url`` goes direct."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _NO_PROXY
    return proxy_of_origin(f"{scheme.lower()}://{rest.split('/', 1)[0].split('?', 1)[0]}")


@lru_cache(maxsize=1024)
def proxy_of_origin(origin: str) -> dict[str, Any]:
    """What the environment says for ``scheme://host[:port]``, cached (``cache_clear()``
    reads the environment again). The proxy's credentials stay in its URL: aiohttp sends
    them as ``Proxy-Authorization`` to the proxy, for ``http://`` and ``https://`` targets
    alike (its ``proxy_auth`` argument is deprecated)."""
    proxy = select_proxy(origin + "/", get_environ_proxies(origin + "/"))
    if not proxy:
        return _NO_PROXY
    return {"proxy": URL(proxy if "://" in proxy else f"http://{proxy}")}
