"""Testing kit shipped with the gateway: pytest fixtures (a real gateway on loopback, a
real Redis database) and the adapter conformance suite. Loaded as a pytest plugin
(entry point ``pytest11: complaint_gateway``) wherever the package is installed."""
