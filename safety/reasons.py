"""Reason codes: the machine-readable half of every verdict, refusal and warning.

Each code belongs to one safety invariant (S1-S17, docs/safety.md) or to input
validation, so a journal reader or a scenario expectation can match on it.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    ACCEPTED = "accepted"
    # input and library look-up
    BAD_INPUT = "bad_input"
    UNKNOWN_ENTRY = "unknown_entry"
    LIBRARY_MISMATCH = "library_hash_mismatch"
    # S1 hard max
    HARD_MAX = "hard_max_exceeded"
    # S2 soft limits
    SOFT_MAX = "soft_max_needs_confirmation"
    SOFT_MIN = "soft_min_needs_confirmation"
    ADVISORY = "advisory_threshold"
    # S3 cumulative cap
    CUMULATIVE_CAP = "cumulative_cap"
    # S4 increase limits
    START_TOO_HIGH = "start_above_max_start"
    STEP_RISE = "step_rise_too_large"
    WINDOW_RISE = "window_rise_too_large"
    # S5 gradual wean
    WEAN_TOO_FAST = "wean_too_fast"
    STOP_ABOVE_THRESHOLD = "stop_above_threshold"
    # S6 concentration, diluent, units, weight
    CONCENTRATION_NOT_ALLOWED = "concentration_not_allowed"
    DILUENT_NOT_ALLOWED = "diluent_not_allowed"
    DOSE_UNIT_MISMATCH = "dose_unit_mismatch"
    WEIGHT_REQUIRED = "weight_required"
    WEIGHT_OUT_OF_RANGE = "weight_out_of_range"
    # S7 pump range
    PUMP_RANGE_LOW = "below_pump_range"
    PUMP_RANGE_HIGH = "above_pump_range"
    # S8 sequence and expiry
    STALE_SEQUENCE = "stale_or_duplicate_sequence"
    EXPIRED = "expired"
    # S9 readback
    READBACK_OVER = "readback_over_rate"
    READBACK_UNDER = "readback_under_rate"
    # S10 uncertain delivery
    DELIVERY_UNCERTAIN = "delivery_uncertain"
    # S11 controller lost
    HOLD = "hold_controller_lost"
    # S12 emergency stop
    EMERGENCY_STOPPED = "emergency_stopped"
    # S13 pump
    PUMP_ALARM = "pump_alarm"
    PUMP_COMMS = "pump_comms_lost"
    #: a replaced pump accepted when there is nothing to accept (``AcceptPump``)
    PUMP_REPLACEMENT = "pump_replacement"
    #: two channels' pumps name themselves alike behind ports a reboot may swap: the
    #: name cannot tell them apart (a warning, never a refusal)
    PUMP_NAMES_ALIKE = "pump_names_alike"
    # S16 the patient and the timeline
    PATIENT_MISMATCH = "patient_mismatch"
    CONFIRMATION_REQUIRED = "confirmation_required"
    PROGRAM_STALE = "program_needs_reprogramming"
    LIBRARY_UNUSABLE = "library_unusable"
    JOURNAL_DAMAGED = "journal_damaged"
    TIMELINE_GAP = "timeline_gap"
    # S17 observers
    OBSERVER_READ_ONLY = "observer_read_only"
    # S15 channels, relay and container changes
    UNKNOWN_CHANNEL = "unknown_channel"
    STANDBY_MISMATCH = "standby_solution_mismatch"
    NOT_PRIMED = "standby_not_primed"
    RELAY = "relay"
    CONTAINER_PAUSE = "container_pause"
    # state
    NO_PROGRAM = "no_program"
    NOT_INFUSING = "not_infusing"
    ALREADY_INFUSING = "already_infusing"
    NOT_ATTACHED = "controller_not_attached"
