"""Normalisation steps: each module holds one plain function ``step(draft, settings)``."""
