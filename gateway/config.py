"""config.yaml: loaded once, secrets interpolated from the environment, validated whole.

``${VAR}`` takes an environment variable (a missing one is an error naming the key);
``${VAR:-default}`` falls back to ``default``. Every section is checked against a JSON
Schema before the gateway starts, and each channel's section against its adapter's own
schema, so a mistake is reported at start-up with the offending key, never at 3 a.m.
"""
from __future__ import annotations

import os
import re
import re._constants as re_constants
import re._parser as re_parser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration mistake; the message names the key."""


_LIMIT = {"type": "number", "minimum": 0}
CORE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "http": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "host": {"type": "string"}, "port": {"type": "integer", "minimum": 0, "maximum": 65535},
                "max_body_bytes": {"type": "integer", "minimum": 1024},
                "shutdown_timeout_seconds": _LIMIT,
                "workers": {"type": "integer", "minimum": 1},
                "public_base_url": {"type": ["string", "null"]},
            },
        },
        "registry": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "backend": {"enum": ["sqlite", "redis", "redis_cluster"]},
                "sqlite": {"type": "object", "additionalProperties": False, "properties": {
                    "path": {"type": "string"}, "synchronous": {"enum": ["OFF", "NORMAL", "FULL", "EXTRA"]},
                    "cache_mb": {"type": "integer", "minimum": 1}, "write_lock_poll_ms": {"type": "integer", "minimum": 0},
                    "writer_process": {"type": "boolean"}, "writer_checkpoint_pages": {"type": "integer", "minimum": 1}}},
                "redis": {"type": "object", "additionalProperties": False, "properties": {
                    "url": {"type": "string"}, "prefix": {"type": "string"},
                    "socket_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                    "filter_range_max_messages": {"type": "integer", "minimum": 0}}},
                "redis_cluster": {"type": "object", "additionalProperties": False, "properties": {
                    "url": {"type": "string"},
                    "startup_nodes": {"type": "array", "items": {"type": "string", "pattern": "^.+:[0-9]+$"}},
                    "prefix": {"type": "string", "pattern": "\\{[^{}]+\\}"},
                    "partitions": {"type": "integer", "minimum": 1, "maximum": 1024},
                    "relay_batch": {"type": "integer", "minimum": 1},
                    "relay_lock_seconds": {"type": "number", "exclusiveMinimum": 0},
                    "outbox_keep_seconds": _LIMIT,
                    "socket_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
                    "filter_range_max_messages": {"type": "integer", "minimum": 0}}},
                "registration_number": {"type": "object", "additionalProperties": False, "properties": {
                    "format": {"type": "string"}}},
                "repeat": {"type": "object", "additionalProperties": False, "properties": {
                    "window_days": _LIMIT, "similarity": {"type": "number", "minimum": 0, "maximum": 1},
                    "max_candidates": {"type": "integer", "minimum": 0}}},
                "queue": {"type": "object", "additionalProperties": False, "properties": {
                    "visibility_timeout_seconds": _LIMIT}},
                "due_soon_minutes": _LIMIT,
            },
        },
        "blobs": {"type": "object", "additionalProperties": False, "properties": {
            "path": {"type": "string"}, "fsync": {"type": "boolean"}, "small_max_bytes": {"type": "integer", "minimum": 0}}},
        "intake": {"type": "object", "additionalProperties": False, "properties": {
            "max_batch": {"type": "integer", "minimum": 1}, "inline_original_max_bytes": {"type": "integer", "minimum": 0}}},
        "normalizer": {"type": "object"},
        "acknowledgements": {"type": "object"},
        "inbox": {"type": "object"},
        "retention": {"type": "object", "additionalProperties": False, "properties": {
            "days": {"type": ["number", "null"], "minimum": 1}, "blob_grace_minutes": {"type": "number", "minimum": 0}}},
        "logging": {"type": "object", "additionalProperties": False, "properties": {
            "level": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]}, "format": {"enum": ["json", "text"]}}},
        "channels": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "required": ["adapter"],
                "properties": {"adapter": {"type": "string"}, "enabled": {"type": "boolean"}},
            },
        },
    },
}


@dataclass(slots=True)
class GatewayConfig:
    """The validated configuration. ``data`` is the interpolated YAML."""

    data: dict[str, Any]
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<defaults>"

    def section(self, name: str) -> dict[str, Any]:
        value = self.data.get(name) or {}
        return value if isinstance(value, dict) else {}

    @property
    def http(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": 8080, "max_body_bytes": 25 * 1024 * 1024,
                "shutdown_timeout_seconds": 30, "public_base_url": None, "workers": 1, **self.section("http")}

    @property
    def registry(self) -> dict[str, Any]:
        registry = dict(self.section("registry"))
        sqlite = dict(registry.get("sqlite") or {})
        sqlite["path"] = str(self.resolve(sqlite.get("path", "var/registry.sqlite3")))
        registry["sqlite"] = sqlite
        return registry

    def warnings(self, workers: int) -> list[str]:
        """What this configuration allows but does worse than its alternative, run with
        ``workers`` processes: ``check-config`` prints these and ``run`` logs them at start."""
        found: list[str] = []
        registry = self.registry
        if workers > 1 and registry.get("backend", "sqlite") == "sqlite" and registry["sqlite"].get("writer_process"):
            found.append(
                f"registry.sqlite.writer_process is on with {workers} workers: each worker starts a writer "
                "process and they take turns at the file's write lock, which registers fewer complaints a "
                "second than the workers without writers (docs/performance.md); turn it off or run one worker")
        return found

    @property
    def blobs_path(self) -> Path:
        return self.resolve(self.section("blobs").get("path", "var/blobs"))

    @property
    def channels(self) -> dict[str, dict[str, Any]]:
        return {name: dict(section) for name, section in self.section("channels").items()}

    def enabled_channels(self) -> dict[str, dict[str, Any]]:
        return {name: s for name, s in self.channels.items() if s.get("enabled", True)}

    def resolve(self, path: str | Path) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.base_dir / p


def interpolate(value: Any, env: dict[str, str], where: str = "", strict: bool = True) -> Any:
    """Replace ``${VAR}`` references. A disabled channel's section is read with
    ``strict=False``: its secrets need not be in the environment until it is enabled."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            key = f"{where}.{k}" if where else str(k)
            lenient = not strict or (where == "channels" and isinstance(v, dict) and v.get("enabled") is False)
            out[k] = interpolate(v, env, key, strict=not lenient)
        return out
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]", strict) for i, v in enumerate(value)]
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            if not strict:
                return ""
            raise ConfigError(f"{where}: environment variable {name} is not set")

        result = _VAR.sub(substitute, value)
        if _VAR.fullmatch(value) and result.strip():
            # a whole-value reference keeps YAML typing: ``port: ${PORT:-8080}`` is a number
            typed = yaml.safe_load(result)
            return typed if isinstance(typed, (int, float, bool)) else result
        return result
    return value


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


_REPEATS = (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT, re_constants.POSSESSIVE_REPEAT)


def repeat_depth(pattern: str) -> int:
    """How deeply repeats (``+``, ``*``, ``{2,}``, not ``?``) nest in a regular expression.
    Above 1 (``(\\w+\\s?)+``), ``re`` can take exponential time on a text that almost
    matches: five words 0.15 s, each word more 16 times as long."""
    def depth(items: Any) -> int:
        found = 0
        for op, av in items:
            if op in _REPEATS:
                _, high, body = av
                found = max(found, depth(body) + (high is re_constants.MAXREPEAT or high > 1))
            elif op is re_constants.SUBPATTERN:
                found = max(found, depth(av[3]))
            elif op is re_constants.BRANCH:
                found = max(found, *(depth(branch) for branch in av[1]))
            elif op is re_constants.ATOMIC_GROUP:
                found = max(found, depth(av))
            elif op in (re_constants.ASSERT, re_constants.ASSERT_NOT):
                found = max(found, depth(av[1]))
        return found

    return depth(re_parser.parse(pattern))


def compile_pattern(pattern: str, where: str, flags: int = 0) -> re.Pattern[str]:
    """A regular expression from the configuration, applied to what customers send: one that
    does not compile, or whose repeats nest (``repeat_depth``), is a ``ConfigError``."""
    try:
        compiled = re.compile(pattern, flags)
    except re.error as exc:
        raise ConfigError(f"{where}: {pattern!r} is not a valid regular expression: {exc}") from exc
    if repeat_depth(pattern) > 1:
        raise ConfigError(f"{where}: {pattern!r} repeats a part that repeats itself, which can take exponential "
                          "time on some texts; write it without the nesting")
    return compiled


def validate(data: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = []
        for error in errors[:10]:
            key = _path(error)
            key = f"{prefix}.{key}" if prefix and key != "(top level)" else (prefix or key)
            lines.append(f"{key}: {error.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))


def load_config(path: str | Path | None, env: dict[str, str] | None = None) -> GatewayConfig:
    """Load, interpolate and validate the core of config.yaml (channels are validated
    against their adapters' schemas when the adapters are loaded)."""
    env = dict(os.environ if env is None else env)
    if path is None:
        return from_dict({}, env=env)
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: no such file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return from_dict(raw, base_dir=p.resolve().parent, source=str(p), env=env)


def from_dict(raw: dict[str, Any], base_dir: Path | None = None, source: str = "<dict>",
              env: dict[str, str] | None = None) -> GatewayConfig:
    data = interpolate(raw, dict(os.environ if env is None else env))
    validate(data, CORE_SCHEMA)
    return GatewayConfig(data=data, base_dir=base_dir or Path.cwd(), source=source)
