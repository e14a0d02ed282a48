"""The podman platform's names without DNS: fixed addresses, one /etc/hosts line per name."""

from __future__ import annotations

from typing import Any

import pytest

from infra.platforms.podman_hosts import AddressError, Addresses, names_of


def workload(kind: str, name: str, **labels: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"template": {"metadata": {"labels": labels}, "spec": {"containers": []}}},
    }


def service(name: str, **selector: str) -> dict[str, Any]:
    return {"kind": "Service", "metadata": {"name": name}, "spec": {"selector": selector}}


DOCS = [
    workload("StatefulSet", "datastore", app="datastore"),
    service("datastore", app="datastore"),
    service("store-admin", app="datastore"),
    workload("Deployment", "gateway", app="gateway"),
    service("gateway", app="gateway"),
    service("orphan", app="nothing"),  # selects no pod: no name, as no endpoint
    service("headless-all"),  # no selector selects nothing
    {"kind": "Job", "metadata": {"name": "migrate"}, "spec": {"template": {"spec": {}}}},
]


def test_every_name_kubernetes_would_serve_reaches_the_workload_it_selects() -> None:
    assert names_of(DOCS) == {
        "datastore": ["datastore", "datastore-0", "store-admin"],
        "gateway": ["gateway"],
    }


def test_workloads_take_the_first_addresses_and_every_name_becomes_a_hosts_line() -> None:
    plan = Addresses.plan(DOCS, "10.89.3.0/24", "10.89.3.1")
    assert plan.fixed == {"datastore": "10.89.3.2", "gateway": "10.89.3.3"}
    assert plan.add_host_argv() == [
        "--add-host", "datastore:10.89.3.2", "--add-host", "datastore-0:10.89.3.2",
        "--add-host", "store-admin:10.89.3.2", "--add-host", "gateway:10.89.3.3",
    ]  # fmt: skip
    assert plan.hosts()["store-admin"] == ["10.89.3.2"]


def test_a_service_that_selects_two_workloads_has_both_addresses() -> None:
    docs = [workload("Deployment", "a", tier="web"), workload("Deployment", "b", tier="web")]
    plan = Addresses.plan([*docs, service("web", tier="web")], "10.89.3.0/24", "10.89.3.1")
    assert plan.hosts()["web"] == ["10.89.3.2", "10.89.3.3"]


def test_containers_that_run_to_completion_never_take_a_workloads_address() -> None:
    plan = Addresses.plan(DOCS, "10.89.4.0/29", "10.89.4.1")  # hosts .1-.6: two fixed, three others
    taken = [plan.transient() for _ in range(7)]
    assert taken == ["10.89.4.4", "10.89.4.5", "10.89.4.6"] * 2 + ["10.89.4.4"]
    assert not set(taken) & set(plan.fixed.values())


def test_a_network_too_small_for_the_workloads_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        AddressError, match=r"10\.89\.5\.0/30 has 1 addresses for 2 workloads.*default_subnet"
    ):
        Addresses.plan(DOCS, "10.89.5.0/30", "10.89.5.1")


def test_an_address_always_has_the_same_mac_so_peers_caches_stay_right_across_restarts() -> None:
    assert Addresses.mac_of("10.89.3.2") == "02:42:0a:59:03:02"
    assert Addresses.mac_of("10.89.3.254") == "02:42:0a:59:03:fe"
