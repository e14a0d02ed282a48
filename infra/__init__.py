"""The E2E harness engine: every behaviour lives here, typed and importable."""
