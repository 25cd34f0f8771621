"""The web form (or the SMTP or VK door) of an earlier commit against this checkout, side by side in one run.

``python bench/before_after.py REF [--seconds 10] [--workers 2] [--backends sqlite] [--door smtp|vk]``
checks REF out into a temporary git worktree and measures in turns, best of BENCH_REPEATS
runs each (as ``make bench`` does): the bare server, and the door of REF and of this
checkout on Redis and on SQLite (``--backends``). The web form runs in one process each or
``--workers`` each; the SMTP door (``--door smtp``) against the bare aiosmtpd server, with
the load of ``make bench``; the VK door (``--door vk``) with ``make bench``'s returning VK
users, against the bare server, the fake VK API in a process of its own. Both run with this
checkout's virtual environment (a REF that needs other dependencies cannot be measured this
way). Figures only.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp_intake
import webhook_intake
from common import ROOT, Contender, against, compare, flush_redis, gateway, row
from http_intake import bare_server, contender
from run import print_table


def build_compiled_modules(tree: Path) -> None:
    """The C modules of ``tree`` (``gateway/**/_*.c``, declared in its setup.py), compiled in
    place as the install compiles this checkout's, so that REF does not measure its Python
    fallbacks. With Python's own compiler and flags; a module that does not compile is left
    to its fallback, as a machine without a compiler would."""
    include, suffix = sysconfig.get_paths()["include"], sysconfig.get_config_var("EXT_SUFFIX")
    flags = [*shlex.split(sysconfig.get_config_var("LDSHARED")), *shlex.split(sysconfig.get_config_var("CFLAGS")),
             *shlex.split(sysconfig.get_config_var("CCSHARED")), f"-I{include}"]
    for source in tree.glob("gateway/**/_*.c"):
        built = subprocess.run([*flags, str(source), "-o", str(source.with_name(source.stem + suffix))], capture_output=True)
        print(f"{source.relative_to(tree)}: {'compiled' if built.returncode == 0 else 'not compiled, its fallback is measured'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ref", help="the commit to compare with (a hash, a tag, HEAD~3 ...)")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1, help="gateway processes per side (the multi-process mode)")
    parser.add_argument("--backends", default="redis,sqlite", help="which registries to measure (default both)")
    parser.add_argument("--door", choices=("web", "smtp", "vk"), default="web", help="the web form (default), the SMTP or the VK door")
    args = parser.parse_args()
    processes = "1 process" if args.workers == 1 else f"{args.workers} processes"
    flush_redis()
    with ExitStack() as stack:
        before = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-before-"))) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.ref], cwd=ROOT, check=True,
                       capture_output=True)
        stack.callback(subprocess.run, ["git", "worktree", "remove", "--force", str(before)], cwd=ROOT,
                       capture_output=True)
        build_compiled_modules(before)
        trees = ((args.ref, before), ("this checkout", ROOT))
        if args.door == "smtp":
            bare, sides = smtp_sides(stack, args.backends.split(","), trees)
        elif args.door == "vk":
            bare, sides = vk_sides(stack, args.backends.split(","), trees, args.seconds)
        else:
            bare = contender("http: bare aiohttp + XADD", bare_server(stack), args.seconds, 32)
            sides = [contender(f"http: web form, {backend}, {processes}, {name}",
                               stack.enter_context(gateway(backend, args.workers, flush=False, source=source)), args.seconds, 32)
                     for backend in args.backends.split(",") for name, source in trees]
        compare([bare, *sides])
    rows = [row(bare.name, bare.best())] + [row(c.name, against(c, bare)) for c in sides]
    if args.door == "smtp":  # mails per second, not requests
        rows = [{k: v for k, v in r.items() if k != "rps"} for r in rows]
    print_table(rows)
    return 0


def smtp_sides(stack: ExitStack, backends: list[str], trees: tuple[tuple[str, Path], ...]) -> tuple[Contender, list[Contender]]:
    """The bare aiosmtpd server and each tree's SMTP door, loaded as ``make bench`` loads them."""
    return smtp_intake.bare_side(stack), [smtp_intake.door_side(stack, f"smtp: door, {backend}, {name}", backend, source=source)
                                          for backend in backends for name, source in trees]


def vk_sides(stack: ExitStack, backends: list[str], trees: tuple[tuple[str, Path], ...],
             seconds: float) -> tuple[Contender, list[Contender]]:
    """The bare server and each tree's VK door (one process), loaded by ``make bench``'s returning VK users."""
    doors, helpers = webhook_intake.fake_apis(stack)
    bare = webhook_intake.vk_returning("webhook: bare aiohttp + XADD, vk events", bare_server(stack), seconds, 32, helpers)
    return bare, [webhook_intake.vk_returning(f"webhook: vk, {backend}, {name}",
                                              stack.enter_context(gateway(backend, channels=doors, flush=False, source=source)),
                                              seconds, 32, helpers)
                  for backend in backends for name, source in trees]


if __name__ == "__main__":
    raise SystemExit(main())
