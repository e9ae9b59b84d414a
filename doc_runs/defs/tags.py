"""The run tags doc_runs sets, each name written here once. Some its steps read back (batch,
tenant, extra fields, progress, launched by); the others are labels for people and the UI.
The names are on the wire: instances' runs, deploy/*.yaml's tag concurrency limits and
operators' filters use them, so a name does not change."""

# The batch a run works on (its documents are in the catalog; see partitions.py).
BATCH_TAG = "doc_runs/batch"
TENANT_TAG = "doc_runs/tenant"  # the tenant a run acts for (see stage_scope.run_tenant)
EXTRA_FIELDS_TAG = "doc_runs/extra_fields"  # JSON: findings fields a message asked for
# "journal": the stages append a line per document to the run's progress journal in the store
# as each finishes (set by `doc-runs process`, which reads it and deletes it afterwards).
PROGRESS_TAG = "doc_runs/progress"
# The process that launched the run, with the run's id (see run_launcher.py).
LAUNCHED_BY_TAG = "doc_runs/launched_by"

# Labels.
TRIGGER_TAG = "doc_runs/trigger"  # what asked for the run: inbox, queue, schedule, cli, ...
DOCUMENTS_TAG = "doc_runs/documents"  # how many documents the run's batch holds
DESCRIPTION_TAG = "doc_runs/description"  # the first names of those documents and the count
MESSAGES_TAG = "doc_runs/messages"  # how many queue messages the run answers
DOCUMENT_RUNS_TAG = "doc_runs/document_runs"  # a report run: how many document runs ended
