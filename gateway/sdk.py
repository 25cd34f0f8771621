"""The public adapter SDK: everything a channel adapter may import, in one place.

Import from ``gateway.sdk`` only; every other module of the gateway is private and may
change in any release. ``SDK_VERSION`` follows semantic versioning: a name is removed or
changed incompatibly only in a new major version, after at least one minor release in
which using it emits a ``DeprecationWarning`` (see docs/adapters.md, "Stability").
"""
from __future__ import annotations

from gateway.adapters import (
    Adapter,
    AdapterContext,
    PullAdapter,
    PushAdapter,
    Submitted,
    TemporaryFailure,
)
from gateway.batching import Batcher
from gateway.config import ConfigError, compile_pattern
from gateway.http import MalformedBody, RateLimiter, SharedRateLimiter, client_address, json_error, parse_json, read_body
from gateway.inbound import Inbound, InboundAttachment, Receipt, safe_filename
from gateway.ocr import OcrResult, is_scan, ocr_document, ocr_unavailable_reason
from gateway.outbound import proxy_arguments
from normalizer.schema import Attachment, Complaint, Customer, Identity

SDK_VERSION = "1.3"  # 1.1: ConfigError, compile_pattern and Adapter.check_settings; 1.2: proxy_arguments;
#                      1.3: SharedRateLimiter, AdapterContext.rate_limiter and Batcher

__all__ = [
    "SDK_VERSION",
    "Adapter",
    "AdapterContext",
    "Attachment",
    "Batcher",
    "Complaint",
    "ConfigError",
    "Customer",
    "Identity",
    "Inbound",
    "MalformedBody",
    "InboundAttachment",
    "OcrResult",
    "PullAdapter",
    "PushAdapter",
    "RateLimiter",
    "Receipt",
    "SharedRateLimiter",
    "Submitted",
    "TemporaryFailure",
    "client_address",
    "compile_pattern",
    "is_scan",
    "json_error",
    "ocr_document",
    "ocr_unavailable_reason",
    "parse_json",
    "proxy_arguments",
    "read_body",
    "safe_filename",
]
