"""``pumpctl library check|show``: validate a library file; print it for a reviewer.

``show`` prints every figure with its source, because the library is example data that a
clinician must review figure by figure before any use.
"""

from __future__ import annotations

import argparse

from cli.commands.output import (
    EXIT_FAILED,
    EXIT_OK,
    SubParsers,
    bad_input,
    library_from_option,
    print_json,
)
from safety.library import (
    DrugLibrary,
    Figure,
    LibraryError,
    LookupProblem,
    Therapy,
    default_library_path,
    load_library,
)
from safety.rules import num


def add_parser(sub: SubParsers) -> None:
    p = sub.add_parser("library", help="check or show a drug library")
    lsub = p.add_subparsers(dest="library_command", metavar="ACTION")
    lsub.required = True
    check = lsub.add_parser("check", help="validate a library file; list problems by field path")
    check.add_argument("path", nargs="?", help="library file (default config/drug_library.toml)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=run_check)
    show = lsub.add_parser("show", help="print the library (or one drug) with every source")
    show.add_argument("drug", nargs="?", help="only this drug")
    show.add_argument("--profile", help="only this profile")
    show.add_argument("--library", help="library file (default config/drug_library.toml)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=run_show)


def run_check(args: argparse.Namespace) -> int:
    path = args.path or str(default_library_path())
    try:
        library = load_library(path)
    except LibraryError as exc:
        if args.json:
            print_json(
                {
                    "valid": False,
                    "path": path,
                    "problems": [{"path": p.path, "message": p.message} for p in exc.problems],
                }
            )
        else:
            print(f"{path}: INVALID, {len(exc.problems)} problem(s):")
            for problem in exc.problems:
                print(f"  {problem.path}: {problem.message}")
        return EXIT_FAILED
    model = library.model
    drugs = sorted({d for prof in model.profiles.values() for d in prof.drugs})
    if args.json:
        print_json(
            {
                "valid": True,
                "path": path,
                "name": model.name,
                "version": model.version,
                "hash": library.content_hash,
                "profiles": list(model.profiles),
                "drugs": drugs,
            }
        )
    else:
        print(f"{path}: OK")
        print(f"  {model.name} {model.version}  {library.content_hash}")
        print(f"  profiles: {', '.join(model.profiles)}; drugs: {', '.join(drugs)}")
        print(f"  status: {model.status}")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    library = library_from_option(args.library)
    profiles = library.model.profiles
    if args.profile:
        try:
            pid, _ = library.profile(args.profile)
        except LookupProblem as exc:
            bad_input(str(exc), exc.field, code="unknown_entry")
        profiles = {pid: profiles[pid]}
    if args.drug:
        wanted: dict[str, str] = {}
        for pid in profiles:
            try:
                _, did, _ = library.drug(args.drug, pid)
                wanted[pid] = did
            except LookupProblem:
                continue
        if not wanted:
            bad_input(f"drug: {args.drug!r} is not in the library", "drug", code="unknown_entry")
    if args.json:
        dump = library.model.model_dump(mode="json", by_alias=True)
        if args.drug:
            dump["profiles"] = {
                pid: {**dump["profiles"][pid], "drugs": {did: dump["profiles"][pid]["drugs"][did]}}
                for pid, did in wanted.items()
            }
        else:
            dump["profiles"] = {pid: dump["profiles"][pid] for pid in profiles}
        dump["hash"] = library.content_hash
        print_json(dump)
        return EXIT_OK
    print(_header(library))
    for pid, profile in profiles.items():
        if args.drug and pid not in wanted:
            continue
        print(
            f"\n== {profile.display_name} [{pid}]  weight {num(profile.weight_kg.min)}-"
            f"{num(profile.weight_kg.max)} kg ({profile.weight_kg.source})"
        )
        for did, drug in profile.drugs.items():
            if args.drug and wanted.get(pid) != did:
                continue
            aliases = f" (also: {', '.join(drug.aliases)})" if drug.aliases else ""
            print(f"\n  {drug.display_name} [{did}]{aliases}")
            if drug.advisory:
                print(f"    advisory: {drug.advisory}")
            cap = drug.cumulative_cap
            if cap is not None:
                print(
                    f"    cumulative cap: {num(cap.amount)} {cap.unit} per {num(cap.window_h)} h"
                    f"  [{cap.source}]"
                )
            for tid, therapy in drug.therapies.items():
                default = " (default)" if tid == drug.default_therapy else ""
                print(f"\n    therapy {tid}{default}: {therapy.display_name}")
                for line in _therapy_lines(therapy):
                    print(f"      {line}")
    return EXIT_OK


def _header(library: DrugLibrary) -> str:
    m = library.model
    return (
        f"{m.name} {m.version}\n{library.content_hash}\n"
        f"STATUS: {m.status}\n"
        f"sources: " + "; ".join(f"{k} = {v.title}" for k, v in m.sources.items())
    )


def _fig(name: str, fig: Figure | None, unit: str) -> str:
    if fig is None:
        return ""
    note = f" - {fig.note}" if fig.note else ""
    return f"{name:<26}{num(fig.value):>8} {unit:<12}[{fig.source}]{note}"


def _therapy_lines(t: Therapy) -> list[str]:
    u = t.dose_unit
    out: list[str] = []
    if t.advisory:
        out.append(f"advisory: {t.advisory}")
    for name in ("default_start", "max_start", "soft_min", "soft_max", "hard_max", "warn_above"):
        line = _fig(name.replace("_", " "), getattr(t, name), u)
        if line:
            out.append(line)
    out.append("concentrations:")
    for c in t.concentrations:
        dil = ", ".join(d.value for d in c.diluents)
        note = f" - {c.note}" if c.note else ""
        out.append(f"  {c.label} in {dil}  [{c.source}]{note}")
    ti = t.titration
    out.append("titration (a rise must respect both the absolute and the relative bound):")
    out.append("  " + _fig("max step rise", ti.max_step_rise, u))
    out.append("  " + _fig("max step rise fraction", ti.max_step_rise_fraction, ""))
    out.append("  " + _fig("window", ti.window_min, "min"))
    out.append("  " + _fig("max window rise", ti.max_window_rise, u))
    out.append("  " + _fig("max window rise fraction", ti.max_window_rise_fraction, ""))
    w = t.wean
    gradual = "yes" if w.gradual_wean_only.value else "no"
    out.append(f"wean: gradual only: {gradual}  [{w.gradual_wean_only.source}]")
    for name, unit in (("max_fall_fraction", ""), ("window_min", "min"), ("stop_threshold", u)):
        line = _fig(name.replace("_", " "), getattr(w, name), unit)
        if line:
            out.append("  " + line)
    return out
