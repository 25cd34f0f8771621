"""The one compiled module; everything else about the package is in pyproject.toml.

The SimHash of word pairs in C: where it cannot be compiled the install goes on and
gateway/registry/fingerprint.py computes the same values in Python.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("gateway.registry._simhash", ["gateway/registry/_simhash.c"], optional=True)])
