"""The score of the last ``mutmut run`` (``make mutation``), from its result files.

mutmut keeps each mutant's outcome beside the mutated copy (``mutants/<file>.meta``);
this reads them and prints what docs/safety.md reports: mutants killed out of those
checked, and every mutant that was not killed, by name (``mutmut show NAME`` prints its
diff). A mutant no test reaches counts as not killed: nothing would notice it.

Run: ``.venv/bin/python -m tests.kernel.mutation_score [mutants-dir]``. Exit status 0
whatever the score: the run is evidence to read, not a gate.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

#: mutmut's exit codes -> outcome (mutmut.stats.status_by_exit_code, the ones it writes)
OUTCOME = {
    1: "killed",
    3: "killed",  # pytest's internal error under the mutant: the mutant broke it
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    37: "caught by type check",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
}
#: outcomes in which the tests noticed the mutant
DETECTED = {"killed", "timeout", "segfault"}


def outcomes(mutants: Path) -> dict[str, str]:
    """Mutant name -> outcome, for every mutant the last run checked."""
    out: dict[str, str] = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name, code in data["exit_code_by_key"].items():
            if code is None:  # not checked in this run (a subset was asked for)
                continue
            out[name] = OUTCOME.get(code, "suspicious")
    return out


def main(argv: list[str]) -> int:
    mutants = Path(argv[0] if argv else "mutants")
    results = outcomes(mutants)
    if not results:
        print(f"no mutant results under {mutants}/: run `make mutation` first")
        return 1
    counts = Counter(results.values())
    detected = sum(counts[o] for o in DETECTED)
    total = len(results)
    print()
    for outcome, n in sorted(counts.items()):
        print(f"  {outcome:22s} {n}")
    missed = sorted(name for name, o in results.items() if o not in DETECTED)
    for name in missed:
        print(f"  {results[name]:22s} {name}")
    print(
        f"mutation score: {detected} / {total} killed ({100 * detected / total:.1f} %); "
        f"{len(missed)} not killed (survived {counts['survived']}, "
        f"no tests {counts['no tests']})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
