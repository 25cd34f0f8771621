"""The fixtures (redis_url, make_config, start_gateway) come from the gateway's own pytest
plugin, gateway.testing.plugin; the helpers are re-exported for the tests' imports."""
from gateway.testing.plugin import REDIS_URL, base_config, registry_of

__all__ = ["REDIS_URL", "base_config", "registry_of"]
