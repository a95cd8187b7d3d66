#!/usr/bin/env python3
"""Prints the largest live allocation sites of a dhat heap profile (`tether run` built
with `--features dhat-heap`, written on SIGUSR1; see docs/benchmarks.md).

Each site is the first frame in tether's own crates, with the first frame outside the
standard library (what allocated: serde, kube, hashbrown, …). Bytes are those live when
the profile was written (dhat's t-end). With --per N, each figure is also divided by N
(the managed objects held).

The sizes of the live blocks are printed too, largest total first: where the call
sites do not resolve (dhat resolves no Rust frame of tether's debug build here), the
counts tell what they are: 5,000-odd blocks of one size are per Secret, 150 per
object of one kind.

    scripts/heap-top.py dhat-heap.json [--per 600] [--top 25]
"""

import argparse
import json
import re
from collections import defaultdict

OWN = re.compile(r"\b(tether|tether_api|tether_aws)::")
INTERNAL = re.compile(
    r"^(dhat|alloc|core|std|<alloc|<core|<std|__rust|rust_|<dhat|hashbrown::raw|"
    r"<hashbrown::raw|\[root\])"
)


def frame_name(frame):
    # "0x55d…: function (file:line)"; keep the function and the file:line.
    text = frame.split(": ", 1)[-1]
    text = re.sub(r"::h[0-9a-f]{16}", "", text)
    return text


def site(frames):
    names = [frame_name(f) for f in frames]
    caller = next((n for n in names if not INTERNAL.match(n)), names[-1] if names else "?")
    own = next((n for n in names if OWN.search(n)), None)
    if own is None or own == caller:
        return caller
    return f"{own}\n      via {caller}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--per", type=int, default=0, help="managed objects held")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.profile) as f:
        profile = json.load(f)
    table = profile["ftbl"]
    sites = defaultdict(lambda: [0, 0])
    sizes = defaultdict(lambda: [0, 0])
    for point in profile["pps"]:
        if point["eb"] == 0:
            continue
        key = site([table[i] for i in point["fs"]])
        sites[key][0] += point["eb"]
        sites[key][1] += point["ebk"]
        size = sizes[point["eb"] // point["ebk"]]
        size[0] += point["eb"]
        size[1] += point["ebk"]
    total = sum(b for b, _ in sites.values())
    blocks = sum(n for _, n in sites.values())
    per = f", {total / args.per / 1024:.1f} KiB per object" if args.per else ""
    print(f"live heap: {total / 1048576:.1f} MiB in {blocks} blocks{per}")
    for key, (size, count) in sorted(sites.items(), key=lambda kv: -kv[1][0])[: args.top]:
        share = f"{size / args.per:8.0f} B/object " if args.per else ""
        print(f"{size / 1048576:7.2f} MiB {count:8} blocks {share} {key}")
    print("by block size:")
    for block, (size, count) in sorted(sizes.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{size / 1048576:7.2f} MiB {count:8} blocks of {block} B")


if __name__ == "__main__":
    main()
