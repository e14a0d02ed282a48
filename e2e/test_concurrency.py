"""Many signals at once from many threads: nothing lost, counts exact."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import requests
from checks import describe, scrape, wait_for_audit
from conftest import Http
from signals import alert, send_alerts, unique, webhook

THREADS = 20
PER_THREAD = 10
DEDUP_TTL = 5.0  # manifests/gateway.yaml


def burst(gateway_url: str, payload_for, correlation_id: str) -> tuple[list[dict], list[str], float]:
    """THREADS threads x PER_THREAD requests, started together.

    payload_for(thread, i) gives each request's webhook. Returns the signals
    of all 2xx answers, a description of every other answer, and the time
    from the first request to the last answer.
    """
    gate = threading.Barrier(THREADS)
    signals: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        with Http() as session:
            gate.wait()
            for i in range(PER_THREAD):
                try:
                    resp = send_alerts(session, gateway_url, payload_for(t, i), correlation_id=correlation_id)
                except requests.RequestException as err:
                    with lock:
                        errors.append(f"thread {t} request {i}: {err!r}")
                    continue
                with lock:
                    if resp.status_code in (201, 202):
                        signals.extend(resp.json()["signals"])
                    else:
                        errors.append(describe(resp))

    start = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(worker, range(THREADS)))
    return signals, errors, time.monotonic() - start


def windows_are_exact(occurrences: list[int]) -> bool:
    """Each dedup window counts 1..k exactly once (true whatever the TTL split)."""
    counts = Counter(occurrences)
    return all(counts[n] <= counts[n - 1] for n in counts if n > 1) and counts[1] >= 1


def test_identical_alert_from_many_threads_counts_exactly(
    http, gateway_url, datastore_url, namespace, correlation_id
):
    total = THREADS * PER_THREAD
    payload = webhook(alert(unique("Storm"), namespace))
    sigs, errors, took = burst(gateway_url, lambda t, i: payload, correlation_id)

    assert not errors, f"{len(errors)} of {total} requests failed, first: {errors[:3]}"
    assert len(sigs) == total, f"expected {total} signals back, got {len(sigs)}"
    assert len({s["fingerprint"] for s in sigs}) == 1, "one alert must have one fingerprint"
    occ = sorted(s["occurrences"] for s in sigs)
    created = [s for s in sigs if s["status"] == "created"]
    if took < DEDUP_TTL - 0.5:
        assert len(created) == 1, (
            f"expected exactly 1 'created' and {total - 1} 'duplicate' within one window "
            f"(burst took {took:.2f}s), got {len(created)} created; occurrences {occ}"
        )
        assert occ == list(range(1, total + 1)), (
            f"expected occurrences 1..{total} each exactly once, got duplicates/gaps: "
            f"{sorted(n for n, c in Counter(occ).items() if c > 1)[:20]} / max {occ[-1]}"
        )
    else:  # the burst outlasted a TTL window: each window must still count exactly
        assert windows_are_exact(occ) and len(created) == Counter(occ)[1], (
            f"burst took {took:.2f}s (> TTL); occurrences are not an exact 1..k per window: {occ}"
        )

    events = wait_for_audit(http, datastore_url, correlation_id, total, timeout=30)
    types = Counter(e["event_type"] for e in events)
    assert types == {"signal.created": len(created), "signal.duplicate": total - len(created)}, (
        f"expected {len(created)} created and {total - len(created)} duplicate audit events, "
        f"got {dict(types)}"
    )


def test_distinct_alerts_from_many_threads_are_all_created(
    http, gateway_url, datastore_url, namespace, correlation_id
):
    total = THREADS * PER_THREAD
    prefix = unique("Distinct")
    sigs, errors, _ = burst(
        gateway_url, lambda t, i: webhook(alert(f"{prefix}-{t}-{i}", namespace)), correlation_id
    )
    assert not errors, f"{len(errors)} of {total} requests failed, first: {errors[:3]}"
    names = {s["alertname"] for s in sigs}
    assert len(names) == total, f"expected {total} distinct alerts answered, got {len(names)}"
    not_new = [s for s in sigs if (s["status"], s["occurrences"]) != ("created", 1)]
    assert not not_new, (
        f"expected all {total} to be created with occurrences 1, {len(not_new)} not: {not_new[:3]}"
    )
    assert len({s["fingerprint"] for s in sigs}) == total, "distinct alerts must have distinct fingerprints"

    events = wait_for_audit(http, datastore_url, correlation_id, total, timeout=30)
    assert {e["fingerprint"] for e in events} == {s["fingerprint"] for s in sigs}, (
        "the audit events must cover exactly the signals that were created"
    )


def test_repeated_alerts_across_threads_keep_per_alert_counts(http, gateway_url, namespace, correlation_id):
    # 10 alerts, each sent 20 times: once by every thread, in a thread-specific order
    names = [unique(f"Mix{k}") for k in range(PER_THREAD)]
    payloads = [webhook(alert(n, namespace)) for n in names]
    before = scrape(http, gateway_url)
    sigs, errors, took = burst(gateway_url, lambda t, i: payloads[(t + i) % PER_THREAD], correlation_id)
    after = scrape(http, gateway_url)

    assert not errors, f"{len(errors)} requests failed, first: {errors[:3]}"
    by_name: dict[str, list[int]] = defaultdict(list)
    created: Counter[str] = Counter()
    for s in sigs:
        by_name[s["alertname"]].append(s["occurrences"])
        created[s["alertname"]] += s["status"] == "created"
    for n in names:
        occ = sorted(by_name[n])
        assert len(occ) == THREADS, f"{n}: expected {THREADS} answers, got {len(occ)}"
        if took < DEDUP_TTL - 0.5:
            assert occ == list(range(1, THREADS + 1)) and created[n] == 1, (
                f"{n}: expected occurrences 1..{THREADS} with one 'created', got {occ}, {created[n]} created"
            )
        else:
            assert windows_are_exact(occ), f"{n}: occurrences not exact per window (took {took:.2f}s): {occ}"

    d = after.get("gateway_signals_received_total", source="alertmanager") - before.get(
        "gateway_signals_received_total", source="alertmanager"
    )
    assert d >= THREADS * PER_THREAD, (
        f"gateway_signals_received_total rose by {d}, expected >= {THREADS * PER_THREAD}"
    )
