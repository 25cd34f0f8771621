"""SMTP receiver (placeholder while being built)."""
from __future__ import annotations

import argparse

from channels.email.cli import add_parse_email_command
from gateway.adapters import Adapter


class SmtpAdapter(Adapter):
    name = "smtp"

    @classmethod
    def add_cli_commands(cls, subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        add_parse_email_command(subparsers)
