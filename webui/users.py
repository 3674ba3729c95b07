"""People who may log in to the page: a name, a scrypt hash of the password, and an admin
mark, in `users.json` under the state folder (mode 600).

    python -m webui.users add NAME [--admin]   # the password is asked twice, or read from stdin
    python -m webui.users list
    python -m webui.users remove NAME          # their API keys too; their open pages log out

The server reads the file again when it changes: no restart. The single login of
ZIMAGE_AUTH_USER / ZIMAGE_AUTH_PASSWORD still works beside it (that person is an admin).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import hmac
import re
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from webui.records import RecordFile
from webui.settings import Settings, SettingsError

USERS_FILE = "users.json"
# scrypt at n=2**14, r=8, p=1: about 16 MB and tens of milliseconds a check (the common
# interactive-login parameters); a guessed password costs an attacker the same.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
MIN_PASSWORD = 8
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


@dataclass(frozen=True)
class Person:
    name: str
    admin: bool = False


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    _, n, r, p, salt, digest = stored.split("$")
    again = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(digest) // 2
    )
    return hmac.compare_digest(again.hex(), digest)


_DECOY = hash_password(secrets.token_hex(8))  # checked for unknown names: the same time either way


class Users:
    """The people of one installation."""

    def __init__(self, state_dir: Path) -> None:
        self.file = RecordFile(state_dir / USERS_FILE)

    def people(self) -> list[Person]:
        return [Person(name, bool(r.get("admin"))) for name, r in sorted(self.file.read().items())]

    def get(self, name: str) -> Person | None:
        record = self.file.read().get(name)
        return None if record is None else Person(name, bool(record.get("admin")))

    def add(self, name: str, password: str, admin: bool = False) -> Person:
        """A new person; ValueError says why not (a taken or odd name, a short password)."""
        if not NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} cannot be a user name: 1-64 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit."
            )
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"The password is too short: at least {MIN_PASSWORD} characters.")
        records = self.file.read()
        if name in records:
            raise ValueError(f"{name} exists already; remove them first to set a new password.")
        records[name] = {"password": hash_password(password), "admin": admin}
        self.file.write(records)
        return Person(name, admin)

    def remove(self, name: str) -> bool:
        records = self.file.read()
        if records.pop(name, None) is None:
            return False
        self.file.write(records)
        return True

    def verify(self, name: str, password: str) -> Person | None:
        """The person whose name and password these are, or None."""
        record = self.file.read().get(name)
        ok = password_matches(password, record["password"] if record else _DECOY)
        return Person(name, bool(record.get("admin"))) if record and ok else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.users", description="Logins for the page.")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add a person (password asked, or read from standard input)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may stop anyone's job")
    commands.add_parser("list", help="the people, admins marked")
    remove = commands.add_parser("remove", help="remove a person")
    remove.add_argument("name")
    args = parse_with_state_dir(parser, commands, argv)
    try:
        users = Users(state_dir(args.state_dir))
        if args.command == "add":
            users.add(args.name, _read_password(), admin=args.admin)
            print(f"Added {args.name}{' (admin)' if args.admin else ''}.")
        elif args.command == "list":
            for person in users.people():
                print(f"{person.name}{'  admin' if person.admin else ''}")
        elif not users.remove(args.name):
            print(f"No user {args.name}.", file=sys.stderr)
            return 1
        else:
            from webui.keys import Keys  # here: keys.py imports this module

            revoked = Keys(state_dir(args.state_dir)).revoke_person(args.name)
            print(f"Removed {args.name} and revoked {revoked} API key{'s' * (revoked != 1)}.")
    except (ValueError, SettingsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def parse_with_state_dir(
    parser: argparse.ArgumentParser, commands: argparse._SubParsersAction, argv: list[str] | None
) -> argparse.Namespace:
    """The command line, each command taking --state-dir after it (as people type it)."""
    for command in commands.choices.values():
        command.add_argument(
            "--state-dir", help="the server's state folder (default: as the server finds it)"
        )
    return parser.parse_args(argv)


def state_dir(given: str | None) -> Path:
    """The state folder named, or the server's: from the same ZIMAGE_* settings it reads."""
    return Path(given).expanduser() if given else Settings.from_sources([]).state_path


def _read_password() -> str:
    """Asked twice on a terminal; otherwise the first line of standard input."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise ValueError("The two passwords differ.")
    return first


if __name__ == "__main__":
    sys.exit(main())
