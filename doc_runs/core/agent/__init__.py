"""The agent: model backends, the tool registry over one document, and the tool-calling loop."""
