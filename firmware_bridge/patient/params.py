"""Every number of the simulated norepinephrine patient, with its source.

The patient is on the pump's side of the wire: it is driven by the flow the simulated pump
really delivered, never by what a controller asked for. This module holds its figures and
draws a patient from the population; the dynamics are in ``pkpd``, ``line``,
``disturbances`` and ``arterial``; ``patient`` ties them to the pump.

Each figure is a ``Figure`` naming its source (a key of ``SOURCES``); docs/closed-loop.md
has the same table for people. Where no published figure exists the value is the
project's own choice (``project``), said so, and kept conservative or ordinary.

Units are settled once here. Plasma norepinephrine is in ng/mL (= ug/L). The published
Emax model of the Python Anesthesia Simulator (PAS) gives C50 = 70.4 with a plasma level
in ng/mL, which makes 0.1 mcg/kg/min raise MAP by 0.44 mmHg: implausible, and what one
gets when a C50 in nmol/L is read as ng/mL (1 ng/mL of norepinephrine is 5.91 nmol/L,
molar mass 169.18 g/mol). We read C50 as 70.4 nmol/L = 11.9 ng/mL; then 0.1 mcg/kg/min
(7 mcg/min at 70 kg, 3.5 ng/mL at a clearance of 2 L/min) raises MAP by about 10 mmHg,
beside Oualha's 15 mmHg for the same level (the plausibility check in
tests/firmware_bridge/test_patient_model.py).
"""

from __future__ import annotations

import enum
import itertools
import math
import random
from dataclasses import dataclass, field, replace

#: g/mol, norepinephrine base (C8H11NO3)
NE_MOLAR_MASS = 169.18
#: 1 ng/mL of norepinephrine in nmol/L
NMOL_PER_L_PER_NG_PER_ML = 1000.0 / NE_MOLAR_MASS


SOURCES: dict[str, str] = {
    "beloeil2005": "Beloeil H, Mazoit JX, Benhamou D, Duranteau J. Norepinephrine kinetics "
    "and dynamics in septic shock and trauma patients. Br J Anaesth 2005;95:782-8",
    "pas": "Python Anesthesia Simulator (Aubouin et al.), pk_models.py and pd_models.py: "
    "its implementation of Beloeil 2005",
    "oualha2014": "Oualha M et al. Population pharmacokinetics and haemodynamic effects of "
    "norepinephrine in hypotensive critically ill children. Br J Clin Pharmacol 2014;78:886",
    "joachim2024": "Joachim J et al. (2024): Hill model of norepinephrine on MAP, with a lag",
    "li2024": "Li et al. (2024): norepinephrine in volunteers, two compartments with a lag",
    "label": "Levophed (norepinephrine) product label: effect ends 1-2 min after stopping",
    "lovich": "Lovich MA et al.: infusion-system dead volume delays changes of delivered "
    "dose by minutes at low flows (qualitative)",
    "rinehart2019": "Rinehart J et al. Closed-loop vasopressor robustness simulation "
    "(J Clin Monit Comput, PMC6816023): 250 simulated septic patients per sensitivity "
    "0.1x-10x, stable or wandering background vasodilation, 60 min",
    "project": "pumpctl project choice: no published figure; ordinary value, said so",
}


@dataclass(frozen=True)
class Figure:
    """One number of the model and where it comes from."""

    value: float
    unit: str
    source: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"figure source {self.source!r} is not in SOURCES")


#: the population and the bench; keys are the names docs/closed-loop.md uses
FIGURES: dict[str, Figure] = {
    # --- pharmacokinetics: one compartment (Beloeil 2005)
    "volume_l": Figure(8.84, "L", "pas", "volume of distribution (Beloeil, as PAS)"),
    "clearance_saps20_l_min": Figure(3.0, "L/min", "beloeil2005", "at SAPS II 20 (t1/2 2 min)"),
    "clearance_saps30_l_min": Figure(2.0, "L/min", "pas", "PAS's typical patient, SAPS II 30"),
    "clearance_saps60_l_min": Figure(0.9, "L/min", "beloeil2005", "at SAPS II 60 (t1/2 6.8 min)"),
    "saps2_min": Figure(20.0, "points", "beloeil2005", "lowest SAPS II of the clearance figures"),
    "saps2_max": Figure(60.0, "points", "beloeil2005", "highest SAPS II of the clearance figures"),
    "omega_volume": Figure(
        0.3,
        "log-SD",
        "project",
        "PAS uses 1.63 as a log-normal SD (95 % of V within 0.4-200 L: not plausible); "
        "we could not check Beloeil's figure and use 0.3",
    ),
    "omega_clearance": Figure(
        0.3, "log-SD", "project", "residual after SAPS II; PAS uses 0.974 (see omega_volume)"
    ),
    # --- pharmacodynamics: sigmoid Emax on MAP
    "emax_mmhg": Figure(98.7, "mmHg", "pas", "largest MAP rise"),
    "c50_nmol_l": Figure(
        70.4, "nmol/L", "pas", "PAS's 70.4 read as nmol/L (= 11.9 ng/mL), see module text"
    ),
    "gamma": Figure(1.8, "", "pas", "Hill coefficient"),
    "omega_c50": Figure(
        0.2, "log-SD", "project", "residual around each sensitivity level (PAS: 1.64, see above)"
    ),
    "effect_lag_s": Figure(
        25.0, "s", "joachim2024", "first-order effect site, mean delay = Joachim's 25 s lag"
    ),
    # --- the patient before the drug
    "map_pre_mean_mmhg": Figure(85.0, "mmHg", "project", "MAP before vasodilation"),
    "map_pre_sd_mmhg": Figure(6.0, "mmHg", "project"),
    "vasodilation_min_mmhg": Figure(
        10.0, "mmHg", "project", "background vasodilation (MAP fall), uniform"
    ),
    "vasodilation_max_mmhg": Figure(20.0, "mmHg", "project"),
    "weight_mean_kg": Figure(75.0, "kg", "project", "weight has no effect on NE PK (Beloeil)"),
    "weight_sd_kg": Figure(12.0, "kg", "project"),
    "pulse_pressure_mean_mmhg": Figure(45.0, "mmHg", "project"),
    "heart_rate_mean_bpm": Figure(95.0, "/min", "project", "septic: tachycardic"),
    # --- disturbances
    "wander_amplitude_mmhg": Figure(
        10.0,
        "mmHg",
        "project",
        "'wandering' background vasodilation (Rinehart 2019 design): new level uniform "
        "within +-this around the patient's own",
    ),
    "wander_dwell_min_s": Figure(240.0, "s", "project", "time between two new levels, uniform"),
    "wander_dwell_max_s": Figure(720.0, "s", "project"),
    "wander_tau_s": Figure(
        90.0,
        "s",
        "rinehart2019",
        "fast approach to each new level ('allowed to occur very "
        "quickly'); the figure itself is the project's",
    ),
    "bleed_mmhg_per_ml": Figure(
        0.02, "mmHg/mL", "project", "500 mL (10 % of blood volume) lowers MAP by 10 mmHg"
    ),
    "fluid_mmhg_per_ml": Figure(0.02, "mmHg/mL", "project", "volume given restores as much"),
    "fluid_redistribution_s": Figure(
        1800.0, "s", "project", "a crystalloid's pressure effect fades with this time constant"
    ),
    # --- the arterial line and the monitor
    "beat_noise_mmhg": Figure(2.0, "mmHg", "project", "beat-to-beat SD of the mean pressure"),
    "resp_amplitude_mmhg": Figure(1.5, "mmHg", "project", "respiratory swing of MAP"),
    "resp_rate_per_min": Figure(14.0, "/min", "project"),
    "flush_mmhg": Figure(300.0, "mmHg", "project", "a flush reads about the bag pressure"),
    "flush_per_h": Figure(1.0, "/h", "project"),
    "zeroing_per_h": Figure(0.5, "/h", "project"),
    "damping_per_h": Figure(0.5, "/h", "project"),
    "disconnect_per_h": Figure(0.25, "/h", "project"),
    "no_signal_per_h": Figure(0.25, "/h", "project", "monitor reports no arterial signal"),
    # --- the line between pump and vein
    "dead_volume_ml": Figure(
        0.5,
        "mL",
        "lovich",
        "catheter lumen and connector to the vein; transport delay = dead volume / total flow",
    ),
    "carrier_ml_h": Figure(5.0, "mL/h", "project", "carrier infusion joining the drug line"),
}


def fig(name: str) -> float:
    return FIGURES[name].value


def clearance_for_saps2(saps2: float) -> float:
    """Typical clearance (L/min) at a SAPS II score: log-linear between the published
    points (20: 3.0, 30: 2.0, 60: 0.9 L/min), held flat outside 20-60."""
    points = (
        (20.0, fig("clearance_saps20_l_min")),
        (30.0, fig("clearance_saps30_l_min")),
        (60.0, fig("clearance_saps60_l_min")),
    )
    s = min(max(saps2, points[0][0]), points[-1][0])
    for (s0, c0), (s1, c1) in itertools.pairwise(points):
        if s <= s1:
            frac = (s - s0) / (s1 - s0)
            return math.exp(math.log(c0) + frac * (math.log(c1) - math.log(c0)))
    return points[-1][1]  # pragma: no cover - s is clamped to the last point


# --------------------------------------------------------------------------- one patient


class Condition(enum.StrEnum):
    """Background vasodilation over the run (Rinehart 2019's two conditions)."""

    STABLE = "stable"
    WANDERING = "wandering"


@dataclass(frozen=True)
class PatientParameters:
    """One simulated adult. Concentrations in ng/mL; doses reach it as ug/min."""

    weight_kg: float
    saps2: float
    volume_l: float
    clearance_l_min: float
    emax_mmhg: float
    c50_ng_ml: float  # for sensitivity 1
    gamma: float
    ke0_per_min: float
    sensitivity: float  # x the population's potency: the dose for an effect is 1/x
    map_pre_mmhg: float  # MAP before the background vasodilation
    vasodilation_mmhg: float  # background vasodilation at the start (MAP fall)
    pulse_pressure_mmhg: float
    heart_rate_bpm: float

    def __post_init__(self) -> None:
        checks = {
            "weight_kg": (20.0, 300.0),
            "volume_l": (0.5, 200.0),
            "clearance_l_min": (0.05, 50.0),
            "emax_mmhg": (1.0, 300.0),
            "c50_ng_ml": (1e-3, 1e4),
            "gamma": (0.2, 10.0),
            "ke0_per_min": (0.01, 100.0),
            "sensitivity": (1e-3, 1e3),
            "map_pre_mmhg": (30.0, 200.0),
            "vasodilation_mmhg": (0.0, 100.0),
            "pulse_pressure_mmhg": (5.0, 150.0),
            "heart_rate_bpm": (20.0, 250.0),
        }
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"patient {name} must be within {low:g}-{high:g}, got {value!r}")

    @property
    def half_life_min(self) -> float:
        return math.log(2) * self.volume_l / self.clearance_l_min

    def with_sensitivity(self, sensitivity: float) -> PatientParameters:
        return replace(self, sensitivity=sensitivity)

    # ------------------------------------------------------------------ closed forms
    def effect_mmhg(self, c_ng_ml: float) -> float:
        """MAP rise at an effect-site level (the sigmoid Emax, potency x sensitivity)."""
        if c_ng_ml <= 0:
            return 0.0
        z = float((self.sensitivity * c_ng_ml / self.c50_ng_ml) ** self.gamma)
        return self.emax_mmhg * z / (1.0 + z)

    def steady_level_ng_ml(self, dose_ug_min: float) -> float:
        """Plasma level at steady state for a constant dose reaching the vein."""
        return dose_ug_min / self.clearance_l_min

    def steady_map(self, dose_ug_min: float, vasodilation_mmhg: float | None = None) -> float:
        """MAP at steady state for a constant dose, with no other disturbance."""
        d = self.vasodilation_mmhg if vasodilation_mmhg is None else vasodilation_mmhg
        return self.map_pre_mmhg - d + self.effect_mmhg(self.steady_level_ng_ml(dose_ug_min))

    def dose_for_map(self, target_mmhg: float, vasodilation_mmhg: float | None = None) -> float:
        """The constant dose (ug/min) that holds ``target_mmhg`` at steady state; 0 when
        no drug is needed, ``math.inf`` when no dose can (above MAP before + Emax)."""
        d = self.vasodilation_mmhg if vasodilation_mmhg is None else vasodilation_mmhg
        need = target_mmhg - (self.map_pre_mmhg - d)
        if need <= 0:
            return 0.0
        if need >= self.emax_mmhg:
            return math.inf
        z = need / (self.emax_mmhg - need)
        level = self.c50_ng_ml / self.sensitivity * float(z ** (1.0 / self.gamma))
        return level * self.clearance_l_min


@dataclass(frozen=True)
class LineSetup:
    """What runs between the syringe and the vein: the drug's strength, the dead volume
    of the line and catheter, and a carrier flow joining it (0: none)."""

    drug_ug_per_ml: float
    dead_volume_ml: float = field(default_factory=lambda: fig("dead_volume_ml"))
    carrier_ml_h: float = field(default_factory=lambda: fig("carrier_ml_h"))
    #: drug strength of the fluid the line was primed with (0: primed drug-free)
    prime_ug_per_ml: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.drug_ug_per_ml) and 0 < self.drug_ug_per_ml <= 1e4):
            raise ValueError(
                f"drug strength must be above 0 and at most 10000 ug/mL, got "
                f"{self.drug_ug_per_ml!r}"
            )
        if not (math.isfinite(self.dead_volume_ml) and 0 <= self.dead_volume_ml <= 50):
            raise ValueError(f"dead volume must be 0-50 mL, got {self.dead_volume_ml!r}")
        if not (math.isfinite(self.carrier_ml_h) and 0 <= self.carrier_ml_h <= 1000):
            raise ValueError(f"carrier flow must be 0-1000 mL/h, got {self.carrier_ml_h!r}")
        if not (math.isfinite(self.prime_ug_per_ml) and 0 <= self.prime_ug_per_ml <= 1e4):
            raise ValueError(f"prime strength must be 0-10000 ug/mL, got {self.prime_ug_per_ml!r}")


def rng(seed: int | str, *stream: object) -> random.Random:
    """An independent, reproducible random stream (string seeds hash the same on every
    run and machine, unlike ``hash()``)."""
    return random.Random(":".join(["pumpctl-patient", str(seed), *map(str, stream)]))


def draw_patient(seed: int | str, index: int, sensitivity: float = 1.0) -> PatientParameters:
    """Patient ``index`` of the population drawn with ``seed``: the same person at every
    sensitivity level (only the potency changes), in every arm and condition."""
    r = rng(seed, "patient", index)

    def lognormal(typical: float, omega: float) -> float:
        # truncated at 2.5 SD: the tails of a log-normal are not patients
        eta = max(-2.5, min(2.5, r.gauss(0.0, 1.0))) * omega
        return typical * math.exp(eta)

    saps2 = r.uniform(fig("saps2_min"), fig("saps2_max"))
    weight = min(140.0, max(45.0, r.gauss(fig("weight_mean_kg"), fig("weight_sd_kg"))))
    return PatientParameters(
        weight_kg=weight,
        saps2=saps2,
        volume_l=lognormal(fig("volume_l"), fig("omega_volume")),
        clearance_l_min=lognormal(clearance_for_saps2(saps2), fig("omega_clearance")),
        emax_mmhg=fig("emax_mmhg"),
        c50_ng_ml=lognormal(fig("c50_nmol_l") / NMOL_PER_L_PER_NG_PER_ML, fig("omega_c50")),
        gamma=fig("gamma"),
        ke0_per_min=60.0 / fig("effect_lag_s"),
        sensitivity=sensitivity,
        map_pre_mmhg=min(
            100.0, max(70.0, r.gauss(fig("map_pre_mean_mmhg"), fig("map_pre_sd_mmhg")))
        ),
        vasodilation_mmhg=r.uniform(fig("vasodilation_min_mmhg"), fig("vasodilation_max_mmhg")),
        pulse_pressure_mmhg=min(70.0, max(25.0, r.gauss(fig("pulse_pressure_mean_mmhg"), 8.0))),
        heart_rate_bpm=min(140.0, max(60.0, r.gauss(fig("heart_rate_mean_bpm"), 12.0))),
    )


def typical_patient(sensitivity: float = 1.0) -> PatientParameters:
    """The population's typical adult (70 kg, SAPS II 30, no variability): the nominal
    patient of the plausibility checks."""
    return PatientParameters(
        weight_kg=70.0,
        saps2=30.0,
        volume_l=fig("volume_l"),
        clearance_l_min=fig("clearance_saps30_l_min"),
        emax_mmhg=fig("emax_mmhg"),
        c50_ng_ml=fig("c50_nmol_l") / NMOL_PER_L_PER_NG_PER_ML,
        gamma=fig("gamma"),
        ke0_per_min=60.0 / fig("effect_lag_s"),
        sensitivity=sensitivity,
        map_pre_mmhg=fig("map_pre_mean_mmhg"),
        vasodilation_mmhg=15.0,
        pulse_pressure_mmhg=fig("pulse_pressure_mean_mmhg"),
        heart_rate_bpm=fig("heart_rate_mean_bpm"),
    )
