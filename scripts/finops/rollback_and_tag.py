#!/usr/bin/env python3
"""DEMO STAND-IN for the platform's ``scripts/finops/rollback_and_tag.py``.

This is NOT the real release tool. It accepts the same command lines as the runbook
(*Billing Gateway — Falhas de Reconciliação*, Mitigação 3 and Encerramento):

    scripts/finops/rollback_and_tag.py rollback --service billing-gateway-worker --env prod
    scripts/finops/rollback_and_tag.py tag --service billing-gateway-worker --env prod \\
        --notes "reconciliation incident"

and, instead of touching any deployment, records what the real script would do: one JSON
object per call, appended to the JSON list in the file named by ``--record`` or by the
``RECON_RELEASE_RECORD`` environment variable (nothing is recorded without either), and
printed on stdout. The provider's ``RollbackDeployOperator`` / ``TagReleaseOperator`` run
it in ``mode="local"`` (development and the demo); in production they run the real
script of the worker's image in a Kubernetes pod.

Exit status: 0 done, 2 bad arguments, 1 the record file could not be written.
"""

from __future__ import annotations

import argparse
import fcntl
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

RECORD_ENV = "RECON_RELEASE_RECORD"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rollback_and_tag.py",
        description="DEMO stand-in: records the rollback/tag the real release script would perform.",
    )
    parser.add_argument("--record", help=f"JSON file to append the action to (default: ${RECORD_ENV})")
    sub = parser.add_subparsers(dest="action", required=True)
    for action, text in (
        ("rollback", "roll the service back to its previous release"),
        ("tag", "tag the release"),
    ):
        command = sub.add_parser(action, help=text)
        command.add_argument("--service", required=True)
        command.add_argument("--env", required=True)
        command.add_argument("--notes", default="")
        command.add_argument("--record", dest="record_sub", help="same as the global --record")
    return parser.parse_args(argv)


def append_record(path: Path, entry: dict) -> None:
    """Append ``entry`` to the JSON list in ``path`` under an exclusive lock (two demo
    tasks may run at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read().strip()
        entries = json.loads(text) if text else []
        if not isinstance(entries, list):
            raise ValueError(f"{path} does not hold a JSON list")
        entries.append(entry)
        handle.seek(0)
        handle.truncate()
        json.dump(entries, handle, indent=2)
        handle.write("\n")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    entry = {
        "demo": True,
        "action": args.action,
        "service": args.service,
        "env": args.env,
        "notes": args.notes,
        "would_run": (
            f"rollback of {args.service} in {args.env} to its previous release"
            if args.action == "rollback"
            else f"tag of the current {args.service} release in {args.env}"
        ),
        "at": datetime.now(UTC).isoformat(),
        "by": _user(),
    }
    record = args.record_sub or args.record or os.environ.get(RECORD_ENV)
    if record:
        try:
            append_record(Path(record), entry)
        except (OSError, ValueError) as exc:
            print(f"rollback_and_tag.py (demo): cannot record to {record}: {exc}", file=sys.stderr)
            return 1
        entry["recorded_in"] = str(record)
    print(json.dumps(entry, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
