"""Run tags doc_runs reads back in its steps (the others are labels for people)."""

TENANT_TAG = "doc_runs/tenant"  # the tenant a run acts for (see stage_scope.run_tenant)
EXTRA_FIELDS_TAG = "doc_runs/extra_fields"  # JSON: findings fields a message asked for
# "journal": the stages append a line per document to the run's progress journal in the store
# as each finishes (set by `doc-runs process`, which reads it and deletes it afterwards).
PROGRESS_TAG = "doc_runs/progress"
