"""docs/settings.md, made from the settings table: `python -m webui.settings_doc > docs/settings.md`.

The table in webui/settings.py is the one source of every setting's name, default and help;
this writes it out for people, and tests/test_docs.py fails when the page is older than it.
"""

from __future__ import annotations

import dataclasses
import sys

from webui.settings import Settings, env_name, flag_name

REGENERATE = ".venv/bin/python -m webui.settings_doc > docs/settings.md"

INTRO = f"""\
# Settings

<!-- Generated from webui/settings.py by `{REGENERATE}`; edit the table there. -->

Each setting is an environment variable (how `./launch.sh` and Supervisor pass them) and a
flag of `python -m webui`, `./launch.sh serve` and `python -m webui.batch`; a flag wins over
the environment. A bad value, or an unknown `ZIMAGE_*` variable, stops the start-up with a
message that names the setting. Under Supervisor, `./launch.sh` hands the `ZIMAGE_*`
variables of its shell to the WebUI and the workers; change one, then `./launch.sh stop` and
`./launch.sh` again.

| environment | flag | default | meaning |
| --- | --- | --- | --- |
"""


def _shown(value: object) -> str:
    """A default as a person types it."""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`" if value != "" else "(empty)"


def settings_markdown() -> str:
    """The page: an intro, then a row per setting in the table's order."""
    rows = []
    for f in dataclasses.fields(Settings):
        meaning = " ".join(f.metadata["help"].split()).replace("|", "\\|")
        rows.append(f"| `{env_name(f.name)}` | `{flag_name(f.name)}` | {_shown(f.default)} | {meaning} |\n")
    return INTRO + "".join(rows)


if __name__ == "__main__":
    sys.stdout.write(settings_markdown())
