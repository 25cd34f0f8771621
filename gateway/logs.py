"""Structured logs: one JSON object a line. Personal data (phone numbers, addresses,
complaint text) is never put in a log record by the gateway; only ids and channels.
Passwords in URLs (a proxy's ``http://user:password@proxy:3128``, a Redis URL's) and secrets
in their queries (``?access_token=``) are masked in every line, whoever wrote it: client
libraries put such URLs in their errors."""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: ``scheme://user:password@``: the password is what goes (a URL's password cannot hold ``/``,
#: ``@`` or spaces unencoded; quotes end it in a ``repr``).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]*):[^\s/@'\"]+@")
#: A query parameter that carries a secret (``?access_token=``, ``&key=``): its value goes.
_SECRET_PARAMETER = re.compile(r"([?&](?:access_token|token|key|secret|password|api_key|apikey|signature|sig)=)[^&\s'\"#]+",
                               re.IGNORECASE)


def mask_secrets_in_urls(text: str) -> str:
    """``text`` with the password of every URL in it, and the values of query parameters
    that carry secrets, replaced by ``***``."""
    if "://" not in text:
        return text
    return _SECRET_PARAMETER.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets_in_urls(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return mask_secrets_in_urls(json.dumps(entry, ensure_ascii=False))


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # client libraries log request URLs and headers at INFO: bot tokens sit in Telegram's
    # URLs, phone numbers in Twilio's parameters
    for name in ("httpx", "httpcore", "telegram", "twilio", "twilio.http_client", "urllib3", "vk_api"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # aiosmtpd logs every SMTP command (with the addresses in MAIL FROM / RCPT TO) at INFO
    logging.getLogger("mail.log").setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
