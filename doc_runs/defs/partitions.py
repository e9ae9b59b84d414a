from collections.abc import Mapping

from dagster import DagsterInstance, DynamicPartitionsDefinition

# One key per document: the SHA-256 of its bytes.
documents = DynamicPartitionsDefinition(name="documents")

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover every document key from `first` to `last` (insertion
    order). RunRequest has no partition-range argument of its own."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def run_documents(instance: DagsterInstance, run_tags: Mapping[str, str]) -> list[str]:
    """The document keys a run covers: its partition, or every key of its range (in
    insertion order); none where a key of the range is gone."""
    if "dagster/partition" in run_tags:
        return [run_tags["dagster/partition"]]
    first, last = run_tags.get(RANGE_START_TAG), run_tags.get(RANGE_END_TAG)
    if first is None or last is None:
        return []
    keys = instance.get_dynamic_partitions(documents.name)
    if first not in keys or last not in keys:
        return []
    return keys[keys.index(first): keys.index(last) + 1]


def contiguous_batches(all_keys: list[str], wanted: list[str], max_size: int) -> list[list[str]]:
    """Group `wanted` keys into runs of neighbours in `all_keys`' order, at most `max_size`
    each, so that a range run covers exactly the wanted keys and nothing else."""
    position = {key: i for i, key in enumerate(all_keys)}
    ordered = sorted(set(wanted), key=position.__getitem__)
    batches: list[list[str]] = []
    for key in ordered:
        if (
            batches
            and len(batches[-1]) < max_size
            and position[batches[-1][-1]] + 1 == position[key]
        ):
            batches[-1].append(key)
        else:
            batches.append([key])
    return batches


def plan_range_runs(existing: list[str], wanted: list[str], max_size: int
                    ) -> tuple[list[str], list[list[str]]]:
    """The keys to register and the runs to request for `wanted`, by the order the keys
    really have: keys already registered (by any initiator: the CLI, a sensor, the UI) keep
    their position, new ones are appended in the order given. Registering and requesting
    happen in one sensor result, so a key another initiator adds in between is the only way
    a range can differ from its batch; it then covers that initiator's key too (extra work,
    never a missed document: that initiator runs its own key)."""
    known = set(existing)
    new = [key for key in dict.fromkeys(wanted) if key not in known]
    return new, contiguous_batches([*existing, *new], wanted, max_size)
