"""Channel adapters shipped with the gateway; each registers through the entry-point group."""
