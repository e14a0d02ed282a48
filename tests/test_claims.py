"""PersistentVolumeClaims on podman: a named volume per claim, kept across a restart, gone at teardown.

The example's datastore keeps its event log on a claim instead of a hostPath, both
ways a manifest says it: a PersistentVolumeClaim object, and a StatefulSet's
volumeClaimTemplates (the migration Job mounts the claim the StatefulSet's pod gets).
The suite's datastore restart test then shows the events survive the restart.
"""

from __future__ import annotations

import pytest

from tests.faultkit import RootFactory

pytestmark = [pytest.mark.podman, pytest.mark.slow]

HOST_PATH = "          hostPath: {path: /var/lib/e2e-harness/datastore, type: DirectoryOrCreate}\n"
CLAIM = """\
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: datastore-data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"""
TEMPLATES = """\
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
"""


@pytest.mark.parametrize("how", ["claim", "template"])
def test_a_claim_keeps_the_datastores_events_across_a_restart_and_goes_at_teardown(
    roots: RootFactory, how: str
) -> None:
    root = roots.make(f"claims-{how}")
    path = root.manifest("datastore.yaml")
    text = path.read_text()
    assert text.count(HOST_PATH) == 2
    if how == "claim":
        text = text.replace(HOST_PATH, "          persistentVolumeClaim: {claimName: datastore-data}\n")
        text += "---\n" + CLAIM
    else:  # the Job mounts the StatefulSet's pod-0 claim; the StatefulSet its template
        job, sts = text.split("kind: StatefulSet", 1)
        job = job.replace(HOST_PATH, "          persistentVolumeClaim: {claimName: data-datastore-0}\n")
        sts = sts.replace("      volumes:\n        - name: data\n" + HOST_PATH, "")
        sts = sts.replace("  serviceName: datastore\n", "  serviceName: datastore\n" + TEMPLATES)
        text = job + "kind: StatefulSet" + sts
    path.write_text(text)

    out = root.e2e("-k", "smoke or datastore_restart", timeout=300)

    assert out.code == 0, str(out)
    assert "- result: passed: 5 passed" in out.output, str(out)  # smoke, and the restart keeping events
    assert root.leftovers(out.run_id) == [], str(out)  # the claim's volume with the rest
