#!/usr/bin/env python3
"""Groups ThreadSanitizer reports into sites, for ci/tsan.sh.

Reads TSan logs (files named on the command line) and prints one line per
distinct site with how many reports it had. A site is the kind of report
plus, for each of its stacks (the access, the earlier access, and where the
block was allocated, if shown), what was done and the innermost frame in
this crate's own code (`src/`, `tests/`), with its line.
Exit status: 0 whether or not there were reports (ci/tsan.sh decides).
"""

import re
import sys
from collections import Counter

WARNING = re.compile(r"^WARNING: ThreadSanitizer: (.*?)(?: \(pid=\d+\))?$")
# "  Write of size 8 at 0x... by thread T2:", "  Previous atomic write ...",
# "  Location is heap block of size 64 at 0x... allocated by thread T3:".
ACCESS = re.compile(r"^  (\S.*?)(?: by (?:main )?thread(?: T\d+)?)?:$")
FRAME = re.compile(r"^    #\d+ (.*?) (/\S+?):(\d+)(?::\d+)? ")
CRATE = re.compile(r"/(src|tests)/[^/]+(?:/[^/]+)?\.rs$")


def own_frame(frames):
    """The innermost frame in the crate's own files, as `file:line (fn)`."""
    for function, path, line in frames:
        if "/rustlib/" in path or "/.cargo/" in path:
            continue
        match = CRATE.search(path)
        if match:
            short = path[match.start() + 1 :]
            name = re.sub(r"::\{closure#\d+\}", "::{closure}", function)
            return f"{short}:{line} ({name})"
    return "(no frame of this crate)"


def sites(lines):
    """Yields one site (a tuple of strings) per report in `lines`."""
    kind = None
    parts = []
    what = None
    frames = []

    def close_stack():
        nonlocal what, frames
        if what is not None:
            parts.append(f"{what} @ {own_frame(frames)}")
        what, frames = None, []

    for line in lines:
        line = line.rstrip("\n")
        warning = WARNING.match(line)
        if warning:
            kind, parts, what, frames = warning.group(1), [], None, []
            continue
        if kind is None:
            continue
        if line.startswith("SUMMARY: ThreadSanitizer") or line == "==================":
            close_stack()
            yield (kind, *parts)
            kind = None
            continue
        access = ACCESS.match(line)
        if access and not line.startswith("  Thread T") and "Mutex" not in line:
            close_stack()
            what = re.sub(r" at 0x[0-9a-f]+", "", access.group(1))
            what = re.sub(r"heap block of size \d+", "heap block", what)
            continue
        frame = FRAME.match(line)
        if frame and what is not None:
            frames.append(frame.groups())
        elif not line.startswith("    "):
            close_stack()


def main():
    counts = Counter()
    for name in sys.argv[1:]:
        with open(name, encoding="utf-8", errors="replace") as log:
            counts.update(sites(log))
    for site, count in counts.most_common():
        print(f"{count:5}  {site[0]}")
        for part in site[1:]:
            print(f"         {part}")
    print(f"{sum(counts.values())} reports at {len(counts)} sites")


if __name__ == "__main__":
    main()
