"""Scanned paper post for complaint-gateway: an example of an out-of-tree adapter."""
