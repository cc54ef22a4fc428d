"""Exit codes of ``infergate migrate`` (documented in docs/migrate.md)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_NEEDED: Final = 3  # `check`: preview objects need migrating
EXIT_PAUSED: Final = 4
EXIT_ROLLED_BACK: Final = 5
EXIT_REFUSED: Final = 6
