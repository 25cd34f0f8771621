"""Operators' helpers for the inbox's settings: ``hash-password`` (argon2), ``new-secret-key``
(the session cookie key) and ``new-api-token`` (a token and the SHA-256 to configure).

Run as ``python -m gateway.inbox <command>``; ``add_inbox_commands`` also lets the main
``complaint-gateway`` command offer them as ``complaint-gateway inbox <command>``.
"""
from __future__ import annotations

import argparse
import getpass
import secrets
import sys

from cryptography.fernet import Fernet

from gateway.inbox.auth import hash_password, token_sha256


def cmd_hash_password(args: argparse.Namespace) -> int:
    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    if len(password) < args.min_length:
        print(f"a password needs at least {args.min_length} characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def cmd_new_secret_key(args: argparse.Namespace) -> int:
    print(Fernet.generate_key().decode("ascii"))
    return 0


def cmd_new_api_token(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    print(f"token (give it to the machine, keep it secret): {token}")
    print("config.yaml:")
    print(f"  - {{name: {args.name}, token_sha256: {token_sha256(token)}}}")
    return 0


def add_inbox_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    inbox = subparsers.add_parser("inbox", help="helpers for the operator inbox's settings")
    sub = inbox.add_subparsers(dest="inbox_command", required=True)
    hashing = sub.add_parser("hash-password", help="print the argon2 hash of a password for inbox.operators")
    hashing.add_argument("--stdin", action="store_true", help="read the password from the first line of standard input")
    hashing.add_argument("--min-length", type=int, default=12)
    hashing.set_defaults(func=cmd_hash_password)
    sub.add_parser("new-secret-key", help="print a new key for inbox.secret_key").set_defaults(func=cmd_new_secret_key)
    token = sub.add_parser("new-api-token", help="print a new API token and the line for inbox.api_tokens")
    token.add_argument("name", help="who uses the token, e.g. crm")
    token.set_defaults(func=cmd_new_api_token)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.inbox", description="Operator inbox helpers.")
    add_inbox_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["inbox", *(argv if argv is not None else sys.argv[1:])])
    return int(args.func(args))
