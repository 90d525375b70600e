#!/usr/bin/env python3
"""Fails when a file of a library crate's src/ grows past LIMIT lines.

Issue 15's rule: one concept per module; a file this long holds a second
concept that wants a room of its own. Conformance suites are exempt (one
check per clause of a contract, read as a list). Run from the workspace root.
"""

import os
import sys

LIMIT = 600
LIBRARIES = [
    "xray-core-client",
    "node-agent-lib",
    "manager-lib",
    "storage-postgres",
    "storage-sqlite",
    "cache-redis",
]


def main():
    over = []
    for crate in LIBRARIES:
        for root, _, files in os.walk(os.path.join(crate, "src")):
            for name in files:
                # A conformance suite (`conformance.rs`, or a file of a
                # `conformance/` module) is a list of checks, not a room.
                suite = name == "conformance.rs" or os.path.basename(root) == "conformance"
                if not name.endswith(".rs") or suite:
                    continue
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as fh:
                    lines = sum(1 for _ in fh)
                if lines > LIMIT:
                    over.append((lines, path))
    for lines, path in sorted(over, reverse=True):
        print(f"{path}: {lines} lines (limit {LIMIT})")
    if over:
        return 1
    print(f"every library file is within {LIMIT} lines (conformance suites aside)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
