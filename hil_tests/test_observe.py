"""Issue 12 as people use it: the dashboard in a real browser on a real bench, the fleet
view on a real Mosquitto broker, and an observer that tries to command.

Few cases, each doing a lot: starting Chromium and the processes costs seconds. Each
page is saved as a screenshot under var/test-artifacts/. Skipped, and listed loudly at
the end of the run, where mosquitto or chromium is not installed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from benchmarks import broker as broker_mod
from hil_tests.conftest import MakeBench, skip_unless
from hil_tests.harness import browser as browser_mod
from hil_tests.harness.bench import HilBench
from hil_tests.harness.processes import Child, RawClient, wait_for, write_toml
from hil_tests.harness.pumps import NE1000
from hil_tests.harness.truth import changes_between
from observe.telemetry.simulate import SimulatedBench
from safety.ipc.messages import ErrorCode, ErrorReply, RequestMessage
from safety.kernel.model import AcknowledgeAlarms, ChangeDose
from safety.library import default_library_path

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]

#: the page must show a changed value within this (real seconds): the issue's figure
PAGE_DEADLINE_S = 2.0
#: the broker outage of the fleet case. The issue names 30 s; the case keeps the suite
#: fast with a shorter one (the mechanism does not depend on the length: the outbox
#: grows while the broker is away); `pumpctl bench --observe` runs the full 30 s.
OUTAGE_S = 3.0
#: the dashboard case's clock: its 50 mL syringe at 15-18.75 mL/h (160-200 clinical min)
#: outlasts the case's 120 s timeout. At the default 600x it emptied 16-20 real s after
#: the start, and on a busy machine the browser's first render came after that: the page
#: then rightly showed 0 mcg/min and a stalled pump, and the case waited for 8 in vain.
DASHBOARD_SPEED = 60.0


def pumpctl(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def dashboard(bench: HilBench) -> str:
    child = bench._spawn(
        pumpctl("dashboard", "--config", str(bench.config), "--port", "0", "--bench-name", "hil")
    )
    return child.wait_line("dashboard on ").removeprefix("dashboard on ")


# The page redraws its lists and fields as snapshots arrive: an element found in one
# WebDriver call may be gone by the next (StaleElementReferenceException on a loaded
# machine), so each read below is one script run in the page.


def field(driver: Any, name: str) -> str:
    return str(
        driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "return e ? (e.getAttribute('data-value') || '') : '';",
            f'[data-f="{name}"]',
        )
    )


def served(url: str) -> str:
    """What the dashboard server has to show (``/api/state``): the link and each
    channel's dose, for the report of a page that does not show it."""
    with urllib.request.urlopen(url + "api/state", timeout=5) as reply:
        state = json.load(reply)
    doses = {c["name"]: c["dose"] for c in state["channels"]}
    return f"link {state['link']}, doses {doses}"


def texts(driver: Any, css: str) -> list[str]:
    """The text of every element ``css`` selects, read at one instant."""
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);",
        css,
    )
    return [str(t) for t in found]


def style(driver: Any, css: str, prop: str) -> str | None:
    """The computed ``prop`` of the first element ``css`` selects (None: there is none)."""
    value = driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e ? getComputedStyle(e).getPropertyValue(arguments[1]) : null;",
        css,
        prop,
    )
    return None if value is None else str(value)


def link_live(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "link").get_attribute("data-live"))


def test_the_dashboard_follows_a_bench_in_a_browser(make_bench: MakeBench) -> None:
    skip_unless(browser_mod.available())
    from selenium.webdriver.common.by import By

    bench = make_bench(NE1000, speed=DASHBOARD_SPEED)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    assert session.start(8).execution == "applied"
    url = dashboard(bench)
    with browser_mod.Browser() as browser:
        d = browser.driver
        d.get(url)
        # the first render waits on the browser's cold start and its first event stream;
        # under the whole suite on 2 cores that once took longer than 15 s
        browser.wait(
            lambda: field(d, "dose") == "8",
            30.0,
            "the page showing 8 mcg/min",
            server=lambda: served(url),
        )
        if browser_mod.cannot_raise_priority():  # no browser thread outranks this process
            assert min(browser.niceness()) >= os.getpriority(os.PRIO_PROCESS, 0)
        # read-only: nothing on the page can send anything
        assert d.find_elements(By.CSS_SELECTOR, "button, input, form, select, textarea") == []

        # a change reaches the page within 2 s
        since = bench.now()
        changed = time.monotonic()
        assert session.order(ChangeDose(Decimal(10))).execution == "applied"
        browser.wait(lambda: field(d, "dose") == "10", PAGE_DEADLINE_S, "10 mcg/min on the page")
        took = time.monotonic() - changed
        assert field(d, "rate") == "18.75"
        browser.wait(
            lambda: any("change_dose 10 -> accepted" in t for t in texts(d, "#journal li")),
            PAGE_DEADLINE_S,
            "the change in the journal's tail",
        )
        browser.screenshot("dashboard-infusing")

        # an occlusion: a high alarm, red and flashing (IEC 60601-1-8)
        bench.fault("occlusion")
        # the style of an unacknowledged one: a high alarm latches (IEC 60601-1-8), so it
        # flashes until acknowledged even once its condition is gone (the NE-1000 reports
        # a stall once; the pump stays stopped); an acknowledged one stops flashing
        active_high = ".alarm.high:not(.ack)"
        browser.wait(lambda: texts(d, active_high), 15.0, "the high alarm")
        assert style(d, active_high, "animation-name") == "flash-high"
        red = style(d, active_high, "background-color")
        assert red in ("rgb(212, 0, 0)", "rgb(74, 0, 0)"), red
        # the stopped pump's alarm: its condition gone at once (the pump will not be
        # restarted), still flashing until someone acknowledges it
        latched = ".alarm.high.gone:not(.ack)"
        browser.wait(lambda: texts(d, latched), 15.0, "the latched high alarm")
        assert style(d, latched, "animation-name") == "flash-high"
        browser.screenshot("dashboard-high-alarm")

        # the safety process dies: the page says the data is stale, then recovers alone
        bench.kill_safety()
        browser.wait(lambda: link_live(d) == "false", 15.0, "the page marking its data stale")
        assert "STALE" in " ".join(texts(d, "#link"))
        assert "safety process" in " ".join(texts(d, "#stale-banner"))
        browser.screenshot("dashboard-stale")
        bench.start_safety()
        browser.wait(lambda: link_live(d) == "true", 20.0, "the page live again")
        assert d.find_elements(By.CSS_SELECTOR, ".alarm.high")  # the alarm survived
        d.set_window_size(390, 844)  # a phone
        browser.screenshot("dashboard-phone")
        width = d.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"the page is {width} px wide on a 390 px phone"
    assert took <= PAGE_DEADLINE_S
    assert [s.rate_ml_h for s in changes_between(bench.truth(), since)][:1] == [18.75]
    bench.assert_invariants()


def test_a_failed_wait_on_a_page_says_what_the_page_showed() -> None:
    """The report that a failed page wait carries: without it, a first render that never
    came in CI left nothing to tell the page's fault from the server's or the machine's."""
    skip_unless(browser_mod.available())
    page = (
        "data:text/html,<p>waiting for the bench</p><script>console.error('no state yet')</script>"
    )
    with browser_mod.Browser() as browser:
        browser.driver.get(page)
        with pytest.raises(AssertionError) as failed:
            browser.wait(lambda: False, 0.2, "a value never shown", server=lambda: "link down")
    said = str(failed.value)
    assert said.startswith("timed out after 0.2 s waiting for a value never shown\n")
    assert "the browser started in " in said
    assert "(complete), showing:\n  waiting for the bench" in said
    assert "SEVERE" in said and "no state yet" in said
    assert said.endswith("the server: link down")
    with browser_mod.Browser() as browser:  # a predicate that raises: the same report
        browser.driver.get(page)
        with pytest.raises(AssertionError) as raised:
            browser.wait(lambda: 1 / 0, 1.0, "a figure")
    said = str(raised.value)
    assert said.startswith("waiting for a figure: ZeroDivisionError(")
    assert "(complete), showing:\n  waiting for the bench" in said
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


def test_an_observer_cannot_command_the_real_process(make_bench: MakeBench) -> None:
    bench = make_bench(NE1000)
    session = bench.connect()
    session.program("norepinephrine", "8 mg/250 mL", "D5W")
    assert session.start(8).execution == "applied"
    since, sets = bench.now(), bench.set_rates_executed()
    observer_key = bytes.fromhex((bench.runtime / "observer.key").read_text().strip())
    for body in (ChangeDose(Decimal(40)), AcknowledgeAlarms(None)):
        raw = RawClient(bench.socket)
        raw.authenticate(observer_key, name="hil-observer", role="observer")
        raw.send(
            RequestMessage(id=1, session=None, seq=1, expires_at=time.monotonic() + 5, body=body)
        )
        error = raw.read()
        assert isinstance(error, ErrorReply) and error.code is ErrorCode.READ_ONLY
        assert raw.closed_by_server()
        raw.close()
    from safety.journal_read import read_safety_events
    from safety.kernel.model import ClientDropped, RequestDecided

    events = read_safety_events(bench.safety_journal)
    refused = [
        e for e in events if isinstance(e, RequestDecided) and e.reason == "observer_read_only"
    ]
    assert [e.body.kind for e in refused] == ["change_dose", "acknowledge"]
    assert sum(isinstance(e, ClientDropped) for e in events) >= 2
    assert changes_between(bench.truth(), since) == []
    assert bench.set_rates_executed() == sets
    assert session.status().attached  # the controller never noticed
    bench.assert_invariants()


def _fleet(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/fleet", timeout=5) as reply:
        data: dict[str, Any] = json.load(reply)
    return data


def test_ten_benches_survive_a_broker_outage_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    skip_unless(broker_mod.available() or browser_mod.available())
    from selenium.webdriver.common.by import By

    broker = broker_mod.Mosquitto(tmp_path / "broker").start()
    fleet: Child | None = None
    benches: list[SimulatedBench] = []
    try:
        fleet = Child(
            pumpctl(
                "fleet",
                "--broker",
                f"127.0.0.1:{broker.port}",
                "--port",
                "0",
                "--stale-after",
                "2",
            )
        )
        url = fleet.wait_line("fleet on ").removeprefix("fleet on ")
        # the page is up before the view's subscription is: an event published before
        # the broker acknowledged it (a fresh broker holds no session of the view's yet)
        # is never delivered to it, and bench-00's first one once went that way
        wait_for(lambda: _fleet(url)["broker"]["subscribed"], 10.0, "the fleet subscribed")
        benches = [
            SimulatedBench(
                f"bench-{i:02d}",
                "127.0.0.1",
                broker.port,
                tmp_path,
                alarm_every=7,
                status_period_s=0.5,
            ).start()
            for i in range(10)
        ]

        def run_for(seconds: float) -> None:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for b in benches:
                    b.tick()
                    if b.publisher.status_due():
                        b.status()
                time.sleep(0.1)

        run_for(1.0)
        wait_for(lambda: len(_fleet(url)["benches"]) == 10, 10.0, "ten tiles")
        broker.stop()
        run_for(OUTAGE_S)  # every bench goes on writing into its outbox
        assert all(b.outbox.count() > 0 for b in benches)
        broker.start()
        run_for(1.0)

        def caught_up() -> bool:
            if not all(b.drained() for b in benches):
                return False
            view = _fleet(url)
            return all(
                tile["streams"].get("journal", {}).get("last") == b.produced["journal"]
                for tile, b in zip(view["benches"], benches, strict=True)
            )

        wait_for(caught_up, 30.0, "every event delivered after the outage")
        view = _fleet(url)
        for tile, b in zip(view["benches"], benches, strict=True):
            for stream in ("journal", "alarm"):
                s = tile["streams"][stream]
                assert s["received"] == s["last"] == b.produced[stream], (tile["bench"], s)
                assert s["gaps"] == 0 and s["missed"] == 0, (tile["bench"], s)
        # duplicates the broker delivered (QoS 1: at least once) were dropped by number
        assert view["totals"]["received"] == sum(sum(b.produced.values()) for b in benches)
        with browser_mod.Browser() as browser:
            d = browser.driver
            d.get(url)

            def ten_fresh() -> bool:
                for b in benches:  # quiet benches still publish their status
                    b.status()
                return len(d.find_elements(By.CSS_SELECTOR, ".tile[data-stale=false]")) == 10

            browser.wait(ten_fresh, 10.0, "ten fresh tiles")
            browser.screenshot("fleet-recovered")
            benches[0].close()
            benches = benches[1:]

            def only_bench_00_stale() -> bool:
                for b in benches:  # the others keep publishing
                    b.status()
                stale = d.find_elements(By.CSS_SELECTOR, ".tile[data-stale=true]")
                return [t.get_attribute("data-bench") for t in stale] == ["bench-00"]

            browser.wait(only_bench_00_stale, 10.0, "the vanished bench alone marked stale")
            browser.screenshot("fleet-one-stale")
    finally:
        for b in benches:
            b.close()
        if fleet is not None:
            fleet.stop()
        broker.stop()


def test_pumpctl_telemetry_publishes_a_real_bench(make_bench: MakeBench, tmp_path: Path) -> None:
    """The publisher process on a real safety process: the retained status says what
    runs, the journal lines arrive numbered from 1 without a gap, a raised alarm is
    published once, and the broker's last will says offline when the publisher dies."""
    skip_unless(broker_mod.available())
    from observe.fleet.model import FleetModel

    bench = make_bench(NE1000)
    broker = broker_mod.Mosquitto(tmp_path / "broker").start()
    model: FleetModel | None = None
    try:
        text = bench.config.read_text()
        bench.config.write_text(
            text
            + f'\n[telemetry]\nbench = "hil-rig"\nport = {broker.port}\n'
            + f'outbox = "{tmp_path}/outbox.sqlite"\nstatus_period_s = 1.0\n'
        )
        session = bench.connect()
        session.program("norepinephrine", "8 mg/250 mL", "D5W")
        assert session.start(8).execution == "applied"
        model = FleetModel("127.0.0.1", broker.port, client_id="hil-fleet").start()
        wait_for(lambda: model.subscribed, 10.0, "the fleet view subscribed")  # before line 1
        publisher = bench._spawn(pumpctl("telemetry", "--config", str(bench.config)))
        publisher.wait_line("telemetry: bench hil-rig")

        def tile() -> Any:
            with model._lock:
                return model.tiles.get("hil-rig")

        def running() -> bool:
            t = tile()
            return bool(
                t
                and t.status
                and t.status["channels"]
                and t.status["channels"][0]["dose_text"] == "8 mcg/min"
            )

        wait_for(running, 20.0, "the retained status of the bench")
        bench.fault("occlusion")
        wait_for(lambda: "alarm" in tile().streams, 20.0, "the alarm published")
        outcome = session.order(ChangeDose(Decimal(4)))  # after the occlusion: refused
        word = "accepted" if outcome.verdict.accepted else "REFUSED"
        wait_for(
            lambda: any(f"change_dose 4 -> {word}" in line for line in tile().journal),
            20.0,
            "the journal line of the change",
        )
        journal = tile().streams["journal"]
        assert journal.gaps == 0 and journal.missed == 0 and journal.received == journal.last
        assert tile().streams["alarm"].received >= 1 and tile().online is True
        publisher.kill9()  # no goodbye: the broker's last will speaks for it
        wait_for(lambda: tile().online is False, 90.0, "the last will: offline")
    finally:
        if model is not None:
            model.close()
        broker.stop()
    bench.assert_invariants()


# --------------------------------------------------------------------------- two channels

#: the two-channel case's clock: 2 clinical minutes a real second. Channel A's 18 mL last
#: 36 clinical minutes at 30 mL/h; an overlap handover of 2 steps of 5 minutes ends 5
#: minutes before empty, so it starts about 10 real seconds after the start (time enough
#: to see the standby first) and lasts about 5 real seconds (time enough to see it).
RELAY_SPEED = 120.0


def _two_channel_config(bench: HilBench, broker_port: int, outbox: Path) -> Path:
    """Channels A and B, each a simulated pump inside the real safety process (driver
    ``mock``, on its scaled clinical clock), and the bench's telemetry."""
    syringe = "bd-plastipak-50ml"
    table: dict[str, Any] = {
        "channels": {
            "A": {
                "driver": "mock",
                "container": syringe,
                "loaded_ml": 18.0,
                "mock": {"loaded_volume_ml": 18.0},
            },
            "B": {"driver": "mock", "container": syringe},
        },
        # B, once it runs alone (50 mL: 100 min), is warned of: no standby for it
        "relay": {
            "handover_before_empty_min": 5.0,
            "warn_before_empty_min": 120.0,
            "overlap_steps": 2,
            "overlap_step_min": 5.0,
        },
        "gpio": {"backend": "simulated", "state_dir": str(bench.gpio_dir)},
        "timing": {"heartbeat_timeout_s": 2.0, "poll_period_s": 0.25, "keep_alive_period_s": 1.0},
        "paths": {
            "journal": str(bench.safety_journal),
            "socket": str(bench.socket),
            "key_file": str(bench.key_file),
            "library": str(default_library_path()),
        },
        "clock": {"clinical": bench.clock.spec()},
        "telemetry": {
            "bench": "hil-relay",
            "port": broker_port,
            "outbox": str(outbox),
            "status_period_s": 1.0,
        },
    }
    return write_toml(bench.config, table)


class _Retained:
    """The latest message of each topic under a bench, read from the real broker."""

    def __init__(self, port: int, bench: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hil-retained")
        client.on_connect = lambda c, *_: c.subscribe(f"pumpctl/v1/{bench}/#", qos=1)
        client.on_message = self._on_message
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        self.prefix = f"pumpctl/v1/{bench}/"

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        leaf = str(message.topic).removeprefix(self.prefix)
        with self._lock:
            if message.payload:
                self.messages[leaf] = json.loads(message.payload)
            else:
                self.messages.pop(leaf, None)

    def get(self, leaf: str) -> dict[str, Any]:
        with self._lock:
            return dict(self.messages.get(leaf) or {})

    def close(self) -> None:
        from observe.telemetry.publisher import release_sockets

        self.client.disconnect()
        self.client.loop_stop()
        release_sockets(self.client)


def _card(driver: Any, kind: str, key: str) -> Any:
    from selenium.webdriver.common.by import By

    cards = driver.find_elements(By.CSS_SELECTOR, f'article.{kind}[data-key="{key}"]')
    return cards[0] if cards else None


def _text(root: Any, name: str) -> str:
    from selenium.webdriver.common.by import By

    if root is None:
        return ""
    found = root.find_elements(By.CSS_SELECTOR, f'[data-f="{name}"]')
    return str(found[0].get_attribute("textContent") or "") if found else ""


def _texts(driver: Any, css: str) -> list[str]:
    """The text of every element ``css`` selects, read in the page in one go (the page
    rebuilds its alarm lists and tiles: an element found earlier may be gone)."""
    script = "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText)"
    return list(driver.execute_script(script, css))


def test_a_two_channel_bench_hands_over_on_the_dashboard_the_broker_and_the_fleet(
    make_bench: MakeBench, tmp_path: Path
) -> None:
    """A relay as the observers see it, every process real: the safety process with two
    channels, the dashboard in Chromium, the telemetry publisher on Mosquitto, the fleet
    page. Before the handover: a card per channel (A active, B standby), a drug card with
    the total and the next handover, the per-channel and per-drug retained topics; the
    safety process hands over by itself; after it: A relieved, B active, B's no-standby
    alarm listed with its scope, on every view."""
    skip_unless(broker_mod.available() or browser_mod.available())
    from selenium.webdriver.common.by import By

    bench = make_bench(NE1000, start=False, speed=RELAY_SPEED)  # no emulator: mock pumps
    broker = broker_mod.Mosquitto(tmp_path / "broker").start()
    retained: _Retained | None = None
    try:
        _two_channel_config(bench, broker.port, tmp_path / "outbox.sqlite")
        bench.start_safety()
        # the observers start while the controller sets the relay up (they only watch)
        telemetry = bench.pumpctl("telemetry", "--config", str(bench.config))
        web = bench.pumpctl(
            "dashboard", "--config", str(bench.config), "--port", "0", "--bench-name", "hil"
        )
        fleet = bench.pumpctl(
            "fleet",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--port",
            "0",
            "--client-id",
            "hil-relay-fleet",
        )
        retained = _Retained(broker.port, "hil-relay")
        session = bench.connect()
        session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="A")
        session.program("norepinephrine", "4 mg/250 mL", "D5W", channel="B")
        assert session.prime("2", "B", confirm_line_disconnected=True).verdict.accepted

        def primed() -> bool:
            b = session.status().channel("B")
            return b is not None and b.primed and b.role != "priming"

        wait_for(primed, 15.0, "channel B primed")
        assert session.arm_standby("B", "A", "overlap").verdict.accepted
        session.select_channel("A")

        telemetry.wait_line("telemetry: bench")
        url = web.wait_line("dashboard on ").removeprefix("dashboard on ")
        fleet_url = fleet.wait_line("fleet on ").removeprefix("fleet on ")
        with browser_mod.Browser() as browser:
            d = browser.driver
            d.get(url)
            browser.wait(
                lambda: _text(_card(d, "channel", "B"), "role") == "STANDBY", 15.0, "B standby"
            )
            assert d.find_elements(By.CSS_SELECTOR, "button, input, form, select, textarea") == []

            assert session.start(8).execution == "applied"  # on A: the relay's clock runs
            browser.wait(
                lambda: _text(_card(d, "channel", "A"), "role") == "ACTIVE", 10.0, "A active"
            )
            drug = _card(d, "drug", "norepinephrine")
            assert _text(drug, "total") == "8 mcg/min" and _text(drug, "channels") == "A, B"
            assert "(channel A to B, overlap)" in _text(drug, "next-handover")
            assert _text(_card(d, "channel", "A"), "left").endswith("mL left")
            browser.screenshot("dashboard-two-channels-standby")

            def topics_before() -> bool:
                a, b = retained.get("channel/A"), retained.get("channel/B")
                drug = retained.get("drug/norepinephrine")
                return (
                    a.get("channel", {}).get("role") == "active"
                    and b.get("channel", {}).get("role") == "standby"
                    and drug.get("drug", {}).get("dose_text") == "8 mcg/min"
                    and drug["drug"]["next_handover_at"] is not None
                )

            wait_for(topics_before, 10.0, "the per-channel and per-drug topics")
            status = retained.get("status")
            assert [c["name"] for c in status["channels"]] == ["A", "B"]
            assert status["drugs"][0]["channels"] == ["A", "B"]

            d.get(fleet_url)
            tile = '.tile[data-bench="hil-relay"][data-channels="2"]'
            (shown,) = browser.wait(lambda: _texts(d, tile), 10.0, "the bench's tile")
            assert "next handover: in about" in shown and "8 mcg/min" in shown
            browser.screenshot("fleet-two-channels")

            # the safety process hands over by itself, about 10 real s after the start
            d.get(url)
            going = browser.wait(
                lambda: _texts(d, "#handover:not([hidden])"), 40.0, "the handover on the page"
            )
            assert "channel A to B (overlap, step" in going[0]
            assert _texts(d, 'article.channel .role[data-role="handing over"]')
            browser.screenshot("dashboard-two-channels-handing-over")
            browser.wait(
                lambda: (
                    _text(_card(d, "channel", "B"), "role") == "ACTIVE"
                    and _text(_card(d, "channel", "A"), "role") == "RELIEVED"
                ),
                30.0,
                "the handover done on the page",
            )
            assert _texts(d, "#handover:not([hidden])") == []
            assert _text(_card(d, "drug", "norepinephrine"), "total") == "8 mcg/min"
            alarm = '#alarm-list .alarm[data-key="relay_no_standby"][data-scope="B"]'
            text = browser.wait(
                lambda: _texts(d, alarm), 10.0, "B's no-standby alarm with its scope"
            )
            assert "[channel B]" in text[0]
            browser.screenshot("dashboard-two-channels-handed-over")
            d.set_window_size(390, 844)  # a phone: the cards stack
            width = d.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390 + 1, f"the page is {width} px wide on a 390 px phone"
            browser.screenshot("dashboard-two-channels-phone")
            wait_for(
                lambda: retained.get("channel/B").get("channel", {}).get("role") == "active",
                10.0,
                "channel B active on the broker",
            )
            assert retained.get("channel/A")["channel"]["relieved_by"] == "B"
        snapshot = session.status()
        assert [(c.name, c.role) for c in snapshot.channels] == [("A", "relieved"), ("B", "active")]
    finally:
        if retained is not None:
            retained.close()
        broker.stop()
