"""``pumpctl calc`` and ``pumpctl library``, run in-process through ``cli.main.main``
(and once through the installed console script).

Exit codes: 0 allowed (warnings possible), 1 a check failed, 2 bad input or usage,
3 refused by the library. With ``--json`` every outcome, refusals included, is one JSON
object on stdout. No input, however bad, may end in a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from safety.library import DrugLibrary

NE_ADULT_WB = ["norepinephrine", "--concentration", "4 mg/250 mL", "--weight", "70"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = run(capsys, *argv, "--json")
    assert err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1, out  # exactly one JSON object
    body = json.loads(lines[0])
    assert isinstance(body, dict)
    return code, body


def assert_error(body: dict[str, Any], code: str) -> dict[str, Any]:
    """A refusal or a bad input prints exactly {"error": {code, message[, field]}}."""
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict)
    assert {"code", "message"} <= set(error) <= {"code", "message", "field"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


# ----------------------------------------------------------------------------- the five figures


@pytest.mark.parametrize(
    ("argv", "rate", "dose", "unit", "therapy"),
    [
        (
            [
                "norepinephrine",
                "--dose",
                "0.1 mcg/kg/min",
                "--concentration",
                "4 mg/250 mL",
                "--weight",
                "70",
            ],
            26.25,
            0.1,
            "mcg/kg/min",
            "weight_based",
        ),
        (
            ["norepinephrine", "--dose", "8 mcg/min", "--concentration", "4 mg/1000 mL"],
            120.0,
            8.0,
            "mcg/min",
            "standard",
        ),
        (
            [
                "norepinephrine",
                "--therapy",
                "hepatorenal",
                "--dose",
                "0.5 mg/h",
                "--concentration",
                "16 mcg/mL",
            ],
            31.25,
            0.5,
            "mg/h",
            "hepatorenal",
        ),
        (
            ["vasopressin", "--dose", "0.03 units/min", "--concentration", "20 units/100 mL"],
            9.0,
            0.03,
            "units/min",
            "fixed",
        ),
        (
            [
                "norepinephrine",
                "--profile",
                "pediatric_icu",
                "--rate",
                "1 mL/h",
                "--concentration",
                "6 mg/100 mL",
                "--weight",
                "10",
            ],
            1.0,
            0.1,
            "mcg/kg/min",
            "weight_based",
        ),
    ],
)
def test_issue_figures_via_json(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    rate: float,
    dose: float,
    unit: str,
    therapy: str,
) -> None:
    code, body = run_json(capsys, "calc", *argv)
    assert code == 0
    assert body["rate_ml_per_h"] == rate
    assert body["rate_exact_ml_per_h"] == rate
    assert body["dose_value"] == pytest.approx(dose, abs=1e-12)
    assert body["dose_at_pump_rate"] == pytest.approx(dose, abs=1e-12)
    assert body["dose_unit"] == unit
    assert body["therapy"] == therapy
    assert isinstance(body["warnings"], list)
    assert body["library"]["hash"].startswith("sha256:")


def test_text_output_names_rate_dose_and_rounding(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "calc",
        "norepinephrine",
        "--dose",
        "0.1 mcg/kg/min",
        "--concentration",
        "4 mg/250 mL",
        "--weight",
        "70",
        "--diluent",
        "D5W",
    )
    assert code == 0
    assert "26.25 mL/h" in out
    assert "0.1 mcg/kg/min" in out
    assert "7 mcg/min at 70 kg" in out
    assert "rounded down" in out
    assert "16 mcg/mL in D5W" in out
    assert "warnings:" not in out  # diluent given, dose inside the soft range


def test_rate_path_prints_the_dose(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(
        capsys, "calc", *NE_ADULT_WB, "--therapy", "weight_based", "--rate", "26.25 mL/h"
    )
    assert code == 0
    assert body["dose_value"] == pytest.approx(0.1)
    assert body["dose_unit"] == "mcg/kg/min"
    assert body["absolute_dose"] == {"value": pytest.approx(7.0), "unit": "mcg/min"}
    code, out, _ = run(
        capsys, "calc", *NE_ADULT_WB, "--therapy", "weight_based", "--rate", "26.25 mL/h"
    )
    assert code == 0
    assert "dose           0.1 mcg/kg/min" in out


def test_rate_is_rounded_down_and_both_figures_reported(capsys: pytest.CaptureFixture[str]) -> None:
    # 1 mg/h at 16 mcg/mL = 62.5 mL/h exactly; 7.77777 mcg/min needs 29.1666... mL/h
    code, body = run_json(
        capsys,
        "calc",
        "norepinephrine",
        "--dose",
        "7.77777 mcg/min",
        "--concentration",
        "4 mg/250 mL",
    )
    assert code == 0
    assert body["rate_ml_per_h"] == 29.16
    assert body["rate_exact_ml_per_h"] == pytest.approx(29.1666375)
    assert body["dose_at_pump_rate"] < body["dose_value"]


# ----------------------------------------------------------------------------- exit codes


def test_soft_max_is_a_warning_not_a_refusal(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(
        capsys,
        "calc",
        "norepinephrine",
        "--dose",
        "40 mcg/min",
        "--concentration",
        "4 mg/250 mL",
        "--diluent",
        "D5W",
    )
    assert code == 0
    assert body["rate_ml_per_h"] == 150.0
    assert body["soft_limit_confirmation_needed"] is True
    assert any("above the soft maximum of 35 mcg/min" in w for w in body["warnings"])
    # and the > 10 mcg/min mortality advisory
    assert any("advisory" in w and "10 mcg/min" in w for w in body["warnings"])


def test_missing_diluent_is_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(
        capsys, "calc", "norepinephrine", "--dose", "8 mcg/min", "--concentration", "4 mg/250 mL"
    )
    assert code == 0
    assert any("diluent not given" in w and "D5W" in w for w in body["warnings"])


@pytest.mark.parametrize(
    ("argv", "limit"),
    [
        (
            ["norepinephrine", "--dose", "48 mcg/min", "--concentration", "4 mg/250 mL"],
            "hard maximum of 47 mcg/min",
        ),
        ([*NE_ADULT_WB, "--dose", "1.5 mcg/kg/min"], "hard maximum of 1 mcg/kg/min"),
        (
            [
                "norepinephrine",
                "--therapy",
                "hepatorenal",
                "--dose",
                "3.5 mg/h",
                "--concentration",
                "16 mcg/mL",
            ],
            "hard maximum of 3 mg/h",
        ),
        (
            ["vasopressin", "--dose", "0.05 units/min", "--concentration", "20 units/100 mL"],
            "hard maximum of 0.04 units/min",
        ),
        (
            [
                "norepinephrine",
                "--profile",
                "pediatric_icu",
                "--dose",
                "6 mcg/kg/min",
                "--concentration",
                "6 mg/100 mL",
                "--weight",
                "10",
            ],
            "hard maximum of 5 mcg/kg/min",
        ),
        (
            ["norepinephrine", "--rate", "180 mL/h", "--concentration", "4 mg/250 mL"],
            "hard maximum of 47 mcg/min",
        ),
    ],
)
def test_above_hard_max_is_refused_naming_the_limit(
    capsys: pytest.CaptureFixture[str], argv: list[str], limit: str
) -> None:
    code, _, err = run(capsys, "calc", *argv)
    assert code == 3
    assert limit in err
    assert "refused" in err
    code, body = run_json(capsys, "calc", *argv)
    assert code == 3
    error = assert_error(body, "hard_max_exceeded")
    assert limit in error["message"]
    assert error["field"] == "dose"


@pytest.mark.parametrize("saline", ["NS", "saline", "normal saline", "0.9% sodium chloride"])
def test_norepinephrine_in_saline_is_refused(
    capsys: pytest.CaptureFixture[str], saline: str
) -> None:
    argv = [
        "calc",
        "norepinephrine",
        "--dose",
        "8 mcg/min",
        "--concentration",
        "4 mg/250 mL",
        "--diluent",
        saline,
    ]
    code, _, err = run(capsys, *argv)
    assert code == 3
    assert "dextrose-containing diluent is required" in err
    code, body = run_json(capsys, *argv)
    assert code == 3
    assert assert_error(body, "diluent_not_allowed")["field"] == "diluent"


def test_vasopressin_in_saline_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run_json(
        capsys,
        "calc",
        "vasopressin",
        "--dose",
        "0.03 units/min",
        "--concentration",
        "20 units/100 mL",
        "--diluent",
        "NS",
    )
    assert code == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["norepinephrine", "--dose", "8 mcg/min", "--concentration", "6 mg/250 mL"],
        ["norepinephrine", "--dose", "8 mcg/min", "--concentration", "4 mcg/250 mL"],
        ["norepinephrine", "--dose", "8 mcg/min", "--concentration", "20 units/100 mL"],
        [
            "norepinephrine",
            "--profile",
            "pediatric_icu",
            "--dose",
            "0.1 mcg/kg/min",
            "--concentration",
            "6 mg/100 mL",
            "--weight",
            "20",
        ],
    ],
)
def test_concentration_not_in_the_library_is_refused(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, body = run_json(capsys, "calc", *argv)
    assert code == 3
    error = assert_error(body, "concentration_not_allowed")
    assert "allowed:" in error["message"]


def test_unit_swap_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """0.5 mcg/min against a mcg/kg/min therapy: the 70x swap, refused (with or without
    a weight: the unit is wrong before the weight matters)."""
    for extra in ([], ["--weight", "70"]):
        code, body = run_json(
            capsys,
            "calc",
            "norepinephrine",
            "--therapy",
            "weight_based",
            "--dose",
            "0.5 mcg/min",
            "--concentration",
            "4 mg/250 mL",
            *extra,
        )
        assert code == 3
        error = assert_error(body, "dose_unit_mismatch")
        assert "mcg/kg/min" in error["message"]
    code, body = run_json(
        capsys,
        "calc",
        "norepinephrine",
        "--therapy",
        "standard",
        "--dose",
        "0.1 mcg/kg/min",
        *NE_ADULT_WB[1:],
    )
    assert code == 3
    assert_error(body, "dose_unit_mismatch")


def test_weight_outside_the_profile_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, body = run_json(
        capsys,
        "calc",
        "norepinephrine",
        "--dose",
        "0.1 mcg/kg/min",
        "--concentration",
        "4 mg/250 mL",
        "--weight",
        "5",
    )
    assert code == 3
    assert "weight range 30-250 kg" in assert_error(body, "weight_out_of_range")["message"]


def test_weight_based_dose_without_weight_is_bad_input_naming_weight(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["calc", "norepinephrine", "--dose", "0.1 mcg/kg/min", "--concentration", "4 mg/250 mL"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "weight" in err
    code, body = run_json(capsys, *argv)
    assert code == 2
    error = assert_error(body, "bad_input")
    assert error["field"] == "weight"
    assert "weight" in error["message"]
    # the rate path needs it just the same
    code, body = run_json(
        capsys,
        "calc",
        "norepinephrine",
        "--therapy",
        "weight_based",
        "--rate",
        "26.25 mL/h",
        "--concentration",
        "4 mg/250 mL",
    )
    assert code == 2
    assert assert_error(body, "bad_input")["field"] == "weight"


@pytest.mark.parametrize(
    ("argv", "code_name", "field", "says"),
    [
        (
            ["calc", "norepinephrine", "--concentration", "4 mg/250 mL"],
            "usage",
            None,
            "--dose --rate is required",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--rate",
                "30 mL/h",
                "--concentration",
                "4 mg/250 mL",
            ],
            "usage",
            None,
            "not allowed with",
        ),
        (["calc", "norepinephrine", "--dose", "8 mcg/min"], "usage", None, "--concentration"),
        (["calc"], "usage", None, "required"),
        ([], "usage", None, "COMMAND"),
        (["frobnicate"], "usage", None, "invalid choice"),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--bogus",
            ],
            "usage",
            None,
            "unrecognized",
        ),
        (
            ["calc", "norepinephrine", "--dose", "8 mcg/h", "--concentration", "4 mg/250 mL"],
            "bad_input",
            "dose unit",
            "not a supported dose unit",
        ),
        (
            ["calc", "norepinephrine", "--dose", "8 U/min", "--concentration", "4 mg/250 mL"],
            "bad_input",
            "dose unit",
            "error-prone",
        ),
        (
            ["calc", "norepinephrine", "--dose", "NaN mcg/min", "--concentration", "4 mg/250 mL"],
            "bad_input",
            "dose",
            "number",
        ),
        (
            ["calc", "norepinephrine", "--dose", "0,1 mcg/kg/min", *NE_ADULT_WB[1:]],
            "bad_input",
            "dose",
            "comma",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--weight",
                "nan",
            ],
            "bad_input",
            "weight",
            "finite",
        ),
        (
            ["calc", "norepinephrine", "--rate", "inf mL/h", "--concentration", "4 mg/250 mL"],
            "bad_input",
            "rate",
            "number",
        ),
        (
            ["calc", "norepinephrine", "--dose", "8 mcg/min", "--concentration", "4 mg"],
            "bad_input",
            "concentration",
            "not a concentration",
        ),
        (
            ["calc", "aspirin", "--dose", "8 mcg/min", "--concentration", "4 mg/250 mL"],
            "unknown_entry",
            "drug",
            "aspirin",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--profile",
                "neonatal",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
            ],
            "unknown_entry",
            "profile",
            "neonatal",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--therapy",
                "bolus",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
            ],
            "unknown_entry",
            "therapy",
            "bolus",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--diluent",
                "cola",
            ],
            "bad_input",
            "diluent",
            "cola",
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--library",
                "/nonexistent/lib.toml",
            ],
            "invalid_library",
            "library",
            "No such file",
        ),
    ],
)
def test_bad_input_and_usage_exit_2(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code_name: str,
    field: str | None,
    says: str,
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("pumpctl: ")
    assert says in err
    code, body = run_json(capsys, *argv)
    assert code == 2
    error = assert_error(body, code_name)
    assert error.get("field") == field
    assert says in error["message"]


_BAD_VALUES = [
    "",
    " ",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e9",
    "1e-99999999",
    "1e99999999",
    "garbage",
    "0,1",
    "\x00",
    "１",
    "1/0",
    "0x10",
    "--",
    "mcg",
    "1 mcg/kg",
    "9" * 400,
    "\u212ag",
    "µ",
    "in",
    "/",
]


@pytest.mark.parametrize("value", _BAD_VALUES)
@pytest.mark.parametrize(
    "option",
    ["--dose", "--rate", "--concentration", "--weight", "--diluent", "--profile", "--therapy"],
)
def test_no_input_makes_a_traceback(
    capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    argv = {
        "--dose": "8 mcg/min",
        "--concentration": "4 mg/250 mL",
        "--weight": "70",
    }
    argv[option] = value
    if option == "--rate":
        del argv["--dose"]
    flat = [item for pair in argv.items() for item in pair]
    for as_json in ([], ["--json"]):
        code = main(["calc", "norepinephrine", *flat, *as_json])  # an exception fails here
        out, err = capsys.readouterr()
        assert code in (0, 2, 3), (code, out, err)
        assert "Traceback" not in out + err
        if code:
            assert json.loads(out)["error"]["message"] if as_json else err.strip()


@pytest.mark.parametrize("drug", ["", " ", "\x00", "norepinephrine/../x", "n" * 10_000])
def test_odd_drug_names(capsys: pytest.CaptureFixture[str], drug: str) -> None:
    code, body = run_json(
        capsys, "calc", drug, "--dose", "8 mcg/min", "--concentration", "4 mg/250 mL"
    )
    assert code == 2
    assert assert_error(body, "unknown_entry")["field"] == "drug"


@pytest.mark.hil
def test_installed_console_script(tmp_path: Path) -> None:
    """The ``pumpctl`` entry point really is installed and wired to ``cli.main``."""
    script = shutil.which("pumpctl", path=str(Path(sys.executable).parent))
    assert script is not None, "pumpctl console script is not installed next to python"
    done = subprocess.run(
        [
            script,
            "calc",
            "norepinephrine",
            "--dose",
            "0.1 mcg/kg/min",
            "--concentration",
            "4 mg/250 mL",
            "--weight",
            "70",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,  # not the repository: the default library is found from the package
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rate_ml_per_h"] == 26.25
    for argv, expected in [
        (["calc", "norepinephrine", "--dose", "NaN mcg/min", "--concentration", "4 mg/250 mL"], 2),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "0.1 mcg/kg/min",
                "--concentration",
                "4 mg/250 mL",
            ],
            2,
        ),
        (["calc", "norepinephrine", "--dose", "60 mcg/min", "--concentration", "4 mg/250 mL"], 3),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "8 mcg/min",
                "--concentration",
                "4 mg/250 mL",
                "--diluent",
                "NS",
            ],
            3,
        ),
        (
            [
                "calc",
                "norepinephrine",
                "--dose",
                "1e-99999999 mcg/min",
                "--concentration",
                "4 mg/250 mL",
            ],
            2,
        ),
        (["library", "check", "/nonexistent.toml"], 1),
    ]:
        done = subprocess.run(
            [script, *argv], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == expected, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("pumpctl: ") or argv[0] == "library"


# ----------------------------------------------------------------------------- library


def test_library_check_ok(capsys: pytest.CaptureFixture[str], library: DrugLibrary) -> None:
    code, out, _ = run(capsys, "library", "check")
    assert code == 0
    assert ": OK" in out
    assert library.content_hash in out
    code, body = run_json(capsys, "library", "check")
    assert code == 0
    assert body["valid"] is True
    assert body["hash"] == library.content_hash
    assert set(body["profiles"]) == {"adult_icu", "pediatric_icu"}
    assert "norepinephrine" in body["drugs"]


def test_library_check_broken_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, library_text: str
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        library_text.replace(
            "hard_max = { value = 47, source", "hard_max = { value = 47000, source"
        ),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "library", "check", str(broken))
    assert code == 1
    assert f"{broken}: INVALID" in out
    ne_path = "profiles.adult_icu.drugs.norepinephrine.therapies.standard.hard_max.value"
    assert f"  {ne_path}: " in out
    assert "mg/mcg slip" in out
    code, body = run_json(capsys, "library", "check", str(broken))
    assert code == 1
    assert body["valid"] is False
    assert body["path"] == str(broken)
    paths = {p["path"] for p in body["problems"]}
    assert ne_path in paths
    assert all(p["message"] for p in body["problems"])


def test_library_check_reports_structure_by_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, library_text: str
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(
        library_text.replace(
            'display_name = "Vasopressin"\n', 'display_name = "Vasopressin"\ncolour = "blue"\n'
        ),
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "library", "check", str(broken))
    assert code == 1
    assert "profiles.adult_icu.drugs.vasopressin.colour: Extra inputs are not permitted" in out


def test_library_check_unreadable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for path in (tmp_path / "missing.toml", tmp_path):
        code, body = run_json(capsys, "library", "check", str(path))
        assert code == 1
        assert body["problems"][0]["path"] == "(file)"


def test_library_show_all(capsys: pytest.CaptureFixture[str], library: DrugLibrary) -> None:
    code, out, _ = run(capsys, "library", "show")
    assert code == 0
    assert "STATUS: EXAMPLE DATA" in out
    assert library.content_hash in out
    for text in [
        "Adult ICU",
        "Pediatric ICU",
        "[norepinephrine]",
        "[vasopressin]",
        "[epinephrine]",
        "[dobutamine]",
        "Rule of 6",
        "cumulative cap: 68 mg per 24 h",
        "[project-default]",
        "levophed-rescue-summary",
    ]:
        assert text in out, text


def test_library_show_one_drug(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "library", "show", "Levophed")
    assert code == 0
    assert "[norepinephrine]" in out and "[vasopressin]" not in out
    assert "therapy hepatorenal" in out
    assert "hard max" in out and "47 mcg/min" in out
    assert "Pediatric ICU" in out  # the drug is in both profiles
    code, out, _ = run(capsys, "library", "show", "dobutamine", "--profile", "adult_icu")
    assert code == 0
    assert "[dobutamine]" in out and "Pediatric ICU" not in out


def test_library_show_json(capsys: pytest.CaptureFixture[str], library: DrugLibrary) -> None:
    code, body = run_json(capsys, "library", "show", "vasopressin")
    assert code == 0
    assert body["hash"] == library.content_hash
    assert list(body["profiles"]) == ["adult_icu"]
    drugs = body["profiles"]["adult_icu"]["drugs"]
    assert list(drugs) == ["vasopressin"]
    fixed = drugs["vasopressin"]["therapies"]["fixed"]
    assert fixed["dose_unit"] == "units/min"
    assert fixed["hard_max"]["source"] == "norepinephrine-hypotension-summary"
    code, body = run_json(capsys, "library", "show")
    assert code == 0
    assert set(body["profiles"]) == {"adult_icu", "pediatric_icu"}


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["library", "show", "aspirin"], "drug"),
        (["library", "show", "--profile", "neonatal"], "profile"),
        (["library", "show", "--library", "/nonexistent.toml"], "library"),
    ],
)
def test_library_show_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], field: str
) -> None:
    code, body = run_json(capsys, *argv)
    assert code == 2
    assert body["error"]["field"] == field
