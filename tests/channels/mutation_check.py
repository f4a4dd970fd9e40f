"""Hand-picked mutants of the channel checks (S1, S3, S4, S5 on the total, S10 per drug,
S12 on every channel, the stop button between two read-backs and between a restart's
connections, and a press counted by the GPIO's own sampling thread, S13 another pump on a
channel's port (after a reconnect and a restart, and the acceptance of a replaced pump;
the warning where pump names cannot tell two channels' pumps apart; a port missing at
start, or slow to open; keep-alives to running pumps only, and while a restart
connects), S15 relay and container changes): each check removed outright in a
throw-away copy of the tree, and the tests named for it must fail. The same method and
``Mutant`` as ``tests.kernel.mutation_check`` (see its docstring); the snippets are
checked to exist exactly once by ``test_mutation_table.py`` in ``make test``.

Run: ``.venv/bin/python -m tests.channels.mutation_check [name-filter ...]``.
"""

from __future__ import annotations

import sys

from tests.kernel.mutation_check import Mutant, judge

DECIDE = "safety/kernel/decide.py"
OBSERVE = "safety/kernel/observe.py"
RELAY = "safety/kernel/relay.py"
STATE = "safety/kernel/state.py"
CORE = "safety/host/core.py"
GPIO = "drivers/gpio/base.py"
REDUCER = "safety/kernel/reducer.py"

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "S1 summed hard max",
        DECIDE,
        "    total_dose = dose + program.dose_of_amount_rate(others)",
        "    total_dose = dose",
        "test_the_hard_max_binds_the_total",
    ),
    Mutant(
        "S1 summed read-back",
        OBSERVE,
        "    amount = Fraction(rate) * program.amount_per_ml + others",
        "    amount = Fraction(rate) * program.amount_per_ml",
        "test_a_readback_above_the_hard_max_in_all",
    ),
    Mutant(
        "S4 start beside a channel",
        DECIDE,
        "        start=start and not others,",
        "        start=start,",
        "test_a_start_beside_a_running_channel",
    ),
    Mutant(
        "S4/S5 others ignored",
        DECIDE,
        "    others = state.others_amount_rate(drug, channel)\n    context",
        "    others = Fraction(0)\n    context",
        "test_a_start_beside or test_rises_on_either or test_a_fall_on_one_channel",
    ),
    Mutant(
        "S5 stop one of several",
        DECIDE,
        "    if drug is not None and others > 0:",
        "    if False:",
        "test_stopping_one_channel or test_a_small_channel",
    ),
    Mutant(
        "S3 cap stops every channel",
        OBSERVE,
        "            return s, [StopPump(name) for name, c in channels if c.running]",
        "            return s, [StopPump(channels[0][0])]",
        "test_the_cap_guard_stops_every_channel",
    ),
    Mutant(
        "S10 per drug",
        DECIDE,
        "        names += [n for n, _ in state.drug_channels(drug) if n not in names]",
        "        pass",
        "test_an_uncertain_command_on_one_channel",
    ),
    Mutant(
        "channel named",
        STATE,
        "            if len(names) == 1:\n                return names[0]",
        "            if names:\n                return names[0]",
        "test_a_request_names_its_channel",
    ),
    Mutant(
        "S12 every channel",
        DECIDE,
        "    stops: list[PumpAction] = [StopPump(n) for n in answering]",
        "    stops: list[PumpAction] = [StopPump(answering[0])]",
        "test_the_emergency_stop_stops_every_channel",
    ),
    Mutant(
        "S12 the silent last",
        DECIDE,
        "    silent = [n for n in names if n not in answering]",
        "    silent: list[str] = []",
        "test_the_emergency_stop_stops_the_answering_pumps",
    ),
    Mutant(
        "S15 same concentration",
        RELAY,
        "    if difference is not None:\n        return Verdict.refuse(\n"
        "            Reason.STANDBY",
        "    if False:\n        return Verdict.refuse(\n            Reason.STANDBY",
        "test_a_standby_holds_the_same_concentration",
    ),
    Mutant(
        "S15 primed standby",
        RELAY,
        "    if not cb.container.primed:",
        "    if False:",
        "test_a_standby_must_be_primed",
    ),
    Mutant(
        "S15 prime confirmed",
        RELAY,
        "    if not body.confirm_line_disconnected:",
        "    if False:",
        "test_a_prime_needs",
    ),
    Mutant(
        "S15 prime bounded",
        RELAY,
        "    most = config.max_prime_ml\n",
        "    most = config.max_prime_ml + 1\n",
        "test_a_prime_needs",
    ),
    Mutant(
        "S15 standby first",
        RELAY,
        "    if step >= steps:\n        if ca.expected_running:\n"
        "            actions.append(StopPump(a))",
        "    if step >= steps:\n        if ca.expected_running:\n"
        "            actions.insert(0, StopPump(a))",
        "test_a_standby_that_does_not_start",
    ),
    Mutant(
        "S15 no double count",
        STATE,
        "        if self.program is None or not self.unread_command:\n            return verified",
        "        if True:\n            return verified",
        "test_a_quick_handover or test_an_overlap_handover",
    ),
    Mutant(
        "S15 relay in the service loop",
        CORE,
        "            self._relay()  # cheap, pure until it has something to do",
        "            pass",
        "test_a_quick_handover",
    ),
    Mutant(
        "S15 overlap step spacing",
        RELAY,
        "        waiting = t < handover.step_at + config.overlap_step_s or not "
        "_flow_shown(state, b)",
        "        waiting = not _flow_shown(state, b)",
        "test_an_overlap_handover",
    ),
    Mutant(
        "S15 overlap waits for flow",
        RELAY,
        "    return counter - start >= FLOW_SHOWN_SHARE * expected",
        "    return True",
        "test_an_overlap_step_waits",
    ),
    Mutant(
        "S15 fall back",
        RELAY,
        "        if not cb.running and not cb.expected_running:\n            return _fall_back(",
        "        if False:\n            return _fall_back(",
        "test_a_standby_that_fails_mid_overlap",
    ),
    Mutant(
        "S15 relieve an empty pump",
        RELAY,
        '            why = f"channel {a}\'s pump stopped {RELIEVED_ON[stopped_by]}"',
        "            continue",
        "test_a_pump_that_stops_empty_early",
    ),
    Mutant(
        "S15 relief on a supervised own stop only",
        RELAY,
        "            and ca.stopped_itself_at is not None\n"
        "            and ca.stopped_itself_at >= standby.armed_at\n",
        "",
        "test_only_a_supervised_pumps_own_stop",
    ),
    Mutant(
        "S15 an own stop seen at a restart",
        REDUCER,
        "    if c.expected_running and not reading.running:\n        stopped_itself_at = t",
        "    if False:\n        stopped_itself_at = t",
        "test_a_pump_that_runs_empty_while_the_safety_process_is_down",
    ),
    Mutant(
        "S15 relieve a stalled or occluded pump",
        RELAY,
        '    "stall": "with its motor stalled (an empty syringe, or an occlusion)",',
        "",
        "test_a_pump_that_stops_on_its_own_is_relieved",
    ),
    Mutant(
        "S15 no-standby warning high",
        OBSERVE,
        "        high = left <= config.handover_before_empty_s",
        "        high = False",
        "test_a_container_nearing_empty",
    ),
    Mutant(
        "S15 pause bounded",
        OBSERVE,
        "        if pause is None or t <= pause.until:",
        "        if True:",
        "test_a_pause_is_bounded",
    ),
    Mutant(
        "S15 pause is the only stop",
        DECIDE,
        "    if c.pause is not None:\n        return Verdict.refuse(\n"
        "            Reason.CONTAINER_PAUSE,",
        "    if False:\n        return Verdict.refuse(\n            Reason.CONTAINER_PAUSE,",
        "test_a_pause_stops_a_vasopressor",
    ),
    Mutant(
        "S15 resume judged",
        RELAY,
        "        if refusal is not None:\n            return Verdict.refuse(refusal.reason, "
        "refusal.message, **extra)\n    actions",
        "        if False:\n            return Verdict.refuse(refusal.reason, "
        "refusal.message, **extra)\n    actions",
        "test_a_resume_is_judged",
    ),
    Mutant(
        "S13 another pump named",
        CORE,
        "            if known.comms_ok or another != channel.another_pump or other != known."
        "other_pump:",
        "            if known.comms_ok:",
        "test_another_pump_behind_the_port",
    ),
    Mutant(
        "S13 pump name preset at a restart",
        CORE,
        "            self._expect_pump(channel)  # before any connection",
        "            pass  # before any connection",
        "test_ports_swapped_by_a_reboot or test_an_operator_accepts",
    ),
    Mutant(
        "S13 replacement while the own pump answers",
        DECIDE,
        "    if c.comms_ok:\n        return Verdict.refuse(\n            Reason.PUMP_REPLACEMENT,",
        "    if False:\n        return Verdict.refuse(\n            Reason.PUMP_REPLACEMENT,",
        "test_an_operator_accepts_a_replaced_pump",
    ),
    Mutant(
        "S13 replacement with no name on record",
        DECIDE,
        "    if not c.pump_name:\n        return Verdict.refuse(",
        "    if False:\n        return Verdict.refuse(",
        "test_nothing_to_accept_where_no_pump_name",
    ),
    Mutant(
        "S13 replacement during a handover",
        DECIDE,
        "    if handover is not None and channel in (handover.from_channel, handover.to_channel):",
        "    if False:",
        "test_no_replacement_during_a_relay_handover",
    ),
    Mutant(
        "S13 the old infusion ends with the old pump",
        REDUCER,
        "            return pump_replaced(state, event.channel, event.now, config)",
        "            return state.with_channel(event.channel, pump_name=event.name)",
        "test_a_running_replacement or test_a_replacements_counter",
    ),
    Mutant(
        "S7 a replacement is set up before any rate",
        CORE,
        "            replaced.known, replaced.replaced, replaced.another_pump = False, True, False",
        "            replaced.replaced, replaced.another_pump = True, False",
        "test_a_replacement_during_a_run_is_given_the_syringe",
    ),
    Mutant(
        "S7 never set up while running",
        CORE,
        "        if status.running and channel.replaced:",
        "        if False:",
        "test_a_running_replacement",
    ),
    Mutant(
        "S15 a new counter is a baseline",
        OBSERVE,
        "    last = container.counter_ml if container.counter_ml is not None else infused_ml",
        "    last = container.counter_ml if container.counter_ml is not None else 0.0",
        "test_a_replacements_counter_is_its_own",
    ),
    Mutant(
        "S13 the name asked again after an acceptance",
        "drivers/pumps/ne1000.py",
        "        if reopened or not self._linked or self._name.must_ask:",
        "        if reopened or not self._linked:",
        "test_a_replacement_accepted_while_the_own_pump_was_only_silent",
    ),
    Mutant(
        "S13 ports swapped are no replacement",
        DECIDE,
        "    if swapped:\n        return Verdict.refuse(",
        "    if False:\n        return Verdict.refuse(",
        "test_ports_swapped_are_not_accepted_as_a_replacement",
    ),
    Mutant(
        "S13 names alike: warned",
        OBSERVE,
        "    if not groups:\n        return _with_alarms(state, state.alarms.condition_gone("
        '"pump_names_alike"))',
        "    if True:\n        return _with_alarms(state, state.alarms.condition_gone("
        '"pump_names_alike"))',
        "test_two_channels_on_ports_that_may_swap or test_the_warning_is_derived_again",
    ),
    Mutant(
        "S13 names alike: when a name is recorded",
        REDUCER,
        (
            "        named = state.with_channel(event.channel, pump_name=event.name, "
            "pump_nameless=False)\n        return pump_names_alike(named, t)"
        ),
        "        return state.with_channel(event.channel, pump_name=event.name)",
        "test_two_channels_on_ports_that_may_swap",
    ),
    Mutant(
        "S13 names alike: at every start",
        REDUCER,
        "    return pump_names_alike(configured, t)",
        "    return configured",
        "test_the_warning_is_derived_again",
    ),
    Mutant(
        "S13 names alike: one line",
        OBSERVE,
        "            if any(other != port and _may_swap(port, other) for _, other in members)",
        "            if any(_may_swap(port, other) for _, other in members)",
        "test_two_pumps_at_two_addresses_on_one_line",
    ),
    Mutant(
        "S13 names alike: stable port names",
        OBSERVE,
        "    if not any(PLUG_ORDER_PORT.fullmatch(p) for p in ports):\n"
        "        return False\n"
        "    return not any(ON_BOARD_PORT.fullmatch(p) for p in ports)",
        "    return True",
        "test_ports_named_by_their_adapters",
    ),
    Mutant(
        "S13 names alike: by name",
        OBSERVE,
        (
            '            groups_of.setdefault(("named", c.pump_name), [])'
            ".append((name, c.serial_port))"
        ),
        '            groups_of.setdefault(("named", ""), []).append((name, c.serial_port))',
        "test_pumps_that_name_themselves_otherwise",
    ),
    Mutant(
        "S13 names alike: a replacement's old name",
        OBSERVE,
        "    s = pump_names_alike(s, t)  # the old pump's name goes with it",
        "    pass",
        "test_an_accepted_replacement_that_names_itself_otherwise",
    ),
    Mutant(
        "S13 names alike: the port journaled",
        CORE,
        "            serial_port=self.driver.serial_port,",
        '            serial_port="",',
        "test_two_channels_on_ports_that_may_swap",
    ),
    Mutant(
        "S13 names alike: a network address",
        "drivers/serial_options.py",
        "    if port is None or port.startswith(NETWORK_URLS):",
        "    if port is None:",
        "test_a_network_port_or_a_line",
    ),
    Mutant(
        "S13 names alike: pumps that give no name",
        OBSERVE,
        "        elif c.serial_port and c.pump_nameless:",
        "        elif False:",
        "test_two_pumps_that_give_no_name",
    ),
    Mutant(
        "S13 names alike: a pump that gives no name journaled",
        CORE,
        "            if names.nameless and not known.pump_nameless:  # asked, and it gives none",
        "            if False:",
        "test_two_pumps_that_give_no_name",
    ),
    Mutant(
        "S13 the safe-mode bound counts the drains",
        "safety/host/config.py",
        "NE1000_PROBE_TIMEOUTS * reply_timeout_s + (NE1000_PROBE_TIMEOUTS - 1) * drain_s",
        "NE1000_PROBE_TIMEOUTS * reply_timeout_s",
        "test_safe_mode_timeouts or test_the_bound or at_the_bound",
    ),
    Mutant(
        "S12 the button between two read-backs",
        CORE,
        "            self._watch()\n            if self.between_exchanges is not None:",
        "            if self.between_exchanges is not None:",
        "test_the_stop_button_is_read_between_two_pumps_read_backs",
    ),
    Mutant(
        "S13 keep-alives to a running pump only",
        CORE,
        "        if not self.state.channel(name).running:\n            return False\n        try:",
        "        if False:\n            return False\n        try:",
        "test_a_keep_alive_fills_only_a_silence",
    ),
    Mutant(
        "S13 keep-alives while a restart connects",
        CORE,
        "            self._between_connections(answered)\n",
        "",
        "test_a_restart_keeps_the_channels_it_read_alive",
    ),
    Mutant(
        "S13 keep-alives at a restart only to pumps read",
        CORE,
        "            self._between_connections(answered)\n",
        "            self._between_connections(list(self.channels))\n",
        "test_a_restart_keeps_the_channels_it_read_alive",
    ),
    Mutant(
        "S13 the watchdog fed while a restart connects",
        CORE,
        (
            "        self._watch()\n"
            "        for name in answered:\n"
            "            if self._keep_alive(name, self.liveness.now()):\n"
            "                self._watch()"
        ),
        (
            "        for name in answered:\n"
            "            if self._keep_alive(name, self.liveness.now()):\n"
            "                pass"
        ),
        "test_a_restart_keeps_the_channels_it_read_alive",
    ),
    Mutant(
        "S12 the stop button read while a restart connects",
        CORE,
        "        self._watch()\n        for name in answered:",
        "        self._feed_watchdog(self.liveness.now())\n        for name in answered:",
        "test_a_press_while_a_restart_connects",
    ),
    Mutant(
        "S12 a press counted meanwhile reported",
        GPIO,
        (
            "            pressed = self._stop_presses > self._presses_reported\n"
            "            self._presses_reported = self._stop_presses\n"
            "            return pressed"
        ),
        "            return False",
        "test_a_press_counted_meanwhile or test_a_press_while_a_restart_connects",
    ),
    Mutant(
        "S12 the watching thread samples",
        GPIO,
        "                    self._sample()\n                except Exception as exc:",
        "                    pass\n                except Exception as exc:",
        "test_the_watching_thread or test_the_process_watches",
    ),
    Mutant(
        "S12 the process watches its stop button",
        "safety/host/process.py",
        "    gpio.watch_stop_button(config.timing.button_poll_s)\n",
        "",
        "test_the_process_watches or test_a_short_press_while",
    ),
    Mutant(
        "S13 a slow opening waited on",
        "drivers/opening.py",
        "        ended = attempt.wait(0 if joined and wait_s is not None else wait_s)",
        "        ended = attempt.wait(None)",
        "test_a_port_slow_to_open_holds_no_round_of_read_backs",
    ),
    Mutant(
        "S13 a missing port wanted",
        "drivers/transport.py",
        "            self._wanted = True  # wanted from now on, even if it is not there yet\n",
        "",
        "test_a_port_plugged_in_after_start_is_opened_by_the_next_poll",
    ),
    Mutant(
        "S15 resume restores",
        RELAY,
        "            resume_to=pause.total_before,\n",
        "            resume_to=None,\n",
        "test_a_change_primes_and_resumes",
    ),
)


#: what the channel tests need beside the kernel runner's copy (the safety loop's own
#: tests, of what happens between two exchanges, reach the real-process harness)
EXTRA = (
    "controller",
    "cli",
    "observe",
    "benchmarks",
    "hil_tests",
    "tests/controller",
    "tests/channels",
    "tests/drivers",
    "tests/firmware_bridge",
    "tests/safety_process",
)
#: where the named tests are looked for
TESTS = (
    "tests/channels",
    "tests/safety_process/test_between_exchanges.py",
    "tests/safety_process/test_stop_button_watch.py",
    "tests/drivers/test_gpio.py",
    "hil_tests/test_stopping.py",
)


def run(filters: list[str]) -> int:
    return judge(MUTANTS, filters, lambda m: [*TESTS, "-k", m.tests], extra=EXTRA)


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
