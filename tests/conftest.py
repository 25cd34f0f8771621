"""The fixtures (redis_url, make_config, start_gateway) come from the gateway's own pytest
plugin, gateway.testing.plugin; the helpers are re-exported for the tests' imports."""
import os

from hypothesis import settings

from gateway.testing.plugin import REDIS_URL, base_config, registry_of

__all__ = ["REDIS_URL", "base_config", "registry_of"]

# CI runs the property-based tests with fixed examples (a landing must not depend on luck);
# local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
