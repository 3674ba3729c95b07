"""API keys: a key stands for a person (their jobs, their limits) when a script calls the
HTTP API. Only a SHA-256 hash of each key is kept, in `keys.json` under the state folder
(mode 600); a key is random enough (256 bits) that a fast hash is as safe as a slow one.
Also here: the key that signs image URLs (`url-key`, mode 600), which can be replaced.

    python -m webui.keys add NAME         # prints the new key once
    python -m webui.keys list             # key ids, people, when made
    python -m webui.keys revoke ID        # the id `list` shows (the key's first characters)
    python -m webui.keys rotate-url-key   # a new URL key: every signed image URL stops working
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from webui.outputs import replace_atomically
from webui.records import RecordFile
from webui.settings import SettingsError
from webui.users import NAME, parse_with_state_dir, state_dir

KEYS_FILE = "keys.json"
PREFIX = "zit_"  # so that a leaked key is recognisable as ours
ID_LENGTH = len(PREFIX) + 8  # the key's first characters name it in lists and logs
URL_KEY_FILE = "url-key"


@dataclass(frozen=True)
class Key:
    id: str
    person: str
    created: str


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Keys:
    def __init__(self, state_dir: Path) -> None:
        self.file = RecordFile(state_dir / KEYS_FILE)

    def add(self, person: str) -> str:
        """A new key for `person`: returned once, kept only as a hash. Its id (its first
        characters) is unique among the keys, so that `revoke` names exactly one."""
        if not NAME.fullmatch(person):
            raise ValueError(f"{person!r} cannot be a person's name (letters, digits, '.', '_', '@', '-').")
        records = self.file.read()
        taken = {r["id"] for r in records.values()}
        key = PREFIX + secrets.token_urlsafe(32)
        while key[:ID_LENGTH] in taken:
            key = PREFIX + secrets.token_urlsafe(32)
        records[_hash(key)] = {"id": key[:ID_LENGTH], "person": person, "created": _now()}
        self.file.write(records)
        return key

    def list(self) -> list[Key]:
        found = [Key(r["id"], r["person"], r["created"]) for r in self.file.read().values()]
        return sorted(found, key=lambda k: (k.person, k.created))

    def revoke(self, key_id: str) -> bool:
        """Revoke the one key whose id is `key_id` (or which is `key_id` itself); False if none
        is. ValueError when keys made before ids were unique share it: then give the key."""
        records = self.file.read()
        found = [h for h, r in records.items() if h == _hash(key_id)] or [
            h for h, r in records.items() if r["id"] == key_id
        ]
        if len(found) > 1:
            raise ValueError(f"{len(found)} keys have the id {key_id}; revoke one by giving the whole key.")
        if found:
            del records[found[0]]
            self.file.write(records)
        return bool(found)

    def revoke_person(self, person: str) -> int:
        """Revoke every key of `person`; how many."""
        records = self.file.read()
        kept = {h: r for h, r in records.items() if r["person"] != person}
        if len(kept) != len(records):
            self.file.write(kept)
        return len(records) - len(kept)

    def person(self, key: str) -> str | None:
        """Whose key this is, or None (unknown or revoked)."""
        record = self.file.read().get(_hash(key))
        return None if record is None else record["person"]


class UrlKey:
    """The key that signs image URLs: made once per installation, read again when it changes
    (so that a rotation from the command line reaches a running server at once)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / URL_KEY_FILE
        self._seen: tuple[int, int] | None = None
        self._key = b""

    def current(self) -> bytes:
        if not self.path.is_file():
            self.rotate()
        stat = self.path.stat()
        if (stat.st_mtime_ns, stat.st_ino) != self._seen:
            self._key = bytes.fromhex(self.path.read_text().strip())
            self._seen = (stat.st_mtime_ns, stat.st_ino)
        return self._key

    def rotate(self) -> None:
        """A new key; every URL signed with the old one stops working."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        replace_atomically(self.path, lambda handle: handle.write(key), mode=0o600)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m webui.keys", description="API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("add", help="a new key for a person, printed once").add_argument("name")
    commands.add_parser("list", help="key ids, people, when made")
    commands.add_parser("revoke", help="revoke a key by its id").add_argument("id")
    commands.add_parser("rotate-url-key", help="a new key for image URLs: every signed URL stops working")
    args = parse_with_state_dir(parser, commands, argv)
    try:
        folder = state_dir(args.state_dir)
        keys = Keys(folder)
        if args.command == "add":
            print(keys.add(args.name))
            print(f"The key above is for {args.name}; it is shown only this once.", file=sys.stderr)
        elif args.command == "list":
            for key in keys.list():
                print(f"{key.id}  {key.person}  {key.created}")
        elif args.command == "rotate-url-key":
            UrlKey(folder).rotate()
            print("A new URL key: image URLs signed before now no longer open.")
        elif keys.revoke(args.id):
            print(f"Revoked {args.id[:ID_LENGTH]}.")
        else:
            print(f"No key {args.id}.", file=sys.stderr)
            return 1
    except (ValueError, SettingsError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
