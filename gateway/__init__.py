"""The complaint intake gateway core: app factory, config, adapter contract, registry
backends, queue, blob store, acknowledgements, CLI and metrics."""

__version__ = "0.1.0"
