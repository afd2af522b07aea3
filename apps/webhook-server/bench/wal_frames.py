#!/usr/bin/env python3
"""Which B-trees a SQLite WAL's frames belong to, per commit.

    python3 apps/webhook-server/bench/wal_frames.py COPY.db

COPY.db and COPY.db-wal are copies of a store's database and WAL taken
while the server was stopped mid-load (kill -STOP, copy both, kill), so the
WAL holds the commits since the last checkpoint reset it. Counts the frames
of the WAL's current salt (its live frames) and names each page's B-tree
with SQLite's `dbstat` table, read from a scratch copy that includes the
WAL. Prints frames per commit in all and per B-tree: every frame is a
whole page written to the WAL (and later copied into the database).
"""
import collections
import os
import shutil
import sqlite3
import struct
import sys
import tempfile


def main() -> None:
    db = sys.argv[1]
    with open(db + "-wal", "rb") as f:
        wal = f.read()
    _magic, _version, page_size, _ckpt, salt1, salt2, _c1, _c2 = struct.unpack(">8I", wal[:32])
    frames = []
    offset = 32
    while offset + 24 + page_size <= len(wal):
        page, commit_size, s1, s2 = struct.unpack(">4I", wal[offset : offset + 16])
        if (s1, s2) != (salt1, salt2):
            break
        frames.append((page, commit_size))
        offset += 24 + page_size
    scratch = tempfile.mkdtemp()
    try:
        copy = os.path.join(scratch, "copy.db")
        shutil.copy(db, copy)
        shutil.copy(db + "-wal", copy + "-wal")
        names = dict(sqlite3.connect(copy).execute("SELECT pageno, name FROM dbstat"))
    finally:
        shutil.rmtree(scratch)
    commits = max(1, sum(1 for _, size in frames if size))
    counts = collections.Counter(
        "page 1 (header)" if page == 1 else names.get(page, "unknown") for page, _ in frames
    )
    print(f"page size {page_size}, {len(frames)} frames, {commits} commits, "
          f"{len(frames) / commits:.1f} frames a commit")
    for name, n in counts.most_common():
        print(f"  {name:28s} {n:7d}  {n / commits:5.2f} a commit")


if __name__ == "__main__":
    main()
