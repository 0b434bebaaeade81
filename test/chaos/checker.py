#!/usr/bin/env python3
"""External leadership-interval checker for the chaos campaign.

Input: one HIGHLANDER_LEADERSHIP_LOG file per process life (a restarted
replica writes a new file), all lives of one tenant, and optionally the
campaign's fault records.  Lines are `lead-start T NS`, `lead-until T NS`
and `lead-stop T NS` (CLOCK_MONOTONIC nanoseconds, the same clock as
time.monotonic_ns() here).

Rules
  * Within a life: a `lead-start` opens an interval (one at a time); a
    `lead-until` of the open token moves its authority deadline; a
    `lead-stop` closes it and must not be later than the last deadline the
    life confirmed (authority cannot outlive its own deadline).
  * A life that ended without `lead-stop` (kill -9, or an exit that wrote
    none) held authority until its last `lead-until`: that is when its
    interval ends.  Only a life still running at check time may have an
    open interval.
  * All lives merged and sorted by start: an interval that starts at or
    before the latest end seen so far is an OVERLAP (two leaders at once).
  * Tokens in order of start must strictly increase across intervals: a
    token lower than an earlier one is a REGRESSION, one equal to an
    earlier one is a REPEAT.
  * Leaderless time: every stretch from the end of the covered timeline to
    the start of the next interval (the first election is not counted).
  * Recovery: for each fault, every leaderless stretch inside
    [ref, next fault) must end by ref + bound; its recovery time is when
    the last such stretch ended, minus ref.

Usage: checker.py RUNDIR   (a store's directory written by chaos.py:
lives/*.lead and faults.jsonl); prints the verdict as JSON.
       checker.py --timeline RUNDIR   faults and intervals in time order.
       checker.py --selftest          the rules on made-up lives.
"""
import glob
import json
import os
import sys


class Interval:
    __slots__ = ("token", "start", "end", "life", "stopped")

    def __init__(self, token, start, life):
        self.token = token
        self.start = start
        self.end = None
        self.life = life
        self.stopped = False

    def __repr__(self):
        return "Interval(token=%d, %s, %s..%s%s)" % (self.token, os.path.basename(self.life), self.start,
                                                     self.end, "" if self.stopped else " by lead-until")


def read_life(path, ended=True):
    """The intervals of one life, and the rule violations inside it."""
    out, errors = [], []
    cur, until = None, None
    with open(path) as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            if n != len(lines) - 1:  # a torn last line is the kill's doing
                errors.append("%s:%d: malformed line %r" % (path, n + 1, line))
            continue
        kind, token, ns = parts[0], int(parts[1]), int(parts[2])
        if kind == "lead-start":
            if cur is not None:
                errors.append("%s:%d: lead-start %d while token %d is open" % (path, n + 1, token, cur.token))
                cur.end = until
                out.append(cur)
            cur, until = Interval(token, ns, path), None
        elif kind == "lead-until":
            if cur is None or cur.token != token:
                errors.append("%s:%d: lead-until %d outside its interval" % (path, n + 1, token))
                continue
            until = ns if until is None else max(until, ns)
        elif kind == "lead-stop":
            if cur is None or cur.token != token:
                errors.append("%s:%d: lead-stop %d outside its interval" % (path, n + 1, token))
                continue
            if until is not None and ns > until:
                errors.append("%s:%d: token %d stopped %.3f ms after its own deadline" %
                              (path, n + 1, token, (ns - until) / 1e6))
            cur.end, cur.stopped = ns, True
            out.append(cur)
            cur, until = None, None
        else:
            errors.append("%s:%d: unknown line %r" % (path, n + 1, line))
    if cur is not None:
        if ended:
            # Killed: its authority provably ended at the last deadline it
            # confirmed (lead-start is always followed by a lead-until).
            cur.end = until if until is not None else cur.start
        out.append(cur)
    return out, errors


def merge(intervals):
    """Overlaps, token faults and leaderless gaps of intervals of one tenant."""
    iv = sorted(intervals, key=lambda x: (x.start, x.token))
    overlaps, tokens, gaps, covered = [], [], [], []
    max_end, max_iv = None, None
    max_token, seen = None, set()
    for x in iv:
        e = x.end if x.end is not None else float("inf")
        if max_iv is not None:
            if x.start <= max_end:
                overlaps.append({"at_ns": x.start, "earlier": repr(max_iv), "later": repr(x),
                                 "ms": None if max_end == float("inf") else (max_end - x.start) / 1e6})
            else:
                gaps.append((max_end, x.start))
        if x.token in seen:
            tokens.append({"at_ns": x.start, "kind": "repeat", "token": x.token, "interval": repr(x)})
        elif max_token is not None and x.token < max_token:
            tokens.append({"at_ns": x.start, "kind": "regression", "token": x.token, "after": max_token, "interval": repr(x)})
        seen.add(x.token)
        max_token = x.token if max_token is None else max(max_token, x.token)
        if max_iv is None or e > max_end:
            max_end, max_iv = e, x
        # The covered timeline, as disjoint segments.
        if covered and x.start <= covered[-1][1]:
            covered[-1][1] = max(covered[-1][1], e)
        else:
            covered.append([x.start, e])
    return {"intervals": iv, "overlaps": overlaps, "tokens": tokens, "gaps": gaps, "covered": covered}


def recovery(covered, faults, end_ns):
    """Per fault: recovery time (s) and whether it missed its bound.  A fault
    is {kind, ref_ns, bound_ns}; its window runs to the next fault's inject
    time (or end_ns)."""
    out = []
    faults = sorted(faults, key=lambda f: f["inject_ns"])
    for i, f in enumerate(faults):
        ref = f["ref_ns"]
        nxt = faults[i + 1]["inject_ns"] if i + 1 < len(faults) else end_ns
        nxt = max(nxt, ref)
        # Uncovered stretches inside [ref, nxt).
        last_end = ref
        t = ref
        for s, e in covered:
            if e <= t:
                continue
            if s >= nxt:
                break
            if s > t:
                last_end = s  # a leaderless stretch [t, s) ended at s
            t = max(t, e)
            if t >= nxt:
                break
        if t < nxt:
            last_end = nxt  # still leaderless when the window closed
        rec = (last_end - ref) / 1e9
        out.append({"kind": f["kind"], "i": f.get("i"), "recovery_s": rec,
                    "bound_s": f["bound_ns"] / 1e9, "miss": last_end - ref > f["bound_ns"]})
    return out


def check_dir(rundir, alive=()):
    lives = sorted(glob.glob(os.path.join(rundir, "lives", "*.lead")))
    intervals, errors = [], []
    for p in lives:
        iv, err = read_life(p, ended=os.path.basename(p) not in alive)
        intervals += iv
        errors += err
    m = merge(intervals)
    faults = []
    fpath = os.path.join(rundir, "faults.jsonl")
    end_ns = None
    if os.path.exists(fpath):
        with open(fpath) as f:
            for line in f:
                d = json.loads(line)
                if d.get("kind") == "end":
                    end_ns = d["inject_ns"]
                elif d.get("kind") != "start":
                    faults.append(d)
    if end_ns is None:
        end_ns = max([x.end or x.start for x in m["intervals"]] or [0])
    rec = recovery(m["covered"], faults, end_ns)
    # The first election is not leaderless time caused by a fault.
    return {"lives": len(lives), "intervals": len(m["intervals"]), "errors": errors,
            "overlaps": m["overlaps"], "tokens": m["tokens"],
            "gaps_s": [(b - a) / 1e9 for a, b in m["gaps"]], "recovery": rec, "faults": faults}


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * (len(xs) - 1)))))
    return xs[k]


def selftest():
    """The checker judged on made-up lives with known answers (chaos.py runs
    this before every campaign: a checker that never finds anything would
    pass every run)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="hl-checker-")
    os.makedirs(os.path.join(d, "lives"))

    def life(name, text):
        with open(os.path.join(d, "lives", name + ".lead"), "w") as f:
            f.write(text)

    def verdict():
        r = check_dir(d)
        for p in glob.glob(os.path.join(d, "lives", "*")):
            os.unlink(p)
        return len(r["overlaps"]), [t["kind"] for t in r["tokens"]], r["errors"], r["gaps_s"]
    try:
        # A clean handover; a kill -9 whose interval ends at its last lead-until.
        life("a", "lead-start 5 100\nlead-until 5 200\nlead-until 5 300\nlead-stop 5 250\n")
        life("b", "lead-start 6 1000000260\nlead-until 6 1000000400\n")
        life("c", "lead-start 7 1000000500\nlead-until 7 1000000900\nlead-stop 7 1000000900\n")
        assert verdict() == (0, [], [], [1.0000000100, 0.0000001000]), "clean"
        # The killed life (no lead-stop) holds until its last lead-until: 400.
        life("a", "lead-start 5 100\nlead-until 5 400\n")
        life("b", "lead-start 6 350\nlead-until 6 600\nlead-stop 6 600\n")
        assert verdict()[0] == 1, "killed life overlap"
        # Regression and repeat.
        life("a", "lead-start 5 100\nlead-until 5 200\nlead-stop 5 200\n")
        life("b", "lead-start 3 300\nlead-until 3 400\nlead-stop 3 400\n")
        life("c", "lead-start 5 500\nlead-until 5 600\nlead-stop 5 600\n")
        assert verdict()[1] == ["regression", "repeat"], "tokens"
        # A stop after the life's own deadline is a rule violation.
        life("a", "lead-start 5 100\nlead-until 5 200\nlead-stop 5 300\n")
        assert len(verdict()[2]) == 1, "stop after deadline"
        # Recovery: a leaderless stretch ending 2 s after ref misses a 1 s bound.
        cov = [[0, 10**9], [3 * 10**9, 4 * 10**9]]
        rec = recovery(cov, [{"kind": "k", "inject_ns": 10**9, "ref_ns": 10**9, "bound_ns": 10**9}], 4 * 10**9)
        assert rec[0]["miss"] and abs(rec[0]["recovery_s"] - 2.0) < 1e-9, rec
        rec = recovery(cov, [{"kind": "k", "inject_ns": 10**9, "ref_ns": 10**9, "bound_ns": 3 * 10**9}], 4 * 10**9)
        assert not rec[0]["miss"], rec
    finally:
        import shutil
        shutil.rmtree(d, ignore_errors=True)
    return True


def timeline(rundir):
    """Faults and interval starts/ends in time order, seconds from the first
    fault (checker.py --timeline RUNDIR)."""
    r = check_dir(rundir)
    ev = []
    for p in sorted(glob.glob(os.path.join(rundir, "lives", "*.lead"))):
        for x in read_life(p)[0]:
            name = os.path.basename(p)
            ev.append((x.start, "    start token %d %s" % (x.token, name)))
            ev.append((x.end, "    end   token %d %s (%s)" % (x.token, name, "lead-stop" if x.stopped else
                                                             "last lead-until")))
    for f in r["faults"]:
        ev.append((f["inject_ns"], "FAULT %d %s (leader %s) ref +%.3f s bound %.1f s" % (
            f.get("i", -1), f["kind"], f.get("leader"), (f["ref_ns"] - f["inject_ns"]) / 1e9, f["bound_ns"] / 1e9)))
    t0 = min([f["inject_ns"] for f in r["faults"]] or [0])
    for t, s in sorted((e for e in ev if e[0] is not None), key=lambda e: e[0]):
        print("%10.3f %s" % ((t - t0) / 1e9, s))


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--selftest":
        selftest()
        print("checker self-test passed")
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == "--timeline":
        timeline(sys.argv[2])
        return 0
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    r = check_dir(sys.argv[1])
    g = r["gaps_s"]
    print(json.dumps({"lives": r["lives"], "intervals": r["intervals"], "errors": r["errors"],
                      "overlaps": r["overlaps"], "tokens": r["tokens"],
                      "leaderless_s": {"n": len(g), "p50": pct(g, 50), "p99": pct(g, 99),
                                       "max": max(g) if g else None},
                      "recovery_misses": [x for x in r["recovery"] if x["miss"]]}, indent=1))
    return 1 if r["overlaps"] or r["tokens"] or r["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
