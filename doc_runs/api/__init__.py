"""The HTTP boundary: authenticate, store an upload once, enqueue it through the queue's
producer, and show status and live outcome events. It never does document work; the Dagster
runs do, started by the queue sensor."""
