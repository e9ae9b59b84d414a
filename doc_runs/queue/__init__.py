"""The document queue on Redis Streams: envelopes, producer, consumer helpers, dead letters."""
