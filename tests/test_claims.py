"""PersistentVolumeClaims on podman: a named volume per claim, kept across a restart, gone at teardown.

The example's PostgreSQL keeps its data on a claim both ways a manifest says it: a StatefulSet's
volumeClaimTemplates (as the example has it), and a PersistentVolumeClaim object. The suite's
PostgreSQL restart test then shows the events survive the restart.
"""

from __future__ import annotations

import pytest

from tests.faultkit import RootFactory

pytestmark = [pytest.mark.podman, pytest.mark.slow]

TEMPLATES = """\
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests: {storage: 1Gi}
"""
CLAIM = """\
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: postgres-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""
VOLUMES = """\
      volumes:
        - name: data
          persistentVolumeClaim: {claimName: postgres-data}
"""


@pytest.mark.parametrize("how", ["template", "claim"])
def test_a_claim_keeps_the_databases_events_across_a_restart_and_goes_at_teardown(
    roots: RootFactory, how: str
) -> None:
    root = roots.make(f"claims-{how}")
    path = root.manifest("postgres.yaml")
    text = path.read_text()
    assert text.count(TEMPLATES) == 1
    if how == "claim":  # the pod's volume names a claim object instead
        sts, service = text.split("---\napiVersion: v1\nkind: Service", 1)
        sts = sts.replace(TEMPLATES, "").rstrip("\n") + "\n" + VOLUMES
        text = sts + CLAIM + "---\napiVersion: v1\nkind: Service" + service
        path.write_text(text)
    volume = f"e2eh-{{run}}-pvc-{'data-postgres-0' if how == 'template' else 'postgres-data'}"

    out = root.e2e("-k", "smoke or postgres_restart", timeout=300)

    assert out.code == 0, str(out)
    assert "- result: passed: 5 passed" in out.output, str(out)  # smoke, and the restart keeping events
    made = (out.artifacts / "run.log").read_text()
    assert (
        f"podman volume create --label io.e2e-harness.managed=true --label io.e2e-harness.run={out.run_id} "
        + (volume.format(run=out.run_id))
        in made
    ), out.run_log()
    assert root.leftovers(out.run_id) == [], str(out)  # the claim's volume with the rest
