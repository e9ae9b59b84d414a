"""Run tags doc_runs reads back in its steps (the others are labels for people)."""

TENANT_TAG = "doc_runs/tenant"  # the tenant a run acts for (see stage_runner.run_tenant)
EXTRA_FIELDS_TAG = "doc_runs/extra_fields"  # JSON: findings fields a message asked for
