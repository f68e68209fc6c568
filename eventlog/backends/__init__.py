"""Event log backends, picked by URL scheme (see ``eventlog.open_eventlog``)."""
