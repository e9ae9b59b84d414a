"""Typed findings fields: what a field is (spec), how a value is normalized whatever wrote it
(values), and the offline readers that find candidate values of each type in a document."""
