"""The commentary lock, experiments/commentary.lock.json: what each commentary slot quoted when it
was last written or accepted, per profile and data set. When a slot's text is unchanged but what its
placeholders print has changed, the slot was written for earlier results and the report says so."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reportgen.files import write_atomic
from reportgen.report.commentary import DURATION
from reportgen.train.plan import Session

LOCK_FILE = "commentary.lock.json"


LOCK_SCHEMA = 1


def text_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def read_lock(experiments_dir: Path) -> dict[str, Any]:
    """The recorded slots, or an empty record when the file is missing or unreadable (it is rebuilt)."""
    try:
        data = json.loads((experiments_dir / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"schema": LOCK_SCHEMA, "slots": {}}
    if not isinstance(data, dict) or not isinstance(data.get("slots"), dict):
        return {"schema": LOCK_SCHEMA, "slots": {}}
    return data


def lock_key(profile: str, data_name: str, fingerprint: str) -> str:
    return f"{profile} {data_name} {fingerprint[:12]}"


def slot_key(section_number: str, commentary: Path, experiments_dir: Path) -> str:
    """A slot's name in the lock: its section and its file (two sections may share one file)."""
    try:
        name = commentary.resolve().relative_to(experiments_dir.resolve()).as_posix()
    except ValueError:
        name = commentary.name
    return f"{section_number} {name}"


def quote_changes(recorded: dict[str, Any] | None, text: str, quotes: list[str]) -> list[str] | None:
    """None when the slot is current (or was edited since it was recorded); otherwise the values
    whose printed form changed, as 'old -> new'."""
    if not recorded or recorded.get("text") != text:
        return None
    # Durations are not recorded (commentary.Timing); a lock written before that may hold some.
    old = [q for q in recorded.get("quotes") or [] if not DURATION.fullmatch(str(q))]
    if old == quotes:
        return None
    changes = [f"{a} -> {b}" for a, b in zip(old, quotes, strict=False) if a != b]
    if len(old) != len(quotes):
        changes.append(f"{len(old)} quoted value(s) then, {len(quotes)} now")
    return changes


def comparison_changes(recorded: dict[str, Any] | None, text: str,
                       comparisons: list[dict[str, str]]) -> list[dict[str, str]]:
    """The comparisons of an unedited slot whose sign or significance changed since it was recorded
    (a sentence saying "higher, a real difference" may now be wrong): each with what it said then."""
    if not recorded or recorded.get("text") != text:
        return []
    then = recorded.get("comparisons")
    if not isinstance(then, list):
        return []
    turned = []
    for old, new in zip(then, comparisons, strict=False):
        if not isinstance(old, dict) or (old.get("first"), old.get("second"), old.get("metric")) != (
                new["first"], new["second"], new["metric"]):
            continue
        if old.get("verdict") != new["verdict"]:
            turned.append({**new, "then": str(old.get("verdict")), "words_then": str(old.get("words"))})
    return turned


def some_changes(changes: list[str], shown: int = 5) -> str:
    """The first few of a slot's changed values, and how many more there are."""
    more = len(changes) - shown
    return "; ".join(changes[:shown]) + (f"; and {more} more" if more > 0 else "")


def write_lock(experiments_dir: Path, lock: dict[str, Any]) -> None:

    text = json.dumps(lock, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    path = experiments_dir / LOCK_FILE
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_atomic(path, text.encode())


def record_slots(session: Session, accept: Iterable[str] = ()) -> list[str]:
    """Record what each current slot quotes, so a later build can tell a slot written for earlier
    results. Stale slots keep their old record unless their section is in `accept` (confirmed by the
    author as still true). Returns the stale slots so accepted."""
    accepted = set(accept)
    lock = read_lock(session.project.experiments_dir)
    key = lock_key(session.project.profile, session.data.name, session.data.fingerprint)
    chosen = {name: {"text": slot["text"], "quotes": slot["quotes"], "comparisons": slot.get("comparisons", [])}
              for name, slot in session.slots.items()
              if not slot["stale"] or slot["section"] in accepted}
    lock["slots"].setdefault(key, {}).update(chosen)
    write_lock(session.project.experiments_dir, lock)
    return sorted(name for name, slot in session.slots.items() if slot["stale"] and slot["section"] in accepted)
